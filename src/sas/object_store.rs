//! `object_store` over a [`StorageSas`]: a credential provider that hands out the current
//! SAS, and [`SasStore`], a store rooted at the SAS's resource that renews a refused SAS.

use std::{fmt, ops::Range, sync::Arc};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use object_store::{
    ClientOptions, CopyOptions, CredentialProvider, GetOptions, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions,
    azure::{AzureCredential, MicrosoftAzureBuilder},
    client::{
        HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
        ReqwestConnector,
    },
    path::Path,
    prefix::PrefixStore,
};
use tokio::time::Instant;

use super::{Sas, StorageSas};
use crate::Error;

/// An `object_store` credential provider over a [`StorageSas`]: every request object_store
/// sends asks it, and it answers with the current SAS as `AzureCredential::SASToken` pairs,
/// renewed ahead of its expiry. The pairs are built once per SAS.
///
/// It cannot see responses: a SAS that storage refuses before its expiry (its policy was
/// revoked) is replaced when something calls [`StorageSas::rejected`]. [`SasStore`] does.
/// To use the provider with a `MicrosoftAzureBuilder` of your own, pass it to
/// `with_credentials(Arc::new(provider))`, and point the builder at the storage as an
/// ordinary endpoint: with `with_use_emulator(true)`, object_store signs with the emulator's
/// account key and never asks the provider.
#[derive(Clone)]
pub struct SasCredentialProvider {
    sas: StorageSas,
    last: Arc<ArcSwapOption<Prepared>>,
}

/// The credential object_store is handed for one SAS.
struct Prepared {
    id: u64,
    credential: Arc<AzureCredential>,
}

/// object_store's HTTP client (reqwest) for a [`SasStore`], watching every response for a
/// refused SAS.
#[derive(Debug)]
struct RefusalWatch {
    sas: StorageSas,
}

/// The client [`RefusalWatch`] connects.
#[derive(Debug)]
struct WatchedClient {
    inner: HttpClient,
    sas: StorageSas,
}

/// An `object_store::ObjectStore` for a Data Workbench dataset or File storage: Azure blob
/// storage at the SAS's account and container, rooted at its path (a dataset's SAS covers
/// its folder only), every request signed with the current SAS.
///
/// When storage refuses a request with 401 or 403 (a SAS whose stored access policy was
/// revoked), the store tells the [`StorageSas`] ([`StorageSas::rejected`]), so the next
/// operation gets a new SAS: at most one operation fails per revocation. It sees the status of
/// every response object_store's HTTP client receives (the error object_store then returns
/// depends on the operation: `PermissionDenied` for a `get`, `Generic` for a `list`), and
/// the signature the request carried, so only a refusal of the current SAS asks for a new
/// one. A 403 that is not about the SAS (a `put` through a read-only SAS) fails each time,
/// with object_store's `PermissionDenied`; the new SAS requests it causes are limited to one
/// per [`rejection_interval`](super::StorageSasBuilder::rejection_interval).
///
/// Hand it to anything that takes an `Arc<dyn ObjectStore>` of object_store 0.14 (the
/// trait is per major version): DataFusion (`SessionContext::register_object_store`),
/// delta-rs (`DeltaTableBuilder::with_storage_backend`). Polars builds its stores itself from
/// storage options and takes none.
pub struct SasStore {
    inner: PrefixStore<object_store::azure::MicrosoftAzure>,
    sas: StorageSas,
    /// `account/container/prefix`, for `Display`.
    name: String,
}

// === impl SasCredentialProvider ===

impl SasCredentialProvider {
    /// A provider handing out `sas`.
    ///
    /// The feature builds object_store's reqwest client over rustls without a provider of
    /// its own, and reqwest panics when it builds one in a process with none: so when the
    /// process has no rustls provider installed, this installs `ring`'s as the process
    /// default (as [`SasStore::new`] does), and a `MicrosoftAzureBuilder::build` after it
    /// succeeds.
    pub fn new(sas: StorageSas) -> Self {
        ensure_crypto_provider();
        SasCredentialProvider {
            sas,
            last: Arc::default(),
        }
    }
}

impl fmt::Debug for SasCredentialProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SasCredentialProvider")
            .field(&self.sas)
            .finish()
    }
}

#[async_trait]
impl CredentialProvider for SasCredentialProvider {
    type Credential = AzureCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AzureCredential>> {
        let sas = self.sas.current().await.map_err(generic)?;
        if let Some(last) = self.last.load().as_ref()
            && last.id == sas.cached.id
        {
            return Ok(Arc::clone(&last.credential));
        }
        let credential = Arc::new(AzureCredential::SASToken(sas.query_pairs().to_vec()));
        self.last.store(Some(Arc::new(Prepared {
            id: sas.cached.id,
            credential: Arc::clone(&credential),
        })));
        Ok(credential)
    }
}

fn generic(error: Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "MicrosoftAzure (veracity-auth SAS)",
        source: Box::new(error),
    }
}

// === impl SasStore ===

impl SasStore {
    /// A store for what `sas` is for. Fetches the first SAS now, to learn the account,
    /// container and path from its resource URI.
    ///
    /// The resource may be Azure's (`https://<account>.dfs.core.windows.net/<container>/<path>`,
    /// or `.blob.`: requests go to the blob endpoint) or path-style, as the storage emulator
    /// serves it (`http://127.0.0.1:10000/<account>/<container>/<path>`; plain HTTP is
    /// allowed to loopback only).
    ///
    /// HTTPS goes through object_store's reqwest client over rustls; when the process has
    /// no rustls provider installed, `ring`'s is installed as the process default (the
    /// crate's own client uses `ring` too), so the feature links no second provider.
    pub async fn new(sas: StorageSas) -> Result<SasStore, Error> {
        let current = sas.current().await?;
        let location = Location::parse(current.resource_uri())?;
        // The provider installs `ring`'s rustls provider when the process has none.
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&location.account)
            .with_container_name(&location.container)
            .with_endpoint(location.endpoint.clone())
            .with_credentials(Arc::new(SasCredentialProvider::new(sas.clone())))
            .with_http_connector(RefusalWatch { sas: sas.clone() });
        if location.endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
        let azure = builder
            .build()
            .map_err(|e| Error::Config(format!("the storage client could not be built: {e}")))?;
        Ok(SasStore {
            inner: PrefixStore::new(azure, location.prefix.as_str()),
            name: format!(
                "{}/{}/{}",
                location.account, location.container, location.prefix
            ),
            sas,
        })
    }

    /// The SAS credential under the store (for its [`stats`](StorageSas::stats)).
    pub fn sas(&self) -> &StorageSas {
        &self.sas
    }
}

// === impl RefusalWatch ===

impl HttpConnector for RefusalWatch {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(WatchedClient {
            inner: ReqwestConnector::default().connect(options)?,
            sas: self.sas.clone(),
        }))
    }
}

#[async_trait]
impl HttpService for WatchedClient {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let sig = signature(request.uri());
        let response = self.inner.execute(request).await?;
        let status = response.status();
        if (status == http::StatusCode::FORBIDDEN || status == http::StatusCode::UNAUTHORIZED)
            && let Some(sig) = sig
        {
            refused(&self.sas, &sig);
        }
        Ok(response)
    }
}

/// The `sig=` of a request's query, percent-decoded: which SAS signed it.
fn signature(uri: &http::Uri) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(uri.query()?).ok()?;
    pairs.into_iter().find(|(k, _)| k == "sig").map(|(_, v)| v)
}

/// Storage refused a request signed with `sig`: if that is the current SAS, drop it so the
/// next operation gets a new one. A refusal of an older SAS needs nothing: a newer one
/// already serves.
fn refused(sas: &StorageSas, sig: &str) {
    let Some(cached) = sas.cache.usable(Instant::now()) else {
        return;
    };
    let current = Sas { cached };
    if current
        .query_pairs()
        .iter()
        .any(|(k, v)| k == "sig" && v == sig)
    {
        tracing::debug!(
            target: "veracity_auth::sas",
            generation = current.cached.generation,
            "storage refused the SAS: asking for a new one"
        );
        sas.rejected(&current);
    }
}

impl fmt::Display for SasStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SasStore({})", self.name)
    }
}

impl fmt::Debug for SasStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasStore")
            .field("root", &self.name)
            .field("sas", &self.sas)
            .finish()
    }
}

#[async_trait]
impl ObjectStore for SasStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.inner.rename_opts(from, to, options).await
    }
}

/// Where a SAS's resource lives, as object_store's Azure builder wants it.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    account: String,
    container: String,
    /// The path in the container, `/`-separated, without leading or trailing `/`.
    prefix: String,
    /// The blob endpoint: `https://<account>.blob.core.windows.net`, or path-style
    /// `http://127.0.0.1:10000/<account>`.
    endpoint: String,
}

impl Location {
    fn parse(resource: &str) -> Result<Location, Error> {
        let invalid = |why: &str| {
            Error::InvalidSasResponse(format!(
                "the resource {} {why}",
                crate::redact::url(resource)
            ))
        };
        let uri: http::Uri = resource.parse().map_err(|_| invalid("is not a URL"))?;
        let scheme = uri.scheme_str().ok_or_else(|| invalid("has no scheme"))?;
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        let host = authority.host();
        let mut segments = uri
            .path()
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode);
        let azure = ["dfs.", "blob."]
            .iter()
            .find_map(|service| host.split_once(&format!(".{service}")[..]));
        let (account, endpoint) = match azure {
            Some((account, suffix)) if scheme == "https" => (
                account.to_owned(),
                format!("https://{account}.blob.{suffix}"),
            ),
            Some(_) => return Err(invalid("is Azure storage without HTTPS")),
            None => {
                let account = segments.next().ok_or_else(|| invalid("names no account"))?;
                let loopback = host == "localhost"
                    || host
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if scheme != "https" && !loopback {
                    return Err(invalid("is plain HTTP to a host that is not loopback"));
                }
                (account.clone(), format!("{scheme}://{authority}/{account}"))
            }
        };
        let container = segments
            .next()
            .ok_or_else(|| invalid("names no container"))?;
        let prefix = segments.collect::<Vec<_>>().join("/");
        Ok(Location {
            account,
            container,
            prefix,
            endpoint,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// object_store's reqwest client takes rustls' process default provider: install `ring`'s
/// when there is none (a second call, or another thread's, changes nothing).
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resource_uri_names_account_container_and_prefix() {
        assert_eq!(
            Location::parse("https://acct.dfs.core.windows.net/ws-1/datasets/d%201/").unwrap(),
            Location {
                account: "acct".into(),
                container: "ws-1".into(),
                prefix: "datasets/d 1".into(),
                endpoint: "https://acct.blob.core.windows.net".into(),
            }
        );
        assert_eq!(
            Location::parse("http://127.0.0.1:10000/devstoreaccount1/files").unwrap(),
            Location {
                account: "devstoreaccount1".into(),
                container: "files".into(),
                prefix: String::new(),
                endpoint: "http://127.0.0.1:10000/devstoreaccount1".into(),
            }
        );
        for bad in [
            "http://acct.blob.core.windows.net/c",
            "http://storage.example/acct/c",
            "https://acct.dfs.core.windows.net/",
            "not a url",
        ] {
            assert!(
                matches!(Location::parse(bad), Err(Error::InvalidSasResponse(_))),
                "{bad}"
            );
        }
    }
}

//! The object_store adapter over a [`StorageSas`]: a credential provider and a store.
//!
//! One source for both object_store majors: `object_store_0_14.rs` and `object_store_0_13.rs`
//! build it, each naming its major `object_store`. The two
//! majors' `ObjectStore` traits and HTTP client types are the same; where their behaviour
//! differs (0.13's `PrefixStore` leaves the prefix on `head`/`get` locations), this file does
//! the work itself.

use std::{fmt, ops::Range, sync::Arc};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream::BoxStream};

use super::object_store::{
    self, ClientOptions, CopyOptions, CredentialProvider, GetOptions, GetResult, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, RenameOptions, RetryConfig,
    azure::{AzureCredential, MicrosoftAzure, MicrosoftAzureBuilder},
    client::{
        HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService,
        ReqwestConnector,
    },
    path::Path,
};
use crate::{
    ConfigError, Error, SasError,
    sas::{
        Sas, StorageSas,
        blob::{self, Location, Refusal},
    },
};

/// An `object_store` credential provider over a [`StorageSas`]: every request object_store
/// sends asks it, and it answers with the current SAS as `AzureCredential::SASToken` pairs,
/// renewed ahead of its expiry. The pairs are built once per SAS.
///
/// It cannot see responses: a SAS that storage refuses before its expiry (its policy was
/// revoked) is replaced when something calls [`StorageSas::rejected`]. [`SasStore`] does, and
/// sends the refused request again. To use the provider with a `MicrosoftAzureBuilder` of
/// your own, pass it to `with_credentials(Arc::new(provider))`, and point the builder at the
/// storage as an ordinary endpoint: with `with_use_emulator(true)`, object_store signs with
/// the emulator's account key and never asks the provider.
#[derive(Clone)]
pub struct SasCredentialProvider {
    sas: StorageSas,
    last: Arc<ArcSwapOption<Prepared>>,
}

/// The credential object_store is handed for one SAS.
struct Prepared {
    generation: u64,
    credential: Arc<AzureCredential>,
}

/// An `object_store::ObjectStore` for a Data Workbench dataset or File storage: Azure blob
/// storage at the SAS's account and container, rooted at its folder (a dataset's SAS covers
/// its folder only), every request signed with the current SAS.
///
/// - **Renewal.** The SAS is renewed ahead of its expiry, with one SAS request however many
///   operations need it.
/// - **Refusal.** When storage refuses a request for its SAS (`x-ms-error-code:
///   AuthenticationFailed` or `AuthorizationFailure`: a revoked policy, an expired SAS), the
///   store gets a new SAS (one for all the requests refused at once, at most one per
///   [`rejection_interval`](crate::CachePolicy::rejection_interval)) and sends the
///   request again, once: a revocation fails no operation. A refusal that a new SAS cannot
///   fix (`AuthorizationPermissionMismatch`: a `put` through a read-only SAS) is returned as
///   object_store's `PermissionDenied`, and keeps the SAS.
/// - **Paths** are relative to the folder, in results and in errors. Every request stays
///   inside the folder: Azure refuses a directory SAS anything else.
///
/// Engines key their stores by URL: [`url`](Self::url) is unique to the folder, for
/// DataFusion's `register_object_store`; delta-rs takes
/// [`container_store`](Self::container_store) with a table's [`abfss_url`](Self::abfss_url)
/// or [`delta_table_url`](Self::delta_table_url).
pub struct SasStore {
    azure: Arc<MicrosoftAzure>,
    sas: StorageSas,
    location: Arc<Location>,
    /// The folder, in the container, that paths are relative to.
    root: Path,
    url: url::Url,
}

/// Configures a [`SasStore`]: object_store's client options and retry policy.
#[derive(Debug)]
pub struct SasStoreBuilder {
    sas: StorageSas,
    client_options: ClientOptions,
    retry: RetryConfig,
}

/// object_store's HTTP client (reqwest) for a [`SasStore`], sending a request refused for
/// its SAS again with a new one.
#[derive(Debug)]
struct ReplayRefused {
    sas: StorageSas,
}

/// The client [`ReplayRefused`] connects.
#[derive(Debug)]
struct ReplayingClient {
    inner: HttpClient,
    sas: StorageSas,
}

// === impl SasCredentialProvider ===

impl SasCredentialProvider {
    /// A provider handing out `sas`.
    ///
    /// object_store's reqwest client takes rustls' process default provider: so when the
    /// process has none, this installs `ring`'s (as [`SasStore::new`] does), and a
    /// `MicrosoftAzureBuilder::build` after it succeeds.
    pub fn new(sas: StorageSas) -> Self {
        blob::ensure_crypto_provider();
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
        let sas = self.sas.current().await.map_err(|error| {
            // The crate's error is this one's `source()`: `Error::find_in` reaches it.
            object_store::Error::Generic {
                store: "MicrosoftAzure (veracity-auth SAS)",
                source: Box::new(error),
            }
        })?;
        if let Some(last) = self.last.load().as_ref()
            && last.generation == sas.cached.generation
        {
            return Ok(Arc::clone(&last.credential));
        }
        let credential = Arc::new(AzureCredential::SASToken(sas.query_pairs().to_vec()));
        self.last.store(Some(Arc::new(Prepared {
            generation: sas.cached.generation,
            credential: Arc::clone(&credential),
        })));
        Ok(credential)
    }
}

// === impl SasStoreBuilder ===

impl SasStoreBuilder {
    /// object_store's HTTP client options (timeouts, proxy, user agent, ...).
    pub fn client_options(mut self, options: ClientOptions) -> Self {
        self.client_options = options;
        self
    }

    /// object_store's retry policy for transient failures (5xx, timeouts).
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.retry = retry;
        self
    }

    /// The store. Fetches the first SAS now, to learn the account, container and folder
    /// from its resource URI.
    ///
    /// The resource may be Azure's (`https://<account>.dfs.core.windows.net/<container>/<path>`,
    /// or `.blob.`: requests go to the blob endpoint) or path-style, as the storage emulator
    /// serves it (`http://127.0.0.1:10000/<account>/<container>/<path>`; plain HTTP is
    /// allowed to loopback only).
    pub async fn build(self) -> Result<SasStore, Error> {
        let current = self.sas.current().await?;
        let location = Location::parse(current.resource_uri())?;
        let mut options = self.client_options;
        if location.endpoint.starts_with("http://") {
            options = options.with_allow_http(true);
        }
        let azure = MicrosoftAzureBuilder::new()
            .with_account(&location.account)
            .with_container_name(&location.container)
            .with_endpoint(location.endpoint.clone())
            .with_client_options(options)
            .with_retry(self.retry)
            .with_credentials(Arc::new(SasCredentialProvider::new(self.sas.clone())))
            .with_http_connector(ReplayRefused {
                sas: self.sas.clone(),
            })
            .build()
            .map_err(|e| {
                ConfigError::HttpClient(format!("the storage client could not be built: {e}"))
            })?;
        let root = Path::from(location.prefix.as_str());
        Ok(SasStore {
            azure: Arc::new(azure),
            url: location.store_url(root.as_ref()),
            location: Arc::new(location),
            root,
            sas: self.sas,
        })
    }
}

// === impl SasStore ===

impl SasStore {
    /// A store for what `sas` is for, with object_store's default client options and
    /// retries: `SasStore::builder(sas).build()`.
    pub async fn new(sas: StorageSas) -> Result<SasStore, Error> {
        SasStore::builder(sas).build().await
    }

    /// A builder, to set object_store's client options and retry policy.
    pub fn builder(sas: StorageSas) -> SasStoreBuilder {
        SasStoreBuilder {
            sas,
            client_options: ClientOptions::default(),
            retry: RetryConfig::default(),
        }
    }

    /// The SAS credential under the store (for its [`stats`](StorageSas::stats)).
    pub fn sas(&self) -> &StorageSas {
        &self.sas
    }

    /// `veracity://<label>/`, unique to this store's account, container and folder: the URL
    /// to register the store under in DataFusion (which keys stores by scheme and host) and
    /// to name its files by (`<url>part-0.parquet`).
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The same storage and SAS, rooted at the container instead of the folder: what
    /// delta-rs's `DeltaTableBuilder::with_storage_backend` takes, with the table's
    /// [`abfss_url`](Self::abfss_url). delta-rs applies the table's folder itself, so its
    /// requests still stay inside the SAS's folder.
    pub fn container_store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(SasStore {
            azure: Arc::clone(&self.azure),
            sas: self.sas.clone(),
            url: self.location.store_url(""),
            location: Arc::clone(&self.location),
            root: Path::default(),
        })
    }

    /// `abfss://<container>@<account>-<hash>.dfs.core.windows.net/<folder>/<path>`: the name
    /// delta-rs takes for a table at `path` under this store's folder. With
    /// [`container_store`](Self::container_store), delta-rs reads and writes the table there.
    ///
    /// The URL only names the table: every request goes through the store, and its host is
    /// not a storage endpoint. It carries a hash of the store's folder because delta-rs
    /// registers a table's store in DataFusion under the URL's scheme and host alone: two
    /// datasets of one account, in one session, each keep their own store and SAS.
    pub fn abfss_url(&self, path: &str) -> url::Url {
        let path = Path::from(path);
        self.location
            .abfss_url(self.root.as_ref(), self.full(&path).as_ref())
    }

    /// The [`abfss_url`](Self::abfss_url) of the Delta table in this store: the folder
    /// itself when it holds `_delta_log/`, else the one folder just below it that does
    /// (Veracity's pipelines write a dataset's table to `…/Processed`).
    ///
    /// Fails with [`SasError::InvalidResponse`] (in [`Error::Sas`]) when neither holds a Delta log, or when
    /// several folders below do.
    pub async fn delta_table_url(&self) -> Result<url::Url, Error> {
        let listing = |e: object_store::Error| {
            Error::Sas(SasError::InvalidResponse(format!(
                "the dataset's folder could not be listed: {e}"
            )))
        };
        let top = self.list_with_delimiter(None).await.map_err(listing)?;
        let is_log = |p: &Path| p.filename() == Some("_delta_log");
        if top.common_prefixes.iter().any(is_log) {
            return Ok(self.abfss_url(""));
        }
        let mut tables = Vec::new();
        for folder in &top.common_prefixes {
            let below = self
                .list_with_delimiter(Some(folder))
                .await
                .map_err(listing)?;
            if below.common_prefixes.iter().any(is_log) {
                tables.push(folder.clone());
            }
        }
        match tables.as_slice() {
            [table] => Ok(self.abfss_url(table.as_ref())),
            [] => Err(Error::Sas(SasError::InvalidResponse(format!(
                "no Delta table (`_delta_log/`) in {self} nor in a folder just below it"
            )))),
            _ => Err(Error::Sas(SasError::InvalidResponse(format!(
                "several Delta tables below {self}: {}; open the one meant with `abfss_url`",
                tables
                    .iter()
                    .map(Path::as_ref)
                    .collect::<Vec<_>>()
                    .join(", ")
            )))),
        }
    }

    /// `location` in the container.
    fn full(&self, location: &Path) -> Path {
        full(&self.root, location)
    }

    /// A listing's entry, relative to the folder.
    fn relative_meta(root: &Path, mut meta: ObjectMeta) -> ObjectMeta {
        meta.location = relative(root, meta.location);
        meta
    }

    /// The same error, naming the caller's path rather than the container's.
    fn relative_error(root: &Path, error: object_store::Error) -> object_store::Error {
        use object_store::Error as E;
        let rel = |path: String| {
            let prefix = format!("{root}{}", object_store::path::DELIMITER);
            match path.strip_prefix(&prefix) {
                Some(rest) if !root.as_ref().is_empty() => rest.to_owned(),
                _ => path,
            }
        };
        match error {
            E::NotFound { path, source } => E::NotFound {
                path: rel(path),
                source,
            },
            E::AlreadyExists { path, source } => E::AlreadyExists {
                path: rel(path),
                source,
            },
            E::Precondition { path, source } => E::Precondition {
                path: rel(path),
                source,
            },
            E::NotModified { path, source } => E::NotModified {
                path: rel(path),
                source,
            },
            E::PermissionDenied { path, source } => E::PermissionDenied {
                path: rel(path),
                source,
            },
            E::Unauthenticated { path, source } => E::Unauthenticated {
                path: rel(path),
                source,
            },
            other => other,
        }
    }

    /// A listing stream, relative to the folder.
    fn relative_stream(
        &self,
        stream: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let root = self.root.clone();
        stream
            .map(move |entry| match entry {
                Ok(meta) => Ok(Self::relative_meta(&root, meta)),
                Err(e) => Err(Self::relative_error(&root, e)),
            })
            .boxed()
    }

    fn err(&self, error: object_store::Error) -> object_store::Error {
        Self::relative_error(&self.root, error)
    }
}

/// `location` under `root`.
fn full(root: &Path, location: &Path) -> Path {
    if root.as_ref().is_empty() {
        return location.clone();
    }
    root.parts().chain(location.parts()).collect()
}

/// `path` relative to `root`, when it lies under it.
fn relative(root: &Path, path: Path) -> Path {
    let rest: Option<Path> = path.prefix_match(root).map(Iterator::collect);
    rest.unwrap_or(path)
}

impl fmt::Display for SasStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SasStore({}/{}/{})",
            self.location.account, self.location.container, self.root
        )
    }
}

impl fmt::Debug for SasStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SasStore")
            .field("account", &self.location.account)
            .field("container", &self.location.container)
            .field("root", &self.root.as_ref())
            .field("url", &self.url.as_str())
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
        let full = self.full(location);
        self.azure
            .put_opts(&full, payload, opts)
            .await
            .map_err(|e| self.err(e))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let full = self.full(location);
        self.azure
            .put_multipart_opts(&full, opts)
            .await
            .map_err(|e| self.err(e))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let full = self.full(location);
        let mut result = self
            .azure
            .get_opts(&full, options)
            .await
            .map_err(|e| self.err(e))?;
        result.meta.location = location.clone();
        Ok(result)
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let full = self.full(location);
        self.azure
            .get_ranges(&full, ranges)
            .await
            .map_err(|e| self.err(e))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let (into, back) = (self.root.clone(), self.root.clone());
        let locations = locations.map_ok(move |p| full(&into, &p)).boxed();
        self.azure
            .delete_stream(locations)
            .map(move |done| match done {
                Ok(p) => Ok(relative(&back, p)),
                Err(e) => Err(Self::relative_error(&back, e)),
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let prefix = self.full(&prefix.cloned().unwrap_or_default());
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        self.relative_stream(self.azure.list(prefix.as_ref()))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        if self.location.loopback {
            // The storage emulator ignores Azure's `startFrom` (object_store skips it only
            // when it knows the endpoint is the emulator, which a SAS store cannot say): filter
            // here, as object_store does for the emulator.
            let offset = offset.clone();
            return self
                .list(prefix)
                .try_filter(move |meta| futures_util::future::ready(meta.location > offset))
                .boxed();
        }
        let prefix = self.full(&prefix.cloned().unwrap_or_default());
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let offset = self.full(offset);
        self.relative_stream(self.azure.list_with_offset(prefix.as_ref(), &offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let prefix = self.full(&prefix.cloned().unwrap_or_default());
        let prefix = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut listed = self
            .azure
            .list_with_delimiter(prefix.as_ref())
            .await
            .map_err(|e| self.err(e))?;
        listed.objects = std::mem::take(&mut listed.objects)
            .into_iter()
            .map(|meta| Self::relative_meta(&self.root, meta))
            .collect();
        listed.common_prefixes = std::mem::take(&mut listed.common_prefixes)
            .into_iter()
            .map(|p| relative(&self.root, p))
            .collect();
        Ok(listed)
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (from, to) = (self.full(from), self.full(to));
        self.azure
            .copy_opts(&from, &to, options)
            .await
            .map_err(|e| self.err(e))
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let (from, to) = (self.full(from), self.full(to));
        self.azure
            .rename_opts(&from, &to, options)
            .await
            .map_err(|e| self.err(e))
    }
}

// === impl ReplayRefused ===

impl HttpConnector for ReplayRefused {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(ReplayingClient {
            inner: ReqwestConnector::default().connect(options)?,
            sas: self.sas.clone(),
        }))
    }
}

#[async_trait]
impl HttpService for ReplayingClient {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let Some(sig) = blob::signature(request.uri()) else {
            return self.inner.execute(request).await;
        };
        // The body is `Bytes` or a `PutPayload`: a copy is a reference count.
        let mut again = http::Request::new(request.body().clone());
        *again.method_mut() = request.method().clone();
        *again.uri_mut() = request.uri().clone();
        *again.headers_mut() = request.headers().clone();
        *again.version_mut() = request.version();

        let response = self.inner.execute(request).await?;
        if Refusal::of(response.status(), response.headers()) != Refusal::Sas {
            return Ok(response);
        }
        let Some(sas) = self.sas.after_refusal(&sig).await else {
            return Ok(response);
        };
        let Some(uri) = resign_request(&mut again, &sas) else {
            return Ok(response);
        };
        *again.uri_mut() = uri;
        drop(response);
        self.sas.count_replay();
        tracing::debug!(
            target: "veracity_auth::sas",
            generation = sas.generation().get(),
            "storage refused the SAS: the request is sent again with a new one"
        );
        self.inner.execute(again).await
    }
}

/// The request's URI signed with `sas`, and its copy source's too (a copy names its source
/// by a URL with the SAS in it).
fn resign_request(request: &mut HttpRequest, sas: &Sas) -> Option<http::Uri> {
    const COPY_SOURCE: &str = "x-ms-copy-source";
    if let Some(source) = request.headers().get(COPY_SOURCE) {
        let source: http::Uri = source.to_str().ok()?.parse().ok()?;
        let source = blob::resign(&source, sas.query_pairs())?;
        let value = http::HeaderValue::from_str(&source.to_string()).ok()?;
        request.headers_mut().insert(COPY_SOURCE, value);
    }
    blob::resign(request.uri(), sas.query_pairs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_the_root_and_come_back_relative() {
        let root = Path::from("datasets/d1");
        let full = full(&root, &Path::from("_delta_log/0.json"));
        assert_eq!(full.as_ref(), "datasets/d1/_delta_log/0.json");
        assert_eq!(relative(&root, full).as_ref(), "_delta_log/0.json");
        assert_eq!(
            super::full(&Path::default(), &Path::from("a/b")).as_ref(),
            "a/b"
        );
        let error = SasStore::relative_error(
            &root,
            object_store::Error::NotFound {
                path: "datasets/d1/part-0.parquet".into(),
                source: "gone".into(),
            },
        );
        assert!(
            matches!(&error, object_store::Error::NotFound { path, .. } if path == "part-0.parquet"),
            "{error:?}"
        );
    }
}

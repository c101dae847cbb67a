//! [`StorageSas`]: a Data Workbench storage SAS that renews itself, with the bearer token's
//! guarantees.
//!
//! Data Workbench keeps a workspace's data in Azure storage, and hands out a SAS (a shared
//! access signature) for a dataset's folder or for a File storage, for a lifetime the caller
//! chooses, with no refresh call: renewing means asking again. A [`StorageSas`] asks through
//! an [`Authenticator`] and keeps the current SAS in the same cache the bearer token uses
//! (`cache::expiring`): single flight, refresh ahead of expiry with jitter, backoff on
//! failures, a failed refresh never evicting a valid SAS, and a SAS never handed out in its
//! last margin. Its expiry is the earlier of what was asked for and the `se=` it came back
//! with.
//!
//! Here: the credential, its builder and its source; [`wire`]: the request and the answer;
//! `object_store` (feature `object-store`): the store over it.

use std::{
    fmt,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use crate::{
    Authenticator, ConfigError, Error, Generation, HttpClient, SasError,
    cache::{
        CachePolicy,
        expiring::{Cached, CredentialSource, ExpiringCache, Fetched},
    },
    rejection,
    source::{check_scheme, client_or_default, is_loopback},
};
use wire::{Answer, Target};

#[cfg(any(feature = "object-store", feature = "object-store-013"))]
mod blob;
mod wire;

pub use wire::SasAccess;

#[cfg(feature = "object-store-013")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store-013")))]
pub mod object_store_0_13;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub mod object_store_0_14;

/// The default lifetime asked for: one hour.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A Data Workbench storage SAS that renews itself: for a dataset's folder (read-only) or
/// a File storage (read or write). Cheap to clone; clones share one SAS.
///
/// [`current`](Self::current) gives a SAS valid for at least the safety margin: the cached
/// one, or one fetched now (one fetch however many callers ask at once). A background
/// refresh replaces it before it expires, so in steady state nobody waits. Any storage
/// client can use it: the SAS's resource URI and query pairs are all it needs. With feature
/// `object-store` or `object-store-013`, a `SasStore` is an `object_store::ObjectStore` over it.
///
/// ```no_run
/// # async fn run() -> Result<(), veracity_auth::Error> {
/// use std::time::Duration;
/// use veracity_auth::{Authenticator, ClientCredentials, StorageSas};
///
/// let auth = Authenticator::builder(ClientCredentials::from_env()?).api_key("key").build()?;
/// let sas = StorageSas::dataset(&auth, "workspace-id", "dataset-id")
///     .lifetime(Duration::from_secs(15 * 60)).build()?;
/// let current = sas.current().await?;
/// println!("{} with {} query pairs", current.resource_uri(), current.query_pairs().len());
/// # Ok(())
/// # }
/// ```
///
/// A SAS is a secret: `Debug` shows the resource and the expiry, never the signature, and
/// errors carry no SAS.
///
/// # Clients that cache a SAS themselves: polars
///
/// polars 0.55 takes no store but a credential function, and reuses its answer until the
/// expiry it is given. Give it [`Sas::valid_until`]. Its future must be `Sync`, which
/// `current()`'s is not, hence the task. (A recipe, not tested here: polars' build does not
/// fit this crate's CI.)
///
/// ```ignore
/// let provider = PlCredentialProvider::from_func(move || {
///     let sas = sas.clone();
///     Box::pin(async move {
///         let current = tokio::spawn(async move { sas.current().await })
///             .await
///             .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?
///             .map_err(|e| PolarsError::ComputeError(e.to_string().into()))?;
///         let until = current.valid_until().duration_since(UNIX_EPOCH).unwrap_or_default();
///         // object_store 0.13's AzureCredential, as polars 0.55 uses it.
///         let credential = AzureCredential::SASToken(current.query_pairs().to_vec());
///         Ok((ObjectStoreCredential::Azure(Arc::new(credential)), until.as_secs()))
///     })
/// });
/// let options = CloudOptions::default().with_credential_provider(Some(provider));
/// ```
#[derive(Clone)]
pub struct StorageSas {
    cache: Arc<ExpiringCache<SasSource>>,
}

/// Configures a [`StorageSas`]; from [`StorageSas::dataset`] or [`StorageSas::storage`].
#[derive(Clone)]
pub struct StorageSasBuilder {
    authenticator: Authenticator,
    target: Target,
    lifetime: Duration,
    gateway: String,
    client: Option<HttpClient>,
    config: CachePolicy,
}

/// One SAS: its resource URI and its query pairs. Cheap to clone. `Debug` never shows the
/// signature.
#[derive(Clone)]
pub struct Sas {
    cached: Arc<Cached<Answer>>,
}

/// What a [`StorageSas`] fetches with: the authenticator, the target, the lifetime asked
/// for, the request URI (built once, by the builder) and the HTTP client.
struct SasSource {
    authenticator: Authenticator,
    target: Target,
    lifetime: Duration,
    uri: http::Uri,
    client: HttpClient,
}

// === impl StorageSas ===

impl StorageSas {
    /// A read-only SAS for a dataset's folder
    /// (`GET /api/v2/workspaces/{workspace}/datasets/{dataset}/sas`).
    pub fn dataset(
        authenticator: &Authenticator,
        workspace: impl Into<String>,
        dataset: impl Into<String>,
    ) -> StorageSasBuilder {
        StorageSasBuilder::new(
            authenticator,
            Target::Dataset {
                workspace: workspace.into(),
                dataset: dataset.into(),
            },
        )
    }

    /// A SAS for the workspace's File storage (`POST /api/v2/workspaces/{workspace}/storages/sas`):
    /// the default storage's container root unless [`storage_name`](StorageSasBuilder::storage_name)
    /// and [`path`](StorageSasBuilder::path) say otherwise.
    pub fn storage(
        authenticator: &Authenticator,
        workspace: impl Into<String>,
        access: SasAccess,
    ) -> StorageSasBuilder {
        StorageSasBuilder::new(
            authenticator,
            Target::Storage {
                workspace: workspace.into(),
                storage_name: None,
                path: None,
                access,
            },
        )
    }

    /// A SAS valid for at least the safety margin: the cached one, or one fetched now (a
    /// single flight shared by every caller). Past the refresh point it answers with the
    /// cached SAS and starts a background refresh.
    pub async fn current(&self) -> Result<Sas, Error> {
        let now = Instant::now();
        if let Some(cached) = self.cache.get(now) {
            return Ok(Sas { cached });
        }
        let cached = self.cache.acquire().await?;
        Ok(Sas { cached })
    }

    /// Storage refused `sas` (HTTP 403: its policy was revoked, or its signature is no
    /// longer accepted): drop it, if it is still the current SAS, and start fetching a new
    /// one, at most once per [`rejection_interval`](crate::CachePolicy::rejection_interval).
    /// The next [`current`](Self::current) waits for it. A `SasStore` calls this itself.
    pub fn rejected(&self, sas: &Sas) {
        // The decision (a newer SAS, a fetch to wait for, or none yet) is for the next
        // `current`: a started fetch runs on without this caller.
        drop(self.cache.refresh_rejected(sas.cached.generation));
    }

    /// What this SAS has done so far: SAS requests, failures, renewals after a refusal, and
    /// storage requests sent again with a new SAS.
    pub fn stats(&self) -> SasStats {
        let all = self.cache.counters().snapshot();
        SasStats {
            fetches: all.fetches,
            fetch_failures: all.fetch_failures,
            waits: all.waits,
            fast_failures: all.fast_failures,
            renewals_after_refusal: all.replay_refreshes,
            replays: all.replays,
        }
    }

    /// Storage refused a request signed with `sig` for its SAS: the SAS to send it again
    /// with, or `None` to hand the refusal on. A newer SAS than the refused one is used as
    /// it is; the current one is replaced (one fetch for every request refused at once, at
    /// most one per rejection interval).
    #[cfg(any(feature = "object-store", feature = "object-store-013"))]
    pub(crate) async fn after_refusal(&self, sig: &str) -> Option<Sas> {
        let signed_by =
            |cached: &Cached<Answer>| cached.query.iter().any(|(k, v)| k == "sig" && v == sig);
        match self.cache.usable(Instant::now()) {
            Some(cached) if !signed_by(&cached) => Some(Sas { cached }),
            Some(cached) => {
                let fetch = self.cache.refresh_rejected(cached.generation)?;
                fetch.await.ok().map(|cached| Sas { cached })
            }
            // Dropped by another refusal (its fetch is under way), or expired.
            None => self.current().await.ok(),
        }
    }

    /// A storage request was sent again with a new SAS.
    #[cfg(any(feature = "object-store", feature = "object-store-013"))]
    pub(crate) fn count_replay(&self) {
        crate::stats::Counters::bump(&self.cache.counters().replays);
    }
}

/// What a [`StorageSas`] has done, from [`StorageSas::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SasStats {
    /// SAS requests started (the first, renewals ahead of expiry, retries, after refusals).
    pub fetches: u64,
    /// SAS requests that failed.
    pub fetch_failures: u64,
    /// Callers that had to wait for a SAS request (in steady state this stays put).
    pub waits: u64,
    /// Callers failed at once with the last error while SAS requests back off.
    pub fast_failures: u64,
    /// New SAS asked for because storage refused the current one
    /// ([`StorageSas::rejected`], or a [`SasStore`](object_store_0_14::SasStore) seeing the refusal).
    pub renewals_after_refusal: u64,
    /// Storage requests a store sent again, once each, with a new SAS after a refusal.
    pub replays: u64,
}

impl fmt::Debug for StorageSas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSas")
            .field("target", &self.cache.source().target.describe())
            .field("lifetime", &self.cache.source().lifetime)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

// === impl StorageSasBuilder ===

impl StorageSasBuilder {
    fn new(authenticator: &Authenticator, target: Target) -> Self {
        StorageSasBuilder {
            authenticator: authenticator.clone(),
            target,
            lifetime: DEFAULT_LIFETIME,
            gateway: wire::DEFAULT_GATEWAY.to_owned(),
            client: None,
            config: CachePolicy {
                // A fetch is a gateway call that may itself wait for a token.
                rejection_interval: Duration::from_secs(5),
                ..CachePolicy::default()
            },
        }
    }

    /// How long each SAS is asked to live (default 1 hour). A dataset's SAS is asked for in
    /// whole minutes, rounded up. Storage may answer with an earlier `se=`: the earlier wins.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// The File storage to ask for, by `storageName` (default: the workspace's default
    /// storage). Ignored for a dataset.
    pub fn storage_name(mut self, name: impl Into<String>) -> Self {
        if let Target::Storage { storage_name, .. } = &mut self.target {
            *storage_name = Some(name.into());
        }
        self
    }

    /// The path in the File storage the SAS is for (default: the container root). Ignored
    /// for a dataset.
    pub fn path(mut self, value: impl Into<String>) -> Self {
        if let Target::Storage { path, .. } = &mut self.target {
            *path = Some(value.into());
        }
        self
    }

    /// The Data Workbench gateway (default `https://api.veracity.com/veracity/dw/gateway`):
    /// HTTPS, or plain HTTP to loopback (a mock). The API's base URL, with `/api/v2` or
    /// `/api/v1` at its end, names the same gateway.
    pub fn gateway(mut self, url: impl Into<String>) -> Self {
        let url = url.into();
        let base = url.trim_end_matches('/');
        let base = base
            .strip_suffix("/api/v2")
            .or_else(|| base.strip_suffix("/api/v1"))
            .unwrap_or(base);
        self.gateway = base.to_owned();
        self
    }

    /// The HTTP client SAS requests go through (default: the crate's HTTPS client, feature
    /// `default-client`).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// How the SAS is cached (see [`CachePolicy`]). The default is
    /// `CachePolicy::default().rejection_interval(5 s)`: a new SAS after a refusal is one
    /// gateway call.
    pub fn cache_policy(mut self, policy: CachePolicy) -> Self {
        self.config = policy;
        self
    }

    /// The SAS credential, with nothing fetched yet; or a [`ConfigError`] naming an unusable
    /// setting (a zero lifetime, a gateway that is not HTTPS or loopback HTTP, a cache policy
    /// the cache cannot work with, no HTTP client without the `default-client` feature).
    pub fn build(self) -> Result<StorageSas, ConfigError> {
        if self.lifetime.is_zero() {
            return Err(ConfigError::Sas(
                "the SAS `lifetime` must not be zero".into(),
            ));
        }
        let gateway: http::Uri = self.gateway.parse().map_err(|_| {
            ConfigError::Sas(format!(
                "the SAS gateway `{}` is not a URL",
                crate::redact::url(&self.gateway)
            ))
        })?;
        // Plain HTTP only to loopback (a mock gateway).
        check_scheme(&gateway, is_loopback(&gateway))?;
        self.config.check()?;
        let (uri, lifetime) = self.target.uri(&self.gateway, self.lifetime)?;
        let client = client_or_default(
            self.client.as_ref(),
            "call `StorageSasBuilder::http_client`",
        )?
        .clone();
        let source = SasSource {
            authenticator: self.authenticator,
            target: self.target,
            lifetime,
            uri,
            client,
        };
        Ok(StorageSas {
            cache: Arc::new(ExpiringCache::new(source, self.config)),
        })
    }
}

impl fmt::Debug for StorageSasBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageSasBuilder")
            .field("target", &self.target.describe())
            .field("lifetime", &self.lifetime)
            .field("gateway", &crate::redact::url(&self.gateway))
            .finish_non_exhaustive()
    }
}

// === impl Sas ===

impl Sas {
    /// The resource the SAS is for, without a query:
    /// `https://<account>.dfs.core.windows.net/<container>/<path>`.
    pub fn resource_uri(&self) -> &str {
        &self.cached.resource
    }

    /// The SAS's query pairs, percent-decoded (`sv`, `se`, `sp`, `sr`, `sig`, ...): what a
    /// storage client appends to every request. **Secret**: `sig` is the signature.
    pub fn query_pairs(&self) -> &[(String, String)] {
        &self.cached.query
    }

    /// The resource URI with the SAS query, as Data Workbench handed it out. **Secret.**
    pub fn signed_url(&self) -> String {
        let query = serde_urlencoded::to_string(&self.cached.query).unwrap_or_default();
        format!("{}?{query}", self.cached.resource)
    }

    /// The URL of `path` under the SAS's resource, each segment percent-encoded, with the
    /// SAS query: what `curl`, DuckDB or azcopy fetch a file by. **Secret.**
    pub fn file_url(&self, path: &str) -> String {
        let mut url = self.cached.resource.trim_end_matches('/').to_owned();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            url.push('/');
            url.extend(percent_encoding::utf8_percent_encode(
                segment,
                wire::SEGMENT,
            ));
        }
        let query = serde_urlencoded::to_string(&self.cached.query).unwrap_or_default();
        format!("{url}?{query}")
    }

    /// The SAS's `se=` expiry, when it names one.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.cached.expires_at
    }

    /// The last moment [`StorageSas::current`] hands this SAS out: its expiry less the
    /// safety margin. The expiry to give a client that caches a SAS itself (polars' credential
    /// function, DuckDB's secrets): asked again after it, `current` has a renewed one.
    pub fn valid_until(&self) -> SystemTime {
        SystemTime::now()
            + self
                .cached
                .usable_until
                .saturating_duration_since(Instant::now())
    }

    /// Which SAS of this credential it is: 1 for the first fetched, then 2, 3, ...
    pub fn generation(&self) -> Generation {
        Generation::of(self.cached.generation)
    }
}

impl fmt::Debug for Sas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sas")
            .field("resource", &self.cached.resource)
            .field("expires_at", &self.cached.expires_at.map(wire::iso_8601))
            .field("generation", &self.cached.generation)
            .field("sig", &crate::redact::REDACTED)
            .finish()
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("resource", &self.resource)
            .field("expires_at", &self.expires_at.map(wire::iso_8601))
            .finish_non_exhaustive()
    }
}

// === impl SasSource ===

impl fmt::Debug for SasSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.target.describe())
    }
}

/// Most bytes read of the gateway's answer: a SAS URI is a few hundred.
const MAX_ANSWER: usize = 64 * 1024;

impl CredentialSource for SasSource {
    type Credential = Answer;

    const CREDENTIAL: &'static str = "storage SAS";

    fn name(&self) -> &'static str {
        "storage SAS"
    }

    fn ready(&self) -> Option<Result<Fetched<Answer>, Error>> {
        None
    }

    async fn fetch(&self) -> Result<Fetched<Answer>, Error> {
        let headers = self.authenticator.headers().await?;
        let started = SystemTime::now();
        let mut request = self.target.request(&self.uri, self.lifetime, started);
        headers.insert_into(request.headers_mut());
        let response = self.client.send(request, MAX_ANSWER).await?;
        // A rejected token: the next fetch gets a new one (a wrong API key gets none).
        drop(rejection::renewal(
            &self.authenticator,
            headers.generation(),
            response.status(),
            response.headers(),
        ));
        let answer = wire::parse(&response)?;
        // The earlier of what was asked for and what storage will honour.
        let lifetime = match answer.expires_at {
            Some(se) => match se.duration_since(SystemTime::now()) {
                Ok(left) if !left.is_zero() => self.lifetime.min(left),
                _ => {
                    return Err(Error::Sas(SasError::InvalidResponse(format!(
                        "a SAS that had already expired (se={}) for {}",
                        wire::iso_8601(se),
                        self.target.describe()
                    ))));
                }
            },
            None => self.lifetime,
        };
        tracing::debug!(
            target: "veracity_auth::sas",
            target_name = %self.target.describe(),
            lifetime_s = lifetime.as_secs(),
            "SAS fetched"
        );
        Ok(Fetched {
            credential: answer,
            lifetime: Some(lifetime),
        })
    }
}

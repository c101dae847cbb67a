//! [`HttpClientBuilder`]: the default token client with a chosen proxy and root certificates.

use std::{fmt, sync::LazyLock};

use crate::{ConfigError, HttpClient, proxy::ProxySetting, roots::Roots};

/// Builds the default token client (hyper-util over rustls with the `ring` provider,
/// HTTP/1.1; plain HTTP too, for loopback token URLs): which proxy, which roots.
///
/// Proxy settings belong to the HTTP client, not to a grant: one client serves
/// [`ClientCredentials`](crate::ClientCredentials), [`RefreshToken`](crate::RefreshToken)
/// and `SignIn` alike through [`TokenEndpoint::http_client`](crate::TokenEndpoint::http_client),
/// and a client you bring yourself ([`HttpClient::new`]) is proxied by its own connector.
///
/// By default the proxy comes from the environment, read when [`build`](Self::build) runs:
/// `HTTPS_PROXY` for HTTPS token URLs, `HTTP_PROXY` for plain-HTTP (loopback) ones,
/// `ALL_PROXY` for both, `NO_PROXY` for the exceptions, each also in lowercase, following
/// curl's rules (hyper-util's [`Matcher`](hyper_util::client::proxy::matcher::Matcher)):
/// `NO_PROXY=*` sends every request direct, to host names and IP addresses alike.
/// [`proxy`](Self::proxy) and [`no_proxy`](Self::no_proxy) replace the environment.
///
/// Every destination the proxy serves is reached through an HTTP `CONNECT` tunnel (TLS to
/// the token endpoint runs inside it), with `Proxy-Authorization: Basic` when the proxy URL
/// carries `user:password@`. Only `http://` proxies are supported. The credentials never
/// show in `Debug`, logs or errors; an error from the proxy names it as `http://host:port`.
///
/// ```
/// use veracity_auth::{ClientCredentials, DEFAULT_TOKEN_URL, HttpClient, TokenEndpoint};
///
/// let client = HttpClient::builder()
///     .proxy("http://user:password@proxy.corp.example:3128")
///     .build()?;
/// let endpoint = TokenEndpoint::new(DEFAULT_TOKEN_URL)?.http_client(client);
/// let creds = ClientCredentials::new("id", "secret").endpoint(endpoint);
/// # Ok::<(), veracity_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct HttpClientBuilder {
    proxy: ProxySetting,
    bypass: String,
    tls: Tls,
}

#[derive(Clone)]
enum Tls {
    Roots(Roots),
    Store(rustls::RootCertStore),
    Config(Box<rustls::ClientConfig>),
}

impl HttpClientBuilder {
    pub(crate) fn new() -> Self {
        HttpClientBuilder {
            proxy: ProxySetting::Env,
            bypass: String::new(),
            tls: Tls::Roots(Roots::default()),
        }
    }

    /// Sends every token request through the HTTP proxy at `url`
    /// (`http://[user:password@]host:port`, percent-encoded), whatever the environment says.
    /// A URL that is not a usable `http://` proxy URL fails [`build`](Self::build), naming it.
    pub fn proxy(mut self, url: impl Into<String>) -> Self {
        self.proxy = ProxySetting::Explicit(url.into());
        self
    }

    /// Destinations the [`proxy`](Self::proxy) does not serve, in `NO_PROXY` syntax:
    /// comma-separated host names (each also matching its subdomains), IP addresses or
    /// networks (`10.0.0.0/8`), or `*` for every destination (then nothing is proxied, though
    /// the proxy URL must still be a usable one). Only used with an explicit proxy.
    pub fn proxy_bypass(mut self, no_proxy: impl Into<String>) -> Self {
        self.bypass = no_proxy.into();
        self
    }

    /// Connects straight to the token endpoint, whatever the environment says.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = ProxySetting::Direct;
        self
    }

    /// Which root certificates to trust: the webpki roots (default without feature
    /// `native-roots`), the operating system's, or both (default with it).
    pub fn roots(mut self, roots: Roots) -> Self {
        self.tls = Tls::Roots(roots);
        self
    }

    /// Trusts exactly `roots` (a private CA, a test server): replaces [`roots`](Self::roots).
    pub fn root_certificates(mut self, roots: rustls::RootCertStore) -> Self {
        self.tls = Tls::Store(roots);
        self
    }

    /// Your own rustls configuration (roots, verifier, client certificate, provider):
    /// replaces [`roots`](Self::roots). ALPN is set by the client; any in `config` is replaced.
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = Tls::Config(Box::new(config));
        self
    }

    /// The client. Reads the proxy environment variables and loads the roots now; fails with
    /// [`ConfigError::Proxy`] for a [`proxy`](Self::proxy) URL that is not a usable `http://` one.
    pub fn build(self) -> Result<HttpClient, ConfigError> {
        let routes = self.proxy.routes(&self.bypass)?;
        Ok(connect(routes, self.tls))
    }
}

/// The process's default client ([`HttpClient::default_https`]), built on first use.
pub(crate) fn default_client() -> &'static HttpClient {
    static DEFAULT: LazyLock<HttpClient> = LazyLock::new(|| {
        // The environment's proxy settings are taken as they are: nothing to refuse.
        connect(crate::proxy::env_routes(), Tls::Roots(Roots::default()))
    });
    &DEFAULT
}

/// The hyper-util client over rustls (`ring`) routing through `routes`.
fn connect(routes: crate::proxy::Routes, tls: Tls) -> HttpClient {
    let mut config = match tls {
        Tls::Config(config) => *config,
        Tls::Roots(roots) => ring_config_builder()
            .with_root_certificates(roots.load())
            .with_no_client_auth(),
        Tls::Store(store) => ring_config_builder()
            .with_root_certificates(store)
            .with_no_client_auth(),
    };
    config.alpn_protocols.clear();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let connector = crate::proxy::ProxyConnector::new(routes, http);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_or_http()
        .enable_http1()
        .wrap_connector(connector);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        // No idle connection is kept: its task runs on the runtime that opened it, and
        // a request of another runtime sent through it waits as long as that runtime
        // is idle (a sync wrapper's `block_on` returned). Token requests are rare.
        .pool_max_idle_per_host(0)
        .build(https);
    HttpClient::new(client)
}

// === impl HttpClient: the default client's constructors ===

/// The constructors of the default client live with it, so `http_client` (any client) knows
/// nothing of the default one and imports run one way.
impl HttpClient {
    /// The default HTTPS client, one per process, built on first use: hyper-util + rustls
    /// (`ring`, webpki roots, and the platform's with feature `native-roots`), through the
    /// proxy the environment names (`HTTPS_PROXY`, `NO_PROXY`, ...) when it was built. What a
    /// [`TokenEndpoint`](crate::TokenEndpoint) uses unless given another.
    ///
    /// The rustls configuration names its crypto provider (`ring`) instead of asking for the
    /// process default, so an application that also links rustls' `aws-lc-rs` provider
    /// (reqwest 0.13, hyper-rustls and tonic with their default TLS features do) works the
    /// same, whether or not it installs a process default.
    pub fn default_https() -> Self {
        default_client().clone()
    }

    /// A client like the default one with a chosen proxy, root certificates or rustls
    /// configuration: see [`HttpClientBuilder`](HttpClientBuilder).
    ///
    /// ```
    /// use veracity_auth::{HttpClient, TokenEndpoint};
    ///
    /// let mut roots = rustls::RootCertStore::empty();
    /// // roots.add(ca_certificate)?;
    /// let client = HttpClient::builder().root_certificates(roots).build()?;
    /// let endpoint = TokenEndpoint::new("https://login.example.internal/oauth2/token")?
    ///     .http_client(client);
    /// # Ok::<(), veracity_auth::Error>(())
    /// ```
    pub fn builder() -> HttpClientBuilder {
        HttpClientBuilder::new()
    }
}

impl fmt::Debug for HttpClientBuilder {
    // The proxy URL may carry a password: only its scheme, host and port show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = match &self.tls {
            Tls::Roots(roots) => format!("{roots:?}"),
            Tls::Store(store) => format!("{} root certificates", store.len()),
            Tls::Config(_) => "custom rustls configuration".to_owned(),
        };
        f.debug_struct("HttpClientBuilder")
            .field("proxy", &self.proxy)
            .field("proxy_bypass", &self.bypass)
            .field("tls", &tls)
            .finish()
    }
}

/// A rustls client configuration builder on the `ring` provider with rustls' safe default
/// protocol versions: never the process-default provider, which panics when the application
/// links two providers and installs neither.
fn ring_config_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports TLS 1.2 and 1.3")
}

//! Proxies for the default token client: which destinations go through which proxy is
//! decided by hyper-util's [`Matcher`] (the curl rules for `HTTPS_PROXY`, `HTTP_PROXY`,
//! `ALL_PROXY`, `NO_PROXY` and their lowercase forms, or values given explicitly), and the
//! CONNECT tunnel is hyper-util's [`Tunnel`]. This module only routes between the two and
//! names the proxy, without its credentials, when it fails. One rule is its own: a `*` entry
//! in the bypass list sends everything direct, IP addresses included, as curl does (the
//! matcher applies `*` to host names only).

use std::{fmt, future::Future, pin::Pin, sync::Arc, task};

use http::Uri;
use hyper_util::client::{
    legacy::connect::{Connection, proxy::Tunnel},
    proxy::matcher::{Intercept, Matcher},
};
use tower_service::Service;

use crate::{BoxError, ConfigError, redact};

/// Where the proxy settings of a default client come from.
#[derive(Clone)]
pub(crate) enum ProxySetting {
    /// The environment, read when the client is built.
    Env,
    /// One proxy for every destination except those a `NO_PROXY`-style list names.
    Explicit(String),
    /// Straight to every destination.
    Direct,
}

impl ProxySetting {
    /// The routing this setting asks for. An explicit URL that cannot be used (not an
    /// `http://` proxy) is a configuration error naming it, never a silent direct route. A
    /// bypass list (explicit, or `NO_PROXY`) with a `*` entry sends everything direct.
    pub(crate) fn routes(&self, bypass: &str) -> Result<Routes, ConfigError> {
        match self {
            ProxySetting::Env => Ok(env_routes()),
            ProxySetting::Direct => Ok(Routes::Direct),
            ProxySetting::Explicit(url) => {
                // The URL alone: every destination gets this proxy unless it is unusable.
                let probe = Matcher::builder()
                    .all(url.as_str())
                    .build()
                    .intercept(&Uri::from_static("https://proxy.check.invalid/"));
                if probe.is_none_or(|i| i.uri().scheme_str() != Some("http")) {
                    return Err(ConfigError::Proxy(format!(
                        "the proxy URL {} is not a usable proxy URL (`http://[user:password@]host:port`)",
                        redact::proxy_url(url)
                    )));
                }
                Ok(if bypasses_all(bypass) {
                    Routes::Direct
                } else {
                    Routes::Matcher(Arc::new(
                        Matcher::builder().all(url.as_str()).no(bypass).build(),
                    ))
                })
            }
        }
    }
}

/// The routing the proxy environment variables ask for, read now.
pub(crate) fn env_routes() -> Routes {
    if bypasses_all(&no_proxy_env()) {
        Routes::Direct
    } else {
        Routes::Matcher(Arc::new(Matcher::from_env()))
    }
}

/// `NO_PROXY`, or else `no_proxy`, as hyper-util's [`Matcher::from_env`] reads it.
fn no_proxy_env() -> String {
    ["NO_PROXY", "no_proxy"]
        .into_iter()
        .find_map(|name| std::env::var(name).ok())
        .unwrap_or_default()
}

/// Whether a `NO_PROXY`-style list has a `*` entry, which exempts every host (curl's rule).
/// hyper-util's matcher applies `*` to host names only, never to IP addresses.
fn bypasses_all(no_proxy: &str) -> bool {
    no_proxy.split(',').any(|entry| entry.trim() == "*")
}

impl fmt::Debug for ProxySetting {
    // The URL may carry a password: only its scheme, host and port show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxySetting::Env => f.write_str("Env"),
            ProxySetting::Direct => f.write_str("Direct"),
            ProxySetting::Explicit(url) => f
                .debug_tuple("Explicit")
                .field(&redact::proxy_url(url))
                .finish(),
        }
    }
}

#[derive(Clone)]
pub(crate) enum Routes {
    Matcher(Arc<Matcher>),
    Direct,
}

/// A connector that reaches each destination directly or through the CONNECT tunnel of the
/// proxy the matcher picks for it. TLS to the destination (hyper-rustls) wraps this
/// connector, so it runs inside the tunnel.
#[derive(Clone)]
pub(crate) struct ProxyConnector<C> {
    routes: Routes,
    inner: C,
}

impl<C> ProxyConnector<C> {
    pub(crate) fn new(routes: Routes, inner: C) -> Self {
        ProxyConnector { routes, inner }
    }
}

type Connecting<T> = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

impl<C> Service<Uri> for ProxyConnector<C>
where
    C: Service<Uri> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Response: hyper::rt::Read + hyper::rt::Write + Connection + Unpin + Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Connecting<C::Response>;

    fn poll_ready(&mut self, cx: &mut task::Context<'_>) -> task::Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let intercept = match &self.routes {
            Routes::Direct => None,
            Routes::Matcher(matcher) => matcher.intercept(&dst),
        };
        let Some(intercept) = intercept else {
            let connecting = self.inner.call(dst);
            return Box::pin(async move { connecting.await.map_err(Into::into) });
        };
        // The matcher has already taken the credentials out of the proxy's URI.
        let proxy = redact::origin(intercept.uri());
        // An explicit proxy was checked at build; the environment's is taken as it is.
        if intercept.uri().scheme_str() != Some("http") {
            return Box::pin(async move {
                Err(format!(
                    "the proxy {proxy} is not supported: only http:// proxies (CONNECT) are"
                )
                .into())
            });
        }
        // The tunnel assumes port 443 when the destination names none.
        let target = destination(&dst);
        let dst = with_port(dst, target.1);
        let mut tunnel = tunnel(&intercept, self.inner.clone());
        Box::pin(async move {
            let opened = match std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await {
                Ok(()) => tunnel.call(dst).await,
                Err(e) => Err(e),
            };
            opened.map_err(|cause| {
                Box::new(ProxyError {
                    proxy,
                    target: format!("{}:{}", target.0, target.1),
                    cause: Box::new(cause),
                }) as BoxError
            })
        })
    }
}

fn tunnel<C>(intercept: &Intercept, inner: C) -> Tunnel<C> {
    let tunnel = Tunnel::new(intercept.uri().clone(), inner);
    match intercept.basic_auth() {
        Some(auth) => tunnel.with_auth(auth.clone()),
        None => tunnel,
    }
}

/// Host and port of a destination, the port defaulting by scheme.
fn destination(dst: &Uri) -> (String, u16) {
    let port = dst
        .port_u16()
        .unwrap_or(if dst.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    (dst.host().unwrap_or("").to_owned(), port)
}

fn with_port(dst: Uri, port: u16) -> Uri {
    if dst.port().is_some() {
        return dst;
    }
    let mut parts = dst.clone().into_parts();
    let host = dst.host().unwrap_or("");
    let authority = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    match authority.parse() {
        Ok(authority) => {
            parts.authority = Some(authority);
            Uri::from_parts(parts).unwrap_or(dst)
        }
        Err(_) => dst,
    }
}

/// A proxy that could not be reached or refused the tunnel. Names the proxy, never its
/// credentials; the tunnel's own error is the source.
#[derive(Debug)]
struct ProxyError {
    proxy: String,
    target: String,
    cause: BoxError,
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the proxy {} did not open a tunnel to {}",
            self.proxy, self.target
        )
    }
}

impl std::error::Error for ProxyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_show_without_credentials() {
        let setting = ProxySetting::Explicit("http://user:s3cret@proxy.corp:3128".into());
        let shown = format!("{setting:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("user"),
            "{shown}"
        );
        assert!(shown.contains("http://proxy.corp:3128"), "{shown}");
    }

    #[test]
    fn an_unusable_explicit_proxy_is_named_not_ignored() {
        let setting = ProxySetting::Explicit("ftp://user:s3cret@proxy.corp:21".into());
        match setting.routes("") {
            Err(ConfigError::Proxy(problem)) => {
                assert!(problem.contains("ftp://proxy.corp:21"), "{problem}");
                assert!(!problem.contains("s3cret"), "{problem}");
            }
            _ => panic!("an ftp:// proxy must not be used or ignored"),
        }
    }

    #[test]
    fn a_star_entry_bypasses_every_host() {
        for list in ["*", " * ", "example.com,*", "*, 10.0.0.0/8", ",*,"] {
            assert!(bypasses_all(list), "{list:?}");
            let routes = ProxySetting::Explicit("http://proxy.corp:3128".into()).routes(list);
            assert!(matches!(routes, Ok(Routes::Direct)), "{list:?}");
        }
        for list in ["", "*.example.com", "example.com", "**", "10.*"] {
            assert!(!bypasses_all(list), "{list:?}");
        }
    }

    #[test]
    fn destinations_without_a_port_get_their_scheme_default() {
        let http = with_port(Uri::from_static("http://example.com/t"), 80);
        assert_eq!(http.to_string(), "http://example.com:80/t");
        assert_eq!(destination(&Uri::from_static("https://h/")).1, 443);
        assert_eq!(destination(&Uri::from_static("http://h/")).1, 80);
    }
}

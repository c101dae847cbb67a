//! A token endpoint as every grant reaches it (client credentials, refresh, code exchange):
//! its URL (HTTPS, or plain HTTP to loopback; never with credentials in it), the HTTP client,
//! the `User-Agent`, and the response-size cap.

use std::fmt;
#[cfg(feature = "default-client")]
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Method, Request, Response, Uri, header};

use crate::{
    Error, HttpClient,
    http_client::{Gate, TokenRequestBody},
    redact,
};

const DEFAULT_MAX_RESPONSE: usize = 64 * 1024;

/// Sent with every token request, as Veracity's own samples identify themselves.
pub(crate) const USER_AGENT: &str = concat!("veracity-auth/", env!("CARGO_PKG_VERSION"));

#[derive(Clone)]
pub(crate) struct TokenEndpoint {
    pub(crate) url: String,
    pub(crate) allow_http: bool,
    pub(crate) max_response: usize,
    pub(crate) client: ClientSlot,
}

/// The HTTP client requests go through: the one given, or else the crate's default client
/// (feature `default-client`), created on first use and shared by every clone.
#[derive(Clone, Default)]
pub(crate) struct ClientSlot {
    pub(crate) given: Option<HttpClient>,
    #[cfg(feature = "default-client")]
    default: Arc<OnceLock<HttpClient>>,
}

impl ClientSlot {
    /// The client to use; without one given and without the default client, an error
    /// saying how to give one (`how`, e.g. "call `http_client`").
    pub(crate) fn get(&self, how: &str) -> Result<&HttpClient, Error> {
        if let Some(client) = &self.given {
            return Ok(client);
        }
        #[cfg(feature = "default-client")]
        {
            let _ = how;
            Ok(self.default.get_or_init(HttpClient::default_https))
        }
        #[cfg(not(feature = "default-client"))]
        {
            Err(Error::Config(format!(
                "no HTTP client: enable the `default-client` feature or {how}"
            )))
        }
    }
}

impl TokenEndpoint {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        TokenEndpoint {
            url: url.into(),
            allow_http: false,
            max_response: DEFAULT_MAX_RESPONSE,
            client: ClientSlot::default(),
        }
    }

    /// Posts a form and reads the whole answer, refusing more than the cap. A URL that is
    /// refused (unparsable, credentials in it, plain HTTP to a remote host) sends nothing.
    pub(crate) async fn post_form(&self, form: &[(&str, &str)]) -> Result<Response<Bytes>, Error> {
        self.post_form_gated(form, None).await
    }

    /// [`post_form`](Self::post_form), the form handed out only if `gate` allows it when the
    /// client takes the body.
    pub(crate) async fn post_form_gated(
        &self,
        form: &[(&str, &str)],
        gate: Option<Gate>,
    ) -> Result<Response<Bytes>, Error> {
        let uri = self.uri()?;
        check_scheme(&uri, self.allow_http)?;
        let form = serde_urlencoded::to_string(form)
            .map_err(|_| Error::Config("the token request could not be encoded".into()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::USER_AGENT, USER_AGENT)
            .body(match gate {
                Some(gate) => TokenRequestBody::gated(Bytes::from(form), gate),
                None => TokenRequestBody::new(Bytes::from(form)),
            })
            .map_err(|_| Error::Config("the token request could not be built".into()))?;
        match self.client()?.send(request, self.max_response).await {
            Err(Error::Transport(cause)) => Err(Error::transport_to(self.redacted(), cause)),
            other => other,
        }
    }

    /// Names this endpoint (scheme, host and path) in an error about its answer, so a
    /// message says where, not only what: an OAuth error or an unusable body.
    pub(crate) fn locate(&self, error: Error) -> Error {
        match error {
            Error::OAuth(mut oauth) => {
                oauth.endpoint.get_or_insert_with(|| self.redacted());
                Error::OAuth(oauth)
            }
            Error::SignInRequired(mut oauth) => {
                oauth.endpoint.get_or_insert_with(|| self.redacted());
                Error::SignInRequired(oauth)
            }
            Error::InvalidResponse(message) => {
                Error::InvalidResponse(format!("from {}: {message}", self.redacted()))
            }
            other => other,
        }
    }

    /// The URL, parsed and checked for credentials (checked on every use, so it holds however
    /// the URL was set).
    fn uri(&self) -> Result<Uri, Error> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|_| Error::InvalidTokenUrl("it is not a valid absolute URL".into()))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(Error::InvalidTokenUrl(format!(
                "{} has credentials before its host (`name:secret@`), which are never \
                 sent: remove them from the URL",
                redact::uri(&uri)
            )));
        }
        Ok(uri)
    }

    /// Scheme, host, port and path of the URL: never userinfo, query or fragment.
    pub(crate) fn redacted(&self) -> String {
        redact::url(&self.url)
    }

    fn client(&self) -> Result<&HttpClient, Error> {
        self.client.get("call `http_client`")
    }
}

impl fmt::Debug for TokenEndpoint {
    // The URL may carry a password or a query with a code: only its harmless parts show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// HTTPS, or plain HTTP to loopback, or plain HTTP when explicitly allowed.
pub(crate) fn check_scheme(uri: &Uri, allow_http: bool) -> Result<(), Error> {
    let host = uri.host().unwrap_or("");
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if allow_http || is_loopback(host) => Ok(()),
        Some("http") => Err(Error::InsecureTokenUrl {
            host: host.to_owned(),
        }),
        _ => Err(Error::Config(
            "the token URL must be an absolute http(s) URL".into(),
        )),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        for ok in [
            "https://login.example.com/t",
            "http://127.0.0.1:1/t",
            "http://localhost/t",
            "http://[::1]:8/t",
        ] {
            assert!(check_scheme(&ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
        let err = check_scheme(&"http://login.example.com/t".parse().unwrap(), false).unwrap_err();
        assert!(matches!(err, Error::InsecureTokenUrl { .. }) && err.is_permanent());
        assert!(check_scheme(&"http://login.example.com/t".parse().unwrap(), true).is_ok());
        assert!(check_scheme(&"/relative".parse().unwrap(), true).is_err());
    }

    #[test]
    fn debug_shows_scheme_host_port_and_path_only() {
        let e =
            TokenEndpoint::new("https://user:pass@login.example.com:8443/t/oauth2/token?code=x#f");
        let d = format!("{e:?}");
        assert_eq!(d, "https://login.example.com:8443/t/oauth2/token");
        assert_eq!(
            format!("{:?}", TokenEndpoint::new("not a url")),
            "<invalid URL>"
        );
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_showing_them() {
        for url in [
            "https://user:pass@host/p",
            "https://user@host/p",
            "https://:pass@host/p",
        ] {
            let err = TokenEndpoint::new(url).uri().unwrap_err();
            assert!(matches!(err, Error::InvalidTokenUrl(_)), "{err}");
            assert!(err.is_permanent());
            let shown = format!("{err} {err:?}");
            assert!(
                !shown.contains("user") && !shown.contains("pass"),
                "{shown}"
            );
            assert!(shown.contains("https://host/p"), "{shown}");
        }
        assert!(TokenEndpoint::new("https://host/p?x=@y").uri().is_ok());
    }
}

//! [`TokenEndpoint`]: a token endpoint as every grant reaches it (client credentials, refresh,
//! code exchange): its URL, parsed and checked once, the HTTP client, the `User-Agent`, and
//! the response-size cap.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, header};

use crate::{
    ConfigError, Error, HttpClient,
    http_client::{Gate, TokenRequestBody},
    redact,
};

const DEFAULT_MAX_RESPONSE: usize = 64 * 1024;

/// Sent with every token request, as Veracity's own samples identify themselves.
pub(crate) const USER_AGENT: &str = concat!("veracity-auth/", env!("CARGO_PKG_VERSION"));

/// Where a grant ([`ClientCredentials`](crate::ClientCredentials),
/// [`RefreshToken`](crate::RefreshToken), `SignIn`) sends its token requests: the URL, checked
/// here, once, the HTTP client and the largest answer read.
///
/// Each grant has Veracity's endpoint by default; give one with its `endpoint` setter.
/// `Debug` shows the URL's scheme, host, port and path only.
///
/// ```
/// use veracity_auth::{ClientCredentials, TokenEndpoint};
///
/// let endpoint = TokenEndpoint::new("https://login.example.com/tenant/oauth2/v2.0/token")?
///     .max_response_size(16 * 1024);
/// let credentials = ClientCredentials::new("client-id", "client-secret")
///     .scope("https://api.example.com/.default")
///     .endpoint(endpoint);
/// // Plain HTTP only when asked for by name: a mock, a test server.
/// assert!(TokenEndpoint::new("http://127.0.0.1:8080/token").is_err());
/// let mock = TokenEndpoint::plain_http("http://127.0.0.1:8080/token")?;
/// # Ok::<(), veracity_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct TokenEndpoint {
    uri: Uri,
    #[cfg_attr(not(feature = "sign-in"), allow(dead_code))]
    plain_http: bool,
    max_response: usize,
    client: Option<HttpClient>,
}

impl TokenEndpoint {
    /// An HTTPS token endpoint. Fails with [`ConfigError::InsecureUrl`] for a plain-HTTP URL
    /// and [`ConfigError::InvalidTokenUrl`] for one that is not an absolute `https://` URL or
    /// carries credentials (`user:password@`, which are never sent).
    pub fn new(url: impl AsRef<str>) -> Result<Self, ConfigError> {
        Self::parse(url.as_ref(), false)
    }

    /// A token endpoint that may be plain `http://` (any host): for a mock or a test server.
    /// Credentials then cross the network in clear text.
    pub fn plain_http(url: impl AsRef<str>) -> Result<Self, ConfigError> {
        Self::parse(url.as_ref(), true)
    }

    /// The largest token response read (default 64 KiB); larger answers are an error.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// The HTTP client for token requests (default: [`HttpClient::default_https`], one per
    /// process).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.client = Some(client);
        self
    }

    /// One of Veracity's endpoints (a constant of this crate).
    pub(crate) fn veracity(url: &'static str) -> Self {
        Self::with_uri(Uri::from_static(url), false)
    }

    fn with_uri(uri: Uri, plain_http: bool) -> Self {
        TokenEndpoint {
            uri,
            plain_http,
            max_response: DEFAULT_MAX_RESPONSE,
            client: None,
        }
    }

    fn parse(url: &str, plain_http: bool) -> Result<Self, ConfigError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| ConfigError::InvalidTokenUrl("it is not a valid absolute URL".into()))?;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::InvalidTokenUrl(format!(
                "{} has credentials before its host (`name:secret@`), which are never \
                 sent: remove them from the URL",
                redact::uri(&uri)
            )));
        }
        check_scheme(&uri, plain_http)?;
        Ok(Self::with_uri(uri, plain_http))
    }

    /// Whether plain HTTP was asked for ([`plain_http`](Self::plain_http)).
    #[cfg(feature = "sign-in")]
    pub(crate) fn allows_plain_http(&self) -> bool {
        self.plain_http
    }

    /// Posts a form and reads the whole answer, refusing more than the cap. With a `gate`,
    /// the form is handed out only if it allows it when the client takes the body.
    pub(crate) async fn post_form(
        &self,
        form: &[(&str, &str)],
        gate: Option<Gate>,
    ) -> Result<Response<Bytes>, Error> {
        let form = serde_urlencoded::to_string(form).map_err(|_| {
            ConfigError::HttpClient("the token request could not be encoded".into())
        })?;
        let mut request = Request::new(TokenRequestBody::new(Bytes::from(form), gate));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = self.uri.clone();
        let headers = request.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        let client = client_or_default(self.client.as_ref(), "call `TokenEndpoint::http_client`")?;
        match client.send(request, self.max_response).await {
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

    /// Scheme, host, port and path of the URL: never userinfo, query or fragment.
    pub(crate) fn redacted(&self) -> String {
        redact::uri(&self.uri)
    }
}

impl fmt::Debug for TokenEndpoint {
    // The URL's query may carry a code: only its harmless parts show.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The client given, or else the process's default client (feature `default-client`); without
/// either, an error saying how to give one (`how`, e.g. "call `TokenEndpoint::http_client`").
pub(crate) fn client_or_default<'a>(
    given: Option<&'a HttpClient>,
    how: &str,
) -> Result<&'a HttpClient, ConfigError> {
    match given {
        Some(client) => Ok(client),
        #[cfg(feature = "default-client")]
        None => {
            let _ = how;
            Ok(crate::client_builder::default_client())
        }
        #[cfg(not(feature = "default-client"))]
        None => Err(ConfigError::HttpClient(format!(
            "no HTTP client: enable the `default-client` feature or {how}"
        ))),
    }
}

/// Whether `uri` names a loopback host (`localhost`, `127.0.0.1`, `[::1]`, ...).
pub(crate) fn is_loopback(uri: &Uri) -> bool {
    let host = uri.host().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// HTTPS, or plain HTTP when `plain_http`.
pub(crate) fn check_scheme(uri: &Uri, plain_http: bool) -> Result<(), ConfigError> {
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if plain_http => Ok(()),
        Some("http") => Err(ConfigError::InsecureUrl {
            host: uri.host().unwrap_or("").to_owned(),
        }),
        _ => Err(ConfigError::InvalidTokenUrl(
            "it must be an absolute https:// URL".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_when_asked_for() {
        assert!(TokenEndpoint::new("https://login.example.com/t").is_ok());
        for http in ["http://login.example.com/t", "http://127.0.0.1:1/t"] {
            let err = TokenEndpoint::new(http).unwrap_err();
            assert!(
                matches!(err, ConfigError::InsecureUrl { .. })
                    && Error::from(err.clone()).is_permanent()
            );
            assert!(err.to_string().contains("plain_http"), "{err}");
            assert!(TokenEndpoint::plain_http(http).is_ok());
        }
        for bad in ["/relative", "ftp://host/t", "not a url"] {
            let err = TokenEndpoint::plain_http(bad).unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidTokenUrl(_)),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn debug_shows_scheme_host_port_and_path_only() {
        let e = TokenEndpoint::new("https://login.example.com:8443/t/oauth2/token?code=x#f");
        assert_eq!(
            format!("{:?}", e.unwrap()),
            "https://login.example.com:8443/t/oauth2/token"
        );
    }

    #[test]
    fn a_url_with_credentials_is_refused_without_showing_them() {
        for url in [
            "https://user:pass@host/p",
            "https://user@host/p",
            "https://:pass@host/p",
        ] {
            let err = TokenEndpoint::new(url).unwrap_err();
            assert!(matches!(err, ConfigError::InvalidTokenUrl(_)), "{err}");
            assert!(Error::from(err.clone()).is_permanent());
            let shown = format!("{err} {err:?}");
            assert!(
                !shown.contains("user") && !shown.contains("pass"),
                "{shown}"
            );
            assert!(shown.contains("https://host/p"), "{shown}");
        }
        assert!(TokenEndpoint::new("https://host/p?x=@y").is_ok());
    }
}

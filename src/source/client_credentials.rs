//! A Veracity service account: the OAuth 2.0 client-credentials grant.

use std::fmt;

use http::Uri;

use super::{TokenSource, endpoint::TokenEndpoint, response};
use crate::{Error, HttpClient, Token, token::Secret};

/// Veracity's token endpoint (Azure AD B2C, v2.0).
pub const DEFAULT_TOKEN_URL: &str =
    "https://login.veracity.com/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token";
/// The scope of the Veracity Data Workbench API (v2.0 endpoints).
pub const DEFAULT_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default";
/// The resource of the Veracity Data Workbench API (Azure AD v1 endpoints).
pub const DEFAULT_RESOURCE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75";

/// A Veracity service account (client id and secret): tokens from the OAuth 2.0
/// client-credentials grant. Veracity's token URL and Data Workbench scope by default.
///
/// `Debug` shows the client id and URL, never the secret.
///
/// ```
/// use veracity_auth::{ClientCredentials, VeracityAuthLayer};
///
/// // Azure AD v1 style, with `resource` instead of `scope`:
/// let creds = ClientCredentials::new("client-id", "client-secret")
///     .token_url("https://login.microsoftonline.com/dnvglb2cprod.onmicrosoft.com/oauth2/token")
///     .resource("https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75");
/// let layer = VeracityAuthLayer::new(creds).api_key("api-key");
/// assert!(!format!("{layer:?}").contains("client-secret"));
/// ```
#[derive(Clone)]
pub struct ClientCredentials {
    client_id: String,
    client_secret: Secret,
    audience: Audience,
    endpoint: TokenEndpoint,
}

#[derive(Clone, Debug)]
enum Audience {
    Scope(String),
    Resource(String),
}

impl ClientCredentials {
    /// A service account with Veracity's defaults.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        ClientCredentials {
            client_id: client_id.into(),
            client_secret: Secret::new(client_secret),
            audience: Audience::Scope(DEFAULT_SCOPE.to_owned()),
            endpoint: TokenEndpoint::new(DEFAULT_TOKEN_URL),
        }
    }

    /// The token endpoint. Plain `http://` is accepted only for loopback hosts, unless
    /// [`allow_http`](Self::allow_http) is set.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint.url = url.into();
        self
    }

    /// Sends `scope=<scope>` (Azure AD v2.0 and B2C endpoints). This is the default style.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.audience = Audience::Scope(scope.into());
        self
    }

    /// Sends `resource=<resource>` instead of a scope (Azure AD v1 endpoints).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.audience = Audience::Resource(resource.into());
        self
    }

    /// Allows a plain-HTTP token URL to a non-loopback host. Credentials then cross the
    /// network in clear text; only for test networks.
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.endpoint.allow_http = allow;
        self
    }

    /// The largest token response read (default 64 KiB); larger answers are an error.
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.endpoint.max_response = bytes;
        self
    }

    /// The HTTP client for token requests (default: [`HttpClient::default_https`]).
    pub fn http_client(mut self, client: HttpClient) -> Self {
        self.endpoint.client = Some(client);
        self
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
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

impl TokenSource for ClientCredentials {
    async fn fetch(&self) -> Result<Token, Error> {
        let (key, value) = match &self.audience {
            Audience::Scope(s) => ("scope", s),
            Audience::Resource(r) => ("resource", r),
        };
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose()),
            (key, value.as_str()),
        ];
        let response = self.endpoint.post_form(&form).await?;
        response::parse(
            response.status(),
            response.headers(),
            response.body(),
            &[self.client_secret.expose()],
        )
    }
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("token_url", &self.endpoint)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
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
    fn debug_hides_the_secret() {
        let c = ClientCredentials::new("id-123", "very-secret-value");
        let s = format!("{c:?}");
        assert!(
            s.contains("id-123") && !s.contains("very-secret-value"),
            "{s}"
        );
    }
}

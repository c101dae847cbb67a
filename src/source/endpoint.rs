//! A token endpoint as the user-delegated grants reach it: its URL (HTTPS, or plain HTTP to
//! loopback), the HTTP client, and the response-size cap.

use std::fmt;
#[cfg(feature = "default-client")]
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{Method, Request, Response, Uri, header};
use http_body_util::Full;

use super::client_credentials::check_scheme;
use crate::{Error, HttpClient};

const DEFAULT_MAX_RESPONSE: usize = 64 * 1024;

#[derive(Clone)]
pub(crate) struct TokenEndpoint {
    pub(crate) url: String,
    pub(crate) allow_http: bool,
    pub(crate) max_response: usize,
    pub(crate) client: Option<HttpClient>,
    #[cfg(feature = "default-client")]
    default_client: Arc<OnceLock<HttpClient>>,
}

impl TokenEndpoint {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        TokenEndpoint {
            url: url.into(),
            allow_http: false,
            max_response: DEFAULT_MAX_RESPONSE,
            client: None,
            #[cfg(feature = "default-client")]
            default_client: Default::default(),
        }
    }

    /// Posts a form and reads the whole answer, refusing more than the cap.
    pub(crate) async fn post_form(&self, form: &[(&str, &str)]) -> Result<Response<Bytes>, Error> {
        let uri: Uri = self
            .url
            .parse()
            .map_err(|_| Error::Config("the token URL is not a valid URL".into()))?;
        check_scheme(&uri, self.allow_http)?;
        let form = serde_urlencoded::to_string(form)
            .map_err(|_| Error::Config("the token request could not be encoded".into()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|_| Error::Config("the token request could not be built".into()))?;
        self.client()?.send(request, self.max_response).await
    }

    fn client(&self) -> Result<&HttpClient, Error> {
        if let Some(client) = &self.client {
            return Ok(client);
        }
        #[cfg(feature = "default-client")]
        {
            Ok(self.default_client.get_or_init(HttpClient::default_https))
        }
        #[cfg(not(feature = "default-client"))]
        {
            Err(Error::Config(
                "no HTTP client: enable the `default-client` feature or call `http_client`".into(),
            ))
        }
    }
}

impl fmt::Debug for TokenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

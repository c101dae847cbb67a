//! The clients a scenario runs over ([`ClientUnderTest`]): the layer over a hyper-util
//! client, and `VeracityAuthMiddleware` in a reqwest client, set up as the README shows them
//! and sending the same requests to the mock.

use crate::common;

use std::convert::Infallible;

use bytes::Bytes;
use common::bodies;
use common::gateway::{Http, http_client, http_client_for};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use tower::{Layer, ServiceExt};
use veracity_auth::{Authenticator, Error, VeracityAuth, VeracityAuthLayer};

/// `{api}/workspaces/{id}` on the mock's gateway.
pub fn workspace_url(mock: &veracity_auth_mock::MockVeracity) -> String {
    format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id())
}

/// Who sends a scenario's requests.
#[derive(Clone, Copy, Debug)]
pub enum ClientUnderTest {
    /// `VeracityAuthLayer` over a hyper-util client.
    Tower,
    /// `VeracityAuthMiddleware` in a reqwest client.
    #[cfg(feature = "reqwest-middleware")]
    Reqwest,
}

/// A request body, as each client sends it.
pub enum Body {
    Empty,
    Bytes(Bytes),
    /// A body the client cannot replay: for the layer, 1 MiB streamed in 16 KiB chunks (past
    /// the replay cap); for reqwest, any streaming body.
    Unreplayable,
}

/// What came back, body and all.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

type Streaming = UnsyncBoxBody<Bytes, Infallible>;

/// The layer over a client for bodies it can replay, and over one for streaming bodies.
#[derive(Clone)]
pub struct Tower {
    full: VeracityAuth<Http>,
    streaming: VeracityAuth<Http<Streaming>>,
}

/// A client under test, authenticated by one [`Authenticator`].
#[derive(Clone)]
pub enum Client {
    Tower(Box<Tower>),
    #[cfg(feature = "reqwest-middleware")]
    Reqwest(reqwest_middleware::ClientWithMiddleware),
}

impl ClientUnderTest {
    /// This client, authenticated by `auth`.
    pub fn over(self, auth: &Authenticator) -> Client {
        let layer = VeracityAuthLayer::new(auth.clone());
        match self {
            ClientUnderTest::Tower => Client::Tower(Box::new(Tower {
                full: layer.layer(http_client()),
                streaming: layer.layer(http_client_for()),
            })),
            #[cfg(feature = "reqwest-middleware")]
            ClientUnderTest::Reqwest => Client::Reqwest(reqwest_client(auth)),
        }
    }
}

/// A reqwest client with the middleware, set up as the README shows it (with the crate's
/// redirect policy). The test build enables reqwest's `rustls-no-provider`: without a
/// process default provider, building the client panics.
#[cfg(feature = "reqwest-middleware")]
pub fn reqwest_client(auth: &Authenticator) -> reqwest_middleware::ClientWithMiddleware {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reqwest = reqwest::Client::builder()
        .redirect(veracity_auth::VeracityAuthMiddleware::redirect_policy())
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest)
        .with(veracity_auth::VeracityAuthMiddleware::new(auth.clone()))
        .build()
}

impl Client {
    /// Sends `request` and reads the whole answer; a failure is the crate's typed error
    /// (anything else fails the test).
    pub async fn send(&self, request: Request<Body>) -> Result<Answer, Error> {
        let (head, body) = request.into_parts();
        match self {
            Client::Tower(tower) => {
                let Tower { full, streaming } = &**tower;
                let answer = match body {
                    Body::Empty => {
                        full.clone()
                            .oneshot(Request::from_parts(head, Full::default()))
                            .await
                    }
                    Body::Bytes(bytes) => {
                        full.clone()
                            .oneshot(Request::from_parts(head, Full::new(bytes)))
                            .await
                    }
                    Body::Unreplayable => {
                        let (_, body) = bodies::streaming(1024 * 1024, 16 * 1024);
                        streaming
                            .clone()
                            .oneshot(Request::from_parts(head, body))
                            .await
                    }
                };
                let response = answer.map_err(|e| match e.downcast::<Error>() {
                    Ok(error) => *error,
                    Err(other) => panic!("not the crate's error: {other:?}"),
                })?;
                let (head, body) = response.into_parts();
                Ok(Answer {
                    status: head.status,
                    headers: head.headers,
                    body: body.collect().await.unwrap().to_bytes(),
                })
            }
            #[cfg(feature = "reqwest-middleware")]
            Client::Reqwest(client) => {
                let request = client
                    .request(head.method, head.uri.to_string())
                    .headers(head.headers);
                let request = match body {
                    Body::Empty => request,
                    Body::Bytes(bytes) => request.body(bytes),
                    Body::Unreplayable => {
                        let chunks = futures_util::stream::iter([
                            Ok::<_, Infallible>(Bytes::from_static(b"{\"pageIndex\":1,")),
                            Ok(Bytes::from_static(b"\"pageSize\":10}")),
                        ]);
                        request.body(reqwest::Body::wrap_stream(chunks))
                    }
                };
                let sent = request.send().await;
                let response = match sent {
                    Ok(response) => response,
                    Err(reqwest_middleware::Error::Middleware(e)) => {
                        return Err(e.downcast::<Error>().expect("the crate's typed error"));
                    }
                    Err(e) => panic!("a middleware error: {e:?}"),
                };
                Ok(Answer {
                    status: response.status(),
                    headers: response.headers().clone(),
                    body: response.bytes().await.unwrap(),
                })
            }
        }
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Result<Answer, Error> {
        self.send(Request::get(url).body(Body::Empty).unwrap())
            .await
    }
}

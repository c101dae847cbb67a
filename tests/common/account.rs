//! The mock's API key and origin over any token source: what most tests hand the layer.

use http::{Request, StatusCode};
use veracity_auth::{Authenticator, AuthenticatorBuilder, Error, TokenSource, VeracityAuthLayer};
use veracity_auth_mock::MockVeracity;

use super::gateway::{get_workspace, workspace};

/// Tokens `tok-1`, `tok-2`, … that never expire, one a fetch.
pub fn numbered_tokens() -> impl TokenSource {
    let issued = std::sync::atomic::AtomicU64::new(0);
    veracity_auth::token_fn(move || {
        let n = issued.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        async move {
            Ok::<_, std::convert::Infallible>(veracity_auth::Token::new(format!("tok-{n}"), None))
        }
    })
}

/// `source`, with the mock's API key, for the mock's origin, to be configured further.
pub fn for_mock(source: impl TokenSource, mock: &MockVeracity) -> AuthenticatorBuilder {
    Authenticator::builder(source)
        .origins([mock.url()])
        .api_key(mock.api_key())
}

/// A layer over [`for_mock`], built as it is.
pub fn layer_over(source: impl TokenSource, mock: &MockVeracity) -> VeracityAuthLayer {
    VeracityAuthLayer::new(for_mock(source, mock).build().unwrap())
}

/// The crate's error that [`get_workspace`] through `layer` fails with.
pub async fn workspace_error(layer: &VeracityAuthLayer, mock: &MockVeracity) -> Box<Error> {
    let err = get_workspace(layer, mock).await.unwrap_err();
    err.downcast::<Error>().expect("the crate's typed error")
}

/// The status `api` answers the mock's workspace request with (a clone of `api` sends it).
pub async fn workspace_status<S, B>(api: &S, mock: &MockVeracity) -> StatusCode
where
    S: tower::Service<Request<http_body_util::Full<bytes::Bytes>>, Response = http::Response<B>>
        + Clone,
    S::Error: std::fmt::Debug,
{
    use tower::ServiceExt;
    api.clone().oneshot(workspace(mock)).await.unwrap().status()
}

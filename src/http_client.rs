//! The HTTP client token sources use: any tower service, type-erased.
//!
//! By default (feature `default-client`) it is a hyper-util client over rustls with the
//! `ring` provider and the webpki root certificates, HTTP/1.1, created on first use.

use std::{
    fmt,
    future::{Future, poll_fn},
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower_service::Service;

use crate::{BoxError, Error};

/// A boxed, `Send` future: what type-erased async calls return.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Asked once, when a token request's body is about to leave: may it? (A refresh token is
/// spent at most once: see `RefreshToken`.)
pub(crate) type Gate = Box<dyn FnOnce() -> bool + Send + Sync>;

/// The request body token requests are sent with: the form, one frame with its exact length.
///
/// A refresh-token request hands its form out only if its exchange still holds the refresh
/// token at that moment; if another fetch took the token over (the exchange's runtime stopped
/// running it past its deadline), the body fails instead with an [`io::Error`], so the token
/// never leaves in two requests. The body is not `Clone` for the same reason. `Debug` shows
/// its length only.
pub struct TokenRequestBody {
    form: Option<Bytes>,
    gate: Option<Gate>,
}

impl TokenRequestBody {
    /// A body that hands out `form` when first polled, if `gate` (when there is one) says so,
    /// else fails.
    pub(crate) fn new(form: Bytes, gate: Option<Gate>) -> Self {
        TokenRequestBody {
            form: Some(form),
            gate,
        }
    }
}

impl Body for TokenRequestBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let Some(form) = self.form.take() else {
            return Poll::Ready(None);
        };
        if let Some(gate) = self.gate.take()
            && !gate()
        {
            return Poll::Ready(Some(Err(io::Error::other(
                "the token request was withdrawn before its body was sent",
            ))));
        }
        Poll::Ready(Some(Ok(Frame::data(form))))
    }

    fn is_end_stream(&self) -> bool {
        self.form.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.form.as_ref().map_or(0, |f| f.len() as u64))
    }
}

impl fmt::Debug for TokenRequestBody {
    // The form carries the client secret or a refresh token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequestBody")
            .field("len", &self.form.as_ref().map_or(0, Bytes::len))
            .finish_non_exhaustive()
    }
}

/// An HTTP client for token requests: any `tower::Service<http::Request<TokenRequestBody>>`
/// that answers `http::Response<impl Body>`, e.g. a hyper-util client with your own
/// connector, proxy or root certificates.
///
/// ```
/// # #[cfg(feature = "default-client")] {
/// use veracity_auth::{ClientCredentials, DEFAULT_TOKEN_URL, HttpClient, TokenEndpoint};
/// use hyper_util::{client::legacy::Client, rt::TokioExecutor};
///
/// let client = Client::builder(TokioExecutor::new()).build_http();
/// let endpoint = TokenEndpoint::new(DEFAULT_TOKEN_URL)?.http_client(HttpClient::new(client));
/// let creds = ClientCredentials::new("id", "secret").endpoint(endpoint);
/// # }
/// # Ok::<(), veracity_auth::Error>(())
/// ```
#[derive(Clone)]
pub struct HttpClient {
    send: Arc<dyn Fn(Request<TokenRequestBody>, usize) -> Sending + Send + Sync>,
}

type Sending = BoxFuture<'static, Result<Response<Bytes>, Error>>;

impl HttpClient {
    /// Wraps a tower service. It is cloned for every request and readied before each call.
    ///
    /// A client that keeps idle connections (hyper-util's pool) runs each on a task of the
    /// runtime that opened it; a token request of another runtime sent through one waits
    /// while that runtime is idle or blocked. If the token source is used from several
    /// runtimes, turn idle pooling off (`pool_max_idle_per_host(0)`), as the default client
    /// does.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<Request<TokenRequestBody>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        HttpClient {
            send: Arc::new(move |request, limit| Box::pin(send(service.clone(), request, limit))),
        }
    }

    /// Sends `request` and reads the whole response body, refusing more than `limit` bytes.
    pub(crate) fn send(&self, request: Request<TokenRequestBody>, limit: usize) -> Sending {
        (self.send)(request, limit)
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

async fn send<S, B>(
    mut service: S,
    request: Request<TokenRequestBody>,
    limit: usize,
) -> Result<Response<Bytes>, Error>
where
    S: Service<Request<TokenRequestBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Error::transport)?;
    let response = service.call(request).await.map_err(Error::transport)?;
    let (parts, body) = response.into_parts();
    let too_large = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64);
    if too_large {
        return Err(Error::ResponseTooLarge { limit });
    }
    let body = Limited::new(body, limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                Error::ResponseTooLarge { limit }
            } else {
                Error::Transport(Arc::new(e))
            }
        })?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

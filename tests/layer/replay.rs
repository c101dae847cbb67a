//! Replay after a 401, against the embedded mock over real TCP: identical bodies on the
//! wire, the body cap, a permanent 401, a wrong API key, and composition with tower's
//! retry, timeout and buffer.

use crate::common;
use crate::common::account::numbered_tokens;

use common::bodies::{gateway_requests, hash, streaming};

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use common::gateway::{
    Http, authenticator_for, dataset_query, http_client, http_client_for, layer_for, recording_mock,
};
use futures_util::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt, buffer::Buffer};
use veracity_auth::{Authenticator, CachePolicy, Token, VeracityAuthLayer, token_fn};
use veracity_auth_mock::MockVeracity;

type Streaming = UnsyncBoxBody<Bytes, Infallible>;

fn full_client() -> Http {
    http_client()
}

fn streaming_client() -> Http<Streaming> {
    http_client_for()
}

/// After [`warm`], revokes every token, sends `request`, and checks the 401, the one new
/// token, the one replay, and that the gateway saw the same body bytes both times.
pub async fn assert_replayed_identically<S, B>(
    mock: &MockVeracity,
    layer: &VeracityAuthLayer,
    client: S,
    request: Request<B>,
    sent: &[u8],
) where
    S: tower::Service<Request<B>, Response = Response<hyper::body::Incoming>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: veracity_auth::replay::ReplayableBody + Send + 'static,
{
    let api = layer.layer(client);
    mock.revoke_all_tokens();
    let before = mock.stats();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let after = mock.stats();
    assert_eq!(
        after.rejected_revoked_token - before.rejected_revoked_token,
        1
    );
    assert_eq!(
        after.token_requests - before.token_requests,
        1,
        "one new token"
    );
    assert_eq!(layer.stats().replays, 1);
    let seen = gateway_requests(mock);
    assert_eq!(seen.len(), 3, "the warm-up, the 401 and the replay");
    assert_eq!(seen[1].status, StatusCode::UNAUTHORIZED);
    assert_eq!(seen[2].status, StatusCode::OK);
    assert_eq!(
        seen[1].body.len(),
        sent.len(),
        "first attempt carried the body"
    );
    assert_eq!(
        hash(&seen[1].body),
        hash(sent),
        "first attempt carried the body"
    );
    assert_eq!(
        hash(&seen[2].body),
        hash(sent),
        "the replay carried the same bytes"
    );
}

/// A recording mock, a layer for it, and a token in the layer's cache (one workspace GET).
pub async fn warm() -> (MockVeracity, VeracityAuthLayer) {
    let mock = recording_mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    (mock, layer)
}

async fn warm_up(mock: &MockVeracity, layer: &VeracityAuthLayer) {
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let response = layer
        .layer(full_client())
        .oneshot(Request::get(url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn revoked_token_replays_a_48_kib_streaming_body_sent_in_1_kib_chunks() {
    let (mock, layer) = warm().await;
    let (bytes, body) = streaming(48 * 1024, 1024);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap();
    assert_replayed_identically(&mock, &layer, streaming_client(), request, &bytes).await;
}

#[tokio::test]
async fn revoked_token_replays_an_empty_get() {
    let (mock, layer) = warm().await;
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let request = Request::get(url).body(Full::default()).unwrap();
    assert_replayed_identically(&mock, &layer, full_client(), request, b"").await;
}

#[tokio::test]
async fn composes_with_retry_timeout_and_a_buffer_that_must_be_readied() {
    #[derive(Clone)]
    struct RetryErrorsOnce(bool);
    impl<B: Clone, Res> tower::retry::Policy<Request<B>, Res, BoxError> for RetryErrorsOnce {
        type Future = std::future::Ready<()>;
        fn retry(
            &mut self,
            _: &mut Request<B>,
            result: &mut Result<Res, BoxError>,
        ) -> Option<Self::Future> {
            (result.is_err() && std::mem::replace(&mut self.0, false))
                .then(|| std::future::ready(()))
        }
        fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
            let mut clone = Request::new(req.body().clone());
            *clone.method_mut() = req.method().clone();
            *clone.uri_mut() = req.uri().clone();
            *clone.headers_mut() = req.headers().clone();
            Some(clone)
        }
    }

    let mock = recording_mock().await;
    // Tokens are revoked twice within seconds here; lift the 401 rate limit.
    let layer = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .cache_policy(CachePolicy::default().rejection_interval(Duration::ZERO))
            .build()
            .unwrap(),
    );
    // Buffer inside the layer: a replay that called it without `poll_ready` would panic.
    let buffered = Buffer::new(full_client(), 4);
    let api = ServiceBuilder::new()
        .retry(RetryErrorsOnce(true))
        .timeout(Duration::from_secs(10))
        .layer(layer.clone())
        .service(buffered);
    // And a buffer around the whole stack.
    let api = Buffer::new(api, 16);
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..3 {
        if round > 0 {
            mock.revoke_all_tokens();
        }
        for _ in 0..20 {
            let request = Request::builder()
                .method(Method::GET)
                .uri(&url)
                .body(Full::<Bytes>::default())
                .unwrap();
            calls.spawn(api.clone().oneshot(request));
        }
        while let Some(done) = calls.join_next().await {
            assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
        }
    }
    assert!(layer.stats().replays >= 2, "{:?}", layer.stats());
    assert_eq!(mock.stats().token_requests, 3, "one per round");
}

/// A boxed stream of `len` bytes sent with `Content-Length`: hyper writes that many bytes and
/// drops the body without seeing its end.
#[tokio::test]
async fn a_body_dropped_at_content_length_is_replayed() {
    let (mock, layer) = warm().await;
    let (bytes, body) = streaming(4096, 1024);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, "4096")
        .body(body)
        .unwrap();
    assert_replayed_identically(&mock, &layer, streaming_client(), request, &bytes).await;
}

#[tokio::test]
async fn the_same_body_without_content_length_is_replayed() {
    let (mock, layer) = warm().await;
    let (bytes, body) = streaming(4096, 1024);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap();
    assert_replayed_identically(&mock, &layer, streaming_client(), request, &bytes).await;
}

/// What the gated upload server saw: per request, the token and the bytes it read.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An HTTP/1 server that answers the token `tok-1` with a 401 after reading `prefix` bytes
/// (and closes the connection), and any other token with a 200 after reading everything. A
/// request with another token opens `gate`, so the client's body sends its rest only once
/// the replay is on the wire.
async fn gated_upload_server(prefix: usize, gate: Arc<Notify>, seen: Seen) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (gate, seen) = (gate.clone(), seen.clone());
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (gate, seen) = (gate.clone(), seen.clone());
                async move {
                    let token = req.headers()[header::AUTHORIZATION]
                        .to_str()
                        .unwrap()
                        .to_owned();
                    let rejected = token == "Bearer tok-1";
                    if !rejected {
                        gate.notify_one();
                    }
                    let mut body = req.into_body();
                    let mut read = Vec::new();
                    while !rejected || read.len() < prefix {
                        match body.frame().await {
                            Some(Ok(frame)) => {
                                read.extend_from_slice(&frame.into_data().unwrap_or_default())
                            }
                            _ => break,
                        }
                    }
                    seen.lock().unwrap().push((token, read));
                    let response = if rejected {
                        Response::builder()
                            .status(StatusCode::UNAUTHORIZED)
                            .header(header::WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)
                            .header(header::CONNECTION, "close")
                            .body(Full::<Bytes>::default())
                    } else {
                        Response::builder().body(Full::default())
                    };
                    Ok::<_, Infallible>(response.unwrap())
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    format!("http://{addr}/upload")
}

/// The promise: a body of any size replays as long as what was sent before the rejection
/// fits the cap (here 16 KiB of a 1 MiB upload, with the 64 KiB default cap).
#[tokio::test]
async fn a_body_larger_than_the_cap_replays_when_the_401_came_within_the_cap() {
    const PREFIX: usize = 16 * 1024;
    let gate = Arc::new(Notify::new());
    let seen = Seen::default();
    let url = gated_upload_server(PREFIX, gate.clone(), seen.clone()).await;
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(numbered_tokens())
            .origins([url.trim_end_matches("/upload")])
            .build()
            .unwrap(),
    );

    let (bytes, _) = streaming(1024 * 1024, 1);
    let (head, rest) = (bytes.slice(..PREFIX), bytes.slice(PREFIX..));
    let frames = |b: Bytes| {
        b.chunks(1024)
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c))))
            .collect::<Vec<_>>()
    };
    // The first 16 KiB at once; the rest only once the gate opens.
    let (head, rest) = (frames(head), frames(rest));
    let stream = futures_util::stream::iter(head).chain(
        futures_util::stream::once(async move {
            gate.notified().await;
            futures_util::stream::iter(rest)
        })
        .flatten(),
    );
    let body = StreamBody::new(stream).boxed_unsync();
    let request = Request::post(&url).body(body).unwrap();
    let response = layer
        .layer(streaming_client())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(layer.stats().replays, 1);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].0, "Bearer tok-1");
    assert_eq!(hash(&seen[0].1), hash(&bytes[..PREFIX]));
    assert_eq!(seen[1].0, "Bearer tok-2");
    assert_eq!(seen[1].1.len(), bytes.len());
    assert_eq!(
        hash(&seen[1].1),
        hash(&bytes),
        "the replay carried every byte"
    );
}

/// A service answering its first call with a 401 and the others with a 200, recording the
/// token of each call and when it was made. Every clone but the first attempt's waits in
/// `poll_ready` until `open` (or fails there, with `fail_ready`).
#[derive(Clone, Default)]
struct SlowToReady {
    calls: Arc<Mutex<Vec<(String, tokio::time::Instant)>>>,
    open: Arc<AtomicBool>,
    fail_ready: bool,
    waiting: Arc<Mutex<Option<Waker>>>,
}

impl SlowToReady {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        if let Some(waker) = self.waiting.lock().unwrap().take() {
            waker.wake();
        }
    }
}

impl tower::Service<Request<Full<Bytes>>> for SlowToReady {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.calls.lock().unwrap().is_empty() || self.open.load(Ordering::SeqCst) {
            return Poll::Ready(Ok(()));
        }
        if self.fail_ready {
            return Poll::Ready(Err(std::io::Error::other("overloaded")));
        }
        *self.waiting.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let token = req.headers()[header::AUTHORIZATION]
            .to_str()
            .unwrap()
            .to_owned();
        let mut calls = self.calls.lock().unwrap();
        let status = if calls.is_empty() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        calls.push((token, tokio::time::Instant::now()));
        let mut response = Response::new(Full::default());
        *response.status_mut() = status;
        std::future::ready(Ok(response))
    }
}

/// Tokens `tok-<n>` living `lifetime`, remembering when each was issued.
fn timed_tokens(
    lifetime: Duration,
) -> (
    Arc<Mutex<Vec<tokio::time::Instant>>>,
    impl veracity_auth::TokenSource,
) {
    let issued: Arc<Mutex<Vec<tokio::time::Instant>>> = Arc::default();
    let record = issued.clone();
    let source = token_fn(move || {
        let mut issued = record.lock().unwrap();
        issued.push(tokio::time::Instant::now());
        let token = Token::new(format!("tok-{}", issued.len()), Some(lifetime));
        async move { Ok::<_, Infallible>(token) }
    });
    (issued, source)
}

#[tokio::test(start_paused = true)]
async fn a_replay_readied_after_its_new_token_expired_carries_a_valid_one() {
    const LIFETIME: Duration = Duration::from_secs(600);
    let (issued, source) = timed_tokens(LIFETIME);
    let service = SlowToReady::default();
    let layer = VeracityAuthLayer::new(Authenticator::builder(source).build().unwrap());
    let request = Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/")
        .body(Full::default())
        .unwrap();
    let call = tokio::spawn(layer.layer(service.clone()).oneshot(request));
    // The first attempt got its 401 and the new token; the replay's clone is not ready.
    while service.waiting.lock().unwrap().is_none() {
        tokio::task::yield_now().await;
    }
    assert_eq!(service.calls.lock().unwrap().len(), 1);
    assert_eq!(issued.lock().unwrap().len(), 2);
    // Released only after that new token expired.
    tokio::time::sleep(LIFETIME * 2).await;
    service.open();
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let calls = service.calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    let (token, at) = &calls[1];
    assert_ne!(token, "Bearer tok-2", "the expired token was not sent");
    let n: usize = token.strip_prefix("Bearer tok-").unwrap().parse().unwrap();
    let issued_at = issued.lock().unwrap()[n - 1];
    assert!(
        *at < issued_at + LIFETIME,
        "the replay's token was valid when sent"
    );
    assert_eq!(layer.stats().replays, 1);
}

#[tokio::test]
async fn a_failing_poll_ready_on_the_replay_returns_the_401() {
    let (issued, source) = timed_tokens(Duration::from_secs(3600));
    let service = SlowToReady {
        fail_ready: true,
        ..SlowToReady::default()
    };
    let layer = VeracityAuthLayer::new(Authenticator::builder(source).build().unwrap());
    let request = Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/")
        .body(Full::default())
        .unwrap();
    let response = layer
        .layer(service.clone())
        .oneshot(request)
        .await
        .expect("the 401, not the readiness error");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(service.calls.lock().unwrap().len(), 1, "no replay");
    assert_eq!(
        issued.lock().unwrap().len(),
        2,
        "the token was still refreshed"
    );
    assert_eq!(layer.stats().replays, 0);
}

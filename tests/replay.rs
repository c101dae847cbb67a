//! Replay after a 401, against the embedded mock over real TCP: identical bodies on the
//! wire, the body cap, a permanent 401, a wrong API key, and composition with tower's
//! retry, timeout and buffer.

use std::{
    convert::Infallible,
    hash::{DefaultHasher, Hash, Hasher},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tower::{BoxError, Layer, ServiceBuilder, ServiceExt, buffer::Buffer};
use veracity_auth::{
    ClientCredentials, VeracityAuthLayer,
    mock::{MockVeracity, RecordedRequest},
};

type Streaming = UnsyncBoxBody<Bytes, Infallible>;

fn layer_for(mock: &MockVeracity) -> VeracityAuthLayer {
    VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(mock.token_url()),
    )
    .api_key(mock.api_key())
}

fn full_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

fn streaming_client() -> Client<HttpConnector, Streaming> {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn mock() -> MockVeracity {
    MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap()
}

fn dataset_query(mock: &MockVeracity) -> String {
    format!(
        "{}/workspaces/{}/datasets/d1/query",
        mock.api_url(),
        mock.workspace_id()
    )
}

/// `len` bytes in chunks of `chunk`, as a streaming body that is not `Clone`.
fn streaming(len: usize, chunk: usize) -> (Bytes, Streaming) {
    let bytes: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = bytes
        .chunks(chunk)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
    (bytes, body)
}

fn hash(bytes: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

fn gateway_requests(mock: &MockVeracity) -> Vec<RecordedRequest> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect()
}

/// Warms the cache, revokes every token, sends `request`, and checks the 401, the replay
/// with a new token, and that the gateway saw the same body bytes both times.
async fn assert_replayed_identically<S, B>(
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
    let last_two = &seen[seen.len() - 2..];
    assert_eq!(last_two[0].status, StatusCode::UNAUTHORIZED);
    assert_eq!(last_two[1].status, StatusCode::OK);
    assert_eq!(
        hash(&last_two[0].body),
        hash(sent),
        "first attempt carried the body"
    );
    assert_eq!(
        hash(&last_two[1].body),
        hash(sent),
        "the replay carried the same bytes"
    );
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
async fn revoked_token_replays_a_json_body_with_identical_bytes() {
    let mock = mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    let json = Bytes::from_static(br#"{"pageIndex":1,"pageSize":10,"columnFilter":["a","b"]}"#);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(json.clone()))
        .unwrap();
    assert_replayed_identically(&mock, &layer, full_client(), request, &json).await;
}

#[tokio::test]
async fn revoked_token_replays_a_48_kib_streaming_body_sent_in_1_kib_chunks() {
    let mock = mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    let (bytes, body) = streaming(48 * 1024, 1024);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap();
    assert_replayed_identically(&mock, &layer, streaming_client(), request, &bytes).await;
}

#[tokio::test]
async fn revoked_token_replays_an_empty_get() {
    let mock = mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let request = Request::get(url).body(Full::default()).unwrap();
    assert_replayed_identically(&mock, &layer, full_client(), request, b"").await;
}

#[tokio::test]
async fn a_1_mib_streaming_body_gets_the_401_back_and_the_token_is_still_refreshed() {
    let mock = mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    mock.revoke_all_tokens();
    let (_, body) = streaming(1024 * 1024, 16 * 1024);
    let request = Request::post(dataset_query(&mock)).body(body).unwrap();
    let response = layer
        .layer(streaming_client())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the 401, not an error"
    );
    assert_eq!(layer.stats().replays, 0);
    assert_eq!(
        layer.stats().reauthentications,
        1,
        "a refresh started for the next request"
    );
    assert_eq!(layer.stats().fetches, 2);
    // The next request gets the new token (joining the refresh if it is still running).
    warm_up(&mock, &layer).await;
    assert_eq!(mock.stats().token_requests, 2, "exactly one new token");
    assert_eq!(layer.stats().fetches, 2);
}

#[tokio::test]
async fn a_permanent_401_sends_each_request_at_most_twice_and_fetches_once_per_interval() {
    let mock = mock().await;
    let layer = layer_for(&mock);
    warm_up(&mock, &layer).await;
    mock.reject_all_tokens(true);
    let api = layer.layer(full_client());
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let before = mock.stats();
    for _ in 0..1000 {
        let request = Request::get(&url).body(Full::default()).unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let after = mock.stats();
    // The first request is replayed once with a new token; within the 30 s interval the
    // other 999 get their 401 back with no fetch and no replay.
    assert_eq!(after.api_requests - before.api_requests, 1001);
    assert_eq!(after.token_requests - before.token_requests, 1);
    assert_eq!(layer.stats().replays, 1);
    assert_eq!(layer.stats().reauthentications, 1);
}

#[tokio::test]
async fn a_wrong_api_key_returns_the_401_and_causes_no_token_fetch() {
    let mock = mock().await;
    let layer = VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(mock.token_url()),
    )
    .api_key("not-the-key");
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let api = layer.layer(full_client());
    for _ in 0..10 {
        let request = Request::get(&url).body(Full::default()).unwrap();
        let response = api.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap();
        assert!(
            challenge.starts_with("AzureApiManagementKey"),
            "{challenge}"
        );
    }
    assert_eq!(
        mock.stats().token_requests,
        1,
        "only the first request's fetch"
    );
    assert_eq!(mock.stats().rejected_wrong_key, 10);
    assert_eq!(layer.stats().replays, 0);
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

    let mock = mock().await;
    // Tokens are revoked twice within seconds here; lift the 401 rate limit.
    let layer = layer_for(&mock).reauth_interval(Duration::ZERO);
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

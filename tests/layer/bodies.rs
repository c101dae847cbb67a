//! Body types beyond the built-in ones, replayed after a 401 through the layer over a real
//! hyper-util client and the mock: `Either` of replayable bodies, `axum::body::Body` (feature
//! `axum`), a user's newtype through `Replay::map`, and a foreign `Clone` body in a
//! `CloneBody`. Each time the gateway sees the identical body twice (compared by hash) and the
//! caller gets 200. And with `without_replay()`, a body type with no `ReplayableBody` impl.

use crate::common;
use crate::replay::{assert_replayed_identically, warm};

use common::bodies::{chunked, gateway_requests, hash, streaming};

use std::{
    convert::Infallible,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use common::gateway::{dataset_query, http_client_for, layer_for, recording_mock};
use http::{Request, StatusCode, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Either, Full, StreamBody, combinators::UnsyncBoxBody};
use tower::{BoxError, Layer, Service, ServiceExt};
use veracity_auth::{
    VeracityAuth, VeracityAuthLayer,
    replay::{CloneBody, NoReplay, Replay, ReplayableBody},
};

/// POSTs `body` through the layer over a hyper-util client sending `B`, and checks that it
/// was replayed with identical bytes ([`assert_replayed_identically`]).
async fn assert_replayed<B>(body: B, sent: &[u8])
where
    B: ReplayableBody + Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (mock, layer) = warm().await;
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(body)
        .unwrap();
    assert_replayed_identically(&mock, &layer, http_client_for::<B>(), request, sent).await;
}

// ---- Either ----

type FullOrBoxed = Either<Full<Bytes>, UnsyncBoxBody<Bytes, Infallible>>;

#[tokio::test]
async fn either_left_a_full_body_replays_with_identical_bytes() {
    let json = Bytes::from_static(br#"{"pageIndex":1,"pageSize":10}"#);
    let body: FullOrBoxed = Either::Left(Full::new(json.clone()));
    assert_replayed(body, &json).await;
}

#[tokio::test]
async fn either_right_a_48_kib_streaming_body_replays_with_identical_bytes() {
    let (bytes, boxed) = streaming(48 * 1024, 1024);
    let body: FullOrBoxed = Either::Right(boxed);
    assert_replayed(body, &bytes).await;
}

/// Nested: `Either<Either<..>, ..>` replays through two maps.
#[tokio::test]
async fn nested_either_replays_with_identical_bytes() {
    let (bytes, boxed) = streaming(8 * 1024, 1000);
    let body: Either<FullOrBoxed, Full<Bytes>> = Either::Left(Either::Right(boxed));
    assert_replayed(body, &bytes).await;
}

// ---- axum::body::Body ----

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_body_from_a_stream_replays_with_identical_bytes() {
    let (bytes, chunks) = chunked(48 * 1024, 1024);
    let body = axum_core::body::Body::new(StreamBody::new(futures_util::stream::iter(chunks)));
    assert_eq!(body.size_hint().exact(), None, "sent chunked");
    assert_replayed(body, &bytes).await;
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_body_from_bytes_replays_with_identical_bytes() {
    let json = Bytes::from_static(br#"{"pageIndex":1,"pageSize":10,"columnFilter":["a"]}"#);
    let body = axum_core::body::Body::from(json.clone());
    assert_replayed(body, &json).await;
}

// ---- a user's newtype, through Replay::map ----

/// A user's own body type around a boxed body (with a concrete error type, see NOTES).
struct MyBody(UnsyncBoxBody<Bytes, std::io::Error>);

impl Body for MyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl ReplayableBody for MyBody {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        let (body, replay) = self.0.replayable(cap);
        (MyBody(body), replay.map(MyBody))
    }
}

#[tokio::test]
async fn a_users_newtype_around_a_boxed_body_replays_with_identical_bytes() {
    let (bytes, boxed) = streaming(48 * 1024, 1024);
    let body = MyBody(boxed.map_err(|e| match e {}).boxed_unsync());
    assert_replayed(body, &bytes).await;
}

/// A user's own body type around `Full` (replayed as a clone, mapped).
struct MyJson(Full<Bytes>);

impl Body for MyJson {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl ReplayableBody for MyJson {
    fn replayable(self, cap: usize) -> (Self, Replay<Self>) {
        let (body, replay) = self.0.replayable(cap);
        (MyJson(body), replay.map(MyJson))
    }
}

#[tokio::test]
async fn a_users_newtype_around_full_replays_with_identical_bytes() {
    let json = Bytes::from_static(br#"{"pageIndex":2}"#);
    assert_replayed(MyJson(Full::new(json.clone())), &json).await;
}

// ---- a foreign Clone body, in a CloneBody ----

#[tokio::test]
async fn a_foreign_clone_body_in_a_clone_body_replays_with_identical_bytes() {
    // `MapErr` is `Clone` and has no `ReplayableBody` impl of its own.
    let json = Bytes::from_static(br#"{"pageIndex":3}"#);
    let map: fn(Infallible) -> std::io::Error = |e| match e {};
    let body = CloneBody::new(Full::new(json.clone()).map_err(map));
    assert_replayed(body, &json).await;
}

// ---- replay off: any body type ----

type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

/// A user's body type with no `ReplayableBody` impl (a stream of chunks, say from a socket).
struct Upload(StreamBody<Chunks>);

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.0).poll_frame(cx)
    }
}

fn upload(len: usize) -> (Bytes, Upload) {
    let (bytes, chunks) = chunked(len, 1024);
    (
        bytes,
        Upload(StreamBody::new(futures_util::stream::iter(chunks))),
    )
}

#[tokio::test]
async fn without_replay_any_body_type_is_authenticated_and_its_401_comes_back() {
    let mock = recording_mock().await;
    let layer: VeracityAuthLayer<NoReplay> = layer_for(&mock).without_replay();
    let mut svc: VeracityAuth<_, NoReplay> = layer.layer(http_client_for::<Upload>());

    let (sent, body) = upload(4 * 1024);
    let request = Request::post(dataset_query(&mock)).body(body).unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = gateway_requests(&mock);
    assert_eq!(seen.len(), 1);
    assert!(seen[0].had_token && seen[0].had_key, "both headers");
    assert_eq!(hash(&seen[0].body), hash(&sent));

    let (_, body) = upload(2 * 1024);
    let request = Request::post(dataset_query(&mock)).body(body).unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    mock.revoke_all_tokens();
    let before = mock.stats();
    let (_, body) = upload(4 * 1024);
    let request = Request::post(dataset_query(&mock)).body(body).unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the 401 comes back"
    );
    let after = mock.stats();
    assert_eq!(
        after.rejected_revoked_token - before.rejected_revoked_token,
        1
    );
    assert_eq!(
        after.token_requests - before.token_requests,
        0,
        "no refresh on a 401"
    );
    let seen = gateway_requests(&mock);
    assert_eq!(seen.len(), 3, "two OKs and the 401, no replay");
    assert!(
        seen.iter().all(|r| r.had_token && r.had_key),
        "both headers"
    );
    let stats = layer.stats();
    assert_eq!(stats.replays, 0);
    assert_eq!(stats.replay_refreshes, 0);
    assert_eq!(stats.fetches, 1);
}

/// `VeracityAuth<S>` still names the replaying service, and `without_replay()` keeps the
/// layer's authenticator (one cache, one set of counters).
#[tokio::test]
async fn the_default_type_parameter_is_replaying_and_without_replay_keeps_the_cache() {
    let mock = recording_mock().await;
    let layer: VeracityAuthLayer = layer_for(&mock);
    let replaying: VeracityAuth<common::gateway::Http> =
        layer.layer(common::gateway::http_client());
    let response = replaying
        .oneshot(common::gateway::workspace(&mock))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let off = layer.clone().without_replay();
    let (_, body) = upload(10);
    let request = Request::post(dataset_query(&mock)).body(body).unwrap();
    let response = off
        .layer(http_client_for::<Upload>())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(off.stats(), layer.stats());
    assert_eq!(layer.stats().fetches, 1, "one token for both");
}

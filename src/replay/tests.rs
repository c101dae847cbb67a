//! Tests of the replayable bodies.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Empty, Full, Limited, StreamBody};
use proptest::prelude::*;

use super::{Recording, Replay, ReplayableBody, Replayed};

#[derive(Debug, PartialEq, Eq)]
struct TestError(&'static str);

impl std::fmt::Display for TestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TestError {}

/// A body playing given frames, never pending; with `exact`, its size hint is exact and
/// `is_end_stream` is true as soon as no frame is left (as `Full` does), otherwise it only
/// ends by returning `None` (as a stream does).
struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, TestError>>,
    remaining: u64,
    exact: bool,
}

impl Frames {
    fn new(chunks: Vec<Bytes>, trailers: Option<HeaderMap>, exact: bool) -> Self {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        let mut frames: VecDeque<_> = chunks.into_iter().map(|c| Ok(Frame::data(c))).collect();
        frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
        Self {
            frames,
            remaining,
            exact,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = TestError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, TestError>>> {
        let frame = self.frames.pop_front();
        if let Some(Ok(data)) = frame.as_ref().map(|f| f.as_ref().map(Frame::data_ref)) {
            self.remaining = self
                .remaining
                .saturating_sub(data.map_or(0, |d| d.len() as u64));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.exact && self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.exact {
            SizeHint::with_exact(self.remaining)
        } else {
            SizeHint::default()
        }
    }
}

/// What a body yielded.
#[derive(Debug, Default, PartialEq)]
struct Drained {
    chunks: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    error: bool,
}

impl Drained {
    fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }
}

/// Polls `body` to its end; like hyper, with `stop_at_end`, stops as soon as
/// `is_end_stream` is true. `each` is called after every frame.
fn drain_with<B>(body: B, stop_at_end: bool, mut each: impl FnMut()) -> Drained
where
    B: Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Drained::default();
    loop {
        if stop_at_end && body.is_end_stream() {
            return out;
        }
        match body.as_mut().poll_frame(&mut cx) {
            Poll::Pending => panic!("test bodies are never pending"),
            Poll::Ready(None) => return out,
            Poll::Ready(Some(Err(_))) => {
                out.error = true;
                return out;
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => out.chunks.push(data),
                Err(frame) => out.trailers = frame.into_trailers().ok(),
            },
        }
        each();
    }
}

fn drain<B: Body<Data = Bytes>>(body: B) -> Drained {
    drain_with(body, true, || {})
}

fn trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    t.insert("x-checksum", HeaderValue::from_static("abc123"));
    t
}

/// Deterministic pseudo-random bytes.
fn bytes_of(len: usize, mut seed: u64) -> Bytes {
    seed |= 1;
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Splits `data` into chunks of the given sizes, cycling; a size 0 adds an empty chunk.
fn split(data: &Bytes, sizes: &[usize]) -> Vec<Bytes> {
    let mut chunks = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at >= data.len() {
            break;
        }
        if size == 0 {
            chunks.push(Bytes::new());
        }
        let end = data.len().min(at + size.max(1));
        chunks.push(data.slice(at..end));
        at = end;
    }
    chunks
}

type Unsync = UnsyncBoxBody<Bytes, TestError>;

fn unsync(chunks: Vec<Bytes>, trailers: Option<HeaderMap>, exact: bool) -> Unsync {
    UnsyncBoxBody::new(Frames::new(chunks, trailers, exact))
}

const CAP: usize = 64 * 1024;

#[test]
fn clone_bodies_replay() {
    let ((), replay) = ().replayable(0);
    assert!(replay.is_possible());
    assert_eq!(replay.take(), Some(()));

    let (body, replay) = Full::new(Bytes::from_static(b"{\"a\":1}")).replayable(0);
    assert_eq!(drain(body).bytes(), b"{\"a\":1}");
    assert!(replay.is_possible());
    assert_eq!(drain(replay.take().unwrap()).bytes(), b"{\"a\":1}");

    let (body, replay) = Empty::<Bytes>::new().replayable(0);
    assert_eq!(drain(body), Drained::default());
    assert_eq!(drain(replay.take().unwrap()), Drained::default());

    let (body, replay) = String::from("hello").replayable(0);
    assert_eq!(body, "hello");
    assert_eq!(replay.take().as_deref(), Some("hello"));

    let (body, replay) = Bytes::from_static(b"hello").replayable(0);
    assert_eq!(body, "hello");
    assert_eq!(replay.take().unwrap(), "hello");
}

#[test]
fn unrebuildable_bodies_do_not_replay() {
    let stream = StreamBody::new(futures_util::stream::iter(vec![Ok::<_, TestError>(
        Frame::data(Bytes::from_static(b"x")),
    )]));
    let (body, replay) = stream.replayable(CAP);
    assert!(!replay.is_possible());
    assert_eq!(drain(body).bytes(), b"x");
    assert!(replay.take().is_none());

    let (body, replay) = Limited::new(Full::new(Bytes::from_static(b"y")), 10).replayable(CAP);
    assert!(!replay.is_possible());
    assert_eq!(drain(body).bytes(), b"y");
    assert!(replay.take().is_none());
}

#[test]
fn empty_body_is_complete_without_polling() {
    let body: Unsync = Empty::new().map_err(|never| match never {}).boxed_unsync();
    let (_body, replay) = body.replayable(0);
    assert!(replay.is_possible());
    let again = replay.take().expect("an empty body replays");
    assert!(again.is_end_stream());
    assert_eq!(again.size_hint().exact(), Some(0));
    assert_eq!(drain(again), Drained::default());

    // Through `record`, with a wrapping type.
    let (first, replay) = Replay::<Unsync>::record(
        Frames::new(vec![], None, true),
        0,
        UnsyncBoxBody::new,
        UnsyncBoxBody::new,
    );
    assert!(first.is_end_stream());
    assert_eq!(drain(replay.take().unwrap()), Drained::default());
}

#[tokio::test]
async fn recorded_json_replays() {
    let json = Bytes::from_static(br#"{"query":"mutation { a }","variables":{"x":[1,2,3]}}"#);
    let body: BoxBody<Bytes, TestError> = Full::new(json.clone())
        .map_err(|never| match never {})
        .boxed();
    let (body, replay) = body.replayable(CAP);
    assert!(replay.is_possible());
    assert_eq!(body.size_hint().exact(), Some(json.len() as u64));
    let first = body.collect().await.unwrap().to_bytes();
    assert_eq!(first, json);
    let again = replay.take().expect("fully sent, under the cap");
    assert_eq!(again.size_hint().exact(), Some(json.len() as u64));
    assert_eq!(again.collect().await.unwrap().to_bytes(), json);
}

#[test]
fn stops_at_is_end_stream_like_hyper() {
    // `Full` says it is at its end right after its data frame: hyper never polls `None`.
    let json = Bytes::from_static(b"[1,2,3]");
    let body: Unsync = Full::new(json.clone())
        .map_err(|never| match never {})
        .boxed_unsync();
    let (body, replay) = body.replayable(CAP);
    let mut body = Box::pin(body);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        body.as_mut().poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    assert!(body.is_end_stream());
    // The first attempt's body is still alive, but finished.
    let again = replay.take().expect("end of stream was seen");
    assert_eq!(drain(again).bytes(), json);
}

#[test]
fn chunked_with_trailers_replays_identically() {
    let data = bytes_of(48 * 1024, 7);
    let chunks = split(&data, &[1024]);
    assert_eq!(chunks.len(), 48);
    for exact in [false, true] {
        let (body, replay) = unsync(chunks.clone(), Some(trailers()), exact).replayable(CAP);
        let first = drain(body);
        assert_eq!(first.chunks, chunks);
        assert_eq!(first.trailers, Some(trailers()));
        let again = replay.take().expect("under the cap");
        assert_eq!(again.size_hint().exact(), Some(data.len() as u64));
        let again = drain_with(again, false, || {});
        assert_eq!(again.chunks, chunks);
        assert_eq!(again.trailers, Some(trailers()));
        assert!(!again.error);
    }
}

#[test]
fn replayed_body_reports_its_end() {
    let data = bytes_of(3000, 3);
    let (body, replay) = unsync(split(&data, &[1000]), Some(trailers()), false).replayable(CAP);
    drain(body);
    let mut again = Box::pin(replay.take().unwrap());
    let mut cx = Context::from_waker(Waker::noop());
    for left in [2000, 1000, 0] {
        assert!(!again.is_end_stream());
        let _ = again.as_mut().poll_frame(&mut cx);
        assert_eq!(again.size_hint().exact(), Some(left));
    }
    assert!(!again.is_end_stream(), "trailers are left");
    let frame = again.as_mut().poll_frame(&mut cx);
    assert!(matches!(frame, Poll::Ready(Some(Ok(f))) if f.is_trailers()));
    assert!(again.is_end_stream());
    assert!(matches!(
        again.as_mut().poll_frame(&mut cx),
        Poll::Ready(None)
    ));
}

#[test]
fn over_cap_does_not_replay_and_streams_everything() {
    let data = bytes_of(1024 * 1024, 11);
    let chunks = split(&data, &[16 * 1024]);
    let (body, replay) = unsync(chunks.clone(), Some(trailers()), false).replayable(CAP);
    assert!(replay.is_possible());
    let mut max = 0;
    let first = drain_with(body, true, || max = max.max(replay.recorded_len()));
    assert_eq!(first.chunks, chunks);
    assert_eq!(first.trailers, Some(trailers()));
    assert_eq!(max, CAP);
    assert!(!replay.is_possible());
    assert_eq!(replay.recorded_len(), 0, "freed once over the cap");
    assert!(replay.take().is_none());
}

#[test]
fn known_over_cap_is_not_recorded() {
    let data = bytes_of(1024 * 1024, 5);
    let (body, replay) = unsync(split(&data, &[8192]), None, true).replayable(CAP);
    assert!(!replay.is_possible(), "the size hint says it cannot fit");
    assert_eq!(drain(body).bytes(), data);
    assert!(replay.take().is_none());

    // Through `record`: forwarded by a recording that records nothing.
    let (body, replay) = Replay::<Unsync>::record(
        Frames::new(split(&data, &[8192]), None, true),
        CAP,
        UnsyncBoxBody::new,
        UnsyncBoxBody::new,
    );
    assert!(!replay.is_possible());
    assert_eq!(drain(body).bytes(), data);
}

#[test]
fn exactly_the_cap_replays() {
    let data = bytes_of(CAP, 9);
    let (body, replay) = unsync(split(&data, &[1000]), None, false).replayable(CAP);
    drain(body);
    assert_eq!(drain(replay.take().unwrap()).bytes(), data);
}

#[test]
fn a_body_still_being_read_does_not_replay() {
    let data = bytes_of(4096, 1);
    let mut cx = Context::from_waker(Waker::noop());
    // Still alive, not finished: another copy holds the body.
    let (body, replay) = unsync(split(&data, &[1024]), None, false).replayable(CAP);
    let mut body = Box::pin(body);
    let _ = body.as_mut().poll_frame(&mut cx);
    assert!(replay.is_possible());
    assert!(replay.poll_settled(&mut cx).is_pending());
    assert!(replay.take().is_none());
}

#[test]
fn a_body_dropped_before_its_end_replays_what_was_sent_then_the_rest() {
    let data = bytes_of(4096, 1);
    let chunks = split(&data, &[1024]);
    let mut cx = Context::from_waker(Waker::noop());
    for (sent, trailers) in [
        (0, None),
        (1, None),
        (3, Some(trailers())),
        (4, Some(trailers())),
    ] {
        let (body, replay) = unsync(chunks.clone(), trailers.clone(), false).replayable(CAP);
        let mut body = Box::pin(body);
        for _ in 0..sent {
            let _ = body.as_mut().poll_frame(&mut cx);
        }
        assert!(replay.poll_settled(&mut cx).is_pending());
        drop(body);
        assert!(replay.poll_settled(&mut cx).is_ready());
        assert!(replay.is_possible());
        assert_eq!(replay.recorded_len(), sent * 1024);
        let again = replay.take().expect("the prefix and the rest");
        assert_eq!(again.size_hint().lower(), (sent * 1024) as u64);
        let again = drain_with(again, false, || {});
        assert_eq!(again.chunks, chunks, "sent {sent}");
        assert_eq!(again.trailers, trailers);
        assert!(!again.error);
    }
}

#[test]
fn a_body_dropped_at_its_exact_size_counts_as_ended() {
    let data = bytes_of(4096, 1);
    let mut cx = Context::from_waker(Waker::noop());
    // All the data its exact size hint promised was read: it counts as ended, even alive
    // (as hyper stops at `Content-Length`), and replays its data.
    let (body, replay) = unsync(split(&data, &[1024]), None, true).replayable(CAP);
    let mut body = Box::pin(body);
    for _ in 0..4 {
        let _ = body.as_mut().poll_frame(&mut cx);
    }
    assert!(replay.poll_settled(&mut cx).is_ready());
    assert_eq!(drain(replay.take().unwrap()).bytes(), data);
    drop(body);

    // Dropped there, with trailers still unread: they follow the replayed data.
    let (body, replay) = unsync(split(&data, &[1024]), Some(trailers()), true).replayable(CAP);
    let mut body = Box::pin(body);
    for _ in 0..4 {
        let _ = body.as_mut().poll_frame(&mut cx);
    }
    drop(body);
    let again = drain_with(replay.take().unwrap(), false, || {});
    assert_eq!(again.bytes(), data);
    assert_eq!(again.trailers, Some(trailers()));
}

#[test]
fn a_body_dropped_after_going_over_the_cap_does_not_replay() {
    let data = bytes_of(4096, 1);
    let mut cx = Context::from_waker(Waker::noop());
    let (body, replay) = unsync(split(&data, &[1024]), None, false).replayable(2048);
    let mut body = Box::pin(body);
    for _ in 0..3 {
        let _ = body.as_mut().poll_frame(&mut cx);
    }
    assert!(replay.poll_settled(&mut cx).is_ready());
    drop(body);
    assert!(!replay.is_possible());
    assert!(replay.take().is_none());
}

#[test]
fn errors_pass_through_and_prevent_replay() {
    let mut frames = Frames::new(vec![Bytes::from_static(b"ok")], None, false);
    frames.frames.push_back(Err(TestError("boom")));
    frames
        .frames
        .push_back(Ok(Frame::data(Bytes::from_static(b"never"))));
    let (body, replay) = UnsyncBoxBody::new(frames).replayable(CAP);
    let mut body = Box::pin(body);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        body.as_mut().poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    match body.as_mut().poll_frame(&mut cx) {
        Poll::Ready(Some(Err(e))) => assert_eq!(e, TestError("boom")),
        _ => panic!("the error is forwarded"),
    }
    assert!(!replay.is_possible());
    // Frames after the error are still forwarded as they are.
    assert!(matches!(
        body.as_mut().poll_frame(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    assert!(matches!(
        body.as_mut().poll_frame(&mut cx),
        Poll::Ready(None)
    ));
    assert!(replay.take().is_none());
}

#[test]
fn recording_forwards_hints() {
    let (body, replay) = Replay::<Unsync>::record(
        Frames::new(vec![Bytes::from_static(b"abcd")], None, true),
        CAP,
        UnsyncBoxBody::new,
        UnsyncBoxBody::new,
    );
    assert_eq!(body.size_hint().exact(), Some(4));
    assert!(!body.is_end_stream());
    assert_eq!(drain(body).bytes(), b"abcd");
    assert_eq!(drain(replay.take().unwrap()).bytes(), b"abcd");
}

#[test]
fn debug_output() {
    let (_body, replay) = unsync(vec![Bytes::from_static(b"a")], None, false).replayable(CAP);
    assert!(format!("{replay:?}").contains("recorded"));
    assert!(format!("{:?}", Replay::<()>::none()).contains("none"));
}

#[test]
fn send_and_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Replay<Unsync>>();
    send::<Recording<Unsync>>();
    send_sync::<Replay<BoxBody<Bytes, TestError>>>();
    send_sync::<Recording<BoxBody<Bytes, TestError>>>();
    send_sync::<Replayed<TestError>>();
    send_sync::<Replayed<std::rc::Rc<()>>>();
}

#[cfg(feature = "tonic")]
#[test]
fn tonic_body_replays() {
    let data = bytes_of(10_000, 13);
    let chunks = split(&data, &[999]);
    let body = tonic::body::Body::new(Frames::new(chunks.clone(), Some(trailers()), false));
    let (body, replay) = body.replayable(CAP);
    let first = drain(body);
    assert_eq!(first.chunks, chunks);
    assert_eq!(first.trailers, Some(trailers()));
    let again = drain(replay.take().expect("under the cap"));
    assert_eq!(again.bytes(), data);
    assert_eq!(again.trailers, Some(trailers()));

    let (body, replay) = tonic::body::Body::default().replayable(CAP);
    assert!(body.is_end_stream());
    assert!(replay.take().expect("empty").is_end_stream());

    let body = tonic::body::Body::new(Frames::new(split(&data, &[999]), None, false));
    let (body, replay) = body.replayable(1000);
    assert_eq!(drain(body).bytes(), data);
    assert!(replay.take().is_none());
}

fn cap_for(len: usize, mode: u8, raw: usize) -> usize {
    match mode {
        0 => raw,
        1 => len,
        2 => len.saturating_sub(1),
        _ => len + raw % 64,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn replays_exactly_or_not_at_all(
        len in 0usize..200_000,
        seed in any::<u64>(),
        sizes in proptest::collection::vec(0usize..20_000, 1..8),
        cap_mode in 0u8..4,
        cap_raw in 0usize..250_000,
        with_trailers in any::<bool>(),
        exact in any::<bool>(),
        stop_at_end in any::<bool>(),
    ) {
        let data = bytes_of(len, seed);
        let cap = cap_for(len, cap_mode, cap_raw);
        let chunks = split(&data, &sizes);
        let trailers = with_trailers.then(trailers);

        let (body, replay) = unsync(chunks.clone(), trailers.clone(), exact).replayable(cap);
        let mut max = 0;
        let first = drain_with(body, stop_at_end, || max = max.max(replay.recorded_len()));
        prop_assert!(max <= cap);
        prop_assert_eq!(&first.chunks, &chunks);
        prop_assert_eq!(&first.trailers, &trailers);
        prop_assert!(!first.error);

        if len <= cap {
            prop_assert!(replay.is_possible());
            let again = replay.take();
            prop_assert!(again.is_some());
            let again = drain_with(again.unwrap(), stop_at_end, || {});
            prop_assert_eq!(again.bytes(), data.to_vec());
            prop_assert_eq!(&again.trailers, &trailers);
        } else {
            prop_assert!(!replay.is_possible());
            prop_assert!(replay.take().is_none());
        }
    }
}

#[test]
fn map_keeps_none_and_clone() {
    let replay = Replay::<Full<Bytes>>::none().map(Some);
    assert!(!replay.is_possible());
    assert!(replay.take().is_none());

    let json = Bytes::from_static(b"{}");
    let replay = Replay::clone_of(Full::new(json.clone())).map(Some);
    assert!(replay.is_possible());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(replay.poll_settled(&mut cx).is_ready());
    assert_eq!(drain(replay.take().unwrap().unwrap()).bytes(), json);
}

#[test]
fn map_of_a_recording_settles_and_replays_like_the_recording() {
    use http_body_util::Either;
    let data = bytes_of(4096, 3);
    let chunks = split(&data, &[1024]);
    let mut cx = Context::from_waker(Waker::noop());

    // Dropped after two chunks: pending while held, then the prefix and the rest.
    let body: Either<Full<Bytes>, Unsync> = Either::Right(unsync(chunks.clone(), None, false));
    let (body, replay) = body.replayable(CAP);
    assert!(matches!(body, Either::Right(_)));
    let mut body = Box::pin(body);
    for _ in 0..2 {
        let _ = body.as_mut().poll_frame(&mut cx);
    }
    assert!(replay.poll_settled(&mut cx).is_pending());
    drop(body);
    assert!(replay.poll_settled(&mut cx).is_ready());
    assert_eq!(replay.recorded_len(), 2048);
    let Some(Either::Right(again)) = replay.take() else {
        panic!("the replay is the same side");
    };
    assert_eq!(drain_with(again, false, || {}).chunks, chunks);

    // Over the cap: not possible, through the map.
    let body: Either<Full<Bytes>, Unsync> = Either::Right(unsync(chunks, None, false));
    let (body, replay) = body.replayable(2048);
    assert_eq!(drain(body).bytes(), data);
    assert!(!replay.is_possible());
    assert!(replay.take().is_none());

    // The left side replays as a clone.
    let body: Either<Full<Bytes>, Unsync> = Either::Left(Full::new(data.clone()));
    let (body, replay) = body.replayable(0);
    assert_eq!(drain(body).bytes(), data);
    let Some(Either::Left(again)) = replay.take() else {
        panic!("the replay is the same side");
    };
    assert_eq!(drain(again).bytes(), data);
}

#[test]
fn clone_body_forwards_and_replays_a_clone() {
    let data = bytes_of(100, 4);
    let body = super::CloneBody::new(Full::new(data.clone()));
    assert_eq!(body.size_hint().exact(), Some(100));
    assert!(!body.is_end_stream());
    let (body, replay) = body.replayable(0);
    assert_eq!(drain(body).bytes(), data);
    assert_eq!(drain(replay.take().unwrap()).bytes(), data);
}

//! The recording body, the buffer it shares with its [`Replay`], and [`Replay`] itself.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::replayed::Replayed;

/// Where a recording stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Frames are being recorded; the end of the stream has not been seen yet.
    Recording,
    /// The end of the stream was seen and everything fits: the recording can be replayed.
    Complete,
    /// Over the cap, failed, or dropped before its end: nothing is held, no replay.
    Abandoned,
}

/// What a recording holds: the data chunks (reference-counted, not copied) and trailers.
pub(crate) struct Buffer {
    state: State,
    chunks: Vec<Bytes>,
    /// Sum of the lengths of `chunks`; never more than `cap`.
    len: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
}

/// The recorded frames of a complete recording, handed to [`Replayed`].
pub(crate) struct Parts {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) len: usize,
    pub(crate) trailers: Option<HeaderMap>,
}

impl Buffer {
    fn new(cap: usize, state: State) -> Self {
        Self {
            state,
            chunks: Vec::new(),
            len: 0,
            cap,
            trailers: None,
        }
    }

    /// Records one data chunk, or abandons the recording if it would go over the cap.
    fn push_data(&mut self, data: &Bytes) {
        if self.state != State::Recording || data.is_empty() {
            return;
        }
        if data.len() > self.cap.saturating_sub(self.len) {
            self.abandon();
            return;
        }
        self.len = self.len.saturating_add(data.len());
        self.chunks.push(data.clone());
    }

    fn push_trailers(&mut self, trailers: &HeaderMap) {
        if self.state == State::Recording {
            self.trailers = Some(trailers.clone());
            self.state = State::Complete;
        }
    }

    fn complete(&mut self) {
        if self.state == State::Recording {
            self.state = State::Complete;
        }
    }

    /// Frees what is held; no replay from now on.
    fn abandon(&mut self) {
        self.state = State::Abandoned;
        self.chunks = Vec::new();
        self.len = 0;
        self.trailers = None;
    }

    fn take_parts(&mut self) -> Parts {
        let parts = Parts {
            chunks: std::mem::take(&mut self.chunks),
            len: self.len,
            trailers: self.trailers.take(),
        };
        self.len = 0;
        parts
    }
}

fn lock(buffer: &Mutex<Buffer>) -> MutexGuard<'_, Buffer> {
    buffer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recording side's view of the shared buffer (erases the error and body types).
trait Sink: Send + Sync {
    fn buffer(&self) -> &Mutex<Buffer>;
}

/// The replay side's view of the shared buffer: it also knows how to build a `B`.
trait Rebuild<B>: Send + Sync {
    fn buffer(&self) -> &Mutex<Buffer>;
    fn rebuild(&self, parts: Parts) -> B;
}

/// The one allocation a recording needs: the buffer and how to turn it back into a `B`.
struct Shared<E, B> {
    buffer: Mutex<Buffer>,
    rewrap: fn(Replayed<E>) -> B,
}

impl<E, B> Sink for Shared<E, B> {
    fn buffer(&self) -> &Mutex<Buffer> {
        &self.buffer
    }
}

impl<E, B> Rebuild<B> for Shared<E, B> {
    fn buffer(&self) -> &Mutex<Buffer> {
        &self.buffer
    }

    fn rebuild(&self, parts: Parts) -> B {
        (self.rewrap)(Replayed::new(parts))
    }
}

/// The recording's handle on the shared buffer; dropping it before the end abandons it.
struct Recorder(Arc<dyn Sink>);

impl Recorder {
    fn buffer(&self) -> MutexGuard<'_, Buffer> {
        lock(self.0.buffer())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let mut buffer = self.buffer();
        if buffer.state == State::Recording {
            buffer.abandon();
        }
    }
}

pin_project! {
    /// A body that forwards the frames of `T` unchanged (data, trailers, errors, size hint,
    /// end of stream) and records its data chunks and trailers for a [`Replay`].
    ///
    /// Data chunks are kept as [`Bytes`] clones (no copy). Once the recorded data would go
    /// over the cap, the recording frees what it holds, the replay becomes impossible, and the
    /// body keeps streaming. An error from `T`, or dropping this body before its end, also
    /// makes the replay impossible. Built by [`Replay::record`] or [`Replay::record_same`].
    pub struct Recording<T> {
        #[pin]
        inner: T,
        // `None` once the recording reached a final state, or when nothing is to be recorded.
        recorder: Option<Recorder>,
    }
}

impl<T> Recording<T> {
    fn new(inner: T, recorder: Option<Recorder>) -> Self {
        Self { inner, recorder }
    }
}

impl<T: fmt::Debug> fmt::Debug for Recording<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field("inner", &self.inner)
            .field("recording", &self.recorder.is_some())
            .finish()
    }
}

impl<T> Body for Recording<T>
where
    T: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = T::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, T::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let Some(recorder) = this.recorder.as_ref() else {
            return polled;
        };
        let done = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(None) => {
                recorder.buffer().complete();
                true
            }
            Poll::Ready(Some(Err(_))) => {
                recorder.buffer().abandon();
                true
            }
            Poll::Ready(Some(Ok(frame))) => {
                // Senders such as hyper stop polling once `is_end_stream` is true, so the end
                // of the stream may never be seen as `None`.
                let at_end = this.inner.is_end_stream();
                let mut buffer = recorder.buffer();
                if let Some(data) = frame.data_ref() {
                    buffer.push_data(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    buffer.push_trailers(trailers);
                } else {
                    // A kind of frame that cannot be played back.
                    buffer.abandon();
                }
                if at_end {
                    buffer.complete();
                }
                buffer.state != State::Recording
            }
        };
        if done {
            *this.recorder = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if let Some(recorder) = self.recorder.as_ref().filter(|_| end) {
            recorder.buffer().complete();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a replay of one request body needs; obtained from
/// [`ReplayableBody::replayable`](super::ReplayableBody::replayable).
pub struct Replay<B> {
    kind: Kind<B>,
}

enum Kind<B> {
    None,
    Clone(B),
    Recorded(Arc<dyn Rebuild<B>>),
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::None => "none",
            Kind::Clone(_) => "clone",
            Kind::Recorded(_) => "recorded",
        };
        f.debug_struct("Replay")
            .field("kind", &kind)
            .field("possible", &self.is_possible())
            .finish()
    }
}

impl<B> Replay<B> {
    /// No replay is possible (the 401 is returned as it is).
    pub fn none() -> Self {
        Self { kind: Kind::None }
    }

    /// The body is cheap to clone: a replay sends `copy`.
    pub fn clone_of(copy: B) -> Self {
        Self {
            kind: Kind::Clone(copy),
        }
    }

    /// The body for the second attempt, if a replay is possible now.
    ///
    /// Always for [`clone_of`](Self::clone_of); for a recorded body only if the first
    /// attempt's body was read to its end (end of stream seen, trailers included), without an
    /// error, and never went over the cap. `None` otherwise, in particular while the first
    /// attempt's [`Recording`] is still alive and not finished.
    pub fn take(self) -> Option<B> {
        match self.kind {
            Kind::None => None,
            Kind::Clone(copy) => Some(copy),
            Kind::Recorded(shared) => {
                let parts = {
                    let mut buffer = lock(shared.buffer());
                    if buffer.state != State::Complete {
                        return None;
                    }
                    buffer.take_parts()
                };
                Some(shared.rebuild(parts))
            }
        }
    }

    /// Whether a replay could still be possible: `false` for [`none`](Self::none), and for a
    /// recording that went over the cap, failed, or was dropped before its end. Cheap.
    pub fn is_possible(&self) -> bool {
        match &self.kind {
            Kind::None => false,
            Kind::Clone(_) => true,
            Kind::Recorded(shared) => lock(shared.buffer()).state != State::Abandoned,
        }
    }

    /// Bytes of data the recording holds now (0 when not recording).
    #[cfg(test)]
    pub(crate) fn recorded_len(&self) -> usize {
        match &self.kind {
            Kind::Recorded(shared) => lock(shared.buffer()).len,
            _ => 0,
        }
    }
}

impl<B: 'static> Replay<B> {
    /// Wraps `body`, the body that will actually be sent, so that it records what it sends.
    ///
    /// Returns the recording body to send now, converted into `B` by `wrap`, and the replay,
    /// which will build its body by converting a [`Replayed`] into `B` with `rewrap`. `cap` is
    /// the most data bytes the recording may hold (trailers are not counted).
    ///
    /// A body whose size hint says it has more than `cap` bytes is not recorded (the
    /// recording only forwards it, without allocating); a body already at its end is recorded
    /// as complete without needing to be polled.
    pub fn record<T, E>(
        body: T,
        cap: usize,
        wrap: fn(Recording<T>) -> B,
        rewrap: fn(Replayed<E>) -> B,
    ) -> (B, Self)
    where
        T: Body<Data = Bytes, Error = E>,
        E: 'static,
    {
        if over_cap(&body, cap) {
            return (wrap(Recording::new(body, None)), Self::none());
        }
        let at_end = body.is_end_stream();
        let (replay, recorder) = Self::shared(cap, at_end, rewrap);
        (wrap(Recording::new(body, recorder)), replay)
    }

    /// Like [`record`](Self::record) for a body whose recording is converted back into its
    /// own type `B` (as type-erased bodies are). Here a body whose size hint says it has more
    /// than `cap` bytes, or that is already at its end, is returned as it is, not wrapped.
    pub fn record_same<E>(
        body: B,
        cap: usize,
        wrap: fn(Recording<B>) -> B,
        rewrap: fn(Replayed<E>) -> B,
    ) -> (B, Self)
    where
        B: Body<Data = Bytes, Error = E>,
        E: 'static,
    {
        if over_cap(&body, cap) {
            return (body, Self::none());
        }
        if body.is_end_stream() {
            let (replay, _) = Self::shared(cap, true, rewrap);
            return (body, replay);
        }
        Self::record(body, cap, wrap, rewrap)
    }

    /// Allocates the shared buffer; no recorder is needed for a body already at its end.
    fn shared<E: 'static>(
        cap: usize,
        at_end: bool,
        rewrap: fn(Replayed<E>) -> B,
    ) -> (Self, Option<Recorder>) {
        let state = if at_end {
            State::Complete
        } else {
            State::Recording
        };
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::new(cap, state)),
            rewrap,
        });
        let recorder = (!at_end).then(|| Recorder(shared.clone()));
        let replay = Self {
            kind: Kind::Recorded(shared),
        };
        (replay, recorder)
    }
}

/// Whether the size hint promises more than `cap` bytes.
fn over_cap<T: Body>(body: &T, cap: usize) -> bool {
    u64::try_from(cap).is_ok_and(|cap| body.size_hint().lower() > cap)
}

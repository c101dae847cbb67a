//! The recording body, the buffer it shares with its [`Replay`], and [`Replay`] itself.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use super::replayed::{RecordedFrames, Replayed};

/// Where a recording stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecordingState {
    /// Frames are being recorded; the end of the stream has not been seen yet.
    Recording,
    /// The end of the stream was seen and everything fits: the recording can be replayed.
    Complete,
    /// Dropped before its end (as h2 and hyper do once the server has answered, or once
    /// `Content-Length` bytes are written), within the cap and without an error: the
    /// recording holds what was sent and the unread remainder, and can be replayed.
    Dropped,
    /// Over the cap or failed: nothing is held, no replay.
    Abandoned,
}

/// What a recording holds: the data chunks (reference-counted, not copied), trailers, and,
/// once dropped before its end, the body `T` it had not read yet.
pub(crate) struct Buffer<T> {
    state: RecordingState,
    /// The exact size hint reached zero: all data was sent, though the body is still alive
    /// (trailers may follow). Counts as the end for a replay decided now.
    data_complete: bool,
    chunks: Vec<Bytes>,
    /// Sum of the lengths of `chunks`; never more than `cap`.
    len: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
    rest: Option<T>,
    /// The replay waiting for the recording to settle.
    waker: Option<Waker>,
}

impl<T> Buffer<T> {
    fn new(cap: usize, state: RecordingState) -> Self {
        Self {
            state,
            data_complete: false,
            chunks: Vec::new(),
            len: 0,
            cap,
            trailers: None,
            rest: None,
            waker: None,
        }
    }

    /// Whether a replay can be decided now: the recording reached a final state, or all its
    /// data was sent.
    fn settled(&self) -> bool {
        self.state != RecordingState::Recording || self.data_complete
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The first attempt's body was dropped before its end: keep what it had not read.
    /// Returns a remainder that is not needed, to be dropped outside the lock.
    fn dropped(&mut self, rest: Option<T>) -> Option<T>
    where
        T: Body,
    {
        if self.state != RecordingState::Recording {
            return rest;
        }
        match rest {
            Some(rest) if !rest.is_end_stream() => {
                self.state = RecordingState::Dropped;
                self.rest = Some(rest);
                self.wake();
                None
            }
            ended => {
                self.complete();
                ended
            }
        }
    }

    /// Records one data chunk, or abandons the recording if it would go over the cap.
    fn push_data(&mut self, data: &Bytes) {
        if self.state != RecordingState::Recording || data.is_empty() {
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
        if self.state == RecordingState::Recording {
            self.trailers = Some(trailers.clone());
            self.complete();
        }
    }

    fn complete(&mut self) {
        if self.state == RecordingState::Recording {
            self.state = RecordingState::Complete;
            self.wake();
        }
    }

    /// Frees what is held; no replay from now on. Returns the remainder, if one was held,
    /// to be dropped outside the lock.
    fn abandon(&mut self) -> Option<T> {
        self.state = RecordingState::Abandoned;
        self.chunks = Vec::new();
        self.len = 0;
        self.trailers = None;
        self.wake();
        self.rest.take()
    }

    fn take_parts(&mut self) -> RecordedFrames {
        let parts = RecordedFrames {
            chunks: std::mem::take(&mut self.chunks),
            len: self.len,
            trailers: self.trailers.take(),
        };
        self.len = 0;
        parts
    }
}

fn lock<T>(buffer: &Mutex<Buffer<T>>) -> MutexGuard<'_, Buffer<T>> {
    buffer.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recording side's view of the shared buffer (erases the error and replay types).
trait Sink<T>: Send + Sync {
    fn buffer(&self) -> &Mutex<Buffer<T>>;
    /// The recording was dropped before reaching a final state; `rest` is its inner body.
    fn dropped(&self, rest: Option<T>);
}

/// The replay side's view of the shared buffer (erases the recorded body type).
trait Rebuild<B>: Send + Sync {
    /// The body for the replay, if the recording allows one now.
    fn take(&self) -> Option<B>;
    fn is_possible(&self) -> bool;
    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()>;
    #[cfg(test)]
    fn recorded_len(&self) -> usize;
}

/// The one allocation a recording needs: the buffer and how to turn it back into a `B`.
struct SharedRecording<T, E, B> {
    buffer: Mutex<Buffer<T>>,
    rewrap: fn(Replayed<E>) -> B,
}

impl<T, E, B> Sink<T> for SharedRecording<T, E, B>
where
    T: Body + Send,
{
    fn buffer(&self) -> &Mutex<Buffer<T>> {
        &self.buffer
    }

    fn dropped(&self, rest: Option<T>) {
        let unneeded = lock(&self.buffer).dropped(rest);
        drop(unneeded);
    }
}

impl<T, E, B> Rebuild<B> for SharedRecording<T, E, B>
where
    T: Body<Data = Bytes, Error = E> + Send + Unpin + 'static,
    E: 'static,
{
    fn take(&self) -> Option<B> {
        let (parts, rest) = {
            let mut buffer = lock(&self.buffer);
            let ended = buffer.state == RecordingState::Complete
                || (buffer.state == RecordingState::Recording && buffer.data_complete);
            if !ended && buffer.state != RecordingState::Dropped {
                return None;
            }
            (buffer.take_parts(), buffer.rest.take())
        };
        Some((self.rewrap)(Replayed::new(parts, rest)))
    }

    fn is_possible(&self) -> bool {
        lock(&self.buffer).state != RecordingState::Abandoned
    }

    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut buffer = lock(&self.buffer);
        if buffer.settled() {
            return Poll::Ready(());
        }
        match &mut buffer.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => buffer.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    #[cfg(test)]
    fn recorded_len(&self) -> usize {
        lock(&self.buffer).len
    }
}

/// A recorded replay whose body is converted by `f` when taken ([`Replay::map`]).
struct Mapped<B, F> {
    inner: Arc<dyn Rebuild<B>>,
    f: F,
}

impl<B, C, F> Rebuild<C> for Mapped<B, F>
where
    F: Fn(B) -> C + Send + Sync,
{
    fn take(&self) -> Option<C> {
        self.inner.take().map(&self.f)
    }

    fn is_possible(&self) -> bool {
        self.inner.is_possible()
    }

    fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_settled(cx)
    }

    #[cfg(test)]
    fn recorded_len(&self) -> usize {
        self.inner.recorded_len()
    }
}

/// The recording's handle on the shared buffer.
struct Recorder<T>(Arc<dyn Sink<T>>);

impl<T> Recorder<T> {
    fn buffer(&self) -> MutexGuard<'_, Buffer<T>> {
        lock(self.0.buffer())
    }
}

/// A body that forwards the frames of `T` unchanged (data, trailers, errors, size hint,
/// end of stream) and records its data chunks and trailers for a [`Replay`].
///
/// Data chunks are kept as [`Bytes`] clones (no copy). Once the recorded data would go
/// over the cap, the recording frees what it holds, the replay becomes impossible, and the
/// body keeps streaming. An error from `T` also makes the replay impossible. Dropping this
/// body before its end (within the cap, without an error) hands `T`, unread past what was
/// sent, to the replay, which sends the recorded data and then the rest of `T`. Built by
/// [`Replay::record`] or [`Replay::record_same`].
pub struct Recording<T> {
    // `Some` until dropped (then perhaps handed to the replay).
    inner: Option<T>,
    // `None` once the recording reached a final state, or when nothing is to be recorded.
    recorder: Option<Recorder<T>>,
}

impl<T> Recording<T> {
    fn new(inner: T, recorder: Option<Recorder<T>>) -> Self {
        Self {
            inner: Some(inner),
            recorder,
        }
    }
}

impl<T> Drop for Recording<T> {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            recorder.0.dropped(self.inner.take());
        }
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
    T: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = T::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, T::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut *inner).poll_frame(cx);
        let Some(recorder) = this.recorder.as_ref() else {
            return polled;
        };
        let (done, unneeded) = match &polled {
            Poll::Pending => return polled,
            Poll::Ready(None) => {
                recorder.buffer().complete();
                (true, None)
            }
            Poll::Ready(Some(Err(_))) => (true, recorder.buffer().abandon()),
            Poll::Ready(Some(Ok(frame))) => {
                // Senders such as hyper stop polling once `is_end_stream` is true, so the end
                // of the stream may never be seen as `None`.
                let at_end = inner.is_end_stream();
                let mut buffer = recorder.buffer();
                let mut unneeded = None;
                if let Some(data) = frame.data_ref() {
                    buffer.push_data(data);
                    // All the data promised by an exact size hint was sent.
                    if inner.size_hint().exact() == Some(0) && !buffer.data_complete {
                        buffer.data_complete = true;
                        buffer.wake();
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    buffer.push_trailers(trailers);
                } else {
                    // A kind of frame that cannot be played back.
                    unneeded = buffer.abandon();
                }
                if at_end {
                    buffer.complete();
                }
                (buffer.state != RecordingState::Recording, unneeded)
            }
        };
        drop(unneeded);
        if done {
            this.recorder = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.as_ref().is_none_or(T::is_end_stream);
        if let Some(recorder) = self.recorder.as_ref().filter(|_| end) {
            recorder.buffer().complete();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), T::size_hint)
    }
}

/// What a replay of one request body needs; obtained from
/// [`ReplayableBody::replayable`](super::ReplayableBody::replayable).
pub struct Replay<B> {
    source: ReplaySource<B>,
}

enum ReplaySource<B> {
    None,
    Clone(B),
    Recorded(Arc<dyn Rebuild<B>>),
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.source {
            ReplaySource::None => "none",
            ReplaySource::Clone(_) => "clone",
            ReplaySource::Recorded(_) => "recorded",
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
        Self {
            source: ReplaySource::None,
        }
    }

    /// The body is cheap to clone: a replay sends `copy`.
    pub fn clone_of(copy: B) -> Self {
        Self {
            source: ReplaySource::Clone(copy),
        }
    }

    /// The body for the second attempt, if a replay is possible now.
    ///
    /// Always for [`clone_of`](Self::clone_of). For a recorded body: if the first attempt's
    /// body was read to its end (end of stream seen, trailers included, or all the data its
    /// exact size hint promised), the recorded frames; if it was dropped before its end, the
    /// recorded frames followed by the rest of the body, unread. Only without an error and
    /// within the cap. `None` otherwise, in particular while the first attempt's
    /// [`Recording`] is still alive and not finished: another copy still holds the body.
    pub fn take(self) -> Option<B> {
        match self.source {
            ReplaySource::None => None,
            ReplaySource::Clone(copy) => Some(copy),
            ReplaySource::Recorded(shared) => shared.take(),
        }
    }

    /// Whether a replay could still be possible: `false` for [`none`](Self::none), and for a
    /// recording that went over the cap or failed. Cheap.
    pub fn is_possible(&self) -> bool {
        match &self.source {
            ReplaySource::None => false,
            ReplaySource::Clone(_) => true,
            ReplaySource::Recorded(shared) => shared.is_possible(),
        }
    }

    /// Ready once [`take`](Self::take) can decide: the first attempt's body ended, was
    /// dropped, went over the cap or failed. Registers `cx`'s waker until then.
    pub(crate) fn poll_settled(&self, cx: &mut Context<'_>) -> Poll<()> {
        match &self.source {
            ReplaySource::Recorded(shared) => shared.poll_settled(cx),
            _ => Poll::Ready(()),
        }
    }

    /// Bytes of data the recording holds now (0 when not recording).
    #[cfg(test)]
    pub(crate) fn recorded_len(&self) -> usize {
        match &self.source {
            ReplaySource::Recorded(shared) => shared.recorded_len(),
            _ => 0,
        }
    }
}

impl<B: 'static> Replay<B> {
    /// Turns a replay of `B` into a replay of `C`: the body a replay produces is passed
    /// through `f`. This is how a body type of your own (a newtype around a body this crate
    /// replays, or an enum of several) reuses its inner body's replay; see the
    /// [module docs](super#your-own-body-type). Nothing is buffered or allocated for
    /// [`none`](Self::none) and [`clone_of`](Self::clone_of) (the clone is mapped now); a
    /// recorded replay gets one small allocation and maps its body when taken.
    pub fn map<C, F>(self, f: F) -> Replay<C>
    where
        C: 'static,
        F: Fn(B) -> C + Send + Sync + 'static,
    {
        let source = match self.source {
            ReplaySource::None => ReplaySource::None,
            ReplaySource::Clone(copy) => ReplaySource::Clone(f(copy)),
            ReplaySource::Recorded(inner) => ReplaySource::Recorded(Arc::new(Mapped { inner, f })),
        };
        Replay { source }
    }

    /// Wraps `body`, the body that will actually be sent, so that it records what it sends.
    ///
    /// Returns the recording body to send now, converted into `B` by `wrap`, and the replay,
    /// which will build its body by converting a [`Replayed`] into `B` with `rewrap`. `cap` is
    /// the most data bytes the recording may hold (trailers are not counted).
    ///
    /// A body whose size hint says it has more than `cap` bytes is not recorded (the
    /// recording only forwards it, without allocating); a body already at its end is recorded
    /// as complete without needing to be polled. `T` is `Unpin` and `Send` because, dropped
    /// before its end, it moves to the replay.
    pub fn record<T, E>(
        body: T,
        cap: usize,
        wrap: fn(Recording<T>) -> B,
        rewrap: fn(Replayed<E>) -> B,
    ) -> (B, Self)
    where
        T: Body<Data = Bytes, Error = E> + Send + Unpin + 'static,
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
        B: Body<Data = Bytes, Error = E> + Send + Unpin,
        E: 'static,
    {
        if over_cap(&body, cap) {
            return (body, Self::none());
        }
        if body.is_end_stream() {
            let (replay, _) = Self::shared::<B, E>(cap, true, rewrap);
            return (body, replay);
        }
        Self::record(body, cap, wrap, rewrap)
    }

    /// Allocates the shared buffer; no recorder is needed for a body already at its end.
    fn shared<T, E>(
        cap: usize,
        at_end: bool,
        rewrap: fn(Replayed<E>) -> B,
    ) -> (Self, Option<Recorder<T>>)
    where
        T: Body<Data = Bytes, Error = E> + Send + Unpin + 'static,
        E: 'static,
    {
        let state = if at_end {
            RecordingState::Complete
        } else {
            RecordingState::Recording
        };
        let shared = Arc::new(SharedRecording {
            buffer: Mutex::new(Buffer::<T>::new(cap, state)),
            rewrap,
        });
        let recorder = (!at_end).then(|| Recorder(shared.clone() as Arc<dyn Sink<T>>));
        let replay = Self {
            source: ReplaySource::Recorded(shared),
        };
        (replay, recorder)
    }
}

/// Whether the size hint promises more than `cap` bytes.
fn over_cap<T: Body>(body: &T, cap: usize) -> bool {
    u64::try_from(cap).is_ok_and(|cap| body.size_hint().lower() > cap)
}

//! Single flight: at most one fetch at a time, on a task of its own; its waiters; and its
//! end, with the source's outcome or, when its runtime stops or idles, abandoned.

use std::sync::Arc;

use tokio::{sync::watch, time::Instant};

use super::{Cached, CredentialSource, ExpiringCache, FetchState, Fetched, Outcome};
use crate::{
    Error,
    cache::{
        catch_panic::{self, CatchPanic},
        timing,
    },
    runtime::Runtime,
    stats::Counters,
};

/// The one fetch under way.
#[derive(Debug)]
pub(super) struct Flight<C> {
    pub(super) id: u64,
    /// When a waiter on another runtime stops waiting for it and deems its runtime idle:
    /// `fetch_timeout` after it began, or sooner for a refresh, half of what the credential
    /// it replaces had left, so that a fetch started then still ends before that one's use.
    pub(super) takeover_at: Instant,
    /// The runtime its task runs on: only a waiter elsewhere times it out.
    pub(super) runtime: tokio::runtime::Id,
    outcome: watch::Sender<Option<FlightEnd<C>>>,
}

/// How a flight ended, as its waiters see it.
#[derive(Clone, Debug)]
enum FlightEnd<C> {
    /// The source answered (or failed, or panicked): everyone shares this.
    Done(Outcome<C>),
    /// Its runtime stopped: not the source's failure. Start again.
    Abandoned,
    /// A request on another runtime deemed it stranded and started another: join that one.
    TakenOver,
}

/// A waiter's hold on a flight.
pub(super) struct Waiting<C> {
    id: u64,
    takeover_at: Instant,
    runtime: tokio::runtime::Id,
    outcome: watch::Receiver<Option<FlightEnd<C>>>,
}

/// What [`ExpiringCache::begin`] found: a valid credential, or a flight to wait for.
pub(super) enum CredentialOrFlight<C> {
    Ready(Arc<Cached<C>>),
    Wait(Waiting<C>),
}

// === impl Flight ===

impl<C> Flight<C> {
    pub(super) fn join(&self) -> Waiting<C> {
        Waiting {
            id: self.id,
            takeover_at: self.takeover_at,
            runtime: self.runtime,
            outcome: self.outcome.subscribe(),
        }
    }
}

// === impl ExpiringCache ===

impl<S: CredentialSource> ExpiringCache<S> {
    /// Decides, under the lock, between a valid credential, joining the flight, the negative
    /// cache, and starting a flight.
    pub(super) fn begin(self: &Arc<Self>) -> Result<CredentialOrFlight<S::Credential>, Error> {
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(current) = self.usable(now) {
            return Ok(CredentialOrFlight::Ready(current));
        }
        if let Some(flight) = &state.flight {
            return Ok(CredentialOrFlight::Wait(flight.join()));
        }
        if let (Some(error), Some(at)) = (&state.last_error, state.retry_at)
            && now < at
        {
            Counters::bump(&self.counters.fast_failures);
            return Err(error.clone());
        }
        self.start_flight(&mut state, now)
    }

    /// Waits for the flight `begin` joined. A flight on the caller's own runtime is timed
    /// out by its own task (`fetch_timeout`); one on another runtime is timed here, on the
    /// caller's runtime, since that runtime may have stopped or gone idle. A flight that ends
    /// that way is not the source's failure: the waiter begins again, which starts a fetch on
    /// its own runtime (once: a flight abandoned on the caller's own runtime is an error).
    pub(super) async fn wait(
        self: &Arc<Self>,
        begin: Result<CredentialOrFlight<S::Credential>, Error>,
    ) -> Outcome<S::Credential> {
        let mut waiting = match begin? {
            CredentialOrFlight::Ready(current) => return Ok(current),
            CredentialOrFlight::Wait(waiting) => waiting,
        };
        Counters::bump(&self.counters.waits);
        loop {
            let here = self.lock().runtime.current().id();
            let elsewhere = here.is_some_and(|here| here != waiting.runtime);
            let ended = if elsewhere {
                let done = waiting.outcome.wait_for(Option::is_some);
                let timed = tokio::time::timeout_at(waiting.takeover_at, done).await;
                match timed.map(|done| done.ok().and_then(|done| done.clone())) {
                    Ok(ended) => ended,
                    // The flight may have ended at the deadline: its outcome wins.
                    Err(_) => {
                        let ended = waiting.outcome.borrow().clone();
                        ended.or_else(|| {
                            self.take_over(waiting.id);
                            Some(FlightEnd::TakenOver)
                        })
                    }
                }
            } else {
                // The flight runs here (its own timeout bounds it), or there is no timer
                // here: wait for its end.
                let done = waiting.outcome.wait_for(Option::is_some).await;
                done.ok().and_then(|done| done.clone())
            };
            // A flight taken over, or one of another runtime that died, is followed by the
            // next; a dead one of this runtime is the end (this runtime is shutting down).
            let again = elsewhere || matches!(ended, Some(FlightEnd::TakenOver));
            match ended {
                Some(FlightEnd::Done(outcome)) => return outcome,
                // The sender lives in the flight until it ends: a dropped one is a dead flight.
                Some(FlightEnd::TakenOver | FlightEnd::Abandoned) | None if again => {
                    waiting = match self.begin()? {
                        CredentialOrFlight::Ready(current) => return Ok(current),
                        CredentialOrFlight::Wait(next) => next,
                    };
                }
                Some(FlightEnd::TakenOver | FlightEnd::Abandoned) | None => {
                    return Err(Error::FetchAborted);
                }
            }
        }
    }

    /// Starts the one fetch. Called with the lock held and no flight running. A source
    /// with a credential ready at once is recorded here and then, without a task.
    pub(super) fn start_flight(
        self: &Arc<Self>,
        state: &mut FetchState<S::Credential>,
        started: Instant,
    ) -> Result<CredentialOrFlight<S::Credential>, Error> {
        let ready = match catch_panic::call(|| self.source.ready()) {
            Ok(ready) => ready,
            Err(panicked) => Some(Err(panicked)),
        };
        if let Some(fetched) = ready {
            Counters::bump(&self.counters.fetches);
            return self
                .record(state, started, fetched)
                .map(CredentialOrFlight::Ready);
        }
        let runtime = match state.runtime.current() {
            Runtime::Usable(handle) => handle,
            Runtime::None => return Err(Error::NoRuntime),
            Runtime::NoTimeDriver => return Err(Error::NoTimeDriver),
        };
        let (tx, _) = watch::channel(None);
        let id = state.next_flight;
        state.next_flight += 1;
        let mut takeover_at = timing::after(started, self.config.fetch_timeout);
        if let Some(held) = self.usable(started) {
            takeover_at = takeover_at.min(started + (held.usable_until - started) / 2);
        }
        let flight = Flight {
            id,
            takeover_at,
            runtime: runtime.id(),
            outcome: tx,
        };
        let waiting = flight.join();
        state.flight = Some(flight);
        Counters::bump(&self.counters.fetches);
        let cache = Arc::clone(self);
        // Span names are static: one per kind of credential.
        let span = if S::CREDENTIAL == "token" {
            tracing::debug_span!(target: "veracity_auth::cache", "token_fetch", flight = id, source = cache.source.name())
        } else {
            tracing::debug_span!(target: "veracity_auth::cache", "sas_fetch", flight = id, source = cache.source.name())
        };
        let replaces = self.usable(started).map(|held| held.generation);
        let task = async move {
            let mut guard = FlightGuard {
                cache,
                id,
                started,
                replaces,
                fetched: None,
            };
            let timeout = guard.cache.config.fetch_timeout;
            let fetch = CatchPanic::new(|| guard.cache.source.fetch());
            let fetched = tokio::time::timeout(timeout, fetch)
                .await
                .unwrap_or(Err(Error::Timeout(timeout)));
            guard.fetched = Some(fetched);
        };
        runtime.spawn(tracing::Instrument::instrument(task, span));
        Ok(CredentialOrFlight::Wait(waiting))
    }

    /// Ends flight `id` with `fetched`, unless it already ended (abandoned: its late result
    /// is dropped), and tells its waiters.
    fn finish(
        self: &Arc<Self>,
        id: u64,
        started: Instant,
        replaces: Option<u64>,
        fetched: Result<Fetched<S::Credential>, Error>,
    ) -> Outcome<S::Credential> {
        let mut state = self.lock();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            // Taken over, yet it answered: its credential serves if the one it was to
            // replace is still current (the flight that took over has not published yet).
            let current = self.usable(Instant::now()).map(|c| c.generation);
            if let Ok(fetched) = fetched
                && current == replaces
            {
                return self.record(&mut state, started, Ok(fetched));
            }
            return Err(Error::FetchAborted);
        };
        let outcome = self.record(&mut state, started, fetched);
        drop(state);
        flight
            .outcome
            .send_replace(Some(FlightEnd::Done(outcome.clone())));
        outcome
    }

    /// Ends flight `id`, if it still runs, without an outcome of the source: its runtime
    /// stopped. No failure is recorded and nothing backs off; its waiters begin again, and
    /// if a valid credential is held, the next request starts the refresh.
    pub(super) fn abandon(self: &Arc<Self>, id: u64) {
        self.end_without_outcome(id, FlightEnd::Abandoned);
    }

    /// Ends flight `id`, if it still runs, for a request on another runtime to start one
    /// in its place: past its takeover point, its runtime is deemed idle. Its waiters,
    /// wherever they are, join the next flight; should it answer after all, its credential
    /// still serves until that one's arrives.
    pub(super) fn take_over(self: &Arc<Self>, id: u64) {
        self.end_without_outcome(id, FlightEnd::TakenOver);
    }

    fn end_without_outcome(self: &Arc<Self>, id: u64, end: FlightEnd<S::Credential>) {
        let mut state = self.lock();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            return;
        };
        tracing::debug!(target: "veracity_auth::cache", flight = id, "{} fetch {}", S::CREDENTIAL,
            if matches!(end, FlightEnd::TakenOver) { "taken over past its takeover point" } else { "abandoned with its runtime" });
        self.look_again(&mut state);
        drop(state);
        flight.outcome.send_replace(Some(end));
    }
}

// === impl FlightGuard ===

/// Ends its flight when the fetch task ends: with the fetch's result, or, if the task is
/// dropped first (its runtime shut down), as an abandoned one: not the source's failure.
struct FlightGuard<S: CredentialSource> {
    cache: Arc<ExpiringCache<S>>,
    id: u64,
    started: Instant,
    /// The generation held when it started, if any.
    replaces: Option<u64>,
    fetched: Option<Result<Fetched<S::Credential>, Error>>,
}

impl<S: CredentialSource> Drop for FlightGuard<S> {
    fn drop(&mut self) {
        match self.fetched.take() {
            Some(fetched) => drop(
                self.cache
                    .finish(self.id, self.started, self.replaces, fetched),
            ),
            None => self.cache.abandon(self.id),
        }
    }
}

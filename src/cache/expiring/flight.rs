//! Single flight: at most one fetch at a time, on a task of its own; its waiters; and its
//! end, with the source's outcome or, when its runtime stops or idles, abandoned.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::{runtime::Handle, sync::watch, time::Instant};

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
    /// When a request on another runtime asks whether the flight's runtime still runs
    /// tasks: a grace before `fetch_timeout` after it began, or sooner for a refresh, half
    /// of what the credential it replaces had left, so that a fetch started then still ends
    /// in time.
    next_probe: Instant,
    /// The probe under way: answered by a task on the flight's runtime, or not by its
    /// deadline (then that runtime is stranded: idle, or blocked).
    probe: Option<(Arc<AtomicBool>, Instant)>,
    /// The runtime its task runs on: only a request elsewhere probes it.
    runtime: Handle,
    outcome: watch::Sender<Option<FlightEnd<C>>>,
}

/// How long a probe may take to run on a live runtime: the time a busy runtime takes to
/// poll a new task. A refresh gives it at most a quarter of what its credential has left.
const PROBE_GRACE: Duration = Duration::from_millis(250);

/// What a request makes of the flight it found.
pub(super) enum Verdict {
    /// The flight runs on this runtime (or there is none here to time it): its own timeout
    /// bounds it.
    Here,
    /// It runs on another runtime, not yet past its probe point, or that runtime answered
    /// the probe: look again at this moment.
    LookAgainAt(Instant),
    /// Its runtime did not answer a probe in time: start the fetch again elsewhere.
    Stranded,
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
            runtime: self.runtime.id(),
            outcome: self.outcome.subscribe(),
        }
    }

    /// Whether a request on runtime `here` at `now` should go on waiting for this flight,
    /// with `held_until` the end of use of the credential it refreshes, if any. Past the
    /// probe point, a task is spawned on the flight's runtime; a runtime that runs it within
    /// the grace is live (its own timeout bounds the fetch), and is probed again later; one
    /// that does not is stranded.
    pub(super) fn verdict(
        &mut self,
        here: Option<tokio::runtime::Id>,
        now: Instant,
        held_until: Option<Instant>,
        fetch_timeout: Duration,
    ) -> Verdict {
        if here.is_none_or(|here| here == self.runtime.id()) {
            return Verdict::Here;
        }
        let left = |held_until: Instant| held_until.saturating_duration_since(now);
        match &self.probe {
            None if now < self.next_probe => Verdict::LookAgainAt(self.next_probe),
            None => {
                let grace =
                    held_until.map_or(PROBE_GRACE, |until| PROBE_GRACE.min(left(until) / 4));
                let answered = Arc::new(AtomicBool::new(false));
                let answer = Arc::clone(&answered);
                drop(
                    self.runtime
                        .spawn(async move { answer.store(true, Ordering::Release) }),
                );
                let deadline = now + grace;
                self.probe = Some((answered, deadline));
                Verdict::LookAgainAt(deadline)
            }
            Some((answered, _)) if answered.load(Ordering::Acquire) => {
                self.probe = None;
                self.next_probe = match held_until {
                    Some(until) => now + left(until) / 2,
                    None => timing::after(now, fetch_timeout),
                };
                Verdict::LookAgainAt(self.next_probe)
            }
            Some((_, deadline)) if now < *deadline => Verdict::LookAgainAt(*deadline),
            Some(_) => Verdict::Stranded,
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
            let ended = match self.verdict(waiting.id) {
                // Not this flight any more (it has ended, or is about to tell), or it runs
                // here: wait for its end.
                None | Some(Verdict::Here) => None,
                Some(Verdict::LookAgainAt(at)) => {
                    let done = waiting.outcome.wait_for(Option::is_some);
                    match tokio::time::timeout_at(at, done).await {
                        Ok(done) => Some(done.ok().and_then(|done| done.clone())),
                        Err(_) => continue,
                    }
                }
                Some(Verdict::Stranded) => {
                    self.take_over(waiting.id);
                    Some(Some(FlightEnd::TakenOver))
                }
            };
            let ended = match ended {
                Some(ended) => ended,
                None => {
                    let done = waiting.outcome.wait_for(Option::is_some).await;
                    done.ok().and_then(|done| done.clone())
                }
            };
            // A flight taken over, or one of another runtime that died, is followed by the
            // next; a dead one of this runtime is the end (this runtime is shutting down).
            let here = self.lock().runtime.current().id();
            let elsewhere = here.is_some_and(|here| here != waiting.runtime);
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

    /// The verdict on flight `id` for a request here and now, if it still runs.
    pub(super) fn verdict(self: &Arc<Self>, id: u64) -> Option<Verdict> {
        let mut state = self.lock();
        let here = state.runtime.current().id();
        let now = Instant::now();
        let held_until = self.usable(now).map(|held| held.usable_until);
        let timeout = self.config.fetch_timeout;
        let flight = state.flight.as_mut().filter(|f| f.id == id)?;
        Some(flight.verdict(here, now, held_until, timeout))
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
        // A cold fetch is deemed stranded by `fetch_timeout`, as one on the caller's runtime
        // times out then: its probe runs a grace before.
        let timeout = self.config.fetch_timeout;
        let mut next_probe = timing::after(started, timeout.saturating_sub(PROBE_GRACE));
        if let Some(held) = self.usable(started) {
            next_probe = next_probe.min(started + (held.usable_until - started) / 2);
        }
        let flight = Flight {
            id,
            next_probe,
            probe: None,
            runtime: runtime.clone(),
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
    /// in its place: its runtime did not run a probe in time ([`Flight::verdict`]). Its waiters,
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
            if matches!(end, FlightEnd::TakenOver) { "taken over: its runtime did not run the probe" } else { "abandoned with its runtime" });
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

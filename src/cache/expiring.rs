//! A cache of one expiring credential, whatever it is: single flight, refresh ahead, backoff,
//! and invalidation by generation.
//!
//! [`ExpiringCache`] holds what a [`CredentialSource`] fetches (a bearer token's header
//! value, for [`TokenCache`](super::TokenCache); a storage SAS would do as well) with its
//! schedule, and knows nothing of HTTP.
//!
//! - **Single flight**: every cause of a fetch (cold start, expiry, refresh ahead, a
//!   rejection) goes through [`ExpiringCache::begin`] under one mutex; at most one fetch
//!   runs, on a task of its own, and every waiter shares its outcome (error included)
//!   through a `watch` channel. Dropping waiters never cancels the fetch. A fetch that fails
//!   or panics is a failed fetch: its error is recorded and backed off. A fetch whose runtime
//!   stopped (its task was dropped) or went idle (it outlived `fetch_timeout` with nobody to
//!   time it out) is not a failure of the source: it is abandoned without backoff, and its
//!   waiters, and the next request, start it again on their own runtime. A source with a
//!   credential ready at once is used without a task.
//! - **Refresh ahead**: a timer task, holding only a `Weak`, starts a background refresh
//!   before expiry; requests keep the valid credential meanwhile. The timer is a hint,
//!   requests are the backstop ([`ExpiringCache::ensure_refresh`]): a request past the
//!   refresh point starts the refresh if none runs, and a timer or refresh that dies with its
//!   runtime moves the refresh point to "now", so the next request on a live runtime takes
//!   over. No request waits.
//! - **Failures**: a failed refresh keeps the valid credential; failures back off
//!   exponentially with jitter, honouring `Retry-After`; while no valid credential exists,
//!   requests get the last error at once until the backoff allows another fetch (negative
//!   caching).
//! - **Rejections** ([`ExpiringCache::refresh_rejected`]): only the rejected generation is
//!   dropped, and rejection-caused fetches are rate-limited and wait out a running backoff.
//! - **Durations** never overflow: instants saturate about a century ahead
//!   ([`timing::after`]).

use std::{
    fmt,
    future::Future,
    ops::Deref,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use tokio::{sync::watch, task::AbortHandle, time::Instant};

use super::{
    CacheConfig,
    catch_panic::{self, CatchPanic},
    timing,
};
use crate::{
    Error,
    http_client::BoxFuture,
    runtime::{Runtime, RuntimeProbe},
    stats::Counters,
};

/// Where an [`ExpiringCache`] gets its credential: how to fetch one, and whether it can.
pub(crate) trait CredentialSource: fmt::Debug + Send + Sync + 'static {
    /// What a fetch produces and the cache holds. `Debug` must not show a secret.
    type Credential: Clone + fmt::Debug + Send + Sync + 'static;

    /// A name for logs: never a secret.
    fn name(&self) -> &'static str;

    /// What makes this source unusable, if anything: every request then fails with it.
    fn problem(&self) -> Option<Error>;

    /// A credential available at once, without I/O, or `None` when it must be fetched. When
    /// it answers, no task is spawned, so requests are served outside a tokio runtime too.
    fn ready(&self) -> Option<Result<Fetched<Self::Credential>, Error>>;

    /// Fetches a credential: at most once at a time, on a task of its own, under
    /// `fetch_timeout`. A panic is a failed fetch.
    fn fetch(&self) -> impl Future<Output = Result<Fetched<Self::Credential>, Error>> + Send;
}

/// A credential just fetched, and how long it lives counted from when its fetch began
/// (`None`: the configured `default_lifetime`).
#[derive(Debug)]
pub(crate) struct Fetched<C> {
    pub(crate) credential: C,
    pub(crate) lifetime: Option<Duration>,
}

/// A credential ready to be used, and its schedule. It reads as the credential it holds.
#[derive(Debug)]
pub(crate) struct Cached<C> {
    credential: C,
    /// Unique for the life of the process (per-thread copies are keyed by it).
    pub(crate) id: u64,
    /// 1, 2, 3, ... in the order this cache's credentials were fetched.
    pub(crate) generation: u64,
    pub(crate) usable_until: Instant,
    pub(crate) refresh_at: Instant,
}

impl<C> Deref for Cached<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.credential
    }
}

/// A valid credential, or the error every waiter of its fetch shares.
pub(crate) type Outcome<C> = Result<Arc<Cached<C>>, Error>;

/// What to do after a rejection (a 401, for a bearer token).
pub(crate) enum RefreshDecision<C> {
    /// The cache already holds a newer credential: use it, no fetch.
    Use(Arc<Cached<C>>),
    /// A fetch is under way (perhaps started by this call): wait for it.
    Wait(BoxFuture<'static, Outcome<C>>),
    /// A rejection-caused fetch happened too recently: give the caller the rejection.
    Denied,
}

/// Where credential ids come from.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One credential, shared: what requests read without a lock (`current`, `current_id`), and
/// under one lock everything about fetching it ([`FetchState`]).
#[derive(Debug)]
pub(crate) struct ExpiringCache<S: CredentialSource> {
    current: ArcSwapOption<Cached<S::Credential>>,
    /// The id of `current`, or 0: what the hot path reads (written once per credential).
    current_id: AtomicU64,
    state: Mutex<FetchState<S::Credential>>,
    source: S,
    config: CacheConfig,
    /// Set when the configuration (or the source) is unusable: every request fails with it.
    invalid: Option<Error>,
    counters: Counters,
}

/// Everything about fetching, under the cache's one lock.
#[derive(Debug)]
struct FetchState<C> {
    flight: Option<Flight<C>>,
    next_flight: u64,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    last_replay_refresh: Option<Instant>,
    timer: Option<Timer>,
    next_timer: u64,
    /// The runtime last looked at, to spawn flights and timers on.
    runtime: RuntimeProbe,
}

// Not derived: a derive would ask `C: Default`.
impl<C> Default for FetchState<C> {
    fn default() -> Self {
        FetchState {
            flight: None,
            next_flight: 0,
            generation: 0,
            failures: 0,
            retry_at: None,
            last_error: None,
            last_replay_refresh: None,
            timer: None,
            next_timer: 0,
            runtime: RuntimeProbe::default(),
        }
    }
}

// === impl ExpiringCache ===

impl<S: CredentialSource> ExpiringCache<S> {
    /// An empty cache: the first request fetches.
    pub(crate) fn new(source: S, config: CacheConfig) -> Self {
        let invalid = source.problem().or_else(|| config.problem());
        ExpiringCache {
            current: ArcSwapOption::empty(),
            current_id: AtomicU64::new(0),
            state: Mutex::new(FetchState::default()),
            source,
            config,
            invalid,
            counters: Counters::default(),
        }
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    pub(crate) fn config(&self) -> &CacheConfig {
        &self.config
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The id of the current credential, or 0 when there is none: one atomic load of a value
    /// written once per credential.
    #[inline]
    pub(crate) fn current_id(&self) -> u64 {
        self.current_id.load(Ordering::Acquire)
    }

    /// The current credential, if it may still be used at `now`.
    pub(crate) fn usable(&self, now: Instant) -> Option<Arc<Cached<S::Credential>>> {
        self.current.load_full().filter(|c| now < c.usable_until)
    }

    /// A valid credential, waiting for the single flight if there is none.
    pub(crate) fn acquire(self: &Arc<Self>) -> BoxFuture<'static, Outcome<S::Credential>> {
        let cache = Arc::clone(self);
        Box::pin(async move {
            let begin = cache.begin();
            cache.wait(begin).await
        })
    }

    /// After a rejection of the credential of generation `rejected`: drop it (only if it is
    /// still the current one) and fetch a new one, at most once per
    /// `replay_refresh_interval`.
    pub(crate) fn refresh_rejected(
        self: &Arc<Self>,
        rejected: u64,
    ) -> RefreshDecision<S::Credential> {
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(current) = self.usable(now).filter(|c| c.generation != rejected) {
            return RefreshDecision::Use(current);
        }
        let begin = if let Some(flight) = &state.flight {
            Ok(CredentialOrFlight::Wait(flight.join()))
        } else {
            // Within the interval, or while backing off (the provider's `Retry-After`
            // included), a rejection gets no new credential.
            if state
                .last_replay_refresh
                .is_some_and(|at| now < timing::after(at, self.config.replay_refresh_interval))
                || state.retry_at.is_some_and(|at| now < at)
            {
                return RefreshDecision::Denied;
            }
            state.last_replay_refresh = Some(now);
            if self
                .current
                .load()
                .as_ref()
                .is_some_and(|c| c.generation == rejected)
            {
                self.current.store(None);
                self.current_id.store(0, Ordering::Release);
            }
            Counters::bump(&self.counters.replay_refreshes);
            self.start_flight(&mut state, now)
        };
        if let Ok(CredentialOrFlight::Ready(current)) = begin {
            return RefreshDecision::Use(current);
        }
        drop(state);
        let cache = Arc::clone(self);
        RefreshDecision::Wait(Box::pin(async move { cache.wait(begin).await }))
    }

    fn lock(&self) -> MutexGuard<'_, FetchState<S::Credential>> {
        // A panic elsewhere cannot leave `FetchState` half-updated in a way that matters more
        // than a stuck cache would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<S: CredentialSource> Drop for ExpiringCache<S> {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = state.timer.take() {
            timer.task.abort();
        }
    }
}

// === single flight ===

/// The one fetch under way.
#[derive(Debug)]
struct Flight<C> {
    id: u64,
    started: Instant,
    /// The runtime its task runs on: only a waiter elsewhere times it out.
    runtime: tokio::runtime::Id,
    outcome: watch::Sender<Option<FlightEnd<C>>>,
}

/// How a flight ended, as its waiters see it.
#[derive(Clone, Debug)]
enum FlightEnd<C> {
    /// The source answered (or failed, or panicked): everyone shares this.
    Done(Outcome<C>),
    /// Its runtime stopped or went idle: not the source's failure. Start again.
    Abandoned,
}

/// A waiter's hold on a flight.
struct Waiting<C> {
    id: u64,
    started: Instant,
    runtime: tokio::runtime::Id,
    outcome: watch::Receiver<Option<FlightEnd<C>>>,
}

/// What [`ExpiringCache::begin`] found: a valid credential, or a flight to wait for.
enum CredentialOrFlight<C> {
    Ready(Arc<Cached<C>>),
    Wait(Waiting<C>),
}

impl<C> Flight<C> {
    fn join(&self) -> Waiting<C> {
        Waiting {
            id: self.id,
            started: self.started,
            runtime: self.runtime,
            outcome: self.outcome.subscribe(),
        }
    }
}

impl<S: CredentialSource> ExpiringCache<S> {
    /// Decides, under the lock, between a valid credential, joining the flight, the negative
    /// cache, and starting a flight.
    fn begin(self: &Arc<Self>) -> Result<CredentialOrFlight<S::Credential>, Error> {
        if let Some(invalid) = &self.invalid {
            return Err(invalid.clone());
        }
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
    async fn wait(
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
                let deadline = timing::after(waiting.started, self.config.fetch_timeout);
                let done = waiting.outcome.wait_for(Option::is_some);
                let timed = tokio::time::timeout_at(deadline, done).await;
                match timed.map(|done| done.ok().and_then(|done| done.clone())) {
                    Ok(ended) => ended,
                    // The flight may have ended at the deadline: its outcome wins.
                    Err(_) => {
                        let ended = waiting.outcome.borrow().clone();
                        ended.or_else(|| {
                            self.abandon(waiting.id, "outlived fetch_timeout on another runtime");
                            Some(FlightEnd::Abandoned)
                        })
                    }
                }
            } else {
                // The flight runs here (its own timeout bounds it), or there is no timer
                // here: wait for its end.
                let done = waiting.outcome.wait_for(Option::is_some).await;
                done.ok().and_then(|done| done.clone())
            };
            match ended {
                Some(FlightEnd::Done(outcome)) => return outcome,
                // The sender lives in the flight until it ends: a dropped one is a dead flight.
                Some(FlightEnd::Abandoned) | None if elsewhere => {
                    waiting = match self.begin()? {
                        CredentialOrFlight::Ready(current) => return Ok(current),
                        CredentialOrFlight::Wait(next) => next,
                    };
                }
                Some(FlightEnd::Abandoned) | None => return Err(Error::FetchAborted),
            }
        }
    }

    /// Starts the one fetch. Called with the lock held and no flight running. A source
    /// with a credential ready at once is recorded here and then, without a task.
    fn start_flight(
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
        let flight = Flight {
            id,
            started,
            runtime: runtime.id(),
            outcome: tx,
        };
        let waiting = flight.join();
        state.flight = Some(flight);
        Counters::bump(&self.counters.fetches);
        let cache = Arc::clone(self);
        let span = tracing::debug_span!(target: "veracity_auth::cache", "token_fetch", flight = id, source = cache.source.name());
        let task = async move {
            let mut guard = FlightGuard {
                cache,
                id,
                started,
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
        fetched: Result<Fetched<S::Credential>, Error>,
    ) -> Outcome<S::Credential> {
        let mut state = self.lock();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            drop(state);
            return fetched.and_then(|_| Err(Error::FetchAborted));
        };
        let outcome = self.record(&mut state, started, fetched);
        drop(state);
        flight
            .outcome
            .send_replace(Some(FlightEnd::Done(outcome.clone())));
        outcome
    }

    /// Ends flight `id`, if it still runs, without an outcome of the source: its runtime
    /// stopped or idles. No failure is recorded and nothing backs off; its waiters begin
    /// again, and if a valid credential is held, the next request starts the refresh.
    fn abandon(self: &Arc<Self>, id: u64, why: &'static str) {
        let mut state = self.lock();
        let Some(flight) = state.flight.take_if(|f| f.id == id) else {
            return;
        };
        tracing::debug!(target: "veracity_auth::cache", flight = id, why, "token fetch abandoned");
        self.refresh_now(&mut state);
        drop(state);
        flight.outcome.send_replace(Some(FlightEnd::Abandoned));
    }
}

/// Ends its flight when the fetch task ends: with the fetch's result, or, if the task is
/// dropped first (its runtime shut down), as an abandoned one: not the source's failure.
struct FlightGuard<S: CredentialSource> {
    cache: Arc<ExpiringCache<S>>,
    id: u64,
    started: Instant,
    fetched: Option<Result<Fetched<S::Credential>, Error>>,
}

impl<S: CredentialSource> Drop for FlightGuard<S> {
    fn drop(&mut self) {
        match self.fetched.take() {
            Some(fetched) => drop(self.cache.finish(self.id, self.started, fetched)),
            None => self.cache.abandon(self.id, "its runtime shut down"),
        }
    }
}

// === recording outcomes ===

impl<S: CredentialSource> ExpiringCache<S> {
    /// Records a fetch's outcome and arms the next refresh or retry.
    fn record(
        self: &Arc<Self>,
        state: &mut FetchState<S::Credential>,
        started: Instant,
        fetched: Result<Fetched<S::Credential>, Error>,
    ) -> Outcome<S::Credential> {
        let now = Instant::now();
        let cached =
            fetched.and_then(|fetched| self.prepare(fetched, started, now, state.generation + 1));
        match cached {
            Ok(cached) => {
                state.generation = cached.generation;
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                self.current.store(Some(Arc::clone(&cached)));
                self.current_id.store(cached.id, Ordering::Release);
                self.arm_timer(state, cached.refresh_at);
                tracing::debug!(
                    target: "veracity_auth::cache",
                    generation = cached.generation,
                    fetch_ms = (now - started).as_millis() as u64,
                    usable_for_s = (cached.usable_until - now).as_secs(),
                    refresh_in_s = (cached.refresh_at - now).as_secs(),
                    "token fetched"
                );
                Ok(cached)
            }
            Err(error) => {
                Counters::bump(&self.counters.failures);
                state.failures = state.failures.saturating_add(1);
                let delay = timing::backoff(
                    &self.config,
                    state.failures,
                    error.retry_after(),
                    error.is_permanent(),
                    timing::random_unit(),
                );
                let retry_at = timing::after(now, delay);
                state.retry_at = Some(retry_at);
                state.last_error = Some(error.clone());
                let held = self.usable(now);
                // While a valid credential is held, keep trying in the background.
                if let Some(current) = &held
                    && retry_at < current.usable_until
                {
                    self.arm_timer(state, retry_at);
                }
                let oauth = error.oauth();
                tracing::warn!(
                    target: "veracity_auth::cache",
                    error = %error,
                    oauth_error = oauth.map(|o| o.error.as_str()),
                    code = oauth.and_then(|o| o.code()),
                    trace_id = oauth.and_then(|o| o.trace_id.as_deref()),
                    correlation_id = oauth.and_then(|o| o.correlation_id.as_deref()),
                    fetch_ms = (now - started).as_millis() as u64,
                    permanent = error.is_permanent(),
                    failures = state.failures,
                    retry_in_ms = delay.as_millis() as u64,
                    holding_valid_token = held.is_some(),
                    "token fetch failed"
                );
                Err(error)
            }
        }
    }

    /// A fetched credential with its schedule, under a new id.
    fn prepare(
        &self,
        fetched: Fetched<S::Credential>,
        started: Instant,
        now: Instant,
        generation: u64,
    ) -> Outcome<S::Credential> {
        let lifetime = fetched.lifetime.unwrap_or(self.config.default_lifetime);
        let schedule = timing::schedule(&self.config, started, lifetime, timing::random_unit());
        if schedule.usable_until <= now {
            return Err(Error::InvalidResponse(
                "the token expired before its fetch completed".into(),
            ));
        }
        Ok(Arc::new(Cached {
            credential: fetched.credential,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation,
            usable_until: schedule.usable_until,
            refresh_at: schedule.refresh_at,
        }))
    }
}

// === the refresh timer ===

/// The armed refresh (or retry) timer. Its task tells the cache if it dies unfired.
#[derive(Debug)]
struct Timer {
    id: u64,
    task: AbortHandle,
}

impl<S: CredentialSource> ExpiringCache<S> {
    /// Schedules a background refresh at `at`, replacing any earlier one. The timer holds
    /// only a `Weak`, and the cache aborts it when dropped. A timer that dies unfired with
    /// its runtime moves the refresh point to now ([`TimerGuard`]).
    fn arm_timer(self: &Arc<Self>, state: &mut FetchState<S::Credential>, at: Instant) {
        if let Some(old) = state.timer.take() {
            old.task.abort();
        }
        // Without a usable runtime, the first request past the refresh point refreshes.
        let Runtime::Usable(runtime) = state.runtime.current() else {
            return;
        };
        tracing::debug!(
            target: "veracity_auth::cache",
            in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
            "background refresh scheduled"
        );
        let id = state.next_timer;
        state.next_timer += 1;
        let mut guard = TimerGuard {
            cache: Arc::downgrade(self),
            id,
            fired: false,
        };
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            guard.fired = true;
            if let Some(cache) = guard.cache.upgrade() {
                cache.refresh_in_background(guard.id);
            }
        });
        state.timer = Some(Timer {
            id,
            task: task.abort_handle(),
        });
    }

    fn refresh_in_background(self: &Arc<Self>, timer: u64) {
        let mut state = self.lock();
        if state.timer.as_ref().is_some_and(|t| t.id == timer) {
            state.timer = None;
        }
        if state.flight.is_none() {
            let _ = self.start_flight(&mut state, Instant::now());
        }
    }

    /// A request saw `current` past its refresh point: start the refresh unless one runs or
    /// a backoff does. The timer is only a hint: it may have died with the runtime that armed
    /// it, or sit on a runtime that idles. Returns when this thread should look again: the
    /// end of the backoff, the deadline of a flight running on another runtime (which may
    /// idle), or else the credential's end of use.
    pub(crate) fn ensure_refresh(
        self: &Arc<Self>,
        current: &Cached<S::Credential>,
        now: Instant,
    ) -> Instant {
        let mut state = self.lock();
        if self.current_id.load(Ordering::Acquire) != current.id {
            // A newer credential (or schedule) is published: look again at once.
            return now;
        }
        let here = state.runtime.current().id();
        if let Some(flight) = &state.flight {
            if here.is_none_or(|here| here == flight.runtime) {
                // Its own runtime times it out.
                return current.usable_until;
            }
            let deadline = timing::after(flight.started, self.config.fetch_timeout);
            if now < deadline {
                return deadline.min(current.usable_until);
            }
            let id = flight.id;
            drop(state);
            self.abandon(id, "refresh outlived fetch_timeout on another runtime");
            state = self.lock();
            if state.flight.is_some() {
                return current.usable_until;
            }
        }
        if let Some(retry_at) = state.retry_at.filter(|at| now < *at) {
            return retry_at.min(current.usable_until);
        }
        tracing::debug!(
            target: "veracity_auth::cache",
            "refresh point passed with no refresh running: refreshing now"
        );
        if let Some(timer) = state.timer.take() {
            timer.task.abort();
        }
        let _ = self.start_flight(&mut state, now);
        current.usable_until
    }

    /// Moves the current credential's refresh point to now, under a new id, so every
    /// thread's copy misses and the next request (on whichever runtime is alive) starts the
    /// refresh: the timer or flight that would have done it died with its runtime. Even
    /// past the refresh point: copies made after it look again only at the end of use.
    fn refresh_now(&self, _locked: &mut FetchState<S::Credential>) {
        let now = Instant::now();
        let Some(current) = self.usable(now) else {
            return;
        };
        let moved = Arc::new(Cached {
            credential: current.credential.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            generation: current.generation,
            usable_until: current.usable_until,
            refresh_at: now,
        });
        let id = moved.id;
        self.current.store(Some(moved));
        self.current_id.store(id, Ordering::Release);
    }
}

/// Lives in the timer's task: if the task is dropped before the timer fired (its runtime
/// shut down), the refresh point moves to now, so the next request on a live runtime
/// refreshes before expiry.
struct TimerGuard<S: CredentialSource> {
    cache: Weak<ExpiringCache<S>>,
    id: u64,
    fired: bool,
}

impl<S: CredentialSource> Drop for TimerGuard<S> {
    fn drop(&mut self) {
        if self.fired {
            return;
        }
        let Some(cache) = self.cache.upgrade() else {
            return;
        };
        let mut state = cache.lock();
        // Not replaced (an abort by `arm_timer`) and not dropped with the cache.
        if state.timer.as_ref().is_some_and(|t| t.id == self.id) {
            state.timer = None;
            tracing::debug!(
                target: "veracity_auth::cache",
                "refresh timer died with its runtime: the next request refreshes"
            );
            cache.refresh_now(&mut state);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// A credential with nothing of HTTP in it: a number that lives a minute.
    #[derive(Debug, Default)]
    struct Numbers(AtomicU32);

    impl CredentialSource for Numbers {
        type Credential = u32;

        fn name(&self) -> &'static str {
            "numbers"
        }

        fn problem(&self) -> Option<Error> {
            None
        }

        fn ready(&self) -> Option<Result<Fetched<u32>, Error>> {
            None
        }

        async fn fetch(&self) -> Result<Fetched<u32>, Error> {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(Fetched {
                credential: self.0.fetch_add(1, Ordering::SeqCst) + 1,
                lifetime: Some(Duration::from_secs(60)),
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn any_credential_is_fetched_once_for_all_waiters_and_refreshed_ahead() {
        let config = CacheConfig {
            jitter: 0.0,
            ..CacheConfig::default()
        };
        let cache = Arc::new(ExpiringCache::new(Numbers::default(), config));
        let waiters: Vec<_> = (0..100).map(|_| tokio::spawn(cache.acquire())).collect();
        for waiter in waiters {
            assert_eq!(**waiter.await.unwrap().unwrap(), 1);
        }
        // A minute's credential is refreshed 15 s before it expires, with nobody waiting.
        tokio::time::sleep(Duration::from_secs(46)).await;
        let current = cache.usable(Instant::now()).expect("still usable");
        assert_eq!((**current, current.generation), (2, 2));
        let stats = cache.counters().snapshot();
        assert_eq!((stats.fetches, stats.waits), (2, 100));
    }
}

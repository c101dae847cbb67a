//! The token cache: one per [`Authenticator`](crate::Authenticator), shared by its every clone.
//!
//! - **Hot path** ([`TokenCache::authorize`]): one atomic load of the current token's id (a
//!   value written once per token), one clock read, and header insertions of this thread's
//!   own copies of values prepared once per token (see [`local`]): no lock, no shared
//!   reference count, no allocation. A thread's first request past the refresh point
//!   takes the slow path once, and re-arms the refresh if its timer died with its runtime.
//! - **Single flight**: every cause of a fetch (cold start, expiry, refresh ahead, a 401)
//!   goes through [`Core::begin`] under one mutex; at most one fetch runs, on a task of its
//!   own, and every waiter shares its outcome (error included) through a `watch` channel.
//!   Dropping waiters never cancels the fetch. A fetch that fails or panics is a failed
//!   fetch: its error is recorded and backed off. A fetch whose runtime stopped (its task
//!   was dropped) or went idle (it outlived `fetch_timeout` with nobody to time it out) is
//!   not a failure of the source: it is abandoned without backoff, and its waiters, and the
//!   next request, start it again on their own runtime. A source with a token ready at once
//!   is used without a task.
//! - **Refresh ahead**: a timer task, holding only a `Weak`, starts a background refresh
//!   before expiry; requests keep the valid token meanwhile. The timer is a hint, requests
//!   are the backstop: each thread's first request past the refresh point starts the refresh
//!   if none runs, and a timer or refresh that dies with its runtime moves the refresh point
//!   to "now", so the next request on a live runtime takes over. No request waits.
//! - **Failures**: a failed refresh keeps the valid token; failures back off exponentially
//!   with jitter, honouring `Retry-After`; while no valid token exists, requests get the last
//!   error at once until the backoff allows another fetch (negative caching).
//! - **401s** ([`TokenCache::refresh_rejected`]): only the rejected generation is dropped,
//!   and 401-caused fetches are rate-limited and wait out a running backoff.
//! - **Durations** never overflow: instants saturate about a century ahead
//!   ([`timing::after`]).

use std::{
    future::Future,
    panic::{AssertUnwindSafe, catch_unwind},
    pin::Pin,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use tokio::{sync::watch, task::AbortHandle, time::Instant};

use crate::{
    AuthStats, Error, Token,
    headers::{API_KEY_HEADER, ApiKey},
    source::{AnySource, BoxFuture},
    stats::Counters,
};

mod local;
pub(crate) mod timing;

/// How the cache behaves; set through [`AuthenticatorBuilder`](crate::AuthenticatorBuilder).
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    pub(crate) refresh_ahead: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) default_lifetime: Duration,
    pub(crate) jitter: f64,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) replay_refresh_interval: Duration,
}

impl CacheConfig {
    /// What makes this configuration unusable, if anything: every request then fails with
    /// this error (builder methods take `self` and cannot return one).
    pub(crate) fn problem(&self) -> Option<Error> {
        let problem = if self.jitter < 0.0 {
            "jitter must not be negative"
        } else if self.fetch_timeout.is_zero() {
            "fetch_timeout must be longer than zero"
        } else if self.default_lifetime.is_zero() {
            "default_lifetime must be longer than zero"
        } else {
            return None;
        };
        Some(Error::Config(problem.into()))
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            refresh_ahead: Duration::from_secs(300),
            safety_margin: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(300),
            jitter: 0.2,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(30),
            replay_refresh_interval: Duration::from_secs(30),
        }
    }
}

/// A token ready to be sent: its header value, built once, and its schedule.
#[derive(Debug)]
pub(crate) struct CachedToken {
    pub(crate) header: HeaderValue,
    /// Unique for the life of the process (per-thread copies are keyed by it).
    id: u64,
    pub(crate) generation: u64,
    pub(crate) usable_until: Instant,
    pub(crate) refresh_at: Instant,
}

pub(crate) type TokenResult = Result<Arc<CachedToken>, Error>;

/// A handle on the shared cache. Cloning it is one reference-count increment.
#[derive(Clone, Debug)]
pub(crate) struct TokenCache {
    core: Arc<Core>,
}

/// What to do after a 401.
pub(crate) enum RefreshDecision {
    /// The cache already holds a newer token: use it, no fetch.
    Use(Arc<CachedToken>),
    /// A fetch is under way (perhaps started by this call): wait for it.
    Wait(BoxFuture<'static, TokenResult>),
    /// A 401-caused fetch happened too recently: give the caller the 401.
    Denied,
}

/// Where token ids come from.
static NEXT_TOKEN_ID: AtomicU64 = AtomicU64::new(1);

#[derive(Debug)]
struct Core {
    current: ArcSwapOption<CachedToken>,
    /// The id of `current`, or 0: what the hot path reads (written once per token).
    current_id: AtomicU64,
    state: Mutex<CacheState>,
    source: AnySource,
    config: CacheConfig,
    api_key: ApiKey,
    /// Set when the configuration (or the API key) is unusable: every request fails with it.
    invalid: Option<Error>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct CacheState {
    flight: Option<Flight>,
    next_flight: u64,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    last_replay_refresh: Option<Instant>,
    timer: Option<Timer>,
    next_timer: u64,
    /// The last runtime looked at, and whether it has a time driver (finding out costs a
    /// caught panic, so once per runtime switch).
    runtime: Option<(tokio::runtime::Id, bool)>,
}

/// The armed refresh (or retry) timer. Its task tells the cache if it dies unfired.
#[derive(Debug)]
struct Timer {
    id: u64,
    task: AbortHandle,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    started: Instant,
    /// The runtime its task runs on: only a waiter elsewhere times it out.
    runtime: tokio::runtime::Id,
    outcome: watch::Sender<Option<FlightEnd>>,
}

/// How a flight ended, as its waiters see it.
#[derive(Clone, Debug)]
enum FlightEnd {
    /// The source answered (or failed, or panicked): everyone shares this.
    Done(TokenResult),
    /// Its runtime stopped or went idle: not the source's failure. Start again.
    Abandoned,
}

impl Flight {
    fn join(&self) -> Waiting {
        Waiting {
            id: self.id,
            started: self.started,
            runtime: self.runtime,
            outcome: self.outcome.subscribe(),
        }
    }
}

/// A waiter's hold on a flight.
struct Waiting {
    id: u64,
    started: Instant,
    runtime: tokio::runtime::Id,
    outcome: watch::Receiver<Option<FlightEnd>>,
}

enum TokenOrFlight {
    Ready(Arc<CachedToken>),
    Wait(Waiting),
}

/// What the current thread offers to run a flight or a timer on.
enum Runtime {
    Usable(tokio::runtime::Handle),
    None,
    NoTimeDriver,
}

impl TokenCache {
    pub(crate) fn new(source: AnySource, config: CacheConfig, api_key: ApiKey) -> Self {
        let invalid = match api_key {
            ApiKey::Invalid => Some(Error::InvalidApiKey),
            ApiKey::None | ApiKey::Valid(_) => config.problem(),
        };
        TokenCache {
            core: Arc::new(Core {
                current: ArcSwapOption::empty(),
                current_id: AtomicU64::new(0),
                state: Mutex::new(CacheState::default()),
                source,
                config,
                api_key,
                invalid,
                counters: Counters::default(),
            }),
        }
    }

    pub(crate) fn source(&self) -> &AnySource {
        &self.core.source
    }

    pub(crate) fn config(&self) -> &CacheConfig {
        &self.core.config
    }

    pub(crate) fn api_key(&self) -> &ApiKey {
        &self.core.api_key
    }

    pub(crate) fn stats(&self) -> AuthStats {
        self.core.counters.snapshot()
    }

    pub(crate) fn count_replay(&self) {
        Counters::bump(&self.core.counters.replays);
    }

    /// The hot path: inserts `Authorization` (and the API key, when there is one) from a
    /// valid cached token and returns its generation, or `None` when the caller must
    /// [`acquire`](Self::acquire) one. One atomic load of a value written once per token,
    /// one clock read, and this thread's own copies of the header values.
    #[inline]
    pub(crate) fn authorize(&self, headers: &mut HeaderMap) -> Option<u64> {
        let id = self.core.current_id.load(Ordering::Acquire);
        if id == 0 {
            return None;
        }
        let now = Instant::now();
        let hit = local::use_copy(id, |copy| {
            if now >= copy.check_at {
                return None;
            }
            headers.insert(AUTHORIZATION, copy.bearer.clone());
            if let Some(key) = &copy.api_key {
                headers.insert(API_KEY_HEADER, key.clone());
            }
            Some(copy.generation)
        });
        // No copy, or one past its check point: the cold path (which re-arms the refresh).
        match hit.flatten() {
            Some(generation) => Some(generation),
            None => self.authorize_cold(headers, now),
        }
    }

    /// This thread's first request with the current token, or its first past the token's
    /// refresh point (or past the moment it was told to look again): (re)make its copies,
    /// and see that the refresh is under way.
    #[cold]
    fn authorize_cold(&self, headers: &mut HeaderMap, now: Instant) -> Option<u64> {
        let token = self.core.usable(now)?;
        let check_at = if now < token.refresh_at {
            token.refresh_at
        } else {
            self.core.ensure_refresh(&token, now)
        };
        let copy = local::LocalToken {
            id: token.id,
            generation: token.generation,
            check_at,
            bearer: local::own_copy(&token.header),
            api_key: self.core.api_key.value().map(local::own_copy),
        };
        headers.insert(AUTHORIZATION, copy.bearer.clone());
        if let Some(key) = &copy.api_key {
            headers.insert(API_KEY_HEADER, key.clone());
        }
        local::store_copy(copy);
        Some(token.generation)
    }

    /// The slow path: a valid token, waiting for the single flight if there is none.
    pub(crate) fn acquire(&self) -> BoxFuture<'static, TokenResult> {
        let core = Arc::clone(&self.core);
        Box::pin(async move {
            let begin = core.begin();
            core.wait(begin).await
        })
    }

    /// After a 401 for a request sent with `rejected`: drop that token (only if it is still
    /// the current one) and fetch a new one, at most once per `replay_refresh_interval`.
    pub(crate) fn refresh_rejected(&self, rejected: u64) -> RefreshDecision {
        let core = &self.core;
        let mut state = core.lock();
        let now = Instant::now();
        if let Some(token) = core.usable(now).filter(|t| t.generation != rejected) {
            return RefreshDecision::Use(token);
        }
        let begin = if let Some(flight) = &state.flight {
            Ok(TokenOrFlight::Wait(flight.join()))
        } else {
            // Within the interval, or while backing off (the provider's `Retry-After`
            // included), a 401 gets no new token.
            if state
                .last_replay_refresh
                .is_some_and(|at| now < timing::after(at, core.config.replay_refresh_interval))
                || state.retry_at.is_some_and(|at| now < at)
            {
                return RefreshDecision::Denied;
            }
            state.last_replay_refresh = Some(now);
            if core
                .current
                .load()
                .as_ref()
                .is_some_and(|t| t.generation == rejected)
            {
                core.current.store(None);
                core.current_id.store(0, Ordering::Release);
            }
            Counters::bump(&core.counters.replay_refreshes);
            core.start_flight(&mut state, now)
        };
        if let Ok(TokenOrFlight::Ready(token)) = begin {
            return RefreshDecision::Use(token);
        }
        drop(state);
        let core = Arc::clone(core);
        RefreshDecision::Wait(Box::pin(async move { core.wait(begin).await }))
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        // A panic elsewhere cannot leave `CacheState` half-updated in a way that matters more
        // than a stuck cache would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn usable(&self, now: Instant) -> Option<Arc<CachedToken>> {
        self.current.load_full().filter(|t| now < t.usable_until)
    }

    /// Decides, under the lock, between a valid token, joining the flight, the negative
    /// cache, and starting a flight.
    fn begin(self: &Arc<Self>) -> Result<TokenOrFlight, Error> {
        if let Some(invalid) = &self.invalid {
            return Err(invalid.clone());
        }
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(token) = self.usable(now) {
            return Ok(TokenOrFlight::Ready(token));
        }
        if let Some(flight) = &state.flight {
            return Ok(TokenOrFlight::Wait(flight.join()));
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
    async fn wait(self: &Arc<Self>, begin: Result<TokenOrFlight, Error>) -> TokenResult {
        let mut waiting = match begin? {
            TokenOrFlight::Ready(token) => return Ok(token),
            TokenOrFlight::Wait(waiting) => waiting,
        };
        Counters::bump(&self.counters.waits);
        loop {
            let here = match self.runtime(&mut self.lock()) {
                Runtime::Usable(handle) => Some(handle.id()),
                Runtime::None | Runtime::NoTimeDriver => None,
            };
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
                        TokenOrFlight::Ready(token) => return Ok(token),
                        TokenOrFlight::Wait(next) => next,
                    };
                }
                Some(FlightEnd::Abandoned) | None => return Err(Error::FetchAborted),
            }
        }
    }

    /// Ends flight `id`, if it still runs, without an outcome of the source: its runtime
    /// stopped or idles. No failure is recorded and nothing backs off; its waiters begin
    /// again, and if a valid token is held, the next request starts the refresh.
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

    /// Moves the current token's refresh point to now, under a new id, so every thread's
    /// copy misses and the next request (on whichever runtime is alive) starts the refresh:
    /// the timer or flight that would have done it died with its runtime. Also when the
    /// refresh point had passed: threads that saw the dead flight running look again only
    /// at the token's end of use, and must look now.
    fn refresh_now(&self, _locked: &mut CacheState) {
        let now = Instant::now();
        let Some(token) = self.usable(now) else {
            return;
        };
        let moved = Arc::new(CachedToken {
            header: token.header.clone(),
            id: NEXT_TOKEN_ID.fetch_add(1, Ordering::Relaxed),
            generation: token.generation,
            usable_until: token.usable_until,
            refresh_at: token.refresh_at.min(now),
        });
        let id = moved.id;
        self.current.store(Some(moved));
        self.current_id.store(id, Ordering::Release);
    }

    /// Whether the current thread has a runtime to spawn on, with a time driver. Checked
    /// once per runtime switch: tokio only tells by panicking on the first timer.
    fn runtime(&self, state: &mut CacheState) -> Runtime {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Runtime::None;
        };
        let id = handle.id();
        let timers = match state.runtime {
            Some((seen, timers)) if seen == id => timers,
            _ => {
                let timers = catch_unwind(|| drop(tokio::time::sleep(Duration::ZERO))).is_ok();
                state.runtime = Some((id, timers));
                timers
            }
        };
        if timers {
            Runtime::Usable(handle)
        } else {
            Runtime::NoTimeDriver
        }
    }

    /// Starts the one fetch. Called with the lock held and no flight running. A source
    /// with a token ready at once is recorded here and then, without a task.
    fn start_flight(
        self: &Arc<Self>,
        state: &mut CacheState,
        started: Instant,
    ) -> Result<TokenOrFlight, Error> {
        let ready = match catch_unwind(AssertUnwindSafe(|| self.source.inner.ready_token())) {
            Ok(token) => token.map(Ok),
            Err(panic) => Some(Err(panicked(panic))),
        };
        if let Some(fetched) = ready {
            Counters::bump(&self.counters.fetches);
            return self
                .record(state, started, fetched)
                .map(TokenOrFlight::Ready);
        }
        let runtime = match self.runtime(state) {
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
        let core = Arc::clone(self);
        let span = tracing::debug_span!(target: "veracity_auth::cache", "token_fetch", flight = id, source = core.source.name);
        let task = async move {
            let mut guard = FlightGuard {
                core,
                id,
                started,
                fetched: None,
            };
            let timeout = guard.core.config.fetch_timeout;
            let fetch = CatchPanic::new(&*guard.core.source.inner);
            let fetched = tokio::time::timeout(timeout, fetch)
                .await
                .unwrap_or(Err(Error::Timeout(timeout)));
            guard.fetched = Some(fetched);
        };
        runtime.spawn(tracing::Instrument::instrument(task, span));
        Ok(TokenOrFlight::Wait(waiting))
    }

    /// Ends flight `id` with `fetched`, unless it already ended (abandoned: its late result
    /// is dropped), and tells its waiters.
    fn finish(
        self: &Arc<Self>,
        id: u64,
        started: Instant,
        fetched: Result<Token, Error>,
    ) -> TokenResult {
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

    /// Records a fetch's outcome and arms the next refresh or retry.
    fn record(
        self: &Arc<Self>,
        state: &mut CacheState,
        started: Instant,
        fetched: Result<Token, Error>,
    ) -> TokenResult {
        let now = Instant::now();
        let cached =
            fetched.and_then(|token| self.prepare(&token, started, now, state.generation + 1));
        match cached {
            Ok(token) => {
                state.generation = token.generation;
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                self.current.store(Some(Arc::clone(&token)));
                self.current_id.store(token.id, Ordering::Release);
                self.arm_timer(state, token.refresh_at);
                tracing::debug!(
                    target: "veracity_auth::cache",
                    generation = token.generation,
                    fetch_ms = (now - started).as_millis() as u64,
                    usable_for_s = (token.usable_until - now).as_secs(),
                    refresh_in_s = (token.refresh_at - now).as_secs(),
                    "token fetched"
                );
                Ok(token)
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
                // While a valid token is held, keep trying in the background.
                if let Some(token) = &held
                    && retry_at < token.usable_until
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

    fn prepare(
        &self,
        token: &Token,
        started: Instant,
        now: Instant,
        generation: u64,
    ) -> TokenResult {
        let header = token.bearer_header()?;
        let lifetime = token.expires_in().unwrap_or(self.config.default_lifetime);
        let schedule = timing::schedule(&self.config, started, lifetime, timing::random_unit());
        if schedule.usable_until <= now {
            return Err(Error::InvalidResponse(
                "the token expired before its fetch completed".into(),
            ));
        }
        Ok(Arc::new(CachedToken {
            header,
            id: NEXT_TOKEN_ID.fetch_add(1, Ordering::Relaxed),
            generation,
            usable_until: schedule.usable_until,
            refresh_at: schedule.refresh_at,
        }))
    }

    /// Schedules a background refresh at `at`, replacing any earlier one. The timer holds
    /// only a `Weak`, and the cache aborts it when dropped. A timer that dies unfired with
    /// its runtime moves the refresh point to now ([`TimerGuard`]).
    fn arm_timer(self: &Arc<Self>, state: &mut CacheState, at: Instant) {
        if let Some(old) = state.timer.take() {
            old.task.abort();
        }
        // Without a usable runtime, the first request past the refresh point refreshes.
        let Runtime::Usable(runtime) = self.runtime(state) else {
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
            core: Arc::downgrade(self),
            id,
            fired: false,
        };
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            guard.fired = true;
            if let Some(core) = guard.core.upgrade() {
                core.refresh_in_background(guard.id);
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

    /// A request saw `token` past its refresh point: start the refresh unless one runs or a
    /// backoff does. The timer is only a hint: it may have died with the runtime that armed
    /// it, or sit on a runtime that idles. Returns when this thread should look again: the
    /// end of the backoff, the deadline of a flight running on another runtime (which may
    /// idle), or else the token's end of use.
    fn ensure_refresh(self: &Arc<Self>, token: &CachedToken, now: Instant) -> Instant {
        let mut state = self.lock();
        if self.current_id.load(Ordering::Acquire) != token.id {
            // A newer token (or schedule) is published: look again at once.
            return now;
        }
        let here = match self.runtime(&mut state) {
            Runtime::Usable(handle) => Some(handle.id()),
            Runtime::None | Runtime::NoTimeDriver => None,
        };
        if let Some(flight) = &state.flight {
            if here.is_none_or(|here| here == flight.runtime) {
                // Its own runtime times it out.
                return token.usable_until;
            }
            let deadline = timing::after(flight.started, self.config.fetch_timeout);
            if now < deadline {
                return deadline.min(token.usable_until);
            }
            let id = flight.id;
            drop(state);
            self.abandon(id, "refresh outlived fetch_timeout on another runtime");
            state = self.lock();
            if state.flight.is_some() {
                return token.usable_until;
            }
        }
        if let Some(retry_at) = state.retry_at.filter(|at| now < *at) {
            return retry_at.min(token.usable_until);
        }
        tracing::debug!(
            target: "veracity_auth::cache",
            "refresh point passed with no refresh running: refreshing now"
        );
        if let Some(timer) = state.timer.take() {
            timer.task.abort();
        }
        let _ = self.start_flight(&mut state, now);
        token.usable_until
    }
}

/// Lives in the timer's task: if the task is dropped before the timer fired (its runtime
/// shut down), the refresh point moves to now, so the next request on a live runtime
/// refreshes before expiry.
struct TimerGuard {
    core: Weak<Core>,
    id: u64,
    fired: bool,
}

impl Drop for TimerGuard {
    fn drop(&mut self) {
        if self.fired {
            return;
        }
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let mut state = core.lock();
        // Not replaced (an abort by `arm_timer`) and not dropped with the cache.
        if state.timer.as_ref().is_some_and(|t| t.id == self.id) {
            state.timer = None;
            tracing::debug!(
                target: "veracity_auth::cache",
                "refresh timer died with its runtime: the next request refreshes"
            );
            core.refresh_now(&mut state);
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = state.timer.take() {
            timer.task.abort();
        }
    }
}

/// Ends its flight when the fetch task ends: with the fetch's result, or, if the task is
/// dropped first (its runtime shut down), as an abandoned one: not the source's failure.
struct FlightGuard {
    core: Arc<Core>,
    id: u64,
    started: Instant,
    fetched: Option<Result<Token, Error>>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        match self.fetched.take() {
            Some(fetched) => drop(self.core.finish(self.id, self.started, fetched)),
            None => self.core.abandon(self.id, "its runtime shut down"),
        }
    }
}

/// A source's fetch with its panics caught: a panic becomes [`Error::FetchPanicked`].
struct CatchPanic<'a> {
    source: Option<&'a dyn crate::source::DynTokenSource>,
    fetch: Option<BoxFuture<'a, Result<Token, Error>>>,
}

impl<'a> CatchPanic<'a> {
    fn new(source: &'a dyn crate::source::DynTokenSource) -> Self {
        CatchPanic {
            source: Some(source),
            fetch: None,
        }
    }
}

impl Future for CatchPanic<'_> {
    type Output = Result<Token, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let polled = catch_unwind(AssertUnwindSafe(|| {
            // The future is made here, so a panic in `fetch` itself is caught too.
            let fetch = match (&mut this.fetch, this.source.take()) {
                (Some(fetch), _) => fetch,
                (fetch, Some(source)) => fetch.insert(source.fetch_boxed()),
                (None, None) => return Poll::Ready(Err(Error::FetchAborted)),
            };
            fetch.as_mut().poll(cx)
        }));
        polled.unwrap_or_else(|panic| {
            this.fetch = None;
            Poll::Ready(Err(panicked(panic)))
        })
    }
}

/// The error for a panic: its message (a `&str` or `String` payload) with every credential
/// redacted wherever it sits (compact JSON, `Some("…")`, a form body), cleaned of control
/// characters and capped.
fn panicked(panic: Box<dyn std::any::Any + Send>) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message");
    Error::FetchPanicked(crate::redact::free_text(message, 512))
}

#[cfg(test)]
mod tests;

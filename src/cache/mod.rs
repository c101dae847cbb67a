//! The token cache: one per layer, shared by every clone of the service.
//!
//! - **Hot path** ([`TokenCache::authorize`]): one atomic load of the current token's id (a
//!   value written once per token), one clock read, and header insertions of this thread's
//!   own copies of values prepared once per token (see [`local`]): no lock, no shared
//!   reference count, no allocation.
//! - **Single flight**: every cause of a fetch (cold start, expiry, refresh ahead, a 401)
//!   goes through [`Core::begin`] under one mutex; at most one fetch runs, on a task of its
//!   own, and every waiter shares its outcome (error included) through a `watch` channel.
//!   Dropping waiters never cancels the fetch; a fetch task that dies clears its slot.
//! - **Refresh ahead**: a timer task, holding only a `Weak`, starts a background refresh
//!   before expiry; requests keep the valid token meanwhile.
//! - **Failures**: a failed refresh keeps the valid token; failures back off exponentially
//!   with jitter, honouring `Retry-After`; while no valid token exists, requests get the last
//!   error at once until the backoff allows another fetch (negative caching).
//! - **401s** ([`TokenCache::reauthenticate`]): only the rejected generation is dropped,
//!   and 401-caused fetches are rate-limited.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderValue, header::AUTHORIZATION};
use tokio::{sync::watch, task::AbortHandle, time::Instant};

use crate::{
    Error, Token,
    service::API_KEY_HEADER,
    source::{AnySource, BoxFuture},
    stats::Counters,
};

mod local;
pub(crate) mod timing;

/// How the cache behaves; set through [`VeracityAuthLayer`](crate::VeracityAuthLayer).
#[derive(Clone, Debug)]
pub(crate) struct CacheConfig {
    pub(crate) refresh_ahead: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) default_lifetime: Duration,
    pub(crate) jitter: f64,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) reauth_interval: Duration,
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
            reauth_interval: Duration::from_secs(30),
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

type Outcome = Result<Arc<CachedToken>, Error>;

/// A handle on the shared cache. Cloning it is one reference-count increment.
#[derive(Clone, Debug)]
pub(crate) struct TokenCache {
    core: Arc<Core>,
}

/// What to do after a 401.
pub(crate) enum Reauth {
    /// The cache already holds a newer token: use it, no fetch.
    Use(Arc<CachedToken>),
    /// A fetch is under way (perhaps started by this call): wait for it.
    Wait(BoxFuture<'static, Outcome>),
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
    state: Mutex<State>,
    source: AnySource,
    config: CacheConfig,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct State {
    flight: Option<Flight>,
    next_flight: u64,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    last_reauth: Option<Instant>,
    timer: Option<AbortHandle>,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    outcome: watch::Receiver<Option<Outcome>>,
}

enum Begin {
    Ready(Arc<CachedToken>),
    Wait(watch::Receiver<Option<Outcome>>),
}

impl TokenCache {
    pub(crate) fn new(source: AnySource, config: CacheConfig, counters: Arc<Counters>) -> Self {
        TokenCache {
            core: Arc::new(Core {
                current: ArcSwapOption::empty(),
                current_id: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                source,
                config,
                counters,
            }),
        }
    }

    /// The hot path: inserts `Authorization` (and the API key, when there is one) from a
    /// valid cached token and returns its generation, or `None` when the caller must
    /// [`acquire`](Self::acquire) one. One atomic load of a value written once per token,
    /// one clock read, and this thread's own copies of the header values.
    #[inline]
    pub(crate) fn authorize(
        &self,
        headers: &mut HeaderMap,
        api_key: Option<&HeaderValue>,
    ) -> Option<u64> {
        let id = self.core.current_id.load(Ordering::Acquire);
        if id == 0 {
            return None;
        }
        let now = Instant::now();
        let hit = local::with(id, |copy| {
            if now >= copy.usable_until {
                return None;
            }
            headers.insert(AUTHORIZATION, copy.bearer.clone());
            if let Some(key) = &copy.api_key {
                headers.insert(API_KEY_HEADER, key.clone());
            }
            Some(copy.generation)
        });
        match hit {
            Some(generation) => generation,
            None => self.authorize_first_on_thread(headers, api_key, now),
        }
    }

    /// This thread's first request with the current token: make its copies.
    #[cold]
    fn authorize_first_on_thread(
        &self,
        headers: &mut HeaderMap,
        api_key: Option<&HeaderValue>,
        now: Instant,
    ) -> Option<u64> {
        let token = self.core.usable(now)?;
        let copy = local::LocalToken {
            id: token.id,
            generation: token.generation,
            usable_until: token.usable_until,
            bearer: local::own_copy(&token.header),
            api_key: api_key.map(local::own_copy),
        };
        headers.insert(AUTHORIZATION, copy.bearer.clone());
        if let Some(key) = &copy.api_key {
            headers.insert(API_KEY_HEADER, key.clone());
        }
        local::keep(copy);
        Some(token.generation)
    }

    /// The slow path: a valid token, waiting for the single flight if there is none.
    pub(crate) fn acquire(&self) -> BoxFuture<'static, Outcome> {
        let core = Arc::clone(&self.core);
        Box::pin(async move {
            let begin = core.begin();
            core.wait(begin).await
        })
    }

    /// After a 401 for a request sent with `rejected`: drop that token (only if it is still
    /// the current one) and fetch a new one, at most once per `reauth_interval`.
    pub(crate) fn reauthenticate(&self, rejected: u64) -> Reauth {
        let core = &self.core;
        let mut state = core.lock();
        let now = Instant::now();
        if let Some(token) = core.usable(now).filter(|t| t.generation != rejected) {
            return Reauth::Use(token);
        }
        let begin = if let Some(flight) = &state.flight {
            Ok(Begin::Wait(flight.outcome.clone()))
        } else {
            if state
                .last_reauth
                .is_some_and(|at| now < at + core.config.reauth_interval)
            {
                return Reauth::Denied;
            }
            state.last_reauth = Some(now);
            if core
                .current
                .load()
                .as_ref()
                .is_some_and(|t| t.generation == rejected)
            {
                core.current.store(None);
                core.current_id.store(0, Ordering::Release);
            }
            Counters::bump(&core.counters.reauthentications);
            core.start_flight(&mut state, now).map(Begin::Wait)
        };
        drop(state);
        let core = Arc::clone(core);
        Reauth::Wait(Box::pin(async move { core.wait(begin).await }))
    }
}

impl Core {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave `State` half-updated in a way that matters more
        // than a stuck cache would.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn usable(&self, now: Instant) -> Option<Arc<CachedToken>> {
        self.current.load_full().filter(|t| now < t.usable_until)
    }

    /// Decides, under the lock, between a valid token, joining the flight, the negative
    /// cache, and starting a flight.
    fn begin(self: &Arc<Self>) -> Result<Begin, Error> {
        let mut state = self.lock();
        let now = Instant::now();
        if let Some(token) = self.usable(now) {
            return Ok(Begin::Ready(token));
        }
        if let Some(flight) = &state.flight {
            return Ok(Begin::Wait(flight.outcome.clone()));
        }
        if let (Some(error), Some(at)) = (&state.last_error, state.retry_at)
            && now < at
        {
            Counters::bump(&self.counters.fast_failures);
            return Err(error.clone());
        }
        self.start_flight(&mut state, now).map(Begin::Wait)
    }

    async fn wait(self: &Arc<Self>, mut begin: Result<Begin, Error>) -> Outcome {
        let mut counted = false;
        // A flight whose task died (its runtime shut down, its source panicked) ends
        // without an outcome; one more round starts a new flight.
        for _ in 0..2 {
            let mut outcome = match begin? {
                Begin::Ready(token) => return Ok(token),
                Begin::Wait(rx) => rx,
            };
            if !counted {
                Counters::bump(&self.counters.waits);
                counted = true;
            }
            if let Ok(done) = outcome.wait_for(Option::is_some).await
                && let Some(outcome) = done.as_ref()
            {
                return outcome.clone();
            }
            begin = self.begin();
        }
        Err(Error::FetchAborted)
    }

    /// Starts the one fetch. Called with the lock held and no flight running.
    fn start_flight(
        self: &Arc<Self>,
        state: &mut State,
        started: Instant,
    ) -> Result<watch::Receiver<Option<Outcome>>, Error> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let (tx, rx) = watch::channel(None);
        let id = state.next_flight;
        state.next_flight += 1;
        state.flight = Some(Flight {
            id,
            outcome: rx.clone(),
        });
        Counters::bump(&self.counters.fetches);
        let core = Arc::clone(self);
        let span = tracing::debug_span!(target: "veracity_auth::cache", "token_fetch", flight = id, source = core.source.name);
        let task = async move {
            let guard = FlightGuard { core, id };
            let timeout = guard.core.config.fetch_timeout;
            let fetched = tokio::time::timeout(timeout, guard.core.source.source.fetch_boxed())
                .await
                .unwrap_or(Err(Error::Timeout(timeout)));
            let outcome = guard.core.complete(id, started, fetched);
            let _ = tx.send(Some(outcome));
        };
        runtime.spawn(tracing::Instrument::instrument(task, span));
        Ok(rx)
    }

    /// Records a fetch's outcome, arms the next refresh or retry, and ends the flight.
    fn complete(
        self: &Arc<Self>,
        id: u64,
        started: Instant,
        fetched: Result<Token, Error>,
    ) -> Outcome {
        let now = Instant::now();
        let mut state = self.lock();
        if state.flight.as_ref().is_some_and(|f| f.id == id) {
            state.flight = None;
        }
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
                self.arm_timer(&mut state, token.refresh_at);
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
                let retry_at = now + delay;
                state.retry_at = Some(retry_at);
                state.last_error = Some(error.clone());
                let held = self.usable(now);
                // While a valid token is held, keep trying in the background.
                if let Some(token) = &held
                    && retry_at < token.usable_until
                {
                    self.arm_timer(&mut state, retry_at);
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

    fn prepare(&self, token: &Token, started: Instant, now: Instant, generation: u64) -> Outcome {
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
    /// only a `Weak`, and the cache aborts it when dropped.
    fn arm_timer(self: &Arc<Self>, state: &mut State, at: Instant) {
        if let Some(old) = state.timer.take() {
            old.abort();
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(
            target: "veracity_auth::cache",
            in_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64,
            "background refresh scheduled"
        );
        let core: Weak<Core> = Arc::downgrade(self);
        let task = runtime.spawn(async move {
            tokio::time::sleep_until(at).await;
            if let Some(core) = core.upgrade() {
                core.refresh_in_background();
            }
        });
        state.timer = Some(task.abort_handle());
    }

    fn refresh_in_background(self: &Arc<Self>) {
        let mut state = self.lock();
        state.timer = None;
        if state.flight.is_none() {
            let _ = self.start_flight(&mut state, Instant::now());
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
    }
}

/// Ends a flight whose task is dropped before completing (runtime shutdown, a panicking
/// source), so the next caller starts a new one instead of waiting forever.
struct FlightGuard {
    core: Arc<Core>,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut state = self.core.lock();
        if state.flight.as_ref().is_some_and(|f| f.id == self.id) {
            state.flight = None;
        }
    }
}

#[cfg(test)]
mod tests;

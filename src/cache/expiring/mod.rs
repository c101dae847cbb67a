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
//!   requests are the backstop ([`ExpiringCache::check`]): each credential is published
//!   with a check point, and the first request past it looks at the state. Past the refresh
//!   point it starts the refresh if none runs; a timer that died with its runtime is armed
//!   again, for the same moment, on the next request's runtime; a refresh on another runtime
//!   not done by half of what the credential had left is probed (a task spawned there), and
//!   started again here if that runtime does not run the probe in time. No request waits.
//! - **Failures**: a failed refresh keeps the valid credential; failures back off
//!   exponentially with jitter, honouring `Retry-After`; while no valid credential exists,
//!   requests get the last error at once until the backoff allows another fetch (negative
//!   caching).
//! - **Rejections** ([`ExpiringCache::refresh_rejected`]): only the rejected generation is
//!   dropped, and rejection-caused fetches are rate-limited and wait out a running backoff.
//! - **Durations** never overflow: instants saturate about a century ahead
//!   ([`timing::after`]).
//!
//! Here: the credential as cached, the cache's state, its API, and how a fetch's outcome is
//! published; [`flight`]: single flight; [`timer`]: the refresh timer.

use std::{
    fmt,
    future::Future,
    ops::Deref,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use arc_swap::ArcSwapOption;
use tokio::time::Instant;

use super::{CachePolicy, timing};
use crate::{Error, http_client::BoxFuture, runtime::RuntimeProbe, stats::Counters};
use flight::{CredentialOrFlight, Flight};
use timer::Timer;

mod flight;
#[cfg(test)]
mod tests;
mod timer;

/// Where an [`ExpiringCache`] gets its credential: how to fetch one, and whether it can.
pub(crate) trait CredentialSource: fmt::Debug + Send + Sync + 'static {
    /// What a fetch produces and the cache holds. `Debug` must not show a secret.
    type Credential: Clone + fmt::Debug + Send + Sync + 'static;

    /// A name for logs: never a secret.
    fn name(&self) -> &'static str;

    /// What it fetches, as logs and spans name it: `"token"` or `"storage SAS"`.
    const CREDENTIAL: &'static str;

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
    /// 1, 2, 3, ... in the order this cache's credentials were fetched.
    pub(crate) generation: u64,
    pub(crate) usable_until: Instant,
    pub(crate) refresh_at: Instant,
    /// Until this moment requests use it without a look at the cache's state: the refresh
    /// point, then (once a refresh is under way) the end of use, or sooner when something
    /// must be looked at again (a timer or flight lost with its runtime).
    pub(crate) check_at: Instant,
}

impl<C> Deref for Cached<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.credential
    }
}

/// A valid credential, or the error every waiter of its fetch shares.
pub(crate) type Outcome<C> = Result<Arc<Cached<C>>, Error>;

/// One credential, shared: what requests read without a lock (`current`), and under one
/// lock everything about fetching it ([`FetchState`]).
#[derive(Debug)]
pub(crate) struct ExpiringCache<S: CredentialSource> {
    current: ArcSwapOption<Cached<S::Credential>>,
    state: Mutex<FetchState<S::Credential>>,
    source: S,
    config: CachePolicy,
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
    pub(crate) fn new(source: S, config: CachePolicy) -> Self {
        ExpiringCache {
            current: ArcSwapOption::empty(),
            state: Mutex::default(),
            source,
            config,
            counters: Counters::default(),
        }
    }

    pub(crate) fn source(&self) -> &S {
        &self.source
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The current credential as published, for the hot path to check against the clock.
    #[inline]
    pub(crate) fn load(&self) -> arc_swap::Guard<Option<Arc<Cached<S::Credential>>>> {
        self.current.load()
    }

    /// Where the current credential is published, for a reader's own
    /// [`arc_swap::Cache`] of it.
    pub(crate) fn published(&self) -> &ArcSwapOption<Cached<S::Credential>> {
        &self.current
    }

    /// The current credential, if it may still be used at `now`.
    pub(crate) fn usable(&self, now: Instant) -> Option<Arc<Cached<S::Credential>>> {
        self.current.load_full().filter(|c| now < c.usable_until)
    }

    /// The current credential if it may be used at `now`, having seen to its refresh when
    /// its check point passed ([`ExpiringCache::check`]).
    pub(crate) fn get(self: &Arc<Self>, now: Instant) -> Option<Arc<Cached<S::Credential>>> {
        let current = self.usable(now)?;
        if now < current.check_at {
            return Some(current);
        }
        Some(self.check(current, now))
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
    /// still the current one) and fetch a new one, at most once per `rejection_interval`.
    /// The future of a credential newer than the rejected one: ready at once when one is
    /// held, or the fetch's (perhaps started by this call; dropping the future does not
    /// cancel it). `None` within the interval, or while backing off after failures (the
    /// provider's `Retry-After` included): no new credential now.
    pub(crate) fn refresh_rejected(
        self: &Arc<Self>,
        rejected: u64,
    ) -> Option<BoxFuture<'static, Outcome<S::Credential>>> {
        let mut state = self.lock();
        let now = Instant::now();
        let begin = if let Some(current) = self.usable(now).filter(|c| c.generation != rejected) {
            Ok(CredentialOrFlight::Ready(current))
        } else if let Some(flight) = &state.flight {
            Ok(CredentialOrFlight::Wait(flight.join()))
        } else {
            if state
                .last_replay_refresh
                .is_some_and(|at| now < timing::after(at, self.config.rejection_interval))
                || state.retry_at.is_some_and(|at| now < at)
            {
                return None;
            }
            state.last_replay_refresh = Some(now);
            if self
                .current
                .load()
                .as_ref()
                .is_some_and(|c| c.generation == rejected)
            {
                self.current.store(None);
            }
            Counters::bump(&self.counters.replay_refreshes);
            self.start_flight(&mut state, now)
        };
        drop(state);
        let cache = Arc::clone(self);
        Some(Box::pin(async move { cache.wait(begin).await }))
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

// === publishing credentials ===

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
                self.arm_timer(state, cached.refresh_at);
                tracing::debug!(
                    target: "veracity_auth::cache",
                    generation = cached.generation,
                    fetch_ms = (now - started).as_millis() as u64,
                    usable_for_s = (cached.usable_until - now).as_secs(),
                    refresh_in_s = (cached.refresh_at - now).as_secs(),
                    "{} fetched",
                    S::CREDENTIAL
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
                    "{} fetch failed",
                    S::CREDENTIAL
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
            return Err(Error::InvalidResponse(format!(
                "the {} expired before its fetch completed",
                S::CREDENTIAL
            )));
        }
        Ok(Arc::new(Cached {
            credential: fetched.credential,
            generation,
            usable_until: schedule.usable_until,
            refresh_at: schedule.refresh_at,
            check_at: schedule.refresh_at,
        }))
    }

    /// Publishes the current credential again with the check point `check_at`, if it is
    /// still the current one (the lock is held, so no fetch publishes meanwhile).
    fn recheck_at(
        &self,
        _locked: &mut FetchState<S::Credential>,
        current: &Arc<Cached<S::Credential>>,
        check_at: Instant,
    ) -> Arc<Cached<S::Credential>> {
        let published = self.current.load();
        if !published.as_ref().is_some_and(|p| Arc::ptr_eq(p, current))
            || current.check_at == check_at
        {
            return published.clone().unwrap_or_else(|| Arc::clone(current));
        }
        let moved = Arc::new(Cached {
            credential: current.credential.clone(),
            generation: current.generation,
            usable_until: current.usable_until,
            refresh_at: current.refresh_at,
            check_at,
        });
        self.current.store(Some(Arc::clone(&moved)));
        moved
    }

    /// Makes the next request look at the cache's state: the timer or flight that would
    /// have refreshed the current credential died with its runtime.
    fn look_again(&self, state: &mut FetchState<S::Credential>) {
        let now = Instant::now();
        if let Some(current) = self.usable(now) {
            self.recheck_at(state, &current, now);
        }
    }
}

//! The refresh timer: a background refresh ahead of expiry, with requests as its backstop
//! when the timer, or the refresh it started, dies with its runtime.

use std::sync::{Arc, MutexGuard, Weak};

use tokio::{task::AbortHandle, time::Instant};

use super::{Cached, CredentialSource, ExpiringCache, FetchState, flight::Verdict};
use crate::runtime::Runtime;

/// The armed refresh (or retry) timer. Its task tells the cache if it dies unfired.
#[derive(Debug)]
pub(super) struct Timer {
    id: u64,
    pub(super) task: AbortHandle,
}

// === impl ExpiringCache ===

impl<S: CredentialSource> ExpiringCache<S> {
    /// Schedules a background refresh at `at`, replacing any earlier one. The timer holds
    /// only a `Weak`, and the cache aborts it when dropped. A timer that dies unfired with
    /// its runtime is armed again by the next request ([`TimerGuard`]).
    pub(super) fn arm_timer(self: &Arc<Self>, state: &mut FetchState<S::Credential>, at: Instant) {
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

    /// A request saw `current` past its check point: arm the timer if none is (it died
    /// with its runtime), or, past the refresh point, see that the refresh is under way.
    /// Publishes `current` again with the moment to look next, and returns that.
    ///
    /// The timer is only a hint: it may have died with the runtime that armed it, or sit on
    /// a runtime that idles. Past the refresh point a request starts the refresh unless one
    /// runs or a backoff does. A refresh running on another runtime is probed past half of
    /// what the credential had left when it began ([`Flight::verdict`]): a runtime that does
    /// not run the probe's task in time is stranded (idle or blocked), and the refresh
    /// starts again here; a live one bounds its fetch by its own timeout.
    ///
    /// [`Flight::verdict`]: super::flight::Flight::verdict
    pub(crate) fn check(
        self: &Arc<Self>,
        current: Arc<Cached<S::Credential>>,
        now: Instant,
    ) -> Arc<Cached<S::Credential>> {
        let this = self;
        let mut state = this.lock();
        if now < current.refresh_at {
            if state.timer.is_none() && state.flight.is_none() {
                this.arm_timer(&mut state, current.refresh_at);
            }
            return this.recheck_at(&mut state, &current, current.refresh_at);
        }
        let here = state.runtime.current().id();
        let timeout = this.config.fetch_timeout;
        if let Some(flight) = state.flight.as_mut() {
            let next = match flight.verdict(here, now, Some(current.usable_until), timeout) {
                Verdict::Here => current.usable_until,
                Verdict::LookAgainAt(at) => at.min(current.usable_until),
                Verdict::Stranded => {
                    let id = flight.id;
                    drop(state);
                    this.take_over(id);
                    state = this.lock();
                    if state.flight.is_none() {
                        return this.refresh_now(state, &current, now);
                    }
                    current.usable_until
                }
            };
            return this.recheck_at(&mut state, &current, next);
        }
        this.refresh_now(state, &current, now)
    }

    /// Past the refresh point with no refresh running: start it, unless backing off.
    fn refresh_now(
        self: &Arc<Self>,
        mut state: MutexGuard<'_, FetchState<S::Credential>>,
        current: &Arc<Cached<S::Credential>>,
        now: Instant,
    ) -> Arc<Cached<S::Credential>> {
        let this = self;
        if let Some(retry_at) = state.retry_at.filter(|at| now < *at) {
            return this.recheck_at(&mut state, current, retry_at.min(current.usable_until));
        }
        tracing::debug!(
            target: "veracity_auth::cache",
            "refresh point passed with no refresh running: refreshing now"
        );
        if let Some(timer) = state.timer.take() {
            timer.task.abort();
        }
        let _ = this.start_flight(&mut state, now);
        this.recheck_at(&mut state, current, current.usable_until)
    }
}

// === impl TimerGuard ===

/// Lives in the timer's task: if the task is dropped before the timer fired (its runtime
/// shut down), the next request arms it again on its own runtime, for the same moment.
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
                "refresh timer died with its runtime: the next request arms it again"
            );
            cache.look_again(&mut state);
        }
    }
}

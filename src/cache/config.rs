//! How the cache behaves: [`CacheConfig`], its defaults, and the settings it cannot work with.

use std::time::Duration;

use crate::Error;

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
    /// Sets the randomised share: above 1 counts as 1, NaN as 0; a negative value stays, for
    /// [`problem`](Self::problem) to name.
    pub(crate) fn set_jitter(&mut self, jitter: f64) {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.min(1.0)
        };
    }

    /// Sets the backoff: `initial`, doubling per failure, at most `max` (never below
    /// `initial`).
    pub(crate) fn set_backoff(&mut self, initial: Duration, max: Duration) {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
    }

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

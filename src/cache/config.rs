//! How a cache behaves: [`CachePolicy`], its defaults, and the settings it cannot work with.

use std::time::Duration;

use crate::ConfigError;

/// How a cache of an expiring credential behaves: when it refreshes, how long it trusts a
/// credential, how it backs off. One value, taken by every builder that caches something
/// ([`AuthenticatorBuilder::cache_policy`](crate::AuthenticatorBuilder::cache_policy),
/// [`StorageSasBuilder::cache_policy`](crate::StorageSasBuilder::cache_policy)); a setting
/// the cache cannot work with is refused by their `build()`.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::CachePolicy;
///
/// let policy = CachePolicy::default()
///     .refresh_ahead(Duration::from_secs(120))
///     .jitter(0.0);
/// # let _ = policy;
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct CachePolicy {
    pub(crate) refresh_ahead: Duration,
    pub(crate) safety_margin: Duration,
    pub(crate) default_lifetime: Duration,
    pub(crate) jitter: f64,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) rejection_interval: Duration,
}

impl CachePolicy {
    /// Start refreshing this long before a credential expires (default 5 minutes; at most a
    /// quarter of its lifetime is used, so short-lived credentials work).
    pub fn refresh_ahead(mut self, window: Duration) -> Self {
        self.refresh_ahead = window;
        self
    }

    /// Never send a credential this close to its expiry (default 30 s; at most a tenth of its
    /// lifetime, but at least 1 s, or this margin if smaller, for one that lives 2 s or more:
    /// identity providers round a JWT's `exp` down to the whole second), for clock skew and
    /// transit.
    pub fn safety_margin(mut self, margin: Duration) -> Self {
        self.safety_margin = margin;
        self
    }

    /// The lifetime assumed when the answer does not say (default 5 minutes).
    /// `Duration::MAX` means "never expires"; zero is refused.
    pub fn default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// The share of the refresh window and of each backoff delay that is randomised
    /// (default 0.2), so a fleet of replicas does not refresh in step. `0.0` makes the
    /// schedule exact (tests). Values above 1 count as 1 and NaN as 0; a negative value is
    /// refused.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.min(1.0)
        };
        self
    }

    /// Backoff after failed fetches: `initial`, doubling per failure, at most `max` (never
    /// below `initial`; defaults 1 s and 60 s). `Retry-After` is honoured up to 5 minutes.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }

    /// The longest a fetch may take (default 30 s), and the longest a request waits for one,
    /// timed on the request's own runtime. Zero is refused.
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// At most one refresh caused by a rejected credential (a 401 the request is replayed
    /// after, a refused storage request) per `interval` (default 30 s), so a service that
    /// rejects every credential cannot turn every request into a fetch.
    pub fn rejection_interval(mut self, interval: Duration) -> Self {
        self.rejection_interval = interval;
        self
    }

    /// What makes this policy unusable, if anything.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let problem = if self.jitter < 0.0 {
            "jitter must not be negative"
        } else if self.fetch_timeout.is_zero() {
            "fetch_timeout must be longer than zero"
        } else if self.default_lifetime.is_zero() {
            "default_lifetime must be longer than zero"
        } else {
            return Ok(());
        };
        Err(ConfigError::CachePolicy(problem))
    }
}

impl Default for CachePolicy {
    fn default() -> Self {
        CachePolicy {
            refresh_ahead: Duration::from_secs(300),
            safety_margin: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(300),
            jitter: 0.2,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(30),
            rejection_interval: Duration::from_secs(30),
        }
    }
}

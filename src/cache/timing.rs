//! When a token stops being sent, when it is refreshed, and how long to back off after a
//! failure. Pure functions of the configuration and a random number, so tests can pin them.

use std::{
    hash::{BuildHasher, RandomState},
    time::Duration,
};

use tokio::time::Instant;

use super::CachePolicy;

/// The longest `Retry-After` the cache honours.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The farthest ahead the cache ever schedules anything (about 100 years): longer durations
/// (`Duration::MAX`, `u64::MAX` seconds) mean "never" and saturate to this.
pub(crate) const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, never panicking: `d` saturates at [`FAR`], and an instant the platform cannot
/// represent falls back to shorter horizons (a year, a day), then to `at` itself.
pub(crate) fn after(at: Instant, d: Duration) -> Instant {
    [
        d.min(FAR),
        Duration::from_secs(365 * 24 * 3600),
        Duration::from_secs(24 * 3600),
    ]
    .into_iter()
    .find_map(|d| at.checked_add(d))
    .unwrap_or(at)
}

/// A share in `[0, 1]`: NaN is 0, anything above 1 is 1, anything below 0 is 0.
pub(crate) fn share(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// `d * factor` for a factor in `[0, 1]`, never panicking (`Duration::mul_f64` panics when
/// the product rounds past `Duration::MAX`).
fn scaled(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * share(factor))
        .unwrap_or(d)
        .min(d)
}

/// The moments that matter in a token's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Schedule {
    /// The token is not sent from this moment on (expiry minus the safety margin).
    pub(crate) usable_until: Instant,
    /// A background refresh starts at this moment.
    pub(crate) refresh_at: Instant,
}

/// The margin kept before expiry, whatever the lifetime, once a token lives
/// [`FLOOR_FROM`] or more: identity providers that issue JWTs round `exp` down to the whole
/// second while `expires_in` counts from their answer, so a token may die up to a second
/// before `expires_in` says.
pub(crate) const MARGIN_FLOOR: Duration = Duration::from_secs(1);

/// The shortest lifetime that keeps [`MARGIN_FLOOR`].
pub(crate) const FLOOR_FROM: Duration = Duration::from_secs(2);

/// The schedule of a token that lives `lifetime`, counted from `started` (when its fetch
/// began, so transit time only makes us more careful).
///
/// The safety margin is at most a tenth of the lifetime, but never under a second (or the
/// configured margin, if smaller) for a token that lives two seconds or more: the last second
/// of a token whose `exp` was rounded down is not trusted. The refresh-ahead window is at
/// most a quarter of the lifetime, and the refresh starts at least half a window before the
/// token stops being sent, so a token that lives seconds is still refreshed ahead.
/// `jitter` in `[0, 1)` moves the refresh later by up to `config.jitter` of the window.
pub(crate) fn schedule(
    config: &CachePolicy,
    started: Instant,
    lifetime: Duration,
    jitter: f64,
) -> Schedule {
    // Past `FAR`, a lifetime means "never expires": margin and window stay in proportion
    // to what is scheduled, and no sum or difference below can overflow.
    let lifetime = lifetime.min(FAR);
    let mut margin = config.safety_margin.min(lifetime / 10);
    if lifetime >= FLOOR_FROM {
        margin = margin.max(config.safety_margin.min(MARGIN_FLOOR));
    }
    let window = config.refresh_ahead.min(lifetime / 4);
    let expires_at = after(started, lifetime);
    let usable_until = expires_at.checked_sub(margin).unwrap_or(started);
    let delay = scaled(window, share(config.jitter) * share(jitter));
    let latest = usable_until.checked_sub(window / 2).unwrap_or(started);
    let refresh_at = expires_at
        .checked_sub(window)
        .map_or(started, |at| after(at, delay))
        .min(latest)
        .max(started)
        .min(usable_until);
    Schedule {
        usable_until,
        refresh_at,
    }
}

/// How long to wait after the `failures`-th failure in a row: exponential from
/// `backoff_initial`, capped at `backoff_max`, shortened by up to `config.jitter` of itself,
/// and never shorter than the provider's `Retry-After`. Permanent errors wait the maximum.
pub(crate) fn backoff(
    config: &CachePolicy,
    failures: u32,
    retry_after: Option<Duration>,
    permanent: bool,
    jitter: f64,
) -> Duration {
    let base = if permanent {
        config.backoff_max
    } else {
        let doublings = failures.saturating_sub(1).min(30);
        config
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(config.backoff_max)
    };
    let cut = share(config.jitter) * share(jitter);
    let wait = scaled(base, 1.0 - cut);
    wait.max(retry_after.unwrap_or_default().min(MAX_RETRY_AFTER))
}

/// A uniform number in `[0, 1)`, different per call and per process (std's random hash
/// keys), good enough to spread a fleet's refreshes.
pub(crate) fn random_unit() -> f64 {
    let bits = RandomState::new().hash_one(0u8);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CachePolicy {
        CachePolicy::default()
    }

    #[test]
    fn an_hour_token_refreshes_five_minutes_ahead_with_jitter() {
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let early = schedule(&config(), t0, hour, 0.0);
        let late = schedule(&config(), t0, hour, 0.999_999);
        assert_eq!(early.usable_until, t0 + Duration::from_secs(3570));
        assert_eq!(early.refresh_at, t0 + Duration::from_secs(3300));
        assert!(late.refresh_at > t0 + Duration::from_secs(3359));
        assert!(late.refresh_at <= t0 + Duration::from_secs(3360));
    }

    #[test]
    fn short_tokens_shrink_margin_and_window_but_keep_the_last_second() {
        let t0 = Instant::now();
        let s = schedule(&config(), t0, Duration::from_secs(4), 0.5);
        assert_eq!(s.usable_until, t0 + Duration::from_secs(3));
        assert_eq!(s.refresh_at, t0 + Duration::from_millis(2500));
        let s = schedule(&config(), t0, Duration::from_secs(20), 0.0);
        assert_eq!(s.usable_until, t0 + Duration::from_secs(18));
        assert_eq!(s.refresh_at, t0 + Duration::from_secs(15));
        // Under two seconds, a tenth of the lifetime.
        let s = schedule(&config(), t0, Duration::from_secs(1), 0.0);
        assert_eq!(s.usable_until, t0 + Duration::from_millis(900));
        assert!(s.refresh_at < s.usable_until);
    }

    /// oidc-provider's 4-second tokens die 3.0 s after they were issued (`exp` rounded
    /// down): none is sent in its last second, for any lifetime from 2 s to an hour.
    #[test]
    fn no_token_is_sent_in_its_last_second() {
        let t0 = Instant::now();
        for secs in [2, 3, 4, 5, 9, 10, 11, 30, 60, 299, 3600] {
            for jitter in [0.0, 0.5, 0.999] {
                let expires_at = t0 + Duration::from_secs(secs);
                let s = schedule(&config(), t0, Duration::from_secs(secs), jitter);
                assert!(s.usable_until + MARGIN_FLOOR <= expires_at, "{secs} s");
                assert!(s.refresh_at < s.usable_until, "{secs} s refreshes ahead");
            }
        }
    }

    #[test]
    fn a_margin_configured_under_a_second_is_kept() {
        let c = CachePolicy {
            safety_margin: Duration::from_millis(200),
            ..config()
        };
        let t0 = Instant::now();
        let s = schedule(&c, t0, Duration::from_secs(60), 0.0);
        assert_eq!(s.usable_until, t0 + Duration::from_millis(59_800));
    }

    #[test]
    fn backoff_doubles_caps_and_honours_retry_after() {
        let c = config();
        let secs = |n, ra, p| backoff(&c, n, ra, p, 0.0).as_secs();
        assert_eq!(
            [
                secs(1, None, false),
                secs(2, None, false),
                secs(3, None, false)
            ],
            [1, 2, 4]
        );
        assert_eq!(secs(40, None, false), 60);
        assert_eq!(secs(1, None, true), 60);
        assert_eq!(secs(1, Some(Duration::from_secs(90)), false), 90);
        assert_eq!(secs(1, Some(Duration::from_secs(9000)), false), 300);
        let jittered = backoff(&c, 3, None, false, 0.999);
        assert!(jittered > Duration::from_millis(3200) && jittered <= Duration::from_secs(4));
    }

    #[test]
    fn extreme_durations_saturate_instead_of_panicking() {
        let t0 = Instant::now();
        let far = CachePolicy {
            refresh_ahead: Duration::MAX,
            safety_margin: Duration::MAX,
            backoff_initial: Duration::MAX,
            backoff_max: Duration::MAX,
            jitter: f64::NAN,
            ..config()
        };
        for lifetime in [Duration::MAX, Duration::from_secs(u64::MAX), FAR] {
            let s = schedule(&far, t0, lifetime, f64::NAN);
            assert!(s.refresh_at <= s.usable_until);
            assert!(s.usable_until > t0 + FAR / 2, "{lifetime:?}");
        }
        assert_eq!(after(t0, Duration::MAX), t0 + FAR);
        let wait = backoff(&far, 40, None, false, 0.5);
        assert_eq!(
            wait,
            Duration::MAX,
            "no jitter (NaN) leaves the maximum as is"
        );
        assert_eq!(share(f64::NAN), 0.0);
        assert_eq!(share(f64::INFINITY), 1.0);
        assert_eq!(share(-1.0), 0.0);
    }

    #[test]
    fn random_unit_is_in_range_and_varies() {
        let xs: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(xs.windows(2).any(|w| w[0] != w[1]));
    }
}

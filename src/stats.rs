//! Counters readable from the layer.
//!
//! Only the slow paths count (fetches, waits, failures, 401s): the hot path touches no
//! shared counter, so it scales across cores.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of what a layer's token cache has done, from
/// [`VeracityAuthLayer::stats`](crate::VeracityAuthLayer::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthStats {
    /// Token fetches started (cold start, refresh ahead, retries, 401s).
    pub fetches: u64,
    /// Token fetches that failed.
    pub fetch_failures: u64,
    /// Requests that had to wait for a fetch (in steady state this stays put).
    pub waits: u64,
    /// Requests failed at once with the last fetch error while backing off.
    pub fast_failures: u64,
    /// Token refreshes caused by a 401.
    pub replay_refreshes: u64,
    /// Requests replayed after a 401.
    pub replays: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) fetches: AtomicU64,
    pub(crate) failures: AtomicU64,
    pub(crate) waits: AtomicU64,
    pub(crate) fast_failures: AtomicU64,
    pub(crate) replay_refreshes: AtomicU64,
    pub(crate) replays: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> AuthStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        AuthStats {
            fetches: get(&self.fetches),
            fetch_failures: get(&self.failures),
            waits: get(&self.waits),
            fast_failures: get(&self.fast_failures),
            replay_refreshes: get(&self.replay_refreshes),
            replays: get(&self.replays),
        }
    }
}

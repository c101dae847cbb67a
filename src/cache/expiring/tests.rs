//! The expiring cache holding a credential with nothing of HTTP in it.

use std::sync::atomic::{AtomicU32, Ordering};

use super::*;

/// A credential with nothing of HTTP in it: a number that lives a minute.
#[derive(Debug, Default)]
struct Numbers(AtomicU32);

impl CredentialSource for Numbers {
    type Credential = u32;

    const CREDENTIAL: &'static str = "numbers";

    fn name(&self) -> &'static str {
        "numbers"
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
    let config = CachePolicy {
        jitter: 0.0,
        ..CachePolicy::default()
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

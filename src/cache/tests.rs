//! The token cache's own tests: generation-aware invalidation (only the rejected token is
//! dropped, and 401-caused fetches are rate-limited), and refreshes lost with their runtime.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use super::*;
use crate::TokenSource;

struct Counting(Arc<AtomicU64>);

impl TokenSource for Counting {
    async fn fetch(&self) -> Result<Token, Error> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Token::new(format!("t{n}"), Some(Duration::from_secs(3600))))
    }
}

fn cache() -> (TokenCache, Arc<AtomicU64>) {
    let fetches = Arc::new(AtomicU64::new(0));
    let source = AnySource::new(Counting(Arc::clone(&fetches)));
    let cache = TokenCache::new(source, CachePolicy::default(), ApiKey::None);
    (cache, fetches)
}

async fn settle(decision: Option<BoxFuture<'static, Outcome<Bearer>>>) -> Option<Arc<CachedToken>> {
    Some(decision?.await.unwrap())
}

#[tokio::test(start_paused = true)]
async fn a_401_with_an_old_token_after_a_refresh_causes_no_fetch() {
    let (cache, fetches) = cache();
    let first = cache.acquire().await.unwrap();
    // Past the refresh-ahead point: the background refresh replaces the token.
    tokio::time::sleep(Duration::from_secs(3400)).await;
    let second = cache.acquire().await.unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert_ne!(first.generation, second.generation);

    let next = settle(cache.refresh_rejected(first.generation))
        .await
        .unwrap();
    assert_eq!(
        next.generation, second.generation,
        "the newer token is used as is"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2, "no fetch");
}

#[tokio::test(start_paused = true)]
async fn a_401_with_the_current_token_fetches_once_then_is_rate_limited() {
    let (cache, fetches) = cache();
    let first = cache.acquire().await.unwrap();
    let second = settle(cache.refresh_rejected(first.generation))
        .await
        .unwrap();
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
    assert!(second.generation > first.generation);

    // The API rejects the new token too: within the interval, no more fetches.
    assert!(
        settle(cache.refresh_rejected(second.generation))
            .await
            .is_none()
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    tokio::time::sleep(Duration::from_secs(31)).await;
    let third = settle(cache.refresh_rejected(second.generation))
        .await
        .unwrap();
    assert!(third.generation > second.generation);
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrent_401s_for_one_token_share_one_fetch() {
    let (cache, fetches) = cache();
    let first = cache.acquire().await.unwrap();
    let waits: Vec<_> = (0..50)
        .map(|_| cache.refresh_rejected(first.generation))
        .collect();
    for decision in waits {
        let token = settle(decision)
            .await
            .expect("joins the flight, not denied");
        assert!(token.generation > first.generation);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

/// Answers at once, except fetch number `stall`, which says it began and then never ends.
struct Stalling {
    fetches: Arc<AtomicU64>,
    stall: u64,
    began: Arc<tokio::sync::Notify>,
}

impl TokenSource for Stalling {
    async fn fetch(&self) -> Result<Token, Error> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.stall {
            self.began.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(Token::new(format!("t{n}"), Some(Duration::from_secs(3600))))
    }
}

/// The refresh runs on another runtime, past the token's refresh point, and that runtime
/// shuts down in the middle of it. The next request on a live runtime starts the refresh
/// again, and a new token arrives long before the old one's end of use: no request waits.
#[test]
fn a_refresh_lost_with_its_runtime_past_the_refresh_point_is_restarted_by_the_next_request() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap()
    };
    let (here, elsewhere) = (paused(), paused());
    let (fetches, began) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(tokio::sync::Notify::new()),
    );
    let source = Stalling {
        fetches: Arc::clone(&fetches),
        stall: 2,
        began: Arc::clone(&began),
    };
    // A flight on another runtime is timed out after `fetch_timeout`: here, after the
    // token's end of use.
    let config = CachePolicy {
        jitter: 0.0,
        fetch_timeout: Duration::from_secs(600),
        ..CachePolicy::default()
    };
    let cache = TokenCache::new(AnySource::new(source), config, ApiKey::None);

    // The first token is fetched elsewhere, which arms the refresh timer there. Past the
    // refresh point (3300 s of 3600), the refresh starts there and stalls.
    let first = elsewhere.block_on(async {
        let first = cache.acquire().await.unwrap();
        tokio::time::advance(Duration::from_secs(3301)).await;
        began.notified().await;
        first
    });
    let mut headers = HeaderMap::new();
    let sent_with = here.block_on(async {
        tokio::time::advance(Duration::from_secs(3302)).await;
        cache.authorize(&mut headers)
    });
    assert_eq!(
        sent_with,
        Some(first.generation),
        "the refresh runs elsewhere"
    );

    drop(elsewhere);
    let generations = here.block_on(async {
        let before = cache.authorize(&mut headers);
        // The token has 268 s of use left: the refresh has time to run here.
        tokio::time::sleep(Duration::from_secs(1)).await;
        (before, cache.authorize(&mut headers))
    });
    assert_eq!(
        generations,
        (Some(first.generation), Some(first.generation + 1)),
        "the next request restarted the refresh"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 3);
    assert_eq!(cache.stats().waits, 1, "only the cold start waited");
}

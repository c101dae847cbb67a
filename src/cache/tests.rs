//! Generation-aware invalidation: only the rejected token is dropped, and 401-caused
//! fetches are rate-limited.

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
    let cache = TokenCache::new(source, CacheConfig::default(), ApiKey::None);
    (cache, fetches)
}

async fn settle(decision: RefreshDecision) -> Option<Arc<CachedToken>> {
    match decision {
        RefreshDecision::Use(t) => Some(t),
        RefreshDecision::Wait(f) => Some(f.await.unwrap()),
        RefreshDecision::Denied => None,
    }
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

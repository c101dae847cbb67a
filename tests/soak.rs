//! Soak: one million requests over a simulated day (paused tokio time) with tokens that
//! live one second. No request carries an expired token, none fails, and the heap does
//! not grow with the request count (live bytes counted by a global allocator).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use veracity_auth::{Authenticator, Token, VeracityAuthLayer, token_fn};

struct LiveBytes;

static LIVE: AtomicI64 = AtomicI64::new(0);

// SAFETY: delegates to the system allocator; only keeps a running total of live bytes.
unsafe impl GlobalAlloc for LiveBytes {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: LiveBytes = LiveBytes;

const LIFETIME: Duration = Duration::from_secs(1);

/// Accepts `soak-<issued at, µs since start>` tokens that have not expired; counts the
/// expired ones. Stateless, so the API itself cannot grow the heap.
#[derive(Clone)]
struct Api {
    start: Instant,
    expired: Arc<AtomicU64>,
}

impl Service<Request<()>> for Api {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: Request<()>) -> Self::Future {
        let issued = req.headers().get(AUTHORIZATION).and_then(|v| {
            v.to_str()
                .ok()?
                .strip_prefix("Bearer soak-")?
                .parse::<u64>()
                .ok()
        });
        let mut response = Response::new(String::new());
        let valid = issued
            .is_some_and(|us| Instant::now() < self.start + Duration::from_micros(us) + LIFETIME);
        if !valid {
            self.expired.fetch_add(1, Ordering::Relaxed);
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok(response))
    }
}

#[tokio::test(start_paused = true)]
async fn a_million_requests_over_a_day_of_one_second_tokens() {
    let start = Instant::now();
    let fetches = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&fetches);
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(token_fn(move || {
            counted.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let issued = (Instant::now() - start).as_micros();
                Ok::<_, Infallible>(Token::new(format!("soak-{issued}"), Some(LIFETIME)))
            }
        }))
        .build()
        .unwrap(),
    );
    let expired = Arc::new(AtomicU64::new(0));
    let mut svc = layer.layer(Api {
        start,
        expired: Arc::clone(&expired),
    });

    const REQUESTS: u32 = 1_000_000;
    let step = Duration::from_secs(86_400) / REQUESTS; // 86.4 ms
    let mut live_at_100k = 0;
    for i in 0..REQUESTS {
        if i == 100_000 {
            live_at_100k = LIVE.load(Ordering::Relaxed);
        }
        let response = svc
            .ready()
            .await
            .unwrap()
            .call(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "request {i}");
        tokio::time::sleep_until(start + step * (i + 1)).await;
    }
    let growth = LIVE.load(Ordering::Relaxed) - live_at_100k;

    assert_eq!(
        expired.load(Ordering::Relaxed),
        0,
        "no expired token was sent"
    );
    let fetches = fetches.load(Ordering::Relaxed);
    // A 1 s token is refreshed 0.75 to 0.8 s into its life (plus the 5 ms fetch):
    // 86 400 s / 0.805 s to 86 400 s / 0.75 s.
    assert!((107_000..=115_300).contains(&fetches), "{fetches} fetches");
    assert_eq!(layer.stats().fetch_failures, 0);
    assert!(
        growth.abs() < 16 * 1024,
        "the heap grew by {growth} bytes over 900,000 requests"
    );
}

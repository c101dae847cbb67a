//! Allocations per request on the hot path (a cached token), counted exactly by a global
//! allocator, against the floor: tower-http's `SetRequestHeader` adding the same two headers.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    future::Future,
    pin::pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Request, header::AUTHORIZATION};
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;
use veracity_auth::{Authenticator, AuthenticatorBuilder, Token, VeracityAuthLayer, token_fn};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates to the system allocator; only counts, per thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[path = "common/noop.rs"]
mod noop;
use noop::Noop;

const TOKEN: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJ2ZXJhY2l0eSJ9.c2lnbmF0dXJl";
const KEY: &str = "0123456789abcdef0123456789abcdef";

/// Allocations made by building one request, calling `svc` with it and completing the
/// future, averaged over many requests after a warm-up.
fn allocations_per_request<S>(svc: &mut S) -> f64
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut one = || {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(svc.poll_ready(&mut cx).is_ready());
        let request =
            Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/ws")
                .body(())
                .unwrap();
        let mut future = pin!(svc.call(request));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(response) => drop(response.unwrap()),
            Poll::Pending => panic!("the hot path must not wait"),
        }
    };
    for _ in 0..100 {
        one();
    }
    let n = 1000;
    let before = ALLOCATIONS.with(Cell::get);
    for _ in 0..n {
        one();
    }
    (ALLOCATIONS.with(Cell::get) - before) as f64 / n as f64
}

fn baseline() -> f64 {
    let bearer = HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer))
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("ocp-apim-subscription-key"),
            HeaderValue::from_str(KEY).unwrap(),
        ))
        .service(Noop);
    allocations_per_request(&mut svc)
}

async fn warm(layer: VeracityAuthLayer) -> VeracityAuthLayer {
    let first = layer
        .clone()
        .layer(Noop)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    drop(first);
    layer
}

fn layer() -> VeracityAuthLayer {
    VeracityAuthLayer::new(authenticator().build().unwrap())
}

fn authenticator() -> AuthenticatorBuilder {
    Authenticator::builder(token_fn(|| async {
        Ok::<_, Infallible>(Token::new(TOKEN, Some(Duration::from_secs(3600))))
    }))
    .api_key(KEY)
}

#[tokio::test]
async fn the_hot_path_allocates_exactly_what_a_static_header_does_when_replay_is_off() {
    let layer = warm(layer()).await.without_replay();
    let floor = baseline();
    let ours = allocations_per_request(&mut layer.layer(Noop));
    assert!(floor > 0.0, "the baseline allocates the header map");
    assert_eq!(ours, floor, "baseline {floor}, layer {ours}");
}

/// With 401 replay on (the default), a request that may need a replay keeps its head: the
/// replay state lives inline in the future and the head's header map is a per-thread pooled
/// one refilled, so once warm that costs no allocation at all.
#[tokio::test]
async fn replay_keeps_the_request_head_without_allocating() {
    let layer = warm(layer()).await;
    let floor = baseline();
    let ours = allocations_per_request(&mut layer.layer(Noop));
    assert!(floor > 0.0, "the baseline allocates the header map");
    assert_eq!(ours, floor, "baseline {floor}, layer {ours}");
}

/// The `NoReplay` type (`without_replay()`, any body type) keeps nothing per request either.
#[tokio::test]
async fn without_replay_allocates_exactly_what_a_static_header_does() {
    let layer = warm(layer()).await.without_replay();
    let floor = baseline();
    let ours = allocations_per_request(&mut layer.layer(Noop));
    assert!(floor > 0.0, "the baseline allocates the header map");
    assert_eq!(ours, floor, "baseline {floor}, layer {ours}");
}

/// With origins set, the hot path compares the request's origin with them, without
/// allocating.
#[tokio::test]
async fn origins_are_compared_without_allocating() {
    let authenticator = authenticator()
        .origins(["https://login.example", "https://api.veracity.com"])
        .build()
        .unwrap();
    let layer = warm(VeracityAuthLayer::new(authenticator)).await;
    let floor = baseline();
    let ours = allocations_per_request(&mut layer.layer(Noop));
    assert!(floor > 0.0, "the baseline allocates the header map");
    assert_eq!(ours, floor, "baseline {floor}, layer {ours}");
}

//! `overhead`: the per-request cost of the layer on its hot path (a cached token), side by
//! side with two floors: tower-http's `SetRequestHeader` inserting the same two headers
//! (a 1.3 KB bearer value and an API key). The inner service is a ready no-op answering an
//! empty response; each measurement builds the request, calls the stack and polls the
//! future to completion.
//!
//! 1. `floor_set_request_header_static`: `SetRequestHeaderLayer::overriding` twice with
//!    `HeaderValue::from_static` values: cloning a value per request is a copy of a pointer
//!    and a length. The true floor for inserting two headers.
//! 2. `floor_set_request_header_shared`: the same with values built at run time from a
//!    `String` (as any fetched token is): each clone bumps the buffer's atomic reference
//!    count.
//! 3. `veracity_auth_cached`: `VeracityAuthLayer` with a cached token (401 replay on, the
//!    default).
//! 4. `veracity_auth_cached_replay_off`: the same built `.without_replay()` (a
//!    `VeracityAuth<_, NoReplay>`): no copy of the request head is kept for a 401 replay,
//!    and the inner response is handed on as it is.
//! 5. `veracity_auth_cached_origins`: row 3 with two origins set, the request's the second:
//!    the cost of comparing a request's origin.
//! 6. `veracity_auth_refresh_in_flight`: cached (replay on), while a background refresh is
//!    running (waits 30 s of real time for the refresh point once).
//! 7. `paired/{replay_on,replay_off}_over_floor`: rows 3 and 4 against row 1 within each
//!    sample (chunks of 64 requests through each, alternating), reported as a time where
//!    1 µs per request stands for 1.00×: the ratio, with load from other processes hitting
//!    both sides alike. Read these on a shared machine.
//! 8. `scaling/{floor_static,floor_shared,floor_unshared,replay_on,replay_off}/{threads}`:
//!    one thread, then both cores, calling one shared stack (`floor_unshared`: one stack per
//!    thread, nothing shared); the time is per request per thread, so equal times mean
//!    perfect scaling.
//!
//! 9. `layers/{1,4,5,8,64}`: that many layers (each with its own authenticator and token),
//!    called in turn on one thread, as a gateway with one layer per workspace does: the
//!    time per request, the same for every count when nothing is kept per thread.
//!
//! Ratios are read off one run: divide each row's median by either floor's median.
//! The bench prints nothing but criterion's output.
//!
//! Run: `cargo bench --bench overhead` (about 3 minutes; `-- 'overhead/|paired/'` skips
//! the scaling rows, the 30 s wait for the refresh row stays).
//!
//! Instructions per request, steadier than time on a shared machine: build with
//! `cargo bench --bench overhead --no-run`, then per row
//! `valgrind --tool=callgrind --callgrind-out-file=cg.out target/release/deps/overhead-HASH
//! --bench --profile-time 1 'overhead/veracity_auth_cached$'` and
//! `callgrind_annotate --inclusive=yes --tree=caller cg.out`: `overhead::call_once`
//! (never inlined) has the inclusive cost, its caller line the number of calls. The dev
//! build's tokio `test-util` does not add to the clock read: tokio's `Instant::now` reads
//! the mocked clock only once some runtime has paused time, which this bench never does.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    thread,
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response, header::AUTHORIZATION};
use std::hint::black_box;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;
use veracity_auth::{Authenticator, CachePolicy, Token, VeracityAuthLayer, token_fn};

/// A token the size of a real Veracity JWT (about 1.3 KB).
fn jwt() -> String {
    let mut t = String::from("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.");
    while t.len() < 1300 {
        t.push_str("eyJhdWQiOiJodHRwczovL2Rudmdsb");
    }
    t
}

const API_KEY: &str = "0123456789abcdef0123456789abcdef";

#[path = "../tests/common/noop.rs"]
mod noop;
use noop::Noop;

/// Calls a ready service and drives its future with a no-op waker: the futures here
/// complete on their first poll. Never inlined, so a profile (callgrind) shows each stack's
/// instructions per request as this function's inclusive cost over its calls.
#[inline(never)]
fn call_once<S>(svc: &mut S) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    assert!(svc.poll_ready(&mut cx).is_ready());
    let request = Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/ws")
        .body(())
        .unwrap();
    let mut future = pin!(svc.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(response) => response.unwrap(),
        Poll::Pending => panic!("the hot path must not wait"),
    }
}

/// The true floor: both header values are `'static`, so a clone per request costs nothing
/// but a copy.
fn floor_static()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    let bearer: &'static str = Box::leak(format!("Bearer {}", jwt()).into_boxed_str());
    two_headers(
        HeaderValue::from_static(bearer),
        HeaderValue::from_static(API_KEY),
    )
}

/// The floor with values built at run time, as a fetched token is: shared buffers whose
/// reference count every clone bumps.
fn floor_shared()
-> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    two_headers(
        HeaderValue::try_from(format!("Bearer {}", jwt())).unwrap(),
        HeaderValue::from_str(API_KEY).unwrap(),
    )
}

fn two_headers(
    bearer: HeaderValue,
    key: HeaderValue,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer))
        .layer(SetRequestHeaderLayer::overriding(
            HeaderName::from_static("ocp-apim-subscription-key"),
            key,
        ))
        .service(Noop)
}

/// A layer whose first fetch returns an hour-long token and whose later fetches never
/// finish, so once a refresh starts it stays in flight.
fn layer(rt: &tokio::runtime::Runtime) -> VeracityAuthLayer {
    layer_for(rt, &[])
}

/// [`layer`] with `origins` set (none: the default, Veracity's origin).
fn layer_for(rt: &tokio::runtime::Runtime, origins: &[&str]) -> VeracityAuthLayer {
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut builder = Authenticator::builder(token_fn(move || {
        let first = first.swap(false, std::sync::atomic::Ordering::SeqCst);
        async move {
            if !first {
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(Token::new(jwt(), Some(Duration::from_secs(3600))))
        }
    }))
    .api_key(API_KEY);
    if !origins.is_empty() {
        builder = builder.origins(origins);
    }
    let layer = VeracityAuthLayer::new(builder.build().unwrap());
    let warm = layer.layer(Noop);
    rt.block_on(warm.oneshot(Request::new(()))).unwrap();
    layer
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _enter = rt.enter();

    let mut group = c.benchmark_group("overhead");
    let mut floor = floor_static();
    group.bench_function("floor_set_request_header_static", |b| {
        b.iter(|| black_box(call_once(&mut floor)))
    });
    let mut floor = floor_shared();
    group.bench_function("floor_set_request_header_shared", |b| {
        b.iter(|| black_box(call_once(&mut floor)))
    });
    let mut cached = layer(&rt).layer(Noop);
    group.bench_function("veracity_auth_cached", |b| {
        b.iter(|| black_box(call_once(&mut cached)))
    });
    let mut no_replay = layer(&rt).without_replay().layer(Noop);
    group.bench_function("veracity_auth_cached_replay_off", |b| {
        b.iter(|| black_box(call_once(&mut no_replay)))
    });
    let mut origins = layer_for(
        &rt,
        &["https://login.veracity.com", "https://api.veracity.com"],
    )
    .layer(Noop);
    group.bench_function("veracity_auth_cached_origins", |b| {
        b.iter(|| black_box(call_once(&mut origins)))
    });
    group.finish();

    // Paired: each sample alternates chunks of requests through the static floor and
    // through the stack, and reports the stack's time over the floor's: load from other
    // processes hits both alike. Reported as a time, 1 µs per request standing for 1.00×.
    let mut group = c.benchmark_group("paired");
    let mut floor = floor_static();
    let mut on = layer(&rt).layer(Noop);
    group.bench_function("replay_on_over_floor", |b| {
        b.iter_custom(|iters| paired(&mut floor, &mut on, iters))
    });
    let mut off = layer(&rt).without_replay().layer(Noop);
    group.bench_function("replay_off_over_floor", |b| {
        b.iter_custom(|iters| paired(&mut floor, &mut off, iters))
    });
    group.finish();

    let mut group = c.benchmark_group("scaling");
    // One stack (one set of header values) shared by both threads, as a deployment has it.
    let static_floor = floor_static();
    let shared_floor = floor_shared();
    let on = layer(&rt);
    let off = layer(&rt).without_replay();
    for threads in [1usize, 2] {
        let id = |name| BenchmarkId::new(name, threads);
        group.bench_function(id("floor_static"), |b| {
            b.iter_custom(|iters| on_threads(&rt, threads, iters, || static_floor.clone()))
        });
        group.bench_function(id("floor_shared"), |b| {
            b.iter_custom(|iters| on_threads(&rt, threads, iters, || shared_floor.clone()))
        });
        // Nothing shared between the threads at all.
        group.bench_function(id("floor_unshared"), |b| {
            b.iter_custom(|iters| on_threads(&rt, threads, iters, floor_shared))
        });
        group.bench_function(id("replay_on"), |b| {
            b.iter_custom(|iters| on_threads(&rt, threads, iters, || on.layer(Noop)))
        });
        group.bench_function(id("replay_off"), |b| {
            b.iter_custom(|iters| on_threads(&rt, threads, iters, || off.layer(Noop)))
        });
    }
    group.finish();

    // Many layers on one thread, called in turn.
    let mut group = c.benchmark_group("layers");
    for count in [1usize, 4, 5, 8, 64] {
        let mut stacks: Vec<_> = (0..count).map(|_| layer(&rt).layer(Noop)).collect();
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                for i in 0..iters {
                    let stack = &mut stacks[i as usize % count];
                    black_box(call_once(stack));
                }
                start.elapsed()
            })
        });
    }
    group.finish();

    // A refresh in flight: a 40 s token, refreshed from 30 s on by a fetch that never ends;
    // usable until 36 s, so the measurement (1 s + 3 s) fits in the window.
    let mut group = c.benchmark_group("overhead");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let in_flight = refreshing_layer(&rt);
    let mut refreshing = in_flight.layer(Noop);
    group.bench_function("veracity_auth_refresh_in_flight", |b| {
        b.iter(|| black_box(call_once(&mut refreshing)))
    });
    assert_eq!(in_flight.stats().fetches, 2, "the refresh was in flight");
    assert_eq!(in_flight.stats().waits, 1, "and no request waited for it");
    group.finish();
}

/// Times `iters` requests through `floor` and as many through `stack`, alternating in chunks
/// of 64, and returns `stack`'s time over `floor`'s as 1 µs per request for 1.00× (a time
/// near the real one, so criterion plans its samples well).
fn paired<F, S>(floor: &mut F, stack: &mut S, iters: u64) -> Duration
where
    F: Service<Request<()>>,
    F::Error: std::fmt::Debug,
    S: Service<Request<()>>,
    S::Error: std::fmt::Debug,
{
    const CHUNK: u64 = 64;
    let (mut floor_time, mut stack_time) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..iters.div_ceil(CHUNK) {
        let start = Instant::now();
        for _ in 0..CHUNK {
            black_box(call_once(floor));
        }
        floor_time += start.elapsed();
        let start = Instant::now();
        for _ in 0..CHUNK {
            black_box(call_once(stack));
        }
        stack_time += start.elapsed();
    }
    let ratio = stack_time.as_secs_f64() / floor_time.as_secs_f64();
    Duration::from_secs_f64(ratio * iters as f64 * 1e-6)
}

/// `threads` threads each make `iters` requests through their own clone of one service;
/// returns the wall time.
fn on_threads<S, F>(rt: &tokio::runtime::Runtime, threads: usize, iters: u64, make: F) -> Duration
where
    F: Fn() -> S,
    S: Service<Request<()>> + Send,
    S::Error: std::fmt::Debug,
{
    let start = Instant::now();
    thread::scope(|s| {
        for _ in 0..threads {
            let mut svc = make();
            let handle = rt.handle().clone();
            s.spawn(move || {
                let _enter = handle.enter();
                for _ in 0..iters {
                    black_box(call_once(&mut svc));
                }
            });
        }
    });
    start.elapsed()
}

/// A layer holding a 40 s token whose background refresh started (at 30 s, jitter off) and
/// never completes. Waits out those 30 s of real time once.
fn refreshing_layer(rt: &tokio::runtime::Runtime) -> VeracityAuthLayer {
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(token_fn(move || {
            let first = first.swap(false, std::sync::atomic::Ordering::SeqCst);
            async move {
                if !first {
                    std::future::pending::<()>().await;
                }
                Ok::<_, Infallible>(Token::new(jwt(), Some(Duration::from_secs(40))))
            }
        }))
        .api_key(API_KEY)
        .cache_policy(CachePolicy::default().jitter(0.0))
        .build()
        .unwrap(),
    );
    rt.block_on(async {
        layer.layer(Noop).oneshot(Request::new(())).await.unwrap();
        while layer.stats().fetches < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    layer
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! `refresh_contention`: N concurrent requests on an expired (cold) cache, through
//! `VeracityAuthLayer` and through two baselines written here:
//!
//! - `mutex_across_fetch`: a mutex held across the fetch, as golang.org/x/oauth2's
//!   `ReuseTokenSource` does. One fetch, but every request queues on the lock.
//! - `double_checked_no_recheck`: a read lock to check, then a write lock to fetch, without a
//!   second check after acquiring the write lock (the gcp_auth pattern). Every request that
//!   saw the expired token fetches again.
//!
//! A fetch costs 20 µs of work on its thread (parsing, TLS) and then waits twice for the
//! executor (a stand-in for the network round trip, during which other requests run, as
//! they do against a real identity provider). Each benchmark prints its fetch count once
//! per N.
//!
//! Run: `cargo bench --bench refresh_contention`

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use tokio::{runtime::Runtime, sync::RwLock, task::JoinSet};
use tower::{Layer, ServiceExt, service_fn};
use veracity_auth::{Error, Token, TokenSource, VeracityAuthLayer};

const FETCH_WORK: Duration = Duration::from_micros(20);
const SIZES: [usize; 3] = [1, 100, 10_000];

async fn fetch_work() -> String {
    let start = Instant::now();
    while start.elapsed() < FETCH_WORK {
        std::hint::spin_loop();
    }
    tokio::task::yield_now().await;
    tokio::task::yield_now().await;
    "bench-token".to_owned()
}

#[derive(Clone, Default)]
struct Counted(Arc<AtomicU64>);

impl TokenSource for Counted {
    async fn fetch(&self) -> Result<Token, Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Token::new(
            fetch_work().await,
            Some(Duration::from_secs(3600)),
        ))
    }
}

/// golang.org/x/oauth2 `ReuseTokenSource`: one mutex, held while fetching.
#[derive(Default)]
struct MutexAcrossFetch {
    token: tokio::sync::Mutex<Option<HeaderValue>>,
    fetches: AtomicU64,
}

impl MutexAcrossFetch {
    async fn header(&self) -> HeaderValue {
        let mut token = self.token.lock().await;
        if token.is_none() {
            self.fetches.fetch_add(1, Ordering::Relaxed);
            let t = fetch_work().await;
            *token = Some(HeaderValue::try_from(format!("Bearer {t}")).unwrap());
        }
        token.clone().unwrap()
    }
}

/// gcp_auth style: check under a read lock, fetch under the write lock, no re-check.
#[derive(Default)]
struct DoubleCheckedNoRecheck {
    token: RwLock<Option<HeaderValue>>,
    fetches: AtomicU64,
}

impl DoubleCheckedNoRecheck {
    async fn header(&self) -> HeaderValue {
        if let Some(t) = self.token.read().await.clone() {
            return t;
        }
        let mut token = self.token.write().await;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let t = fetch_work().await;
        let value = HeaderValue::try_from(format!("Bearer {t}")).unwrap();
        *token = Some(value.clone());
        value
    }
}

fn request() -> Request<()> {
    Request::get("http://api.test/").body(()).unwrap()
}

fn noop()
-> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) })
}

async fn run_layer(n: usize) -> u64 {
    let source = Counted::default();
    // Replay off: the baselines keep nothing for a 401 replay either.
    let svc = VeracityAuthLayer::new(source.clone())
        .replay_unauthorized(false)
        .layer(noop());
    let mut set = JoinSet::new();
    for _ in 0..n {
        set.spawn(svc.clone().oneshot(request()));
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    source.0.load(Ordering::Relaxed)
}

/// What the two baselines have in common: a header from their cache, and a fetch count.
trait Baseline: Default + Send + Sync + 'static {
    fn header(&self) -> impl std::future::Future<Output = HeaderValue> + Send;
    fn fetches(&self) -> u64;
}

impl Baseline for MutexAcrossFetch {
    fn header(&self) -> impl std::future::Future<Output = HeaderValue> + Send {
        MutexAcrossFetch::header(self)
    }
    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl Baseline for DoubleCheckedNoRecheck {
    fn header(&self) -> impl std::future::Future<Output = HeaderValue> + Send {
        DoubleCheckedNoRecheck::header(self)
    }
    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

async fn run_baseline<C: Baseline>(n: usize) -> u64 {
    let cache = Arc::new(C::default());
    let mut set = JoinSet::new();
    for _ in 0..n {
        let cache = Arc::clone(&cache);
        set.spawn(async move {
            let mut req = request();
            req.headers_mut()
                .insert(AUTHORIZATION, cache.header().await);
            noop().oneshot(req).await
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap().unwrap();
    }
    cache.fetches()
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("refresh_contention");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(3));
    for n in SIZES {
        bench_one(&mut group, &rt, "veracity_auth", n, run_layer);
        bench_one(
            &mut group,
            &rt,
            "mutex_across_fetch",
            n,
            run_baseline::<MutexAcrossFetch>,
        );
        bench_one(
            &mut group,
            &rt,
            "double_checked_no_recheck",
            n,
            run_baseline::<DoubleCheckedNoRecheck>,
        );
    }
    group.finish();
}

fn bench_one<F, Fut>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &Runtime,
    name: &str,
    n: usize,
    run: F,
) where
    F: Fn(usize) -> Fut + Copy,
    Fut: std::future::Future<Output = u64>,
{
    let fetches = rt.block_on(run(n));
    println!("refresh_contention/{name}/{n}: {fetches} fetches");
    group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                rt.block_on(run(n));
            }
            start.elapsed()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

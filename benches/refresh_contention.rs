//! `refresh_contention`: what happens to requests when the token runs out under load, for
//! `VeracityAuthLayer` and for two token caches written here the way other clients write
//! them:
//!
//! - `mutex_across_fetch`: one mutex, held across the fetch, as golang.org/x/oauth2's
//!   `ReuseTokenSource` does. Every request takes the lock; when the token has expired, the
//!   request holding the lock fetches and every other request waits for it.
//! - `double_checked_no_recheck`: a read lock to check, then the write lock to fetch, with no
//!   second check once the write lock is held (the gcp_auth pattern). Requests wait behind
//!   the writer, and each one that saw the expired token fetches again.
//!
//! Both baselines are tower-free: a token getter, then one header insert and a call to the
//! same no-op service the layer wraps. Like the layer, they stop sending a token a tenth of
//! its lifetime before it expires. The layer runs with its default settings except
//! `without_replay()` (the baselines keep nothing for a 401 replay either).
//!
//! **Steady traffic across expiries** (a table printed by this harness, not criterion):
//! 64 tasks on a 2-worker multi-thread runtime, each sending one request every 25 ms on a
//! fixed schedule (the tasks' schedules spread over the period), for 8 s. Tokens live 1 s
//! and the provider takes 50 ms to answer, so about eight expiries fall in each run. For the
//! layer a 1 s token is refreshed ahead from 0.75–0.8 s (its refresh-ahead window is capped
//! at a quarter of the lifetime, jitter on) and never sent after 0.9 s (its safety margin,
//! capped at a tenth), so the refresh finishes while the old token is still sent. The
//! latency of a request is `std::time::Instant` around its call alone (the request is built
//! before); the first request, which fetches the first token, is not counted. The table
//! gives requests, token fetches, p50, p99, p99.9, max, and how many requests took over
//! 1 ms. Why paced: a task that sends back to back waits once per expiry, then sends
//! thousands of cached requests, so a stall of one request in thousands shows only in the
//! max; on a schedule, every request due during the fetch waits for it.
//!
//! **Cold start** (criterion): N concurrent requests on an empty cache, a fetch costing
//! 20 µs of work and two trips through the scheduler; the number of fetches per N is
//! printed once.
//!
//! Run: `cargo bench --bench refresh_contention` (about 45 s). A filter runs part of it:
//! `-- steady` for the table only, `-- cold_start` for the criterion rows only.

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion};
use http::{HeaderValue, Request, header::AUTHORIZATION};
use tokio::{
    runtime::Runtime,
    sync::{Mutex, RwLock},
    task::JoinSet,
    time::MissedTickBehavior,
};
use tower::{Layer, Service, ServiceExt};
use veracity_auth::{
    Authenticator, Token, VeracityAuth, VeracityAuthLayer, replay::NoReplay, token_fn,
};

/// Concurrent tasks sending requests in the steady-traffic run.
const TASKS: u32 = 64;
/// Each task sends one request per period.
const PERIOD: Duration = Duration::from_millis(25);
/// How long the steady-traffic run sends (per variant).
const RUN: Duration = Duration::from_secs(8);
/// The steady-traffic run in test mode (`cargo test --benches`): only checks that it runs.
const TEST_RUN: Duration = Duration::from_millis(500);
/// Request counts of the cold-start rows.
const SIZES: [usize; 3] = [1, 100, 10_000];

/// The identity provider of a run.
#[derive(Clone, Copy, Debug)]
enum Provider {
    /// Answers in 50 ms with a token that lives 1 s (the steady-traffic run).
    Slow,
    /// 20 µs of work on the calling thread (parsing, TLS) and two waits for the executor,
    /// a stand-in for the round trip; an hour-long token (the cold-start rows).
    Busy,
}

impl Provider {
    const SLOW_FETCH: Duration = Duration::from_millis(50);
    const SLOW_LIFETIME: Duration = Duration::from_secs(1);
    const BUSY_WORK: Duration = Duration::from_micros(20);

    fn lifetime(self) -> Duration {
        match self {
            Provider::Slow => Provider::SLOW_LIFETIME,
            Provider::Busy => Duration::from_secs(3600),
        }
    }

    /// Fetches a token; returns it with its lifetime.
    async fn fetch(self) -> Token {
        match self {
            Provider::Slow => tokio::time::sleep(Provider::SLOW_FETCH).await,
            Provider::Busy => {
                let start = Instant::now();
                while start.elapsed() < Provider::BUSY_WORK {
                    std::hint::spin_loop();
                }
                tokio::task::yield_now().await;
                tokio::task::yield_now().await;
            }
        }
        Token::new("bench-token", Some(self.lifetime()))
    }
}

#[path = "../tests/common/noop.rs"]
mod noop;
use noop::Noop;

fn request() -> Request<()> {
    Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/")
        .body(())
        .unwrap()
}

/// One way of sending an authorised request: the layer, or a baseline cache.
trait Client: Clone + Send + 'static {
    /// Sends `request` with a bearer token.
    fn send(&mut self, request: Request<()>) -> impl Future<Output = ()> + Send;
    /// Token fetches so far.
    fn fetches(&self) -> u64;
}

#[derive(Clone)]
struct Layered {
    service: VeracityAuth<Noop, NoReplay>,
    layer: VeracityAuthLayer<NoReplay>,
}

impl Layered {
    fn new(provider: Provider) -> Self {
        let layer = VeracityAuthLayer::new(
            Authenticator::builder(token_fn(move || async move {
                Ok::<_, Infallible>(provider.fetch().await)
            }))
            .build()
            .unwrap(),
        )
        .without_replay();
        Layered {
            service: layer.layer(Noop),
            layer,
        }
    }
}

impl Client for Layered {
    async fn send(&mut self, request: Request<()>) {
        let service = self.service.ready().await.unwrap();
        service.call(request).await.unwrap();
    }

    fn fetches(&self) -> u64 {
        self.layer.stats().fetches
    }
}

/// A token value and the moment it stops being sent.
type Cached = Option<(HeaderValue, Instant)>;

/// Fetches a token and counts the fetch; returns the header value and when it stops being
/// sent: a tenth of its lifetime before expiry, counted from the start of the fetch, as the
/// layer does.
async fn fetch_header(provider: Provider, fetches: &AtomicU64) -> (HeaderValue, Instant) {
    fetches.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    let token = provider.fetch().await;
    let lifetime = token.expires_in().unwrap();
    let value = HeaderValue::try_from(format!("Bearer {}", token.access_token())).unwrap();
    (value, started + lifetime - lifetime / 10)
}

fn usable(cached: &Cached) -> Option<HeaderValue> {
    cached
        .as_ref()
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(value, _)| value.clone())
}

/// golang.org/x/oauth2 `ReuseTokenSource`: one mutex, held while fetching.
struct MutexAcrossFetch {
    provider: Provider,
    token: Mutex<Cached>,
    fetches: AtomicU64,
}

impl MutexAcrossFetch {
    async fn header(&self) -> HeaderValue {
        let mut token = self.token.lock().await;
        if let Some(value) = usable(&token) {
            return value;
        }
        let (value, until) = fetch_header(self.provider, &self.fetches).await;
        *token = Some((value.clone(), until));
        value
    }
}

/// gcp_auth style: check under a read lock, fetch under the write lock, no re-check.
struct DoubleCheckedNoRecheck {
    provider: Provider,
    token: RwLock<Cached>,
    fetches: AtomicU64,
}

impl DoubleCheckedNoRecheck {
    async fn header(&self) -> HeaderValue {
        if let Some(value) = usable(&*self.token.read().await) {
            return value;
        }
        let mut token = self.token.write().await;
        let (value, until) = fetch_header(self.provider, &self.fetches).await;
        *token = Some((value.clone(), until));
        value
    }
}

/// What the two baselines have in common: a header from their cache, and a fetch count.
trait Baseline: Send + Sync + 'static {
    fn new(provider: Provider) -> Self;
    fn header(&self) -> impl Future<Output = HeaderValue> + Send;
    fn fetches(&self) -> u64;
}

impl Baseline for MutexAcrossFetch {
    fn new(provider: Provider) -> Self {
        MutexAcrossFetch {
            provider,
            token: Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }
    fn header(&self) -> impl Future<Output = HeaderValue> + Send {
        MutexAcrossFetch::header(self)
    }
    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

impl Baseline for DoubleCheckedNoRecheck {
    fn new(provider: Provider) -> Self {
        DoubleCheckedNoRecheck {
            provider,
            token: RwLock::new(None),
            fetches: AtomicU64::new(0),
        }
    }
    fn header(&self) -> impl Future<Output = HeaderValue> + Send {
        DoubleCheckedNoRecheck::header(self)
    }
    fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }
}

/// A baseline cache shared by every task, plus the same no-op service the layer wraps.
struct Unlayered<B>(Arc<B>);

impl<B> Clone for Unlayered<B> {
    fn clone(&self) -> Self {
        Unlayered(Arc::clone(&self.0))
    }
}

impl<B: Baseline> Unlayered<B> {
    fn new(provider: Provider) -> Self {
        Unlayered(Arc::new(B::new(provider)))
    }
}

impl<B: Baseline> Client for Unlayered<B> {
    async fn send(&mut self, mut request: Request<()>) {
        let value = self.0.header().await;
        request.headers_mut().insert(AUTHORIZATION, value);
        Noop.oneshot(request).await.unwrap();
    }

    fn fetches(&self) -> u64 {
        self.0.fetches()
    }
}

/// One row of the steady-traffic table.
struct Row {
    name: &'static str,
    fetches: u64,
    /// Per request, sorted.
    latencies: Vec<Duration>,
}

/// Sends the first request (which fetches the first token, not counted), then `TASKS`
/// tasks each send one request per `PERIOD` for `run`; returns every request's latency.
fn steady<C: Client>(rt: &Runtime, name: &'static str, client: C, run: Duration) -> Row {
    let mut latencies = rt.block_on(async {
        client.clone().send(request()).await;
        let start = tokio::time::Instant::now() + Duration::from_millis(10);
        let end = start + run;
        let mut tasks = JoinSet::new();
        for i in 0..TASKS {
            let mut client = client.clone();
            tasks.spawn(async move {
                let first = start + PERIOD * i / TASKS;
                let mut ticks = tokio::time::interval_at(first, PERIOD);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut latencies = Vec::new();
                while ticks.tick().await < end {
                    let request = request();
                    let sent = Instant::now();
                    client.send(request).await;
                    latencies.push(sent.elapsed());
                }
                latencies
            });
        }
        let mut all = Vec::new();
        while let Some(latencies) = tasks.join_next().await {
            all.extend(latencies.unwrap());
        }
        all
    });
    latencies.sort_unstable();
    Row {
        name,
        fetches: client.fetches(),
        latencies,
    }
}

fn print_table(rows: &[Row], run: Duration) {
    println!(
        "refresh_contention/steady: {TASKS} tasks on 2 workers, one request per task every \
         {PERIOD:?} for {run:?}; tokens live {:?}, a fetch takes {:?}",
        Provider::SLOW_LIFETIME,
        Provider::SLOW_FETCH,
    );
    println!(
        "{:<26} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
        "variant", "requests", "fetches", "p50", "p99", "p99.9", "max", ">1 ms"
    );
    for row in rows {
        let n = row.latencies.len();
        let at = |per_mille: usize| row.latencies[(n * per_mille / 1000).min(n - 1)];
        let slow = row
            .latencies
            .iter()
            .filter(|l| **l > Duration::from_millis(1))
            .count();
        println!(
            "{:<26} {:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>7}",
            row.name,
            n,
            row.fetches,
            show(at(500)),
            show(at(990)),
            show(at(999)),
            show(row.latencies[n - 1]),
            slow,
        );
    }
    println!();
}

fn show(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} µs", d.as_nanos() as f64 / 1e3)
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// N requests at once on an empty cache; returns the number of fetches.
async fn cold<C: Client>(client: C, n: usize) -> u64 {
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let mut client = client.clone();
        tasks.spawn(async move { client.send(request()).await });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    client.fetches()
}

fn cold_start(c: &mut Criterion, rt: &Runtime, wanted: &dyn Fn(&str) -> bool) {
    let mut group = c.benchmark_group("refresh_contention/cold_start");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_millis(1500));
    for n in SIZES {
        let mut row = |name: &str, run: &dyn Fn(usize) -> u64| {
            if !wanted(&format!("refresh_contention/cold_start/{name}/{n}")) {
                return;
            }
            println!(
                "refresh_contention/cold_start/{name}/{n}: {} fetches",
                run(n)
            );
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        run(n);
                    }
                    start.elapsed()
                })
            });
        };
        row("veracity_auth", &|n| {
            rt.block_on(cold(Layered::new(Provider::Busy), n))
        });
        row("mutex_across_fetch", &|n| {
            rt.block_on(cold(Unlayered::<MutexAcrossFetch>::new(Provider::Busy), n))
        });
        row("double_checked_no_recheck", &|n| {
            rt.block_on(cold(
                Unlayered::<DoubleCheckedNoRecheck>::new(Provider::Busy),
                n,
            ))
        });
    }
    group.finish();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test_mode = args.iter().any(|a| a == "--test");
    // Criterion's filter: the first argument that is not a flag, matched as a substring.
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let wanted = |name: &str| filter.is_none_or(|f| name.contains(f.as_str()));

    let rt = runtime();
    if wanted("refresh_contention/steady") {
        let run = if test_mode { TEST_RUN } else { RUN };
        let rows = [
            steady(&rt, "veracity_auth", Layered::new(Provider::Slow), run),
            steady(
                &rt,
                "mutex_across_fetch",
                Unlayered::<MutexAcrossFetch>::new(Provider::Slow),
                run,
            ),
            steady(
                &rt,
                "double_checked_no_recheck",
                Unlayered::<DoubleCheckedNoRecheck>::new(Provider::Slow),
                run,
            ),
        ];
        print_table(&rows, run);
    }

    let mut criterion = Criterion::default().configure_from_args();
    cold_start(&mut criterion, &rt, &wanted);
    criterion.final_summary();
}

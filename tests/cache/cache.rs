//! The token cache under load, over time, through faults and cancellation, with paused
//! tokio time and exact counts.

use crate::common;
use crate::common::account::layer_over;

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use common::{ScriptedSource, api, get, transient_error};
use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tokio::{task::JoinSet, time::Instant};
use tower::{Layer, Service, ServiceExt, service_fn};
use veracity_auth::{
    Authenticator, CachePolicy, Error, StaticToken, Token, TokenEndpoint, TokenSource,
    VeracityAuthLayer, token_fn,
};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn one_fetch_for_1_100_and_10_000_concurrent_callers_on_a_cold_cache() {
    for n in [1usize, 100, 10_000] {
        let source = ScriptedSource::new(50 * MS, HOUR);
        let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
        let (log, api) = api(source.clone(), Duration::ZERO);
        let svc = layer.layer(api);
        let mut calls = JoinSet::new();
        for _ in 0..n {
            calls.spawn(svc.clone().oneshot(get()));
        }
        while let Some(done) = calls.join_next().await {
            assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
        }
        assert_eq!(source.fetches(), 1, "n = {n}");
        assert_eq!(layer.stats().fetches, 1, "n = {n}");
        assert_eq!(layer.stats().waits, n as u64, "n = {n}");
        assert_eq!(log.requests.load(Ordering::SeqCst), n as u64);
    }
}

/// One-hour tokens, a request every second for a day, default settings.
///
/// A fetch starting at `s` schedules the next one at `s + 3600 - 300 + U[0, 60)` seconds
/// (a 300 s refresh-ahead window, 20 % of it jittered), so refreshes come every 3300 to
/// 3360 s: over 86 400 s that is 26 or 27 fetches, the first included.
#[tokio::test(start_paused = true)]
async fn a_day_of_hourly_tokens_refreshes_ahead_and_no_request_but_the_first_waits() {
    let source = ScriptedSource::new(50 * MS, HOUR);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (log, api) = api(source.clone(), Duration::from_secs(30));
    let mut svc = layer.layer(api);
    let start = Instant::now();
    for second in 0..86_400u64 {
        let response = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "at {second} s");
        tokio::time::sleep_until(start + SEC * (second as u32 + 1)).await;
    }
    let fetches = source.fetches();
    assert!((26..=27).contains(&fetches), "{fetches} fetches");
    assert_eq!(layer.stats().waits, 1, "only the first request waits");
    assert_eq!(log.within_margin.load(Ordering::SeqCst), 0);
    assert_eq!(log.expired.load(Ordering::SeqCst), 0);
}

/// Four-second tokens, a request every 100 ms for a minute: margin 0.4 s, refresh window
/// 1 s, so a refresh every 3.0 to 3.2 s (plus the 50 ms fetch): 19 to 21 fetches for 15
/// token lifetimes.
#[tokio::test(start_paused = true)]
async fn four_second_tokens_for_a_minute_never_send_an_expired_token() {
    let source = ScriptedSource::new(50 * MS, 4 * SEC);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (log, api) = api(source.clone(), Duration::ZERO);
    let mut svc = layer.layer(api);
    let start = Instant::now();
    for tick in 1..=600u32 {
        let response = svc.ready().await.unwrap().call(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "at tick {tick}");
        tokio::time::sleep_until(start + 100 * MS * tick).await;
    }
    assert_eq!(log.expired.load(Ordering::SeqCst), 0);
    assert_eq!(log.requests.load(Ordering::SeqCst), 600);
    // A 4-second token is sent for 3 s (its last second is never trusted) and refreshed at
    // 2.5 s, 50 ms of fetch included: a fetch every 2.55 s.
    let fetches = source.fetches();
    assert!((23..=25).contains(&fetches), "{fetches} fetches");
    assert_eq!(layer.stats().waits, 1);
}

/// Identity providers that issue JWTs round `exp` down to the whole second while
/// `expires_in` counts from their answer: a 4-second token may die 3.0 s after it was
/// issued. 32 tasks sending every 10 ms for a minute never send a token in its last second.
#[tokio::test(start_paused = true)]
async fn thirty_two_tasks_never_send_a_token_in_its_last_second() {
    let source = ScriptedSource::new(50 * MS, 4 * SEC);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (log, api) = api(source.clone(), SEC);
    let svc = layer.layer(api);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..32u32 {
        let svc = svc.clone();
        tasks.spawn(async move {
            let mut at = start + MS * task;
            while at < start + 60 * SEC {
                tokio::time::sleep_until(at).await;
                let response = svc.clone().oneshot(get()).await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                at += 10 * MS;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    assert!(log.requests.load(Ordering::SeqCst) >= 32 * 5_900);
    assert_eq!(
        log.within_margin.load(Ordering::SeqCst),
        0,
        "sent in their last second"
    );
    assert_eq!(log.expired.load(Ordering::SeqCst), 0);
}

/// Jitter off, an instant provider that is down from 3000 s to 3600 s, requests at every
/// half second past the second. The token (fetched at 0) is usable until 3570 s and due
/// for refresh at 3300 s. Attempts while down: 3300, 3301, 3303, 3307, 3315, 3331, 3363
/// (then the 60 s cap), 3423, 3483, 3543: ten. The next retry (3603) is past the token's
/// life, so requests from 3570.5 to 3602.5 (33 of them) fail at once with the last error;
/// the request at 3603.5 fetches again and succeeds.
#[tokio::test(start_paused = true)]
async fn provider_down_for_ten_minutes_while_a_valid_token_is_held() {
    let source = ScriptedSource::scripted(Duration::ZERO, HOUR, |t| {
        if (3000 * SEC..3600 * SEC).contains(&t) {
            Err(transient_error())
        } else {
            Ok(())
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source.clone())
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let (log, api) = api(source.clone(), Duration::from_secs(30));
    let svc = layer.layer(api);
    let start = Instant::now();
    svc.clone().oneshot(get()).await.unwrap();
    let mut failed_at = Vec::new();
    for second in 0..4000u32 {
        tokio::time::sleep_until(start + SEC * second + 500 * MS).await;
        match svc.clone().oneshot(get()).await {
            Ok(response) => assert_eq!(response.status(), StatusCode::OK),
            Err(e) => {
                let e = e.downcast::<Error>().expect("a typed error");
                assert!(matches!(*e, Error::TokenEndpointStatus { .. }), "{e}");
                failed_at.push(second);
            }
        }
    }
    assert_eq!(failed_at, (3570..3603).collect::<Vec<_>>());
    assert_eq!(source.fetches(), 12, "1 + 10 while down + 1 after");
    let stats = layer.stats();
    assert_eq!(stats.fetch_failures, 10);
    assert_eq!(stats.fast_failures, 33);
    assert_eq!(stats.waits, 2);
    assert_eq!(log.expired.load(Ordering::SeqCst), 0);
}

/// No token and a provider that always fails: 1,000 requests a second for a minute. With
/// jitter off, attempts run at 0, 1, 3, 7, 15 and 31 s (the next would be at 63 s): six,
/// and every request gets the typed error within the 10 ms a fetch takes.
#[tokio::test(start_paused = true)]
async fn failing_provider_under_load_sees_one_fetch_per_backoff_step() {
    let source = ScriptedSource::scripted(10 * MS, HOUR, |_| Err(transient_error()));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source.clone())
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let (log, api) = api(source.clone(), Duration::ZERO);
    let svc = layer.layer(api);
    let start = Instant::now();
    for ms in 0..60_000u32 {
        tokio::time::sleep_until(start + MS * ms).await;
        let sent = Instant::now();
        let err = svc.clone().oneshot(get()).await.unwrap_err();
        assert!(
            sent.elapsed() <= 10 * MS,
            "request at {ms} ms took {:?}",
            sent.elapsed()
        );
        let err = err.downcast::<Error>().expect("a typed error");
        assert!(matches!(*err, Error::TokenEndpointStatus { status, .. } if status == 503));
    }
    assert_eq!(source.fetches(), 6);
    assert_eq!(log.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_request_that_triggered_a_fetch_does_not_cancel_it() {
    let source = ScriptedSource::new(50 * MS, HOUR);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (_log, api) = api(source.clone(), Duration::ZERO);
    let svc = layer.layer(api);
    let gave_up = tokio::time::timeout(10 * MS, svc.clone().oneshot(get())).await;
    assert!(gave_up.is_err(), "the request was dropped while waiting");
    tokio::time::sleep(100 * MS).await;
    assert_eq!(source.fetches(), 1, "the fetch ran to its end");
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.fetches(), 1, "and its token is used");
    assert_eq!(layer.stats().waits, 1, "the second request did not wait");
}

#[tokio::test(start_paused = true)]
async fn dropping_every_waiter_does_not_cancel_or_restart_the_fetch() {
    let source = ScriptedSource::new(50 * MS, HOUR);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (_log, api) = api(source.clone(), Duration::ZERO);
    let svc = layer.layer(api);
    let mut waiters = JoinSet::new();
    for _ in 0..100 {
        waiters.spawn(svc.clone().oneshot(get()));
    }
    tokio::time::sleep(20 * MS).await;
    waiters.abort_all();
    while waiters.join_next().await.is_some() {}
    // A new request while the fetch is still running joins it instead of starting over.
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.fetches(), 1);
    tokio::time::sleep(SEC).await;
    svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(source.fetches(), 1);
}

/// A panicking source is one failed fetch: the waiter gets the panic's message (anything
/// that looks like a credential redacted), later requests fail fast during the backoff
/// instead of refetching, and the cache recovers after it. One request, one source call.
#[tokio::test(start_paused = true)]
async fn a_source_that_panics_is_a_failed_fetch_naming_the_panic_and_backed_off() {
    let source = ScriptedSource::scripted(MS, HOUR, |t| {
        if t < 10 * MS {
            panic!("source bug with s3cr3t-Client-Secret-42 in hand");
        }
        Ok(())
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source.clone())
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let (_log, api) = api(source.clone(), Duration::ZERO);
    let svc = layer.layer(api);
    let err = svc.clone().oneshot(get()).await.unwrap_err();
    let err = *err.downcast::<Error>().unwrap();
    let Error::FetchPanicked(message) = &err else {
        panic!("not FetchPanicked: {err:?}")
    };
    assert!(message.contains("source bug with"), "{message}");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains("s3cr3t-Client-Secret-42"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
    assert_eq!(source.fetches(), 1, "one request, one source call");
    assert_eq!(layer.stats().fetch_failures, 1);
    // Within the 1 s backoff: the same error at once, no refetch.
    tokio::time::sleep(20 * MS).await;
    let again = svc.clone().oneshot(get()).await.unwrap_err();
    assert!(matches!(
        *again.downcast::<Error>().unwrap(),
        Error::FetchPanicked(_)
    ));
    assert_eq!(source.fetches(), 1);
    assert_eq!(layer.stats().fast_failures, 1);
    tokio::time::sleep(SEC).await;
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(source.fetches(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_layer_stops_its_refresh_timer() {
    let source = ScriptedSource::new(MS, HOUR);
    let layer = VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap());
    let (_log, api) = api(source.clone(), Duration::ZERO);
    layer.layer(api).oneshot(get()).await.unwrap();
    drop(layer);
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(source.fetches(), 1, "no refresh after the layer is gone");
}

// ---- Edges: extreme durations, dying flights, several runtimes, no runtime ----

/// A source counting its calls and issuing tokens that live `lifetime`.
fn counting(lifetime: Option<Duration>) -> (Arc<AtomicU64>, impl TokenSource + Clone) {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, Error>(Token::new(format!("tok-{n}"), lifetime)) }
    });
    (calls, source)
}

/// An API answering `status` to everything.
fn answering(
    status: StatusCode,
) -> impl Service<Request<()>, Response = Response<String>, Error = Infallible, Future: Send>
+ Clone
+ Send {
    service_fn(move |_: Request<()>| {
        let mut response = Response::new(String::new());
        *response.status_mut() = status;
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

fn typed(err: tower::BoxError) -> Error {
    *err.downcast::<Error>().expect("the crate's typed error")
}

#[tokio::test(start_paused = true)]
async fn a_source_reporting_a_lifetime_of_duration_max_or_u64_max_seconds_is_cached() {
    for lifetime in [Duration::MAX, Duration::from_secs(u64::MAX)] {
        let (calls, source) = counting(Some(lifetime));
        let layer = VeracityAuthLayer::new(Authenticator::builder(source).build().unwrap());
        let svc = layer.layer(answering(StatusCode::OK));
        for _ in 0..5 {
            let response = svc.clone().oneshot(get()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{lifetime:?}");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{lifetime:?}");
        assert_eq!(layer.stats().fetch_failures, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn a_static_token_with_default_lifetime_duration_max_is_served() {
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(StaticToken::new("never-expires"))
            .cache_policy(CachePolicy::default().default_lifetime(Duration::MAX))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    for _ in 0..5 {
        assert_eq!(
            svc.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::OK
        );
    }
    tokio::time::sleep(1000 * HOUR).await;
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(layer.stats().fetches, 1);
}

#[tokio::test(start_paused = true)]
async fn reauth_interval_duration_max_denies_the_second_401_instead_of_panicking() {
    let (calls, source) = counting(Some(HOUR));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().rejection_interval(Duration::MAX))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::UNAUTHORIZED));
    // The first 401 refreshes and replays once; the second is within the interval.
    for _ in 0..2 {
        let response = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.stats().replay_refreshes, 1);
}

/// NaN jitter is no jitter: an hour token refreshes exactly 300 s ahead.
#[tokio::test(start_paused = true)]
async fn jitter_nan_means_no_jitter() {
    let (calls, source) = counting(Some(HOUR));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(f64::NAN))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let start = Instant::now();
    assert_eq!(
        svc.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    tokio::time::sleep_until(start + 3300 * SEC - MS).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::sleep_until(start + 3300 * SEC + MS).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.stats().fetch_failures, 0);
}

/// A negative jitter, a zero fetch timeout and a zero default lifetime are configuration
/// mistakes: `build()` refuses them with a typed error naming the setting, and the source is
/// never called.
#[tokio::test(start_paused = true)]
async fn unusable_settings_are_refused_at_build_with_a_config_error_naming_them() {
    type Edit = fn(CachePolicy) -> CachePolicy;
    let cases: [(Edit, &str); 4] = [
        (|p| p.jitter(-0.5), "jitter"),
        (|p| p.jitter(f64::NEG_INFINITY), "jitter"),
        (|p| p.fetch_timeout(Duration::ZERO), "fetch_timeout"),
        (|p| p.default_lifetime(Duration::ZERO), "default_lifetime"),
    ];
    for (edit, name) in cases {
        let (calls, source) = counting(None);
        let err = Authenticator::builder(source)
            .cache_policy(edit(CachePolicy::default()))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, veracity_auth::ConfigError::CachePolicy(_)),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains(name), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 0, "{name}");
    }
}

/// `Duration::MAX` and zero in every other duration setting: no panic, and the cache
/// behaves as the setting says (a maximal backoff fails fast with the last error).
#[tokio::test(start_paused = true)]
async fn extreme_durations_in_every_setting_never_panic() {
    type Edit = fn(CachePolicy) -> CachePolicy;
    let edits: [Edit; 8] = [
        |p| p.backoff(Duration::ZERO, Duration::ZERO),
        |p| p.backoff(Duration::MAX, Duration::MAX),
        |p| p.refresh_ahead(Duration::MAX),
        |p| p.refresh_ahead(Duration::ZERO),
        |p| p.safety_margin(Duration::MAX),
        |p| p.safety_margin(Duration::ZERO),
        |p| p.fetch_timeout(Duration::MAX),
        |p| {
            p.default_lifetime(Duration::MAX)
                .rejection_interval(Duration::ZERO)
        },
    ];
    for (i, edit) in edits.into_iter().enumerate() {
        // Fails once, then issues hour tokens.
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let source = token_fn(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    return Err(transient_error());
                }
                Ok(Token::new(format!("tok-{n}"), Some(HOUR)))
            }
        });
        let layer = VeracityAuthLayer::new(
            Authenticator::builder(source)
                .cache_policy(edit(CachePolicy::default()))
                .build()
                .unwrap(),
        );
        let svc = layer.layer(answering(StatusCode::OK));
        assert!(svc.clone().oneshot(get()).await.is_err(), "case {i}");
        tokio::time::sleep(2 * SEC).await;
        let second = svc.clone().oneshot(get()).await;
        if i == 1 {
            // A backoff of `Duration::MAX`: the last error, at once, for ever.
            assert!(matches!(
                typed(second.unwrap_err()),
                Error::TokenEndpointStatus { .. }
            ));
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            continue;
        }
        assert_eq!(second.unwrap().status(), StatusCode::OK, "case {i}");
        for _ in 0..3 {
            tokio::time::sleep(HOUR).await;
            let response = svc.clone().oneshot(get()).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "case {i}");
        }
    }
}

/// A runtime that shuts down under a running fetch: that is not a failure of the source.
/// Nothing is backed off, no request fails fast, and the next request, on a live runtime,
/// starts the fetch again at once and gets its token.
#[test]
fn a_fetch_whose_runtime_shuts_down_is_not_a_failure_and_restarts_on_the_next_runtime() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 1 {
                std::future::pending::<()>().await;
            }
            Ok::<_, Error>(Token::new(format!("tok-{n}"), Some(HOUR)))
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let first = runtime(false);
    first.block_on(async {
        tokio::spawn(svc.clone().oneshot(get()));
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    });
    drop(first);
    let second = runtime(true);
    second.block_on(async {
        let response = svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "fetched again at once");
        let stats = layer.stats();
        assert_eq!((stats.fetch_failures, stats.fast_failures), (0, 0));
    });
}

/// The runtime running a fetch dies while other runtimes wait for it: they do not fail,
/// they start the fetch again on their own runtime.
#[test]
fn waiters_on_other_runtimes_restart_a_fetch_whose_runtime_died() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let (entered, fetch_entered) = std::sync::mpsc::channel::<()>();
    let entered = Arc::new(Mutex::new(entered));
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let entered = Arc::clone(&entered);
        async move {
            if n == 1 {
                entered.lock().unwrap().send(()).unwrap();
                std::future::pending::<()>().await;
            }
            Ok::<_, Error>(Token::new(format!("tok-{n}"), Some(HOUR)))
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let (kill, killed) = std::sync::mpsc::channel::<()>();
    let doomed = {
        let svc = svc.clone();
        std::thread::spawn(move || {
            let rt = runtime(false);
            rt.spawn(svc.oneshot(get()));
            rt.block_on(async {
                while killed.try_recv().is_err() {
                    tokio::task::yield_now().await
                }
            });
            drop(rt);
        })
    };
    fetch_entered.recv().unwrap();
    let waiter = runtime(false);
    waiter.block_on(async {
        let waiting = tokio::spawn(svc.clone().oneshot(get()));
        while layer.stats().waits < 2 {
            tokio::task::yield_now().await;
        }
        kill.send(()).unwrap();
        let response = waiting.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    });
    doomed.join().unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    let stats = layer.stats();
    assert_eq!((stats.fetch_failures, stats.fast_failures), (0, 0));
}

fn runtime(paused: bool) -> tokio::runtime::Runtime {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(paused);
    builder.build().unwrap()
}

/// A sync wrapper's `block_on` gives up on a current-thread runtime with a fetch in flight:
/// the runtime idles and nothing drives the fetch. A request on another runtime is not told
/// "timed out": within `fetch_timeout` plus the source's own time it gets a token from a
/// new fetch on its own runtime, and nothing is backed off.
#[test]
fn a_fetch_left_on_an_idle_runtime_is_restarted_on_the_callers_runtime() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let source = token_fn(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(100 * MS).await;
            Ok::<_, Error>(Token::new("tok", Some(HOUR)))
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0).fetch_timeout(5 * SEC))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let (started, flight_started) = std::sync::mpsc::channel();
    let (release, idle) = std::sync::mpsc::channel::<()>();
    let idle_thread = {
        let svc = svc.clone();
        let calls = Arc::clone(&calls);
        std::thread::spawn(move || {
            let rt = runtime(false);
            // The sync wrapper: it gives up as soon as the fetch is under way.
            let gave_up = rt.block_on(async {
                let call = svc.oneshot(get());
                tokio::pin!(call);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut call => return false,
                        _ = tokio::task::yield_now() => {}
                    }
                    if calls.load(Ordering::SeqCst) > 0 {
                        return true;
                    }
                }
            });
            assert!(gave_up);
            started.send(()).unwrap();
            // The runtime is alive but idle: nothing drives its fetch task.
            let _ = idle.recv();
            drop(rt);
        })
    };
    flight_started.recv().unwrap();
    runtime(true).block_on(async {
        let sent = Instant::now();
        let outer = tokio::time::timeout(HOUR, svc.clone().oneshot(get())).await;
        let response = outer.expect("bounded by fetch_timeout, not the outer timeout");
        assert_eq!(response.unwrap().status(), StatusCode::OK);
        assert!(
            sent.elapsed() <= 5 * SEC + 100 * MS,
            "fetch_timeout plus the source's time: {:?}",
            sent.elapsed()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one new fetch, here");
        let stats = layer.stats();
        assert_eq!((stats.fetch_failures, stats.fast_failures), (0, 0));
    });
    release.send(()).unwrap();
    idle_thread.join().unwrap();
    assert_eq!(
        layer.stats().fetch_failures,
        0,
        "the late flight changed nothing"
    );
}

/// The refresh timer dies with the runtime that armed it: the first request past the
/// refresh point on the remaining runtime starts the refresh, so no request waits at expiry.
#[test]
fn a_refresh_timer_that_died_with_its_runtime_is_rearmed_by_the_next_request() {
    let (calls, source) = counting(Some(HOUR));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let first = runtime(false);
    first.block_on(svc.clone().oneshot(get())).unwrap();
    drop(first);
    runtime(true).block_on(async {
        let start = Instant::now();
        // Refresh point: 3300 s after the fetch (at most a little earlier than `start`).
        tokio::time::sleep_until(start + 3301 * SEC).await;
        assert_eq!(
            svc.clone().oneshot(get()).await.unwrap().status(),
            StatusCode::OK
        );
        tokio::time::sleep(SEC).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed ahead of expiry");
        for _ in 0..600 {
            tokio::time::sleep(SEC).await;
            svc.clone().oneshot(get()).await.unwrap();
        }
        assert_eq!(layer.stats().waits, 1, "only the very first request waited");
    });
}

/// As above, but the thread already holds its own copy of the token's headers (it sent a
/// request with it): once that copy passes the refresh point, the request still reaches
/// the code that starts the refresh. Before, it answered "no token" from the copy, the
/// request took the slow path to the still-valid token, and nothing refreshed until expiry.
#[test]
fn a_thread_copy_past_the_refresh_point_still_rearms_a_dead_timer() {
    let (calls, source) = counting(Some(HOUR));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let first = runtime(false);
    // The first request fetches; the second makes this thread's copy.
    first.block_on(svc.clone().oneshot(get())).unwrap();
    first.block_on(svc.clone().oneshot(get())).unwrap();
    // `first` stays alive but idle: its timer neither fires nor dies.
    runtime(true).block_on(async {
        let start = Instant::now();
        tokio::time::sleep_until(start + 3301 * SEC).await;
        svc.clone().oneshot(get()).await.unwrap();
        tokio::time::sleep(SEC).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2, "refreshed ahead of expiry");
        tokio::time::sleep(300 * SEC).await;
        svc.clone().oneshot(get()).await.unwrap();
        assert_eq!(layer.stats().waits, 1, "only the very first request waited");
    });
    drop(first);
}

/// Sparse traffic: the runtime holding the refresh timer is dropped; one request follows on
/// another runtime before the refresh point, the next only after the token's safety margin.
/// The first of them armed the timer again on its own runtime, for the same refresh point,
/// so the token was refreshed ahead once, at 3300 s, and the second does not wait.
#[test]
fn a_dead_timer_is_rearmed_by_the_next_request_so_sparse_traffic_never_waits() {
    let (calls, source) = counting(Some(HOUR));
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(answering(StatusCode::OK));
    let first = runtime(false);
    first.block_on(svc.clone().oneshot(get())).unwrap();
    first.block_on(svc.clone().oneshot(get())).unwrap();
    drop(first);
    runtime(true).block_on(async {
        let start = Instant::now();
        tokio::time::sleep_until(start + 60 * SEC).await;
        svc.clone().oneshot(get()).await.unwrap();
        // Past the first token's end of use (3570 s).
        tokio::time::sleep_until(start + 3580 * SEC).await;
        svc.clone().oneshot(get()).await.unwrap();
        // The first token, and its one refresh at 3300 s by the timer armed again at 60 s.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(layer.stats().waits, 1, "only the very first request waited");
    });
}

/// A runtime without the time driver: a clear error naming the cause, not a panic in a
/// task surfacing as `FetchAborted`. A ready token needs no timer and is served.
#[test]
fn a_runtime_without_timers_gets_a_clear_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (calls, source) = counting(Some(HOUR));
    let svc = VeracityAuthLayer::new(Authenticator::builder(source).build().unwrap())
        .layer(answering(StatusCode::OK));
    let err = typed(rt.block_on(svc.clone().oneshot(get())).unwrap_err());
    assert!(matches!(err, Error::NoTimeDriver), "{err:?}");
    assert!(err.to_string().contains("enable_time"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let svc = VeracityAuthLayer::new(
        Authenticator::builder(StaticToken::new("static"))
            .build()
            .unwrap(),
    )
    .layer(answering(StatusCode::OK));
    let response = rt.block_on(svc.oneshot(get())).unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// The provider answered 429 with `Retry-After: 300` to the background refresh; a 401 ten
/// seconds later sends no token request and returns the 401; after the window, fetching
/// resumes.
#[tokio::test(start_paused = true)]
async fn a_401_within_a_retry_after_window_sends_no_token_request() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if n == 2 {
                return Err(Error::TokenEndpointStatus {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    retry_after: Some(300 * SEC),
                    content_type: None,
                });
            }
            Ok(Token::new(format!("tok-{n}"), Some(HOUR)))
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0).rejection_interval(SEC))
            .build()
            .unwrap(),
    );
    // The API revokes tok-1 from 3310 s on.
    let start = Instant::now();
    let api = service_fn(move |request: Request<()>| {
        let revoked = Instant::now() >= start + 3310 * SEC
            && request.headers()[AUTHORIZATION] == "Bearer tok-1";
        let mut response = Response::new(String::new());
        if revoked {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let svc = layer.layer(api);
    svc.clone().oneshot(get()).await.unwrap();
    tokio::time::sleep_until(start + 3301 * SEC).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the refresh got the 429");
    tokio::time::sleep_until(start + 3310 * SEC).await;
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "no token request in the window"
    );
    // The window ends at 3600 s: the next request fetches tok-3 and is served.
    tokio::time::sleep_until(start + 3601 * SEC).await;
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

/// A static token needs no I/O: served with no tokio runtime at all, polled by hand.
#[test]
fn a_static_token_serves_requests_outside_any_runtime() {
    assert!(tokio::runtime::Handle::try_current().is_err());
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(StaticToken::new("static-token"))
            .build()
            .unwrap(),
    );
    let mut svc = layer.layer(service_fn(|request: Request<()>| {
        let mut response = Response::new(String::new());
        if request.headers()[AUTHORIZATION] != "Bearer static-token" {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        std::future::ready(Ok::<_, Infallible>(response))
    }));
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..3 {
        assert!(svc.poll_ready(&mut cx).is_ready());
        let mut future = std::pin::pin!(svc.call(get()));
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(response)) => assert_eq!(response.status(), StatusCode::OK),
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => panic!("a static token must not wait"),
        }
    }
    assert_eq!(layer.stats().fetches, 1);
}

/// A token source over the mock's client-credentials endpoint that reports, as each fetch
/// starts, the runtime it runs on: the refresh timer is armed on that runtime too.
struct Watched {
    inner: veracity_auth::ClientCredentials,
    started: Mutex<std::sync::mpsc::Sender<tokio::runtime::Id>>,
}

impl TokenSource for Watched {
    async fn fetch(&self) -> Result<Token, Error> {
        let here = tokio::runtime::Handle::current().id();
        let _ = self.started.lock().unwrap().send(here);
        self.inner.fetch().await
    }
}

/// Four threads, each with a current-thread runtime, share one layer over the mock's token
/// endpoint and gateway, with 4-second tokens, 150 ms token answers and real time. Halfway,
/// the runtime that holds the refresh timer is dropped; later, the runtime running a refresh
/// is dropped in the middle of its fetch (each thread then carries on with a new runtime).
/// No request fails, no expired token reaches the gateway, and at most one request waits
/// per runtime death.
#[test]
fn four_runtimes_under_load_survive_the_deaths_of_the_timer_and_refresh_runtimes() {
    use std::{collections::HashMap, sync::atomic::AtomicBool, time::Instant as Wall};
    use tokio::{runtime::Id, sync::Notify};
    use veracity_auth::ClientCredentials;
    use veracity_auth_mock::{Fault, MockVeracity, Times};

    const THREADS: usize = 4;
    const TASKS: usize = 4;
    const RUN: Duration = Duration::from_secs(12);

    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = mock_rt
        .block_on(MockVeracity::builder().token_lifetime(4 * SEC).start())
        .unwrap();
    mock.fail_token_requests(Fault::Delay(150 * MS), Times::Always);
    let (fetch_started, fetches) = std::sync::mpsc::channel::<Id>();
    let source = Watched {
        inner: ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        started: Mutex::new(fetch_started),
    };
    let layer = layer_over(source, &mock);
    let mock = Arc::new(mock);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (born, births) = std::sync::mpsc::channel::<(usize, Id)>();
    let kills: Vec<Arc<Notify>> = (0..THREADS).map(|_| Arc::new(Notify::new())).collect();
    let workers: Vec<_> = (0..THREADS)
        .map(|i| {
            let (layer, mock, stop, ok, failed, born, kill) = (
                layer.clone(),
                Arc::clone(&mock),
                Arc::clone(&stop),
                Arc::clone(&ok),
                Arc::clone(&failed),
                born.clone(),
                Arc::clone(&kills[i]),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    born.send((i, rt.handle().id())).unwrap();
                    rt.block_on(async {
                        let svc = layer.layer(common::gateway::http_client());
                        let mut load = JoinSet::new();
                        for _ in 0..TASKS {
                            let (svc, mock, stop, ok, failed) = (
                                svc.clone(),
                                Arc::clone(&mock),
                                Arc::clone(&stop),
                                Arc::clone(&ok),
                                Arc::clone(&failed),
                            );
                            load.spawn(async move {
                                while !stop.load(Ordering::SeqCst) {
                                    let sent = svc
                                        .clone()
                                        .oneshot(common::gateway::workspace(&mock))
                                        .await;
                                    match sent {
                                        Ok(r) if r.status() == StatusCode::OK => &ok,
                                        _ => &failed,
                                    }
                                    .fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                        tokio::select! {
                            _ = kill.notified() => {}
                            _ = async { while load.join_next().await.is_some() {} } => {}
                        }
                    });
                    // Its tasks (a refresh timer, a fetch, requests) are dropped with it.
                    drop(rt);
                }
            })
        })
        .collect();
    drop(born);

    let start = Wall::now();
    let mut runtimes: HashMap<Id, usize> = HashMap::new();
    let mut last_fetch = None;
    let absorb = |runtimes: &mut HashMap<Id, usize>, last: &mut Option<Id>| {
        runtimes.extend(births.try_iter().map(|(i, id)| (id, i)));
        if let Some(id) = fetches.try_iter().last() {
            *last = Some(id);
        }
    };
    // Warm up: the cold start is the one moment requests may wait.
    while ok.load(Ordering::Relaxed) < 100 {
        std::thread::yield_now();
    }
    let waits_warm = layer.stats().waits;
    while start.elapsed() < RUN / 2 {
        std::thread::park_timeout(RUN / 2 - start.elapsed());
    }
    // The runtime of the last fetch armed the refresh timer.
    absorb(&mut runtimes, &mut last_fetch);
    let timer_runtime = last_fetch.expect("a token was fetched");
    kills[runtimes[&timer_runtime]].notify_one();
    // The next refresh: drop its runtime while its fetch waits for the token endpoint.
    let refreshing = fetches.recv().unwrap();
    absorb(&mut runtimes, &mut last_fetch);
    kills[runtimes[&refreshing]].notify_one();
    while start.elapsed() < RUN {
        std::thread::park_timeout(RUN - start.elapsed());
    }
    stop.store(true, Ordering::SeqCst);
    for kill in &kills {
        kill.notify_one();
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let stats = layer.stats();
    let gateway = mock.stats();
    let waits = stats.waits - waits_warm;
    println!(
        "requests ok {}, failed {}; expired tokens at the gateway {}, unknown {}; \
         token fetches {} (failed {}), waits after warm-up {waits}, runtimes dropped 2",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        gateway.rejected_expired_token,
        gateway.rejected_unknown_token,
        stats.fetches,
        stats.fetch_failures,
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert_eq!(gateway.rejected_expired_token, 0, "expired tokens sent");
    assert_eq!(gateway.rejected_unknown_token, 0);
    assert_eq!(stats.fetch_failures, 0, "a runtime's death is no failure");
    assert!(
        waits <= 2,
        "at most one waiting request per runtime death: {waits}"
    );
    assert!(
        stats.fetches >= 4,
        "tokens were refreshed: {}",
        stats.fetches
    );
}

//! The token cache under load, over time, through faults and cancellation, with paused
//! tokio time and exact counts.

mod common;

use std::{sync::atomic::Ordering, time::Duration};

use common::{ScriptedSource, api, get, transient_error};
use http::StatusCode;
use tokio::{task::JoinSet, time::Instant};
use tower::{Layer, Service, ServiceExt};
use veracity_auth::{Error, VeracityAuthLayer};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn one_fetch_for_1_100_and_10_000_concurrent_callers_on_a_cold_cache() {
    for n in [1usize, 100, 10_000] {
        let source = ScriptedSource::new(50 * MS, HOUR);
        let layer = VeracityAuthLayer::new(source.clone());
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
    let layer = VeracityAuthLayer::new(source.clone());
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
    let layer = VeracityAuthLayer::new(source.clone());
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
    let fetches = source.fetches();
    assert!((19..=21).contains(&fetches), "{fetches} fetches");
    assert_eq!(layer.stats().waits, 1);
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
    let layer = VeracityAuthLayer::new(source.clone()).jitter(0.0);
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
    let layer = VeracityAuthLayer::new(source.clone()).jitter(0.0);
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
    let layer = VeracityAuthLayer::new(source.clone());
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
    let layer = VeracityAuthLayer::new(source.clone());
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

#[tokio::test(start_paused = true)]
async fn a_source_that_panics_does_not_leave_the_cache_stuck() {
    let source = ScriptedSource::scripted(MS, HOUR, |t| {
        if t < 10 * MS {
            panic!("source bug");
        }
        Ok(())
    });
    let layer = VeracityAuthLayer::new(source.clone());
    let (_log, api) = api(source.clone(), Duration::ZERO);
    let svc = layer.layer(api);
    // The first flight dies with its task; the waiter starts one more, which also dies.
    let err = svc.clone().oneshot(get()).await.unwrap_err();
    assert!(matches!(
        *err.downcast::<Error>().unwrap(),
        Error::FetchAborted
    ));
    tokio::time::sleep(20 * MS).await;
    let response = svc.clone().oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_layer_stops_its_refresh_timer() {
    let source = ScriptedSource::new(MS, HOUR);
    let layer = VeracityAuthLayer::new(source.clone());
    let (_log, api) = api(source.clone(), Duration::ZERO);
    layer.layer(api).oneshot(get()).await.unwrap();
    drop(layer);
    tokio::time::sleep(2 * HOUR).await;
    assert_eq!(source.fetches(), 1, "no refresh after the layer is gone");
}

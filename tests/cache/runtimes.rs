//! Runtimes that idle or die under the cache: the three holes issue 24 names, as tests. Each
//! runs the layer on current-thread runtimes that a sync wrapper would make, against the
//! mock on a runtime of its own.

use crate::common;
use crate::common::account::for_mock;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::StatusCode;
use tokio::runtime::Runtime;
use tower::{Layer, ServiceExt};
use veracity_auth::{
    Authenticator, CachePolicy, ClientCredentials, Error, Token, TokenEndpoint, TokenSource,
    VeracityAuthLayer, token_fn,
};
use veracity_auth_mock::{Fault, MockVeracity, Times};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

fn current_thread(paused: bool) -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(paused)
        .build()
        .unwrap()
}

/// The mock, with `lifetime` tokens, served by a runtime (one worker) that no runtime under
/// test drives.
fn mock_with(lifetime: Duration) -> (Runtime, Arc<MockVeracity>) {
    let (server, mock) =
        common::gateway::mock_on_its_own_runtime(MockVeracity::builder().token_lifetime(lifetime));
    (server, Arc::new(mock))
}

/// Runtime A holds the refresh timer and starts the refresh ahead of expiry; then its
/// `block_on` returns while the token endpoint takes 100 ms to answer, and A idles, alive.
/// Runtime B sends a request every 20 ms for two lifetimes of 10-second tokens: past half of
/// what the token had left, B probes A, which does not run the probe, so B refreshes on its
/// own runtime: no request but the very first waits, and none fails. Before, B's requests waited at the
/// token's expiry for the refresh stranded on A, up to `fetch_timeout`, with 2-second and
/// 10-second tokens alike.
#[test]
fn a_refresh_left_on_an_idle_runtime_still_refreshes_ahead() {
    let lifetime = 10 * SEC;
    let (_server, mock) = mock_with(lifetime);
    mock.fail_token_requests(Fault::Delay(100 * MS), Times::Always);
    let (started, mut fetches) = tokio::sync::mpsc::unbounded_channel();
    let source = Signalled {
        inner: ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        started,
    };
    let layer = VeracityAuthLayer::new(
        for_mock(source, &mock)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let idle = current_thread(false);
    idle.block_on(async {
        let svc = layer.layer(common::gateway::http_client());
        let response = svc.oneshot(common::gateway::workspace(&mock)).await;
        assert_eq!(response.unwrap().status(), StatusCode::OK);
        // The first fetch, then the refresh the timer starts here at 7.5 s: return as soon
        // as it is under way.
        for _ in 0..2 {
            fetches.recv().await.unwrap();
        }
    });
    // The refresh is under way on `idle`, which lives on, never driven again.
    current_thread(false).block_on(async {
        let svc = layer.layer(common::gateway::http_client());
        let end = tokio::time::Instant::now() + 2 * lifetime;
        while tokio::time::Instant::now() < end {
            let response = svc
                .clone()
                .oneshot(common::gateway::workspace(&mock))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            tokio::time::sleep(20 * MS).await;
        }
    });
    let stats = layer.stats();
    assert_eq!(stats.fetch_failures, 0);
    assert_eq!(
        stats.waits, 1,
        "only the very first request waited: {stats:?}"
    );
    drop(idle);
}

/// The client-credentials source, telling each fetch as it starts.
struct Signalled {
    inner: ClientCredentials,
    started: tokio::sync::mpsc::UnboundedSender<()>,
}

impl TokenSource for Signalled {
    async fn fetch(&self) -> Result<Token, Error> {
        let _ = self.started.send(());
        self.inner.fetch().await
    }
}

/// Runtime A made the first fetch and armed the refresh timer, then was dropped. Runtime B
/// sends a request a minute for an hour of one-hour tokens: the one token is refreshed once,
/// ahead of its expiry, and nothing else. Before, A's death counted as "refresh now", and B's
/// next request fetched a token while the first was good for an hour.
#[test]
fn a_runtime_that_dies_costs_no_token_request() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok::<_, Error>(Token::new(format!("tok-{n}"), Some(3600 * SEC))) }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(CachePolicy::default().jitter(0.0))
            .build()
            .unwrap(),
    );
    let svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    let first = current_thread(false);
    first.block_on(svc.clone().oneshot(common::get())).unwrap();
    drop(first);
    current_thread(true).block_on(async {
        for _ in 0..60 {
            tokio::time::sleep(60 * SEC).await;
            svc.clone().oneshot(common::get()).await.unwrap();
        }
    });
    let stats = layer.stats();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the first token, and its one refresh ahead of expiry: {stats:?}"
    );
    assert_eq!(stats.waits, 1, "{stats:?}");
}

/// Runtime A (one worker, live) runs the refresh ahead of expiry, and the token endpoint
/// takes 1.5 s to answer it: past half of what the token had left (the probe point, 1 s
/// in, with a grace of 250 ms). Runtime B sends a
/// request every 20 ms meanwhile. A runs the probe B sends, so the slow refresh is left to
/// finish: one token for the first request and one refresh, nothing taken over. Before, B
/// took the refresh over at half of what was left, and fetched a third token.
#[test]
fn a_slow_refresh_on_a_live_runtime_is_left_to_finish() {
    let calls = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&calls);
    let (started, mut refreshes) = tokio::sync::mpsc::unbounded_channel();
    let source = token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let started = started.clone();
        async move {
            if n > 1 {
                let _ = started.send(tokio::runtime::Handle::current().id());
                tokio::time::sleep(1500 * MS).await;
            }
            Ok::<_, Error>(Token::new(format!("tok-{n}"), Some(8 * SEC)))
        }
    });
    // 8-second tokens, no margin: the refresh starts at 6 s, its probe point is 7 s.
    let policy = CachePolicy::default()
        .jitter(0.0)
        .safety_margin(Duration::ZERO)
        .refresh_ahead(2 * SEC);
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .cache_policy(policy)
            .build()
            .unwrap(),
    );
    let svc = layer.layer(tower::service_fn(|_: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    let live = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    live.block_on(svc.clone().oneshot(common::get())).unwrap();
    current_thread(false).block_on(async {
        let on = refreshes.recv().await.unwrap();
        assert_eq!(
            on,
            live.handle().id(),
            "the refresh runs on the live runtime"
        );
        let end = tokio::time::Instant::now() + 1800 * MS;
        while tokio::time::Instant::now() < end {
            svc.clone().oneshot(common::get()).await.unwrap();
            tokio::time::sleep(20 * MS).await;
        }
    });
    let stats = layer.stats();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the first token and its one refresh: {stats:?}"
    );
    assert_eq!(stats.waits, 1, "{stats:?}");
    drop(live);
}

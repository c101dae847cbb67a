//! A refresh token is never spent twice: an exchange outlives the cache's fetch timeout, its
//! late answer still rotates, and a fetch that starts meanwhile waits for it, on any runtime,
//! until the exchange's deadline: an exchange left on a runtime that no longer runs it is
//! taken over if its token never left, and never repeated if it may have.

use crate::common::account::for_mock;
use crate::common::gateway::recording_mock;
use std::{
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};
use veracity_auth::TokenEndpoint;

use tokio::{runtime::Runtime, time::Instant};

use http::StatusCode;
use tower::{Layer, ServiceExt};
use veracity_auth::{CachePolicy, Error, RefreshToken, TokenSource, VeracityAuthLayer};
use veracity_auth_mock::MockVeracity;

use super::browser::*;

fn refresh_tokens_sent(mock: &MockVeracity) -> Vec<String> {
    token_requests(mock, "refresh_token")
        .iter()
        .map(|form| field(form, "refresh_token").to_owned())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_refresh_answered_after_the_fetch_timeout_still_rotates_and_no_refresh_token_is_spent_twice()
 {
    let mock = recording_mock().await;
    let first = mock.issue_refresh_token();
    let rotated = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = Arc::clone(&rotated);
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .on_rotate(move |new| store.lock().unwrap().push(new.to_owned()));
    let layer = VeracityAuthLayer::new(
        for_mock(source, &mock)
            .cache_policy(
                CachePolicy::default()
                    .fetch_timeout(Duration::from_secs(10))
                    .rejection_interval(Duration::ZERO),
            )
            .build()
            .unwrap(),
    );
    let api = layer.layer(http_client());

    // The provider spends `first` at once but answers after 20 s: the fetch times out at 10 s.
    mock.delay_user_grant_answers(Duration::from_secs(20), 1);
    let err = api.clone().oneshot(workspace(&mock)).await.unwrap_err();
    let err = err.downcast::<Error>().expect("the crate's typed error");
    assert!(matches!(*err, Error::Timeout(_)), "{err}");
    assert_eq!(mock.stats().refresh_token_grants, 1);
    assert!(rotated.lock().unwrap().is_empty(), "not answered yet");

    // Past the backoff, the exchange still running: this request's fetch waits for it and
    // takes its answer instead of sending `first` again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let after_late_answer = rotated.lock().unwrap().clone();
    assert_eq!(after_late_answer.len(), 1, "the late answer rotated");
    assert_eq!(
        mock.stats().refresh_token_grants,
        1,
        "nothing sent meanwhile"
    );

    // The next refresh uses the rotated refresh token.
    mock.revoke_all_tokens();
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        refresh_tokens_sent(&mock),
        [first, after_late_answer[0].clone()]
    );
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 2);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    assert_eq!(rotated.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn fetches_through_clones_during_a_running_exchange_wait_for_it_and_spend_each_refresh_token_once()
 {
    let mock = recording_mock().await;
    let first = mock.issue_refresh_token();
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap());
    mock.delay_user_grant_answers(Duration::from_secs(20), 1);

    // A fetch given up after 10 s, as the cache does at its fetch timeout.
    let given_up = tokio::time::timeout(Duration::from_secs(10), source.fetch()).await;
    assert!(given_up.is_err());
    // Three more while the exchange runs, through clones: all wait, one takes the late
    // answer's access token, the others each refresh with the newest refresh token in turn.
    let (clone_a, clone_b) = (source.clone(), source.clone());
    let (a, b, c) = tokio::join!(clone_a.fetch(), clone_b.fetch(), source.fetch());
    for fetched in [a, b, c] {
        fetched.unwrap();
    }
    let sent = refresh_tokens_sent(&mock);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert_eq!(sent[0], first);
    assert!(
        !sent[1..].contains(&first) && sent[1] != sent[2],
        "each refresh token spent once: {sent:?}"
    );
    assert_eq!(mock.stats().rejected_refresh_tokens, 0);
}

#[tokio::test(start_paused = true)]
async fn an_exchange_that_never_answers_gives_up_after_the_exchange_timeout() {
    let mock = MockVeracity::start().await.unwrap();
    let rt = mock.issue_refresh_token();
    mock.fail_token_requests(
        veracity_auth_mock::Fault::Hang,
        veracity_auth_mock::Times::Once,
    );
    let source = RefreshToken::new(mock.client_id(), rt)
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .exchange_timeout(Duration::from_secs(60));
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(60)),
        "{err}"
    );
    // The token left and no answer came: the client cannot tell this from a provider that
    // spent it, so the next fetch does not send it again (the rule on every runtime).
    let err = source.fetch().await.unwrap_err();
    assert!(matches!(err, Error::RefreshStalled), "{err}");
}

/// The exchange timeout of the tests below: short, since runtime B waits out the deadline of
/// runtime A's exchange in real time.
const EXCHANGE: Duration = Duration::from_secs(2);

/// A current-thread runtime with timers and I/O, as a sync wrapper builds one.
fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The mock, recording requests, served by a runtime of its own that neither runtime under
/// test drives.
fn mock_on_its_own_runtime() -> (Runtime, MockVeracity) {
    crate::common::gateway::mock_on_its_own_runtime(MockVeracity::builder().record_requests(true))
}

/// A loopback address that completes no connection: its listener's accept queue is full, so
/// a connection attempt stays in the TCP handshake and a request to it never gets as far as
/// its body. Must be created on a runtime (the listener is a tokio one, never polled).
struct Unconnectable {
    url: String,
    _listener: tokio::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl Unconnectable {
    fn new() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let listener = socket.listen(0).unwrap();
        let addr = listener.local_addr().unwrap();
        // Fill the queue: once full, the kernel drops further handshakes.
        let mut queued = Vec::new();
        while let Ok(stream) =
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        {
            queued.push(stream);
            assert!(queued.len() < 64, "the accept queue never fills");
        }
        Unconnectable {
            url: format!("http://{addr}/token"),
            _listener: listener,
            _queued: queued,
        }
    }
}

/// Issue 17, item 4. Runtime A starts a refresh whose exchange cannot connect, then goes idle
/// (`block_on` returned): nothing runs the exchange again, and its lease stays taken. A fetch
/// on runtime B, sharing the refresh token, waits out that lease's deadline on its own clock,
/// takes the exchange over (its token never left) and gets a token; the stalled exchange,
/// run again later, can no longer send the token, and changes nothing.
#[test]
fn a_refresh_exchange_left_on_an_idle_runtime_blocks_no_other_runtime() {
    let (server, mock) = mock_on_its_own_runtime();
    let unconnectable = {
        let _on = server.enter();
        Unconnectable::new()
    };
    let first = mock.issue_refresh_token();
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .exchange_timeout(EXCHANGE);
    // A clone shares the refresh token; its exchanges go where no connection completes.
    let stalling = source
        .clone()
        .endpoint(TokenEndpoint::plain_http(unconnectable.url.clone()).unwrap());

    std::thread::scope(|scope| {
        // Made here, so that a failure below drops them and runtime A's thread ends.
        let (stalled, stalled_rx) = mpsc::channel();
        let (resume, resume_rx) = mpsc::channel::<()>();
        let runtime_a = scope.spawn(move || {
            let rt_a = current_thread();
            let started = Instant::now();
            let mut fetch = rt_a.spawn(async move { stalling.fetch().await });
            let early = rt_a.block_on(async {
                tokio::time::timeout(Duration::from_millis(100), &mut fetch).await
            });
            assert!(early.is_err(), "the exchange cannot have connected");
            stalled.send(started).unwrap();
            // Runtime A lives on, idle.
            resume_rx.recv().unwrap();
            // Run again, long after its deadline: the exchange ends without sending.
            rt_a.block_on(fetch).unwrap()
        });
        let a_started = stalled_rx.recv().unwrap();

        let rt_b = current_thread();
        let fetched =
            rt_b.block_on(async { tokio::time::timeout(EXCHANGE * 3, source.fetch()).await });
        let token = fetched
            .expect("runtime A's idle exchange blocks runtime B")
            .unwrap();
        assert!(!token.access_token().is_empty());
        assert!(
            a_started.elapsed() >= EXCHANGE,
            "runtime B waited for runtime A's exchange until its deadline"
        );
        assert_eq!(refresh_tokens_sent(&mock), std::slice::from_ref(&first));

        resume.send(()).unwrap();
        let err = runtime_a.join().unwrap().unwrap_err();
        assert!(matches!(err, Error::Timeout(d) if d == EXCHANGE), "{err}");

        // The next refresh presents the rotation runtime B's exchange got.
        rt_b.block_on(source.fetch()).unwrap();
    });
    let sent = refresh_tokens_sent(&mock);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], first);
    assert_ne!(sent[1], first);
    let stats = mock.stats();
    assert_eq!(stats.reused_refresh_tokens, 0);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    drop(unconnectable);
}

/// Issue 17, item 4. Runtime A's exchange sent the refresh token (the provider spent it and
/// answers an hour later), then runtime A went idle. Runtime B must not send the token again:
/// past the exchange's deadline its fetch fails with `Error::RefreshStalled`, at once from
/// then on, never hanging.
#[test]
fn an_exchange_that_sent_its_refresh_token_and_stalled_is_never_repeated() {
    let (_server, mock) = mock_on_its_own_runtime();
    let first = mock.issue_refresh_token();
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .exchange_timeout(EXCHANGE);
    mock.delay_user_grant_answers(Duration::from_secs(3600), 1);

    std::thread::scope(|scope| {
        let (stalled, stalled_rx) = mpsc::channel();
        let (done, done_rx) = mpsc::channel::<()>();
        let mock = &mock;
        let on_a = source.clone();
        scope.spawn(move || {
            let rt_a = current_thread();
            let started = Instant::now();
            let mut fetch = rt_a.spawn(async move { on_a.fetch().await });
            // Runs until the provider has the request, then goes idle.
            rt_a.block_on(async {
                while mock.stats().refresh_token_grants == 0 {
                    if fetch.is_finished() {
                        panic!("the refresh ended unanswered: {:?}", (&mut fetch).await);
                    }
                    tokio::task::yield_now().await;
                }
            });
            stalled.send(started).unwrap();
            done_rx.recv().unwrap();
        });
        let a_started = stalled_rx.recv().unwrap();

        let rt_b = current_thread();
        rt_b.block_on(async {
            let err = tokio::time::timeout(EXCHANGE * 3, source.fetch())
                .await
                .expect("never hangs")
                .unwrap_err();
            assert!(matches!(err, Error::RefreshStalled), "{err}");
            assert!(err.to_string().contains("not sent twice"), "{err}");
            assert!(a_started.elapsed() >= EXCHANGE, "not before the deadline");
            // From then on at once.
            let start = Instant::now();
            let err = source.fetch().await.unwrap_err();
            assert!(matches!(err, Error::RefreshStalled), "{err}");
            assert!(start.elapsed() < EXCHANGE, "{:?}", start.elapsed());
        });
        done.send(()).unwrap();
    });
    // One refresh request: runtime A's, still waiting for its answer (the mock records a
    // request when it answers).
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 1);
    assert_eq!(stats.reused_refresh_tokens, 0);
}

/// Issue 17, item 4. A sync wrapper: runtime A's `block_on` gets its token and returns, and
/// runtime A is never driven again. Its exchange left nothing that runtime B would wait on:
/// neither the lease nor a pooled connection of the default client (whose task would run on
/// runtime A). A fetch on runtime B refreshes at once, with the rotation A's exchange got.
#[test]
fn a_runtime_that_stops_once_its_fetch_returned_leaves_nothing_another_runtime_waits_on() {
    let (_server, mock) = mock_on_its_own_runtime();
    let first = mock.issue_refresh_token();
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .exchange_timeout(EXCHANGE);
    let rt_a = current_thread();
    rt_a.block_on(source.fetch()).unwrap();

    let waited = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                current_thread().block_on(async {
                    let start = Instant::now();
                    tokio::time::timeout(EXCHANGE * 3, source.fetch())
                        .await
                        .expect("never hangs")
                        .unwrap();
                    start.elapsed()
                })
            })
            .join()
            .unwrap()
    });
    assert!(waited < EXCHANGE, "runtime B waited {waited:?}");
    let sent = refresh_tokens_sent(&mock);
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0], first);
    assert_ne!(sent[1], first);
    assert_eq!(mock.stats().reused_refresh_tokens, 0);
    drop(rt_a);
}

/// The one rule for a refresh token that left unanswered, on a live runtime as on an idle one
/// (above): the exchange times out, and no later fetch sends that token again. The next fetch
/// fails with `Error::RefreshStalled` at once, the provider got the token once, and no token
/// was reused. Before, a live runtime sent it again on the next fetch.
#[tokio::test(start_paused = true)]
async fn an_exchange_that_sent_its_refresh_token_and_timed_out_on_a_live_runtime_is_never_repeated()
{
    let mock = MockVeracity::start().await.unwrap();
    let first = mock.issue_refresh_token();
    let source = RefreshToken::new(mock.client_id(), first)
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .exchange_timeout(EXCHANGE);
    mock.delay_user_grant_answers(Duration::from_secs(3600), 1);
    let err = source.fetch().await.unwrap_err();
    assert!(matches!(err, Error::Timeout(d) if d == EXCHANGE), "{err}");
    assert_eq!(mock.stats().refresh_token_grants, 1);
    let start = tokio::time::Instant::now();
    let err = source.fetch().await.unwrap_err();
    assert!(matches!(err, Error::RefreshStalled), "{err}");
    assert!(err.to_string().contains("not sent twice"), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO, "at once");
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 1, "sent once");
    assert_eq!(stats.reused_refresh_tokens, 0);
}

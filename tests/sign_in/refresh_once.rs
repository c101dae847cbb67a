//! A refresh token is never spent twice: an exchange outlives the cache's fetch timeout, its
//! late answer still rotates, and a fetch that starts meanwhile waits for it.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use tower::{Layer, ServiceExt};
use veracity_auth::{Error, RefreshToken, TokenSource, VeracityAuthLayer};
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
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let first = mock.issue_refresh_token();
    let rotated = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = Arc::clone(&rotated);
    let source = RefreshToken::new(mock.client_id(), first.clone())
        .token_url(mock.user_token_url())
        .on_rotate(move |new| store.lock().unwrap().push(new.to_owned()));
    let layer = VeracityAuthLayer::new(source)
        .api_key(mock.api_key())
        .fetch_timeout(Duration::from_secs(10))
        .replay_refresh_interval(Duration::ZERO);
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
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let first = mock.issue_refresh_token();
    let source =
        RefreshToken::new(mock.client_id(), first.clone()).token_url(mock.user_token_url());
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
        .token_url(mock.user_token_url())
        .exchange_timeout(Duration::from_secs(60));
    let err = source.fetch().await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout(d) if d == Duration::from_secs(60)),
        "{err}"
    );
    // The refresh token was never processed: the next fetch may send it.
    source.fetch().await.unwrap();
}

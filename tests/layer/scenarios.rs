//! The layer and the reqwest middleware keep the same promises: each scenario here is written
//! once and runs for every [`ClientUnderTest`] (`scenarios::tower::*`,
//! `scenarios::reqwest::*`), against the embedded mock over real TCP.

use crate::clients::{Body, Client, ClientUnderTest, workspace_url};
use crate::common;
use crate::common::account::for_mock;
use veracity_auth::TokenEndpoint;

use bytes::Bytes;
use common::bodies::gateway_requests;
use common::gateway::{authenticator_for, dataset_query, recording_mock};
use http::{Request, StatusCode, header};
use tokio::task::JoinSet;
use veracity_auth::{Authenticator, ClientCredentials};
use veracity_auth_mock::{Fault, InvalidKeyAnswer, MockVeracity, Times};

/// One `#[tokio::test]` per client for each scenario named: `tower::name` and
/// `reqwest::name`, each calling `name(client)`.
macro_rules! for_each_client {
    ($( #[$test:meta] $name:ident ),* $(,)?) => {
        mod tower {
            $( #[$test] async fn $name() { super::$name(super::ClientUnderTest::Tower).await } )*
        }
        #[cfg(feature = "reqwest-middleware")]
        mod reqwest {
            $( #[$test] async fn $name() { super::$name(super::ClientUnderTest::Reqwest).await } )*
        }
    };
}

for_each_client! {
    #[tokio::test] requests_carry_both_headers_and_100_sequential_requests_fetch_one_token,
    #[tokio::test] a_revoked_token_is_refreshed_once_and_the_request_replayed_with_identical_bytes,
    #[tokio::test] an_unreplayable_body_gets_its_401_back_and_the_next_request_the_new_token,
    #[tokio::test] a_permanent_401_sends_each_request_at_most_twice_and_fetches_once_per_interval,
    #[tokio::test] a_wrong_api_key_returns_the_401_and_causes_no_token_fetch_and_no_replay,
    #[tokio::test] a_wrong_secret_is_the_crates_typed_error_naming_invalid_client_but_not_the_secret,
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    a_thousand_requests_with_a_wrong_key_answered_without_a_challenge_cost_one_more_token_and_one_replay_each_at_most,
    #[tokio::test] any_bare_401_is_a_token_rejection_replayed_once,
}

/// An authenticator for `mock`, `client` over it, and a token in its cache (one workspace GET).
async fn warmed(client: ClientUnderTest, mock: &MockVeracity) -> (Authenticator, Client) {
    let auth = authenticator_for(mock).build().unwrap();
    let client = client.over(&auth);
    let first = client.get(&workspace_url(mock)).await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    (auth, client)
}

async fn requests_carry_both_headers_and_100_sequential_requests_fetch_one_token(
    client: ClientUnderTest,
) {
    let mock = recording_mock().await;
    let auth = authenticator_for(&mock).build().unwrap();
    let client = client.over(&auth);
    for _ in 0..100 {
        let answer = client.get(&workspace_url(&mock)).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        let json: serde_json::Value =
            serde_json::from_slice(&answer.body).expect("the workspace as JSON");
        assert_eq!(json["id"], mock.workspace_id());
    }
    let stats = mock.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.api_ok, 100);
    let seen = gateway_requests(&mock);
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .all(|r| r.had_token && r.had_key && r.status == StatusCode::OK)
    );
    let stats = auth.stats();
    assert_eq!((stats.fetches, stats.replays), (1, 0));
}

async fn a_revoked_token_is_refreshed_once_and_the_request_replayed_with_identical_bytes(
    client: ClientUnderTest,
) {
    let mock = recording_mock().await;
    let (auth, client) = warmed(client, &mock).await;
    assert_eq!(mock.stats().token_requests, 1);

    mock.revoke_all_tokens();
    let json = Bytes::from_static(br#"{"pageIndex":1,"pageSize":10,"columnFilter":["a","b"]}"#);
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Bytes(json.clone()))
        .unwrap();
    let answer = client.send(request).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);

    let stats = mock.stats();
    assert_eq!(stats.token_requests, 2, "one extra token fetch");
    assert_eq!(stats.rejected_revoked_token, 1);
    assert_eq!(stats.api_ok, 2);
    assert_eq!(auth.stats().replays, 1);
    assert_eq!(auth.stats().replay_refreshes, 1);
    // The replay carried the same body as the rejected attempt.
    let queries: Vec<_> = gateway_requests(&mock)
        .into_iter()
        .filter(|r| r.path.ends_with("/query"))
        .collect();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0].status, StatusCode::UNAUTHORIZED);
    assert_eq!(queries[1].status, StatusCode::OK);
    assert!(queries.iter().all(|r| r.body == json), "{queries:?}");
}

async fn an_unreplayable_body_gets_its_401_back_and_the_next_request_the_new_token(
    client: ClientUnderTest,
) {
    let mock = MockVeracity::start().await.unwrap();
    let (auth, client) = warmed(client, &mock).await;

    mock.revoke_all_tokens();
    let request = Request::post(dataset_query(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::Unreplayable)
        .unwrap();
    let answer = client.send(request).await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "the 401, not an error"
    );
    let stats = auth.stats();
    assert_eq!(stats.replays, 0, "an unreplayable body is not replayed");
    assert_eq!(
        stats.replay_refreshes, 1,
        "a refresh started for the next request"
    );
    assert_eq!(stats.fetches, 2);

    // The next request gets the new token (joining the refresh if it is still running).
    let next = client.get(&workspace_url(&mock)).await.unwrap();
    assert_eq!(next.status, StatusCode::OK);
    let seen = mock.stats();
    assert_eq!(seen.token_requests, 2, "exactly one new token");
    assert_eq!(seen.rejected_revoked_token, 1);
    assert_eq!((auth.stats().fetches, auth.stats().replays), (2, 0));
}

async fn a_permanent_401_sends_each_request_at_most_twice_and_fetches_once_per_interval(
    client: ClientUnderTest,
) {
    let mock = recording_mock().await;
    let (auth, client) = warmed(client, &mock).await;
    mock.reject_all_tokens(true);
    let before = mock.stats();
    for _ in 0..1000 {
        let answer = client.get(&workspace_url(&mock)).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let after = mock.stats();
    // The first request is replayed once with a new token; within the 30 s interval the
    // other 999 get their 401 back with no fetch and no replay.
    assert_eq!(after.api_requests - before.api_requests, 1001);
    assert_eq!(after.token_requests - before.token_requests, 1);
    assert_eq!(auth.stats().replays, 1);
    assert_eq!(auth.stats().replay_refreshes, 1);
}

/// API Management's `WWW-Authenticate: AzureApiManagementKey` challenge names the key: the
/// 401 is given back, with no token fetch and no replay.
async fn a_wrong_api_key_returns_the_401_and_causes_no_token_fetch_and_no_replay(
    client: ClientUnderTest,
) {
    let mock = MockVeracity::start().await.unwrap();
    let auth = authenticator_for(&mock)
        .api_key("not-the-key")
        .build()
        .unwrap();
    let client = client.over(&auth);
    for _ in 0..10 {
        let answer = client.get(&workspace_url(&mock)).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let challenge = answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.starts_with("AzureApiManagementKey"),
            "{challenge}"
        );
    }
    let seen = mock.stats();
    assert_eq!(seen.token_requests, 1, "only the first request's fetch");
    assert_eq!(seen.rejected_wrong_key, 10);
    assert_eq!(seen.api_requests, 10, "each sent once");
    let stats = auth.stats();
    assert_eq!((stats.replays, stats.replay_refreshes), (0, 0), "{stats:?}");
}

async fn a_wrong_secret_is_the_crates_typed_error_naming_invalid_client_but_not_the_secret(
    client: ClientUnderTest,
) {
    let mock = MockVeracity::start().await.unwrap();
    let secret = "definitely-the-wrong-secret";
    let auth = for_mock(
        ClientCredentials::new(mock.client_id(), secret)
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        &mock,
    )
    .build()
    .unwrap();
    let err = client
        .over(&auth)
        .get(&workspace_url(&mock))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains("AADSTS7000215"), "{message}");
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{err:?}").contains(secret));
    assert!(err.is_permanent());
    assert_eq!(mock.stats().api_requests, 0, "nothing reached the gateway");
}

/// API Management's answer to an invalid subscription key, as Microsoft's documents give it.
const INVALID_KEY_BODY: &str = r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#;

/// A wrong key answered with a bare 401 and API Management's JSON body: every caller gets
/// that 401 with its whole body, for one more token fetch and at most one replay each.
async fn a_thousand_requests_with_a_wrong_key_answered_without_a_challenge_cost_one_more_token_and_one_replay_each_at_most(
    client: ClientUnderTest,
) {
    let mock = MockVeracity::builder()
        .invalid_key_answer(InvalidKeyAnswer::BodyOnly)
        .start()
        .await
        .unwrap();
    let auth = authenticator_for(&mock)
        .api_key("not-the-key")
        .build()
        .unwrap();
    let client = client.over(&auth);
    let expected: serde_json::Value = serde_json::from_str(INVALID_KEY_BODY).unwrap();
    let mut calls = JoinSet::new();
    for _ in 0..1000 {
        let (client, url) = (client.clone(), workspace_url(&mock));
        calls.spawn(async move { client.get(&url).await.unwrap() });
    }
    while let Some(done) = calls.join_next().await {
        let answer = done.unwrap();
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            !answer.headers.contains_key(header::WWW_AUTHENTICATE),
            "{:?}",
            answer.headers
        );
        let length: usize = answer.headers[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(answer.body.len(), length, "the whole body");
        let json: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
        assert_eq!(json, expected);
    }
    // No body is read: a bare 401 is a token rejection. What that costs when it is in fact a
    // wrong key: one token fetch in the rejection interval, and at most one replay a request.
    let stats = auth.stats();
    assert_eq!(stats.fetches, 2, "{stats:?}");
    assert_eq!(stats.replay_refreshes, 1, "{stats:?}");
    assert!(stats.replays <= 1000, "{stats:?}");
    let seen = mock.stats();
    assert_eq!(seen.token_requests, 2);
    assert_eq!(
        seen.api_requests,
        1000 + stats.replays,
        "each request sent at most twice"
    );
    assert_eq!(seen.rejected_wrong_key, seen.api_requests);
}

/// A bare 401, whatever its body (empty, another body, even API Management's key answer), is
/// a token rejection, replayed once.
async fn any_bare_401_is_a_token_rejection_replayed_once(client: ClientUnderTest) {
    let padded = format!("{}{}", INVALID_KEY_BODY, " ".repeat(512));
    let bodies: [(&str, Bytes); 5] = [
        ("empty", Bytes::new()),
        ("plain text", Bytes::from_static(b"Unauthorized")),
        (
            "another JSON",
            Bytes::from_static(
                br#"{"statusCode":401,"message":"Unauthorized. Access token is missing or invalid."}"#,
            ),
        ),
        ("the key answer, padded", Bytes::from(padded)),
        ("the key answer", Bytes::from_static(INVALID_KEY_BODY.as_bytes())),
    ];
    for (what, body) in bodies {
        let mock = MockVeracity::start().await.unwrap();
        let (auth, client) = warmed(client, &mock).await;
        mock.fail_api_requests(
            Fault::Respond {
                status: StatusCode::UNAUTHORIZED,
                headers: vec![("content-type".into(), "application/json".into())],
                body,
            },
            Times::Once,
        );
        let answer = client.get(&workspace_url(&mock)).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{what}");
        let stats = auth.stats();
        assert_eq!((stats.fetches, stats.replays), (2, 1), "{what}: {stats:?}");
        assert_eq!(mock.stats().api_ok, 2, "{what}");
    }
}

//! `VeracityAuthMiddleware` in a real reqwest client against the mock on 127.0.0.1.
#![cfg(feature = "reqwest-middleware")]

use crate::common;

use std::convert::Infallible;

use bytes::Bytes;
use common::elsewhere::{Elsewhere, LANDED, has_credentials, redirect_to};
use futures_util::stream;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use reqwest_middleware::ClientWithMiddleware;
use tokio::task::JoinSet;
use tower::{Layer, ServiceExt};
use veracity_auth::{
    API_KEY_HEADER, Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer,
    VeracityAuthMiddleware,
};
use veracity_auth_mock::{Fault, InvalidKeyAnswer, MockVeracity, Times};

const QUERY: &str = r#"{"pageIndex":1,"pageSize":10}"#;

fn authenticator(mock: &MockVeracity, api_key: &str) -> Authenticator {
    Authenticator::builder(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
    )
    .origins([mock.url()])
    .api_key(api_key)
    .build()
    .unwrap()
}

/// A reqwest client with the middleware, set up as the README shows it (with the crate's
/// redirect policy). The test build enables reqwest's `rustls-no-provider`: without a
/// process default provider, building the client panics.
fn client(auth: &Authenticator) -> ClientWithMiddleware {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let reqwest = reqwest::Client::builder()
        .redirect(VeracityAuthMiddleware::redirect_policy())
        .build()
        .unwrap();
    reqwest_middleware::ClientBuilder::new(reqwest)
        .with(VeracityAuthMiddleware::new(auth.clone()))
        .build()
}

fn workspace_url(mock: &MockVeracity) -> String {
    format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id())
}

fn query_url(mock: &MockVeracity) -> String {
    format!("{}/datasets/query", workspace_url(mock))
}

#[tokio::test]
async fn requests_carry_both_headers_and_100_sequential_requests_fetch_one_token() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let auth = authenticator(&mock, mock.api_key());
    let client = client(&auth);
    for _ in 0..100 {
        let response = client.get(workspace_url(&mock)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap())
            .expect("the workspace as JSON");
        assert_eq!(json["id"], mock.workspace_id());
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().api_ok, 100);
    let seen = mock.requests();
    let api: Vec<_> = seen
        .iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect();
    assert_eq!(api.len(), 100);
    assert!(
        api.iter()
            .all(|r| r.had_token && r.had_key && r.status == StatusCode::OK)
    );
    let stats = auth.stats();
    assert_eq!((stats.fetches, stats.replays), (1, 0));
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_request_replayed() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let auth = authenticator(&mock, mock.api_key());
    let client = client(&auth);
    let first = client.get(workspace_url(&mock)).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(mock.stats().token_requests, 1);

    mock.revoke_all_tokens();
    let response = client
        .post(query_url(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let stats = mock.stats();
    assert_eq!(stats.token_requests, 2, "one extra token fetch");
    assert_eq!(stats.rejected_revoked_token, 1);
    assert_eq!(stats.api_ok, 2);
    assert_eq!(auth.stats().replays, 1);
    assert_eq!(auth.stats().replay_refreshes, 1);
    // The replay carried the same body as the rejected attempt.
    let queries: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/datasets/query"))
        .collect();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0].status, StatusCode::UNAUTHORIZED);
    assert_eq!(queries[1].status, StatusCode::OK);
    assert!(queries.iter().all(|r| r.body == QUERY.as_bytes()));
}

#[tokio::test]
async fn a_streaming_body_gets_its_401_back_and_the_next_request_the_new_token() {
    let mock = MockVeracity::start().await.unwrap();
    let auth = authenticator(&mock, mock.api_key());
    let client = client(&auth);
    assert_eq!(
        client
            .get(workspace_url(&mock))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    mock.revoke_all_tokens();
    let chunks = stream::iter([
        Ok::<_, Infallible>(Bytes::from_static(b"{\"pageIndex\":1,")),
        Ok(Bytes::from_static(b"\"pageSize\":10}")),
    ]);
    let response = client
        .post(query_url(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(auth.stats().replays, 0, "a streaming body is not replayed");
    // The refresh was started all the same.
    assert_eq!(auth.stats().replay_refreshes, 1);

    let next = client
        .post(query_url(&mock))
        .header(header::CONTENT_TYPE, "application/json")
        .body(QUERY)
        .send()
        .await
        .unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    let stats = mock.stats();
    assert_eq!(stats.token_requests, 2);
    assert_eq!(stats.rejected_revoked_token, 1);
    assert_eq!(auth.stats().replays, 0);
}

#[tokio::test]
async fn an_api_key_rejection_is_not_replayed() {
    let mock = MockVeracity::start().await.unwrap();
    let auth = authenticator(&mock, "not-the-key");
    let client = client(&auth);
    let response = client.get(workspace_url(&mock)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("AzureApiManagementKey"),
        "{challenge}"
    );
    let stats = mock.stats();
    assert_eq!(stats.rejected_wrong_key, 1);
    assert_eq!(stats.api_requests, 1, "sent once");
    assert_eq!(stats.token_requests, 1, "the first token only: none caused");
    let auth_stats = auth.stats();
    assert_eq!(
        (auth_stats.replays, auth_stats.replay_refreshes),
        (0, 0),
        "{auth_stats:?}"
    );
}

#[tokio::test]
async fn a_token_fetch_failure_is_the_crates_error_inside_the_middleware_error() {
    let mock = MockVeracity::start().await.unwrap();
    let secret = "definitely-the-wrong-secret";
    let auth = Authenticator::builder(
        ClientCredentials::new(mock.client_id(), secret)
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
    )
    .origins([mock.url()])
    .api_key(mock.api_key())
    .build()
    .unwrap();
    let err = client(&auth)
        .get(workspace_url(&mock))
        .send()
        .await
        .unwrap_err();
    let reqwest_middleware::Error::Middleware(err) = err else {
        panic!("a middleware error: {err:?}");
    };
    let err = err
        .downcast_ref::<veracity_auth::Error>()
        .expect("the crate's typed error");
    assert!(err.is_permanent());
    assert!(err.to_string().contains("invalid_client"), "{err}");
    assert!(!format!("{err:?}").contains(secret));
    assert_eq!(mock.stats().api_requests, 0, "nothing reached the gateway");
}

#[tokio::test]
async fn one_authenticator_shared_by_a_layer_and_the_middleware_fetches_once() {
    let mock = MockVeracity::start().await.unwrap();
    let auth = authenticator(&mock, mock.api_key());
    let layered = VeracityAuthLayer::new(auth.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let reqwest = client(&auth);
    for _ in 0..3 {
        let request = Request::get(workspace_url(&mock))
            .body(Full::default())
            .unwrap();
        let response = layered.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let response = reqwest.get(workspace_url(&mock)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().api_ok, 6);
    assert_eq!(auth.stats().fetches, 1);

    // A 401 seen through one refreshes for both; the replay counter is shared.
    mock.revoke_all_tokens();
    let response = reqwest.get(workspace_url(&mock)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let request = Request::get(workspace_url(&mock))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        layered.oneshot(request).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(mock.stats().token_requests, 2);
    assert_eq!(auth.stats().replays, 1);
}

// === A wrong API key answered without a challenge ===

/// API Management's answer to an invalid subscription key, as Microsoft's documents give it.
const INVALID_KEY_BODY: &str = r#"{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_with_a_wrong_key_answered_without_a_challenge_cost_one_more_token_and_one_replay_each_at_most()
 {
    let mock = MockVeracity::builder()
        .invalid_key_answer(InvalidKeyAnswer::BodyOnly)
        .start()
        .await
        .unwrap();
    let auth = authenticator(&mock, "not-the-key");
    let client = client(&auth);
    let expected: serde_json::Value = serde_json::from_str(INVALID_KEY_BODY).unwrap();
    let mut calls = JoinSet::new();
    for _ in 0..1000 {
        let request = client.get(workspace_url(&mock));
        calls.spawn(async move {
            let response = request.send().await.unwrap();
            let length: usize = response.headers()[header::CONTENT_LENGTH]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let (status, headers) = (response.status(), response.headers().clone());
            (status, headers, length, response.bytes().await.unwrap())
        });
    }
    while let Some(done) = calls.join_next().await {
        let (status, headers, length, body) = done.unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            !headers.contains_key(header::WWW_AUTHENTICATE),
            "{headers:?}"
        );
        assert_eq!(body.len(), length, "the whole body");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
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

/// A bare 401, whatever its body (even API Management's key answer), is a token rejection.
#[tokio::test]
async fn any_bare_401_is_a_token_rejection_replayed_once() {
    for body in [
        Bytes::new(),
        Bytes::from_static(
            br#"{"statusCode":401,"message":"Unauthorized. Access token is missing or invalid."}"#,
        ),
        Bytes::from_static(INVALID_KEY_BODY.as_bytes()),
    ] {
        let mock = MockVeracity::start().await.unwrap();
        let auth = authenticator(&mock, mock.api_key());
        let client = client(&auth);
        let first = client.get(workspace_url(&mock)).send().await.unwrap();
        assert_eq!(first.status(), StatusCode::OK);
        mock.fail_api_requests(
            Fault::Respond {
                status: StatusCode::UNAUTHORIZED,
                headers: Vec::new(),
                body: body.clone(),
            },
            Times::Once,
        );
        let response = client.get(workspace_url(&mock)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{body:?}");
        let stats = auth.stats();
        assert_eq!(
            (stats.fetches, stats.replays),
            (2, 1),
            "{body:?}: {stats:?}"
        );
    }
}

// === Credentials only for their origins ===

/// With the README's set-up, a redirect from the gateway to another origin is not followed
/// (reqwest's own policy would take the API key along: it strips only `Authorization`), and
/// one to the gateway's own origin is.
#[tokio::test]
async fn the_documented_client_takes_no_api_key_along_a_redirect_to_another_origin() {
    let mock = MockVeracity::start().await.unwrap();
    let elsewhere = Elsewhere::start().await;
    let auth = authenticator(&mock, mock.api_key());
    let client = client(&auth);

    let landing = format!("{}/landing", elsewhere.url());
    mock.fail_api_requests(redirect_to(&landing), Times::Once);
    let response = client.get(workspace_url(&mock)).send().await.unwrap();
    assert!(
        elsewhere.seen().iter().all(|h| !has_credentials(h)),
        "{:?}",
        elsewhere.seen()
    );
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "stopped at the other origin"
    );
    assert_eq!(response.headers()[header::LOCATION], landing.as_str());

    // A redirect within the gateway's origin is followed, with both credentials.
    mock.fail_api_requests(redirect_to(&workspace_url(&mock)), Times::Once);
    let response = client
        .get(format!("{}/moved", mock.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().api_ok, 1);
}

/// With origins set, a request to another origin goes out without this authenticator's
/// credentials (even copied in by hand), and with values of your own.
#[tokio::test]
async fn a_middleware_with_origins_sends_nothing_of_its_own_to_another_origin() {
    let mock = MockVeracity::start().await.unwrap();
    let elsewhere = Elsewhere::start().await;
    let auth = Authenticator::builder(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
    )
    .api_key(mock.api_key())
    .origins([mock.url()])
    .build()
    .unwrap();
    let client = client(&auth);
    let ours = client.get(workspace_url(&mock)).send().await.unwrap();
    assert_eq!(ours.status(), StatusCode::OK);

    let plain = client.get(elsewhere.url()).send().await.unwrap();
    assert_eq!(plain.text().await.unwrap(), LANDED);
    client
        .get(elsewhere.url())
        .header(API_KEY_HEADER, mock.api_key())
        .send()
        .await
        .unwrap();
    client
        .get(elsewhere.url())
        .bearer_auth("a-token-of-yours")
        .header(API_KEY_HEADER, "a-key-of-yours")
        .send()
        .await
        .unwrap();
    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 3);
    assert!(!has_credentials(&seen[0]), "{:?}", seen[0]);
    assert!(
        !has_credentials(&seen[1]),
        "our key, copied by hand: {:?}",
        seen[1]
    );
    assert_eq!(seen[2][header::AUTHORIZATION], "Bearer a-token-of-yours");
    assert_eq!(seen[2][API_KEY_HEADER], "a-key-of-yours");
    assert_eq!(auth.stats().fetches, 1);
}

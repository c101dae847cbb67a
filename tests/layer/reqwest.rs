//! `VeracityAuthMiddleware` in a real reqwest client against the mock on 127.0.0.1: what only
//! the middleware does (its redirect policy, sharing an authenticator with a layer); the
//! scenarios it shares with the layer are in `scenarios`.
#![cfg(feature = "reqwest-middleware")]

use crate::common;
use crate::common::account::for_mock;
use veracity_auth::TokenEndpoint;

use bytes::Bytes;
use common::elsewhere::{Elsewhere, LANDED, has_credentials, redirect_to};
use common::gateway::authenticator_for;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Layer, ServiceExt};
use veracity_auth::{API_KEY_HEADER, ClientCredentials, VeracityAuthLayer};
use veracity_auth_mock::{MockVeracity, Times};

use crate::clients::{reqwest_client, workspace_url};

#[tokio::test]
async fn one_authenticator_shared_by_a_layer_and_the_middleware_fetches_once() {
    let mock = MockVeracity::start().await.unwrap();
    let auth = authenticator_for(&mock).build().unwrap();
    let layered = VeracityAuthLayer::new(auth.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
    let reqwest = reqwest_client(&auth);
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

// === Credentials only for their origins ===

/// With the README's set-up, a redirect from the gateway to another origin is not followed
/// (reqwest's own policy would take the API key along: it strips only `Authorization`), and
/// one to the gateway's own origin is.
#[tokio::test]
async fn the_documented_client_takes_no_api_key_along_a_redirect_to_another_origin() {
    let mock = MockVeracity::start().await.unwrap();
    let elsewhere = Elsewhere::start().await;
    let auth = authenticator_for(&mock).build().unwrap();
    let client = reqwest_client(&auth);

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
    let auth = for_mock(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        &mock,
    )
    .build()
    .unwrap();
    let client = reqwest_client(&auth);
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

//! The secrets test (`tests/security/secrets.rs`) for user sign-in: no secret of a sign-in and the
//! refreshes after it (client secret, code, PKCE verifier, access, refresh and ID tokens, API
//! key) reaches `tracing` output at any level.
//!
//! A binary of its own: the test installs a thread-local subscriber, and `tracing` caches
//! per-callsite interest across threads, so tests running beside it could hide events.

#[path = "sign_in/browser.rs"]
mod browser;
mod common;

use crate::common::account::for_mock;
use crate::common::account::workspace_status;
use crate::common::gateway::recording_mock;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use browser::*;
use bytes::Bytes;
use common::logs::Captured;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use veracity_auth::{CachePolicy, VeracityAuthLayer};

#[tokio::test]
async fn refresh_tokens_and_other_secrets_appear_in_no_tracing_output() {
    let (logs, _guard) = Captured::on_this_thread(tracing::Level::TRACE);

    let mock = recording_mock().await;
    let signed_in = signed_in(&sign_in(&mock).client_secret(mock.client_secret())).await;
    let mut secrets = vec![
        mock.client_secret().to_owned(),
        mock.api_key().to_owned(),
        signed_in.access_token().access_token().to_owned(),
        signed_in.refresh_token().unwrap().to_owned(),
        signed_in.id_token().unwrap().to_owned(),
    ];
    let rotated = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = Arc::clone(&rotated);
    let source = signed_in
        .into_refresh_token()
        .unwrap()
        .on_rotate(move |new| store.lock().unwrap().push(new.to_owned()));
    // Record the access tokens the layer sends.
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&sent);
    let client = http_client();
    let recording = tower::service_fn(move |request: Request<Full<Bytes>>| {
        if let Some(auth) = request.headers().get(header::AUTHORIZATION) {
            let token = auth
                .to_str()
                .unwrap()
                .trim_start_matches("Bearer ")
                .to_owned();
            seen.lock().unwrap().push(token);
        }
        client.request(request)
    });
    let layer = VeracityAuthLayer::new(
        for_mock(source, &mock)
            .cache_policy(CachePolicy::default().rejection_interval(Duration::ZERO))
            .build()
            .unwrap(),
    );
    let api = layer.layer(recording);
    assert_eq!(workspace_status(&api, &mock).await, 200);
    mock.revoke_all_tokens();
    assert_eq!(workspace_status(&api, &mock).await, 200);
    // Then the refresh token dies: the sign-in-again error is logged too.
    mock.revoke_refresh_tokens();
    mock.revoke_all_tokens();
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for form in token_requests(&mock, "authorization_code") {
        secrets.push(field(&form, "code").to_owned());
        secrets.push(field(&form, "code_verifier").to_owned());
    }
    for form in token_requests(&mock, "refresh_token") {
        secrets.push(field(&form, "refresh_token").to_owned());
    }
    secrets.extend(rotated.lock().unwrap().iter().cloned());
    secrets.extend(sent.lock().unwrap().iter().cloned());
    assert!(secrets.len() >= 10, "{}", secrets.len());

    let logs = logs.text();
    for expected in ["signed in", "refresh token rotated", "sign in again"] {
        assert!(
            logs.contains(expected),
            "no {expected:?} in the logs:\n{logs}"
        );
    }
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !logs.contains(secret.as_str()),
            "a secret in the logs:\n{logs}"
        );
    }
}

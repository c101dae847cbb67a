//! Signing in as a person against the embedded mock: authorization code with PKCE over a
//! loopback redirect, then refresh tokens through the layer. The tests play the browser with
//! a plain hyper-util client.

use crate::common::account::workspace_status;
use crate::common::account::{for_mock, layer_over};
use crate::common::gateway::recording_mock;
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use veracity_auth::TokenEndpoint;

use crate::browser::*;
use crate::common::gateway::get_workspace;
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::{Layer, ServiceExt};
use veracity_auth::{
    Authenticator, CachePolicy, DEFAULT_USER_SCOPE, Error, RefreshToken, SignInError, TokenSource,
    VeracityAuthLayer,
};
use veracity_auth_mock::MockVeracity;

#[tokio::test]
async fn signing_in_exchanges_the_code_with_the_right_verifier_and_the_gateway_accepts_the_token() {
    let mock = recording_mock().await;
    let (pending, url) = start(&sign_in(&mock)).await;

    // The authorize URL: Veracity's B2C shape with PKCE S256, state, nonce and offline_access.
    assert!(url.starts_with(&mock.authorize_url()), "{url}");
    let redirect_uri = pending.redirect_uri().to_owned();
    assert!(
        redirect_uri.starts_with("http://localhost:"),
        "{redirect_uri}"
    );
    assert!(!redirect_uri.starts_with("http://localhost:0/"));
    assert_eq!(param(&url, "redirect_uri").as_deref(), Some(&*redirect_uri));
    assert_eq!(param(&url, "client_id").as_deref(), Some(mock.client_id()));
    assert_eq!(param(&url, "response_type").as_deref(), Some("code"));
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let challenge = param(&url, "code_challenge").unwrap();
    assert_eq!(challenge.len(), 43);
    assert!(
        challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let scope = param(&url, "scope").unwrap();
    let scopes: Vec<&str> = scope.split(' ').collect();
    for wanted in ["openid", "offline_access", DEFAULT_USER_SCOPE] {
        assert!(scopes.contains(&wanted), "{scope}");
    }
    let state = param(&url, "state").unwrap();
    let nonce = param(&url, "nonce").unwrap();
    assert!(state.len() >= 22 && nonce.len() >= 22 && state != nonce);

    let (signed_in, (status, page)) = tokio::join!(pending.finish(), browse(url, |l| l));
    let signed_in = signed_in.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Signed in"), "{page}");
    assert!(
        signed_in
            .refresh_token()
            .is_some_and(|r| r.starts_with("mock-rt-"))
    );
    assert!(signed_in.id_token().is_some());

    // What went to the token endpoint: the code, the same redirect_uri, a valid verifier.
    let exchanges = token_requests(&mock, "authorization_code");
    assert_eq!(exchanges.len(), 1);
    let form = &exchanges[0];
    assert_eq!(field(form, "redirect_uri"), redirect_uri);
    assert_eq!(field(form, "client_id"), mock.client_id());
    let verifier = field(form, "code_verifier");
    assert!((43..=128).contains(&verifier.len()), "{verifier}");
    assert!(
        verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    );
    let stats = mock.stats();
    assert_eq!(stats.authorize_requests, 1);
    assert_eq!(stats.authorization_code_grants, 1);
    assert_eq!(stats.rejected_code_verifiers, 0);
    assert_eq!(stats.refresh_tokens_issued, 1);

    // The first request uses the access token of the sign-in: no refresh needed.
    let layer = layer_over(signed_in.into_refresh_token().unwrap(), &mock);
    let response = get_workspace(&layer, &mock).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().refresh_token_grants, 0);
}

#[tokio::test]
async fn a_verifier_that_does_not_match_the_challenge_fails_with_invalid_grant() {
    let mock = recording_mock().await;
    let (pending, url) = start(&sign_in(&mock)).await;
    // Someone else's challenge (RFC 7636, appendix B): our verifier cannot match it.
    let url = with_param(
        &url,
        "code_challenge",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
    let (result, _) = tokio::join!(pending.finish(), browse(url, |l| l));
    let err = result.unwrap_err();
    let oauth = err.oauth().expect("an OAuth error from the token endpoint");
    assert_eq!(oauth.error, "invalid_grant");
    assert_eq!(oauth.code().as_deref(), Some("AADB2C90182"));
    let message = err.to_string();
    assert!(message.contains("code_verifier"), "{message}");
    assert!(err.is_permanent() && !err.is_sign_in_required());
    let form = &token_requests(&mock, "authorization_code")[0];
    for secret in [field(form, "code_verifier"), field(form, "code")] {
        assert!(!message.contains(secret) && !format!("{err:?}").contains(secret));
    }
    assert_eq!(mock.stats().rejected_code_verifiers, 1);
}

#[tokio::test]
async fn a_redirect_with_a_wrong_state_is_refused_and_the_sign_in_keeps_waiting_for_its_own() {
    let mock = MockVeracity::start().await.unwrap();
    let (pending, url) = start(&sign_in(&mock)).await;
    let browser = async {
        // A stale tab's redirect: another state, another code. Refused, nothing exchanged.
        let (_, location, _) = get(&url).await;
        let forged = with_param(&location.unwrap(), "state", "not-the-state-we-sent");
        let (status, _, page) = get(&forged).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("does not belong"), "{page}");
        assert_eq!(mock.stats().authorization_code_grants, 0);
        // Then the real one.
        browse(url.clone(), |l| l).await
    };
    let (result, (status, page)) = tokio::join!(pending.finish(), browser);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        mock.stats().authorization_code_grants,
        1,
        "only the real code"
    );
}

#[tokio::test(start_paused = true)]
async fn a_sign_in_that_saw_only_wrong_states_times_out_as_a_state_mismatch() {
    let pending = pending_for(Duration::from_secs(90)).await;
    let forged = format!("{}?code=c&state=forged", pending.redirect_uri());
    let waiting = tokio::spawn(pending.finish());
    let (status, _, page) = get_over(&forged, "127.0.0.1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("does not belong"), "{page}");
    let err = waiting.await.unwrap().unwrap_err();
    assert!(
        matches!(err, Error::SignIn(SignInError::StateMismatch)),
        "{err}"
    );
    assert!(err.to_string().contains("`state` does not match"), "{err}");
}

#[tokio::test]
async fn a_cancelled_sign_in_reports_the_providers_error() {
    let mock = MockVeracity::start().await.unwrap();
    mock.deny_sign_in(true);
    let (pending, url) = start(&sign_in(&mock)).await;
    let (result, (_, page)) = tokio::join!(pending.finish(), browse(url, |l| l));
    match result.unwrap_err() {
        Error::SignIn(SignInError::Denied { error, description }) => {
            assert_eq!(error, "access_denied");
            assert!(description.unwrap().starts_with("AADB2C90091"));
        }
        other => panic!("{other}"),
    }
    assert!(page.contains("refused"), "{page}");
    assert_eq!(mock.stats().authorization_code_grants, 0);
}

#[tokio::test]
async fn stray_and_idle_connections_do_not_end_or_block_the_sign_in() {
    let mock = MockVeracity::start().await.unwrap();
    let (pending, url) = start(&sign_in(&mock)).await;
    let redirect_uri = pending.redirect_uri().to_owned();
    let browser = async {
        // A preconnected socket that never sends a request.
        let port = redirect_uri
            .trim_start_matches("http://localhost:")
            .trim_end_matches('/');
        let _idle = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        let (status, _, _) = get(&format!("{redirect_uri}favicon.ico")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _, page) = get(&redirect_uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(page.contains("waits for a Veracity sign-in"), "{page}");
        // A port scanner's bytes: not HTTP at all.
        let mut scanner = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
            .await
            .unwrap();
        scanner
            .write_all(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        scanner.read_to_end(&mut answer).await.unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        browse(url, |l| l).await
    };
    let (result, (status, _)) = tokio::join!(pending.finish(), browser);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn no_redirect_within_the_timeout_is_a_timed_out_error() {
    let pending = pending_for(Duration::from_secs(90)).await;
    let err = pending.finish().await.unwrap_err();
    assert!(
        matches!(err, Error::SignIn(SignInError::TimedOut(d)) if d == Duration::from_secs(90)),
        "{err}"
    );
}

#[tokio::test]
async fn access_tokens_are_refreshed_through_the_layer_and_the_rotated_refresh_token_is_used_next_time()
 {
    let mock = recording_mock().await;
    let signed_in = signed_in(&sign_in(&mock)).await;
    let first = signed_in.refresh_token().unwrap().to_owned();

    let persisted = Arc::new(Mutex::new(Vec::<String>::new()));
    let store = Arc::clone(&persisted);
    let source = signed_in
        .into_refresh_token()
        .unwrap()
        .on_rotate(move |new| store.lock().unwrap().push(new.to_owned()));
    let layer = VeracityAuthLayer::new(
        for_mock(source, &mock)
            .cache_policy(CachePolicy::default().rejection_interval(Duration::ZERO))
            .build()
            .unwrap(),
    );
    let api = layer.layer(http_client());

    assert_eq!(workspace_status(&api, &mock).await, 200);
    // Twice: the gateway stops accepting the access token, the layer refreshes and replays.
    for round in 1..=2 {
        mock.revoke_all_tokens();
        let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "round {round}");
        assert_eq!(layer.stats().replays, round);
    }

    let persisted = persisted.lock().unwrap().clone();
    assert_eq!(persisted.len(), 2, "each refresh rotated the refresh token");
    let sent: Vec<String> = token_requests(&mock, "refresh_token")
        .iter()
        .map(|form| field(form, "refresh_token").to_owned())
        .collect();
    // The mock spends a refresh token when it rotates it: each refresh used the newest.
    assert_eq!(sent, [first, persisted[0].clone()]);
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 2);
    assert_eq!(stats.rejected_refresh_tokens, 0);
    assert_eq!(stats.api_ok, 3);
}

#[tokio::test]
async fn a_refresh_token_rotated_away_is_refused_by_the_mock() {
    let mock = MockVeracity::start().await.unwrap();
    let old = mock.issue_refresh_token();
    let source = || {
        RefreshToken::new(mock.client_id(), old.clone())
            .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
    };
    source().fetch().await.unwrap();
    let err = source().fetch().await.unwrap_err();
    assert!(err.is_sign_in_required(), "{err}");
}

#[tokio::test]
async fn without_rotation_the_refresh_token_is_kept_and_the_hook_not_called() {
    let mock = recording_mock().await;
    mock.set_refresh_token_rotation(false);
    let rt = mock.issue_refresh_token();
    let calls = Arc::new(Mutex::new(0));
    let counter = Arc::clone(&calls);
    let source = RefreshToken::new(mock.client_id(), rt.clone())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
        .on_rotate(move |_| *counter.lock().unwrap() += 1);
    for _ in 0..2 {
        source.fetch().await.unwrap();
    }
    assert_eq!(*calls.lock().unwrap(), 0);
    let sent: Vec<String> = token_requests(&mock, "refresh_token")
        .iter()
        .map(|form| field(form, "refresh_token").to_owned())
        .collect();
    assert_eq!(sent, [rt.clone(), rt]);
}

#[tokio::test]
async fn a_revoked_refresh_token_gives_the_sign_in_again_error() {
    let mock = MockVeracity::start().await.unwrap();
    let rt = mock.issue_refresh_token();
    mock.revoke_refresh_tokens();
    let layer = layer_over(
        RefreshToken::new(mock.client_id(), rt.clone())
            .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap()),
        &mock,
    );
    let api = layer.layer(http_client());
    for _ in 0..2 {
        let err = api.clone().oneshot(workspace(&mock)).await.unwrap_err();
        let err = err.downcast::<Error>().expect("the crate's typed error");
        assert!(matches!(*err, Error::SignInRequired(_)), "{err}");
        assert!(err.is_sign_in_required() && err.is_permanent());
        let message = err.to_string();
        assert!(message.contains("sign in again"), "{message}");
        assert!(
            message.contains("invalid_grant") && message.contains("AADB2C90129"),
            "{message}"
        );
        assert!(!message.contains(&rt) && !format!("{err:?}").contains(&rt));
    }
    let stats = mock.stats();
    assert_eq!(
        stats.rejected_refresh_tokens, 1,
        "the second request failed fast"
    );
    assert_eq!(stats.api_requests, 0);
}

#[tokio::test]
async fn sign_in_types_and_errors_show_no_secret_in_debug_output() {
    let mock = recording_mock().await;
    let config = sign_in(&mock).client_secret(mock.client_secret());
    let (pending, url) = start(&config).await;
    let state = param(&url, "state").unwrap();
    let pending_debug = format!("{pending:?}");
    let (signed_in, _) = tokio::join!(pending.finish(), browse(url, |l| l));
    let signed_in = signed_in.unwrap();
    let refresh = signed_in.refresh_token().unwrap().to_owned();
    let access = signed_in.access_token().access_token().to_owned();
    let id_token = signed_in.id_token().unwrap().to_owned();
    let form = &token_requests(&mock, "authorization_code")[0];
    let secrets = [
        refresh.as_str(),
        access.as_str(),
        id_token.as_str(),
        field(form, "code"),
        field(form, "code_verifier"),
        mock.client_secret(),
        state.as_str(),
    ];
    let signed_in_debug = format!("{signed_in:?}");
    let source = signed_in.into_refresh_token().unwrap();
    let debug = [
        format!("{config:?}"),
        pending_debug,
        signed_in_debug,
        format!("{source:?}"),
        format!(
            "{:?}",
            VeracityAuthLayer::new(Authenticator::builder(source.clone()).build().unwrap())
        ),
        format!(
            "{:?}",
            RefreshToken::new("id", refresh.clone()).client_secret("s")
        ),
    ];
    for text in &debug {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret in {text}");
        }
    }
}

/// RFC 7636, appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize(mock: &MockVeracity, overrides: &[(&str, &str)]) -> String {
    let scope = format!("offline_access {}", mock.user_scope());
    let mut params = vec![
        ("client_id", mock.client_id()),
        ("response_type", "code"),
        ("redirect_uri", "http://127.0.0.1:9/cb"),
        ("scope", scope.as_str()),
        ("state", "s-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in overrides {
        params.retain(|(k, _)| k != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let query = serde_urlencoded::to_string(&params).unwrap();
    format!("{}?{query}", mock.authorize_url())
}

/// Exchanges `code` at the mock's token endpoint, by hand.
async fn exchange(
    mock: &MockVeracity,
    code: &str,
    redirect_uri: &str,
    verifier: &str,
) -> (StatusCode, serde_json::Value) {
    let form = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("client_id", mock.client_id()),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
    ])
    .unwrap();
    let request = Request::post(mock.user_token_url())
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(form)))
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

/// A code from the mock's authorize endpoint, for [`VERIFIER`] and `http://127.0.0.1:9/cb`.
async fn code(mock: &MockVeracity) -> String {
    let (_, location, _) = get(&authorize(mock, &[])).await;
    param(&location.unwrap(), "code").unwrap()
}

#[tokio::test]
async fn the_mock_authorize_endpoint_never_redirects_to_an_unsafe_uri_and_requires_pkce_s256() {
    let mock = MockVeracity::start().await.unwrap();
    for unsafe_redirect in [
        "https://evil.example/cb",
        "http://evil.example/cb",
        "not a uri",
        "",
    ] {
        let (status, location, _) =
            get(&authorize(&mock, &[("redirect_uri", unsafe_redirect)])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{unsafe_redirect}");
        assert_eq!(location, None);
    }
    let (status, location, _) = get(&authorize(&mock, &[("client_id", "stranger")])).await;
    assert_eq!((status, location), (StatusCode::BAD_REQUEST, None));

    for (overrides, error) in [
        (&[("code_challenge", "")][..], "invalid_request"),
        (&[("code_challenge_method", "plain")][..], "invalid_request"),
        (
            &[("response_type", "token")][..],
            "unsupported_response_type",
        ),
        (&[("scope", "openid")][..], "invalid_scope"),
    ] {
        let (status, location, _) = get(&authorize(&mock, overrides)).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = location.unwrap();
        assert!(location.starts_with("http://127.0.0.1:9/cb?"), "{location}");
        assert_eq!(
            param(&location, "error").as_deref(),
            Some(error),
            "{overrides:?}"
        );
        assert_eq!(param(&location, "state").as_deref(), Some("s-1"));
        assert_eq!(param(&location, "code"), None);
    }
    assert_eq!(mock.stats().authorize_requests, 9);
}

#[tokio::test]
async fn the_mock_code_is_single_use_and_bound_to_its_redirect_uri_and_verifier() {
    let mock = MockVeracity::start().await.unwrap();
    let redirect = "http://127.0.0.1:9/cb";

    let first = code(&mock).await;
    let (status, body) = exchange(&mock, &first, redirect, VERIFIER).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("mock-rt-")
    );
    assert!(body["id_token"].is_null(), "no openid scope, no ID token");
    let (status, body) = exchange(&mock, &first, redirect, VERIFIER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant", "a code is single use");

    let (_, body) = exchange(
        &mock,
        &code(&mock).await,
        "http://127.0.0.1:9/other",
        VERIFIER,
    )
    .await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    // B2C's codes: a malformed verifier, and a well-formed one that does not match.
    for (wrong, code_name) in [
        ("short".to_owned(), "AADB2C90183"),
        ("x".repeat(43), "AADB2C90182"),
    ] {
        let (_, body) = exchange(&mock, &code(&mock).await, redirect, &wrong).await;
        assert_eq!(body["error"], "invalid_grant", "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with(code_name), "{description}");
    }
    let stats = mock.stats();
    assert_eq!(stats.rejected_code_verifiers, 2);
    assert_eq!(stats.authorization_code_grants, 5);
    assert_eq!(stats.refresh_tokens_issued, 1);
}

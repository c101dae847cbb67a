//! Every bad answer a token endpoint or gateway can give, through the embedded mock over
//! real TCP: each yields a typed error naming its cause, classified transient or permanent,
//! with no panic and no secret in it; gateway errors pass through untouched.

use crate::common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use common::gateway::{authenticator_for, http_client, workspace};
use http::{StatusCode, header};
use http_body_util::BodyExt;
use serde_json::json;
use tower::{Layer, ServiceExt};
use veracity_auth::{CachePolicy, Error, VeracityAuthLayer};
use veracity_auth_mock::{Fault, MockVeracity, Times};

const SECRET: &str = "s3cr3t-client-secret-value";
/// How long the token fetch may take: generous, so a loaded machine answering a fault (a
/// 10 MiB body, say) slowly never turns it into a timeout. Only the hanging server waits it
/// out, with [`HANG_TIMEOUT`].
const FETCH_TIMEOUT: Duration = Duration::from_secs(20);
const HANG_TIMEOUT: Duration = Duration::from_millis(500);

async fn mock() -> MockVeracity {
    MockVeracity::builder()
        .client("fault-client", SECRET)
        .start()
        .await
        .unwrap()
}

/// Injects `fault` on the next token request and returns the typed error the request got.
async fn token_fault(fault: Fault) -> Error {
    token_fault_within(fault, FETCH_TIMEOUT).await
}

async fn token_fault_within(fault: Fault, fetch_timeout: Duration) -> Error {
    let mock = mock().await;
    mock.fail_token_requests(fault, Times::Once);
    let err = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .cache_policy(CachePolicy::default().fetch_timeout(fetch_timeout))
            .build()
            .unwrap(),
    )
    .layer(http_client())
    .oneshot(workspace(&mock))
    .await
    .expect_err("the token fetch fails");
    let err = *err.downcast::<Error>().expect("the crate's typed error");
    let (display, debug) = (err.to_string(), format!("{err:?}"));
    assert!(
        !display.contains(SECRET) && !debug.contains(SECRET),
        "{display}"
    );
    assert_eq!(mock.stats().api_requests, 0, "nothing reached the gateway");
    err
}

fn names(err: &Error, parts: &[&str]) {
    let message = err.to_string();
    for part in parts {
        assert!(message.contains(part), "{part:?} not in {message:?}");
    }
}

#[tokio::test]
async fn server_errors_are_transient_and_name_the_status() {
    for status in [500u16, 502, 503, 504] {
        let err = token_fault(Fault::status(status)).await;
        assert!(matches!(err, Error::TokenEndpointStatus { status: s, .. } if s == status));
        names(&err, &[&status.to_string()]);
        assert!(!err.is_permanent(), "{status}");
    }
}

#[tokio::test]
async fn throttling_names_retry_after_in_seconds_and_as_a_date() {
    let err = token_fault(Fault::too_many_requests("17")).await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(17)));
    names(&err, &["429", "Retry-After 17s", "text/plain"]);
    assert!(!err.is_permanent());

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let err = token_fault(Fault::too_many_requests(&date)).await;
    let wait = err.retry_after().expect("a date is honoured");
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );
}

#[tokio::test]
async fn oauth_errors_name_error_code_and_trace_id_and_are_classified() {
    let cases = [
        (400, "invalid_scope", 70011, true),
        (401, "invalid_client", 7000215, true),
        (401, "invalid_client", 7000222, true),
        (400, "unauthorized_client", 700016, true),
        (400, "invalid_request", 900144, false),
    ];
    for (status, error, code, permanent) in cases {
        let err = token_fault(Fault::oauth_error(
            status,
            error,
            code,
            "Something is wrong.",
        ))
        .await;
        let oauth = err.oauth().expect("an OAuth error").clone();
        assert_eq!(oauth.error, error);
        assert_eq!(oauth.status.as_u16(), status);
        assert!(oauth.trace_id.is_some() && oauth.correlation_id.is_some());
        names(
            &err,
            &[
                error,
                &format!("AADSTS{code}"),
                oauth.trace_id.as_deref().unwrap(),
            ],
        );
        assert_eq!(err.is_permanent(), permanent, "{error} {code}");
    }
}

#[tokio::test]
async fn a_b2c_error_names_its_aadb2c_code() {
    let fault = Fault::oauth_error(
        400,
        "invalid_request",
        0,
        "AADB2C90081: The specified client_secret does not match the expected value.",
    );
    let err = token_fault(fault).await;
    names(&err, &["invalid_request", "AADB2C90081"]);
    assert_eq!(err.oauth().unwrap().code().as_deref(), Some("AADB2C90081"));
    assert!(
        err.is_permanent(),
        "a wrong secret is permanent in B2C words too"
    );
}

#[tokio::test]
async fn malformed_success_bodies_are_invalid_responses_naming_the_problem() {
    let html = Fault::Respond {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "text/html".into())],
        body: Bytes::from_static(b"<html><body>Sign in</body></html>"),
    };
    let truncated = Fault::Respond {
        status: StatusCode::OK,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(br#"{"token_type":"Bearer","expires_in":3599,"access_tok"#),
    };
    let cases = [
        (html, "text/html"),
        (Fault::status(200), "empty body"),
        (truncated, "not JSON"),
        (
            Fault::json(200, json!({"token_type": "Bearer", "expires_in": 3599})),
            "access_token",
        ),
        (
            Fault::json(200, json!({"access_token": "x", "token_type": "MAC"})),
            "token_type",
        ),
    ];
    for (fault, cause) in cases {
        let err = token_fault(fault).await;
        assert!(matches!(err, Error::InvalidResponse(_)), "{err}");
        names(&err, &[cause]);
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn bad_expires_in_values_are_refused() {
    for value in [
        json!(0),
        json!(-5),
        json!("soon"),
        json!(1e12),
        json!("99999999999999999999"),
    ] {
        let fault = Fault::IssueToken {
            access_token: "a.b.c".into(),
            token_type: "Bearer".into(),
            expires_in: value.clone(),
        };
        let err = token_fault(fault).await;
        assert!(matches!(err, Error::InvalidResponse(_)), "{value}: {err}");
        names(&err, &["expires_in"]);
    }
}

#[tokio::test]
async fn tokens_with_control_characters_are_refused() {
    for token in [
        "a\r\nX-Injected: 1",
        "a\nb",
        "tab\there",
        "nul\u{0}",
        "bell\u{7}",
    ] {
        let fault = Fault::IssueToken {
            access_token: token.into(),
            token_type: "Bearer".into(),
            expires_in: json!(3599),
        };
        let err = token_fault(fault).await;
        assert!(
            matches!(err, Error::InvalidTokenCharacters),
            "{token:?}: {err}"
        );
    }
}

#[tokio::test]
async fn a_10_mib_body_is_refused_at_the_cap() {
    let err = token_fault(Fault::Oversized {
        bytes: 10 * 1024 * 1024,
    })
    .await;
    assert!(
        matches!(err, Error::ResponseTooLarge { limit: 65536 }),
        "{err}"
    );
    names(&err, &["65536"]);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let err = token_fault_within(Fault::Hang, HANG_TIMEOUT).await;
    assert!(
        matches!(err, Error::Timeout(t) if t == HANG_TIMEOUT),
        "{err}"
    );
    names(&err, &["timed out"]);
    assert!(!err.is_permanent());
}

#[tokio::test]
async fn dropped_and_reset_connections_are_transport_errors() {
    for fault in [
        Fault::DropConnection,
        Fault::ResetMidBody {
            status: StatusCode::OK,
            partial: Bytes::from_static(br#"{"access_token":"abc","tok"#),
        },
    ] {
        let err = token_fault(fault).await;
        assert!(matches!(err, Error::Transport(_)), "{err}");
        names(&err, &["token request failed"]);
        assert!(!err.is_permanent());
    }
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let fault = Fault::Respond {
        status: StatusCode::FOUND,
        headers: vec![(
            "location".into(),
            "https://login.example.com/elsewhere".into(),
        )],
        body: Bytes::new(),
    };
    let err = token_fault(fault).await;
    assert!(matches!(err, Error::TokenEndpointStatus { status, .. } if status == 302));
    names(&err, &["302"]);
}

/// Gateway errors that are not about the token pass through untouched, with no fetch.
#[tokio::test]
async fn gateway_quota_rate_limit_and_business_errors_pass_through() {
    let quota = Fault::json(
        403,
        json!({"statusCode": 403, "message": "Out of call volume quota. Quota will be replenished in 00:10:00."}),
    );
    let limit = Fault::too_many_requests("5");
    let business = Fault::json(
        400,
        json!({"type": "BusinessError", "traceId": "00-abc-01"}),
    );
    let mock = mock().await;
    let layer = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .cache_policy(CachePolicy::default().fetch_timeout(FETCH_TIMEOUT))
            .build()
            .unwrap(),
    );
    let api = layer.layer(http_client());
    api.clone().oneshot(workspace(&mock)).await.unwrap();
    for (fault, status) in [(quota, 403u16), (limit, 429), (business, 400)] {
        let expected = match &fault {
            Fault::Respond { body, .. } => body.clone(),
            _ => unreachable!(),
        };
        mock.fail_api_requests(fault, Times::Once);
        let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
        assert_eq!(response.status().as_u16(), status);
        if status == 429 {
            assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, expected, "the body is untouched");
    }
    assert_eq!(
        mock.stats().token_requests,
        1,
        "none of them fetched a token"
    );
    assert_eq!(layer.stats().replays, 0);
}

/// An empty 401 with no challenge is a bearer problem: refresh, replay, succeed.
#[tokio::test]
async fn an_empty_401_refreshes_and_replays() {
    let mock = mock().await;
    let layer = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .cache_policy(CachePolicy::default().fetch_timeout(FETCH_TIMEOUT))
            .build()
            .unwrap(),
    );
    let api = layer.layer(http_client());
    api.clone().oneshot(workspace(&mock)).await.unwrap();
    mock.fail_api_requests(Fault::status(401), Times::Once);
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(mock.stats().token_requests, 2);
    assert_eq!(layer.stats().replays, 1);
}

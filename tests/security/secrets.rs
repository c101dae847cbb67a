//! Secrets never leak: the whole flow (success, token-endpoint failures, 401 replays, a
//! wrong key) runs under a `tracing` subscriber at TRACE that captures everything, and
//! neither the log nor the `Debug`/`Display` of any public type or error contains the
//! client secret, the API key or any token the identity provider issued.

use crate::common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::{gateway::http_client, logs::Captured};
use http::{Request, StatusCode, header::AUTHORIZATION};
use http_body_util::Full;
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};
use veracity_auth::{
    Authenticator, CachePolicy, ClientCredentials, Error, HttpClient, RefreshToken, StaticToken,
    Token, TokenEndpoint, VeracityAuthLayer, token_fn,
};
use veracity_auth_mock::{Fault, MockVeracity, Times};

const SECRET: &str = "client-secret-must-not-leak-7f3a";
const API_KEY: &str = "api-key-must-not-leak-91bc";

#[tokio::test]
async fn no_secret_or_token_appears_in_logs_debug_or_errors() {
    // A current-thread runtime: every task, the mock's included, logs on this thread.
    let (log, _guard) = Captured::on_this_thread(tracing::Level::TRACE);

    let mock = MockVeracity::builder()
        .client("leak-test-client", SECRET)
        .api_key(API_KEY)
        .token_lifetime(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let credentials = ClientCredentials::new(mock.client_id(), SECRET)
        .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap());
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(credentials.clone())
            .api_key(API_KEY)
            .origins([mock.url()])
            .cache_policy(
                CachePolicy::default()
                    .rejection_interval(Duration::ZERO)
                    .backoff(Duration::from_millis(1), Duration::from_millis(1)),
            )
            .build()
            .unwrap(),
    );

    // Every token that goes on the wire is recorded here, to be looked for later.
    let seen_tokens = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = http_client();
    let tap = {
        let seen = Arc::clone(&seen_tokens);
        service_fn(move |req: Request<Full<Bytes>>| {
            if let Some(v) = req.headers().get(AUTHORIZATION) {
                let token = v.to_str().unwrap().trim_start_matches("Bearer ").to_owned();
                seen.lock().unwrap().push(token);
            }
            client.request(req)
        })
    };
    let api = layer.layer(tap);
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let get = || Request::get(&url).body(Full::<Bytes>::default()).unwrap();
    let mut errors: Vec<String> = Vec::new();
    let mut failed = 0;

    // Success, then revocations and replays.
    for round in 0..3 {
        if round > 0 {
            mock.revoke_all_tokens();
        }
        let response = api.clone().oneshot(get()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    // Token-endpoint failures of every kind, each forcing a fetch.
    let failures = [
        Fault::status(503),
        Fault::too_many_requests("0"),
        Fault::oauth_error(
            401,
            "invalid_client",
            7000215,
            &format!("The secret {SECRET} is wrong."),
        ),
        Fault::json(
            400,
            json!({"error": "invalid_request", "error_description": format!("AADB2C90081: got {SECRET}")}),
        ),
        Fault::status(200),
        Fault::IssueToken {
            access_token: "bad\r\ntoken".into(),
            token_type: "Bearer".into(),
            expires_in: json!(3599),
        },
        Fault::IssueToken {
            access_token: "x".into(),
            token_type: "Bearer".into(),
            expires_in: json!("never"),
        },
        Fault::Oversized { bytes: 100_000 },
        Fault::DropConnection,
    ];
    for fault in failures {
        mock.revoke_all_tokens();
        mock.fail_token_requests(fault, Times::Once);
        tokio::time::sleep(Duration::from_millis(2)).await; // past the 1 ms backoff
        match api.clone().oneshot(get()).await {
            Ok(response) => errors.push(format!("{response:?}")),
            Err(e) => {
                failed += 1;
                errors.push(e.to_string());
                errors.push(format!("{e:?}"));
                if let Some(e) = e.downcast_ref::<Error>() {
                    errors.push(format!("{e:#?}"));
                    if let Some(oauth) = e.oauth() {
                        errors.push(format!("{oauth} {oauth:?}"));
                    }
                }
            }
        }
    }
    // The first fault hits the refresh after a 401: that request gets its 401 back (no new
    // token to replay with); every later one has no token left and gets the typed error.
    assert_eq!(failed, 8, "every fault was served: {errors:#?}");
    assert!(
        errors[0].starts_with("Response { status: 401"),
        "{}",
        errors[0]
    );
    mock.clear_faults();
    // A wrong API key: returned as is, logged as a warning without the key.
    let wrong_key = VeracityAuthLayer::new(
        Authenticator::builder(credentials.clone())
            .api_key("wrong-key-also-secret")
            .origins([mock.url()])
            .build()
            .unwrap(),
    );
    let response = wrong_key.layer(http_client()).oneshot(get()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Debug and Display of every public type.
    let static_token = StaticToken::new("static-token-must-not-leak");
    let closure =
        token_fn(|| async { Ok::<_, Error>(Token::new("closure-token-must-not-leak", None)) });
    let mut shown = vec![
        format!("{layer:?}"),
        format!("{api:?}"),
        format!("{credentials:?}"),
        format!("{static_token:?}"),
        format!("{closure:?}"),
        format!("{:?}", Token::new("token-must-not-leak", None)),
        format!("{:?}", HttpClient::default_https()),
        format!("{:?}", layer.stats()),
        format!(
            "{:?}",
            VeracityAuthLayer::new(
                Authenticator::builder(static_token.clone())
                    .api_key(API_KEY)
                    .origins([mock.url()])
                    .build()
                    .unwrap()
            )
        ),
        format!("{mock:?}"),
    ];
    shown.extend(errors);

    let tokens = seen_tokens.lock().unwrap().clone();
    assert!(
        tokens.len() >= 4,
        "tokens were issued and sent: {}",
        tokens.len()
    );
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("token fetched"), "the log captured the flow");
    assert!(log.contains("token fetch failed"));
    assert!(log.contains("replaying"));
    assert!(log.contains("rejected the API key"));

    let mut secrets = vec![
        SECRET.to_owned(),
        API_KEY.to_owned(),
        "wrong-key-also-secret".to_owned(),
        "static-token-must-not-leak".to_owned(),
        "closure-token-must-not-leak".to_owned(),
        "token-must-not-leak".to_owned(),
    ];
    secrets.extend(tokens);
    for secret in &secrets {
        assert!(
            !log.contains(secret.as_str()),
            "{secret} leaked into the log"
        );
        for text in &shown {
            assert!(
                !text.contains(secret.as_str()),
                "{secret} leaked into {text}"
            );
        }
    }
}

#[tokio::test]
async fn debug_of_sources_shows_only_scheme_host_and_path_of_the_token_url() {
    let url = "https://login.example.com/tenant/oauth2/token?code=x";
    let endpoint = TokenEndpoint::new(url).unwrap();
    let credentials = ClientCredentials::new("cc-id", SECRET).endpoint(endpoint.clone());
    let refresh = RefreshToken::new("app-id", "rt-must-not-leak").endpoint(endpoint.clone());
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(credentials.clone())
            .api_key(API_KEY)
            .build()
            .unwrap(),
    );
    for shown in [
        format!("{endpoint:?}"),
        format!("{credentials:?}"),
        format!("{refresh:?}"),
        format!("{layer:?}"),
    ] {
        for hidden in ["code=x", SECRET, "rt-must-not-leak", API_KEY] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }
    assert!(format!("{credentials:?}").contains("https://login.example.com/tenant/oauth2/token"));
    assert!(format!("{refresh:?}").contains("https://login.example.com/tenant/oauth2/token"));
    // A URL with credentials in it is refused when the endpoint is made, with the cause named
    // and the credentials not shown.
    let with_credentials = "https://proxyuser:hunter2@login.example.com/tenant/oauth2/token?code=x";
    for err in [
        TokenEndpoint::new(with_credentials).unwrap_err(),
        TokenEndpoint::plain_http(with_credentials).unwrap_err(),
    ] {
        assert!(
            matches!(err, veracity_auth::ConfigError::InvalidTokenUrl(_)),
            "{err}"
        );
        let shown = format!("{err} {err:?}");
        assert!(
            !shown.contains("proxyuser") && !shown.contains("hunter2") && !shown.contains("code=x"),
            "{shown}"
        );
    }
}

/// A token source that panics with a credential anywhere in its message (a JWT in compact
/// JSON, a refresh token in `Some("…")`, a secret in a form body) is a failed fetch whose
/// error shows none of it: not in `Display`, not in `Debug`, not in the log line the cache
/// writes. The words around the credentials stay.
#[tokio::test]
async fn a_panic_message_never_shows_a_secret_wherever_it_sits() {
    const JWT: &str =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlLXBhcnQtNDI";
    const REFRESH: &str = "0.AXoA8nE2kG3-refresh-token-part-7Qx_Zk";
    // No digits: only its key gives it away.
    const FORM_SECRET: &str = "correct~horse.battery_staple";
    let (log, _guard) = Captured::on_this_thread(tracing::Level::TRACE);

    let cases = [
        (
            format!(r#"unexpected answer {{"access_token":"{JWT}","x":1}}"#),
            "unexpected answer",
        ),
        (
            format!(r#"stored refresh token was Some("{REFRESH}")"#),
            "stored refresh token was Some(",
        ),
        (
            format!("posted a=b&client_secret={FORM_SECRET}&c=d and gave up"),
            "and gave up",
        ),
    ];
    let api = service_fn(|_: Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    });
    let mut shown = Vec::new();
    for (message, kept) in cases {
        let source = token_fn(move || {
            let message = message.clone();
            async move {
                if !message.is_empty() {
                    panic!("{message}");
                }
                Ok::<_, Error>(Token::new("unused", None))
            }
        });
        let err = VeracityAuthLayer::new(Authenticator::builder(source).build().unwrap())
            .layer(api)
            .oneshot(Request::new(()))
            .await
            .unwrap_err();
        let err = *err.downcast::<Error>().unwrap();
        assert!(matches!(err, Error::FetchPanicked(_)), "{err:?}");
        assert!(err.to_string().contains(kept), "{err}");
        shown.push(err.to_string());
        shown.push(format!("{err:?}"));
    }
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("token fetch failed"), "{log}");
    shown.push(log);
    let leaks: Vec<String> = shown
        .iter()
        .flat_map(|text| {
            [
                JWT,
                REFRESH,
                FORM_SECRET,
                "eyJ0eXAi",
                "c2lnbmF0dXJl",
                "battery",
            ]
            .into_iter()
            .filter(|secret| text.contains(secret))
            .map(move |secret| format!("{secret} leaked into {text}"))
        })
        .collect();
    assert!(leaks.is_empty(), "{leaks:#?}");
}

//! The layer over a real hyper-util client against the embedded mock on 127.0.0.1.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::gateway::{Http as HttpClient, http_client, layer_for, workspace};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tokio::task::JoinSet;
use tower::{Layer, ServiceBuilder, ServiceExt};
use veracity_auth::{ClientCredentials, Error, VeracityAuth, VeracityAuthLayer};
use veracity_auth_mock::{Fault, MockVeracity, Times, TokenStyle};

#[tokio::test]
async fn requests_carry_both_headers_and_100_sequential_requests_fetch_one_token() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let layer = layer_for(&mock);
    let api: VeracityAuth<HttpClient> = layer.layer(http_client());
    for _ in 0..100 {
        let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["id"], mock.workspace_id());
    }
    let stats = mock.stats();
    assert_eq!(stats.token_requests, 1);
    assert_eq!(stats.api_ok, 100);
    let seen: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter()
            .all(|r| r.had_token && r.had_key && r.status == StatusCode::OK)
    );
    assert_eq!(layer.stats().fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_on_a_cold_cache_cause_one_token_request() {
    let mock = MockVeracity::start().await.unwrap();
    // A slow identity provider makes sure every request finds the cache cold.
    mock.fail_token_requests(Fault::Delay(Duration::from_millis(200)), Times::Once);
    let api = ServiceBuilder::new()
        .layer(layer_for(&mock))
        .service(http_client());
    let mut calls = JoinSet::new();
    for _ in 0..1000 {
        calls.spawn(api.clone().oneshot(workspace(&mock)));
    }
    while let Some(done) = calls.join_next().await {
        assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(mock.stats().api_ok, 1000);
}

#[tokio::test]
async fn a_wrong_secret_names_invalid_client_and_the_aadsts_code_but_not_the_secret() {
    let mock = MockVeracity::start().await.unwrap();
    let secret = "definitely-the-wrong-secret";
    let layer = VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), secret).token_url(mock.token_url()),
    )
    .api_key(mock.api_key());
    let err = layer
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap_err();
    let err = err.downcast::<Error>().expect("the crate's typed error");
    let message = err.to_string();
    assert!(message.contains("invalid_client"), "{message}");
    assert!(message.contains("AADSTS7000215"), "{message}");
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{err:?}").contains(secret));
    assert!(err.is_permanent());
    assert_eq!(mock.stats().api_requests, 0, "nothing reached the gateway");
}

#[tokio::test]
async fn a_missing_api_key_gives_the_gateways_401_back_unchanged() {
    let mock = MockVeracity::start().await.unwrap();
    let layer = VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(mock.token_url()),
    );
    let response = layer
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("AzureApiManagementKey"),
        "{challenge}"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["statusCode"], 401);
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("subscription key")
    );
    assert_eq!(mock.stats().rejected_missing_key, 1);
}

#[tokio::test]
async fn every_token_response_style_works_end_to_end() {
    // The v2.0 endpoint answers in the configured style.
    for style in [TokenStyle::V2, TokenStyle::B2C, TokenStyle::V1] {
        let mock = MockVeracity::builder()
            .token_style(style)
            .start()
            .await
            .unwrap();
        let layer = VeracityAuthLayer::new(
            ClientCredentials::new(mock.client_id(), mock.client_secret())
                .token_url(mock.token_url_v2())
                .scope(mock.scope()),
        )
        .api_key(mock.api_key());
        let response = layer
            .layer(http_client())
            .oneshot(workspace(&mock))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{style:?}");
    }
    // Azure AD v1: `resource` instead of `scope`, numbers as strings.
    let mock = MockVeracity::start().await.unwrap();
    let layer = VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .token_url(mock.token_url_v1())
            .resource(mock.resource()),
    )
    .api_key(mock.api_key());
    let response = layer
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_datasets_query_posts_json_through_the_layer() {
    let mock = MockVeracity::start().await.unwrap();
    let api = layer_for(&mock).layer(http_client());
    let url = format!(
        "{}/workspaces/{}/datasets/query",
        mock.api_url(),
        mock.workspace_id()
    );
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"pageIndex":1,"pageSize":10}"#,
        )))
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["pageIndex"], 1);
    assert!(json["result"].is_array());
}

#[tokio::test]
async fn debug_output_of_layer_credentials_and_token_shows_no_secret() {
    let layer = VeracityAuthLayer::new(ClientCredentials::new("id", "the-client-secret"))
        .api_key("the-api-key");
    let service = layer.layer(http_client());
    let token = veracity_auth::Token::new("the-access-token", None);
    for debug in [
        format!("{layer:?}"),
        format!("{service:?}"),
        format!("{:?}", ClientCredentials::new("id", "the-client-secret")),
        format!("{token:?}"),
    ] {
        for secret in ["the-client-secret", "the-api-key", "the-access-token"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }
}

#[tokio::test]
async fn a_token_with_crlf_from_the_provider_is_refused_with_a_typed_error() {
    let mock = MockVeracity::start().await.unwrap();
    mock.fail_token_requests(
        Fault::IssueToken {
            access_token: "abc\r\nX-Injected: yes".into(),
            token_type: "Bearer".into(),
            expires_in: serde_json::json!("3599"),
        },
        Times::Once,
    );
    let err = layer_for(&mock)
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap_err();
    let err = err.downcast::<Error>().unwrap();
    assert!(matches!(*err, Error::InvalidTokenCharacters), "{err}");
    assert_eq!(mock.stats().api_requests, 0, "the token was never sent");
}

/// Veracity's documented service-account values (SPEC §1), spelled out.
const V1_PATH: &str = "/dnvglb2cprod.onmicrosoft.com/oauth2/token";
const V2_PATH: &str = "/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token";
const DW_RESOURCE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75";
const DW_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default";

/// The form fields of the one token request the mock recorded, with its path and User-Agent.
fn token_request(mock: &MockVeracity) -> (String, Vec<(String, String)>, Option<String>) {
    let token: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/token"))
        .collect();
    assert_eq!(token.len(), 1, "{token:?}");
    let form = serde_urlencoded::from_bytes(&token[0].body).unwrap();
    (token[0].path.clone(), form, token[0].user_agent.clone())
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn the_default_service_account_sends_veracitys_documented_v1_form() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    // Only the host differs from Veracity's default: the path and form are the crate's.
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .token_url(format!("{}{V1_PATH}", mock.url()));
    let layer = VeracityAuthLayer::new(credentials).api_key(mock.api_key());
    let response = layer
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (path, form, _) = token_request(&mock);
    assert_eq!(path, V1_PATH);
    assert_eq!(field(&form, "resource"), Some(DW_RESOURCE));
    assert_eq!(field(&form, "scope"), None);
    assert_eq!(field(&form, "grant_type"), Some("client_credentials"));
    assert_eq!(
        veracity_auth::DEFAULT_TOKEN_URL,
        format!("https://login.microsoftonline.com{V1_PATH}")
    );
    assert_eq!(veracity_auth::DEFAULT_RESOURCE, DW_RESOURCE);
}

#[tokio::test]
async fn the_v2_form_sends_the_default_scope_and_the_mock_accepts_it() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    // Set in either order, the explicit URL stays.
    for credentials in [
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .token_url(mock.token_url_v2())
            .scope(veracity_auth::DEFAULT_SCOPE),
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .scope(veracity_auth::DEFAULT_SCOPE)
            .token_url(mock.token_url_v2()),
    ] {
        let layer = VeracityAuthLayer::new(credentials).api_key(mock.api_key());
        let response = layer
            .layer(http_client())
            .oneshot(workspace(&mock))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let token: Vec<_> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/token"))
        .collect();
    assert_eq!(token.len(), 2);
    for request in token {
        assert_eq!(request.path, V2_PATH);
        assert_eq!(request.status, StatusCode::OK);
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap();
        assert_eq!(field(&form, "scope"), Some(DW_SCOPE));
        assert_eq!(field(&form, "resource"), None);
    }
    assert_eq!(veracity_auth::DEFAULT_SCOPE, DW_SCOPE);
    assert_eq!(
        veracity_auth::V2_TOKEN_URL,
        format!("https://login.veracity.com{V2_PATH}")
    );
}

#[tokio::test]
async fn a_scope_sent_to_the_v1_endpoint_is_refused_like_azure_ad_does() {
    let mock = MockVeracity::start().await.unwrap();
    // The explicit v1 URL is kept, so the v2.0 parameter goes to the wrong endpoint.
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .token_url(mock.token_url_v1())
        .scope(mock.scope());
    let err = VeracityAuthLayer::new(credentials)
        .api_key(mock.api_key())
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap_err()
        .downcast::<Error>()
        .unwrap();
    let oauth = err.oauth().expect("an OAuth error");
    assert_eq!(oauth.error, "invalid_request");
    assert_eq!(oauth.code().as_deref(), Some("AADSTS900144"));
    // An unknown resource: Azure AD's invalid_resource.
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .token_url(mock.token_url())
        .resource("https://dnvglb2cprod.onmicrosoft.com/not-the-dw-api");
    let err = VeracityAuthLayer::new(credentials)
        .api_key(mock.api_key())
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap_err()
        .downcast::<Error>()
        .unwrap();
    assert_eq!(err.oauth().unwrap().error, "invalid_resource");
    assert_eq!(err.oauth().unwrap().code().as_deref(), Some("AADSTS500011"));
    assert_eq!(mock.stats().api_requests, 0);
    assert_eq!(mock.stats().token_errors, 2);
}

#[tokio::test]
async fn every_token_request_says_it_is_veracity_auth_with_its_version() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let response = layer_for(&mock)
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, _, user_agent) = token_request(&mock);
    assert_eq!(
        user_agent.as_deref(),
        Some(concat!("veracity-auth/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn a_token_url_with_credentials_fails_every_fetch_with_a_typed_error_and_sends_nothing() {
    let mock = MockVeracity::start().await.unwrap();
    let url = mock
        .token_url()
        .replace("http://", "http://url-user:url-pass@");
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(url);
    let api = VeracityAuthLayer::new(credentials)
        .api_key(mock.api_key())
        .backoff(Duration::ZERO, Duration::ZERO)
        .layer(http_client());
    for _ in 0..2 {
        let err = api
            .clone()
            .oneshot(workspace(&mock))
            .await
            .unwrap_err()
            .downcast::<Error>()
            .unwrap();
        assert!(matches!(*err, Error::InvalidTokenUrl(_)), "{err}");
        assert!(err.is_permanent());
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("credentials"), "{shown}");
        assert!(
            !shown.contains("url-user") && !shown.contains("url-pass"),
            "{shown}"
        );
    }
    assert_eq!(mock.stats().token_requests, 0, "no request was sent");
    assert_eq!(mock.stats().api_requests, 0);
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_named_in_the_error_with_its_cause() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let credentials = ClientCredentials::new("id", "the-secret").token_url(format!(
        "http://127.0.0.1:{port}/tenant/oauth2/token?code=not-shown"
    ));
    let err = VeracityAuthLayer::new(credentials)
        .api_key("key")
        .layer(http_client())
        .oneshot(
            Request::get("http://127.0.0.1:1/")
                .body(Full::default())
                .unwrap(),
        )
        .await
        .unwrap_err()
        .downcast::<Error>()
        .unwrap();
    assert!(matches!(*err, Error::Transport(_)), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "token request failed: POST http://127.0.0.1:{port}/tenant/oauth2/token: "
        )),
        "{message}"
    );
    // The cause chain, down to the operating system's refusal.
    assert!(message.contains("Connect"), "{message}");
    assert!(
        message.to_lowercase().contains("connection refused"),
        "{message}"
    );
    assert!(
        !message.contains("code=not-shown") && !message.contains("the-secret"),
        "{message}"
    );
}

/// One authenticator feeds a layer and a hand-rolled (non-tower) client: one token fetch,
/// one set of counters, and the hand-rolled client sends what the layer sends.
#[tokio::test]
async fn one_authenticator_serves_the_layer_and_a_non_tower_client_with_one_fetch() {
    let mock = MockVeracity::start().await.unwrap();
    let auth = veracity_auth::Authenticator::builder(
        ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(mock.token_url()),
    )
    .api_key(mock.api_key())
    .build();
    let layer = VeracityAuthLayer::from(auth.clone());
    let api = layer.layer(http_client());
    assert_eq!(
        api.oneshot(workspace(&mock)).await.unwrap().status(),
        StatusCode::OK
    );

    let mut request = workspace(&mock);
    let generation = auth
        .authorize(request.headers_mut())
        .expect("the layer's request cached a token");
    assert_eq!(generation.get(), 1);
    let response = http_client().request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(layer.stats(), auth.stats());
    assert_eq!(auth.stats().fetches, 1);
}

/// Builder calls configure; the authenticator is built once, on first use, and clones of a
/// layer made before that share it.
#[tokio::test]
async fn clones_of_a_configured_layer_share_one_authenticator_built_on_first_use() {
    let mock = MockVeracity::start().await.unwrap();
    let layer = layer_for(&mock)
        .refresh_ahead(Duration::from_secs(60))
        .fetch_timeout(Duration::from_secs(5));
    let (a, b) = (
        layer.clone().layer(http_client()),
        layer.clone().layer(http_client()),
    );
    for api in [a, b] {
        assert_eq!(
            api.oneshot(workspace(&mock)).await.unwrap().status(),
            StatusCode::OK
        );
    }
    assert_eq!(mock.stats().token_requests, 1);
    // A setting changed after first use gives that layer an authenticator of its own.
    let other = layer.clone().jitter(0.0);
    assert_eq!(other.stats().fetches, 0);
    assert_eq!(layer.stats().fetches, 1);
}

#[tokio::test]
async fn an_oauth_error_names_the_endpoint_that_answered_it() {
    let mock = MockVeracity::start().await.unwrap();
    let credentials = ClientCredentials::new(mock.client_id(), "a-wrong-secret")
        .token_url(format!("{}?tenant-hint=not-shown", mock.token_url()));
    let err = VeracityAuthLayer::new(credentials)
        .api_key(mock.api_key())
        .layer(http_client())
        .oneshot(workspace(&mock))
        .await
        .unwrap_err()
        .downcast::<Error>()
        .unwrap();
    let oauth = err.oauth().expect("an OAuth error");
    assert_eq!(oauth.error, "invalid_client");
    let endpoint = mock.token_url();
    assert_eq!(oauth.endpoint.as_deref(), Some(endpoint.as_str()));
    let message = err.to_string();
    assert!(message.contains(&format!("from {endpoint}")), "{message}");
    assert!(
        !message.contains("not-shown") && !message.contains("a-wrong-secret"),
        "{message}"
    );
}

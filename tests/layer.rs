//! The layer over a real hyper-util client against the embedded mock on 127.0.0.1.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::task::JoinSet;
use tower::{Layer, ServiceBuilder, ServiceExt};
use veracity_auth::{
    ClientCredentials, Error, VeracityAuth, VeracityAuthLayer,
    mock::{Fault, MockVeracity, Times, TokenStyle},
};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn layer_for(mock: &MockVeracity) -> VeracityAuthLayer {
    VeracityAuthLayer::new(
        ClientCredentials::new(mock.client_id(), mock.client_secret()).token_url(mock.token_url()),
    )
    .api_key(mock.api_key())
}

fn workspace(mock: &MockVeracity) -> Request<Full<Bytes>> {
    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    Request::get(url).body(Full::default()).unwrap()
}

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
    for style in [TokenStyle::V2, TokenStyle::B2C, TokenStyle::V1] {
        let mock = MockVeracity::builder()
            .token_style(style)
            .start()
            .await
            .unwrap();
        let api = layer_for(&mock).layer(http_client());
        let response = api.oneshot(workspace(&mock)).await.unwrap();
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

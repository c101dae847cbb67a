//! The layer over a real hyper-util client against the embedded mock on 127.0.0.1.

use crate::common;
use crate::common::account::numbered_tokens;
use crate::common::account::workspace_error;
use crate::common::account::workspace_status;
use crate::common::account::{for_mock, layer_over};
use veracity_auth::TokenEndpoint;

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use common::elsewhere::{Elsewhere, LANDED, has_credentials, redirect_to};
use common::gateway::{
    authenticator_for, get_workspace, http_client, layer_for, recording_mock, workspace,
};
use futures_util::StreamExt;
use http::{Request, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::task::JoinSet;
use tower::{Layer, ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;
use veracity_auth::{
    API_KEY_HEADER, Authenticator, CachePolicy, ClientCredentials, Error, VeracityAuthLayer,
};
use veracity_auth_mock::{Fault, MockVeracity, Times, TokenStyle};

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
async fn a_missing_api_key_gives_the_gateways_401_back_unchanged() {
    let mock = MockVeracity::start().await.unwrap();
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(
            ClientCredentials::new(mock.client_id(), mock.client_secret())
                .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        )
        .origins([mock.url()])
        .build()
        .unwrap(),
    );
    let response = get_workspace(&layer, &mock).await.unwrap();
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
        let layer = layer_over(
            ClientCredentials::new(mock.client_id(), mock.client_secret())
                .endpoint(TokenEndpoint::plain_http(mock.token_url_v2()).unwrap())
                .scope(mock.scope()),
            &mock,
        );
        let response = get_workspace(&layer, &mock).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{style:?}");
    }
    // Azure AD v1: `resource` instead of `scope`, numbers as strings.
    let mock = MockVeracity::start().await.unwrap();
    let layer = layer_over(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url_v1()).unwrap())
            .resource(mock.resource()),
        &mock,
    );
    let response = get_workspace(&layer, &mock).await.unwrap();
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
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(ClientCredentials::new("id", "the-client-secret"))
            .api_key("the-api-key")
            .build()
            .unwrap(),
    );
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
    let err = get_workspace(&layer_for(&mock), &mock).await.unwrap_err();
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
    let mock = recording_mock().await;
    // Only the host differs from Veracity's default: the path and form are the crate's.
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .endpoint(TokenEndpoint::plain_http(format!("{}{V1_PATH}", mock.url())).unwrap());
    let layer = layer_over(credentials, &mock);
    let response = get_workspace(&layer, &mock).await.unwrap();
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
    let mock = recording_mock().await;
    // Set in either order, the explicit URL stays.
    for credentials in [
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url_v2()).unwrap())
            .scope(veracity_auth::DEFAULT_SCOPE),
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .scope(veracity_auth::DEFAULT_SCOPE)
            .endpoint(TokenEndpoint::plain_http(mock.token_url_v2()).unwrap()),
    ] {
        let layer = layer_over(credentials, &mock);
        let response = get_workspace(&layer, &mock).await.unwrap();
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
        .endpoint(TokenEndpoint::plain_http(mock.token_url_v1()).unwrap())
        .scope(mock.scope());
    let err = workspace_error(&layer_over(credentials, &mock), &mock).await;
    let oauth = err.oauth().expect("an OAuth error");
    assert_eq!(oauth.error, "invalid_request");
    assert_eq!(oauth.code().as_deref(), Some("AADSTS900144"));
    // An unknown resource: Azure AD's invalid_resource.
    let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
        .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap())
        .resource("https://dnvglb2cprod.onmicrosoft.com/not-the-dw-api");
    let err = workspace_error(&layer_over(credentials, &mock), &mock).await;
    assert_eq!(err.oauth().unwrap().error, "invalid_resource");
    assert_eq!(err.oauth().unwrap().code().as_deref(), Some("AADSTS500011"));
    assert_eq!(mock.stats().api_requests, 0);
    assert_eq!(mock.stats().token_errors, 2);
}

#[tokio::test]
async fn every_token_request_says_it_is_veracity_auth_with_its_version() {
    let mock = recording_mock().await;
    let response = get_workspace(&layer_for(&mock), &mock).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (_, _, user_agent) = token_request(&mock);
    assert_eq!(
        user_agent.as_deref(),
        Some(concat!("veracity-auth/", env!("CARGO_PKG_VERSION")))
    );
}

#[tokio::test]
async fn a_token_url_with_credentials_is_refused_with_a_typed_error_and_sends_nothing() {
    let mock = MockVeracity::start().await.unwrap();
    let url = mock
        .token_url()
        .replace("http://", "http://url-user:url-pass@");
    // Refused when the endpoint is made: no grant, layer or request can carry it.
    let err = TokenEndpoint::plain_http(url).unwrap_err();
    assert!(
        matches!(err, veracity_auth::ConfigError::InvalidTokenUrl(_)),
        "{err}"
    );
    assert!(Error::from(err.clone()).is_permanent());
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("credentials"), "{shown}");
    assert!(
        !shown.contains("url-user") && !shown.contains("url-pass"),
        "{shown}"
    );
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
    let credentials = ClientCredentials::new("id", "the-secret").endpoint(
        TokenEndpoint::plain_http(format!(
            "http://127.0.0.1:{port}/tenant/oauth2/token?code=not-shown"
        ))
        .unwrap(),
    );
    let err = VeracityAuthLayer::new(
        Authenticator::builder(credentials)
            .api_key("key")
            .origins(["http://127.0.0.1:1"])
            .build()
            .unwrap(),
    )
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
    // `Display` says what failed; each cause is a `source()`, shown once by `{:#}`.
    assert_eq!(err.to_string(), "token request failed");
    let message = format!("{:#}", anyhow::Error::from(*err));
    assert!(
        message.starts_with(&format!(
            "token request failed: POST http://127.0.0.1:{port}/tenant/oauth2/token: "
        )),
        "{message}"
    );
    // The cause chain, down to the operating system's refusal, each cause once.
    let causes: Vec<&str> = message.split(": ").collect();
    for (i, cause) in causes.iter().enumerate() {
        assert!(
            !causes[i + 1..].contains(cause),
            "{cause:?} twice in {message}"
        );
    }
    assert_eq!(message.matches("(Connect)").count(), 1, "{message}");
    assert_eq!(
        message.to_lowercase().matches("connection refused").count(),
        1,
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
    let auth = for_mock(
        ClientCredentials::new(mock.client_id(), mock.client_secret())
            .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        &mock,
    )
    .build()
    .unwrap();
    let layer = VeracityAuthLayer::new(auth.clone());
    let api = layer.layer(http_client());
    assert_eq!(workspace_status(&api, &mock).await, StatusCode::OK);

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

/// A layer is a built value: its clones, and the services they build, share one
/// authenticator.
#[tokio::test]
async fn clones_of_a_configured_layer_share_one_authenticator() {
    let mock = MockVeracity::start().await.unwrap();
    let layer = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .cache_policy(
                CachePolicy::default()
                    .refresh_ahead(Duration::from_secs(60))
                    .fetch_timeout(Duration::from_secs(5)),
            )
            .build()
            .unwrap(),
    );
    let (a, b) = (
        layer.clone().layer(http_client()),
        layer.clone().layer(http_client()),
    );
    for api in [a, b] {
        assert_eq!(workspace_status(&api, &mock).await, StatusCode::OK);
    }
    assert_eq!(mock.stats().token_requests, 1);
    assert_eq!(layer.stats().fetches, 1);
}

#[tokio::test]
async fn an_oauth_error_names_the_endpoint_that_answered_it() {
    let mock = MockVeracity::start().await.unwrap();
    let credentials = ClientCredentials::new(mock.client_id(), "a-wrong-secret").endpoint(
        TokenEndpoint::plain_http(format!("{}?tenant-hint=not-shown", mock.token_url())).unwrap(),
    );
    let err = workspace_error(&layer_over(credentials, &mock), &mock).await;
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

// === The layer leaves types alone ===

/// A test double answering `Response<()>`, the smallest response there is: the default layer
/// (replay on) answers the same type, and still replays a bare 401 once, with a new token.
#[tokio::test]
async fn an_inner_service_answering_unit_responses_composes_with_the_default_layer() {
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(numbered_tokens())
            .api_key("key")
            .build()
            .unwrap(),
    );
    let inner = tower::service_fn(|request: Request<()>| async move {
        let mut response = http::Response::new(());
        if request.headers()[header::AUTHORIZATION] == "Bearer tok-1" {
            *response.status_mut() = StatusCode::UNAUTHORIZED;
        }
        Ok::<_, Infallible>(response)
    });
    let api = layer.layer(inner);
    let response: http::Response<()> = api
        .oneshot(Request::get("https://api.veracity.com/x").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let stats = layer.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1), "{stats:?}");
}

// === A bare 401 is decided by its head ===

/// A gateway that sends a bare 401's head and then stalls its body until the test ends: the
/// head alone decides, so the replay's answer comes while that body still stalls.
#[tokio::test]
async fn a_bare_401_whose_body_stalls_is_replayed_without_waiting_for_its_body() {
    let (hold, held) = tokio::sync::oneshot::channel::<()>();
    let held = Arc::new(Mutex::new(Some((hold, held))));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let held = held.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let first = req.headers()[header::AUTHORIZATION] == "Bearer tok-1";
                let body = if first {
                    // The start of a body, then nothing until the test ends.
                    let (hold, held) = held.lock().unwrap().take().unwrap();
                    let start = futures_util::stream::once(async {
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"statusCode\":")))
                    });
                    let stall = futures_util::stream::once(async move {
                        let _ = held.await;
                        drop(hold);
                        Ok::<_, Infallible>(Frame::data(Bytes::new()))
                    });
                    StreamBody::new(start.chain(stall)).boxed_unsync()
                } else {
                    Full::new(Bytes::from_static(b"ok")).boxed_unsync()
                };
                let mut response = http::Response::new(body);
                if first {
                    *response.status_mut() = StatusCode::UNAUTHORIZED;
                }
                std::future::ready(Ok::<_, Infallible>(response))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(numbered_tokens())
            .origins([&url])
            .build()
            .unwrap(),
    );
    let response = layer
        .layer(http_client())
        .oneshot(Request::get(&url).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        "ok"
    );
    assert_eq!((layer.stats().fetches, layer.stats().replays), (2, 1));
}

/// A bare 401 whose body is cut mid-way: the head alone decides, the body is never read, and
/// the replay's answer is the caller's.
#[tokio::test]
async fn a_bare_401_whose_body_fails_is_replayed_by_its_head_alone() {
    let mock = MockVeracity::start().await.unwrap();
    let layer = layer_for(&mock);
    let api = layer.layer(http_client());
    assert_eq!(workspace_status(&api, &mock).await, StatusCode::OK);
    mock.fail_api_requests(
        Fault::ResetMidBody {
            status: StatusCode::UNAUTHORIZED,
            partial: Bytes::from_static(br#"{"statusCode":401,"message":"Access den"#),
        },
        Times::Once,
    );
    let response = api.oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    let stats = layer.stats();
    assert_eq!((stats.fetches, stats.replays), (2, 1), "{stats:?}");
    assert_eq!(mock.stats().api_ok, 2);
}

// === Credentials only for their origins ===

/// A default layer (no origins named) sends credentials to Veracity's gateway alone: a 302
/// from `https://api.veracity.com` to another host, followed by tower-http's `FollowRedirect`
/// outside the layer, reaches that host with neither the token nor the API key.
#[tokio::test]
async fn a_redirect_from_veracity_followed_outside_a_default_layer_carries_no_credentials() {
    let elsewhere = Elsewhere::start().await;
    let landing = format!("{}/landing", elsewhere.url());
    let at_gateway: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let record = at_gateway.clone();
    let client = http_client();
    // Stands in for the network: Veracity's gateway redirects, anything else is real.
    let network = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let (client, record, landing) = (client.clone(), record.clone(), landing.clone());
        async move {
            if request.uri().host() == Some("api.veracity.com") {
                record.lock().unwrap().push(request.headers().clone());
                let moved = http::Response::builder()
                    .status(StatusCode::FOUND)
                    .header(header::LOCATION, landing)
                    .body(Full::default())
                    .unwrap();
                return Ok::<_, tower::BoxError>(moved.map(|b| b.map_err(|e| match e {}).boxed()));
            }
            let response = client.request(request).await?;
            Ok(response.map(|b| b.map_err(tower::BoxError::from).boxed()))
        }
    });
    let authenticator = Authenticator::builder(veracity_auth::StaticToken::new("veracity-token"))
        .api_key("veracity-key")
        .build()
        .unwrap();
    let api = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(VeracityAuthLayer::new(authenticator))
        .service(network);
    let request = Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces")
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let at_gateway = at_gateway.lock().unwrap().clone();
    assert_eq!(at_gateway.len(), 1);
    assert_eq!(
        at_gateway[0][header::AUTHORIZATION],
        "Bearer veracity-token"
    );
    assert_eq!(at_gateway[0][API_KEY_HEADER], "veracity-key");
    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 1);
    assert!(!has_credentials(&seen[0]), "{:?}", seen[0]);
}

/// tower-http's `FollowRedirect` outside the layer follows the gateway's 302 to another
/// origin (another port; then `localhost` for the gateway's own `127.0.0.1`): neither the
/// token nor the API key goes there, and the other origin's 401 is not acted on.
#[tokio::test]
async fn a_redirect_followed_outside_the_layer_to_another_origin_carries_no_credentials() {
    let mock = recording_mock().await;
    let elsewhere = Elsewhere::start().await;
    let layer = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .origins([mock.url()])
            .build()
            .unwrap(),
    );
    let api = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .layer(layer.clone())
        .service(http_client());

    mock.fail_api_requests(
        redirect_to(&format!("{}/landing", elsewhere.url())),
        Times::Once,
    );
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.into_body().collect().await.unwrap().to_bytes(),
        LANDED
    );
    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 1);
    assert!(!has_credentials(&seen[0]), "{:?}", seen[0]);
    let sent = mock.requests();
    let gateway: Vec<_> = sent
        .iter()
        .filter(|r| r.path.contains("/workspaces/"))
        .collect();
    assert!(
        gateway[0].had_token && gateway[0].had_key,
        "the gateway had both"
    );

    // `localhost` is another origin than `127.0.0.1`, even on the same port.
    let port = mock.addr().port();
    let same_server = format!(
        "http://localhost:{port}/veracity/dw/gateway/api/v2/workspaces/{}",
        mock.workspace_id()
    );
    mock.fail_api_requests(redirect_to(&same_server), Times::Once);
    let response = api.oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "no key went to localhost"
    );
    assert_eq!(mock.stats().rejected_missing_key, 1);
    let stats = layer.stats();
    assert_eq!(
        (stats.fetches, stats.replays, stats.replay_refreshes),
        (1, 0, 0),
        "{stats:?}"
    );
}

/// Headers copied from a request the layer authorized (as a redirect follower below another
/// stack might copy them) lose this layer's credentials on the way to another origin;
/// values of your own for that origin stay.
#[tokio::test]
async fn the_layers_own_credentials_copied_to_another_origin_are_removed_and_yours_stay() {
    let mock = MockVeracity::start().await.unwrap();
    let elsewhere = Elsewhere::start().await;
    let sent: Arc<Mutex<Option<http::HeaderMap>>> = Arc::default();
    let record = sent.clone();
    let client = http_client();
    let recording = tower::service_fn(move |request: Request<Full<Bytes>>| {
        *record.lock().unwrap() = Some(request.headers().clone());
        client.request(request)
    });
    let api = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .origins([mock.url()])
            .build()
            .unwrap(),
    )
    .layer(recording);
    let response = api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let copied = sent.lock().unwrap().take().expect("the layer's request");
    assert!(copied[header::AUTHORIZATION].is_sensitive());

    let mut request = Request::get(format!("{}/copied", elsewhere.url()))
        .body(Full::default())
        .unwrap();
    *request.headers_mut() = copied.clone();
    api.clone().oneshot(request).await.unwrap();

    let mut own_token = http::HeaderValue::from_static("Bearer a-token-of-yours");
    own_token.set_sensitive(true);
    let request = Request::get(format!("{}/yours", elsewhere.url()))
        .header(header::AUTHORIZATION, own_token)
        .header(API_KEY_HEADER, "a-key-of-yours")
        .body(Full::default())
        .unwrap();
    api.oneshot(request).await.unwrap();

    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 2);
    assert!(!has_credentials(&seen[0]), "{:?}", seen[0]);
    assert_eq!(seen[1][header::AUTHORIZATION], "Bearer a-token-of-yours");
    assert_eq!(seen[1][API_KEY_HEADER], "a-key-of-yours");
}

/// A value that is not an origin, or an empty list, is refused where the authenticator is
/// built, with a configuration error naming it; nothing is sent anywhere.
#[tokio::test]
async fn an_origin_that_is_not_one_is_refused_at_build_naming_it_and_nothing_is_sent() {
    let mock = MockVeracity::start().await.unwrap();
    let err = authenticator_for(&mock)
        .origins(["api.veracity.com"])
        .build()
        .unwrap_err();
    assert!(
        matches!(err, veracity_auth::ConfigError::Origin(_)),
        "{err:?}"
    );
    assert!(err.to_string().contains("`api.veracity.com`"), "{err}");
    let empty = authenticator_for(&mock)
        .origins(Vec::<String>::new())
        .build();
    assert!(
        matches!(empty, Err(veracity_auth::ConfigError::Origin(_))),
        "{empty:?}"
    );
    let seen = mock.stats();
    assert_eq!((seen.token_requests, seen.api_requests), (0, 0));
}

/// `without_replay()` keeps credentials to their origins too, and answers with the inner
/// client's response type unchanged.
#[tokio::test]
async fn without_replay_credentials_also_go_only_to_their_origins() {
    let mock = MockVeracity::start().await.unwrap();
    let elsewhere = Elsewhere::start().await;
    let api = VeracityAuthLayer::new(
        authenticator_for(&mock)
            .origins([mock.url()])
            .build()
            .unwrap(),
    )
    .without_replay()
    .layer(http_client());
    let ours: http::Response<hyper::body::Incoming> =
        api.clone().oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(ours.status(), StatusCode::OK);
    let request = Request::get(elsewhere.url()).body(Full::default()).unwrap();
    let theirs: http::Response<hyper::body::Incoming> = api.oneshot(request).await.unwrap();
    assert_eq!(
        theirs.into_body().collect().await.unwrap().to_bytes(),
        LANDED
    );
    let seen = elsewhere.seen();
    assert_eq!(seen.len(), 1);
    assert!(!has_credentials(&seen[0]), "{:?}", seen[0]);
}

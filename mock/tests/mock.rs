//! Tests of the embedded Veracity mock over real TCP with a minimal hyper client.

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use veracity_auth_mock::{Fault, InvalidKeyAnswer, MockVeracity, Times, TokenStyle};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming request body of unknown length (sent chunked), one frame per chunk.
struct Chunks(std::collections::VecDeque<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(
            self.get_mut()
                .0
                .pop_front()
                .map(|c| Ok(http_body::Frame::data(c))),
        )
    }
}

#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("missing header {name}"))
    }
}

/// Sends one request on a fresh connection to `mock` and reads the whole response.
async fn send<B>(mock: &MockVeracity, mut req: Request<B>) -> Result<Reply, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    req.headers_mut()
        .insert(HOST, mock.addr().to_string().parse().expect("host"));
    let stream = TcpStream::connect(mock.addr()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

fn form(path: &str, fields: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let body = serde_urlencoded::to_string(fields).expect("form");
    Request::post(path)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("request")
}

fn path_of(url: &str) -> String {
    let uri: http::Uri = url.parse().expect("uri");
    uri.path().to_owned()
}

const V2_PATH: &str = "/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token";
const V1_PATH: &str = "/dnvglb2cprod.onmicrosoft.com/oauth2/token";
/// Veracity's documented values (SPEC §1), spelled out rather than taken from the crate.
const DW_RESOURCE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75";
const DW_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default";

fn creds<'a>(mock: &'a MockVeracity, extra: (&'a str, &'a str)) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "client_credentials"),
        ("client_id", mock.client_id()),
        ("client_secret", mock.client_secret()),
        extra,
    ]
}

async fn token_reply(mock: &MockVeracity) -> Reply {
    send(mock, form(V2_PATH, &creds(mock, ("scope", mock.scope()))))
        .await
        .expect("token request")
}

async fn token(mock: &MockVeracity) -> String {
    let reply = token_reply(mock).await;
    assert_eq!(reply.status, StatusCode::OK);
    reply.json()["access_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

fn api_path(rest: &str) -> String {
    format!("/veracity/dw/gateway/api/v2{rest}")
}

async fn api(
    mock: &MockVeracity,
    method: Method,
    path: &str,
    key: Option<&str>,
    token: Option<&str>,
    body: impl Into<Bytes>,
) -> Result<Reply, BoxError> {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(key) = key {
        req = req.header("Ocp-Apim-Subscription-Key", key);
    }
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req.body(Full::new(body.into())).expect("request");
    send(mock, req).await
}

async fn get_ws(mock: &MockVeracity, token: Option<&str>) -> Reply {
    let path = api_path(&format!("/workspaces/{}", mock.workspace_id()));
    api(mock, Method::GET, &path, Some(mock.api_key()), token, "")
        .await
        .expect("api request")
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn urls_and_defaults() {
    let mock = MockVeracity::start().await.unwrap();
    let url = mock.url();
    assert_eq!(url, format!("http://127.0.0.1:{}", mock.addr().port()));
    // The default token URL is the v1 one, as for `ClientCredentials`.
    assert_eq!(mock.token_url(), format!("{url}{V1_PATH}"));
    assert_eq!(mock.token_url_v1(), format!("{url}{V1_PATH}"));
    assert_eq!(mock.token_url_v2(), format!("{url}{V2_PATH}"));
    assert_eq!(mock.api_url(), format!("{url}/veracity/dw/gateway/api/v2"));
    assert_eq!(path_of(&mock.token_url_v2()), V2_PATH);
    assert_eq!(mock.client_id(), "mock-client-id");
    assert_eq!(mock.client_secret(), "mock-client-secret");
    assert_eq!(mock.api_key(), "mock-api-key");
    assert_eq!(
        mock.scope(),
        "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default"
    );
    assert_eq!(
        mock.resource(),
        "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75"
    );
    assert_eq!(mock.workspace_id(), "00000000-0000-0000-0000-00000000c0de");
    assert!(!format!("{mock:?}").contains("secret"));
}

#[tokio::test]
async fn token_v2_style() {
    let mock = MockVeracity::start().await.unwrap();
    let reply = token_reply(&mock).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.json();
    assert_eq!(
        sorted_keys(&body),
        ["access_token", "expires_in", "ext_expires_in", "token_type"]
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);
    let first = body["access_token"].as_str().unwrap().to_owned();
    assert!(first.starts_with("mock-at-"));
    assert_ne!(first, token(&mock).await);
    let stats = mock.stats();
    assert_eq!(
        (
            stats.token_requests,
            stats.tokens_issued,
            stats.token_errors
        ),
        (2, 2, 0)
    );
}

#[tokio::test]
async fn token_b2c_style_and_lifetime() {
    let mock = MockVeracity::builder()
        .token_style(TokenStyle::B2C)
        .token_lifetime(Duration::from_secs(120))
        .start()
        .await
        .unwrap();
    let body = token_reply(&mock).await.json();
    assert_eq!(
        sorted_keys(&body),
        [
            "access_token",
            "expires_in",
            "expires_on",
            "ext_expires_in",
            "not_before",
            "resource",
            "token_type"
        ]
    );
    assert_eq!(body["expires_in"], 120);
    let nbf = body["not_before"].as_u64().unwrap();
    assert_eq!(body["expires_on"].as_u64().unwrap(), nbf + 120);
    assert_eq!(body["resource"], mock.resource());

    mock.set_token_lifetime(Duration::from_millis(1500));
    mock.set_token_style(TokenStyle::V2);
    let body = token_reply(&mock).await.json();
    assert_eq!(body["expires_in"], 1);
    assert!(body.get("not_before").is_none());
}

#[tokio::test]
async fn token_v1_style_and_path() {
    let mock = MockVeracity::start().await.unwrap();
    let reply = send(
        &mock,
        form(V1_PATH, &creds(&mock, ("resource", mock.resource()))),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    assert_eq!(body["expires_in"], "3600");
    assert_eq!(body["ext_expires_in"], "3600");
    let nbf: u64 = body["not_before"].as_str().unwrap().parse().unwrap();
    let exp: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert_eq!(exp, nbf + 3600);
    assert_eq!(body["token_type"], "Bearer");
    // The v1 token works at the gateway.
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(get_ws(&mock, Some(token)).await.status, StatusCode::OK);

    // The v1 style on the v2 path too.
    mock.set_token_style(TokenStyle::V1);
    assert_eq!(token_reply(&mock).await.json()["expires_in"], "3600");
    // The v1 path wants `resource`, not `scope`: a v2.0-style request is missing it.
    let reply = send(&mock, form(V1_PATH, &creds(&mock, ("scope", mock.scope()))))
        .await
        .unwrap();
    assert_oauth_error(&reply, 400, "invalid_request", 900144);
    assert!(
        reply.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("'resource'")
    );
}

fn assert_oauth_error(reply: &Reply, status: u16, error: &str, code: u64) {
    assert_eq!(reply.status.as_u16(), status, "{reply:?}");
    assert_eq!(reply.header("content-type"), "application/json");
    let body = reply.json();
    assert_eq!(body["error"], error);
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!("AADSTS{code}: ")),
        "{description}"
    );
    assert_eq!(body["error_codes"], json!([code]));
    for field in ["timestamp", "trace_id", "correlation_id"] {
        assert!(body[field].is_string(), "{field}");
    }
    assert_eq!(body["trace_id"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn token_errors() {
    let mock = MockVeracity::builder()
        .client("svc-a", "secret-a")
        .client("svc-b", "secret-b1")
        .client("svc-b", "secret-b2")
        .start()
        .await
        .unwrap();
    let scope = mock.scope().to_owned();
    let ok = |id: &'static str, secret: &'static str| {
        form(
            V2_PATH,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", id),
                ("client_secret", secret),
                ("scope", scope.as_str()),
            ],
        )
    };
    assert_eq!(mock.client_id(), "svc-a");
    // The default account is replaced; both secrets of svc-b work.
    assert_eq!(
        send(&mock, ok("svc-b", "secret-b2")).await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(
        send(&mock, ok("svc-b", "secret-b1")).await.unwrap().status,
        StatusCode::OK
    );

    let r = send(&mock, ok("mock-client-id", "mock-client-secret"))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "unauthorized_client", 700016);

    let r = send(&mock, ok("svc-a", "wrong-secret-value"))
        .await
        .unwrap();
    assert_oauth_error(&r, 401, "invalid_client", 7000215);
    assert!(!String::from_utf8_lossy(&r.body).contains("wrong-secret-value"));

    let base = [
        ("grant_type", "client_credentials"),
        ("client_id", "svc-a"),
        ("client_secret", "secret-a"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut fields = base.to_vec();
        fields.extend_from_slice(extra);
        form(V2_PATH, &fields)
    };
    // A `.default` scope of an API the tenant does not know: Azure AD's unknown resource.
    let r = send(&mock, with(&[("scope", "https://example.com/.default")]))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "invalid_resource", 500011);
    // Anything else that is not the documented scope: an invalid scope.
    for bad in [
        "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75",
        "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/user_impersonation",
    ] {
        let r = send(&mock, with(&[("scope", bad)])).await.unwrap();
        assert_oauth_error(&r, 400, "invalid_scope", 70011);
    }
    // The v2.0 path wants `scope`: a v1-style request is missing it.
    let r = send(&mock, with(&[])).await.unwrap();
    assert_oauth_error(&r, 400, "invalid_request", 900144);
    let r = send(&mock, with(&[("resource", DW_RESOURCE)]))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "invalid_request", 900144);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("'scope'")
    );
    let r = send(
        &mock,
        form(
            V1_PATH,
            &[base[0], base[1], base[2], ("resource", "https://nope")],
        ),
    )
    .await
    .unwrap();
    assert_oauth_error(&r, 400, "invalid_resource", 500011);
    assert!(
        r.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("https://nope")
    );
    // The documented values are accepted on their own paths.
    let r = send(
        &mock,
        form(
            V1_PATH,
            &[base[0], base[1], base[2], ("resource", DW_RESOURCE)],
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    let r = send(&mock, with(&[("scope", DW_SCOPE)])).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);

    let r = send(
        &mock,
        form(V2_PATH, &[("grant_type", "password"), base[1], base[2]]),
    )
    .await
    .unwrap();
    assert_oauth_error(&r, 400, "unsupported_grant_type", 70003);
    let r = send(&mock, form(V2_PATH, &[base[1], base[2]]))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "unsupported_grant_type", 70003);

    let r = send(&mock, form(V2_PATH, &[base[0], base[2]]))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "invalid_request", 900144);
    let r = send(&mock, form(V2_PATH, &[base[0], base[1]]))
        .await
        .unwrap();
    assert_oauth_error(&r, 400, "invalid_request", 900144);
    let json_body = Request::post(V2_PATH)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(
            b"{\"grant_type\":\"client_credentials\"}",
        )))
        .unwrap();
    let r = send(&mock, json_body).await.unwrap();
    assert_oauth_error(&r, 400, "invalid_request", 900144);
    let get = Request::get(V2_PATH).body(Full::new(Bytes::new())).unwrap();
    let r = send(&mock, get).await.unwrap();
    assert_eq!(r.json()["error"], "invalid_request");

    let stats = mock.stats();
    assert_eq!(stats.token_requests, 18);
    assert_eq!(stats.tokens_issued, 4);
    assert_eq!(stats.token_errors, 14);
}

const REALM_SUFFIX: &str =
    "/veracity/dw/gateway\",name=\"Ocp-Apim-Subscription-Key\",type=\"header\"";

#[tokio::test]
async fn gateway_checks_key_then_bearer() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let token = token(&mock).await;
    let path = api_path(&format!("/workspaces/{}", mock.workspace_id()));
    let challenge = format!("AzureApiManagementKey realm=\"{}{REALM_SUFFIX}", mock.url());

    // No key (and no token): the key problem wins.
    let r = api(&mock, Method::GET, &path, None, None, "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), challenge);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({"statusCode":401,"message":"Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API."})
    );
    assert!(!r.header("x-correlation-id").is_empty());

    // Wrong key with a valid token.
    let r = api(&mock, Method::GET, &path, Some("nope"), Some(&token), "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), challenge);
    assert_eq!(
        r.json(),
        json!({"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."})
    );

    // Right key, then the bearer problems.
    let key = Some(mock.api_key());
    for bad in [
        None,
        Some("Basic Zm9vOmJhcg=="),
        Some("Bearer "),
        Some("Bearer mock-at-1-0000000000000000"),
    ] {
        let mut req =
            Request::get(path.as_str()).header("Ocp-Apim-Subscription-Key", mock.api_key());
        if let Some(auth) = bad {
            req = req.header(AUTHORIZATION, auth);
        }
        let r = send(&mock, req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.header("www-authenticate"),
            "Bearer error=\"invalid_token\""
        );
        assert!(r.body.is_empty());
        assert!(!r.header("x-correlation-id").is_empty());
    }

    let r = api(&mock, Method::GET, &path, key, Some(&token), "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["id"], mock.workspace_id());
    assert_eq!(r.json()["name"], "Mock workspace");
    assert!(!r.header("x-correlation-id").is_empty());

    let s = mock.stats();
    assert_eq!(s.api_requests, 7);
    assert_eq!(s.api_ok, 1);
    assert_eq!(s.rejected_missing_key, 1);
    assert_eq!(s.rejected_wrong_key, 1);
    assert_eq!(s.rejected_missing_token, 3);
    assert_eq!(s.rejected_unknown_token, 1);
    assert_eq!(s.rejected_expired_token + s.rejected_revoked_token, 0);

    let log = mock.requests();
    assert_eq!(log.len(), 8);
    assert_eq!(log[0].path, V2_PATH);
    assert_eq!(log[0].status, StatusCode::OK);
    assert!(!log[1].had_key && !log[1].had_token);
    assert!(log[2].had_key && log[2].had_token);
    assert_eq!(log[7].status, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_key_can_get_the_body_alone_and_a_missing_key_keeps_the_challenge() {
    let mock = MockVeracity::builder()
        .invalid_key_answer(InvalidKeyAnswer::BodyOnly)
        .start()
        .await
        .unwrap();
    let token = token(&mock).await;
    let path = api_path(&format!("/workspaces/{}", mock.workspace_id()));

    let r = api(&mock, Method::GET, &path, Some("nope"), Some(&token), "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get(WWW_AUTHENTICATE).is_none(), "{:?}", r.headers);
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription."})
    );
    assert!(!r.header("x-correlation-id").is_empty());

    let r = api(&mock, Method::GET, &path, None, Some(&token), "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .starts_with("AzureApiManagementKey realm=")
    );
    let s = mock.stats();
    assert_eq!((s.rejected_wrong_key, s.rejected_missing_key), (1, 1));
}

#[tokio::test]
async fn gateway_endpoints() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    let t = token(&mock).await;
    let ws = mock.workspace_id().to_owned();
    let key = Some(mock.api_key());
    let call = |method: Method, rest: String, body: &'static str| {
        let t = t.clone();
        let mock = &mock;
        async move {
            api(mock, method, &api_path(&rest), key, Some(&t), body)
                .await
                .unwrap()
        }
    };

    let r = call(
        Method::POST,
        format!("/workspaces/{ws}/datasets/query"),
        r#"{"pageIndex":1,"pageSize":2}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let b = r.json();
    assert_eq!(b["result"].as_array().unwrap().len(), 2);
    assert_eq!(
        (b["pageIndex"].clone(), b["pageSize"].clone()),
        (json!(1), json!(2))
    );
    assert_eq!(
        (b["totalCount"].clone(), b["totalPages"].clone()),
        (json!(3), json!(2))
    );

    let r = call(
        Method::POST,
        format!("/workspaces/{ws}/datasets/query"),
        "not json",
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["type"], "BusinessError");
    assert!(r.json()["traceId"].is_string());

    let r = call(
        Method::GET,
        format!("/workspaces/{ws}/ledger?PageSize=10&PageIndex=1"),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["pageSize"], 10);
    assert!(r.json()["result"].is_array());

    let r = call(
        Method::POST,
        format!("/workspaces/{ws}/storages/sas?format=object"),
        r#"{"readOrWritePermission":"Read","expiresOn":"2099-01-01T00:00:00Z"}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(sorted_keys(&r.json()), ["resourceUri", "sasToken"]);

    let r = call(
        Method::GET,
        "/workspaces/11111111-2222-3333-4444-555555555555".into(),
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json().is_object());
    assert!(!r.header("x-correlation-id").is_empty());

    let r = call(Method::GET, format!("/workspaces/{ws}/nothing-here"), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // The v1 prefix serves the same API.
    let path = format!("/veracity/dw/gateway/api/v1/workspaces/{ws}");
    let r = api(&mock, Method::GET, &path, key, Some(&t), "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::OK);

    // Any body, streamed in chunks, is read completely and recorded.
    let chunks: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 16 * 1024])).collect();
    let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let body = Chunks(chunks.into());
    let ds_path = api_path(&format!("/workspaces/{ws}/datasets/abc/query"));
    let req = Request::post(ds_path.as_str())
        .header("Ocp-Apim-Subscription-Key", mock.api_key())
        .header(AUTHORIZATION, format!("Bearer {t}"))
        .body(body)
        .unwrap();
    let r = send(&mock, req).await.unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["data"].is_array());
    assert_eq!(r.json()["pagination"]["pageIndex"], 1);
    let last = mock.requests().pop().unwrap();
    assert_eq!(last.path, ds_path);
    assert_eq!(last.body.len(), expected.len());
    assert_eq!(&last.body[..], &expected[..]);

    let ledger = mock
        .requests()
        .into_iter()
        .find(|r| r.path.contains("ledger"))
        .unwrap();
    assert!(ledger.path.ends_with("/ledger?PageSize=10&PageIndex=1"));

    // Unknown paths outside the gateway.
    let r = send(
        &mock,
        Request::get("/elsewhere")
            .body(Full::new(Bytes::new()))
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn request_body_cap() {
    let mock = MockVeracity::start().await.unwrap();
    let t = token(&mock).await;
    let path = api_path(&format!(
        "/workspaces/{}/datasets/x/query",
        mock.workspace_id()
    ));
    let big = "x".repeat(4 * 1024 * 1024 + 1);
    // The server may answer before the client finished sending; either way no 200.
    let r = api(
        &mock,
        Method::POST,
        &path,
        Some(mock.api_key()),
        Some(&t),
        big,
    )
    .await;
    if let Ok(r) = &r {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!r.header("x-correlation-id").is_empty());
    }
    let exactly = "y".repeat(4 * 1024 * 1024);
    let r = api(
        &mock,
        Method::POST,
        &path,
        Some(mock.api_key()),
        Some(&t),
        exactly,
    )
    .await
    .unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(mock.stats().api_requests, 2);
    assert_eq!(mock.stats().api_ok, 1);
}

#[tokio::test(start_paused = true)]
async fn expired_tokens_are_counted() {
    let mock = MockVeracity::builder()
        .token_lifetime(Duration::from_secs(60))
        .start()
        .await
        .unwrap();
    let t = token(&mock).await;
    assert_eq!(get_ws(&mock, Some(&t)).await.status, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(61)).await;
    let r = get_ws(&mock, Some(&t)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    let fresh = token(&mock).await;
    assert_eq!(get_ws(&mock, Some(&fresh)).await.status, StatusCode::OK);
    let s = mock.stats();
    assert_eq!(s.rejected_expired_token, 1);
    assert_eq!(s.api_ok, 2);
}

#[tokio::test]
async fn revoke_and_reject_all() {
    let mock = MockVeracity::start().await.unwrap();
    let old = token(&mock).await;
    assert_eq!(get_ws(&mock, Some(&old)).await.status, StatusCode::OK);
    mock.revoke_all_tokens();
    let r = get_ws(&mock, Some(&old)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        "Bearer error=\"invalid_token\""
    );
    let new = token(&mock).await;
    assert_eq!(get_ws(&mock, Some(&new)).await.status, StatusCode::OK);

    mock.reject_all_tokens(true);
    assert_eq!(
        get_ws(&mock, Some(&new)).await.status,
        StatusCode::UNAUTHORIZED
    );
    let newest = token(&mock).await;
    assert_eq!(
        get_ws(&mock, Some(&newest)).await.status,
        StatusCode::UNAUTHORIZED
    );
    mock.reject_all_tokens(false);
    assert_eq!(get_ws(&mock, Some(&newest)).await.status, StatusCode::OK);
    assert_eq!(mock.stats().rejected_revoked_token, 3);
}

#[tokio::test]
async fn respond_faults_in_fifo_order() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    mock.fail_token_requests(
        Fault::Respond {
            status: StatusCode::OK,
            headers: vec![("content-type".into(), "text/html".into())],
            body: Bytes::from_static(b"<html>login</html>"),
        },
        Times::Once,
    );
    mock.fail_token_requests(Fault::too_many_requests("7"), Times::N(2));
    mock.fail_token_requests(
        Fault::oauth_error(
            401,
            "invalid_client",
            7000222,
            "The provided client secret keys are expired.",
        ),
        Times::Once,
    );
    mock.fail_token_requests(Fault::status(503), Times::Once);

    let r = token_reply(&mock).await;
    assert_eq!(
        (r.status, r.header("content-type")),
        (StatusCode::OK, "text/html")
    );
    assert_eq!(&r.body[..], b"<html>login</html>");
    for _ in 0..2 {
        let r = token_reply(&mock).await;
        assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers[RETRY_AFTER], "7");
        assert!(r.header("content-type").starts_with("text/plain"));
    }
    let r = token_reply(&mock).await;
    assert_oauth_error(&r, 401, "invalid_client", 7000222);
    let r = token_reply(&mock).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.body.is_empty());
    assert_eq!(token_reply(&mock).await.status, StatusCode::OK);

    // Gateway faults come before the key check.
    mock.fail_api_requests(
        Fault::json(
            403,
            json!({"statusCode":403,"message":"Out of call volume quota."}),
        ),
        Times::Always,
    );
    let path = api_path("/workspaces/x");
    for _ in 0..3 {
        let r = api(&mock, Method::GET, &path, None, None, "")
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.json()["statusCode"], 403);
        assert!(r.headers.get(WWW_AUTHENTICATE).is_none());
    }
    mock.clear_faults();
    let r = api(&mock, Method::GET, &path, None, None, "")
        .await
        .unwrap();
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let s = mock.stats();
    assert_eq!(s.faults_served, 8);
    assert_eq!(s.token_requests, 6);
    assert_eq!(s.token_errors, 0);
    assert_eq!(s.rejected_missing_key, 1);
    assert_eq!(mock.requests()[1].status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn hang_until_dropped() {
    let mock = MockVeracity::builder()
        .record_requests(true)
        .start()
        .await
        .unwrap();
    mock.fail_token_requests(Fault::Hang, Times::Once);
    let addr = mock.addr();
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = form(V2_PATH, &creds(&mock, ("scope", mock.scope())));
    req.headers_mut()
        .insert(HOST, addr.to_string().parse().unwrap());
    let pending = tokio::spawn(async move { sender.send_request(req).await.map(|r| r.status()) });

    let waited = tokio::time::timeout(Duration::from_millis(300), token_reply(&mock)).await;
    assert_eq!(
        waited.unwrap().status,
        StatusCode::OK,
        "only the first request hangs"
    );
    assert!(!pending.is_finished());
    assert_eq!(mock.stats().faults_served, 1);
    assert_eq!(mock.requests()[0].status.as_u16(), 444);

    drop(mock);
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert!(
        outcome.is_err(),
        "dropping the mock closes hanging connections"
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn hang_times_out_on_the_client() {
    let mock = MockVeracity::start().await.unwrap();
    mock.fail_api_requests(Fault::Hang, Times::Once);
    let r = tokio::time::timeout(Duration::from_millis(200), get_ws(&mock, None)).await;
    assert!(r.is_err());
}

#[tokio::test]
async fn drop_connection_and_reset_mid_body() {
    let mock = MockVeracity::start().await.unwrap();
    mock.fail_token_requests(Fault::DropConnection, Times::Once);
    let err = send(&mock, form(V2_PATH, &creds(&mock, ("scope", mock.scope())))).await;
    assert!(err.is_err(), "{err:?}");

    mock.fail_token_requests(
        Fault::ResetMidBody {
            status: StatusCode::OK,
            partial: Bytes::from_static(b"{\"access_token\":\"abc"),
        },
        Times::Once,
    );
    // The head arrives, the body fails.
    let stream = TcpStream::connect(mock.addr()).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = form(V2_PATH, &creds(&mock, ("scope", mock.scope())));
    req.headers_mut()
        .insert(HOST, mock.addr().to_string().parse().unwrap());
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let declared: usize = resp.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(declared, 20 + 1024);
    assert!(resp.into_body().collect().await.is_err());

    assert_eq!(token_reply(&mock).await.status, StatusCode::OK);
    assert_eq!(mock.stats().faults_served, 2);
    assert_eq!(mock.stats().token_requests, 3);
}

#[tokio::test]
async fn oversized_body() {
    let mock = MockVeracity::start().await.unwrap();
    let size = 10 * 1024 * 1024;
    mock.fail_api_requests(Fault::Oversized { bytes: size }, Times::Once);
    let r = get_ws(&mock, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-length"), size.to_string());
    assert_eq!(r.body.len(), size);
    assert!(r.body.starts_with(b"{\"padding\":\"xxx"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_ok());
}

#[tokio::test(start_paused = true)]
async fn delay_then_normal_answer() {
    let mock = MockVeracity::start().await.unwrap();
    mock.fail_token_requests(Fault::Delay(Duration::from_secs(30)), Times::Once);
    let start = tokio::time::Instant::now();
    let r = token_reply(&mock).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(start.elapsed() >= Duration::from_secs(30));
    assert_eq!(mock.stats().tokens_issued, 1);
    assert_eq!(mock.stats().faults_served, 1);
}

#[tokio::test]
async fn issue_token_fault() {
    let mock = MockVeracity::start().await.unwrap();
    let weird = [
        ("evil\r\nX-Injected: 1", json!(3600)),
        ("abc-token", json!("abc")),
        ("neg-token", json!(-5)),
        ("zero-token", json!(0)),
        ("huge-token", json!(1e12)),
        ("none-token", Value::Null),
    ];
    for (tok, exp) in &weird {
        mock.fail_token_requests(
            Fault::IssueToken {
                access_token: (*tok).into(),
                token_type: "bearer".into(),
                expires_in: exp.clone(),
            },
            Times::Once,
        );
        let body = token_reply(&mock).await.json();
        assert_eq!(body["access_token"], *tok);
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body.get("expires_in").cloned().unwrap_or(Value::Null), *exp);
    }
    // The gateway knows them: expired when expires_in <= 0, valid otherwise.
    for (tok, status) in [
        ("abc-token", 200),
        ("neg-token", 401),
        ("zero-token", 401),
        ("huge-token", 200),
        ("none-token", 200),
    ] {
        assert_eq!(
            get_ws(&mock, Some(tok)).await.status.as_u16(),
            status,
            "{tok}"
        );
    }
    let s = mock.stats();
    assert_eq!(s.rejected_expired_token, 2);
    assert_eq!(s.tokens_issued, 6);
    assert_eq!(s.faults_served, 6);
}

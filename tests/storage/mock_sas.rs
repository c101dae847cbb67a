//! Data Workbench's storage SAS, as the mock serves them: the dataset and File storage SAS
//! endpoints (shapes, status codes, key and token checks), signatures recomputed here from
//! Microsoft's string-to-sign, and, against a real blob server (Azurite, `#[ignore]`d: it needs
//! npm), a SAS accepted until its `se=` and refused after, and refused once its policy is
//! revoked.
//!
//! Gateway calls go through `VeracityAuthLayer` over a hyper-util client; storage calls are
//! plain hyper-util requests carrying the SAS (the object_store side comes later).

use crate::common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::azurite::Azurite;
use common::gateway::http_client;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use ring::hmac;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};
use veracity_auth::{Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer};
use veracity_auth_mock::{MockVeracity, SasAccess, SasKind};

const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const SCOPED_KEY: &str = "dataset-scoped-key";

// === helpers ===

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The SAS URI of an answer that is a JSON string.
    fn sas_uri(&self) -> String {
        assert_eq!(self.status, StatusCode::OK, "{:?}", self.body);
        match self.json() {
            Value::String(uri) => uri,
            other => panic!("not a JSON string: {other}"),
        }
    }
}

/// A gateway request through the layer, authenticated as the mock's client with `key`.
async fn call_with_key(
    mock: &MockVeracity,
    key: &str,
    method: Method,
    path: &str,
    body: Value,
) -> Answer {
    let url = format!("{}/veracity/dw/gateway{path}", mock.url());
    let body = if body.is_null() {
        Bytes::new()
    } else {
        Bytes::from(body.to_string())
    };
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .unwrap();
    let layer = VeracityAuthLayer::new(
        Authenticator::builder(
            ClientCredentials::new(mock.client_id(), mock.client_secret())
                .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap()),
        )
        .origins([mock.url()])
        .api_key(key)
        .build()
        .unwrap(),
    );
    let response = layer.layer(http_client()).oneshot(request).await.unwrap();
    collect(response).await
}

/// [`call_with_key`] with the mock's own (workspace) key.
async fn call(mock: &MockVeracity, method: Method, path: &str, body: Value) -> Answer {
    call_with_key(mock, mock.api_key(), method, path, body).await
}

async fn collect<B: http_body::Body>(response: http::Response<B>) -> Answer
where
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

/// A plain request to the blob server, no credentials but the SAS in the URL.
async fn storage(method: Method, url: &str, body: &'static [u8]) -> Answer {
    let mut request = Request::builder().method(method.clone()).uri(url);
    if method == Method::PUT {
        request = request.header("x-ms-blob-type", "BlockBlob");
    }
    let request = request.body(Full::new(Bytes::from_static(body))).unwrap();
    collect(http_client().request(request).await.unwrap()).await
}

fn dataset_path(mock: &MockVeracity, id: &str, query: &str) -> String {
    format!(
        "/api/v2/workspaces/{}/datasets/{id}/sas?{query}",
        mock.workspace_id()
    )
}

fn storage_path(mock: &MockVeracity, query: &str) -> String {
    format!(
        "/api/v2/workspaces/{}/storages/sas{query}",
        mock.workspace_id()
    )
}

fn revoke_path(mock: &MockVeracity, query: &str) -> String {
    format!(
        "/api/v1/workspaces/{}/storages/sas/revoke{query}",
        mock.workspace_id()
    )
}

/// A SAS URI's resource (before `?`) and its query pairs, decoded.
fn split(uri: &str) -> (String, Vec<(String, String)>) {
    let (resource, query) = uri.split_once('?').expect("a SAS URI has a query");
    (
        resource.to_owned(),
        serde_urlencoded::from_str(query).expect("a SAS query is form-encoded"),
    )
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Microsoft's blob service SAS string-to-sign (version 2020-12-06 and later), written here
/// from "Create a service SAS", not taken from the mock.
fn string_to_sign(pairs: &[(String, String)], container: &str) -> String {
    let f = |name| field(pairs, name).unwrap_or("");
    [
        f("sp"),
        f("st"),
        f("se"),
        &format!("/blob/devstoreaccount1/{container}"),
        f("si"),
        f("sip"),
        f("spr"),
        f("sv"),
        f("sr"),
        f("sst"),
        f("ses"),
        f("rscc"),
        f("rscd"),
        f("rsce"),
        f("rscl"),
        f("rsct"),
    ]
    .join("\n")
}

/// HMAC-SHA256 of the string-to-sign under the emulator's dev account key, in base64.
fn signature(string_to_sign: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &base64_decode(DEV_KEY));
    base64_encode(hmac::sign(&key, string_to_sign.as_bytes()).as_ref())
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, &b| (n << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            out.push(if i <= chunk.len() {
                char::from(B64[(n >> (18 - 6 * i)) as usize & 63])
            } else {
                '='
            });
        }
    }
    out
}

fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | B64.iter().position(|&a| a == c).expect("base64") as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `2024-12-14T23:59:59Z` to Unix seconds.
fn unix_secs(iso: &str) -> u64 {
    let n = |r: std::ops::Range<usize>| iso[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let days = 365 * y + y / 4 - y / 100 + y / 400 + (153 * m + 2) / 5 + d - 1 - 719_468;
    assert!(iso.ends_with('Z') && iso.len() == 20, "{iso}");
    (days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as u64
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An ISO date-time `offset` seconds from now (negative: in the past).
fn iso_from_now(offset: i64) -> String {
    let secs = now_secs() as i64 + offset;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // civil_from_days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

// === with Rust alone ===

#[test]
fn the_string_to_sign_here_gives_azurites_own_reference_signature() {
    // Computed by Azurite 3.35's verifier (`generateBlobSASSignature`) for these fields.
    let pairs = [
        ("sv", "2022-11-02"),
        ("se", "2024-12-14T23:59:59Z"),
        ("sr", "c"),
        ("sp", "rl"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
    assert_eq!(
        signature(&string_to_sign(&pairs, "c1")),
        "XNjxBruFYbmT/b4hgKIHjp/F9m9f2tlsq1XDva4Fsbs="
    );
}

#[tokio::test]
async fn a_dataset_sas_is_a_json_string_uri_for_the_dataset_folder_signed_like_azure() {
    let mock = MockVeracity::start().await.unwrap();
    mock.add_dataset("d-42", "lake", "datasets/d-42");
    let before = now_secs();
    let uri = call(
        &mock,
        Method::GET,
        &dataset_path(&mock, "d-42", "durationInMinutes=60&type=dfs"),
        Value::Null,
    )
    .await
    .sas_uri();
    let (resource, pairs) = split(&uri);
    assert_eq!(
        resource,
        "https://devstoreaccount1.dfs.core.windows.net/lake/datasets/d-42"
    );
    assert_eq!(field(&pairs, "sp"), Some("rl"), "{pairs:?}");
    assert_eq!(field(&pairs, "sr"), Some("c"));
    assert_eq!(field(&pairs, "sv"), Some("2022-11-02"));
    assert_eq!(field(&pairs, "si"), None);
    let se = unix_secs(field(&pairs, "se").unwrap());
    assert!(
        (before + 3599..=now_secs() + 3600).contains(&se),
        "se {se}, now {before}"
    );
    assert_eq!(
        field(&pairs, "sig"),
        Some(signature(&string_to_sign(&pairs, "lake")).as_str())
    );

    // v1: until `expiresOn`, whole seconds.
    let expires = iso_from_now(600);
    let path = format!(
        "/api/v1/workspaces/{}/datasets/d-42/sas?expiresOn={}",
        mock.workspace_id(),
        expires
    );
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    let (_, pairs) = split(&uri);
    assert_eq!(
        field(&pairs, "se"),
        Some(expires.replace(".000", "").as_str())
    );
    assert_eq!(
        field(&pairs, "sig"),
        Some(signature(&string_to_sign(&pairs, "lake")).as_str())
    );

    // The datasets the gateway lists have SAS too, in the workspace's container.
    let listed = "00000000-0000-0000-0000-00000000d001";
    let uri = call(
        &mock,
        Method::GET,
        &dataset_path(&mock, listed, "durationInMinutes=5&type=dfs"),
        Value::Null,
    )
    .await
    .sas_uri();
    assert!(uri.starts_with(&format!(
        "https://devstoreaccount1.dfs.core.windows.net/{}/datasets/{listed}?",
        mock.storage_container()
    )));

    let stats = mock.stats();
    assert_eq!(
        (
            stats.dataset_sas_requests,
            stats.sas_issued,
            stats.sas_refused
        ),
        (3, 3, 0)
    );
    let issued = mock.issued_sas();
    assert_eq!(issued.len(), 3);
    assert_eq!(issued[0].kind, SasKind::Dataset);
    assert_eq!(issued[0].access, SasAccess::Read);
    assert_eq!(
        (issued[0].container.as_str(), issued[0].path.as_str()),
        ("lake", "datasets/d-42")
    );
    assert_eq!(issued[0].expires_at, UNIX_EPOCH + Duration::from_secs(se));
}

#[tokio::test]
async fn a_storage_sas_is_an_object_with_format_object_and_a_string_without() {
    let mock = MockVeracity::start().await.unwrap();
    mock.add_storage("Archive", "archive");
    let expires = iso_from_now(3600);
    let read =
        json!({ "path": "/reports/2024/", "readOrWritePermission": "Read", "expiresOn": expires });
    let answer = call(
        &mock,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        read,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    let object = answer.json();
    let keys: Vec<&String> = object.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["resourceUri", "sasToken"]);
    let container = mock.storage_container();
    assert_eq!(
        object["resourceUri"],
        format!("https://devstoreaccount1.dfs.core.windows.net/{container}/reports/2024")
    );
    let token = object["sasToken"].as_str().unwrap();
    assert!(!token.starts_with('?'), "{token}");
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(token).unwrap();
    assert_eq!(field(&pairs, "sp"), Some("rl"));
    assert_eq!(
        field(&pairs, "se"),
        Some(expires.replace(".000", "").as_str())
    );
    assert_eq!(
        field(&pairs, "sig"),
        Some(signature(&string_to_sign(&pairs, container)).as_str())
    );

    // Write, from a start, in a named storage, keys in any case; no format: the URI string.
    let starts = iso_from_now(-60);
    let write = json!({ "ReadOrWritePermission": "write", "StartsOn": starts, "ExpiresOn": expires, "StorageName": "archive" });
    let uri = call(&mock, Method::POST, &storage_path(&mock, ""), write)
        .await
        .sas_uri();
    let (resource, pairs) = split(&uri);
    assert_eq!(
        resource,
        "https://devstoreaccount1.dfs.core.windows.net/archive"
    );
    assert_eq!(field(&pairs, "sp"), Some("racwdl"));
    assert_eq!(
        field(&pairs, "st"),
        Some(starts.replace(".000", "").as_str())
    );
    assert_eq!(
        field(&pairs, "sig"),
        Some(signature(&string_to_sign(&pairs, "archive")).as_str())
    );
    assert_eq!(mock.stats().storage_sas_requests, 2);
    assert_eq!(mock.issued_sas()[1].access, SasAccess::Write);
}

#[tokio::test]
async fn bad_sas_requests_are_400_naming_the_cause() {
    let mock = MockVeracity::start().await.unwrap();
    let future = iso_from_now(3600);
    let cases = [
        (
            json!({ "readOrWritePermission": "Read", "expiresOn": iso_from_now(-5) }),
            "expiresOn cannot be a past date.",
        ),
        (
            json!({ "readOrWritePermission": "Read" }),
            "expiresOn is required.",
        ),
        (
            json!({ "readOrWritePermission": "Read", "expiresOn": "next week" }),
            "expiresOn is not a valid date and time.",
        ),
        (
            json!({ "readOrWritePermission": "Delete", "expiresOn": future }),
            "readOrWritePermission must be 'Read' or 'Write'.",
        ),
        (
            json!({ "expiresOn": future }),
            "readOrWritePermission is required.",
        ),
        (
            json!({ "readOrWritePermission": "Read", "startsOn": future, "expiresOn": future }),
            "expiresOn must be later than startsOn.",
        ),
        (
            json!(["not", "an", "object"]),
            "The request body must be a JSON object.",
        ),
    ];
    for (body, message) in cases {
        let answer = call(
            &mock,
            Method::POST,
            &storage_path(&mock, "?format=object"),
            body.clone(),
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.json()["type"], "BusinessError");
        assert_eq!(answer.json()["message"], message, "{body}");
    }
    let ds = "00000000-0000-0000-0000-00000000d001";
    for (query, message) in [
        (
            "durationInMinutes=0&type=dfs",
            "durationInMinutes must be a whole number of minutes, at least 1.",
        ),
        (
            "durationInMinutes=-5",
            "durationInMinutes must be a whole number of minutes, at least 1.",
        ),
        (
            "durationInMinutes=1.5",
            "durationInMinutes must be a whole number of minutes, at least 1.",
        ),
        ("type=dfs", "durationInMinutes is required."),
        (
            "durationInMinutes=5&type=queue",
            "type must be 'dfs' or 'blob'.",
        ),
    ] {
        let answer = call(
            &mock,
            Method::GET,
            &dataset_path(&mock, ds, query),
            Value::Null,
        )
        .await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.json()["message"], message, "{query}");
    }
    let v1_past = format!(
        "/api/v1/workspaces/{}/datasets/{ds}/sas?expiresOn={}",
        mock.workspace_id(),
        iso_from_now(-1)
    );
    let answer = call(&mock, Method::GET, &v1_past, Value::Null).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["message"], "expiresOn cannot be a past date.");
    let stats = mock.stats();
    assert_eq!((stats.sas_refused, stats.sas_issued), (13, 0));
}

#[tokio::test]
async fn a_dataset_scoped_account_gets_403_for_workspace_storage_and_revocation_but_reads_datasets()
{
    let mock = MockVeracity::builder()
        .dataset_scoped_api_key(SCOPED_KEY)
        .start()
        .await
        .unwrap();
    let body = json!({ "readOrWritePermission": "Read", "expiresOn": iso_from_now(3600) });
    let answer = call_with_key(
        &mock,
        SCOPED_KEY,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        body.clone(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.json()["type"], "Forbidden");
    let answer = call_with_key(
        &mock,
        SCOPED_KEY,
        Method::DELETE,
        &revoke_path(&mock, ""),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let ds = "00000000-0000-0000-0000-00000000d002";
    call_with_key(
        &mock,
        SCOPED_KEY,
        Method::GET,
        &dataset_path(&mock, ds, "durationInMinutes=5&type=dfs"),
        Value::Null,
    )
    .await
    .sas_uri();
    // The workspace's own key is not scoped.
    let answer = call(
        &mock,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        body,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(mock.stats().sas_refused, 2);
}

#[tokio::test]
async fn unknown_datasets_storages_and_policies_are_404() {
    let mock = MockVeracity::start().await.unwrap();
    let answer = call(
        &mock,
        Method::GET,
        &dataset_path(&mock, "no-such-dataset", "durationInMinutes=5"),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(
        answer.json()["message"],
        "Dataset no-such-dataset was not found."
    );
    let body = json!({ "readOrWritePermission": "Read", "expiresOn": iso_from_now(60), "storageName": "nope" });
    let answer = call(&mock, Method::POST, &storage_path(&mock, ""), body).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    let answer = call(
        &mock,
        Method::DELETE,
        &revoke_path(&mock, "?policyToRevoke=nope"),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    // Revocation is a v1 endpoint only; an unknown workspace is the gateway's 404.
    let v2 = revoke_path(&mock, "").replace("/api/v1/", "/api/v2/");
    assert_eq!(
        call(&mock, Method::DELETE, &v2, Value::Null).await.status,
        StatusCode::NOT_FOUND
    );
    let other = "/api/v2/workspaces/11111111-2222-3333-4444-555555555555/datasets/x/sas?durationInMinutes=5";
    let answer = call(&mock, Method::GET, other, Value::Null).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.json()["type"], "NotFound");
}

#[tokio::test]
async fn sas_endpoints_check_the_key_then_the_bearer_token() {
    let mock = MockVeracity::start().await.unwrap();
    let url = format!(
        "{}{}",
        mock.url(),
        "/veracity/dw/gateway".to_owned()
            + &dataset_path(
                &mock,
                "00000000-0000-0000-0000-00000000d001",
                "durationInMinutes=5"
            )
    );
    let bare = |key: Option<&str>, token: Option<&str>| {
        let mut request = Request::get(&url);
        if let Some(key) = key {
            request = request.header("Ocp-Apim-Subscription-Key", key);
        }
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        request.body(Full::<Bytes>::default()).unwrap()
    };
    let answer = collect(
        http_client()
            .request(bare(None, Some("whatever")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("AzureApiManagementKey"),
        "{challenge}"
    );
    let answer = collect(
        http_client()
            .request(bare(Some(mock.api_key()), None))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    let answer = collect(
        http_client()
            .request(bare(Some(mock.api_key()), Some("forged")))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let stats = mock.stats();
    assert_eq!(
        (
            stats.rejected_missing_key,
            stats.rejected_missing_token,
            stats.rejected_unknown_token
        ),
        (1, 1, 1)
    );
    // Rejected before the SAS endpoint: neither counted as SAS requests nor issued.
    assert_eq!((stats.dataset_sas_requests, stats.sas_issued), (0, 0));
    // Through the layer (key and token), the same request is answered.
    call(
        &mock,
        Method::GET,
        &dataset_path(
            &mock,
            "00000000-0000-0000-0000-00000000d001",
            "durationInMinutes=5",
        ),
        Value::Null,
    )
    .await
    .sas_uri();
}

#[tokio::test]
async fn the_maximum_sas_lifetime_cuts_se_and_can_change_while_running() {
    let mock = MockVeracity::builder()
        .max_sas_lifetime(Duration::from_secs(3))
        .start()
        .await
        .unwrap();
    let path = dataset_path(
        &mock,
        "00000000-0000-0000-0000-00000000d001",
        "durationInMinutes=60&type=dfs",
    );
    let before = now_secs();
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    let se = unix_secs(field(&split(&uri).1, "se").unwrap());
    assert!(
        (before + 2..=now_secs() + 3).contains(&se),
        "se {se}, now {before}"
    );
    mock.set_max_sas_lifetime(None);
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    let se = unix_secs(field(&split(&uri).1, "se").unwrap());
    assert!(se >= before + 3599, "se {se}, now {before}");
}

#[tokio::test]
async fn revocable_sas_name_a_policy_that_revocation_replaces() {
    let mock = MockVeracity::builder()
        .revocable_sas(true)
        .start()
        .await
        .unwrap();
    let path = dataset_path(
        &mock,
        "00000000-0000-0000-0000-00000000d001",
        "durationInMinutes=60&type=dfs",
    );
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    let (_, pairs) = split(&uri);
    assert_eq!(field(&pairs, "si"), Some("dw-read-1"));
    assert_eq!(
        field(&pairs, "sp"),
        None,
        "the policy holds the permissions"
    );
    assert!(field(&pairs, "se").is_some());
    assert_eq!(
        field(&pairs, "sig"),
        Some(signature(&string_to_sign(&pairs, mock.storage_container())).as_str())
    );
    // Only the named policy is replaced.
    let answer = call(
        &mock,
        Method::DELETE,
        &revoke_path(&mock, "?policyToRevoke=dw-write-1"),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    assert_eq!(field(&split(&uri).1, "si"), Some("dw-read-1"));
    // Without a name, every policy.
    let answer = call(&mock, Method::DELETE, &revoke_path(&mock, ""), Value::Null).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    assert_eq!(field(&split(&uri).1, "si"), Some("dw-read-2"));
    let body = json!({ "readOrWritePermission": "Write", "expiresOn": iso_from_now(60) });
    let object = call(
        &mock,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        body,
    )
    .await
    .json();
    assert!(
        object["sasToken"]
            .as_str()
            .unwrap()
            .contains("si=dw-write-3"),
        "{object}"
    );
    assert_eq!(mock.stats().sas_revocations, 2);
    let policies: Vec<Option<String>> = mock.issued_sas().into_iter().map(|s| s.policy).collect();
    assert_eq!(
        policies,
        ["dw-read-1", "dw-read-1", "dw-read-2", "dw-write-3"].map(|p| Some(p.to_owned()))
    );
}

#[tokio::test]
async fn no_signature_reaches_debug_output() {
    let mock = MockVeracity::builder()
        .dataset_scoped_api_key(SCOPED_KEY)
        .start()
        .await
        .unwrap();
    let path = dataset_path(
        &mock,
        "00000000-0000-0000-0000-00000000d001",
        "durationInMinutes=60",
    );
    let uri = call(&mock, Method::GET, &path, Value::Null).await.sas_uri();
    let sig = field(&split(&uri).1, "sig").unwrap().to_owned();
    let shown = format!("{mock:?} {:?} {:?}", mock.issued_sas(), mock.stats());
    assert!(!shown.contains(&sig), "{shown}");
    let builder = format!(
        "{:?}",
        MockVeracity::builder().dataset_scoped_api_key(SCOPED_KEY)
    );
    assert!(!builder.contains(SCOPED_KEY), "{builder}");
}

// === against Azurite ===

/// `{account}/{container}?restype=container&comp=list&prefix=…&<sas>`.
fn list_url(resource: &str, prefix: &str, token: &str) -> String {
    let (account_container, _) = split_resource(resource);
    format!("{account_container}?restype=container&comp=list&prefix={prefix}&{token}")
}

/// `http://host/devstoreaccount1/<container>/<folder>` → (`…/<container>`, `<folder>`).
fn split_resource(resource: &str) -> (String, String) {
    let after = resource
        .split("/devstoreaccount1/")
        .nth(1)
        .expect("path-style URI");
    let (container, folder) = after.split_once('/').unwrap_or((after, ""));
    let base = resource.split("/devstoreaccount1/").next().unwrap();
    (
        format!("{base}/devstoreaccount1/{container}"),
        folder.to_owned(),
    )
}

#[tokio::test]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn azurite_accepts_a_mock_sas_until_se_and_refuses_it_after() {
    let azurite = Azurite::spawn().await;
    let mock = MockVeracity::builder()
        .storage_emulator(azurite.url())
        .start()
        .await
        .unwrap();
    mock.create_container("lake").await.unwrap();
    mock.add_dataset("d-7", "lake", "datasets/d-7");
    mock.upload_blob(
        "lake",
        "datasets/d-7/part-0.parquet",
        &b"PAR1 rows PAR1"[..],
    )
    .await
    .unwrap();

    // A File storage SAS with Write: put, then get the same bytes.
    let body = json!({ "path": "uploads", "readOrWritePermission": "Write", "expiresOn": iso_from_now(3600) });
    let object = call(
        &mock,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        body,
    )
    .await
    .json();
    let (write_resource, write_token) = (
        object["resourceUri"].as_str().unwrap(),
        object["sasToken"].as_str().unwrap(),
    );
    assert_eq!(
        write_resource,
        format!(
            "{}/{}/uploads",
            azurite.account_url(),
            mock.storage_container()
        )
    );
    mock.create_container(mock.storage_container())
        .await
        .unwrap();
    let put = storage(
        Method::PUT,
        &format!("{write_resource}/a.csv?{write_token}"),
        b"a,b\n1,2\n",
    )
    .await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.body);
    let get = storage(
        Method::GET,
        &format!("{write_resource}/a.csv?{write_token}"),
        b"",
    )
    .await;
    assert_eq!(
        (get.status, &get.body[..]),
        (StatusCode::OK, &b"a,b\n1,2\n"[..])
    );

    // An anonymous request is refused: the SAS is what opens the container.
    let anonymous = format!("{}/lake?restype=container&comp=list", azurite.account_url());
    assert_eq!(
        storage(Method::GET, &anonymous, b"").await.status,
        StatusCode::FORBIDDEN
    );

    // From here on SAS live 3 s at most (whole seconds, rounded down: 2 to 3 s).
    mock.set_max_sas_lifetime(Some(Duration::from_secs(3)));
    let uri = call(
        &mock,
        Method::GET,
        &dataset_path(&mock, "d-7", "durationInMinutes=60&type=dfs"),
        Value::Null,
    )
    .await
    .sas_uri();
    let (resource, pairs) = split(&uri);
    assert_eq!(
        resource,
        format!("{}/lake/datasets/d-7", azurite.account_url())
    );
    let token = uri.split_once('?').unwrap().1;
    let se = unix_secs(field(&pairs, "se").unwrap());
    assert!(se <= now_secs() + 3, "se= {se} is past the 3 s cap");

    let list = storage(
        Method::GET,
        &list_url(&resource, "datasets/d-7/", token),
        b"",
    )
    .await;
    assert_eq!(list.status, StatusCode::OK, "{:?}", list.body);
    assert!(
        String::from_utf8_lossy(&list.body).contains("<Name>datasets/d-7/part-0.parquet</Name>")
    );
    let blob = format!("{resource}/part-0.parquet?{token}");
    let get = storage(Method::GET, &blob, b"").await;
    assert_eq!(
        (get.status, &get.body[..]),
        (StatusCode::OK, &b"PAR1 rows PAR1"[..])
    );
    // Read-only: a write is refused.
    let put = storage(
        Method::PUT,
        &format!("{resource}/new.parquet?{token}"),
        b"x",
    )
    .await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);

    // Wait out the SAS: the one wait these tests allow, a real server's clock (Azurite
    // compares `se=` with its wall clock, to the millisecond), plus a little for its reading.
    let started = std::time::Instant::now();
    let until = UNIX_EPOCH + Duration::from_secs(se) + Duration::from_millis(250);
    tokio::time::sleep(until.duration_since(SystemTime::now()).unwrap_or_default()).await;
    let list = storage(
        Method::GET,
        &list_url(&resource, "datasets/d-7/", token),
        b"",
    )
    .await;
    assert_eq!(list.status, StatusCode::FORBIDDEN, "{:?}", list.body);
    assert!(
        String::from_utf8_lossy(&list.body).contains("AuthorizationFailure"),
        "{:?}",
        list.body
    );
    assert_eq!(
        storage(Method::GET, &blob, b"").await.status,
        StatusCode::FORBIDDEN
    );
    eprintln!("waited {:?} for se= to pass", started.elapsed());
    // A new SAS works again.
    let uri = call(
        &mock,
        Method::GET,
        &dataset_path(&mock, "d-7", "durationInMinutes=60&type=dfs"),
        Value::Null,
    )
    .await
    .sas_uri();
    let (resource, _) = split(&uri);
    let token = uri.split_once('?').unwrap().1;
    assert_eq!(
        storage(
            Method::GET,
            &format!("{resource}/part-0.parquet?{token}"),
            b""
        )
        .await
        .status,
        StatusCode::OK
    );
}

#[tokio::test]
#[ignore = "needs Azurite (npm); .ci/run installs it"]
async fn a_revoked_policy_makes_azurite_refuse_a_sas_before_its_se() {
    let azurite = Azurite::spawn().await;
    let mock = MockVeracity::builder()
        .storage_emulator(azurite.url())
        .revocable_sas(true)
        .start()
        .await
        .unwrap();
    mock.create_container("lake").await.unwrap();
    mock.add_dataset("d-7", "lake", "datasets/d-7");
    mock.upload_blob("lake", "datasets/d-7/part-0.parquet", &b"rows"[..])
        .await
        .unwrap();
    let path = dataset_path(&mock, "d-7", "durationInMinutes=60&type=dfs");
    let sas = |uri: String| {
        let (resource, _) = split(&uri);
        format!(
            "{resource}/part-0.parquet?{}",
            uri.split_once('?').unwrap().1
        )
    };
    let first = sas(call(&mock, Method::GET, &path, Value::Null).await.sas_uri());
    assert!(first.contains("si=dw-read-1"), "{first}");
    assert_eq!(
        storage(Method::GET, &first, b"").await.status,
        StatusCode::OK
    );
    // The policy holds the permissions: read-only still refuses a write.
    let body = json!({ "path": "datasets/d-7", "readOrWritePermission": "Read", "expiresOn": iso_from_now(3600), "storageName": null });
    let object = call(
        &mock,
        Method::POST,
        &storage_path(&mock, "?format=object"),
        body,
    )
    .await
    .json();
    assert!(
        object["sasToken"]
            .as_str()
            .unwrap()
            .contains("si=dw-read-1")
    );

    // Revoking another policy leaves this SAS alone.
    let answer = call(
        &mock,
        Method::DELETE,
        &revoke_path(&mock, "?policyToRevoke=dw-write-1"),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        storage(Method::GET, &first, b"").await.status,
        StatusCode::OK
    );

    // Revoking its policy: refused long before its se= (an hour away).
    let answer = call(
        &mock,
        Method::DELETE,
        &revoke_path(&mock, "?policyToRevoke=dw-read-1"),
        Value::Null,
    )
    .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    let refused = storage(Method::GET, &first, b"").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{:?}", refused.body);
    // A new SAS names the new policy and works.
    let second = sas(call(&mock, Method::GET, &path, Value::Null).await.sas_uri());
    assert!(second.contains("si=dw-read-2"), "{second}");
    assert_eq!(
        storage(Method::GET, &second, b"").await.status,
        StatusCode::OK
    );
    // Revoking everything refuses it too.
    let answer = call(&mock, Method::DELETE, &revoke_path(&mock, ""), Value::Null).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(
        storage(Method::GET, &second, b"").await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(mock.stats().sas_revocations, 3);
}

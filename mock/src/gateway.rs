//! The Data Workbench gateway: the API Management subscription-key check, the
//! bearer-token check (in that order, with Veracity's exact rejections), a
//! handful of representative endpoints returning canned data, and the routes to the SAS
//! endpoints (`storage_sas`).
//!
//! Every gateway response carries `X-Correlation-ID`. How a wrong (not missing)
//! subscription key is answered is a setting ([`InvalidKeyAnswer`]).

use http::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::body::{MockBody, pattern_byte};
use super::ids;
use super::paths::{API_PATH_V1, KEY_HEADER};
use super::reply::{InvalidKeyAnswer, empty_response, json_response, with_correlation_id};
use super::state::MockState;
use super::stats::bump;
use super::storage_sas::{self, ApiVersion};
use super::tokens::TokenCheck;

const MISSING_KEY: &str = "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.";
const WRONG_KEY: &str = "Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.";

/// Answers one gateway request whose body was read completely. `rest` is the
/// path after `/api/v2` (or `/api/v1`).
pub(crate) async fn handle(
    shared: &MockState,
    rest: &str,
    parts: &Parts,
    body: &[u8],
) -> Response<MockBody> {
    let mut resp = match reject(shared, parts) {
        Some(rejection) => rejection,
        None => route(shared, rest, parts, body).await,
    };
    if resp.status().is_success() {
        bump(&shared.counters.api_ok);
    }
    with_correlation_id(&mut resp);
    resp
}

/// The subscription-key check, then the bearer-token check: the rejection, if any.
fn reject(shared: &MockState, parts: &Parts) -> Option<Response<MockBody>> {
    let c = &shared.counters;
    match parts.headers.get(KEY_HEADER) {
        None => {
            return Some(key_rejection(
                shared,
                MISSING_KEY,
                &c.rejected_missing_key,
                InvalidKeyAnswer::Challenge,
            ));
        }
        Some(v) if v.is_empty() => {
            return Some(key_rejection(
                shared,
                MISSING_KEY,
                &c.rejected_missing_key,
                InvalidKeyAnswer::Challenge,
            ));
        }
        Some(v)
            if !shared
                .settings
                .api_keys
                .iter()
                .any(|k| k.as_bytes() == v.as_bytes()) =>
        {
            return Some(key_rejection(
                shared,
                WRONG_KEY,
                &c.rejected_wrong_key,
                shared.settings.invalid_key_answer,
            ));
        }
        Some(_) => {}
    }
    let token = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let counter = match token.map(|t| shared.check_token(t)) {
        Some(TokenCheck::Valid) => return None,
        None => &c.rejected_missing_token,
        Some(TokenCheck::Unknown) => &c.rejected_unknown_token,
        Some(TokenCheck::Expired) => &c.rejected_expired_token,
        Some(TokenCheck::Revoked) => &c.rejected_revoked_token,
    };
    bump(counter);
    let mut resp = empty_response(StatusCode::UNAUTHORIZED);
    resp.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    Some(resp)
}

fn key_rejection(
    shared: &MockState,
    message: &str,
    counter: &std::sync::atomic::AtomicU64,
    answer: InvalidKeyAnswer,
) -> Response<MockBody> {
    bump(counter);
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        &json!({ "statusCode": 401, "message": message }),
    );
    if answer == InvalidKeyAnswer::BodyOnly {
        return resp;
    }
    let challenge = format!(
        "AzureApiManagementKey realm=\"{}/veracity/dw/gateway\",name=\"Ocp-Apim-Subscription-Key\",type=\"header\"",
        shared.settings.base_url
    );
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

/// The most bytes `GET …/pattern?bytes=N` serves.
const MAX_PATTERN: usize = 256 * 1024 * 1024;

/// Whether this is `PUT {api}/workspaces/{ws}/pattern`, whose body is checked as it streams
/// in (so it has no size limit) instead of being read first.
pub(crate) fn is_pattern_upload(rest: &str, parts: &Parts) -> bool {
    parts.method == Method::PUT
        && rest
            .trim_start_matches('/')
            .strip_prefix("workspaces/")
            .and_then(|r| r.split_once('/'))
            .is_some_and(|(_, op)| op == "pattern")
}

/// Answers the pattern upload: the key and token checks before any of the body is read, then
/// `{"bytes": n, "intact": bool}` (whether the body was the [`pattern_byte`] sequence).
pub(crate) async fn pattern_upload(
    shared: &MockState,
    rest: &str,
    parts: &Parts,
    mut body: hyper::body::Incoming,
) -> std::io::Result<Response<MockBody>> {
    use http_body_util::BodyExt;
    let ws = rest.trim_start_matches('/').split('/').nth(1).unwrap_or("");
    let mut resp = if let Some(rejection) = reject(shared, parts) {
        rejection
    } else if !ws.eq_ignore_ascii_case(&shared.settings.workspace_id) {
        no_operation()
    } else {
        let (mut bytes, mut intact) = (0usize, true);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(std::io::Error::other)?.into_data() {
                for (i, b) in data.iter().enumerate() {
                    intact &= *b == pattern_byte(bytes + i);
                }
                bytes += data.len();
            }
        }
        json_response(StatusCode::OK, &json!({ "bytes": bytes, "intact": intact }))
    };
    if resp.status().is_success() {
        bump(&shared.counters.api_ok);
    }
    with_correlation_id(&mut resp);
    Ok(resp)
}

/// `404` for a path no API operation matches (API Management's wording).
pub(crate) fn no_operation() -> Response<MockBody> {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({ "statusCode": 404, "message": "Resource not found" }),
    )
}

fn business_error() -> Response<MockBody> {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "type": "BusinessError", "traceId": ids::uuid() }),
    )
}

async fn route(shared: &MockState, rest: &str, parts: &Parts, body: &[u8]) -> Response<MockBody> {
    let version = if parts.uri.path().starts_with(API_PATH_V1) {
        ApiVersion::V1
    } else {
        ApiVersion::V2
    };
    let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let ws = match segments.as_slice() {
        ["workspaces", ws, ..] => *ws,
        _ => return no_operation(),
    };
    let known_ws = ws.eq_ignore_ascii_case(&shared.settings.workspace_id);
    let op = match (&parts.method, &segments[2..]) {
        (&Method::GET, []) => Op::Workspace,
        (&Method::POST, ["datasets", "query"]) => Op::Datasets,
        (&Method::POST, ["datasets", ds, "query"]) => Op::DatasetQuery(ds),
        (&Method::GET, ["ledger"]) => Op::Ledger,
        (&Method::GET, ["pattern"]) => Op::Pattern,
        (&Method::GET, ["datasets", ds, "sas"]) => Op::DatasetSas(ds),
        (&Method::POST, ["storages", "sas"]) => Op::StorageSas,
        (&Method::DELETE, ["storages", "sas", "revoke"]) if version == ApiVersion::V1 => {
            Op::RevokeSas
        }
        _ => return no_operation(),
    };
    if !known_ws {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({ "type": "NotFound", "message": format!("Workspace {ws} was not found."), "traceId": ids::uuid() }),
        );
    }
    let ws = shared.settings.workspace_id.as_str();
    match op {
        Op::Workspace => json_response(
            StatusCode::OK,
            &json!({ "id": ws, "name": "Mock workspace", "description": "Workspace served by the embedded Veracity mock" }),
        ),
        Op::Datasets => {
            let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
                return business_error();
            };
            let Some((index, size)) = paging(req.get("pageIndex"), req.get("pageSize")) else {
                return business_error();
            };
            let items: Vec<Value> = (1..=3).map(|i| dataset(ws, i)).collect();
            paged(items, index, size)
        }
        Op::DatasetQuery(ds) => {
            let req = serde_json::from_slice::<Value>(body).ok();
            let field = |name| req.as_ref().and_then(|r| r.get(name));
            let (index, size) = paging(field("pageIndex"), field("pageSize")).unwrap_or((1, 100));
            let rows: Vec<Value> = (1..=5)
                .map(|i| json!({ "id": i, "name": format!("row {i}"), "value": f64::from(i) * 1.5, "datasetId": ds }))
                .collect();
            let total = rows.len() as u64;
            let data: Vec<Value> = page_of(rows, index, size);
            json_response(
                StatusCode::OK,
                &json!({ "data": data, "pagination": {
                    "pageIndex": index, "pageSize": size, "totalCount": total, "totalPages": total.div_ceil(size),
                }}),
            )
        }
        Op::Ledger => {
            let query: Vec<(String, String)> =
                match serde_urlencoded::from_str(parts.uri.query().unwrap_or_default()) {
                    Ok(q) => q,
                    Err(_) => return business_error(),
                };
            let param = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| Value::String(v.clone()))
            };
            let Some((index, size)) =
                paging(param("PageIndex").as_ref(), param("PageSize").as_ref())
            else {
                return business_error();
            };
            let items: Vec<Value> = (1..=4)
                .map(|i| {
                    json!({
                        "id": format!("00000000-0000-0000-0000-0000000{i:05}"),
                        "workspaceId": ws,
                        "operation": if i % 2 == 0 { "Read" } else { "Write" },
                        "datasetId": dataset_id(i % 3 + 1),
                        "timestamp": format!("2024-01-0{i}T12:00:00Z"),
                    })
                })
                .collect();
            paged(items, index, size)
        }
        Op::Pattern => {
            let query: Vec<(String, String)> =
                serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
                    .unwrap_or_default();
            let bytes = query.iter().find(|(k, _)| k == "bytes");
            match bytes.and_then(|(_, v)| v.parse::<usize>().ok()) {
                Some(n) if n <= MAX_PATTERN => {
                    let mut resp = Response::new(MockBody::pattern(n));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    );
                    resp
                }
                _ => business_error(),
            }
        }
        Op::DatasetSas(ds) => storage_sas::dataset(shared, version, ds, parts).await,
        Op::StorageSas => storage_sas::storage(shared, parts, body).await,
        Op::RevokeSas => storage_sas::revoke(shared, parts).await,
    }
}

enum Op<'a> {
    Workspace,
    Datasets,
    DatasetQuery(&'a str),
    Ledger,
    Pattern,
    DatasetSas(&'a str),
    StorageSas,
    RevokeSas,
}

/// Page index and size (both at least 1; defaults 1 and 10). `None` when a
/// value is present but not a positive integer (a number or a numeric string).
fn paging(index: Option<&Value>, size: Option<&Value>) -> Option<(u64, u64)> {
    fn positive(v: Option<&Value>, default: u64) -> Option<u64> {
        let n = match v {
            None | Some(Value::Null) => return Some(default),
            Some(Value::Number(n)) => n.as_u64()?,
            Some(Value::String(s)) => s.trim().parse().ok()?,
            Some(_) => return None,
        };
        (n >= 1).then_some(n)
    }
    Some((positive(index, 1)?, positive(size, 10)?))
}

fn page_of(items: Vec<Value>, index: u64, size: u64) -> Vec<Value> {
    let skip = usize::try_from((index - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let take = usize::try_from(size).unwrap_or(usize::MAX);
    items.into_iter().skip(skip).take(take).collect()
}

/// The paged envelope of the list endpoints.
fn paged(items: Vec<Value>, index: u64, size: u64) -> Response<MockBody> {
    let total = items.len() as u64;
    json_response(
        StatusCode::OK,
        &json!({
            "result": page_of(items, index, size),
            "pageIndex": index,
            "pageSize": size,
            "totalCount": total,
            "totalPages": total.div_ceil(size),
        }),
    )
}

/// The id of the `i`th canned dataset the gateway lists.
pub(crate) fn dataset_id(i: u32) -> String {
    format!("00000000-0000-0000-0000-00000000d{i:03}")
}

fn dataset(ws: &str, i: u32) -> Value {
    json!({
        "id": dataset_id(i),
        "workspaceId": ws,
        "name": format!("Mock dataset {i}"),
        "description": format!("Dataset {i} served by the embedded Veracity mock"),
        "createdOn": "2024-01-01T00:00:00Z",
        "tags": [],
    })
}

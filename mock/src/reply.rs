//! How the mock's replies look: JSON and empty responses, Azure AD's OAuth error bodies and
//! no-store headers, correlation ids, the answer-delay marker, and the public choices of
//! shape ([`TokenStyle`], [`InvalidKeyAnswer`]).

use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, PRAGMA};
use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::body::MockBody;
use super::ids;
use super::stats::{Counters, bump};

const CORRELATION: HeaderName = HeaderName::from_static("x-correlation-id");

/// The shape of successful token responses, as Microsoft documents each endpoint's: the
/// [v2.0 client credentials](https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
/// [B2C](https://learn.microsoft.com/en-us/azure/active-directory-b2c/access-tokens) and
/// [v1 client credentials](https://learn.microsoft.com/en-us/previous-versions/azure/active-directory/azuread-dev/v1-oauth2-client-creds-grant-flow)
/// pages.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TokenStyle {
    /// Azure AD v2: `{"token_type":"Bearer","expires_in":3600,"ext_expires_in":3600,"access_token":"…"}`.
    #[default]
    V2,
    /// B2C policy: the v2 fields plus `not_before`, `expires_on` (Unix seconds) and `resource`.
    B2C,
    /// Azure AD v1: the B2C fields with every number written as a string.
    V1,
}

/// How the gateway answers a request whose subscription key is wrong (present, but not
/// an accepted key). A missing key is always answered with the challenge.
///
/// Microsoft documents API Management's `WWW-Authenticate: AzureApiManagementKey`
/// challenge for a missing key; for an invalid key its answer may be a bare `401`, with
/// no challenge at all, and only the JSON body
/// `{"statusCode":401,"message":"Access denied due to invalid subscription key. Make sure
/// to provide a valid key for an active subscription."}` saying what is wrong.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum InvalidKeyAnswer {
    /// `401` with the `AzureApiManagementKey` challenge and the JSON body (the default).
    #[default]
    Challenge,
    /// `401` with the JSON body and no `WWW-Authenticate` field.
    BodyOnly,
}

/// Put on a user grant's response: the server waits this long before sending it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnswerDelay(pub(crate) Duration);

/// A response with this status, an `application/json` content type and the
/// serialized value as body.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::full(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// A response with this status and an empty body.
pub(crate) fn empty_response(status: StatusCode) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::empty());
    *resp.status_mut() = status;
    resp
}

/// Adds a fresh `X-Correlation-ID` header.
pub(crate) fn with_correlation_id(resp: &mut Response<MockBody>) {
    if let Ok(id) = HeaderValue::from_str(&ids::uuid()) {
        resp.headers_mut().insert(CORRELATION, id);
    }
}

/// The body of an Azure AD OAuth error (see [`Fault::oauth_error`](crate::Fault::oauth_error)).
pub(crate) fn oauth_error_json(error: &str, code: u32, description: &str) -> Value {
    let trace_id = ids::uuid();
    let correlation_id = ids::uuid();
    let timestamp = ids::azure_timestamp();
    let prefix = if description.starts_with("AAD") {
        String::new()
    } else {
        format!("AADSTS{code}: ")
    };
    json!({
        "error": error,
        "error_description": format!(
            "{prefix}{description}\r\nTrace ID: {trace_id}\r\nCorrelation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        ),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    })
}

/// An OAuth error the mock produces itself (counted in `token_errors`).
pub(crate) fn oauth_error(
    counters: &Counters,
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response<MockBody> {
    bump(&counters.token_errors);
    tracing::debug!(error, code, "veracity mock: token request rejected");
    no_store(json_response(
        status,
        &oauth_error_json(error, code, description),
    ))
}

/// Marks a token endpoint answer as not to be cached, as Azure AD does.
pub(crate) fn no_store(mut resp: Response<MockBody>) -> Response<MockBody> {
    let h = resp.headers_mut();
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `invalid_request` AADSTS900144 for a missing form field (counted in `token_errors`).
pub(crate) fn missing(counters: &Counters, name: &str) -> Response<MockBody> {
    oauth_error(
        counters,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        900_144,
        &format!("The request body must contain the following parameter: '{name}'."),
    )
}

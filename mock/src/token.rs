//! The token endpoint: the OAuth 2.0 client-credentials grant as the Veracity
//! identity provider (Azure AD / B2C) answers it, including its error bodies.
//!
//! Checks run in this order: method (`POST`), form body, `grant_type`,
//! `client_id` and `client_secret` present, client known, secret right, then
//! `resource` (v1 path) or `scope` (v2.0 path): missing is `invalid_request` AADSTS900144,
//! an unknown resource (or `<resource>/.default` scope) `invalid_resource` AADSTS500011,
//! any other wrong scope `invalid_scope` AADSTS70011.

use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use serde_json::{Value, json};

use super::body::MockBody;
use super::grants;
use super::ids;
use super::reply::{TokenStyle, json_response, missing, no_store, oauth_error};
use super::state::MockState;
use super::stats::bump;

/// Which token URL a request came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `…/oauth2/v2.0/token`, takes `scope`.
    V2,
    /// `…/oauth2/token`, takes `resource`, always answers in [`TokenStyle::V1`].
    V1,
}

/// Azure's tenant name, used in error descriptions.
const TENANT: &str = "dnvglb2cprod.onmicrosoft.com";

/// Answers one token request whose body was read completely.
pub(crate) fn handle(
    shared: &MockState,
    endpoint: Endpoint,
    parts: &Parts,
    body: &[u8],
) -> Response<MockBody> {
    if parts.method != Method::POST {
        return oauth_error(
            &shared.counters,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_561,
            &format!(
                "The endpoint only accepts POST, OPTIONS requests. Received a {} request.",
                parts.method
            ),
        );
    }
    let is_form = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    let form: Vec<(String, String)> = match serde_urlencoded::from_bytes(body) {
        Ok(form) if is_form => form,
        _ => return missing(&shared.counters, "grant_type"),
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };

    match field("grant_type") {
        Some("client_credentials") => {}
        Some(grant @ ("authorization_code" | "refresh_token")) => {
            return grants::handle(shared, grant, &form, &parts.uri);
        }
        other => {
            return oauth_error(
                &shared.counters,
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70_003,
                &format!(
                    "The app requested an unsupported grant type '{}'.",
                    other.unwrap_or_default()
                ),
            );
        }
    }
    let Some(client_id) = field("client_id").filter(|v| !v.is_empty()) else {
        return missing(&shared.counters, "client_id");
    };
    let Some(secret) = field("client_secret").filter(|v| !v.is_empty()) else {
        return missing(&shared.counters, "client_secret");
    };
    let clients = &shared.settings.clients;
    if !clients.iter().any(|(id, _)| id == client_id) {
        return oauth_error(
            &shared.counters,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{TENANT}'. \
                 This can happen if the application has not been installed by the administrator of the \
                 tenant or consented to by any user in the tenant. You may have sent your authentication \
                 request to the wrong tenant."
            ),
        );
    }
    if !clients.iter().any(|(id, s)| id == client_id && s == secret) {
        return oauth_error(
            &shared.counters,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the \
                 client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    if let Some(refused) = check_audience(shared, endpoint, &field) {
        return refused;
    }

    let (token, lifetime, style) = shared.issue_token();
    bump(&shared.counters.tokens_issued);
    let style = match endpoint {
        Endpoint::V1 => TokenStyle::V1,
        Endpoint::V2 => style,
    };
    no_store(json_response(
        StatusCode::OK,
        &success_body(shared, style, token, lifetime.as_secs()),
    ))
}

/// The v1 endpoint takes `resource`, the v2.0 endpoint `scope`, each with the configured
/// value only; anything else is refused as Azure AD refuses it.
fn check_audience<'a>(
    shared: &MockState,
    endpoint: Endpoint,
    field: &dyn Fn(&str) -> Option<&'a str>,
) -> Option<Response<MockBody>> {
    let bad_request = |error: &str, code: u32, description: String| {
        Some(oauth_error(
            &shared.counters,
            StatusCode::BAD_REQUEST,
            error,
            code,
            &description,
        ))
    };
    let unknown_resource = |resource: &str| {
        bad_request(
            "invalid_resource",
            500_011,
            format!(
                "The resource principal named {resource} was not found in the tenant named {TENANT}. \
                 This can happen if the application has not been installed by the administrator of \
                 the tenant or consented to by any user in the tenant. You might have sent your \
                 authentication request to the wrong tenant."
            ),
        )
    };
    match endpoint {
        Endpoint::V1 => match field("resource").filter(|v| !v.is_empty()) {
            Some(r) if r == shared.settings.resource => None,
            Some(r) => unknown_resource(r),
            // A v2.0-style `scope` is no substitute on the v1 endpoint.
            None => Some(missing(&shared.counters, "resource")),
        },
        Endpoint::V2 => match field("scope").filter(|v| !v.is_empty()) {
            Some(s) if s == shared.settings.scope => None,
            // The client-credentials form of a scope, for an API the tenant does not know.
            Some(s) if s.ends_with("/.default") && !s.contains(' ') => {
                unknown_resource(s.trim_end_matches("/.default"))
            }
            Some(s) => bad_request(
                "invalid_scope",
                70_011,
                format!(
                    "The provided request must include a 'scope' input parameter. The provided value \
                     for the input parameter 'scope' is not valid. The scope {s} is not valid."
                ),
            ),
            None => Some(missing(&shared.counters, "scope")),
        },
    }
}

fn success_body(shared: &MockState, style: TokenStyle, token: String, secs: u64) -> Value {
    let now = ids::unix_now();
    let expires_on = now.saturating_add(secs);
    let resource = shared.settings.resource.as_str();
    match style {
        TokenStyle::V2 => json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "access_token": token,
        }),
        TokenStyle::B2C => json!({
            "token_type": "Bearer",
            "expires_in": secs,
            "ext_expires_in": secs,
            "not_before": now,
            "expires_on": expires_on,
            "resource": resource,
            "access_token": token,
        }),
        TokenStyle::V1 => json!({
            "token_type": "Bearer",
            "expires_in": secs.to_string(),
            "ext_expires_in": secs.to_string(),
            "not_before": now.to_string(),
            "expires_on": expires_on.to_string(),
            "resource": resource,
            "access_token": token,
        }),
    }
}

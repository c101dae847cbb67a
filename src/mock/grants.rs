//! The user-delegated grants of the token endpoint: `authorization_code` (with the PKCE check)
//! and `refresh_token` (with rotation), answered the way B2C answers them.
//!
//! Checks run in this order: client known, secret right if one is sent (public clients send
//! none), then the grant's own fields. B2C errors carry an `AADB2C…` code in the description
//! and no `error_codes`.

use http::{Response, StatusCode};
use serde_json::{Value, json};

use super::body::{MockBody, json_response};
use super::ids;
use super::state::Shared;
use super::stats::bump;
use super::token::{missing, no_store, oauth_error};
use crate::sign_in::pkce;

const REFRESH_TOKEN_LIFETIME_S: u64 = 14 * 24 * 3600;

/// Answers a token request whose `grant_type` is `authorization_code` or `refresh_token`.
pub(crate) fn handle(
    shared: &Shared,
    grant: &str,
    form: &[(String, String)],
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let counters = &shared.counters;
    bump(match grant {
        "authorization_code" => &counters.authorization_code_grants,
        _ => &counters.refresh_token_grants,
    });
    let Some(client_id) = field("client_id").filter(|v| !v.is_empty()) else {
        return missing(shared, "client_id");
    };
    let clients = &shared.config.clients;
    if !clients.iter().any(|(id, _)| id == client_id) {
        return oauth_error(
            shared,
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            &format!("Application with identifier '{client_id}' was not found in the directory."),
        );
    }
    if let Some(secret) = field("client_secret").filter(|v| !v.is_empty())
        && !clients.iter().any(|(id, s)| id == client_id && s == secret)
    {
        return oauth_error(
            shared,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7_000_215,
            "Invalid client secret provided.",
        );
    }
    match grant {
        "authorization_code" => authorization_code(shared, client_id, form),
        _ => refresh_token(shared, client_id, form),
    }
}

fn authorization_code(
    shared: &Shared,
    client_id: &str,
    form: &[(String, String)],
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let Some(code) = field("code").filter(|v| !v.is_empty()) else {
        return missing(shared, "code");
    };
    let Some(issued) = shared
        .users
        .take_code(code)
        .filter(|c| c.client_id == client_id)
    else {
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90080: The provided grant has expired. Please re-authenticate and try again.",
        );
    };
    if field("redirect_uri") != Some(issued.redirect_uri.as_str()) {
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90006: The redirect_uri does not match the one the code was issued to.",
        );
    }
    let Some(verifier) = field("code_verifier").filter(|v| !v.is_empty()) else {
        return missing(shared, "code_verifier");
    };
    if !pkce::is_valid_verifier(verifier) || pkce::challenge(verifier) != issued.challenge {
        bump(&shared.counters.rejected_code_verifiers);
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90183: The supplied code_verifier is invalid; it does not match the code_challenge of the authorization request.",
        );
    }
    let has = |scope: &str| issued.scope.split(' ').any(|s| s == scope);
    let refresh = has("offline_access").then(|| {
        shared
            .users
            .issue_refresh(&shared.counters, client_id, &issued.scope)
    });
    let id_token = has("openid").then(|| id_token(shared, client_id, issued.nonce.as_deref()));
    success(shared, &issued.scope, refresh, id_token)
}

fn refresh_token(
    shared: &Shared,
    client_id: &str,
    form: &[(String, String)],
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let Some(presented) = field("refresh_token").filter(|v| !v.is_empty()) else {
        return missing(shared, "refresh_token");
    };
    let Some(scope) = shared.users.redeem_refresh(presented, client_id) else {
        bump(&shared.counters.rejected_refresh_tokens);
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90129: The provided grant has been revoked. Please reauthenticate and try again.",
        );
    };
    let rotate = shared
        .users
        .rotate
        .load(std::sync::atomic::Ordering::Relaxed);
    let refresh = rotate.then(|| {
        shared
            .users
            .issue_refresh(&shared.counters, client_id, &scope)
    });
    success(shared, &scope, refresh, None)
}

/// The value of a form field.
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// B2C's answer to a successful user-delegated grant.
fn success(
    shared: &Shared,
    scope: &str,
    refresh_token: Option<String>,
    id_token: Option<String>,
) -> Response<MockBody> {
    let (access_token, lifetime, _) = shared.issue_token();
    bump(&shared.counters.tokens_issued);
    let secs = lifetime.as_secs();
    let now = ids::unix_now();
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "not_before": now,
        "expires_in": secs,
        "expires_on": now.saturating_add(secs),
        "resource": USER_RESOURCE,
        "scope": scope,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(rt) = refresh_token {
            obj.insert("refresh_token".into(), Value::from(rt));
            obj.insert(
                "refresh_token_expires_in".into(),
                Value::from(REFRESH_TOKEN_LIFETIME_S),
            );
        }
        if let Some(id) = id_token {
            obj.insert("id_token".into(), Value::from(id));
        }
    }
    tracing::debug!("veracity mock: user token issued");
    no_store(json_response(StatusCode::OK, &body))
}

const USER_RESOURCE: &str = "37c59c8d-cd9d-4cd5-b05a-e67f1650ee14";

/// An unsigned ID token (`alg: none`) carrying the sign-in's nonce.
fn id_token(shared: &Shared, client_id: &str, nonce: Option<&str>) -> String {
    let now = ids::unix_now();
    let mut claims = json!({
        "iss": format!("{}/a68572e3-63ce-4bc1-acdc-b64943502e9d/v2.0/", shared.config.base_url),
        "sub": "00000000-0000-0000-0000-0000000005e7",
        "aud": client_id,
        "iat": now,
        "exp": now.saturating_add(3600),
        "name": "Mock User",
    });
    if let (Some(obj), Some(nonce)) = (claims.as_object_mut(), nonce) {
        obj.insert("nonce".into(), Value::from(nonce));
    }
    format!(
        "{}.{}.",
        pkce::base64url(br#"{"alg":"none","typ":"JWT"}"#),
        pkce::base64url(claims.to_string().as_bytes())
    )
}

/// A B2C-style OAuth error: the code in the description, then correlation id and timestamp.
fn b2c_error(shared: &Shared, error: &str, description: &str) -> Response<MockBody> {
    bump(&shared.counters.token_errors);
    tracing::debug!(error, "veracity mock: user grant rejected");
    let body = json!({
        "error": error,
        "error_description": format!(
            "{description}\r\nCorrelation ID: {}\r\nTimestamp: {}",
            ids::uuid(),
            ids::azure_timestamp()
        ),
    });
    no_store(json_response(StatusCode::BAD_REQUEST, &body))
}

//! The user-delegated grants of the token endpoint: `authorization_code` (with the PKCE check)
//! and `refresh_token` (with rotation), answered the way B2C answers them.
//!
//! Checks run in this order: the policy's endpoint, client known, secret (required for a
//! confidential app, right if one is sent), then the grant's own fields. Errors carry the
//! `AADB2C…` code the B2C error-code reference lists in the description and no `error_codes`;
//! successes carry every field as a string, as Veracity's identity documentation shows.

use std::sync::atomic::Ordering;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Response, StatusCode, Uri};
use serde_json::{Value, json};

use super::body::MockBody;
use super::ids;
use super::paths::{check_scope, is_policy_endpoint};
use super::reply::{AnswerDelay, json_response, missing, no_store};
use super::state::MockState;
use super::stats::bump;
use super::users::Refused;
use crate::pkce;

const REFRESH_TOKEN_LIFETIME_S: u64 = 14 * 24 * 3600;
const ID_TOKEN_LIFETIME_S: u64 = 3600;

/// Answers a token request whose `grant_type` is `authorization_code` or `refresh_token`.
pub(crate) fn handle(
    shared: &MockState,
    grant: &str,
    form: &[(String, String)],
    uri: &Uri,
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let counters = &shared.counters;
    bump(match grant {
        "authorization_code" => &counters.authorization_code_grants,
        _ => &counters.refresh_token_grants,
    });
    if !is_policy_endpoint(uri) {
        // Veracity's clients send user grants to the policy's endpoint; the mock refuses them
        // elsewhere so that a client sending them to the policy-less one fails its tests.
        return b2c_error(
            shared,
            "invalid_request",
            "The mock answers user grants only at the token endpoint of the policy B2C_1A_SignInWithADFSIdp (…/b2c_1a_signinwithadfsidp/oauth2/v2.0/token, or this path with ?p=B2C_1A_SignInWithADFSIdp).",
        );
    }
    let Some(client_id) = field("client_id").filter(|v| !v.is_empty()) else {
        return missing(&shared.counters, "client_id");
    };
    let clients = &shared.settings.clients;
    if !clients.iter().any(|(id, _)| id == client_id) {
        return b2c_error(
            shared,
            "unauthorized_client",
            &format!(
                "AADB2C90018: The client ID '{client_id}' specified in the request is not registered in tenant 'dnvglb2cprod.onmicrosoft.com'."
            ),
        );
    }
    match field("client_secret").filter(|v| !v.is_empty()) {
        Some(secret) if !clients.iter().any(|(id, s)| id == client_id && s == secret) => {
            return b2c_error(
                shared,
                "invalid_request",
                "AADB2C90081: The specified client_secret does not match the expected value for this client. Please correct the client_secret and try again.",
            );
        }
        None if shared.users.confidential.load(Ordering::Relaxed) => {
            return b2c_error(
                shared,
                "invalid_request",
                "AADB2C90079: Clients must send a client_secret when redeeming a confidential grant.",
            );
        }
        _ => {}
    }
    let mut response = match grant {
        "authorization_code" => authorization_code(shared, client_id, form),
        _ => refresh_token(shared, client_id, form),
    };
    if let Some(delay) = shared.users.next_answer_delay() {
        response.extensions_mut().insert(AnswerDelay(delay));
    }
    response
}

fn authorization_code(
    shared: &MockState,
    client_id: &str,
    form: &[(String, String)],
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let Some(code) = field("code").filter(|v| !v.is_empty()) else {
        return missing(&shared.counters, "code");
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
        return missing(&shared.counters, "code_verifier");
    };
    if !pkce::is_valid_verifier(verifier) {
        bump(&shared.counters.rejected_code_verifiers);
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90183: The supplied code_verifier is invalid",
        );
    }
    if pkce::challenge(verifier) != issued.challenge {
        bump(&shared.counters.rejected_code_verifiers);
        return b2c_error(
            shared,
            "invalid_grant",
            "AADB2C90182: The supplied code_verifier does not match associated code_challenge",
        );
    }
    let resource = match check_scope(&issued.scope) {
        Ok(resource) => resource,
        Err((error, description)) => return b2c_error(shared, error, &description),
    };
    let has = |scope: &str| issued.scope.split(' ').any(|s| s == scope);
    let refresh = has("offline_access").then(|| {
        shared
            .users
            .issue_refresh(&shared.counters, client_id, &issued.scope)
    });
    let id_token = has("openid").then(|| id_token(shared, client_id, issued.nonce.as_deref()));
    success(shared, resource, &issued.scope, refresh, id_token)
}

fn refresh_token(
    shared: &MockState,
    client_id: &str,
    form: &[(String, String)],
) -> Response<MockBody> {
    let field = |name: &str| field(form, name);
    let Some(presented) = field("refresh_token").filter(|v| !v.is_empty()) else {
        return missing(&shared.counters, "refresh_token");
    };
    // A scope sent with the refresh must be one B2C accepts, as at the authorize endpoint.
    let requested = field("scope");
    if let Some(Err((error, description))) = requested.map(check_scope) {
        return b2c_error(shared, error, &description);
    }
    let scope = match shared.users.redeem_refresh(presented, client_id) {
        Ok(scope) => scope,
        Err(refused) => {
            bump(&shared.counters.rejected_refresh_tokens);
            if refused == Refused::Reused {
                bump(&shared.counters.reused_refresh_tokens);
            }
            return b2c_error(
                shared,
                "invalid_grant",
                "AADB2C90129: The provided grant has been revoked. Please reauthenticate and try again.",
            );
        }
    };
    // The access token is for the API the refresh asks for (B2C redeems a refresh token for
    // any API the app was granted and the user consented to; the mock consents to both),
    // else for the sign-in's; a rotated refresh token keeps the sign-in's scope.
    let answered = requested.unwrap_or(&scope);
    let resource = match check_scope(answered) {
        Ok(resource) => resource,
        Err((error, description)) => return b2c_error(shared, error, &description),
    };
    let rotate = shared.users.rotate.load(Ordering::Relaxed);
    let refresh = rotate.then(|| {
        shared
            .users
            .issue_refresh(&shared.counters, client_id, &scope)
    });
    success(shared, resource, answered, refresh, None)
}

/// The value of a form field.
fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// B2C's answer to a successful user-delegated grant: every field a string, as Veracity's
/// identity documentation (`web-native.md`) shows, `resource` the API's app ID.
fn success(
    shared: &MockState,
    resource: &str,
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
        "not_before": now.to_string(),
        "expires_in": secs.to_string(),
        "expires_on": now.saturating_add(secs).to_string(),
        "resource": resource,
        "scope": scope,
    });
    if let Some(obj) = body.as_object_mut() {
        if let Some(rt) = refresh_token {
            obj.insert("refresh_token".into(), Value::from(rt));
            obj.insert(
                "refresh_token_expires_in".into(),
                Value::from(REFRESH_TOKEN_LIFETIME_S.to_string()),
            );
        }
        if let Some(id) = id_token {
            obj.insert("id_token".into(), Value::from(id));
            obj.insert(
                "id_token_expires_in".into(),
                Value::from(ID_TOKEN_LIFETIME_S.to_string()),
            );
        }
    }
    tracing::debug!("veracity mock: user token issued");
    no_store(json_response(StatusCode::OK, &body))
}

/// An unsigned ID token (`alg: none`) carrying the sign-in's nonce.
fn id_token(shared: &MockState, client_id: &str, nonce: Option<&str>) -> String {
    let now = ids::unix_now();
    let mut claims = json!({
        "iss": format!("{}/a68572e3-63ce-4bc1-acdc-b64943502e9d/v2.0/", shared.settings.base_url),
        "sub": "00000000-0000-0000-0000-0000000005e7",
        "aud": client_id,
        "iat": now,
        "exp": now.saturating_add(ID_TOKEN_LIFETIME_S),
        "name": "Mock User",
    });
    if let (Some(obj), Some(nonce)) = (claims.as_object_mut(), nonce) {
        obj.insert("nonce".into(), Value::from(nonce));
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string().as_bytes())
    )
}

/// A B2C-style OAuth error: the code in the description, then correlation id and timestamp.
fn b2c_error(shared: &MockState, error: &str, description: &str) -> Response<MockBody> {
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

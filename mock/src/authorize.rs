//! The authorize endpoint: consents at once and redirects to the client's loopback
//! `redirect_uri` with a code (or with an OAuth error), as B2C does after a sign-in.
//!
//! Requests that cannot be redirected safely (unknown client, a `redirect_uri` that is not
//! `http` on a loopback host) get a `400` page instead, never a redirect. Error codes are the
//! ones the Azure AD B2C error-code reference lists for each case.

use std::sync::atomic::Ordering;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue, LOCATION};
use http::request::Parts;
use http::{Method, Response, StatusCode, Uri};

use super::body::MockBody;
use super::paths::check_scope;
use super::state::MockState;

/// Answers one authorize request.
pub(crate) fn handle(shared: &MockState, parts: &Parts) -> Response<MockBody> {
    if parts.method != Method::GET {
        return page(
            StatusCode::METHOD_NOT_ALLOWED,
            "The authorize endpoint takes GET.",
        );
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(parts.uri.query().unwrap_or("")).unwrap_or_default();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) =
        get("client_id").filter(|id| shared.settings.clients.iter().any(|(known, _)| known == id))
    else {
        return page(
            StatusCode::BAD_REQUEST,
            "AADB2C90018: The client ID specified in the request is not registered in tenant 'dnvglb2cprod.onmicrosoft.com'.",
        );
    };
    let Some(redirect_uri) = get("redirect_uri").filter(|u| is_loopback_http(u)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "AADB2C90006: The redirect URI provided in the request is not registered for the client id (the mock accepts http loopback addresses).",
        );
    };
    let state = get("state");
    let refuse = |error: &str, description: &str| {
        redirect(
            redirect_uri,
            &[("error", error), ("error_description", description)],
            state,
        )
    };
    if get("response_type") != Some("code") {
        return refuse(
            "unsupported_response_type",
            "AADB2C90013: The requested response type provided in the request is not supported (the mock supports 'code' only).",
        );
    }
    let Some(challenge) = get("code_challenge") else {
        return refuse(
            "invalid_request",
            "AADB2C90083: The request is missing required parameter: code_challenge (the mock requires PKCE).",
        );
    };
    if get("code_challenge_method") != Some("S256") {
        return refuse(
            "invalid_request",
            "AADB2C90184: The supplied code_challenge_method is not supported (the mock supports S256 only).",
        );
    }
    if challenge.len() != 43 {
        return refuse(
            "invalid_request",
            "The code_challenge is not a 43-character S256 challenge.",
        );
    }
    let Some(scope) = get("scope") else {
        return refuse(
            "invalid_request",
            "AADB2C90010: The request does not contain a scope parameter.",
        );
    };
    if let Err((error, description)) = check_scope(scope) {
        return refuse(error, &description);
    }
    if shared.users.deny.load(Ordering::Relaxed) {
        return refuse(
            "access_denied",
            "AADB2C90091: The user has cancelled entering self-asserted information.",
        );
    }
    let code = shared
        .users
        .issue_code(client_id, redirect_uri, challenge, scope, get("nonce"));
    tracing::debug!("veracity mock: sign-in consented, redirecting with a code");
    redirect(redirect_uri, &[("code", &code)], state)
}

/// `http://127.0.0.1`, `http://localhost` or `http://[::1]`, any port and path.
fn is_loopback_http(uri: &str) -> bool {
    let Ok(uri) = uri.parse::<Uri>() else {
        return false;
    };
    uri.scheme_str() == Some("http")
        && matches!(uri.host(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// `302` to `redirect_uri` with `params` and the `state` added to its query.
fn redirect(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response<MockBody> {
    let mut all = params.to_vec();
    if let Some(state) = state {
        all.push(("state", state));
    }
    let query = serde_urlencoded::to_string(&all).unwrap_or_default();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let Ok(location) = HeaderValue::from_str(&format!("{redirect_uri}{separator}{query}")) else {
        return page(StatusCode::BAD_REQUEST, "The redirect URI is not valid.");
    };
    let mut resp = Response::new(MockBody::empty());
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(LOCATION, location);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn page(status: StatusCode, text: &'static str) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

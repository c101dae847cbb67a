//! Serving an injected fault: what a [`Fault`] taken from a queue amounts to for the request
//! being answered.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use super::body::MockBody;
use super::fault::{Fault, fault_name};
use super::reply::json_response;
use super::state::MockState;
use super::stats::bump;

/// What serving a fault amounts to.
pub(crate) enum Outcome {
    /// Send this response.
    Respond(Response<MockBody>),
    /// Go on and answer normally (after a delay).
    Proceed,
    /// Close the connection without a response.
    Drop,
    /// Never answer.
    Hang,
}

/// Serves one fault (counted in `faults_served`).
pub(crate) async fn serve(shared: &MockState, fault: Fault) -> Outcome {
    bump(&shared.counters.faults_served);
    tracing::debug!(
        fault = fault_name(&fault),
        "veracity mock: serving injected fault"
    );
    match fault {
        Fault::Respond {
            status,
            headers,
            body,
        } => Outcome::Respond(canned(status, &headers, body)),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            Outcome::Proceed
        }
        Fault::Hang => Outcome::Hang,
        Fault::DropConnection => Outcome::Drop,
        Fault::ResetMidBody { status, partial } => {
            let len = partial.len().saturating_add(1024);
            let mut resp = Response::new(MockBody::abort_after(partial));
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(CONTENT_LENGTH, HeaderValue::from(len));
            Outcome::Respond(resp)
        }
        Fault::Oversized { bytes } => {
            let mut resp = Response::new(MockBody::padding(bytes));
            resp.headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Outcome::Respond(resp)
        }
        Fault::IssueToken {
            access_token,
            token_type,
            expires_in,
        } => Outcome::Respond(issue_token(shared, access_token, token_type, expires_in)),
    }
}

/// Never returns; dropped with its connection when the server stops.
pub(crate) async fn hang() -> Infallible {
    std::future::pending().await
}

fn canned(status: StatusCode, headers: &[(String, String)], body: Bytes) -> Response<MockBody> {
    let mut resp = Response::new(MockBody::empty());
    *resp.status_mut() = status;
    let map = resp.headers_mut();
    for (name, value) in headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            (Ok(n), Ok(v)) => {
                map.append(n, v);
            }
            _ => tracing::warn!(header = %name, "veracity mock: skipping invalid fault header"),
        }
    }
    *resp.body_mut() = if map.contains_key(CONTENT_LENGTH) {
        MockBody::without_length(body)
    } else {
        MockBody::full(body)
    };
    resp
}

fn issue_token(
    shared: &MockState,
    access_token: String,
    token_type: String,
    expires_in: serde_json::Value,
) -> Response<MockBody> {
    let mut body = serde_json::Map::new();
    body.insert("access_token".into(), access_token.clone().into());
    body.insert("token_type".into(), token_type.into());
    let secs = match &expires_in {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    if !expires_in.is_null() {
        body.insert("expires_in".into(), expires_in);
    }
    let lifetime = secs.filter(|s| s.is_finite()).map(|s| {
        if s <= 0.0 {
            Some(Duration::ZERO)
        } else {
            Duration::try_from_secs_f64(s).ok()
        }
    });
    if !access_token.is_empty() {
        shared.register_token(access_token, lifetime);
        bump(&shared.counters.tokens_issued);
    }
    json_response(StatusCode::OK, &serde_json::Value::Object(body))
}

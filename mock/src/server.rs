//! The accept loop, hyper HTTP/1 connection handling, request routing between
//! the token endpoint and the gateway, body reading and request recording.
//!
//! Connections run in a `JoinSet` owned by the accept task, so aborting that
//! task (when the [`MockVeracity`](super::MockVeracity) is dropped) drops every
//! connection with it, hanging ones included.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::body::MockBody;
use super::fault_reply::{self, Outcome};
use super::paths::{
    API_PATH, API_PATH_V1, AUTHORIZE_PATH, KEY_HEADER, POLICY_TOKEN_PATH, TOKEN_PATH, TOKEN_PATH_V1,
};
use super::reply::{AnswerDelay, empty_response, json_response, with_correlation_id};
use super::state::MockState;
use super::stats::{RecordedRequest, bump};
use super::{authorize, gateway, token};

/// Request bodies larger than this are answered with `413`.
pub(crate) const MAX_REQUEST_BODY: usize = 4 * 1024 * 1024;

/// The status recorded for requests that got no response at all.
fn no_response_status() -> StatusCode {
    StatusCode::from_u16(444).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Accepts connections until the task is aborted.
pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<MockState>) {
    let mut connections = JoinSet::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                connections.spawn(serve_connection(stream, shared.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "veracity mock: accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<MockState>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { handle(&shared, req).await }
    });
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(error = %e, "veracity mock: connection ended with an error");
    }
}

enum Route<'a> {
    Token(token::Endpoint),
    Authorize,
    Gateway(&'a str),
    Other,
}

fn route(path: &str) -> Route<'_> {
    if path == TOKEN_PATH || path.eq_ignore_ascii_case(POLICY_TOKEN_PATH) {
        return Route::Token(token::Endpoint::V2);
    }
    if path == TOKEN_PATH_V1 {
        return Route::Token(token::Endpoint::V1);
    }
    if path == AUTHORIZE_PATH {
        return Route::Authorize;
    }
    for prefix in [API_PATH, API_PATH_V1] {
        if let Some(rest) = path.strip_prefix(prefix)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return Route::Gateway(rest);
        }
    }
    Route::Other
}

/// Answers one request. An `Err` makes hyper close the connection without a
/// response.
async fn handle(shared: &MockState, req: Request<Incoming>) -> io::Result<Response<MockBody>> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let route = route(&path);
    match route {
        Route::Token(_) => bump(&shared.counters.token_requests),
        Route::Gateway(_) => bump(&shared.counters.api_requests),
        Route::Authorize => bump(&shared.counters.authorize_requests),
        Route::Other => {}
    }

    if let Route::Gateway(rest) = route
        && gateway::is_pattern_upload(rest, &parts)
    {
        let resp = gateway::pattern_upload(shared, rest, &parts, body).await?;
        record(shared, &parts, Bytes::new(), resp.status());
        return Ok(resp);
    }

    let body = match Limited::new(body, MAX_REQUEST_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let mut resp = json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({ "statusCode": 413, "message": "Request entity too large." }),
            );
            match route {
                Route::Token(_) => bump(&shared.counters.token_errors),
                Route::Gateway(_) => with_correlation_id(&mut resp),
                Route::Authorize | Route::Other => {}
            }
            record(shared, &parts, Bytes::new(), resp.status());
            return Ok(resp);
        }
        Err(e) => return Err(io::Error::other(e)),
    };

    let fault = match route {
        Route::Token(_) => shared.live().token_faults.next(),
        Route::Gateway(_) => shared.live().api_faults.next(),
        Route::Authorize | Route::Other => None,
    };
    if let Some(fault) = fault {
        match fault_reply::serve(shared, fault).await {
            Outcome::Proceed => {}
            Outcome::Respond(resp) => {
                record(shared, &parts, body, resp.status());
                return Ok(resp);
            }
            Outcome::Drop => {
                record(shared, &parts, body, no_response_status());
                return Err(io::Error::other(
                    "veracity mock: connection dropped (injected fault)",
                ));
            }
            Outcome::Hang => {
                record(shared, &parts, body, no_response_status());
                match fault_reply::hang().await {}
            }
        }
    }

    let mut resp = match route {
        Route::Token(endpoint) => token::handle(shared, endpoint, &parts, &body),
        Route::Gateway(rest) => gateway::handle(shared, rest, &parts, &body).await,
        Route::Authorize => authorize::handle(shared, &parts),
        Route::Other => empty_response(StatusCode::NOT_FOUND),
    };
    // A user grant already processed, answered late (`delay_user_grant_answers`).
    if let Some(AnswerDelay(delay)) = resp.extensions_mut().remove() {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(method = %parts.method, path = %path, status = resp.status().as_u16(), "veracity mock: answered");
    record(shared, &parts, body, resp.status());
    Ok(resp)
}

fn record(shared: &MockState, parts: &Parts, body: Bytes, status: StatusCode) {
    shared.record(|| RecordedRequest {
        method: parts.method.clone(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        body,
        status,
        had_token: parts.headers.contains_key(http::header::AUTHORIZATION),
        had_key: parts.headers.contains_key(KEY_HEADER),
        user_agent: parts
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
}

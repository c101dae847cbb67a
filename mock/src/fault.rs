//! The faults a test can inject (canned answers, delays, hangs, dropped or reset
//! connections, oversized bodies, hand-made token responses) and their queues.
//!
//! Faults are data. [`MockVeracity::fail_token_requests`](super::MockVeracity::fail_token_requests)
//! and [`MockVeracity::fail_api_requests`](super::MockVeracity::fail_api_requests)
//! append a `(Fault, Times)` entry to the token or gateway queue. Each incoming
//! request on that side takes the fault at the front of the queue (after its
//! body was read, before any check); an entry leaves the queue once it was used
//! the given number of times, so entries apply in FIFO order. A
//! [`Times::Always`] entry never leaves, and hides the entries behind it until
//! [`MockVeracity::clear_faults`](super::MockVeracity::clear_faults).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, RETRY_AFTER};

use super::reply::oauth_error_json;

/// How many requests a fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Times {
    /// The next request only.
    Once,
    /// The next `n` requests (`N(0)` queues nothing).
    N(usize),
    /// Every request from now on, until [`MockVeracity::clear_faults`](super::MockVeracity::clear_faults).
    Always,
}

/// A misbehaviour the mock can be told to show instead of (or before) its
/// normal answer.
///
/// [`MockVeracity::fail_token_requests`](super::MockVeracity::fail_token_requests)
/// and [`MockVeracity::fail_api_requests`](super::MockVeracity::fail_api_requests)
/// append a `(Fault, Times)` entry to the token or gateway queue. Each request
/// on that side takes one use of the entry at the front (after its body was
/// read, before any check); an entry leaves once used up, so entries apply in
/// FIFO order. A [`Times::Always`] entry never leaves and hides the entries
/// behind it until [`MockVeracity::clear_faults`](super::MockVeracity::clear_faults).
/// Each use counts in [`MockStats::faults_served`](super::MockStats::faults_served).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with exactly this status, these headers and this body.
    ///
    /// Covers 5xx, HTML with 200, empty or truncated bodies, redirects
    /// (`Location`), 403 quota, 400 business errors and custom token bodies.
    /// Header pairs that are not valid HTTP are skipped. A `Content-Length`
    /// header is sent as given, even if it does not match the body (hyper then
    /// closes the connection when the body falls short).
    Respond {
        /// The status code.
        status: StatusCode,
        /// Header names and values, in order.
        headers: Vec<(String, String)>,
        /// The body.
        body: Bytes,
    },
    /// Wait this long (`tokio::time::sleep`), then answer normally.
    Delay(Duration),
    /// Read the request, then never answer, until the server is dropped.
    Hang,
    /// Read the request, then close the connection without any response.
    DropConnection,
    /// Send this status with a `Content-Length` 1024 bytes larger than
    /// `partial`, send `partial`, then abort the connection.
    ResetMidBody {
        /// The status code.
        status: StatusCode,
        /// The part of the body actually sent.
        partial: Bytes,
    },
    /// A `200` `application/json` body of exactly `bytes` bytes
    /// (`{"padding":"xxx…"}`), streamed without being held in memory.
    Oversized {
        /// Body size in bytes.
        bytes: usize,
    },
    /// A `200` token response with exactly these values:
    /// `{"access_token":..,"token_type":..,"expires_in":..}` (`expires_in` is
    /// left out when it is `Value::Null`).
    ///
    /// The gateway accepts the token afterwards: it expires after `expires_in`
    /// seconds when that is a number (or a string holding one; zero or negative
    /// means already expired), otherwise after the configured token lifetime.
    IssueToken {
        /// The `access_token` value, sent verbatim (it may contain anything).
        access_token: String,
        /// The `token_type` value.
        token_type: String,
        /// The `expires_in` value: a number, a string, anything, or `Null` to omit it.
        expires_in: serde_json::Value,
    },
}

impl Fault {
    /// A response with this status and an empty body. A code outside
    /// `100..=999` is served as `500`.
    pub fn status(status: u16) -> Fault {
        Fault::Respond {
            status: status_or_500(status),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// An Azure AD style OAuth error:
    /// `{"error":..,"error_description":"AADSTS<code>: <description> …","error_codes":[code],"timestamp":..,"trace_id":..,"correlation_id":..}`.
    ///
    /// A description that already starts with `AAD` (e.g. `AADB2C90081: …`) is
    /// not prefixed again.
    pub fn oauth_error(status: u16, error: &str, aadsts_code: u32, description: &str) -> Fault {
        let body = oauth_error_json(error, aadsts_code, description);
        Fault::json(status, body)
    }

    /// `429 Too Many Requests` with `Retry-After` set to exactly `retry_after`
    /// and a plain-text body.
    pub fn too_many_requests(retry_after: &str) -> Fault {
        Fault::Respond {
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: vec![
                (RETRY_AFTER.to_string(), retry_after.to_string()),
                (CONTENT_TYPE.to_string(), "text/plain".to_string()),
            ],
            body: Bytes::from("Too many requests. Please try again later."),
        }
    }

    /// This status with this JSON body (`content-type: application/json`).
    /// A code outside `100..=999` is served as `500`.
    pub fn json(status: u16, body: serde_json::Value) -> Fault {
        Fault::Respond {
            status: status_or_500(status),
            headers: vec![(CONTENT_TYPE.to_string(), "application/json".to_string())],
            body: Bytes::from(body.to_string()),
        }
    }
}

fn status_or_500(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A FIFO of faults, each with its remaining use count (`None`: always).
#[derive(Default)]
pub(crate) struct FaultQueue {
    entries: VecDeque<(Fault, Option<usize>)>,
}

impl FaultQueue {
    pub(crate) fn push(&mut self, fault: Fault, times: Times) {
        let left = match times {
            Times::Once => Some(1),
            Times::N(0) => return,
            Times::N(n) => Some(n),
            Times::Always => None,
        };
        self.entries.push_back((fault, left));
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }

    /// Takes one use of the fault at the front, if any.
    pub(crate) fn next(&mut self) -> Option<Fault> {
        let (fault, left) = self.entries.front_mut()?;
        match left {
            None => Some(fault.clone()),
            Some(n) if *n > 1 => {
                *n -= 1;
                Some(fault.clone())
            }
            Some(_) => self.entries.pop_front().map(|(f, _)| f),
        }
    }
}

/// The fault's name in logs.
pub(crate) fn fault_name(fault: &Fault) -> &'static str {
    match fault {
        Fault::Respond { .. } => "respond",
        Fault::Delay(_) => "delay",
        Fault::Hang => "hang",
        Fault::DropConnection => "drop_connection",
        Fault::ResetMidBody { .. } => "reset_mid_body",
        Fault::Oversized { .. } => "oversized",
        Fault::IssueToken { .. } => "issue_token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_fifo_with_counts() {
        let mut q = FaultQueue::default();
        q.push(Fault::status(500), Times::N(2));
        q.push(Fault::Delay(Duration::ZERO), Times::N(0));
        q.push(Fault::Hang, Times::Once);
        q.push(Fault::DropConnection, Times::Always);
        let name = |f: Option<Fault>| f.map(|f| fault_name(&f));
        assert_eq!(name(q.next()), Some("respond"));
        assert_eq!(name(q.next()), Some("respond"));
        assert_eq!(name(q.next()), Some("hang"));
        assert_eq!(name(q.next()), Some("drop_connection"));
        assert_eq!(name(q.next()), Some("drop_connection"));
        q.clear();
        assert!(q.next().is_none());
    }
}

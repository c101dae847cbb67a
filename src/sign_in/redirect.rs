//! The loopback redirect listener: binds it on one port of `127.0.0.1` (and `[::1]`, see
//! [`RedirectHost`]), serves the browser's redirect, checks `state`, and hands back the
//! authorization code. Anything else (another path, no code, another `state`, bytes that are
//! not HTTP) is answered `400` and the wait goes on.
//!
//! Every connection is served by hyper on a task of a `JoinSet` that the waiting future
//! owns, so an idle connection a browser opened ahead (a preconnect) never blocks the one
//! that carries the code, and all of them close when the wait ends. Connections are not
//! kept alive: the one carrying the answer ends once its page was sent, and its task then
//! returns the outcome.
//!
//! Nothing a local process does to the listener ends the sign-in; only the redirect, or the
//! timeout, does. At most `MAX_CONNECTIONS` are served at once: a connection arriving at the
//! cap closes the oldest one that has not sent a request yet, so a flood of idle connections
//! cannot keep the redirect out, and one that sends no complete request head within
//! `HEAD_TIMEOUT` is closed. Errors `accept` reports about one connection (reset or aborted
//! before it was accepted) are skipped; any other (most often descriptors or buffers ran out:
//! EMFILE, ENFILE, ENOBUFS, ENOMEM) closes the oldest idle connection, which frees a
//! descriptor, and pauses accepting briefly (tokio time, doubling up to `MAX_PAUSE`).

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::{Future, poll_fn, ready},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    task::{AbortHandle, JoinSet},
    time::Sleep,
};

use crate::{Error, SignInError, redact::clean, token::Secret};

/// The most connections served at once. A browser opens a few; a new one at the cap closes
/// the oldest connection that has not sent a request yet.
const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send a complete request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may last at all (a request body trickling in, say).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The first pause after `accept` failed; it doubles while `accept` keeps failing.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause after `accept` failed.
const MAX_PAUSE: Duration = Duration::from_secs(1);

/// The host of the redirect URI, and the loopback addresses the listener listens on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RedirectHost {
    /// `http://localhost:<port>/`, listening on both `127.0.0.1` and `[::1]`, since browsers
    /// resolve `localhost` either way (on a machine without IPv6 loopback, on `127.0.0.1`
    /// alone). The default: Azure AD B2C accepts any port for a registered
    /// `http://localhost` reply URL.
    #[default]
    Localhost,
    /// `http://127.0.0.1:<port>/`, listening on `127.0.0.1` only, for app registrations
    /// whose reply URL names the address.
    Ipv4Loopback,
}

impl RedirectHost {
    /// The host the redirect URI names.
    pub(super) fn uri_host(self) -> &'static str {
        match self {
            RedirectHost::Localhost => "localhost",
            RedirectHost::Ipv4Loopback => "127.0.0.1",
        }
    }
}

/// Binds the redirect listener(s) on one port: `127.0.0.1`, and `[::1]` too for `localhost`.
pub(super) async fn listen(
    host: RedirectHost,
    port: u16,
) -> Result<(Vec<TcpListener>, u16), Error> {
    let failed = |ip: IpAddr, port: u16| {
        move |e: io::Error| {
            Error::SignIn(SignInError::Listener {
                addr: SocketAddr::new(ip, port).to_string(),
                source: Arc::new(e),
            })
        }
    };
    let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
    // A free port on 127.0.0.1 may be taken on [::1]: then try another one.
    for _ in 0..8 {
        let ipv4 = TcpListener::bind((v4, port))
            .await
            .map_err(failed(v4, port))?;
        let bound = ipv4.local_addr().map_err(failed(v4, port))?.port();
        if host == RedirectHost::Ipv4Loopback {
            return Ok((vec![ipv4], bound));
        }
        match TcpListener::bind((v6, bound)).await {
            Ok(ipv6) => return Ok((vec![ipv4, ipv6], bound)),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && port == 0 => continue,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(failed(v6, bound)(e)),
            // No IPv6 loopback on this machine: browsers resolve `localhost` to 127.0.0.1.
            Err(e) => {
                tracing::debug!(target: "veracity_auth::sign_in", error = %e, "no [::1]; listening on 127.0.0.1 only");
                return Ok((vec![ipv4], bound));
            }
        }
    }
    Err(failed(v6, port)(io::Error::new(
        io::ErrorKind::AddrInUse,
        "no port free on both 127.0.0.1 and [::1]",
    )))
}

/// What the redirect must look like, and whether a redirect with another `state` came.
pub(super) struct Expect {
    path: String,
    state: Secret,
    wrong_state: AtomicBool,
}

impl Expect {
    pub(super) fn new(path: String, state: Secret) -> Self {
        Expect {
            path,
            state,
            wrong_state: AtomicBool::new(false),
        }
    }

    /// Whether a redirect with a `state` not this sign-in's was refused.
    pub(super) fn saw_wrong_state(&self) -> bool {
        self.wrong_state.load(Ordering::Relaxed)
    }
}

/// What a redirect brought back: the authorization code, or why there is none.
type RedirectResult = Result<Secret, Error>;

/// Serves the listeners until a redirect carrying this sign-in's `state` and a code (or an
/// error) arrives; returns the code. Returns only once every connection is closed, so their
/// descriptors are free for the code exchange.
pub(super) async fn wait(listeners: Vec<TcpListener>, expect: Arc<Expect>) -> RedirectResult {
    let mut connections = Connections::default();
    // A connection accepted at the cap, served once one closed for it.
    let mut waiting: Option<TcpStream> = None;
    let mut pause: Option<Pin<Box<Sleep>>> = None;
    let mut next_pause = FIRST_PAUSE;
    let mut first = 0;
    let outcome = poll_fn(|cx| {
        loop {
            // Also registers for the end of any connection, which makes room.
            if let Poll::Ready(outcome) = connections.poll_outcome(cx) {
                return Poll::Ready(outcome);
            }
            if let Some(stream) = waiting.take() {
                match connections.admit(stream, &expect) {
                    // Poll the connections again: an empty `JoinSet` registered no waker,
                    // and the new connection's end must wake this future.
                    Ok(()) => continue,
                    Err(stream) => {
                        waiting = Some(stream);
                        return Poll::Pending;
                    }
                }
            }
            if let Some(sleep) = &mut pause {
                std::task::ready!(sleep.as_mut().poll(cx));
                pause = None;
            }
            let mut accepted = false;
            for i in 0..listeners.len() {
                // Round robin, so a flood on one address cannot starve the other.
                let turn = (first + i) % listeners.len();
                match listeners[turn].poll_accept(cx) {
                    Poll::Ready(Ok((stream, _))) => {
                        waiting = Some(stream);
                        next_pause = FIRST_PAUSE;
                        first = turn + 1;
                        accepted = true;
                        break;
                    }
                    // The peer gave up between SYN and accept: nothing to do with the listener.
                    Poll::Ready(Err(e)) if concerns_one_connection(&e) => accepted = true,
                    Poll::Ready(Err(e)) => {
                        tracing::warn!(target: "veracity_auth::sign_in", error = %e, "the redirect listener could not accept a connection; retrying shortly");
                        connections.make_room();
                        pause = Some(Box::pin(tokio::time::sleep(next_pause)));
                        next_pause = (next_pause * 2).min(MAX_PAUSE);
                        accepted = true;
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            if !accepted {
                return Poll::Pending;
            }
        }
    })
    .await;
    connections.tasks.shutdown().await;
    outcome
}

/// Errors `accept` reports about one connection, not about the listener (Linux passes a
/// connection's pending network error on to `accept`).
fn concerns_one_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// The connections being served, each on a task the waiting future owns. A task counts
/// until it has ended, closed ones included: its socket is open until then.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<Option<RedirectResult>>,
    /// The connections not told to close, oldest first, each with whether its request came.
    open: VecDeque<(AbortHandle, Arc<AtomicBool>)>,
}

impl Connections {
    /// The outcome, once a connection's request settled the sign-in; reaps the others.
    fn poll_outcome(&mut self, cx: &mut Context<'_>) -> Poll<RedirectResult> {
        while let Poll::Ready(Some(done)) = self.tasks.poll_join_next(cx) {
            if let Ok(Some(outcome)) = done {
                return Poll::Ready(outcome);
            }
        }
        self.open.retain(|(task, _)| !task.is_finished());
        Poll::Pending
    }

    /// Serves `stream`, or gives it back when [`MAX_CONNECTIONS`] are open; then makes room.
    fn admit(&mut self, stream: TcpStream, expect: &Arc<Expect>) -> Result<(), TcpStream> {
        if self.tasks.len() >= MAX_CONNECTIONS {
            self.make_room();
            return Err(stream);
        }
        let requested = Arc::new(AtomicBool::new(false));
        let task = self
            .tasks
            .spawn(serve(stream, Arc::clone(expect), Arc::clone(&requested)));
        self.open.push_back((task, requested));
        Ok(())
    }

    /// Closes the oldest connection that has not sent a request (one that did may carry the
    /// code), unless one is closing already.
    fn make_room(&mut self) {
        let closing = self.tasks.len() > self.open.len();
        if closing {
            return;
        }
        let idle = |(task, requested): &(AbortHandle, Arc<AtomicBool>)| {
            !requested.load(Ordering::Relaxed) && !task.is_finished()
        };
        if let Some((task, _)) = self
            .open
            .iter()
            .position(idle)
            .and_then(|oldest| self.open.remove(oldest))
        {
            task.abort();
        }
    }
}

/// Serves one connection (one request); returns the outcome if that request settled the
/// sign-in. Sets `requested` when the request head arrived.
async fn serve(
    stream: TcpStream,
    expect: Arc<Expect>,
    requested: Arc<AtomicBool>,
) -> Option<RedirectResult> {
    let slot = Arc::new(Mutex::new(None));
    let service = {
        let slot = Arc::clone(&slot);
        service_fn(move |request: Request<Incoming>| {
            requested.store(true, Ordering::Relaxed);
            let (status, page, outcome) = judge(&expect, request.uri());
            if let Some(outcome) = outcome {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(outcome);
            }
            ready(Ok::<_, Infallible>(response(status, page)))
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::debug!(target: "veracity_auth::sign_in", error = %e, "redirect connection ended with an error");
        }
        Err(_) => {
            tracing::debug!(target: "veracity_auth::sign_in", "redirect connection closed: it outlived its time");
        }
    }
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

const SIGNED_IN: &str =
    "Signed in to Veracity. You can close this window and return to the application.\n";
const WAITING: &str = "This address waits for a Veracity sign-in response.\n";
const WRONG_STATE: &str = "This response does not belong to the sign-in in progress (a stale browser tab?). The application keeps waiting for its own.\n";
const DENIED: &str =
    "Sign-in failed: the identity provider refused it. The application has the details.\n";
const NO_CODE: &str =
    "Sign-in failed: the response carried an empty code. Start the sign-in again.\n";

/// Decides what one request to the listener means: the page to show, and the outcome if it
/// ends the sign-in. Only a request carrying this sign-in's `state` can end it.
fn judge(expect: &Expect, uri: &Uri) -> (StatusCode, &'static str, Option<RedirectResult>) {
    if uri.path() != expect.path {
        // `/favicon.ico`, a scanner's probe: not for us.
        return (StatusCode::BAD_REQUEST, WAITING, None);
    }
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (code, error) = (get("code"), get("error"));
    if code.is_none() && error.is_none() {
        // A person opening the address by hand, not the provider's redirect.
        return (StatusCode::BAD_REQUEST, WAITING, None);
    }
    if !get("state").is_some_and(|s| same(s, expect.state.expose())) {
        // A stale tab or a forgery: refuse it, and keep waiting for the real redirect.
        tracing::warn!(target: "veracity_auth::sign_in", "redirect with a wrong `state` refused; still waiting");
        expect.wrong_state.store(true, Ordering::Relaxed);
        return (StatusCode::BAD_REQUEST, WRONG_STATE, None);
    }
    if let Some(error) = error {
        let error = clean(error, 64, &[]);
        let description = get("error_description")
            .map(|d| clean(d, 512, &[]))
            .filter(|d| !d.is_empty());
        tracing::warn!(target: "veracity_auth::sign_in", error = %error, "sign-in refused by the identity provider");
        let denied = SignInError::Denied {
            error: if error.is_empty() {
                "unknown_error".to_owned()
            } else {
                error
            },
            description,
        };
        return (StatusCode::OK, DENIED, Some(Err(Error::SignIn(denied))));
    }
    match code.filter(|c| !c.is_empty()) {
        Some(code) => (StatusCode::OK, SIGNED_IN, Some(Ok(Secret::new(code)))),
        None => (
            StatusCode::BAD_REQUEST,
            NO_CODE,
            Some(Err(Error::InvalidResponse(
                "the sign-in redirect carried an empty code".to_owned(),
            ))),
        ),
    }
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn response(status: StatusCode, page: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expect() -> Expect {
        Expect::new("/".to_owned(), Secret::new("st-1"))
    }

    fn judged(uri: &str) -> (StatusCode, Option<RedirectResult>) {
        let (status, _, outcome) = judge(&expect(), &uri.parse().unwrap());
        (status, outcome)
    }

    #[test]
    fn the_right_state_yields_the_code() {
        let (status, outcome) = judged("/?code=c-1&state=st-1");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(outcome.unwrap().unwrap().expose(), "c-1");
    }

    #[test]
    fn a_wrong_or_missing_state_is_refused_without_ending_the_sign_in() {
        for uri in [
            "/?code=c&state=st-2",
            "/?code=c",
            "/?error=x&state=s",
            "/?code=c&state=",
        ] {
            let expect = expect();
            let (status, _, outcome) = judge(&expect, &uri.parse().unwrap());
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
            assert!(outcome.is_none(), "{uri}");
            assert!(expect.saw_wrong_state(), "{uri}");
        }
        let expect = expect();
        judge(&expect, &"/favicon.ico".parse().unwrap());
        assert!(!expect.saw_wrong_state());
    }

    #[test]
    fn other_requests_do_not_end_it() {
        for uri in [
            "/favicon.ico",
            "/",
            "/?x=1",
            "/?%%%",
            "/other?code=c&state=st-1",
        ] {
            let (status, outcome) = judged(uri);
            assert!(outcome.is_none(), "{uri}");
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        }
    }

    #[test]
    fn provider_errors_are_cleaned() {
        let (_, outcome) = judged(
            "/?error=access_denied&error_description=AADB2C90091%3A%20cancelled%0D%0Ax&state=st-1",
        );
        let err = outcome.unwrap().unwrap_err().to_string();
        assert!(
            err.contains("access_denied") && err.contains("AADB2C90091"),
            "{err}"
        );
        assert!(!err.contains('\r') && !err.contains('\n'), "{err}");
        let (_, outcome) = judged("/?code=&state=st-1");
        assert!(matches!(outcome, Some(Err(Error::InvalidResponse(_)))));
    }
}

//! `veracity-auth proxy`: a loopback HTTP/1.1 server that forwards to the gateway with the
//! credentials added by `VeracityAuthLayer`.
//!
//! `GET http://127.0.0.1:8787/workspaces/{id}?q` goes to `<gateway>/workspaces/{id}?q` through
//! the layer over a hyper-util client (rustls with `ring`, the webpki roots), so the token
//! cache's guarantees hold: one token request however many clients wait, refresh ahead of
//! expiry, one replay with a new token after a 401. What a client sends as `Authorization`,
//! `Ocp-Apim-Subscription-Key`, the proxy's own secret header and the hop-by-hop headers is
//! dropped; the layer adds the real credentials.
//!
//! - **Where it forwards.** Only to the gateway's origin, and only when the authenticator's
//!   origins name it (else the proxy does not start). A request in absolute form
//!   (`GET http://elsewhere/…`), a `CONNECT` or a path with a `..` segment is refused with
//!   `403` and never sent.
//! - **Where it listens.** A loopback address only: anything else is a configuration error.
//! - **Who may use it.** Any local process, unless a per-session secret is required
//!   ([`SECRET_HEADER`], compared in constant time; missing or wrong: `403`).
//! - **Bodies** stream both ways; nothing is buffered whole. A request body is recorded for a
//!   replay up to the layer's cap (64 KiB): a 401 on a larger upload is returned as it is,
//!   unless the gateway refused it before more than the cap was sent.
//! - **Failures.** When the layer has no token to send (the token endpoint failed), the
//!   answer is `503` with the provider's `Retry-After` if retrying later may help, else `502`;
//!   when the gateway cannot be reached, `502`. The text says why, never with a secret.
//! - **Log.** One line per request on stderr: method, path (never the query, which may hold a
//!   SAS), status and the time to the response's head. Never a credential.

use std::{
    convert::Infallible,
    fmt,
    future::{Future, poll_fn},
    io::{self, Write},
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Either, Full, combinators::UnsyncBoxBody};
use hyper::{body::Incoming, server::conn::http1};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, task::JoinSet};
use tower_layer::Layer;
use tower_service::Service;
use veracity_auth::{Authenticator, ErrorKind, VeracityAuth, VeracityAuthLayer};

/// The header that carries the per-session secret, when one is required.
pub const SECRET_HEADER: &str = "x-veracity-proxy-secret";
/// The environment variable that sets the per-session secret (it is then required).
pub const SECRET_ENV: &str = "VERACITY_PROXY_SECRET";

/// `veracity-auth proxy`: forward `http://127.0.0.1:PORT/…` to the gateway with credentials.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// The loopback address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,
    /// Require a per-session secret in the `X-Veracity-Proxy-Secret` header: the value of
    /// `VERACITY_PROXY_SECRET` (which also requires it), else a new one printed once on stdout.
    #[arg(long)]
    pub require_secret: bool,
}

/// Why the proxy could not start or stopped.
#[derive(Debug)]
pub enum ProxyError {
    /// The listen address is not loopback, or the gateway is not one the credentials go to.
    Config(String),
    /// Binding or accepting failed.
    Io(io::Error),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Config(why) => f.write_str(why),
            ProxyError::Io(e) => write!(f, "proxy: {e}"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<io::Error> for ProxyError {
    fn from(e: io::Error) -> Self {
        ProxyError::Io(e)
    }
}

/// How [`serve`] runs: the secret it requires, where it logs.
#[derive(Clone)]
pub struct ProxyOptions {
    secret: Option<Arc<[u8]>>,
    log: Arc<Mutex<dyn Write + Send>>,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        ProxyOptions {
            secret: None,
            log: Arc::new(Mutex::new(io::stderr())),
        }
    }
}

impl ProxyOptions {
    /// Requires `secret` in [`SECRET_HEADER`] on every request.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into().into_bytes().into());
        self
    }

    /// Writes the log lines to `log` instead of stderr.
    pub fn log_to(mut self, log: impl Write + Send + 'static) -> Self {
        self.log = Arc::new(Mutex::new(log));
        self
    }

    fn log(&self, line: fmt::Arguments<'_>) {
        let mut log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = writeln!(log, "veracity-auth proxy: {line}");
    }
}

impl fmt::Debug for ProxyOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyOptions")
            .field("requires_secret", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// Runs `veracity-auth proxy` until Ctrl-C: checks `--listen`, takes or makes the secret
/// (a new one is printed on stdout), binds, and [`serve`]s. `E` is the command's error
/// (`CliError`: a [`ProxyError::Config`] exits 3, a [`ProxyError::Io`] 1).
pub async fn run<E: From<ProxyError>>(
    args: ProxyArgs,
    authenticator: Authenticator,
    gateway: Uri,
) -> Result<(), E> {
    Ok(run_proxy(args, authenticator, gateway).await?)
}

async fn run_proxy(
    args: ProxyArgs,
    authenticator: Authenticator,
    gateway: Uri,
) -> Result<(), ProxyError> {
    check_loopback(args.listen)?;
    let mut options = ProxyOptions::default();
    match std::env::var(SECRET_ENV) {
        Ok(secret) if !secret.is_empty() => options = options.secret(secret),
        _ if args.require_secret => {
            let secret = new_secret()?;
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{secret}")?;
            stdout.flush()?;
            options = options.secret(secret);
        }
        _ => {}
    }
    let listener = TcpListener::bind(args.listen).await?;
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, authenticator, gateway, options, ctrl_c).await
}

/// Serves on `listener` until `shutdown` completes (open connections are then dropped).
/// Refuses a listener that is not on loopback and a gateway the authenticator's credentials
/// do not go to.
pub async fn serve(
    listener: TcpListener,
    authenticator: Authenticator,
    gateway: Uri,
    options: ProxyOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ProxyError> {
    let addr = listener.local_addr()?;
    check_loopback(addr)?;
    let proxy = Arc::new(Proxy::new(authenticator, &gateway, options)?);
    proxy.options.log(format_args!(
        "listening on http://{addr}, forwarding to {}{}",
        proxy.origin, proxy.base_path
    ));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, proxy.clone()));
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(e) => {
                    proxy.options.log(format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while connections.try_join_next().is_some() {}
    }
}

fn check_loopback(addr: SocketAddr) -> Result<(), ProxyError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(ProxyError::Config(format!(
            "proxy: {addr} is not a loopback address (127.0.0.1 or [::1]): the proxy hands out \
             credentials to whoever reaches it"
        )))
    }
}

fn new_secret() -> io::Result<String> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut bytes = [0u8; 24];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| io::Error::other("no randomness for the proxy's secret"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

async fn serve_connection(stream: tokio::net::TcpStream, proxy: Arc<Proxy>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(proxy.forward(request).await) }
    });
    // A client that goes away mid-request is no news.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

// === impl Proxy ===

type RequestBody = UnsyncBoxBody<Bytes, hyper::Error>;
type Upstream = VeracityAuth<Client<HttpsConnector<HttpConnector>, RequestBody>>;
type ProxyBody = Either<Incoming, Full<Bytes>>;
/// A request the proxy answers itself: the status and why.
type Refusal = (StatusCode, String);

/// One running proxy: the layered client and where it forwards.
struct Proxy {
    upstream: Upstream,
    /// `scheme://authority` of the gateway.
    origin: String,
    /// The gateway's path, without a trailing `/`.
    base_path: String,
    options: ProxyOptions,
}

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), and so are
/// not forwarded either way.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

/// Path segments that a server may resolve to a place outside the gateway's path.
const DOT_SEGMENTS: [&str; 6] = [".", "..", "%2e", "%2e%2e", ".%2e", "%2e."];

impl Proxy {
    fn new(
        authenticator: Authenticator,
        gateway: &Uri,
        options: ProxyOptions,
    ) -> Result<Self, ProxyError> {
        let (Some(scheme), Some(authority)) = (gateway.scheme_str(), gateway.authority()) else {
            return Err(ProxyError::Config(format!(
                "proxy: the gateway {gateway} is not an absolute http(s) URL"
            )));
        };
        if !matches!(scheme, "https" | "http") || !authenticator.is_for(gateway) {
            return Err(ProxyError::Config(format!(
                "proxy: the credentials do not go to {scheme}://{authority} (not one of the \
                 authenticator's origins): nothing to forward to"
            )));
        }
        let provider = veracity_auth::rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| ProxyError::Config(format!("proxy: TLS: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(Proxy {
            upstream: VeracityAuthLayer::new(authenticator).layer(client),
            origin: format!("{scheme}://{authority}"),
            base_path: gateway.path().trim_end_matches('/').to_owned(),
            options,
        })
    }

    async fn forward(&self, request: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = match self.prepare(request) {
            Ok(request) => {
                let mut upstream = self.upstream.clone();
                let sent = async {
                    poll_fn(|cx| upstream.poll_ready(cx)).await?;
                    upstream.call(request).await
                };
                match sent.await {
                    Ok(response) => {
                        let (mut parts, body) = response.into_parts();
                        remove_hop_by_hop(&mut parts.headers);
                        Response::from_parts(parts, Either::Left(body))
                    }
                    Err(e) => failed(&*e),
                }
            }
            Err((status, why)) => answer(status, &why),
        };
        self.options.log(format_args!(
            "{method} {path} {} {}ms",
            response.status().as_u16(),
            started.elapsed().as_millis()
        ));
        response
    }

    /// The request to send upstream, or why it is refused.
    fn prepare(&self, request: Request<Incoming>) -> Result<Request<RequestBody>, Refusal> {
        let (mut parts, body) = request.into_parts();
        if let Some(secret) = &self.options.secret {
            let given = parts.headers.get(SECRET_HEADER).map(|v| v.as_bytes());
            if !given.is_some_and(|given| equal_in_constant_time(given, secret)) {
                let why = "missing or wrong X-Veracity-Proxy-Secret";
                return Err((StatusCode::FORBIDDEN, why.to_owned()));
            }
        }
        if parts.method == Method::CONNECT || parts.uri.authority().is_some() {
            return Err(self.refuse_elsewhere());
        }
        let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let leaves_the_path = !path_and_query.starts_with('/')
            || parts.uri.path().split('/').any(|segment| {
                DOT_SEGMENTS
                    .iter()
                    .any(|dots| segment.eq_ignore_ascii_case(dots))
            });
        let target: Uri = match format!("{}{}{path_and_query}", self.origin, self.base_path).parse()
        {
            Ok(uri) if !leaves_the_path && self.upstream.authenticator().is_for(&uri) => uri,
            _ => return Err(self.refuse_elsewhere()),
        };
        parts.uri = target;
        remove_hop_by_hop(&mut parts.headers);
        for name in [
            header::HOST,
            header::EXPECT,
            header::AUTHORIZATION,
            HeaderName::from_static("ocp-apim-subscription-key"),
            HeaderName::from_static(SECRET_HEADER),
        ] {
            parts.headers.remove(name);
        }
        Ok(Request::from_parts(parts, body.boxed_unsync()))
    }

    fn refuse_elsewhere(&self) -> Refusal {
        let why = format!(
            "this proxy forwards only paths under {}{}",
            self.origin, self.base_path
        );
        (StatusCode::FORBIDDEN, why)
    }
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.into_iter().chain(HOP_BY_HOP) {
        headers.remove(name);
    }
    // The length or chunking of the forwarded message is hyper's to choose.
    headers.remove(header::TRANSFER_ENCODING);
}

/// The proxy's own answer: `text/plain`, one line.
fn answer(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!(
        "veracity-auth proxy: {text}\n"
    )))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The answer when no response came: `503` (with the provider's `Retry-After`) when no token
/// could be had for now, else `502`; the text says why.
fn failed(error: &(dyn std::error::Error + 'static)) -> Response<ProxyBody> {
    let temporary =
        veracity_auth::Error::find_in(error).filter(|e| e.kind() == ErrorKind::Temporary);
    let status = match temporary {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::BAD_GATEWAY,
    };
    let mut response = answer(status, &chain(error));
    if let Some(after) = temporary.and_then(veracity_auth::Error::retry_after) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, after.as_secs().max(1).into());
    }
    response
}

/// An error with its causes, each once (the layer's errors never show a secret).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// Whether `given` is `secret`, in a time that does not depend on where they differ.
fn equal_in_constant_time(given: &[u8], secret: &[u8]) -> bool {
    let differences = given
        .iter()
        .zip(secret)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    // The secret's length is no secret: a new one always has 48 hex digits.
    std::hint::black_box(differences) == 0 && given.len() == secret.len()
}

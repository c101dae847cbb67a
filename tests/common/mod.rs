//! Shared test fixtures: a scripted token source and an API stand-in that checks tokens
//! against the source's own records, both on tokio's (pausable) clock; helpers to talk to the
//! mock Veracity ([`gateway`]), another origin to redirect to ([`elsewhere`]), and to capture
//! `tracing` output ([`logs`]).
#![allow(dead_code, unreachable_pub)]

pub mod account;
pub mod azurite;
pub mod bodies;
pub mod child;
#[cfg(feature = "default-client")]
pub mod elsewhere;
pub mod gateway;
pub mod logs;
pub mod noop;
pub mod npm;
#[cfg(feature = "default-client")]
pub mod proxy;
pub mod runtimes;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use tokio::time::Instant;
use veracity_auth::{Error, Token, TokenSource};

/// What a [`ScriptedSource`] answers at a given moment.
pub type Script = dyn Fn(Duration) -> Result<(), Error> + Send + Sync;

/// A token source that takes `delay` per fetch, issues `tok-<n>` tokens living `lifetime`,
/// fails whenever `script(elapsed since start)` says so, and remembers what it issued.
#[derive(Clone)]
pub struct ScriptedSource {
    pub inner: Arc<SourceState>,
}

pub struct SourceState {
    pub delay: Duration,
    pub lifetime: Duration,
    pub start: Instant,
    pub fetches: AtomicU64,
    pub issued: Mutex<HashMap<String, Instant>>,
    pub script: Box<Script>,
}

impl ScriptedSource {
    pub fn new(delay: Duration, lifetime: Duration) -> Self {
        Self::scripted(delay, lifetime, |_| Ok(()))
    }

    pub fn scripted(
        delay: Duration,
        lifetime: Duration,
        script: impl Fn(Duration) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Self {
        ScriptedSource {
            inner: Arc::new(SourceState {
                delay,
                lifetime,
                start: Instant::now(),
                fetches: AtomicU64::new(0),
                issued: Mutex::new(HashMap::new()),
                script: Box::new(script),
            }),
        }
    }

    pub fn fetches(&self) -> u64 {
        self.inner.fetches.load(Ordering::SeqCst)
    }

    /// When the provider considers `token` expired, if it issued it.
    pub fn expiry_of(&self, token: &str) -> Option<Instant> {
        let issued = self.inner.issued.lock().unwrap();
        issued.get(token).map(|at| *at + self.inner.lifetime)
    }
}

impl TokenSource for ScriptedSource {
    async fn fetch(&self) -> Result<Token, Error> {
        let s = &self.inner;
        let n = s.fetches.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(s.delay).await;
        // The provider decides, and starts the token's life, when it answers.
        let now = Instant::now();
        (s.script)(now - s.start)?;
        let token = format!("tok-{n}");
        s.issued.lock().unwrap().insert(token.clone(), now);
        Ok(Token::new(token, Some(s.lifetime)))
    }
}

/// What the API stand-in saw.
#[derive(Default)]
pub struct ApiLog {
    pub requests: AtomicU64,
    pub expired: AtomicU64,
    pub within_margin: AtomicU64,
    pub unknown: AtomicU64,
}

/// An API stand-in: 200 for a token the source issued and that has not expired, 401
/// otherwise; counts tokens sent expired or inside `margin` of their expiry.
#[derive(Clone)]
pub struct Api {
    source: ScriptedSource,
    margin: Duration,
    log: Arc<ApiLog>,
}

pub fn api(source: ScriptedSource, margin: Duration) -> (Arc<ApiLog>, Api) {
    let log = Arc::new(ApiLog::default());
    let api = Api {
        source,
        margin,
        log: Arc::clone(&log),
    };
    (log, api)
}

impl tower::Service<Request<()>> for Api {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let seen = &self.log;
        seen.requests.fetch_add(1, Ordering::SeqCst);
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let now = Instant::now();
        let status = match self.source.expiry_of(token) {
            None => {
                seen.unknown.fetch_add(1, Ordering::SeqCst);
                StatusCode::UNAUTHORIZED
            }
            Some(expiry) if now >= expiry => {
                seen.expired.fetch_add(1, Ordering::SeqCst);
                StatusCode::UNAUTHORIZED
            }
            Some(expiry) => {
                if now + self.margin >= expiry {
                    seen.within_margin.fetch_add(1, Ordering::SeqCst);
                }
                StatusCode::OK
            }
        };
        let mut response = Response::new(String::new());
        *response.status_mut() = status;
        std::future::ready(Ok(response))
    }
}

pub fn get() -> Request<()> {
    Request::get("https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces")
        .body(())
        .unwrap()
}

pub fn transient_error() -> Error {
    Error::TokenEndpointStatus {
        status: StatusCode::SERVICE_UNAVAILABLE,
        retry_after: None,
        content_type: None,
    }
}

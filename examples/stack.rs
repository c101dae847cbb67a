//! The layer in a full tower stack: `tower::retry` outside, then a timeout,
//! `tower_http::trace`, the auth layer, and a concurrency limit in front of a hyper-util
//! client. Runs against the embedded mock, revokes the tokens half way, and prints the
//! layer's counters.
//!
//! ```text
//! cargo run --example stack
//! RUST_LOG=veracity_auth=debug cargo run --example stack   # see fetches and replays
//! ```

use std::{process::ExitCode, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, ServiceBuilder, ServiceExt, retry::Policy};
use tower_http::trace::TraceLayer;
use veracity_auth::{Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer};
use veracity_auth_mock::MockVeracity;

/// Retries a request once when the stack failed (a timeout, a refused connection); HTTP
/// answers, 401s included, are the auth layer's business.
#[derive(Clone)]
struct RetryOnce(bool);

impl<Res> Policy<Request<Full<Bytes>>, Res, BoxError> for RetryOnce {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        _: &mut Request<Full<Bytes>>,
        result: &mut Result<Res, BoxError>,
    ) -> Option<Self::Future> {
        let again = result.is_err() && std::mem::replace(&mut self.0, false);
        again.then(|| std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request<Full<Bytes>>) -> Option<Request<Full<Bytes>>> {
        let mut clone = Request::new(req.body().clone());
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.headers_mut() = req.headers().clone();
        Some(clone)
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Display with every cause: which endpoint, which stage, why.
            eprintln!("error: {:#}", anyhow::Error::from_boxed(e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();

    let mock = MockVeracity::start().await?;
    let auth = VeracityAuthLayer::new(
        Authenticator::builder(
            ClientCredentials::new(mock.client_id(), mock.client_secret())
                .endpoint(TokenEndpoint::plain_http(mock.token_url())?),
        )
        .origins([mock.url()])
        .api_key(mock.api_key())
        .build()?,
    );

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let api = ServiceBuilder::new()
        .retry(RetryOnce(true))
        .timeout(Duration::from_secs(10))
        .layer(TraceLayer::new_for_http())
        .layer(auth.clone())
        .concurrency_limit(16)
        .service(client);

    let url = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    let mut calls = tokio::task::JoinSet::new();
    for round in 0..2 {
        if round == 1 {
            // Every token the mock issued is now unknown: 401s, one refresh, replays.
            mock.revoke_all_tokens();
        }
        for _ in 0..50 {
            let request = Request::get(&url).body(Full::default())?;
            calls.spawn(api.clone().oneshot(request));
        }
        while let Some(done) = calls.join_next().await {
            let response = done??;
            assert!(response.status().is_success(), "{}", response.status());
        }
    }

    let stats = auth.stats();
    println!("100 requests, all 200 OK");
    println!("token fetches:        {}", stats.fetches);
    println!("fetch failures:       {}", stats.fetch_failures);
    println!("requests that waited: {}", stats.waits);
    println!("401 refreshes:        {}", stats.replay_refreshes);
    println!("replayed requests:    {}", stats.replays);
    println!("mock saw:             {:?}", mock.stats());
    Ok(())
}

//! Call Veracity Data Workbench through `VeracityAuthLayer` and a hyper-util client.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! With no configuration it starts the embedded mock (`veracity_auth::mock`) and talks to
//! it. With `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`, `VERACITY_API_KEY` and
//! `VERACITY_WORKSPACE_ID` set, it talks to the real Veracity instead. With only some of
//! them set, it names the missing ones and exits with an error.

use std::{process::ExitCode, time::Duration};

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use veracity_auth::{Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer, env};
use veracity_auth_mock::MockVeracity;

const GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway/api/v2";
const WORKSPACE_ID: &str = "VERACITY_WORKSPACE_ID";

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
    // Keep the mock alive for the whole run when we use it.
    let mut _mock = None;
    // All of the variables, or none (the mock): a half-done set-up is an error naming the rest.
    let (auth, base, workspace) = match env::is_configured(&[WORKSPACE_ID])? {
        true => (
            VeracityAuthLayer::from_env()?,
            GATEWAY.to_owned(),
            std::env::var(WORKSPACE_ID)?.trim().to_owned(),
        ),
        false => {
            let mock = MockVeracity::start().await?;
            println!("embedded Veracity mock on {}", mock.url());
            let credentials = ClientCredentials::new(mock.client_id(), mock.client_secret())
                .endpoint(TokenEndpoint::plain_http(mock.token_url())?);
            let auth = VeracityAuthLayer::new(
                Authenticator::builder(credentials)
                    .origins([mock.url()])
                    .api_key(mock.api_key())
                    .build()?,
            );
            let parts = (auth, mock.api_url(), mock.workspace_id().to_owned());
            _mock = Some(mock);
            parts
        }
    };

    // Name the crypto provider: an application that links two (reqwest 0.13 brings aws-lc-rs)
    // and installs no process default makes rustls panic when asked to pick one.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(veracity_auth::rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build(https);
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .layer(auth.clone())
        .service(client);

    let workspace_url = format!("{base}/workspaces/{workspace}");
    let request = Request::get(&workspace_url).body(Full::<Bytes>::default())?;
    let response = api.clone().oneshot(request).await?;
    println!(
        "GET  /workspaces/{{ws}}                -> {}",
        response.status()
    );
    println!(
        "{}",
        String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes())
    );

    let query =
        r#"{"pageIndex":1,"pageSize":10,"sortColumn":"CreatedOn","sortDirection":"Descending"}"#;
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{workspace_url}/datasets/query"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(query.as_bytes())))?;
    let response = api.clone().oneshot(request).await?;
    let status = response.status();
    println!("POST /workspaces/{{ws}}/datasets/query -> {status}");
    println!(
        "{}",
        String::from_utf8_lossy(&response.into_body().collect().await?.to_bytes())
    );

    let stats = auth.stats();
    println!(
        "token fetches: {}, requests that waited for a token: {}",
        stats.fetches, stats.waits
    );
    if !status.is_success() {
        return Err(format!("Data Workbench answered {status}").into());
    }
    Ok(())
}

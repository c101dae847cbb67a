//! `dw`: a small curl for Veracity Data Workbench.
//!
//! ```text
//! cargo run --example dw -- GET /workspaces/{ws}
//! cargo run --example dw -- POST /workspaces/{ws}/datasets/query '{"pageIndex":1,"pageSize":10}'
//! cargo run --example dw -- GET '/workspaces/{ws}/ledger?PageSize=10&PageIndex=1'
//! ```
//!
//! Against the embedded mock by default (`{ws}` is the mock's workspace). With
//! `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`, `VERACITY_API_KEY` and
//! `VERACITY_WORKSPACE_ID` set, against the real gateway; with only some of them set, it
//! names the missing ones and exits with an error. Paths are relative to
//! `https://api.veracity.com/veracity/dw/gateway/api/v2`.

use std::process::ExitCode;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, ServiceExt};
use veracity_auth::{Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer, env};
use veracity_auth_mock::MockVeracity;

const GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway/api/v2";
const WORKSPACE_ID: &str = "VERACITY_WORKSPACE_ID";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            // Display with every cause: which endpoint, which stage, why.
            eprintln!("error: {:#}", anyhow::Error::from_boxed(e));
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<ExitCode, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (method, path, body) = match args.as_slice() {
        [m, p] => (m.parse::<Method>()?, p.clone(), None),
        [m, p, b] => (m.parse::<Method>()?, p.clone(), Some(b.clone())),
        _ => {
            eprintln!("usage: dw METHOD PATH [JSON-BODY]   e.g. dw GET /workspaces/{{ws}}");
            return Ok(ExitCode::from(2));
        }
    };

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
            let auth = VeracityAuthLayer::new(
                Authenticator::builder(
                    ClientCredentials::new(mock.client_id(), mock.client_secret())
                        .endpoint(TokenEndpoint::plain_http(mock.token_url())?),
                )
                .origins([mock.url()])
                .api_key(mock.api_key())
                .build()?,
            );
            let parts = (auth, mock.api_url(), mock.workspace_id().to_owned());
            _mock = Some(mock);
            parts
        }
    };

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(veracity_auth::rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
    let api = tower::ServiceBuilder::new().layer(auth).service(client);

    let url = format!("{base}{}", path.replace("{ws}", &workspace));
    let mut request = Request::builder().method(method).uri(url);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map(Bytes::from).map(Full::new).unwrap_or_default())?;
    let response = api.oneshot(request).await?;
    let status = response.status();
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    let bytes = response.into_body().collect().await?.to_bytes();
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(json) => println!("{}", serde_json::to_string_pretty(&json)?),
        Err(_) if !bytes.is_empty() => println!("{}", String::from_utf8_lossy(&bytes)),
        Err(_) => {}
    }
    let hint = match status {
        s if s.is_success() => return Ok(ExitCode::SUCCESS),
        StatusCode::UNAUTHORIZED => {
            "401: the gateway rejected the credentials. A wrong or missing API key \
             (VERACITY_API_KEY) cannot be fixed by a new token; check it, and that the \
             service account has access to the workspace."
                .to_owned()
        }
        StatusCode::FORBIDDEN => {
            "403: forbidden or out of call volume quota for this subscription.".to_owned()
        }
        StatusCode::TOO_MANY_REQUESTS => format!(
            "429: rate limited; retry after {} seconds.",
            retry_after
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("a few")
        ),
        other => format!("{other}"),
    };
    eprintln!("{hint}");
    Ok(ExitCode::FAILURE)
}

//! Call Veracity Data Workbench through reqwest with `VeracityAuthMiddleware`.
//!
//! ```text
//! cargo run --example reqwest --features reqwest-middleware
//! ```
//!
//! With no configuration it starts the embedded mock and talks to it; halfway through, the
//! mock revokes every token and the middleware replays the next request with a new one.
//! With `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`, `VERACITY_API_KEY` and
//! `VERACITY_WORKSPACE_ID` set, it talks to the real Veracity instead. With only some of
//! them set, it names the missing ones and exits with an error.
//!
//! TLS: this example's reqwest has `default-features = false, features =
//! ["rustls-no-provider"]`, so it links no aws-lc-rs; ring, which this crate's token client
//! uses already, is installed as the process default before the client is built.

use std::process::ExitCode;

use tower::BoxError;
use veracity_auth::{
    Authenticator, ClientCredentials, TokenEndpoint, VeracityAuthLayer, VeracityAuthMiddleware, env,
};
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
    // reqwest's `rustls-no-provider` needs a process default (or a preconfigured
    // `rustls::ClientConfig` through `ClientBuilder::tls_backend_preconfigured`).
    let _ = rustls::crypto::ring::default_provider().install_default();

    // Keep the mock alive for the whole run when we use it.
    let mut mock = None;
    let (auth, base, workspace) = match env::is_configured(&[WORKSPACE_ID])? {
        true => (
            // The service account and API key from the environment, checked.
            VeracityAuthLayer::from_env()?.authenticator().clone(),
            GATEWAY.to_owned(),
            std::env::var(WORKSPACE_ID)?.trim().to_owned(),
        ),
        false => {
            let started = MockVeracity::start().await?;
            println!("embedded Veracity mock on {}", started.url());
            let credentials = ClientCredentials::new(started.client_id(), started.client_secret())
                .endpoint(TokenEndpoint::plain_http(started.token_url())?);
            let auth = Authenticator::builder(credentials)
                .origins([started.url()])
                .api_key(started.api_key())
                .build()?;
            let parts = (auth, started.api_url(), started.workspace_id().to_owned());
            mock = Some(started);
            parts
        }
    };

    // reqwest follows redirects below the middleware and would take the API key along to
    // another host: this policy follows same-origin redirects only.
    let reqwest = reqwest::Client::builder()
        .redirect(VeracityAuthMiddleware::redirect_policy())
        .build()?;
    let client = reqwest_middleware::ClientBuilder::new(reqwest)
        .with(VeracityAuthMiddleware::new(auth.clone()))
        .build();

    let workspace_url = format!("{base}/workspaces/{workspace}");
    let response = client.get(&workspace_url).send().await?;
    println!(
        "GET  /workspaces/{{ws}}                -> {}",
        response.status()
    );
    println!("{}", response.text().await?);

    if let Some(mock) = &mock {
        // Every token the mock issued is now refused: the next request gets a 401, and the
        // middleware replays it once with a new token.
        mock.revoke_all_tokens();
        println!("(the mock revoked every token)");
    }

    let query =
        r#"{"pageIndex":1,"pageSize":10,"sortColumn":"CreatedOn","sortDirection":"Descending"}"#;
    let response = client
        .post(format!("{workspace_url}/datasets/query"))
        .header("content-type", "application/json")
        .body(query)
        .send()
        .await?;
    let status = response.status();
    println!("POST /workspaces/{{ws}}/datasets/query -> {status}");
    println!("{}", response.text().await?);

    let stats = auth.stats();
    println!(
        "token fetches: {}, replays after a 401: {}",
        stats.fetches, stats.replays
    );
    if !status.is_success() {
        return Err(format!("Data Workbench answered {status}").into());
    }
    if mock.is_some() && stats.replays != 1 {
        return Err(format!(
            "expected one replay against the mock, saw {}",
            stats.replays
        )
        .into());
    }
    Ok(())
}

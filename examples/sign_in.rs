//! Sign in as a person (authorization code with PKCE, loopback redirect), keep the refresh
//! token for the next run, and call Data Workbench through the layer.
//!
//! ```text
//! cargo run --example sign_in --features sign-in
//! ```
//!
//! With no configuration it runs against the embedded mock, playing the browser itself (it
//! opens the authorize URL with a plain HTTP GET and follows the redirect to its own loopback
//! listener), and shows three runs of a tool against one mock: the first signs in, the second
//! restores the stored refresh token without an authorize request, and after the provider
//! revoked the token the third signs in again. The store is `target/sign_in_example/`.
//!
//! With `VERACITY_SIGN_IN_CLIENT_ID` set (your app's client id; optional
//! `VERACITY_SIGN_IN_CLIENT_SECRET`, `VERACITY_REDIRECT_PORT`) it signs in against Veracity:
//! open the printed URL in a browser (with `--features open-browser` it opens by itself). The
//! refresh token is stored in your configuration directory (`VERACITY_REFRESH_TOKEN_DIR`
//! overrides it), so the next run does not ask again. With `VERACITY_API_KEY` and
//! `VERACITY_WORKSPACE_ID` set it then reads the workspace.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use veracity_auth::{
    Authenticator, FileStore, RefreshToken, RefreshTokenStore, SignIn, TokenEndpoint,
    VeracityAuthLayer,
};
use veracity_auth_mock::MockVeracity;

const GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway/api/v2";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    match std::env::var("VERACITY_SIGN_IN_CLIENT_ID") {
        Ok(client_id) => against_veracity(client_id).await,
        Err(_) => against_the_mock().await,
    }
}

async fn against_the_mock() -> Result<(), BoxError> {
    let mock = MockVeracity::start().await?;
    println!("embedded Veracity mock on {}", mock.url());
    // Under target/, so the demo does not touch your configuration directory.
    let dir = PathBuf::from("target/sign_in_example");
    let store = FileStore::in_dir(&dir);
    // A token from an earlier run of this example belongs to a mock that is gone.
    store.delete(mock.client_id())?;
    let path = store.path(mock.client_id())?;
    let tool = SignIn::new(mock.client_id())
        .authorize_url(mock.authorize_url())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url())?)
        .on_authorize_url(|url| {
            println!("Open this URL in your browser to sign in:\n\n  {url}\n");
            println!("(the mock consents at once; this example plays the browser)");
            tokio::spawn(play_the_browser(url.to_owned()));
        });
    let workspace = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());

    println!("\n-- run 1: nothing stored");
    let source = tool.restore_or_sign_in(FileStore::in_dir(&dir)).await?;
    let auth = VeracityAuthLayer::new(
        Authenticator::builder(source)
            .origins([mock.url()])
            .api_key(mock.api_key())
            .build()?,
    );
    read_workspace(&auth, &workspace).await?;
    // The gateway stops accepting the access token (as it does once a token expires): the
    // layer refreshes it, the provider rotates the refresh token, the store gets the new one,
    // the request is replayed.
    mock.revoke_all_tokens();
    read_workspace(&auth, &workspace).await?;
    expect(mock.stats().authorize_requests == 1, "run 1 signs in")?;
    expect(
        mock.stats().refresh_token_grants == 1,
        "run 1 refreshes once",
    )?;

    println!("\n-- run 2: the stored refresh token");
    let source = tool.restore_or_sign_in(FileStore::in_dir(&dir)).await?;
    read_workspace(
        &VeracityAuthLayer::new(
            Authenticator::builder(source)
                .origins([mock.url()])
                .api_key(mock.api_key())
                .build()?,
        ),
        &workspace,
    )
    .await?;
    expect(
        mock.stats().authorize_requests == 1,
        "run 2 does not sign in",
    )?;

    println!("\n-- run 3: the provider revoked the stored refresh token");
    mock.revoke_refresh_tokens();
    let source = tool.restore_or_sign_in(FileStore::in_dir(&dir)).await?;
    read_workspace(
        &VeracityAuthLayer::new(
            Authenticator::builder(source)
                .origins([mock.url()])
                .api_key(mock.api_key())
                .build()?,
        ),
        &workspace,
    )
    .await?;
    let stats = mock.stats();
    expect(stats.authorize_requests == 2, "run 3 signs in again")?;
    expect(
        stats.rejected_refresh_tokens == 1,
        "run 3's stored token was refused",
    )?;

    println!(
        "\nsign-ins: {}, refreshes: {}, refresh token stored in {}",
        stats.authorize_requests,
        stats.refresh_token_grants,
        path.display()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
        println!("{} has mode {mode:o}", path.display());
        expect(
            mode == 0o600,
            "the stored token is readable by the user alone",
        )?;
    }
    Ok(())
}

fn expect(ok: bool, what: &str) -> Result<(), BoxError> {
    match ok {
        true => Ok(()),
        false => Err(format!("expected: {what}").into()),
    }
}

async fn against_veracity(client_id: String) -> Result<(), BoxError> {
    let mut sign_in = SignIn::new(&client_id);
    if let Ok(secret) = std::env::var("VERACITY_SIGN_IN_CLIENT_SECRET") {
        sign_in = sign_in.client_secret(secret);
    }
    if let Ok(port) = std::env::var("VERACITY_REDIRECT_PORT") {
        sign_in = sign_in.redirect_port(port.parse()?);
    }
    let store = match std::env::var_os("VERACITY_REFRESH_TOKEN_DIR") {
        Some(dir) => FileStore::in_dir(dir),
        None => FileStore::new()?,
    };
    let path = store.path(&client_id)?;
    // Signs in only when no stored refresh token is accepted.
    let source: RefreshToken = sign_in.restore_or_sign_in(store).await?;
    println!("signed in; refresh token stored in {}", path.display());

    match (
        std::env::var("VERACITY_API_KEY"),
        std::env::var("VERACITY_WORKSPACE_ID"),
    ) {
        (Ok(key), Ok(workspace)) => {
            let auth = VeracityAuthLayer::new(Authenticator::builder(source).api_key(key).build()?);
            read_workspace(&auth, &format!("{GATEWAY}/workspaces/{workspace}")).await
        }
        _ => {
            println!("set VERACITY_API_KEY and VERACITY_WORKSPACE_ID to read a workspace");
            Ok(())
        }
    }
}

async fn read_workspace(auth: &VeracityAuthLayer, url: &str) -> Result<(), BoxError> {
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(veracity_auth::rustls::crypto::ring::default_provider())?
        .https_or_http()
        .enable_http1()
        .build();
    let api = ServiceBuilder::new()
        .timeout(Duration::from_secs(30))
        .layer(auth.clone())
        .service(Client::builder(TokioExecutor::new()).build(https));
    let response = api
        .oneshot(Request::get(url).body(Full::<Bytes>::default())?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    println!(
        "GET /workspaces/{{ws}} -> {status}\n{}",
        String::from_utf8_lossy(&body)
    );
    if !status.is_success() {
        return Err(format!("Data Workbench answered {status}").into());
    }
    Ok(())
}

/// What a browser does: open the authorize URL, follow its redirect to the loopback
/// listener, show the page.
async fn play_the_browser(authorize_url: String) {
    let browser = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let page = async {
        let consent = browser.get(authorize_url.parse()?).await?;
        let location = consent
            .headers()
            .get(header::LOCATION)
            .ok_or("the authorize endpoint did not redirect")?
            .to_str()?
            .parse()?;
        let page = browser.get(location).await?.into_body().collect().await?;
        Ok::<_, BoxError>(String::from_utf8_lossy(&page.to_bytes()).into_owned())
    };
    match page.await {
        Ok(page) => print!("browser shows: {page}"),
        Err(e) => eprintln!("the browser failed: {e}"),
    }
}

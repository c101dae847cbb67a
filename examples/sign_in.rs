//! Sign in as a person (authorization code with PKCE, loopback redirect), keep the refresh
//! token in a file only you can read, and call Data Workbench through the layer.
//!
//! ```text
//! cargo run --example sign_in
//! ```
//!
//! With no configuration it signs in against the embedded mock, playing the browser itself:
//! it opens the authorize URL with a plain HTTP GET and follows the redirect to its own
//! loopback listener. With `VERACITY_SIGN_IN_CLIENT_ID` set (your app's client id; optional
//! `VERACITY_SIGN_IN_CLIENT_SECRET`, `VERACITY_REDIRECT_PORT`) it signs in against Veracity:
//! open the printed URL in a browser. A refresh token stored by an earlier run is tried first;
//! you sign in again only when Veracity no longer accepts it. With `VERACITY_API_KEY` and
//! `VERACITY_WORKSPACE_ID` set it then reads the workspace.
//!
//! The refresh token is stored in `VERACITY_REFRESH_TOKEN_FILE` (default
//! `target/sign_in_example/refresh_token`), with permissions 0600 on Unix, and replaced
//! whenever the provider rotates it.

use std::{
    io::{self, Write},
    path::PathBuf,
    time::Duration,
};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{BoxError, ServiceBuilder, ServiceExt};
use veracity_auth::{RefreshToken, SignIn, SignedIn, TokenSource, VeracityAuthLayer};
use veracity_auth_mock::MockVeracity;

const GATEWAY: &str = "https://api.veracity.com/veracity/dw/gateway/api/v2";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let store = RefreshTokenFile::new(std::env::var_os("VERACITY_REFRESH_TOKEN_FILE").map_or_else(
        || "target/sign_in_example/refresh_token".into(),
        PathBuf::from,
    ));
    match std::env::var("VERACITY_SIGN_IN_CLIENT_ID") {
        Ok(client_id) => against_veracity(client_id, store).await,
        Err(_) => against_the_mock(store).await,
    }
}

async fn against_the_mock(store: RefreshTokenFile) -> Result<(), BoxError> {
    let mock = MockVeracity::start().await?;
    println!("embedded Veracity mock on {}", mock.url());
    let pending = SignIn::new(mock.client_id())
        .authorize_url(mock.authorize_url())
        .token_url(mock.user_token_url())
        .start()
        .await?;
    println!(
        "Open this URL in your browser to sign in:\n\n  {}\n",
        pending.url()
    );
    println!("(the mock consents at once; this example plays the browser)");
    let url = pending.url().to_owned();
    let (signed_in, page) = tokio::join!(pending.finish(), play_the_browser(url));
    print!("browser shows: {}", page?);
    let signed_in = signed_in?;
    let first_refresh_token = signed_in.refresh_token().map(str::to_owned);

    let auth = VeracityAuthLayer::new(keep_refreshed(signed_in, &store)?).api_key(mock.api_key());
    let workspace = format!("{}/workspaces/{}", mock.api_url(), mock.workspace_id());
    read_workspace(&auth, &workspace).await?;
    // The gateway stops accepting the access token (as it does once a token expires): the
    // layer refreshes it with the refresh token, the provider rotates that, the request is
    // replayed.
    mock.revoke_all_tokens();
    read_workspace(&auth, &workspace).await?;

    let stats = mock.stats();
    println!(
        "refreshes: {}, layer replays: {}, refresh token stored in {}",
        stats.refresh_token_grants,
        auth.stats().replays,
        store.path.display()
    );
    if stats.refresh_token_grants != 1 {
        return Err("the access token was not refreshed as expected".into());
    }
    let stored = store.load();
    if stored.is_none() || stored == first_refresh_token {
        return Err("the rotated refresh token was not stored".into());
    }
    store.check_permissions()?;
    Ok(())
}

async fn against_veracity(client_id: String, store: RefreshTokenFile) -> Result<(), BoxError> {
    let mut sign_in = SignIn::new(&client_id);
    let secret = std::env::var("VERACITY_SIGN_IN_CLIENT_SECRET").ok();
    if let Some(secret) = &secret {
        sign_in = sign_in.client_secret(secret);
    }
    if let Ok(port) = std::env::var("VERACITY_REDIRECT_PORT") {
        sign_in = sign_in.redirect_port(port.parse()?);
    }

    // A refresh token from an earlier run spares the browser, as long as it is accepted.
    let stored = store.load().map(|refresh_token| {
        let source = RefreshToken::new(&client_id, refresh_token).on_rotate(store.hook());
        match &secret {
            Some(secret) => source.client_secret(secret),
            None => source,
        }
    });
    let source = match stored {
        Some(source) => match source.fetch().await {
            Ok(token) => source.initial_access_token(token),
            Err(e) if e.is_sign_in_required() => {
                println!("{e}");
                keep_refreshed(sign_in.run().await?, &store)?
            }
            Err(e) => return Err(e.into()),
        },
        None => keep_refreshed(sign_in.run().await?, &store)?,
    };
    println!(
        "signed in; refresh token stored in {}",
        store.path.display()
    );

    match (
        std::env::var("VERACITY_API_KEY"),
        std::env::var("VERACITY_WORKSPACE_ID"),
    ) {
        (Ok(key), Ok(workspace)) => {
            let auth = VeracityAuthLayer::new(source).api_key(key);
            read_workspace(&auth, &format!("{GATEWAY}/workspaces/{workspace}")).await
        }
        _ => {
            println!("set VERACITY_API_KEY and VERACITY_WORKSPACE_ID to read a workspace");
            Ok(())
        }
    }
}

/// The refresh-token source of a sign-in, storing the first refresh token and every rotated one.
fn keep_refreshed(signed_in: SignedIn, store: &RefreshTokenFile) -> Result<RefreshToken, BoxError> {
    if let Some(refresh_token) = signed_in.refresh_token() {
        store.save(refresh_token)?;
    }
    Ok(signed_in.into_refresh_token()?.on_rotate(store.hook()))
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
async fn play_the_browser(authorize_url: String) -> Result<String, BoxError> {
    let browser = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let consent = browser.get(authorize_url.parse()?).await?;
    let location = consent
        .headers()
        .get(header::LOCATION)
        .ok_or("the authorize endpoint did not redirect")?
        .to_str()?
        .parse()?;
    let page = browser.get(location).await?.into_body().collect().await?;
    Ok(String::from_utf8_lossy(&page.to_bytes()).into_owned())
}

/// A refresh token in a file only the user can read (0600 on Unix), replaced atomically.
#[derive(Clone)]
struct RefreshTokenFile {
    path: PathBuf,
}

impl RefreshTokenFile {
    fn new(path: PathBuf) -> Self {
        RefreshTokenFile { path }
    }

    fn load(&self) -> Option<String> {
        let token = std::fs::read_to_string(&self.path).ok()?;
        Some(token.trim().to_owned()).filter(|t| !t.is_empty())
    }

    fn save(&self, refresh_token: &str) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let temporary = self.path.with_extension("new");
        let _ = std::fs::remove_file(&temporary);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temporary)?;
        file.write_all(refresh_token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &self.path)
    }

    /// The `on_rotate` hook: store the new refresh token, report (never print) failures.
    fn hook(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let store = self.clone();
        move |new_refresh_token| {
            if let Err(e) = store.save(new_refresh_token) {
                eprintln!("could not store the rotated refresh token: {e}");
            }
        }
    }

    fn check_permissions(&self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&self.path)?.permissions().mode() & 0o777;
            if mode != 0o600 {
                return Err(io::Error::other(format!(
                    "{} has mode {mode:o}, expected 600",
                    self.path.display()
                )));
            }
            println!("{} has mode 600", self.path.display());
        }
        Ok(())
    }
}

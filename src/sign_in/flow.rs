//! [`SignIn`] (the configuration), [`PendingSignIn`] (a sign-in waiting for the browser) and
//! [`SignedIn`] (its tokens).

use std::{fmt, sync::Arc, time::Duration};

use serde_json::Value;
use tokio::{net::TcpListener, time::Instant};

use super::{
    pkce,
    redirect::{self, Expect, RedirectHost},
};
use crate::{
    ConfigError, DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, Error, RefreshToken, SignInError,
    Token, TokenEndpoint, source::response, token::Secret,
};

/// Veracity's authorize endpoint (Azure AD B2C, policy `B2C_1A_SignInWithADFSIdp`).
pub const DEFAULT_AUTHORIZE_URL: &str = "https://login.veracity.com/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/authorize";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest the code exchange may take, as for any token fetch.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// An interactive sign-in for the app `client_id`: the authorization-code flow with PKCE and
/// a loopback redirect. Veracity's authorize URL, the token URL of the same B2C policy
/// ([`DEFAULT_USER_TOKEN_URL`]) and the Data Workbench user scope ([`DEFAULT_USER_SCOPE`]) by
/// default.
///
/// [`start`](Self::start) listens on `localhost` (both `127.0.0.1` and `[::1]`) and builds the
/// URL for the user to open; [`PendingSignIn::finish`] waits for the redirect and exchanges
/// the code. Stray requests to the listener (a favicon, a stale tab's redirect with another
/// `state`, a port scanner) get `400` and the sign-in keeps waiting.
///
/// ```no_run
/// # async fn demo() -> Result<(), veracity_auth::Error> {
/// use std::time::Duration;
/// use veracity_auth::SignIn;
///
/// let signed_in = SignIn::new("my-app-client-id")
///     .redirect_port(8400)                    // as registered for the app; default: any free port
///     .timeout(Duration::from_secs(120))
///     .run()                                  // prints the URL, waits, exchanges the code
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SignIn {
    client_id: String,
    client_secret: Option<Secret>,
    authorize_url: String,
    endpoint: TokenEndpoint,
    scope: String,
    offline_access: bool,
    redirect_host: RedirectHost,
    redirect_port: u16,
    redirect_path: String,
    timeout: Duration,
    on_authorize_url: Option<ShowUrl>,
}

/// What to do with the authorize URL ([`SignIn::on_authorize_url`]).
type ShowUrl = Arc<dyn Fn(&str) + Send + Sync>;

impl SignIn {
    /// A sign-in for the app `client_id` with Veracity's defaults.
    pub fn new(client_id: impl Into<String>) -> Self {
        SignIn {
            client_id: client_id.into(),
            client_secret: None,
            authorize_url: DEFAULT_AUTHORIZE_URL.to_owned(),
            endpoint: TokenEndpoint::veracity(DEFAULT_USER_TOKEN_URL),
            scope: DEFAULT_USER_SCOPE.to_owned(),
            offline_access: true,
            redirect_host: RedirectHost::Localhost,
            redirect_port: 0,
            redirect_path: "/".to_owned(),
            timeout: DEFAULT_TIMEOUT,
            on_authorize_url: None,
        }
    }

    /// The app's client secret, for confidential (web-type) app registrations: sent with the
    /// code exchange and every refresh. Public (native) apps have none and rely on PKCE alone.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(Secret::new(secret));
        self
    }

    /// The authorize endpoint (default [`DEFAULT_AUTHORIZE_URL`]): HTTPS, or plain HTTP to
    /// loopback or with a [`plain_http`](TokenEndpoint::plain_http) [`endpoint`](Self::endpoint).
    pub fn authorize_url(mut self, url: impl Into<String>) -> Self {
        self.authorize_url = url.into();
        self
    }

    /// The token endpoint for the code exchange and refreshes (default
    /// [`DEFAULT_USER_TOKEN_URL`], the endpoint of the authorize URL's B2C policy). A
    /// [`plain_http`](TokenEndpoint::plain_http) one lets the authorize URL be plain HTTP to
    /// any host too (to loopback it always may).
    pub fn endpoint(mut self, endpoint: TokenEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// The API scope (default [`DEFAULT_USER_SCOPE`], Data Workbench; for Veracity's Services
    /// API, [`SERVICES_API_USER_SCOPE`](crate::SERVICES_API_USER_SCOPE)). It must name a
    /// permission (`.../user_impersonation`): B2C refuses a bare app ID URI. `openid` and,
    /// unless turned off, `offline_access` are added.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// Whether to ask for a refresh token (`offline_access`, default on).
    pub fn offline_access(mut self, on: bool) -> Self {
        self.offline_access = on;
        self
    }

    /// The host of the redirect URI (default [`RedirectHost::Localhost`]).
    pub fn redirect_host(mut self, host: RedirectHost) -> Self {
        self.redirect_host = host;
        self
    }

    /// A fixed loopback port for the redirect, for app registrations whose reply URL names
    /// one (default 0: any free port).
    pub fn redirect_port(mut self, port: u16) -> Self {
        self.redirect_port = port;
        self
    }

    /// The path of the redirect (default `/`).
    pub fn redirect_path(mut self, path: impl Into<String>) -> Self {
        self.redirect_path = path.into();
        self
    }

    /// How long [`PendingSignIn::finish`] waits for the redirect (default 5 minutes).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The scopes asked for: `openid [offline_access] <api scope>`.
    fn scopes(&self) -> String {
        match self.offline_access {
            true => format!("openid offline_access {}", self.scope),
            false => format!("openid {}", self.scope),
        }
    }

    /// Listens for the redirect (on `127.0.0.1` and `[::1]` for `localhost`) and builds the
    /// authorize URL, with a fresh PKCE verifier, `state` and `nonce`.
    pub async fn start(&self) -> Result<PendingSignIn, Error> {
        let authorize: http::Uri = self
            .authorize_url
            .parse()
            .map_err(|_| ConfigError::SignIn("the authorize URL is not a valid URL".into()))?;
        if !matches!(authorize.scheme_str(), Some("https" | "http")) {
            return Err(Error::Config(ConfigError::SignIn(
                "the authorize URL must be an absolute http(s) URL".into(),
            )));
        }
        // The authorize URL carries no secret: plain HTTP to loopback (a mock) is fine.
        let plain_http =
            self.endpoint.allows_plain_http() || crate::source::is_loopback(&authorize);
        crate::source::check_scheme(&authorize, plain_http)?;
        let path = &self.redirect_path;
        if !path.starts_with('/') || path.contains(['?', '#']) || path.parse::<http::Uri>().is_err()
        {
            return Err(Error::Config(ConfigError::SignIn(
                "the redirect path must start with `/` and have no query or fragment".into(),
            )));
        }
        let (listeners, port) = redirect::listen(self.redirect_host, self.redirect_port).await?;
        let host = self.redirect_host.uri_host();
        let redirect_uri = format!("http://{host}:{port}{path}");

        let verifier = Secret::new(pkce::random(32)?);
        let state = Secret::new(pkce::random(16)?);
        let nonce = Secret::new(pkce::random(16)?);
        let query = serde_urlencoded::to_string([
            ("client_id", self.client_id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", &redirect_uri),
            ("response_mode", "query"),
            ("scope", &self.scopes()),
            ("state", state.expose()),
            ("nonce", nonce.expose()),
            ("code_challenge", &pkce::challenge(verifier.expose())),
            ("code_challenge_method", "S256"),
        ])
        .map_err(|_| ConfigError::SignIn("the authorize URL could not be encoded".into()))?;
        let separator = if self.authorize_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!("{}{separator}{query}", self.authorize_url);
        tracing::debug!(target: "veracity_auth::sign_in", %redirect_uri, "sign-in started, waiting for the redirect");
        Ok(PendingSignIn {
            config: self.clone(),
            listeners,
            url,
            redirect_uri,
            verifier,
            state,
            nonce,
        })
    }

    /// What [`run`](Self::run) and [`restore_or_sign_in`](Self::restore_or_sign_in) do with
    /// the authorize URL instead of opening a browser or printing it: show it in your own
    /// user interface, or (in tests) play the browser.
    pub fn on_authorize_url(mut self, show: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_authorize_url = Some(Arc::new(show));
        self
    }

    /// [`start`](Self::start), show the URL to open, then [`finish`](PendingSignIn::finish).
    ///
    /// The URL goes to the [`on_authorize_url`](Self::on_authorize_url) hook if one is set;
    /// otherwise, with feature `open-browser`, it is opened in the default browser (and
    /// printed on standard error too, in case that browser is not where the user is);
    /// without the feature, or when no browser can be opened, it is printed on standard
    /// error.
    pub async fn run(&self) -> Result<SignedIn, Error> {
        let pending = self.start().await?;
        match &self.on_authorize_url {
            Some(show) => show(pending.url()),
            None => open_or_print(pending.url()),
        }
        pending.finish().await
    }

    /// The client id.
    pub(super) fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A source for a refresh token of this app, configured like this sign-in.
    pub(super) fn refresh_token(&self, refresh_token: &str) -> RefreshToken {
        let mut source = RefreshToken::new(&self.client_id, refresh_token)
            .scope(&self.scope)
            .endpoint(self.endpoint.clone());
        if let Some(secret) = &self.client_secret {
            source = source.client_secret(secret.expose());
        }
        source
    }
}

/// Opens the authorize URL in the default browser (feature `open-browser`), or prints it.
fn open_or_print(url: &str) {
    #[cfg(feature = "open-browser")]
    match webbrowser::open(url) {
        Ok(()) => {
            eprintln!(
                "A browser window opened to sign in; if it did not, open this URL:\n\n  {url}\n"
            );
            return;
        }
        Err(e) => {
            tracing::debug!(target: "veracity_auth::sign_in", error = %e, "no browser could be opened; printing the URL");
        }
    }
    eprintln!("Open this URL in your browser to sign in:\n\n  {url}\n");
}

impl fmt::Debug for SignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignIn")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.endpoint)
            .field("scope", &self.scopes())
            .field("redirect_host", &self.redirect_host)
            .field("redirect_port", &self.redirect_port)
            .field("redirect_path", &self.redirect_path)
            .finish_non_exhaustive()
    }
}

/// A sign-in waiting for the browser: show [`url`](Self::url) to the user, then
/// [`finish`](Self::finish). Dropping it closes the listener.
pub struct PendingSignIn {
    config: SignIn,
    listeners: Vec<TcpListener>,
    url: String,
    redirect_uri: String,
    verifier: Secret,
    state: Secret,
    nonce: Secret,
}

impl PendingSignIn {
    /// The authorize URL for the user to open in a browser.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the browser is sent back to: `http://localhost:<port><path>` (or
    /// `http://127.0.0.1:<port><path>` with [`RedirectHost::Ipv4Loopback`]).
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Waits for the redirect, checks its `state`, exchanges the code (with the PKCE verifier)
    /// and checks the ID token's `nonce`.
    ///
    /// A request that is not this sign-in's redirect (another path, no code, a `state` that is
    /// not this sign-in's, garbage) is answered `400` and the wait goes on, until the timeout.
    /// Idle connections, a flood of them, or running out of file descriptors do not end it
    /// either: the listener closes idle connections to make room and keeps accepting.
    ///
    /// Fails with [`SignInError::Denied`] when the provider redirects with an error,
    /// [`SignInError::TimedOut`] when nothing arrives in time, or
    /// [`SignInError::StateMismatch`] when only redirects with another `state` arrived (a
    /// stale browser tab), and [`Error::OAuth`] when the token endpoint refuses the code
    /// (`invalid_grant`, for a wrong verifier too).
    pub async fn finish(self) -> Result<SignedIn, Error> {
        let PendingSignIn {
            config,
            listeners,
            redirect_uri,
            verifier,
            state,
            nonce,
            ..
        } = self;
        let expect = Arc::new(Expect::new(config.redirect_path.clone(), state));
        let waited = tokio::time::timeout(
            config.timeout,
            redirect::wait(listeners, Arc::clone(&expect)),
        )
        .await;
        let code = match waited {
            Ok(outcome) => outcome?,
            Err(_) if expect.saw_wrong_state() => {
                return Err(Error::SignIn(SignInError::StateMismatch));
            }
            Err(_) => return Err(Error::SignIn(SignInError::TimedOut(config.timeout))),
        };
        tracing::debug!(target: "veracity_auth::sign_in", "redirect received, exchanging the code");

        let scopes = config.scopes();
        let secret = config.client_secret.as_ref().map_or("", Secret::expose);
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("client_id", config.client_id.as_str()),
            ("code", code.expose()),
            ("redirect_uri", redirect_uri.as_str()),
            ("code_verifier", verifier.expose()),
            ("scope", scopes.as_str()),
        ];
        if !secret.is_empty() {
            form.push(("client_secret", secret));
        }
        let obtained = Instant::now();
        let response =
            tokio::time::timeout(EXCHANGE_TIMEOUT, config.endpoint.post_form(&form, None))
                .await
                .map_err(|_| Error::Timeout(EXCHANGE_TIMEOUT))??;
        let grant = response::parse_grant(
            response.status(),
            response.headers(),
            response.body(),
            &[code.expose(), verifier.expose(), secret],
        )
        .map_err(|e| config.endpoint.locate(e))?;
        if let Some(id_token) = &grant.id_token {
            check_nonce(id_token.expose(), nonce.expose())?;
        }
        tracing::debug!(
            target: "veracity_auth::sign_in",
            refresh_token = grant.refresh_token.is_some(),
            "signed in"
        );
        Ok(SignedIn {
            access_token: grant.token,
            obtained,
            refresh_token: grant.refresh_token,
            id_token: grant.id_token,
            config,
        })
    }
}

impl fmt::Debug for PendingSignIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingSignIn")
            .field("redirect_uri", &self.redirect_uri)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The ID token came straight from the token endpoint over TLS, so its claims are read
/// without checking the signature (OpenID Connect Core §3.1.3.7); the nonce proves it
/// answers this sign-in.
fn check_nonce(id_token: &str, nonce: &str) -> Result<(), Error> {
    let payload = id_token
        .split('.')
        .nth(1)
        .and_then(pkce::base64url_decode)
        .and_then(|json| serde_json::from_slice::<Value>(&json).ok())
        .ok_or_else(|| Error::InvalidResponse("the `id_token` is not a JWT".to_owned()))?;
    match payload.get("nonce").and_then(Value::as_str) {
        Some(n) if n == nonce => Ok(()),
        _ => Err(Error::SignIn(SignInError::NonceMismatch)),
    }
}

/// The tokens of a completed sign-in. `Debug` shows none of them.
pub struct SignedIn {
    access_token: Token,
    obtained: Instant,
    refresh_token: Option<Secret>,
    id_token: Option<Secret>,
    config: SignIn,
}

impl SignedIn {
    /// The access token.
    pub fn access_token(&self) -> &Token {
        &self.access_token
    }

    /// The refresh token, if `offline_access` was granted. Handle with care: it is a
    /// long-lived credential.
    pub fn refresh_token(&self) -> Option<&str> {
        self.refresh_token.as_ref().map(Secret::expose)
    }

    /// The ID token (a JWT about the user), if the provider sent one.
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_ref().map(Secret::expose)
    }

    /// A [`RefreshToken`] source configured like this sign-in (client, token URL, scope, HTTP
    /// client), starting with this access token. Fails with
    /// [`SignInError::NoRefreshToken`] if no refresh token was granted.
    pub fn into_refresh_token(self) -> Result<RefreshToken, Error> {
        let refresh_token = self
            .refresh_token
            .ok_or(Error::SignIn(SignInError::NoRefreshToken))?;
        Ok(self
            .config
            .refresh_token(refresh_token.expose())
            .initial_access_token_at(self.access_token, self.obtained))
    }
}

impl fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedIn")
            .field("access_token", &self.access_token)
            .field("refresh_token", &self.refresh_token)
            .field("id_token", &self.id_token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            pkce::base64url(br#"{"alg":"none"}"#),
            pkce::base64url(payload.as_bytes())
        )
    }

    #[test]
    fn the_nonce_must_match() {
        assert!(check_nonce(&jwt(r#"{"nonce":"n-1"}"#), "n-1").is_ok());
        for bad in [r#"{"nonce":"n-2"}"#, r#"{"sub":"x"}"#, r#"{"nonce":7}"#] {
            let err = check_nonce(&jwt(bad), "n-1").unwrap_err();
            assert!(
                matches!(err, Error::SignIn(SignInError::NonceMismatch)),
                "{bad}"
            );
        }
        for garbage in ["", "abc", "a.%%%.c", "a.bm90IGpzb24.c"] {
            assert!(matches!(
                check_nonce(garbage, "n-1"),
                Err(Error::InvalidResponse(_))
            ));
        }
    }

    #[test]
    fn scopes_add_openid_and_offline_access() {
        assert_eq!(
            SignIn::new("id").scope("api://x").scopes(),
            "openid offline_access api://x"
        );
        assert_eq!(
            SignIn::new("id").offline_access(false).scopes(),
            format!("openid {DEFAULT_USER_SCOPE}")
        );
    }

    #[tokio::test]
    async fn bad_configuration_is_a_typed_error() {
        let err = SignIn::new("id")
            .authorize_url("http://login.example.com/authorize")
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(ConfigError::InsecureUrl { .. })),
            "{err}"
        );
        let err = SignIn::new("id")
            .redirect_path("callback")
            .start()
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(ConfigError::SignIn(_))),
            "{err}"
        );
        for bad in [
            "not a url",
            "/relative",
            "ftp://login.example.com/authorize",
        ] {
            let err = SignIn::new("id")
                .authorize_url(bad)
                .start()
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::Config(ConfigError::SignIn(_))),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn the_sign_in_can_run_on_another_task() {
        fn send<T: Send + 'static>(_: &T) {}
        async fn sign_in() -> Result<SignedIn, Error> {
            SignIn::new("id").start().await?.finish().await
        }
        send(&sign_in());
    }
}

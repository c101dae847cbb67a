//! A signed-in person: access tokens from the OAuth 2.0 refresh-token grant.

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{sync::oneshot, time::Instant};

use super::{
    TokenEndpoint, TokenSource,
    lease::{Custody, Lease, StoreGuard, after},
    response,
};
use crate::{Error, Token, token::Secret};

/// Veracity's token endpoint for people: the one of the B2C policy `B2C_1A_SignInWithADFSIdp`,
/// the same policy as `DEFAULT_AUTHORIZE_URL` (feature `sign-in`), for the code exchange and
/// refreshes (Veracity's identity documentation, `web-native.md`).
pub const DEFAULT_USER_TOKEN_URL: &str = "https://login.veracity.com/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/token";

/// The scope for calling Data Workbench as a signed-in person: the Data Fabric API's
/// `user_impersonation` permission (`37c59c8d-…`), the API Data Workbench's authorization
/// page names. What supports it: veracity/node-auth (`src/constants.ts`,
/// `VERACITY_API_SCOPES.dataFabric`) and Veracity's Python SDK
/// (veracity/Python-SDK-for-Veracity, `veracity_data` in `veracity_platform.identity`) request
/// it; Veracity's current pages name only the Services API scope
/// ([`SERVICES_API_USER_SCOPE`]) for people. `openid` and `offline_access` are added wherever
/// a refresh token is wanted.
pub const DEFAULT_USER_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14/user_impersonation";

/// The scope for calling Veracity's Services API (`83054ebf-…`,
/// `/veracity/services/v3/my/...`) as a signed-in person: the user scope Veracity's identity
/// pages name (and veracity/node-auth `VERACITY_API_SCOPES.services`). Pass it to
/// `SignIn::scope` (feature `sign-in`) and [`RefreshToken::scope`].
pub const SERVICES_API_USER_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/user_impersonation";

/// The longest one `refresh_token` exchange may take. Longer than the cache's default fetch
/// timeout: an exchange outlives the fetch that started it.
const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(120);

/// How often a refresh retries the store's lock while another process holds it, at most.
const STORE_LOCK_RETRY: Duration = Duration::from_millis(50);

type OnRotate = Arc<dyn Fn(&str) + Send + Sync>;

/// A signed-in person: access tokens from the OAuth 2.0 `refresh_token` grant, Veracity's
/// token URL and user scope by default.
///
/// Identity providers may answer a refresh with a new refresh token (rotation); `RefreshToken`
/// then uses the new one from the next refresh on and hands it to the
/// [`on_rotate`](Self::on_rotate) hook, so the application can persist it. When the provider
/// rejects the refresh token (`invalid_grant`: expired, revoked or rotated away), fetches fail
/// with [`Error::SignInRequired`]: only signing in again helps.
///
/// A refresh token is never spent twice. Each exchange runs on a task of its own and holds a
/// lease on the current refresh token until the provider answered: a fetch the cache gave up
/// on (`fetch_timeout`) does not cancel it, a late answer still applies the rotation and calls
/// `on_rotate`, and its access token serves the next fetch. A fetch that starts while an
/// exchange is running, through this source or a clone, on any runtime, waits for it instead
/// of sending the old refresh token.
///
/// The lease ends at the exchange's deadline ([`exchange_timeout`](Self::exchange_timeout)),
/// timed by each waiting fetch on its own runtime, so an exchange left on a runtime that no
/// longer runs it (blocked, or idle after a `block_on` returned) blocks no other runtime
/// longer than that. The refresh token leaves only in the request's body, handed out once,
/// at the moment the HTTP client takes it: past the deadline, a waiting fetch takes over an
/// exchange whose body was not taken yet (it then can never send it), and never repeats one
/// whose body was: it fails with [`Error::RefreshStalled`] instead (or uses a newer token from
/// the sign-in's store). One rule, on every runtime: an exchange on a live runtime that sent
/// the token and timed out, or lost its connection, leaves it spent the same way. `Debug` never shows a token or the secret.
///
/// ```
/// use veracity_auth::{Authenticator, RefreshToken, VeracityAuthLayer};
///
/// # let stored_refresh_token = String::from("from-a-previous-sign-in");
/// let source = RefreshToken::new("my-app-client-id", stored_refresh_token)
///     .on_rotate(|new_refresh_token| {
///         // Persist it (a file readable by the user alone, the OS keychain, ...).
///         # let _ = new_refresh_token;
///     });
/// let layer = VeracityAuthLayer::new(Authenticator::builder(source).api_key("api-key").build().unwrap());
/// ```
#[derive(Clone)]
pub struct RefreshToken {
    client_id: String,
    client_secret: Option<Secret>,
    scope: String,
    endpoint: TokenEndpoint,
    custody: Arc<Custody>,
    initial: Arc<Mutex<Option<(Token, Instant)>>>,
    on_rotate: Option<OnRotate>,
    store: Option<Arc<dyn StoreHook>>,
    exchange_timeout: Duration,
}

/// What a refresh needs of the store a sign-in keeps its refresh token in
/// (`SignIn::restore_or_sign_in` attaches it): read it again, store a rotation, and keep
/// other processes of the tool away from the token from read to write.
pub(crate) trait StoreHook: Send + Sync + 'static {
    /// The stored refresh token, if any; a store that cannot be read is logged and reads as
    /// none.
    fn load(&self) -> Option<String>;
    /// Stores a rotated refresh token; a failure is logged, the source goes on with the token
    /// in memory.
    fn save(&self, refresh_token: &str);
    /// Whether the store has a lock against other processes ([`try_lock`](Self::try_lock)).
    fn has_lock(&self) -> bool;
    /// Takes that lock without waiting, held until the guard drops: `None` while another
    /// process holds it.
    fn try_lock(&self) -> Option<StoreGuard>;
}

impl RefreshToken {
    /// A source for the app `client_id` holding `refresh_token`, with Veracity's defaults.
    pub fn new(client_id: impl Into<String>, refresh_token: impl Into<String>) -> Self {
        RefreshToken {
            client_id: client_id.into(),
            client_secret: None,
            scope: DEFAULT_USER_SCOPE.to_owned(),
            endpoint: TokenEndpoint::veracity(DEFAULT_USER_TOKEN_URL),
            custody: Custody::new(Secret::new(refresh_token)),
            initial: Arc::default(),
            on_rotate: None,
            store: None,
            exchange_timeout: DEFAULT_EXCHANGE_TIMEOUT,
        }
    }

    /// The app's client secret, for confidential (web) apps; public apps have none.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(Secret::new(secret));
        self
    }

    /// The token endpoint (default [`DEFAULT_USER_TOKEN_URL`], the policy's endpoint).
    pub fn endpoint(mut self, endpoint: TokenEndpoint) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// The API scope (default [`DEFAULT_USER_SCOPE`]); `offline_access` is always added.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The longest one exchange may take (default 2 minutes). Keep it above the layer's
    /// fetch timeout: while an exchange runs, the next fetch waits for it, on any runtime, at
    /// most until this much after the exchange started (see the type's docs for an exchange
    /// whose runtime stopped running it).
    pub fn exchange_timeout(mut self, timeout: Duration) -> Self {
        self.exchange_timeout = timeout;
        self
    }

    /// Called with the new refresh token whenever the provider rotates it, before the new
    /// access token is used, even when the answer came after the fetch timed out. Persist it
    /// there; the old one may no longer work. The hook runs on the exchange's task: keep it
    /// short (a small file write is fine).
    pub fn on_rotate(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_rotate = Some(Arc::new(hook));
        self
    }

    /// An access token obtained together with the refresh token (by a sign-in, say), used
    /// for the first fetch while at least half its life, or a minute, remains.
    pub fn initial_access_token(self, token: Token) -> Self {
        *lock(&self.initial) = Some((token, Instant::now()));
        self
    }

    /// [`initial_access_token`](Self::initial_access_token), obtained at `at` (by a sign-in).
    #[cfg(feature = "sign-in")]
    pub(crate) fn initial_access_token_at(self, token: Token, at: Instant) -> Self {
        *lock(&self.initial) = Some((token, at));
        self
    }

    /// The store the refresh token came from: re-read before each refresh (under its lock,
    /// if it has one) and after a refused one, and given every rotation.
    #[cfg(feature = "sign-in")]
    pub(crate) fn with_store(mut self, store: Arc<dyn StoreHook>) -> Self {
        self.store = Some(store);
        self
    }

    /// Another source from the same sign-in, for another API: access tokens for `scope`
    /// (say [`SERVICES_API_USER_SCOPE`] beside the default Data Workbench scope), from the
    /// same refresh token. Azure AD B2C redeems a refresh token for any API the app was
    /// granted and the user consented to.
    ///
    /// Both sources share one refresh token: a rotation by either is used by both and
    /// reaches the [`on_rotate`](Self::on_rotate) hook once, and their exchanges take turns,
    /// so the token is never spent twice. (A plain `clone().scope(..)` shares the refresh
    /// token too, but also the access token kept for the first fetch, which is for this
    /// source's API: use this instead.)
    ///
    /// ```
    /// use veracity_auth::{Authenticator, RefreshToken, SERVICES_API_USER_SCOPE, VeracityAuthLayer};
    ///
    /// let data_workbench = RefreshToken::new("my-app-client-id", "stored-refresh-token");
    /// let services = data_workbench.for_scope(SERVICES_API_USER_SCOPE);
    /// let gateway = VeracityAuthLayer::new(Authenticator::builder(data_workbench).api_key("data-workbench-api-key").build().unwrap());
    /// let services_api = VeracityAuthLayer::new(Authenticator::builder(services).api_key("services-subscription-key").build().unwrap());
    /// ```
    pub fn for_scope(&self, scope: impl Into<String>) -> RefreshToken {
        RefreshToken {
            scope: scope.into(),
            initial: Arc::default(),
            ..self.clone()
        }
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The initial access token with its remaining lifetime, if it is still worth using.
    fn take_initial(&self) -> Option<Token> {
        let (token, at) = lock(&self.initial).take()?;
        let Some(life) = token.expires_in() else {
            return Some(token);
        };
        let left = life.checked_sub(at.elapsed())?;
        (left >= (life / 2).min(Duration::from_secs(60)))
            .then(|| Token::new(token.access_token(), Some(left)))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TokenSource for RefreshToken {
    async fn fetch(&self) -> Result<Token, Error> {
        if let Some(token) = self.take_initial() {
            return Ok(token);
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        // Waits for an exchange still running (one a timed-out fetch left behind): it may be
        // spending the very refresh token this fetch would send.
        let stored = || self.store.as_ref().and_then(|store| store.load());
        let release = self.custody.lease(self.exchange_timeout, stored).await?;
        // That exchange's answer came without anyone waiting for it: use its access token.
        if let Some(token) = self.take_initial() {
            return Ok(token);
        }
        let (tx, rx) = oneshot::channel();
        let exchange = self.clone();
        let task = runtime.spawn(async move {
            let lease = release.lease();
            let started = Instant::now();
            let outcome = tokio::time::timeout_at(lease.deadline(), exchange.exchange(lease))
                .await
                .unwrap_or(Err(Error::Timeout(exchange.exchange_timeout)));
            if let Err(Ok(token)) = tx.send(outcome)
                && exchange.custody.is_holder(lease)
            {
                tracing::debug!(
                    target: "veracity_auth::refresh_token",
                    "refresh answered after its fetch gave up; its access token serves the next fetch"
                );
                *lock(&exchange.initial) = Some((token, started));
            }
            // Only now may the next fetch look at the refresh token and the kept access token.
            // Nothing awaits between the answer and here: a runtime that stops as soon as its
            // fetch returned has released the lease too.
            drop(release);
        });
        match rx.await {
            Ok(outcome) => outcome,
            // The task ended without an answer: the `on_rotate` hook panicked (pass that on,
            // as if it had run here), or the runtime is shutting down.
            Err(_) => match task.await {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => Err(Error::FetchAborted),
            },
        }
    }
}

impl RefreshToken {
    /// One exchange under `lease`: with a store that has a lock, the lock is taken and the
    /// stored token read first (another process may have rotated it); a refused token is
    /// retried once with a different one from the store.
    async fn exchange(&self, lease: &Arc<Lease>) -> Result<Token, Error> {
        if let Some(store) = self.store.as_deref().filter(|s| s.has_lock()) {
            self.lock_store(store, lease).await?;
            if let Some(stored) = store.load()
                && stored != self.custody.refresh_token().expose()
                && self.custody.replace(lease, Secret::new(stored))
            {
                tracing::debug!(
                    target: "veracity_auth::refresh_token",
                    "another process rotated the refresh token: using the stored one"
                );
            }
        }
        let presented = self.custody.refresh_token();
        let refused = match self.redeem(lease, &presented).await {
            Err(Error::SignInRequired(e)) => e,
            other => return other,
        };
        let newer = self.store.as_ref().and_then(|s| s.load());
        if let Some(newer) = newer.filter(|t| t != presented.expose())
            && self.custody.replace(lease, Secret::new(newer.clone()))
        {
            tracing::info!(
                target: "veracity_auth::refresh_token",
                "refresh token refused, but the store holds another (another process rotated it): trying that one"
            );
            return match self.redeem(lease, &Secret::new(newer)).await {
                Err(Error::SignInRequired(e)) => Err(sign_in_required(e)),
                other => other,
            };
        }
        Err(sign_in_required(refused))
    }

    /// Takes the store's lock into `lease` (unless it inherited it), retrying while another
    /// process holds it, within the lease's deadline.
    async fn lock_store(&self, store: &dyn StoreHook, lease: &Lease) -> Result<(), Error> {
        let mut wait = Duration::from_millis(2);
        loop {
            if lease.is_revoked() {
                return Err(Error::Timeout(self.exchange_timeout));
            }
            if lease.has_store_lock() {
                return Ok(());
            }
            if let Some(guard) = store.try_lock() {
                lease.keep_store_lock(guard);
                continue;
            }
            if Instant::now() >= lease.deadline() {
                tracing::warn!(
                    target: "veracity_auth::refresh_token",
                    "another process held the refresh-token store's lock until this refresh's deadline"
                );
                return Err(Error::Timeout(self.exchange_timeout));
            }
            tokio::time::sleep_until(after(wait).min(lease.deadline())).await;
            wait = (wait * 2).min(STORE_LOCK_RETRY);
        }
    }

    /// One `refresh_token` request with `refresh_token`, sent only while `lease` holds it,
    /// and its answer: a rotation is made current (if the lease still holds the custody),
    /// stored and handed to `on_rotate`.
    async fn redeem(&self, lease: &Arc<Lease>, refresh_token: &Secret) -> Result<Token, Error> {
        let scope = format!("offline_access {}", self.scope);
        let secret = self.client_secret.as_ref().map_or("", Secret::expose);
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("refresh_token", refresh_token.expose()),
            ("scope", scope.as_str()),
        ];
        if !secret.is_empty() {
            form.push(("client_secret", secret));
        }
        let response = match self.endpoint.post_form(&form, Some(lease.gate())).await {
            Ok(response) => response,
            // Taken over past its deadline: the token never left.
            Err(_) if lease.is_revoked() => {
                return Err(Error::Timeout(self.exchange_timeout));
            }
            Err(e) => return Err(e),
        };
        // Answered: the next request of this exchange may send another token.
        lease.answered();
        let parsed = response::parse_grant(
            response.status(),
            response.headers(),
            response.body(),
            &[refresh_token.expose(), secret],
        )
        .map_err(|e| self.endpoint.locate(e));
        let grant = match parsed {
            Ok(grant) => grant,
            Err(Error::OAuth(e)) if is_sign_in_required(&e.error) => {
                return Err(Error::SignInRequired(e));
            }
            Err(e) => return Err(e),
        };
        if let Some(new) = grant.refresh_token
            && new != *refresh_token
        {
            if !self.custody.replace(lease, new.clone()) {
                // Another fetch took over with a newer stored token: that chain stays.
                tracing::debug!(
                    target: "veracity_auth::refresh_token",
                    "a rotation answered after its exchange was taken over is not used"
                );
                return Ok(grant.token);
            }
            if let Some(store) = &self.store {
                store.save(new.expose());
            }
            if let Some(hook) = &self.on_rotate {
                hook(new.expose());
            }
            tracing::debug!(target: "veracity_auth::refresh_token", "refresh token rotated");
        }
        Ok(grant.token)
    }
}

/// The refusal of a dead refresh token, logged.
fn sign_in_required(e: Box<crate::OAuthError>) -> Error {
    tracing::warn!(
        target: "veracity_auth::refresh_token",
        error = %e.error,
        code = e.code().as_deref().unwrap_or(""),
        "refresh token rejected: the user must sign in again"
    );
    Error::SignInRequired(e)
}

/// OAuth errors that mean the refresh token is dead: expired, revoked, rotated away, or the
/// provider wants the user in front of a browser.
fn is_sign_in_required(error: &str) -> bool {
    matches!(error, "invalid_grant" | "interaction_required")
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("refresh_token", &"[redacted]")
            .field("token_url", &self.endpoint)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_refresh_token_and_secret() {
        let s = RefreshToken::new("app-id", "rt-very-secret")
            .client_secret("cs-very-secret")
            .initial_access_token(Token::new("at-very-secret", None));
        let d = format!("{s:?}");
        assert!(d.contains("app-id"), "{d}");
        assert!(!d.contains("very-secret"), "{d}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_initial_access_token_is_used_once_with_its_remaining_life() {
        let s = RefreshToken::new("id", "rt")
            .initial_access_token(Token::new("at", Some(Duration::from_secs(3600))));
        tokio::time::advance(Duration::from_secs(600)).await;
        let t = s.take_initial().unwrap();
        assert_eq!(t.access_token(), "at");
        assert_eq!(t.expires_in(), Some(Duration::from_secs(3000)));
        assert!(s.take_initial().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_nearly_expired_initial_access_token_is_not_used() {
        let s = RefreshToken::new("id", "rt")
            .initial_access_token(Token::new("at", Some(Duration::from_secs(3600))));
        tokio::time::advance(Duration::from_secs(3550)).await;
        assert!(s.take_initial().is_none());
    }

    #[test]
    fn dead_refresh_token_errors() {
        assert!(is_sign_in_required("invalid_grant"));
        assert!(is_sign_in_required("interaction_required"));
        assert!(!is_sign_in_required("invalid_client"));
        assert!(!is_sign_in_required("temporarily_unavailable"));
    }
}

//! Signed-in users: the authorization codes the authorize endpoint hands out and the refresh
//! tokens the token endpoint issues, with rotation and revocation.
//!
//! Codes are single use and live ten minutes (tokio's clock). A refresh token stays valid
//! until it is revoked or, with rotation on (the default), until it has been redeemed once:
//! the mock is strict about rotation, so a client that keeps using an old refresh token fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::MockVeracity;
use super::ids;
use super::stats::bump;

/// The API scope a signed-in user asks for (SPEC §1, "User sign-in").
pub(crate) const USER_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14";
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// An authorization code waiting to be exchanged.
pub(crate) struct Code {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: String,
    pub(crate) scope: String,
    pub(crate) nonce: Option<String>,
    expires: Instant,
}

struct Refresh {
    client_id: String,
    scope: String,
    usable: bool,
}

/// Codes, refresh tokens and the sign-in switches.
pub(crate) struct Users {
    registry: Mutex<Registry>,
    pub(crate) rotate: AtomicBool,
    pub(crate) deny: AtomicBool,
}

#[derive(Default)]
struct Registry {
    codes: HashMap<String, Code>,
    refresh: HashMap<String, Refresh>,
}

impl Default for Users {
    fn default() -> Self {
        Users {
            registry: Mutex::default(),
            rotate: AtomicBool::new(true),
            deny: AtomicBool::new(false),
        }
    }
}

impl Users {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a new code and returns it.
    pub(crate) fn issue_code(
        &self,
        client_id: &str,
        redirect_uri: &str,
        challenge: &str,
        scope: &str,
        nonce: Option<&str>,
    ) -> String {
        let code = format!(
            "mock-code-{:016x}{:016x}",
            ids::random_u64(),
            ids::random_u64()
        );
        let entry = Code {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            scope: scope.to_owned(),
            nonce: nonce.map(str::to_owned),
            expires: Instant::now() + CODE_LIFETIME,
        };
        let mut registry = self.lock();
        let now = Instant::now();
        registry.codes.retain(|_, c| c.expires > now);
        registry.codes.insert(code.clone(), entry);
        code
    }

    /// Takes a code out (it is single use, whatever the exchange's outcome); `None` if it is
    /// unknown, used or expired.
    pub(crate) fn take_code(&self, code: &str) -> Option<Code> {
        self.lock()
            .codes
            .remove(code)
            .filter(|c| c.expires > Instant::now())
    }

    /// Issues a refresh token for `client_id` and `scope`.
    pub(crate) fn issue_refresh(
        &self,
        counters: &super::stats::Counters,
        client_id: &str,
        scope: &str,
    ) -> String {
        let token = format!(
            "mock-rt-{:016x}{:016x}",
            ids::random_u64(),
            ids::random_u64()
        );
        self.lock().refresh.insert(
            token.clone(),
            Refresh {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                usable: true,
            },
        );
        bump(&counters.refresh_tokens_issued);
        token
    }

    /// Redeems a refresh token: its scope if it is usable by `client_id`. With rotation on,
    /// it is spent.
    pub(crate) fn redeem_refresh(&self, token: &str, client_id: &str) -> Option<String> {
        let rotate = self.rotate.load(Ordering::Relaxed);
        let mut registry = self.lock();
        let entry = registry.refresh.get_mut(token)?;
        if !entry.usable || entry.client_id != client_id {
            return None;
        }
        if rotate {
            entry.usable = false;
        }
        Some(entry.scope.clone())
    }

    fn revoke_all(&self) {
        for entry in self.lock().refresh.values_mut() {
            entry.usable = false;
        }
    }
}

impl MockVeracity {
    /// The authorize URL (`…/b2c_1a_signinwithadfsidp/oauth2/v2.0/authorize`). It consents
    /// at once: a valid request is answered `302` to its loopback `redirect_uri` with a `code`
    /// and the `state`; PKCE (`code_challenge`, method `S256`) is required.
    pub fn authorize_url(&self) -> String {
        format!(
            "{}{}",
            self.shared.config.base_url,
            super::authorize::AUTHORIZE_PATH
        )
    }

    /// The API scope the authorize endpoint requires (Veracity's user scope); add
    /// `offline_access` for a refresh token, `openid` for an ID token.
    pub fn user_scope(&self) -> &str {
        USER_SCOPE
    }

    /// A refresh token for the first client, as if its user had signed in, for tests that
    /// start from a stored refresh token.
    pub fn issue_refresh_token(&self) -> String {
        let scope = format!("offline_access {USER_SCOPE}");
        self.shared
            .users
            .issue_refresh(&self.shared.counters, self.client_id(), &scope)
    }

    /// Revokes every refresh token issued so far: refreshing with one answers `400
    /// invalid_grant` (AADB2C90129). Later sign-ins get valid ones.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.users.revoke_all();
    }

    /// Whether refreshes rotate the refresh token (default on): the answer carries a new one
    /// and the redeemed one stops working. Off: the answer carries none and the old one stays
    /// valid.
    pub fn set_refresh_token_rotation(&self, on: bool) {
        self.shared.users.rotate.store(on, Ordering::Relaxed);
    }

    /// While on, the authorize endpoint redirects with `error=access_denied` (the user
    /// cancelled) instead of a code.
    pub fn deny_sign_in(&self, on: bool) {
        self.shared.users.deny.store(on, Ordering::Relaxed);
    }
}

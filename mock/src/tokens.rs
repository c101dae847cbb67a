//! The registry of the access tokens the mock issued: each one's expiry and whether it was
//! revoked, and the gateway's verdict on a token presented to it.
//!
//! Expiry uses `tokio::time::Instant`, so tests with paused time expire tokens with
//! `tokio::time::advance`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::ids;

/// What the mock knows about one token it issued.
struct TokenEntry {
    /// `None`: never expires.
    expires: Option<Instant>,
    revoked: bool,
}

/// The verdict on a bearer token presented to the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenCheck {
    Valid,
    Unknown,
    Expired,
    Revoked,
}

/// Every access token issued so far (the mutex is never held across an `.await`).
#[derive(Default)]
pub(crate) struct IssuedTokens {
    entries: Mutex<HashMap<String, TokenEntry>>,
    issued: AtomicU64,
}

impl IssuedTokens {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, TokenEntry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a new token valid for `lifetime`.
    pub(crate) fn issue(&self, lifetime: Duration) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("mock-at-{n}-{:016x}", ids::random_u64());
        self.register(token.clone(), Some(lifetime));
        token
    }

    /// Registers a token chosen from outside; `None` never expires.
    pub(crate) fn register(&self, token: String, lifetime: Option<Duration>) {
        let expires = lifetime.and_then(|d| Instant::now().checked_add(d));
        let entry = TokenEntry {
            expires,
            revoked: false,
        };
        self.lock().insert(token, entry);
    }

    /// Judges a bearer token. An expired token counts as expired even if it was also
    /// revoked: sending it is the client's mistake either way.
    pub(crate) fn check(&self, token: &str) -> TokenCheck {
        let tokens = self.lock();
        let Some(entry) = tokens.get(token) else {
            return TokenCheck::Unknown;
        };
        if entry.expires.is_some_and(|at| Instant::now() >= at) {
            TokenCheck::Expired
        } else if entry.revoked {
            TokenCheck::Revoked
        } else {
            TokenCheck::Valid
        }
    }

    /// Revokes every token issued so far.
    pub(crate) fn revoke_all(&self) {
        for entry in self.lock().values_mut() {
            entry.revoked = true;
        }
    }
}

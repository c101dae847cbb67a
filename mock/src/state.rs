//! The state one running mock shares between its connections: fixed
//! configuration, the registry of issued tokens, fault queues, counters and the
//! request log.
//!
//! The mutex is a `std` one and is never held across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::fault::FaultQueue;
use super::ids;
use super::stats::{Counters, RecordedRequest};
use super::token::TokenStyle;

/// Settings fixed when the server starts.
pub(crate) struct Config {
    /// `http://127.0.0.1:PORT`
    pub(crate) base_url: String,
    /// Accepted `(client_id, client_secret)` pairs; never empty.
    pub(crate) clients: Vec<(String, String)>,
    /// Accepted subscription keys; never empty.
    pub(crate) api_keys: Vec<String>,
    pub(crate) scope: String,
    pub(crate) resource: String,
    pub(crate) workspace_id: String,
    pub(crate) record: bool,
    pub(crate) invalid_key_answer: super::gateway::InvalidKeyAnswer,
}

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

/// Mutable settings and registries.
pub(crate) struct State {
    tokens: HashMap<String, TokenEntry>,
    pub(crate) lifetime: Duration,
    pub(crate) style: TokenStyle,
    pub(crate) token_faults: FaultQueue,
    pub(crate) api_faults: FaultQueue,
    pub(crate) recorded: Vec<RecordedRequest>,
}

/// Everything one running mock shares.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Counters,
    pub(crate) reject_all: AtomicBool,
    /// Authorization codes and refresh tokens of signed-in users.
    pub(crate) users: super::users::Users,
    state: Mutex<State>,
    issued: AtomicU64,
}

impl Shared {
    pub(crate) fn new(config: Config, lifetime: Duration, style: TokenStyle) -> Self {
        Shared {
            config,
            counters: Counters::default(),
            reject_all: AtomicBool::new(false),
            users: super::users::Users::default(),
            state: Mutex::new(State {
                tokens: HashMap::new(),
                lifetime,
                style,
                token_faults: FaultQueue::default(),
                api_faults: FaultQueue::default(),
                recorded: Vec::new(),
            }),
            issued: AtomicU64::new(0),
        }
    }

    /// Locks the mutable state (a panic elsewhere does not poison the mock).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a new token with the current lifetime. Returns the token, its
    /// lifetime and the current response style.
    pub(crate) fn issue_token(&self) -> (String, Duration, TokenStyle) {
        let n = self.issued.fetch_add(1, Ordering::Relaxed) + 1;
        let token = format!("mock-at-{n}-{:016x}", ids::random_u64());
        let mut state = self.lock();
        let lifetime = state.lifetime;
        let expires = Instant::now().checked_add(lifetime);
        state.tokens.insert(
            token.clone(),
            TokenEntry {
                expires,
                revoked: false,
            },
        );
        (token, lifetime, state.style)
    }

    /// Registers a token chosen from outside (by [`Fault::IssueToken`](super::Fault::IssueToken)).
    /// `lifetime`: `None` uses the current lifetime, `Some(None)` never expires.
    pub(crate) fn register_token(&self, token: String, lifetime: Option<Option<Duration>>) {
        let mut state = self.lock();
        let now = Instant::now();
        let expires = match lifetime {
            None => now.checked_add(state.lifetime),
            Some(Some(d)) => now.checked_add(d),
            Some(None) => None,
        };
        state.tokens.insert(
            token,
            TokenEntry {
                expires,
                revoked: false,
            },
        );
    }

    /// Judges a bearer token. An expired token counts as expired even if it
    /// was also revoked: sending it is the client's mistake either way.
    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        let state = self.lock();
        let Some(entry) = state.tokens.get(token) else {
            return TokenCheck::Unknown;
        };
        if entry.expires.is_some_and(|at| Instant::now() >= at) {
            TokenCheck::Expired
        } else if entry.revoked || self.reject_all.load(Ordering::Relaxed) {
            TokenCheck::Revoked
        } else {
            TokenCheck::Valid
        }
    }

    /// Revokes every token issued so far.
    pub(crate) fn revoke_all(&self) {
        for entry in self.lock().tokens.values_mut() {
            entry.revoked = true;
        }
    }

    /// Appends to the request log if recording is on.
    pub(crate) fn record(&self, request: impl FnOnce() -> RecordedRequest) {
        if self.config.record {
            let request = request();
            self.lock().recorded.push(request);
        }
    }
}

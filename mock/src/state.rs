//! The state one running mock shares between its connections: the settings fixed at start,
//! the settings tests change while it runs, the registries (issued tokens, signed-in users,
//! fault queues, workspace storage), the counters and the request log.
//!
//! The mutexes are `std` ones and are never held across an `.await`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::fault::FaultQueue;
use super::reply::{InvalidKeyAnswer, TokenStyle};
use super::stats::{Counters, RecordedRequest};
use super::storage::StorageRegistry;
use super::tokens::{IssuedTokens, TokenCheck};
use super::users::Users;

/// Settings fixed when the server starts.
pub(crate) struct FixedSettings {
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
    pub(crate) invalid_key_answer: InvalidKeyAnswer,
}

/// What tests change while the mock runs (token lifetime and style, fault queues), and the
/// request log, behind one lock.
pub(crate) struct LiveSettings {
    pub(crate) lifetime: Duration,
    pub(crate) style: TokenStyle,
    pub(crate) token_faults: FaultQueue,
    pub(crate) api_faults: FaultQueue,
    pub(crate) recorded: Vec<RecordedRequest>,
}

/// Everything one running mock shares between its connections.
pub(crate) struct MockState {
    pub(crate) settings: FixedSettings,
    pub(crate) counters: Counters,
    pub(crate) reject_all: AtomicBool,
    /// Authorization codes and refresh tokens of signed-in users.
    pub(crate) users: Users,
    /// Datasets, File storages, SAS policies and the SAS handed out.
    pub(crate) storage: StorageRegistry,
    tokens: IssuedTokens,
    live: Mutex<LiveSettings>,
}

impl MockState {
    pub(crate) fn new(
        settings: FixedSettings,
        lifetime: Duration,
        style: TokenStyle,
        storage: StorageRegistry,
    ) -> Self {
        MockState {
            settings,
            storage,
            counters: Counters::default(),
            reject_all: AtomicBool::new(false),
            users: Users::default(),
            tokens: IssuedTokens::default(),
            live: Mutex::new(LiveSettings {
                lifetime,
                style,
                token_faults: FaultQueue::default(),
                api_faults: FaultQueue::default(),
                recorded: Vec::new(),
            }),
        }
    }

    /// Locks the settings tests change (a panic elsewhere does not poison the mock).
    pub(crate) fn live(&self) -> MutexGuard<'_, LiveSettings> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Issues a new token with the current lifetime. Returns the token, its
    /// lifetime and the current response style.
    pub(crate) fn issue_token(&self) -> (String, Duration, TokenStyle) {
        let (lifetime, style) = {
            let live = self.live();
            (live.lifetime, live.style)
        };
        (self.tokens.issue(lifetime), lifetime, style)
    }

    /// Registers a token chosen from outside (by [`Fault::IssueToken`](crate::Fault::IssueToken)).
    /// `lifetime`: `None` uses the current lifetime, `Some(None)` never expires.
    pub(crate) fn register_token(&self, token: String, lifetime: Option<Option<Duration>>) {
        let lifetime = lifetime.unwrap_or_else(|| Some(self.live().lifetime));
        self.tokens.register(token, lifetime);
    }

    /// Judges a bearer token; while `reject_all` is on, a valid one counts as revoked.
    pub(crate) fn check_token(&self, token: &str) -> TokenCheck {
        match self.tokens.check(token) {
            TokenCheck::Valid if self.reject_all.load(Ordering::Relaxed) => TokenCheck::Revoked,
            verdict => verdict,
        }
    }

    /// Revokes every token issued so far.
    pub(crate) fn revoke_all(&self) {
        self.tokens.revoke_all();
    }

    /// Appends to the request log if recording is on.
    pub(crate) fn record(&self, request: impl FnOnce() -> RecordedRequest) {
        if self.settings.record {
            let request = request();
            self.live().recorded.push(request);
        }
    }
}

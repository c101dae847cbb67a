//! The registry of signed-in users: the authorization codes the authorize endpoint hands out
//! and the refresh tokens the token endpoint issues, with rotation and revocation, and the
//! sign-in switches.
//!
//! Codes are single use and live ten minutes (tokio's clock). A refresh token stays valid
//! until it is revoked or, with rotation on (the default), until it has been redeemed once:
//! the mock is strict about rotation, so a client that keeps using an old refresh token fails.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::ids;
use super::stats::{Counters, bump};

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
    standing: Standing,
}

/// Where a refresh token stands.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Standing {
    Usable,
    /// Redeemed once with rotation on: a new one replaced it.
    RotatedAway,
    Revoked,
}

/// Why a refresh token was not redeemed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Unknown, revoked, or issued to another client.
    Invalid,
    /// Already redeemed and rotated away: presented a second time.
    Reused,
}

/// Codes, refresh tokens and the sign-in switches.
pub(crate) struct Users {
    registry: Mutex<Registry>,
    pub(crate) rotate: AtomicBool,
    pub(crate) deny: AtomicBool,
    /// User grants must carry the client secret (a web-type app registration).
    pub(crate) confidential: AtomicBool,
    /// Delays before answering the next user grants, which are processed at once.
    answer_delays: Mutex<std::collections::VecDeque<Duration>>,
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
            confidential: AtomicBool::new(false),
            answer_delays: Mutex::default(),
        }
    }
}

impl Users {
    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The delay before answering the user grant being handled, if one is queued.
    pub(crate) fn next_answer_delay(&self) -> Option<Duration> {
        self.answer_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
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
        counters: &Counters,
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
                standing: Standing::Usable,
            },
        );
        bump(&counters.refresh_tokens_issued);
        token
    }

    /// Redeems a refresh token: its scope if it is usable by `client_id`. With rotation on,
    /// it is spent.
    pub(crate) fn redeem_refresh(&self, token: &str, client_id: &str) -> Result<String, Refused> {
        let rotate = self.rotate.load(Ordering::Relaxed);
        let mut registry = self.lock();
        let entry = registry.refresh.get_mut(token).ok_or(Refused::Invalid)?;
        if entry.client_id != client_id {
            return Err(Refused::Invalid);
        }
        match entry.standing {
            Standing::Usable => {}
            Standing::RotatedAway => return Err(Refused::Reused),
            Standing::Revoked => return Err(Refused::Invalid),
        }
        if rotate {
            entry.standing = Standing::RotatedAway;
        }
        Ok(entry.scope.clone())
    }

    /// Delays the answers to the next `times` user grants by `delay` each.
    pub(crate) fn delay_answers(&self, delay: Duration, times: usize) {
        self.answer_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(std::iter::repeat_n(delay, times));
    }

    /// Revokes every usable refresh token.
    pub(crate) fn revoke_all(&self) {
        for entry in self.lock().refresh.values_mut() {
            if entry.standing == Standing::Usable {
                entry.standing = Standing::Revoked;
            }
        }
    }
}

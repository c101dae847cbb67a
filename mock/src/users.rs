//! Signed-in users: the authorization codes the authorize endpoint hands out and the refresh
//! tokens the token endpoint issues, with rotation and revocation; the user scopes Veracity
//! documents, and the policy whose token endpoint answers user grants.
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

/// The Data Fabric API's permission, for Data Workbench as a person (veracity/node-auth
/// `VERACITY_API_SCOPES.dataFabric`). Written out here, not taken from the client crate.
pub(crate) const DATA_FABRIC_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14/user_impersonation";
/// The Services API's permission (veracity/node-auth `VERACITY_API_SCOPES.services`).
pub(crate) const SERVICES_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/user_impersonation";
/// The B2C policy of Veracity's sign-in.
pub(crate) const POLICY: &str = "B2C_1A_SignInWithADFSIdp";
/// The token endpoint of that policy (B2C matches policy names case-insensitively).
pub(crate) const POLICY_TOKEN_PATH: &str =
    "/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/token";
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// The one API a scope string asks for: its resource (the app ID, as B2C's `resource` field
/// names it), or B2C's refusal (`error`, description with its `AADB2C` code).
pub(crate) fn check_scope(scope: &str) -> Result<&'static str, (&'static str, String)> {
    let mut resource = None;
    for item in scope.split_whitespace() {
        let found = match item {
            "openid" | "offline_access" | "profile" => continue,
            DATA_FABRIC_SCOPE => "37c59c8d-cd9d-4cd5-b05a-e67f1650ee14",
            SERVICES_SCOPE => "83054ebf-1d7b-43f5-82ad-b2bde84d7b75",
            // An app ID URI with no permission after it, the form B2C refuses.
            _ if names_no_permission(item) => {
                return Err((
                    "invalid_scope",
                    format!(
                        "AADB2C90055: The scope '{item}' provided in request must specify a resource, such as 'https://example.com/calendar.read'."
                    ),
                ));
            }
            _ => {
                return Err((
                    "invalid_scope",
                    format!(
                        "AADB2C90117: The scope '{item}' provided in the request is not supported."
                    ),
                ));
            }
        };
        if resource.is_some_and(|r| r != found) {
            return Err((
                "invalid_scope",
                format!(
                    "AADB2C90146: The scope '{scope}' provided in request specifies more than one resource for an access token, which is not supported."
                ),
            ));
        }
        resource = Some(found);
    }
    resource.ok_or((
        "invalid_scope",
        "AADB2C90115: When requesting the 'code' response_type, the scope parameter must include a resource or client ID for access tokens, and 'openid' for ID tokens. Additionally include 'offline_access' for refresh tokens.".to_owned(),
    ))
}

/// `https://host/<app id>`: a resource, but no permission on it.
fn names_no_permission(scope: &str) -> bool {
    let Some(rest) = scope.strip_prefix("https://") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    segments.len() <= 1
}

/// Whether a token request came to the policy's token endpoint: its own path, or the
/// policy-less path with `?p=B2C_1A_SignInWithADFSIdp`.
pub(crate) fn is_policy_endpoint(uri: &http::Uri) -> bool {
    if uri.path().eq_ignore_ascii_case(POLICY_TOKEN_PATH) {
        return true;
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    query
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("p") && v.eq_ignore_ascii_case(POLICY))
}

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

/// Put on a user grant's response: the server waits this long before sending it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnswerDelay(pub(crate) Duration);

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

    fn revoke_all(&self) {
        for entry in self.lock().refresh.values_mut() {
            if entry.standing == Standing::Usable {
                entry.standing = Standing::Revoked;
            }
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

    /// The token endpoint of the sign-in policy
    /// (`…/b2c_1a_signinwithadfsidp/oauth2/v2.0/token`), where the code exchange and refreshes
    /// go. The policy-less [`token_url`](Self::token_url) takes them only with
    /// `?p=B2C_1A_SignInWithADFSIdp`; without it, user grants are refused (`invalid_request`).
    pub fn user_token_url(&self) -> String {
        format!("{}{POLICY_TOKEN_PATH}", self.shared.config.base_url)
    }

    /// The Data Workbench user scope (the Data Fabric API's `user_impersonation`), one of the
    /// two API scopes the authorize endpoint accepts; add `offline_access` for a refresh
    /// token, `openid` for an ID token. A bare app ID URI (no permission) is refused with
    /// `AADB2C90055`, any other scope with `AADB2C90117`, two APIs at once with `AADB2C90146`.
    pub fn user_scope(&self) -> &str {
        DATA_FABRIC_SCOPE
    }

    /// The Services API user scope, the other accepted API scope.
    pub fn services_user_scope(&self) -> &str {
        SERVICES_SCOPE
    }

    /// While on, user grants (code exchange and refresh) require the client's secret, as for
    /// a web-type (confidential) app registration: without one they are refused with
    /// `AADB2C90079`. A secret that is sent must be right (`AADB2C90081`), on or off.
    pub fn require_sign_in_client_secret(&self, on: bool) {
        self.shared.users.confidential.store(on, Ordering::Relaxed);
    }

    /// The next `times` user grants (code exchanges, refreshes) are processed at once, a
    /// refresh token spent and rotated, but answered only after `delay`: a provider that
    /// answers late. (A [`Fault::Delay`](super::Fault::Delay) instead waits before
    /// processing, so a client that gives up spends nothing.)
    pub fn delay_user_grant_answers(&self, delay: Duration, times: usize) {
        let mut delays = self
            .shared
            .users
            .answer_delays
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        delays.extend(std::iter::repeat_n(delay, times));
    }

    /// A refresh token for the first client, as if its user had signed in, for tests that
    /// start from a stored refresh token.
    pub fn issue_refresh_token(&self) -> String {
        let scope = format!("offline_access {DATA_FABRIC_SCOPE}");
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

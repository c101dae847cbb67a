//! What the mock saw: request counters ([`MockStats`]), the SAS it handed out
//! ([`IssuedSas`]) and, when enabled, a log of every request ([`RecordedRequest`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, StatusCode};

/// A snapshot of the mock's counters, taken by
/// [`MockVeracity::stats`](super::MockVeracity::stats).
///
/// Every field counts requests (not connections) since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MockStats {
    /// Requests to either token endpoint, including faulted and rejected ones.
    pub token_requests: u64,
    /// Access tokens issued (normal issues and [`Fault::IssueToken`](super::Fault::IssueToken)).
    pub tokens_issued: u64,
    /// Token requests answered with an OAuth error by the mock itself
    /// (injected faults are counted in `faults_served` instead).
    pub token_errors: u64,
    /// Requests to the Data Workbench gateway (`/api/v2` and `/api/v1`).
    pub api_requests: u64,
    /// Gateway requests answered with a 2xx status (faults excluded).
    pub api_ok: u64,
    /// Gateway requests without an `Ocp-Apim-Subscription-Key` header (or with an empty one).
    pub rejected_missing_key: u64,
    /// Gateway requests with an unknown subscription key.
    pub rejected_wrong_key: u64,
    /// Gateway requests with a valid key but no usable `Authorization: Bearer` header
    /// (absent, another scheme, empty token, or not valid header text).
    pub rejected_missing_token: u64,
    /// Gateway requests with a bearer token the mock never issued.
    pub rejected_unknown_token: u64,
    /// Gateway requests with a token the mock issued whose lifetime had passed.
    /// A correct client never sends one.
    pub rejected_expired_token: u64,
    /// Gateway requests with a revoked token, or any token while
    /// [`reject_all_tokens`](super::MockVeracity::reject_all_tokens) is on.
    pub rejected_revoked_token: u64,
    /// Injected faults served, on either endpoint.
    pub faults_served: u64,
    /// Requests to the authorize endpoint (sign-in), redirected with a code or an error.
    pub authorize_requests: u64,
    /// Token requests with `grant_type=authorization_code`.
    pub authorization_code_grants: u64,
    /// Token requests with `grant_type=refresh_token`.
    pub refresh_token_grants: u64,
    /// Refresh tokens issued (by code exchanges and rotations).
    pub refresh_tokens_issued: u64,
    /// Code exchanges refused because the PKCE `code_verifier` did not match the challenge.
    pub rejected_code_verifiers: u64,
    /// Refreshes refused because the refresh token was unknown, revoked or rotated away.
    pub rejected_refresh_tokens: u64,
    /// Refreshes presenting a refresh token that an earlier refresh had already redeemed and
    /// rotated away: one refresh token spent twice. A correct client keeps this at 0 (these
    /// are counted in `rejected_refresh_tokens` too).
    pub reused_refresh_tokens: u64,
    /// Requests for a dataset SAS (`GET …/datasets/{id}/sas`, v1 and v2) that passed the key
    /// and token checks, answered or refused.
    pub dataset_sas_requests: u64,
    /// Requests for a File storage SAS (`POST …/storages/sas`) that passed the key and token
    /// checks, answered or refused.
    pub storage_sas_requests: u64,
    /// SAS requests refused by the SAS endpoints themselves (400, 403, 404, 502).
    pub sas_refused: u64,
    /// SAS handed out (see [`MockVeracity::issued_sas`](super::MockVeracity::issued_sas)).
    pub sas_issued: u64,
    /// Successful revocations (`DELETE /api/v1/…/storages/sas/revoke`).
    pub sas_revocations: u64,
}

/// Which endpoint handed a SAS out.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SasKind {
    /// A dataset's read-only SAS (`GET …/datasets/{id}/sas`).
    Dataset,
    /// A File storage SAS (`POST …/storages/sas`).
    Storage,
}

/// What a SAS lets its holder do.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SasAccess {
    /// Read and list (`sp=rl`): every dataset SAS, and `"readOrWritePermission": "Read"`.
    Read,
    /// Read, add, create, write, delete and list (`sp=racwdl`): `"readOrWritePermission": "Write"`.
    Write,
}

impl SasAccess {
    /// The SAS permission letters, in Azure's order.
    pub fn permissions(self) -> &'static str {
        match self {
            SasAccess::Read => "rl",
            SasAccess::Write => "racwdl",
        }
    }
}

/// One SAS the mock handed out: what it covers and until when, never its signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedSas {
    /// Sequence number, from 1, in the order the SAS were issued.
    pub id: u64,
    /// The endpoint that issued it.
    pub kind: SasKind,
    /// The container it is signed for (`sr=c`: the whole container, see the crate docs).
    pub container: String,
    /// The folder or path its resource URI names, no leading `/` (empty: the container).
    pub path: String,
    /// What it grants (from `sp=`, or from its stored access policy).
    pub access: SasAccess,
    /// Its `se=`: the lifetime asked for, cut to the mock's maximum SAS lifetime.
    pub expires_at: SystemTime,
    /// The stored access policy it is bound to (`si=`), when SAS are revocable.
    pub policy: Option<String>,
}

/// One request the mock received, recorded when
/// [`MockBuilder::record_requests`](super::MockBuilder::record_requests) is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// The request method.
    pub method: Method,
    /// The request path, followed by `?` and the query string when there is one.
    pub path: String,
    /// The complete request body as received (empty for the pattern upload, which is checked
    /// as it streams in and not kept).
    pub body: Bytes,
    /// The status the mock answered with. For faults that send no response at all
    /// ([`Fault::Hang`](super::Fault::Hang), [`Fault::DropConnection`](super::Fault::DropConnection))
    /// this is `444` (nginx's "connection closed without response").
    pub status: StatusCode,
    /// Whether the request had an `Authorization` header.
    pub had_token: bool,
    /// Whether the request had an `Ocp-Apim-Subscription-Key` header.
    pub had_key: bool,
    /// The request's `User-Agent` header, if it had one (and it was text).
    pub user_agent: Option<String>,
}

/// The live counters behind [`MockStats`].
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) token_requests: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    pub(crate) token_errors: AtomicU64,
    pub(crate) api_requests: AtomicU64,
    pub(crate) api_ok: AtomicU64,
    pub(crate) rejected_missing_key: AtomicU64,
    pub(crate) rejected_wrong_key: AtomicU64,
    pub(crate) rejected_missing_token: AtomicU64,
    pub(crate) rejected_unknown_token: AtomicU64,
    pub(crate) rejected_expired_token: AtomicU64,
    pub(crate) rejected_revoked_token: AtomicU64,
    pub(crate) faults_served: AtomicU64,
    pub(crate) authorize_requests: AtomicU64,
    pub(crate) authorization_code_grants: AtomicU64,
    pub(crate) refresh_token_grants: AtomicU64,
    pub(crate) refresh_tokens_issued: AtomicU64,
    pub(crate) rejected_code_verifiers: AtomicU64,
    pub(crate) rejected_refresh_tokens: AtomicU64,
    pub(crate) reused_refresh_tokens: AtomicU64,
    pub(crate) dataset_sas_requests: AtomicU64,
    pub(crate) storage_sas_requests: AtomicU64,
    pub(crate) sas_refused: AtomicU64,
    pub(crate) sas_issued: AtomicU64,
    pub(crate) sas_revocations: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> MockStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MockStats {
            token_requests: get(&self.token_requests),
            tokens_issued: get(&self.tokens_issued),
            token_errors: get(&self.token_errors),
            api_requests: get(&self.api_requests),
            api_ok: get(&self.api_ok),
            rejected_missing_key: get(&self.rejected_missing_key),
            rejected_wrong_key: get(&self.rejected_wrong_key),
            rejected_missing_token: get(&self.rejected_missing_token),
            rejected_unknown_token: get(&self.rejected_unknown_token),
            rejected_expired_token: get(&self.rejected_expired_token),
            rejected_revoked_token: get(&self.rejected_revoked_token),
            faults_served: get(&self.faults_served),
            authorize_requests: get(&self.authorize_requests),
            authorization_code_grants: get(&self.authorization_code_grants),
            refresh_token_grants: get(&self.refresh_token_grants),
            refresh_tokens_issued: get(&self.refresh_tokens_issued),
            rejected_code_verifiers: get(&self.rejected_code_verifiers),
            rejected_refresh_tokens: get(&self.rejected_refresh_tokens),
            reused_refresh_tokens: get(&self.reused_refresh_tokens),
            dataset_sas_requests: get(&self.dataset_sas_requests),
            storage_sas_requests: get(&self.storage_sas_requests),
            sas_refused: get(&self.sas_refused),
            sas_issued: get(&self.sas_issued),
            sas_revocations: get(&self.sas_revocations),
        }
    }
}

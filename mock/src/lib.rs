//! An embedded mock of DNV Veracity: the identity provider's token endpoint
//! and the Data Workbench gateway, on a real HTTP server on `127.0.0.1`.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use veracity_auth_mock::{Fault, MockVeracity, Times};
//!
//! let mock = MockVeracity::start().await?;
//! // Point the code under test at mock.token_url(), mock.api_url(),
//! // mock.client_id(), mock.client_secret(), mock.api_key() (and mock.resource() or,
//! // with mock.token_url_v2(), mock.scope()).
//! mock.fail_token_requests(Fault::status(503), Times::Once);
//! // ... exercise the client ...
//! assert_eq!(mock.stats().rejected_expired_token, 0);
//! # Ok(())
//! # }
//! ```
//!
//! What it serves (Veracity's published documents describe the real service):
//!
//! - **Token endpoint** at [`MockVeracity::token_url`] (Azure AD v1, form field `resource`,
//!   the form Veracity documents and `veracity_auth::ClientCredentials` uses by
//!   default) and [`MockVeracity::token_url_v2`] (v2.0, form field `scope`): the
//!   client-credentials grant with Azure AD's success bodies ([`TokenStyle`]) and error
//!   bodies (`invalid_request` AADSTS900144, `unsupported_grant_type` AADSTS70003,
//!   `unauthorized_client` AADSTS700016, `invalid_client` AADSTS7000215,
//!   `invalid_resource` AADSTS500011 for an unknown resource, `invalid_scope` AADSTS70011
//!   for a bad scope). Each endpoint takes only its own parameter with the documented value.
//!   Every request's `User-Agent` is recorded ([`RecordedRequest::user_agent`]).
//! - **Gateway** under [`MockVeracity::api_url`] (and `/api/v1`): the
//!   subscription-key check, then the bearer-token check, with Veracity's exact
//!   401 statuses, `WWW-Authenticate` challenges and bodies (a wrong key answered with
//!   the challenge, or with the JSON body alone as API Management may: [`InvalidKeyAnswer`]);
//!   then
//!   `GET /workspaces/{ws}`, `POST /workspaces/{ws}/datasets/query`,
//!   `POST /workspaces/{ws}/datasets/{ds}/query` (any body),
//!   `GET /workspaces/{ws}/ledger`, and the storage SAS endpoints below. For tests of
//!   streaming (not Veracity's API): `GET /workspaces/{ws}/pattern?bytes=N` streams `N`
//!   bytes whose byte `i` is `i mod 251`, and `PUT /workspaces/{ws}/pattern` reads its body as
//!   it streams in and answers `{"bytes": n, "intact": bool}` (whether it was that sequence).
//! - **Storage SAS** (see [Storage SAS](#storage-sas)): a dataset's read-only SAS, a File
//!   storage SAS, and revocation, signed like Azure for the storage emulator's dev account.
//! - **Sign-in** at [`MockVeracity::authorize_url`]: an auto-consenting authorize endpoint
//!   that redirects to a loopback `redirect_uri` with a code and the `state`, and the
//!   `authorization_code` (PKCE `S256` checked) and `refresh_token` grants on the token
//!   endpoint of the B2C policy ([`MockVeracity::user_token_url`], or the v2 URL with
//!   `?p=B2C_1A_SignInWithADFSIdp`; refused on the policy-less endpoint), with refresh-token
//!   rotation and revocation ([`MockVeracity::revoke_refresh_tokens`]), counting a refresh
//!   token presented again after it was rotated away ([`MockStats::reused_refresh_tokens`]).
//!   It accepts the two scopes Veracity documents for people ([`MockVeracity::user_scope`],
//!   [`MockVeracity::services_user_scope`]), answers with every field a string, and refuses
//!   with the codes of the B2C error-code reference (unknown client `AADB2C90018`,
//!   unsupported `response_type` `AADB2C90013`, PKCE verifier mismatch `AADB2C90182`, a scope
//!   naming no permission `AADB2C90055`).
//! - **Faults** ([`Fault`], [`Times`]) queued per endpoint, **counters**
//!   ([`MockStats`]) and optionally a **request log** ([`RecordedRequest`]).
//!
//! Request bodies are read completely (up to 4 MiB, beyond that `413`) before
//! anything is answered, except the pattern upload's, which has no limit, is checked after
//! the key and token, and gets no injected fault. Gateway requests pass the key and token checks before
//! routing, so an unknown gateway path answers `404` only with valid
//! credentials. Paths outside both endpoints get an empty `404`.
//! Token expiry uses `tokio::time::Instant`, so tests with paused time can
//! expire tokens with `tokio::time::advance`.

//!
//! # Independent of the client
//!
//! This crate does not depend on `veracity-auth` and shares none of its code: every URL
//! path, form field, status code, header and body it checks or sends is written here from
//! Veracity's and Microsoft's published documents. A test double that took its constants
//! or parsers from the client would agree with the client's mistakes and prove nothing.
//! Add it as a dev-dependency, as tower users add `tower-test`.
//!
//! # Storage SAS
//!
//! Data Workbench hands out Azure Storage service SAS; so does the mock, with real signatures
//! (HMAC-SHA256, service version `2022-11-02`) under the Azure Storage emulator's well-known
//! account `devstoreaccount1`, so a real blob server (Azurite) accepts them until their `se=`
//! and refuses them after. Paths are under the gateway (`{url}/veracity/dw/gateway`):
//!
//! | request | answer |
//! |---|---|
//! | `GET /api/v2/workspaces/{ws}/datasets/{id}/sas?durationInMinutes=N&type=dfs` | the SAS URI as a JSON string, read and list (`sp=rl`), for the dataset's folder |
//! | `GET /api/v1/workspaces/{ws}/datasets/{id}/sas?expiresOn=2024-12-14T23:59:59.000Z` | the same, until `expiresOn` |
//! | `POST /api/v2/workspaces/{ws}/storages/sas[?format=object]` with `{"path"?, "readOrWritePermission": "Read"\|"Write", "startsOn"?, "expiresOn", "storageName"?}` | the SAS URI as a JSON string; with `format=object`, `{"resourceUri", "sasToken"}`. `Read`: `sp=rl`; `Write`: `sp=racwdl` |
//! | `DELETE /api/v1/workspaces/{ws}/storages/sas/revoke[?policyToRevoke=name]` | `204`; replaces the named stored access policy, or all of them |
//!
//! Refusals (after the key and token checks): `400` `{"type":"BusinessError","message",…}`
//! for an `expiresOn` in the past or unreadable, a `startsOn` not before it, a missing or
//! non-positive `durationInMinutes`, a `readOrWritePermission` other than `Read`/`Write`;
//! `403` `{"type":"Forbidden",…}` for a dataset-scoped account
//! ([`MockBuilder::dataset_scoped_api_key`]) asking for File storage or revoking; `404`
//! `{"type":"NotFound",…}` for an unknown dataset, storage name or policy.
//!
//! - **Where SAS point.** By default at URLs shaped like Veracity's,
//!   `https://devstoreaccount1.dfs.core.windows.net/<container>/<path>?sv=…&se=…&sr=c&sp=rl&sig=…`,
//!   which nothing serves. With [`MockBuilder::storage_emulator`] (Azurite's
//!   `http://127.0.0.1:PORT`) they point at it, path-style:
//!   `http://127.0.0.1:PORT/devstoreaccount1/<container>/<path>?…`.
//! - **What they cover.** The workspace's File storage is the container
//!   [`MockVeracity::storage_container`] (the workspace id); [`MockVeracity::add_storage`]
//!   names more. Datasets are folders: the three the gateway lists live in that container under
//!   `datasets/<id>`, and [`MockVeracity::add_dataset`] adds others. Every SAS is signed for
//!   the whole container (`sr=c`): Azurite has no directory SAS (`sr=d`, which needs a
//!   hierarchical namespace), so unlike Veracity's, a dataset SAS from the mock also reads
//!   outside the dataset's folder. The resource URI still names the folder.
//! - **Lifetimes** are what was asked, cut to [`MockBuilder::max_sas_lifetime`], a test knob
//!   for SAS that live seconds. `se=` has whole seconds and is rounded down.
//! - **Revocation.** With [`MockBuilder::revocable_sas`], each SAS carries no `sp=` but
//!   `si=dw-read-<n>` or `si=dw-write-<n>`, a stored access policy of its container holding the
//!   permissions, which the mock writes to the emulator (SharedKey-signed
//!   `PUT ?restype=container&comp=acl`). Revoking replaces a policy by the next generation
//!   (`dw-read-<n+1>`), so the emulator refuses (`403`) every SAS bound to the old one. Azurite
//!   3.35 then takes start, expiry and permissions from the policy only and **ignores the
//!   SAS's own `se=`**, where Azure honours it: test expiry with revocable SAS off (the
//!   default), revocation with it on. Without an emulator, revoking only renames policies.
//! - **Seeding files.** [`MockVeracity::create_container`] and [`MockVeracity::upload_blob`]
//!   write to the emulator with the account key, so tests need no storage client of their own.
//! - **What was handed out.** [`MockStats`] counts SAS requests, refusals, issues and
//!   revocations; [`MockVeracity::issued_sas`] lists each SAS ([`IssuedSas`]: container, path,
//!   access, `se=`, policy) without its signature. A SAS is a secret: the mock never logs one.

#![warn(missing_docs)]
#![deny(unreachable_pub, unsafe_code)]

// Layers, each importing only those below it:
// leaves (what and where: paths and scopes, reply builders, ids, pkce, stats, SAS
// signing, the blob server client), registries (fault queues, issued tokens, signed-in users,
// workspace storage), the shared state, the handlers of each
// endpoint, the server, and this file with every `impl MockVeracity`.
mod blob_admin;
mod body;
mod ids;
mod paths;
mod pkce;
mod reply;
mod sas;
mod stats;

mod fault;
mod storage;
mod tokens;
mod users;

mod state;

mod authorize;
mod fault_reply;
mod gateway;
mod grants;
mod storage_sas;
mod token;

mod server;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use fault::{Fault, Times};
pub use reply::{InvalidKeyAnswer, TokenStyle};
pub use stats::{IssuedSas, MockStats, RecordedRequest, SasAccess, SasKind};

use blob_admin::BlobServer;
use paths::{API_PATH, AUTHORIZE_PATH, DATA_FABRIC_SCOPE, POLICY_TOKEN_PATH, SERVICES_SCOPE};
use paths::{TOKEN_PATH, TOKEN_PATH_V1};
use state::{FixedSettings, MockState};
use storage::{Location, StorageRegistry};

const DEFAULT_CLIENT_ID: &str = "mock-client-id";
const DEFAULT_CLIENT_SECRET: &str = "mock-client-secret";
const DEFAULT_API_KEY: &str = "mock-api-key";
const DEFAULT_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default";
const DEFAULT_RESOURCE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75";
const DEFAULT_WORKSPACE: &str = "00000000-0000-0000-0000-00000000c0de";
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A running mock Veracity server.
///
/// Dropping it stops the server and closes all its connections (requests held
/// by [`Fault::Hang`] included) as soon as the runtime runs the cancelled
/// tasks. It must be started inside a Tokio runtime.
pub struct MockVeracity {
    shared: Arc<MockState>,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Configures a [`MockVeracity`] before starting it.
///
/// Service accounts and API keys given here replace the defaults
/// (`mock-client-id` / `mock-client-secret`, `mock-api-key`); several can be
/// added, and one client id may have several valid secrets.
#[derive(Clone)]
pub struct MockBuilder {
    clients: Vec<(String, String)>,
    api_keys: Vec<String>,
    scope: String,
    resource: String,
    workspace_id: String,
    lifetime: Duration,
    style: TokenStyle,
    record: bool,
    invalid_key_answer: InvalidKeyAnswer,
    storage_emulator: Option<String>,
    revocable_sas: bool,
    max_sas_lifetime: Option<Duration>,
    dataset_scoped_keys: Vec<String>,
}

impl Default for MockBuilder {
    fn default() -> Self {
        MockBuilder {
            clients: Vec::new(),
            api_keys: Vec::new(),
            scope: DEFAULT_SCOPE.to_owned(),
            resource: DEFAULT_RESOURCE.to_owned(),
            workspace_id: DEFAULT_WORKSPACE.to_owned(),
            lifetime: DEFAULT_LIFETIME,
            style: TokenStyle::V2,
            record: false,
            invalid_key_answer: InvalidKeyAnswer::Challenge,
            storage_emulator: None,
            revocable_sas: false,
            max_sas_lifetime: None,
            dataset_scoped_keys: Vec::new(),
        }
    }
}

impl fmt::Debug for MockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.clients.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("MockBuilder")
            .field("clients", &ids)
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .field("scope", &self.scope)
            .field("resource", &self.resource)
            .field("workspace_id", &self.workspace_id)
            .field("token_lifetime", &self.lifetime)
            .field("token_style", &self.style)
            .field("record_requests", &self.record)
            .field("invalid_key_answer", &self.invalid_key_answer)
            .field("storage_emulator", &self.storage_emulator)
            .field("revocable_sas", &self.revocable_sas)
            .field("max_sas_lifetime", &self.max_sas_lifetime)
            .field(
                "dataset_scoped_api_keys",
                &format_args!("[{} redacted]", self.dataset_scoped_keys.len()),
            )
            .finish()
    }
}

impl MockBuilder {
    /// Adds an accepted service account (client id and secret).
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((id.into(), secret.into()));
        self
    }

    /// Adds an accepted subscription key (`Ocp-Apim-Subscription-Key`).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_keys.push(key.into());
        self
    }

    /// The only `scope` the v2 token endpoint accepts (default: Veracity's Services API
    /// `.default` scope, `83054ebf-…`, as Data Workbench service accounts use it).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = scope.into();
        self
    }

    /// The only `resource` the v1 token endpoint accepts (default: Veracity's Services API,
    /// `83054ebf-…`, as Data Workbench service accounts use it).
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = resource.into();
        self
    }

    /// The one workspace the gateway knows (default `00000000-0000-0000-0000-00000000c0de`).
    pub fn workspace_id(mut self, workspace_id: impl Into<String>) -> Self {
        self.workspace_id = workspace_id.into();
        self
    }

    /// Lifetime of issued tokens (default one hour).
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// Shape of responses from the v2 token URL (default [`TokenStyle::V2`]).
    pub fn token_style(mut self, style: TokenStyle) -> Self {
        self.style = style;
        self
    }

    /// Whether to keep a log of all requests, see [`MockVeracity::requests`] (default off).
    pub fn record_requests(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// How the gateway answers a wrong subscription key (default
    /// [`InvalidKeyAnswer::Challenge`]); a missing key always gets the challenge.
    pub fn invalid_key_answer(mut self, answer: InvalidKeyAnswer) -> Self {
        self.invalid_key_answer = answer;
        self
    }

    /// The blob server the SAS point at and the mock writes to: Azurite (or another server
    /// speaking the storage emulator's path-style URLs and dev account), as
    /// `http://127.0.0.1:PORT`. Default: none; SAS then point at Azure-shaped URLs nothing
    /// serves. [`start`](Self::start) fails with `InvalidInput` for anything but a plain-HTTP
    /// `host:port`.
    pub fn storage_emulator(mut self, url: impl Into<String>) -> Self {
        self.storage_emulator = Some(url.into());
        self
    }

    /// Whether SAS are bound to a stored access policy of their container (`si=`), so the
    /// revoke endpoint can revoke them (default off). Azurite 3.35 ignores the `se=` of a SAS
    /// bound to a policy: see [Storage SAS](crate#storage-sas).
    pub fn revocable_sas(mut self, on: bool) -> Self {
        self.revocable_sas = on;
        self
    }

    /// Test knob: no SAS lives longer than `cap`, whatever lifetime was asked
    /// (`durationInMinutes` counts minutes, tests need seconds). Default: no cap. Change it
    /// while running with [`MockVeracity::set_max_sas_lifetime`].
    pub fn max_sas_lifetime(mut self, cap: Duration) -> Self {
        self.max_sas_lifetime = Some(cap);
        self
    }

    /// Adds an accepted subscription key belonging to a dataset-scoped service account: it
    /// gets dataset SAS, but `403` from the File storage SAS and revoke endpoints.
    pub fn dataset_scoped_api_key(mut self, key: impl Into<String>) -> Self {
        self.dataset_scoped_keys.push(key.into());
        self
    }

    /// Binds `127.0.0.1:0` and starts serving. Must be called inside a Tokio runtime.
    pub async fn start(self) -> std::io::Result<MockVeracity> {
        let blob_server = match &self.storage_emulator {
            None => None,
            Some(url) => Some(BlobServer::parse(url).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("storage emulator URL {url:?} is not http://host:port"),
                )
            })?),
        };
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let mut clients = self.clients;
        if clients.is_empty() {
            clients.push((
                DEFAULT_CLIENT_ID.to_owned(),
                DEFAULT_CLIENT_SECRET.to_owned(),
            ));
        }
        let mut api_keys = self.api_keys;
        if api_keys.is_empty() {
            api_keys.push(DEFAULT_API_KEY.to_owned());
        }
        api_keys.extend(self.dataset_scoped_keys.iter().cloned());
        let container = self.workspace_id.to_ascii_lowercase();
        let storage = StorageRegistry::new(
            blob_server,
            self.revocable_sas,
            container.clone(),
            self.dataset_scoped_keys,
            self.max_sas_lifetime,
        );
        for i in 1..=3 {
            let id = gateway::dataset_id(i);
            let folder = format!("datasets/{id}");
            storage.add_dataset(
                &id,
                Location {
                    container: container.clone(),
                    folder,
                },
            );
        }
        let settings = FixedSettings {
            base_url: format!("http://{addr}"),
            clients,
            api_keys,
            scope: self.scope,
            resource: self.resource,
            workspace_id: self.workspace_id,
            record: self.record,
            invalid_key_answer: self.invalid_key_answer,
        };
        let shared = Arc::new(MockState::new(settings, self.lifetime, self.style, storage));
        let task = tokio::spawn(server::accept_loop(listener, shared.clone()));
        tracing::debug!(%addr, "veracity mock: listening");
        Ok(MockVeracity { shared, addr, task })
    }
}

impl MockVeracity {
    /// Starts a mock with the default configuration.
    pub async fn start() -> std::io::Result<MockVeracity> {
        MockVeracity::builder().start().await
    }

    /// A builder for a mock with custom configuration.
    pub fn builder() -> MockBuilder {
        MockBuilder::default()
    }

    /// The server's base URL, `http://127.0.0.1:PORT`: also its origin, the one to name where
    /// a client sends credentials only to the origins it is told (veracity-auth sends them to
    /// Veracity's alone by default: `.origins([mock.url()])`).
    pub fn url(&self) -> String {
        self.shared.settings.base_url.clone()
    }

    /// The server's socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token URL `veracity_auth::ClientCredentials` uses by default: Azure AD
    /// v1 (form field `resource`; responses always [`TokenStyle::V1`]). The same as
    /// [`token_url_v1`](Self::token_url_v1).
    pub fn token_url(&self) -> String {
        self.token_url_v1()
    }

    /// The Azure AD v1 token URL (form field `resource`; responses always [`TokenStyle::V1`]).
    pub fn token_url_v1(&self) -> String {
        format!("{}{}", self.shared.settings.base_url, TOKEN_PATH_V1)
    }

    /// The v2.0 token URL (form field `scope`; responses in the configured [`TokenStyle`]).
    pub fn token_url_v2(&self) -> String {
        format!("{}{}", self.shared.settings.base_url, TOKEN_PATH)
    }

    /// The Data Workbench gateway base URL, `{url}/veracity/dw/gateway/api/v2`.
    pub fn api_url(&self) -> String {
        format!("{}{}", self.shared.settings.base_url, API_PATH)
    }

    /// The first accepted client id.
    pub fn client_id(&self) -> &str {
        self.shared
            .settings
            .clients
            .first()
            .map_or("", |(id, _)| id)
    }

    /// The secret of the first accepted client.
    pub fn client_secret(&self) -> &str {
        self.shared.settings.clients.first().map_or("", |(_, s)| s)
    }

    /// The first accepted subscription key.
    pub fn api_key(&self) -> &str {
        self.shared.settings.api_keys.first().map_or("", |k| k)
    }

    /// The scope the v2 token endpoint accepts.
    pub fn scope(&self) -> &str {
        &self.shared.settings.scope
    }

    /// The resource the v1 token endpoint accepts.
    pub fn resource(&self) -> &str {
        &self.shared.settings.resource
    }

    /// The workspace the gateway knows.
    pub fn workspace_id(&self) -> &str {
        &self.shared.settings.workspace_id
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> MockStats {
        self.shared.counters.snapshot()
    }

    /// Revokes every token issued so far: the gateway answers them with
    /// `401 invalid_token` (counted as `rejected_revoked_token`). Tokens issued
    /// later are valid.
    pub fn revoke_all_tokens(&self) {
        self.shared.revoke_all();
    }

    /// While on, the gateway rejects every bearer token, even new ones
    /// (counted as `rejected_revoked_token`).
    pub fn reject_all_tokens(&self, on: bool) {
        self.shared.reject_all.store(on, Ordering::Relaxed);
    }

    /// Lifetime of tokens issued from now on.
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.live().lifetime = lifetime;
    }

    /// Shape of responses from the v2 token URL from now on.
    pub fn set_token_style(&self, style: TokenStyle) {
        self.shared.live().style = style;
    }

    /// Queues a fault for the next token request(s), on either token URL.
    pub fn fail_token_requests(&self, fault: Fault, times: Times) {
        self.shared.live().token_faults.push(fault, times);
    }

    /// Queues a fault for the next gateway request(s), applied before the key check.
    pub fn fail_api_requests(&self, fault: Fault, times: Times) {
        self.shared.live().api_faults.push(fault, times);
    }

    /// Removes all queued faults on both endpoints.
    pub fn clear_faults(&self) {
        let mut state = self.shared.live();
        state.token_faults.clear();
        state.api_faults.clear();
    }

    /// The requests received so far, oldest first; empty unless
    /// [`MockBuilder::record_requests`] was on.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.live().recorded.clone()
    }
}

// === impl MockVeracity: storage SAS ===

impl MockVeracity {
    /// The container of the workspace's default File storage (a request without
    /// `storageName`): the workspace id, lowercase.
    pub fn storage_container(&self) -> &str {
        &self.shared.storage.default_container
    }

    /// Adds a dataset to the workspace (or moves one), its files in `container` under the
    /// folder `folder` (no leading `/`; empty: the container root). Its SAS URI names that
    /// folder. The three datasets the gateway lists are already there, under `datasets/<id>`
    /// in [`storage_container`](Self::storage_container).
    pub fn add_dataset(&self, dataset_id: &str, container: &str, folder: &str) {
        let location = Location {
            container: container.to_owned(),
            folder: folder.trim_matches('/').to_owned(),
        };
        self.shared.storage.add_dataset(dataset_id, location);
    }

    /// Adds a File storage the SAS endpoint knows by `storageName`, kept in `container`.
    pub fn add_storage(&self, storage_name: &str, container: &str) {
        self.shared.storage.add_storage(storage_name, container);
    }

    /// The longest lifetime of SAS issued from now on (see [`MockBuilder::max_sas_lifetime`]);
    /// `None` removes the cap.
    pub fn set_max_sas_lifetime(&self, cap: Option<Duration>) {
        self.shared.storage.set_max_lifetime(cap);
    }

    /// Every SAS handed out so far, oldest first, without signatures.
    pub fn issued_sas(&self) -> Vec<IssuedSas> {
        self.shared.storage.issued()
    }

    /// Creates a container on the storage emulator (signed with the account key); an
    /// existing one is fine. Fails without [`MockBuilder::storage_emulator`].
    pub async fn create_container(&self, container: &str) -> std::io::Result<()> {
        self.blob_server()?
            .create_container(container)
            .await
            .map(drop)
    }

    /// Uploads `data` as the block blob `container/path` on the storage emulator (signed with
    /// the account key), replacing any blob there: how tests seed a dataset's files. Fails
    /// without [`MockBuilder::storage_emulator`], or when the container does not exist.
    pub async fn upload_blob(
        &self,
        container: &str,
        path: &str,
        data: impl Into<bytes::Bytes>,
    ) -> std::io::Result<()> {
        self.blob_server()?
            .put_blob(container, path.trim_start_matches('/'), data.into())
            .await
    }

    fn blob_server(&self) -> std::io::Result<&BlobServer> {
        self.shared.storage.blob_server.as_ref().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no storage emulator: see MockBuilder::storage_emulator",
            )
        })
    }
}

// === impl MockVeracity: sign-in ===

impl MockVeracity {
    /// The authorize URL (`…/b2c_1a_signinwithadfsidp/oauth2/v2.0/authorize`). It consents
    /// at once: a valid request is answered `302` to its loopback `redirect_uri` with a `code`
    /// and the `state`; PKCE (`code_challenge`, method `S256`) is required.
    pub fn authorize_url(&self) -> String {
        format!("{}{AUTHORIZE_PATH}", self.shared.settings.base_url)
    }

    /// The token endpoint of the sign-in policy
    /// (`…/b2c_1a_signinwithadfsidp/oauth2/v2.0/token`), where the code exchange and refreshes
    /// go. The policy-less [`token_url`](Self::token_url) takes them only with
    /// `?p=B2C_1A_SignInWithADFSIdp`; without it, user grants are refused (`invalid_request`).
    pub fn user_token_url(&self) -> String {
        format!("{}{POLICY_TOKEN_PATH}", self.shared.settings.base_url)
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
    /// answers late. (A [`Fault::Delay`] instead waits before
    /// processing, so a client that gives up spends nothing.)
    pub fn delay_user_grant_answers(&self, delay: Duration, times: usize) {
        self.shared.users.delay_answers(delay, times);
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

impl fmt::Debug for MockVeracity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockVeracity")
            .field("url", &self.shared.settings.base_url)
            .finish_non_exhaustive()
    }
}

impl Drop for MockVeracity {
    fn drop(&mut self) {
        self.task.abort();
    }
}

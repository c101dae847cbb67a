//! Tower middleware that authenticates every request to [DNV Veracity Data
//! Workbench](https://developer.veracity.com/docs/section/dataworkbench/dataworkbench): a
//! valid bearer token and the API key (`Ocp-Apim-Subscription-Key`) on each request.
//!
//! Add [`VeracityAuthLayer`] to any stack that sends `http::Request`s (a hyper-util client, a
//! tonic `Channel`, anything built with `tower::ServiceBuilder`). The layer gets tokens from a
//! [`TokenSource`] (a service account, [`ClientCredentials`]; a signed-in person,
//! [`RefreshToken`]; or your own), caches them, refreshes them ahead of expiry, and replays a
//! request once when the gateway rejects its token with a 401.
//!
//! # The layer in a stack
//!
//! ```no_run
//! # #[cfg(feature = "default-client")]
//! # async fn demo() -> Result<(), tower::BoxError> {
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use veracity_auth::{Authenticator, ClientCredentials, VeracityAuthLayer};
//!
//! // A Veracity service account (Azure AD v1 token URL and the Services API resource, as
//! // Veracity documents them for Data Workbench).
//! let auth = VeracityAuthLayer::new(Authenticator::builder(ClientCredentials::new("client-id", "client-secret")).api_key("api-key").build()?);
//! // Or: let auth = VeracityAuthLayer::from_env()?;
//!
//! // Name the crypto provider: an application that links two (reqwest 0.13 brings aws-lc-rs)
//! // and installs no process default makes rustls panic when asked to pick one.
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_provider_and_webpki_roots(veracity_auth::rustls::crypto::ring::default_provider())?
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);
//!
//! let api = ServiceBuilder::new()
//!     .timeout(Duration::from_secs(30))
//!     .layer(auth)
//!     .service(client);
//!
//! let request = http::Request::get(
//!     "https://api.veracity.com/veracity/dw/gateway/api/v2/workspaces/my-workspace-id",
//! )
//! .body(Full::default())?;
//! let response = api.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **One token request however many requests need one.** On a cold or expired cache, exactly
//!   one fetch runs; every waiting request shares its result, error included.
//! - **No expired token is ever sent.** A token is retired a safety margin (30 s, at most a
//!   tenth of its lifetime, but never less than 1 s for a token that lives 2 s or more) before
//!   it expires, by tokio's monotonic clock. Identity providers that issue JWTs round `exp` down
//!   to the whole second, so a token's last second is never trusted; `expires_in` is, and an
//!   absolute `exp`/`expires_on` is not (the machine's clock may be wrong).
//! - **No request waits in steady state.** A background refresh starts before expiry (5
//!   minutes, at most a quarter of the lifetime, jittered so replicas do not refresh in step)
//!   while requests keep using the valid token.
//! - **Failures never hurt more than they must.** A failed refresh keeps the valid token;
//!   failures back off exponentially with jitter and honour `Retry-After`; while no valid token
//!   exists, requests fail at once with the last error instead of each calling the identity
//!   provider, and a 401 during a backoff is returned without a token request. Permanent errors
//!   (`invalid_client`, `unauthorized_client`, `invalid_scope`) say so
//!   ([`Error::is_permanent`]) and wait the longest backoff before the next try.
//! - **Cancellation-safe, and no runtime holds another hostage.** Dropping any or all waiting
//!   requests neither cancels nor restarts a fetch. A source that fails or panics is a failed
//!   fetch: its waiters get an error naming what happened, and it backs off. A fetch whose
//!   runtime shut down, or went idle (a sync wrapper's `block_on` gave up on it), is not the
//!   source's failure: nothing backs off, and requests on live runtimes start it again on their
//!   own runtime, within `fetch_timeout` at most. A refresh timer or a refresh that dies with its
//!   runtime moves the refresh point to "now", so the next request on any live runtime refreshes
//!   in the background: no request waits for a token in steady state, whichever runtime dies. A
//!   runtime without tokio's time driver gets [`Error::NoTimeDriver`], and a [`StaticToken`]
//!   needs no runtime at all.
//! - **Any setting is safe.** `Duration::MAX` lifetimes and intervals saturate instead of
//!   overflowing; a NaN jitter means none; a negative jitter or a zero `fetch_timeout` or
//!   `default_lifetime` makes every request fail with [`Error::Config`] naming the setting.
//! - **Secrets stay secret.** The client secret, tokens, refresh tokens and the API key never
//!   appear in `Debug`, `Display`, errors or logs; the headers the layer adds are marked
//!   sensitive; a token with CR, LF or other control characters is refused; plain-HTTP token
//!   URLs only to loopback.
//! - **A rejected token is replaced and the request replayed once.** On a 401 with a bearer
//!   challenge (or none), or gRPC `UNAUTHENTICATED`, only the token that request carried is
//!   dropped (a newer one in the cache is used as is), a new one is fetched (single flight, at
//!   most one 401-caused fetch per 30 s), and the request is sent again, readying the inner
//!   service first. Never on 403, never more than once, never for a wrong API key when API
//!   Management says so in its `AzureApiManagementKey` challenge (returned as is, with a
//!   warning). A bare 401 is read by its head alone, as a token rejection; no body is read.
//!   If it was in fact API Management's body-only answer to a wrong key, it costs at most one
//!   token fetch per rejection interval (30 s) for the whole layer and at most one replay per
//!   request, and the caller gets the 401.
//! - **Credentials go only where they belong.** With
//!   [`origins`](AuthenticatorBuilder::origins) set, a request to any other origin (a redirect
//!   to another host, followed by tower-http's `FollowRedirect` outside the layer) carries
//!   neither the token nor the API key, and the layer's own credentials copied onto it are
//!   removed. Set them when the stack can follow redirects; for reqwest (feature
//!   `reqwest-middleware`), give the client `VeracityAuthMiddleware::redirect_policy()`.
//! - **Any body.** `Full`, `Empty`, `String`, `Bytes` and `()` replay as clones; boxed bodies,
//!   `tonic::body::Body` (feature `tonic`) and `axum::body::Body` (feature `axum`) are recorded
//!   as they are sent, up to 64 KiB; [`replay`] lists every body type, and what happens to a
//!   body the server answered before reading it to its end. Past the cap, for a body that
//!   failed, and for bodies that cannot be rebuilt, the 401 comes back as a response, not an
//!   error. The body type `B` you pass is the type your inner service gets. For a body type that
//!   cannot replay, [`VeracityAuthLayer::without_replay`] takes any `http_body::Body`: its 401s
//!   come back as they are. (One rustc limitation to know: `tokio::spawn` of a request future
//!   whose body error type is `Box<dyn Error + Send + Sync>`, as with `BoxBody<Bytes, BoxError>`
//!   or `Either` of boxed bodies, fails to compile with "implementation of `Service` is not
//!   general enough", even for a bare hyper-util client; give the body a concrete error type,
//!   such as `std::io::Error`, when you spawn.) The response type is the inner service's,
//!   with replay on or off: a test double answering `Response<()>` composes.
//!
//! # Errors
//!
//! The service's error is `tower::BoxError`. Errors from the layer itself downcast to [`Error`]
//! (as tower's `Timeout` and `Buffer` errors do); errors from the inner service pass through
//! untouched, and HTTP responses (401, 403, 429, ...) are responses, not errors.
//!
//! Every error's `Display` says what failed and why. A token request that could not be made
//! names the endpoint (scheme, host and path only: never credentials or a query string) and
//! the whole chain of causes:
//!
//! ```text
//! token request failed: POST https://login.microsoftonline.com/dnvglb2cprod.onmicrosoft.com/oauth2/token: client error (Connect): dns error: failed to lookup address information: Name or service not known
//! ```
//!
//! [`ErrorChain`]`(&err)` displays any error with its causes, e.g. one the inner service
//! returned; the examples print their errors with it. A token URL with credentials in it
//! (`https://user:password@host/...`) is refused: every fetch fails with
//! [`Error::InvalidTokenUrl`] and nothing is sent.
//!
//! ```
//! fn explain(err: &tower::BoxError) {
//!     if let Some(err) = err.downcast_ref::<veracity_auth::Error>() {
//!         if let Some(oauth) = err.oauth() {
//!             eprintln!("the identity provider said {} ({:?})", oauth.error, oauth.code());
//!         }
//!     }
//! }
//! ```
//!
//! # Token sources
//!
//! - [`ClientCredentials::new(id, secret)`](ClientCredentials::new): a service account, in the
//!   Azure AD v1 form Veracity documents by default (`resource`);
//!   [`scope`](ClientCredentials::scope) selects the v2.0 form,
//!   [`resource`](ClientCredentials::resource) the v1 form,
//!   [`token_url`](ClientCredentials::token_url) an endpoint of your choice, and
//!   [`http_client`](ClientCredentials::http_client) any tower service as the HTTP client
//!   (default: hyper-util + rustls with the `ring` provider and webpki roots).
//! - [`RefreshToken::new(client_id, refresh_token)`](RefreshToken::new): a signed-in person
//!   (the `refresh_token` grant); see [Signing in as a person](#signing-in-as-a-person).
//! - [`StaticToken::new("...")`](StaticToken::new), [`token_fn(|| async { ... })`](token_fn),
//!   or your own [`TokenSource`].
//!
//! Every token request sends `User-Agent: veracity-auth/<version>`.
//!
//! # The credential core
//!
//! The layer is a thin tower adapter over an [`Authenticator`], the one value that owns a token
//! source, its cache, the API key and the counters. Build one and hand it to a layer
//! ([`VeracityAuthLayer::from`]), to `VeracityAuthMiddleware` (feature `reqwest-middleware`),
//! and to code of your own that is not tower: they share one cache, one single flight and one
//! set of counters. Its docs show a hand-written client: [`Authenticator::authorize`] (the
//! synchronous hot path), [`Authenticator::headers`] (waits for the single flight) and
//! [`Authenticator::rejected`] (what to do after a 401).
//!
//! # Settings
//!
//! The authenticator's settings live on [`AuthenticatorBuilder`] ([`try_build`](AuthenticatorBuilder::try_build)
//! refuses an unusable one). [`VeracityAuthLayer`] has the same methods as shorthands where
//! the layer is made: each gives the layer an authenticator of its own with that setting.
//!
//! | method | default | |
//! |---|---|---|
//! | [`api_key(key)`](AuthenticatorBuilder::api_key) | none | sent as `Ocp-Apim-Subscription-Key` |
//! | [`origins(list)`](AuthenticatorBuilder::origins) | any | the origins credentials go to; set them when redirects are followed |
//! | [`refresh_ahead(d)`](AuthenticatorBuilder::refresh_ahead) | 5 min | background refresh this long before expiry (at most a quarter of the token's life) |
//! | [`safety_margin(d)`](AuthenticatorBuilder::safety_margin) | 30 s | never send a token this close to expiry (at most a tenth of its life, at least 1 s for tokens of 2 s or more) |
//! | [`default_lifetime(d)`](AuthenticatorBuilder::default_lifetime) | 5 min | when a token response has no `expires_in` |
//! | [`jitter(f)`](AuthenticatorBuilder::jitter) | 0.2 | share of the refresh window and of each backoff that is randomised |
//! | [`backoff(initial, max)`](AuthenticatorBuilder::backoff) | 1 s, 60 s | after failed fetches; `Retry-After` honoured up to 5 min; permanent errors wait `max` |
//! | [`fetch_timeout(d)`](AuthenticatorBuilder::fetch_timeout) | 30 s | per token fetch |
//! | [`replay_refresh_interval(d)`](AuthenticatorBuilder::replay_refresh_interval) | 30 s | at most one 401-caused refresh per interval |
//!
//! On the layer only, the replay settings, which keep its authenticator:
//!
//! | method | default | |
//! |---|---|---|
//! | [`without_replay()`](VeracityAuthLayer::without_replay) | | a `VeracityAuthLayer<NoReplay>`: no replay and no 401-caused refresh, and any `http_body::Body` is accepted (no `ReplayableBody` needed); tokens are still refreshed before they expire |
//! | [`max_replay_body(n)`](VeracityAuthLayer::max_replay_body) | 64 KiB | most bytes of a streaming body buffered for a replay |
//!
//! On [`ClientCredentials`]: `token_url` (kept whatever `scope`/`resource` select), `scope`
//! (v2.0 form and URL) or `resource` (v1 form and URL, the default), `http_client` (any tower
//! service; [`HttpClient::https_with_roots`] for a private CA), `allow_http` (plain HTTP is
//! otherwise refused except to loopback), `max_response_size` (64 KiB).
//!
//! [`VeracityAuthLayer::from_env`] reads the service account from `VERACITY_*` variables; the
//! [`env`](mod@env) module lists them.
//!
//! [`VeracityAuthLayer::stats`] returns the counters ([`AuthStats`]): fetches, fetch failures,
//! requests that waited, fast failures while backing off, 401 refreshes, replays.
//!
//! # Proxies and private CAs
//!
//! The default token client goes through the proxy the environment names (`HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, as curl reads them), through a `CONNECT` tunnel; proxy
//! credentials never show in `Debug`, logs or errors, and a proxy that refuses or cannot be
//! reached gives an error naming it (`the proxy http://proxy.corp:3128 did not open a tunnel to
//! login.microsoftonline.com:443: ...`). `HttpClient::builder()` sets the proxy, the bypass list
//! or none in code; one client serves [`ClientCredentials`], [`RefreshToken`] and `SignIn`
//! alike. Behind a TLS-inspecting proxy, or for a token endpoint with a private CA, feature
//! `native-roots` adds the operating system's root certificates (`Roots`), and
//! [`HttpClient::https_with_roots`] trusts exactly the roots you give. `HttpClientBuilder`'s
//! docs have the rules.
//!
//! # Signing in as a person
//!
//! Command-line tools and desktop apps acting as a person use the authorization-code flow with
//! PKCE (feature `sign-in`): `SignIn` builds the authorize URL (Veracity's B2C policy
//! `B2C_1A_SignInWithADFSIdp`, `openid offline_access` plus the Data Workbench user scope
//! [`DEFAULT_USER_SCOPE`], PKCE `S256`, `state`, `nonce`), listens on `http://localhost:<port>/`
//! (both `127.0.0.1` and `[::1]`, since browsers resolve `localhost` either way) for the
//! redirect, answers stray requests (a favicon, a stale tab's `state`, a port scanner) `400` and
//! keeps waiting (a flood of idle connections or running out of file descriptors does not end it
//! either: the listener serves at most 16 connections, closes idle ones after 5 s or to make
//! room, and keeps accepting), exchanges the code at the token endpoint of the same policy
//! ([`DEFAULT_USER_TOKEN_URL`]) and returns the tokens. [`RefreshToken`] then keeps access
//! tokens fresh through the same layer and cache, follows the provider's rotation of the refresh
//! token and hands each new one to your [`on_rotate`](RefreshToken::on_rotate) hook; a refresh
//! token is never spent twice. When the refresh token is expired or revoked, requests fail with
//! [`Error::SignInRequired`] ([`Error::is_sign_in_required`]): sign in again.
//!
//! | setting | default | change with |
//! |---|---|---|
//! | client id | none: your app's, from Veracity's developer portal | `SignIn::new` |
//! | reply URL | `http://localhost:<any port>/`; register `http://localhost` in the developer portal | `redirect_port` (an exact registered port), `redirect_host(RedirectHost::Ipv4Loopback)` for `http://127.0.0.1` |
//! | scope | Data Fabric API `.../37c59c8d-.../user_impersonation` (Data Workbench) | `scope(SERVICES_API_USER_SCOPE)` for Veracity's Services API |
//! | client secret | none (a native app) | `client_secret`, for a web-type registration: sent with the code exchange and every refresh |
//!
//! A command-line tool asks for the browser once, not on every run:
//! `SignIn::restore_or_sign_in(store)` tries the refresh token kept in a `RefreshTokenStore`
//! (`FileStore`: a 0600 file, replaced atomically; `KeyringStore`, feature `keyring`: the
//! operating system's keychain; or your own) and signs in only when there is none or the
//! provider refused it, storing every rotation. Several processes of one tool can share a
//! `FileStore`: refreshes take turns under an advisory lock file beside the token file, re-read
//! the store first, and after an `invalid_grant` retry once with a newer stored token, so no
//! refresh token is spent twice and no process loses its sign-in. With feature `open-browser` the authorize URL
//! opens in the default browser (and is printed too); without it, it is printed on standard
//! error, and
//! `SignIn::on_authorize_url` hands it to your own user interface instead.
//! [`RefreshToken::for_scope`] feeds a second API (Veracity's Services API,
//! [`SERVICES_API_USER_SCOPE`]) from the same sign-in: give the app both API permissions in
//! the developer portal and sign in once; each layer has its own access tokens and API key,
//! and the two sources share one refresh token (a second `SignIn` or [`RefreshToken::new`]
//! with the same stored token would spend it twice and be refused).
//!
//! For full control, the steps one by one:
//!
//! ```no_run
//! # #[cfg(feature = "sign-in")]
//! # async fn sign_in() -> Result<veracity_auth::VeracityAuthLayer, veracity_auth::Error> {
//! use veracity_auth::{Authenticator, SignIn, VeracityAuthLayer};
//!
//! let pending = SignIn::new("my-app-client-id").start().await?; // http://localhost:<port>/
//! println!("Open this URL in your browser to sign in:\n{}", pending.url());
//! let signed_in = pending.finish().await?;
//! let source = signed_in.into_refresh_token()?.on_rotate(|new_refresh_token| {
//!     // Store it, readable by the user alone (a RefreshTokenStore does).
//!     let _ = new_refresh_token;
//! });
//! Ok(VeracityAuthLayer::new(Authenticator::builder(source).api_key("api-key").build()?))
//! # }
//! ```
//!
//! `cargo run --example sign_in --features sign-in` signs in against the embedded mock (the
//! example plays the browser, stores the token under `target/sign_in_example/` and shows that a
//! second run does not sign in again); with `VERACITY_SIGN_IN_CLIENT_ID` set, against Veracity,
//! with the token in your configuration directory.
//!
//! ## Machines without a browser
//!
//! Azure AD B2C, which signs Veracity's users in, offers no device-code flow: a sign-in needs a
//! browser on a machine that can reach the redirect listener. On a headless machine (a server,
//! a CI job, a container):
//!
//! - use a **service account** ([`ClientCredentials`]: client id, secret and API key from the
//!   developer portal) when the tool acts for itself rather than for a person; or
//! - **copy a refresh token** from a machine where you signed in: take it from the store file
//!   (`FileStore::path(client_id)`) into a secret of the headless machine, and start from it:
//!
//! ```no_run
//! use veracity_auth::{Authenticator, RefreshToken, VeracityAuthLayer};
//!
//! let refresh_token = std::env::var("VERACITY_REFRESH_TOKEN").expect("a copied refresh token");
//! let source = RefreshToken::new("my-app-client-id", refresh_token);
//! let auth = VeracityAuthLayer::new(Authenticator::builder(source).api_key("api-key").build()?);
//! # Ok::<(), veracity_auth::Error>(())
//! ```
//!
//! The token rotates on its first refresh and the copy on the other machine stops working;
//! persist the rotations ([`on_rotate`](RefreshToken::on_rotate), or put it in a `FileStore`
//! directory there and use `restore_or_sign_in`, which signs in only if it is refused). When it
//! finally expires or is revoked, fetches fail with [`Error::SignInRequired`]: copy a new one.
//!
//! # reqwest
//!
//! With feature `reqwest-middleware`, `VeracityAuthMiddleware` puts both headers on every
//! request of a reqwest 0.13 client (through reqwest-middleware 0.5) and replays a request once
//! after a 401 that rejects its token, when `Request::try_clone` allows (a streaming body gets
//! its 401 back; the next request has the new token). This crate enables none of reqwest's TLS
//! features: your `reqwest` dependency picks them. Its default `rustls` links aws-lc-rs; to stay
//! on `ring`, use `default-features = false, features = ["rustls-no-provider"]` and either
//! install ring as the process default before building a client
//! (`rustls::crypto::ring::default_provider().install_default()`) or pass a ring
//! `rustls::ClientConfig` to `ClientBuilder::tls_backend_preconfigured`. Without either, reqwest
//! panics when it builds a client.
//!
//! # Reading data: storage SAS
//!
//! Data Workbench keeps datasets and File storage in Azure storage, reached with a SAS the
//! gateway hands out. [`StorageSas`] asks for one through an [`Authenticator`] and keeps it
//! with the token's guarantees: one SAS request however many callers ask at once; renewed in
//! the background ahead of its expiry, with jitter; a failed renewal keeps the valid SAS and
//! backs off; a SAS is never handed out within its safety margin of the earlier of what was
//! asked for and its `se=`; [`StorageSas::rejected`] replaces a refused one (at most once per
//! interval); the signature never reaches `Debug`, errors or logs.
//! [`current`](StorageSas::current) gives a [`Sas`]: the resource URI, the query pairs and
//! the expiry any storage client needs (lance, opendal, DuckDB, azcopy, polars).
//!
//! For object_store, one store source is built for each major an engine may use:
//! [`object_store_0_14`] (feature `object-store`; its types are also at the root) and
//! `object_store_0_13` (feature `object-store-013`: DataFusion 55, delta-rs 1.1). Either
//! `SasStore` is rooted at the SAS's folder, renews the SAS, and sends a request that
//! storage refuses for its SAS (a revoked policy) again with a new one, so a revocation fails
//! no operation. Its `url()` is unique to the folder, for DataFusion's
//! `register_object_store`; `container_store()` and `delta_table_url()` are what delta-rs's
//! `with_storage_backend` takes. [`Error::find_in`] reaches this crate's error from the
//! `object_store::Error` an operation returns.
//!
//! # Modules
//!
//! Public: [`replay`] (request bodies the layer can replay after a 401) and [`env`](mod@env)
//! (configuration from `VERACITY_*` variables). Every other public item is at the root.
//!
//! Inside, imports run one way (`tests/module_graph.rs` checks there is no cycle; the picture
//! is in `ARCHITECTURE.md`):
//!
//! | module | its one job |
//! |---|---|
//! | `headers`, `token`, `error`, `classify`, `origin`, `redact`, `runtime`, `head_pool` | leaves: header names and checks, [`Token`], [`Error`], which responses mean "token rejected", which origins credentials are for, redaction of credentials from any text, which tokio runtime the current thread offers, the per-thread pool of request-head copies for replays |
//! | `http_client` | the HTTP client token requests go through ([`HttpClient`]) |
//! | `source` | where tokens come from ([`TokenSource`], [`ClientCredentials`], [`RefreshToken`], [`StaticToken`], [`token_fn`]) |
//! | `sign_in` | signing in as a person, feature `sign-in` (`SignIn`, `PendingSignIn`, `SignedIn`) |
//! | `cache` | the token cache: the bearer token and its headers, over `cache::expiring`, a cache of any expiring credential (single flight, refresh ahead, backoff, invalidation by generation) |
//! | `authenticator` | the credential core: a source, its cache, the API key and the counters |
//! | `layer`, `service`, `future` | the tower adapter: [`VeracityAuthLayer`], [`VeracityAuth`], [`ResponseFuture`] (and [`NoReplayFuture`]) |
//! | `rejection` | the 401 decision, written once: hand the response on, wait for a newer token, or replay, by the response head alone; the tower future and the reqwest middleware ask it |
//! | [`replay`] | replayable request bodies |
//! | [`env`](mod@env), `stats` | configuration from the environment; the counters ([`AuthStats`]) |
//! | `sas` | a storage SAS that renews itself ([`StorageSas`]); `sas::blob`, what a store needs of Azure blob storage; `sas/store.rs`, the object_store adapter, built once per major |
//!
//! # Features
//!
//! - `default-client` (default): the HTTPS client for token requests (hyper-util,
//!   hyper-rustls, rustls with `ring`), honouring `HTTPS_PROXY`/`NO_PROXY`.
//! - `native-roots`: the default client also trusts the operating system's root certificates,
//!   or only those (`Roots`); honours `SSL_CERT_FILE` and `SSL_CERT_DIR`.
//! - `sign-in`: signing in as a person (`SignIn`: authorization code with PKCE, loopback
//!   redirect), `FileStore`, `SignIn::restore_or_sign_in`.
//! - `open-browser`: `SignIn::run` and `restore_or_sign_in` open the authorize URL in a browser
//!   (implies `sign-in`).
//! - `keyring`: `KeyringStore`, the refresh token in the operating system's keychain (implies
//!   `sign-in`).
//! - `tonic`: replay of `tonic::body::Body`, so the layer wraps a tonic `Channel` and generated
//!   clients.
//! - `axum`: replay of `axum::body::Body` request bodies (axum-core only).
//! - `reqwest-middleware`: `VeracityAuthMiddleware` for reqwest 0.13 through reqwest-middleware
//!   0.5, with no TLS stack of its own.
//! - `object-store`: `SasStore` and `SasCredentialProvider`, object_store 0.14's Azure store
//!   over a renewing [`StorageSas`] (object_store's `azure-base`, `reqwest` and `ring`: reqwest
//!   0.13 over rustls with `ring`, installed as the process default when none is; no
//!   aws-lc-rs).
//! - `object-store-013`: the same for object_store 0.13, at `object_store_0_13` (its `azure`
//!   feature: reqwest 0.12 over rustls with `ring` and the operating system's roots; no
//!   aws-lc-rs). Both features can be on at once.
//!
//! To test your own code, the mock of Veracity is its own crate, `veracity-auth-mock`: a
//! dev-dependency, as tower users add `tower-test`.
#![warn(missing_docs)]
#![deny(unreachable_pub, unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod cache;
mod classify;
#[cfg(feature = "default-client")]
mod client_builder;
pub mod env;
mod error;
mod future;
mod head_pool;
mod headers;
mod http_client;
mod layer;
mod origin;
#[cfg(feature = "default-client")]
mod proxy;
mod redact;
mod rejection;
pub mod replay;
#[cfg(feature = "reqwest-middleware")]
mod reqwest;
#[cfg(feature = "default-client")]
mod roots;
mod runtime;
mod sas;
mod service;
#[cfg(feature = "sign-in")]
mod sign_in;
mod source;
mod stats;
mod token;

#[cfg(feature = "reqwest-middleware")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest-middleware")))]
pub use crate::reqwest::VeracityAuthMiddleware;
pub use authenticator::{
    AfterRejection, AuthHeaders, Authenticator, AuthenticatorBuilder, Generation, HeadersFuture,
    VERACITY_ORIGIN,
};
pub use cache::CachePolicy;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::SignInError;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use error::StoreError;
pub use error::{BoxError, Error, ErrorChain, OAuthError};
pub use future::{NoReplayFuture, ResponseFuture};
pub use headers::API_KEY_HEADER;
pub use http_client::{HttpClient, TokenRequestBody};
pub use layer::VeracityAuthLayer;
#[cfg(feature = "object-store-013")]
pub use sas::object_store_0_13;
#[cfg(feature = "object-store")]
pub use sas::object_store_0_14;
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use sas::object_store_0_14::{SasCredentialProvider, SasStore};
pub use sas::{Sas, SasAccess, SasStats, StorageSas, StorageSasBuilder};
pub use service::VeracityAuth;
#[cfg(feature = "keyring")]
#[cfg_attr(docsrs, doc(cfg(feature = "keyring")))]
pub use sign_in::KeyringStore;
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
pub use sign_in::{
    DEFAULT_AUTHORIZE_URL, FileStore, PendingSignIn, RedirectHost, RefreshTokenStore, SignIn,
    SignedIn,
};
/// Public only for the fuzz target (fuzz/) and the parser's property tests: not an API.
#[cfg(feature = "__fuzzing")]
#[doc(hidden)]
pub use source::parse_token_response;
pub use source::{
    ClientCredentials, DEFAULT_RESOURCE, DEFAULT_SCOPE, DEFAULT_TOKEN_URL, StaticToken, TokenFn,
    TokenSource, V2_TOKEN_URL, token_fn,
};
pub use source::{
    DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, RefreshToken, SERVICES_API_USER_SCOPE,
};
pub use stats::AuthStats;
pub use token::Token;
#[cfg(feature = "default-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "default-client")))]
pub use {client_builder::HttpClientBuilder, roots::Roots};

/// The rustls version the HTTPS constructors of [`HttpClient`] take types from.
#[cfg(feature = "default-client")]
pub use rustls;

// The README's examples are compiled and run as doctests too, without being the crate docs.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

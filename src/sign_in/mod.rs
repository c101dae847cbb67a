//! Signing in as a person: the OAuth 2.0 authorization-code flow with PKCE (RFC 7636) and a
//! loopback redirect (RFC 8252), for command-line tools and desktop apps.
//!
//! [`SignIn`] (feature `sign-in`) builds the authorize URL (PKCE `S256`, `state`, `nonce`,
//! Veracity's B2C authorize URL and Data Workbench user scope by default, plus
//! `offline_access`), listens on `http://localhost:<port>/` (both `127.0.0.1` and `[::1]`)
//! for the redirect, answers stray requests `400` and keeps waiting, exchanges the code at the
//! token endpoint of the same B2C policy and returns the tokens as [`SignedIn`]. [`SignedIn::into_refresh_token`] turns them into a
//! [`RefreshToken`](crate::RefreshToken) source: the same layer, cache and guarantees as a
//! service account.
//!
//! The default user scope, [`DEFAULT_USER_SCOPE`](crate::DEFAULT_USER_SCOPE), is the Data
//! Fabric API's `37c59c8d-…/user_impersonation`: what veracity/node-auth (`src/constants.ts`)
//! and Veracity's Python SDK request for data access. Veracity's current pages name only the
//! Services API scope ([`SERVICES_API_USER_SCOPE`](crate::SERVICES_API_USER_SCOPE)) for people.
//!
//! ```no_run
//! # async fn demo() -> Result<(), veracity_auth::Error> {
//! use veracity_auth::{Authenticator, SignIn, VeracityAuthLayer};
//!
//! let pending = SignIn::new("my-app-client-id").start().await?;
//! println!("Open this URL in your browser to sign in:\n{}", pending.url());
//! let signed_in = pending.finish().await?;   // waits for the browser's redirect
//! let source = signed_in.into_refresh_token()?.on_rotate(|new_refresh_token| {
//!     // persist it for the next run
//!     # let _ = new_refresh_token;
//! });
//! let auth = VeracityAuthLayer::new(Authenticator::builder(source).api_key("api-key").build()?);
//! # Ok(()) }
//! ```
//!
//! Command-line tools keep the sign-in across runs with one call,
//! [`SignIn::restore_or_sign_in`]: it restores the refresh token kept in a
//! [`RefreshTokenStore`] ([`FileStore`], or the OS keychain with feature `keyring`) and signs
//! in only when there is none or the provider refused it, storing every rotation. Azure AD
//! B2C has no device-code flow: headless machines use a service account or a refresh token
//! copied from a machine with a browser (see the crate docs, "Machines without a browser").
//! [`RefreshToken::for_scope`](crate::RefreshToken::for_scope) feeds a second API (the
//! Services API) from the same sign-in.
//!
//! Register `http://localhost` (B2C accepts any port for it; or the exact URI with the port
//! set with [`SignIn::redirect_port`], or `http://127.0.0.1` with
//! [`RedirectHost::Ipv4Loopback`]) as a reply URL of your app in Veracity's developer portal.
//! [`SignIn::run`] prints the URL, or opens it in the default browser with feature
//! `open-browser`; [`SignIn::on_authorize_url`] hands it to your own code instead.

mod flow;
#[cfg(feature = "keyring")]
mod keyring;
mod pkce;
mod redirect;
mod store;

pub use flow::{DEFAULT_AUTHORIZE_URL, PendingSignIn, SignIn, SignedIn};
#[cfg(feature = "keyring")]
pub use keyring::KeyringStore;
pub use redirect::RedirectHost;
pub use store::{FileStore, RefreshTokenStore};

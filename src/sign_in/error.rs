//! Why an interactive sign-in failed.

use std::{sync::Arc, time::Duration};

/// Why a [`SignIn`](crate::SignIn) ended without tokens, before or around the code exchange.
/// (An exchange the token endpoint refuses, a wrong PKCE verifier for instance, is an
/// [`Error::OAuth`](crate::Error::OAuth) with `invalid_grant`.)
///
/// No variant carries a code, verifier, `state`, nonce or token; provider text is cleaned.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    /// The redirect's `state` is not the one this sign-in sent: a stale browser tab, or a
    /// response forged by someone else (cross-site request forgery). Nothing was exchanged.
    #[error(
        "the redirect's `state` does not match this sign-in (a stale browser tab or a forged response); nothing was exchanged, start the sign-in again"
    )]
    StateMismatch,
    /// The identity provider redirected back with an error instead of a code (the user
    /// cancelled, or the request was refused).
    #[error("the identity provider refused the sign-in: {error}{}",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Denied {
        /// The OAuth `error` (`access_denied`, `invalid_request`, ...).
        error: String,
        /// The provider's `error_description`, cleaned of control characters.
        description: Option<String>,
    },
    /// The ID token does not carry the `nonce` this sign-in sent (a replayed or mixed-up
    /// response).
    #[error("the ID token's nonce does not match this sign-in")]
    NonceMismatch,
    /// The token endpoint returned no refresh token: ask for the `offline_access` scope.
    #[error("the identity provider returned no refresh token; request the `offline_access` scope")]
    NoRefreshToken,
    /// The loopback redirect listener could not be set up or stopped accepting.
    #[error("the redirect listener on {addr} failed: {source}")]
    Listener {
        /// The address it was to listen on.
        addr: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// No sign-in response arrived in time.
    #[error("no sign-in response within {0:?}")]
    TimedOut(Duration),
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// The refresh-token store could not be read or written
    /// ([`SignIn::restore_or_sign_in`](crate::SignIn::restore_or_sign_in)).
    #[cfg(feature = "sign-in")]
    #[error("the refresh-token store failed: {0}")]
    Store(#[source] super::StoreError),
}

impl SignInError {
    /// `true` when trying the same sign-in again cannot help without a change (a refused
    /// sign-in, a missing `offline_access`); `false` for a stale tab, a timeout or a busy port.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            SignInError::Denied { .. } | SignInError::NoRefreshToken | SignInError::Random
        )
    }
}

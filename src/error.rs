//! The crate's typed errors, by concern: [`ConfigError`] for settings (returned by every
//! `build()`), [`Error`] for a fetch (shared by the requests that waited for it), with
//! [`SasError`] and `SignInError` inside it for the SAS and the interactive sign-in.
//! [`Error::kind`] tells which of configuration, temporary, refused or sign-in-required an
//! error is.
//!
//! The service's error type is [`tower::BoxError`](https://docs.rs/tower/latest/tower/type.BoxError.html);
//! errors the layer produces itself downcast to [`Error`], the same way tower's `Timeout`
//! and `Buffer` errors do. Errors coming from the inner service pass through untouched.
//!
//! No variant carries a secret: the client secret, tokens and the API key never reach a
//! message, and text taken from a provider's answer is cleaned of control characters.

use std::{fmt, sync::Arc, time::Duration};

use http::StatusCode;

/// A type-erased error, as tower uses it.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong while fetching or attaching credentials: a token fetch, a SAS, a
/// sign-in. Settings are checked before, by the builders ([`ConfigError`]).
///
/// `Error` is `Clone`: a failed fetch is shared by every request that waited for it.
/// [`kind`](Error::kind) says what it asks of the user, [`is_permanent`](Error::is_permanent)
/// whether retrying the same call can help.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token endpoint answered with an OAuth 2.0 error (`invalid_client`, ...).
    #[error("token endpoint rejected the request: {0}")]
    OAuth(Box<OAuthError>),
    /// The token endpoint answered with an HTTP error that is not an OAuth error body
    /// (a 5xx, a 429, a redirect, an HTML page).
    #[error("token endpoint answered HTTP {status}{}{}",
        retry_after.map(|d| format!(" (Retry-After {}s)", d.as_secs())).unwrap_or_default(),
        content_type.as_deref().map(|c| format!(" with a {c} body")).unwrap_or_default())]
    TokenEndpointStatus {
        /// The HTTP status.
        status: StatusCode,
        /// The `Retry-After` the endpoint asked for, if any.
        retry_after: Option<Duration>,
        /// The response's content type, if any (the body itself is never quoted).
        content_type: Option<String>,
    },
    /// The token endpoint answered 2xx, but not with a usable token response.
    #[error("invalid token response: {0}")]
    InvalidResponse(String),
    /// The token endpoint's answer exceeded the size cap.
    #[error("token response exceeds the {limit} byte limit")]
    ResponseTooLarge {
        /// The configured cap, in bytes.
        limit: usize,
    },
    /// The access token holds characters that are not allowed in an HTTP header value
    /// (CR, LF, other control characters, spaces or non-ASCII): sending it could inject headers.
    #[error("the access token contains characters not allowed in an HTTP header")]
    InvalidTokenCharacters,
    /// Fetching a token took longer than the configured timeout.
    #[error("token request timed out after {0:?}")]
    Timeout(Duration),
    /// The token request failed on the way: connection refused, DNS, TLS, reset. Its
    /// [`source`](std::error::Error::source) names the token endpoint (scheme, host and path),
    /// and that one's source is the cause.
    #[error("token request failed")]
    Transport(#[source] Arc<BoxError>),
    /// A user-supplied [`TokenSource`](crate::TokenSource) failed.
    #[error("token source failed")]
    Source(#[source] Arc<BoxError>),
    /// A setting that could only be checked when it was used: a token endpoint with no HTTP
    /// client (without the `default-client` feature), a token request that cannot be encoded,
    /// a sign-in's authorize URL or redirect path (`SignIn::start`), a
    /// storage client `SasStore` cannot build. Every other setting is
    /// checked by a `build()` and never gets here.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The task fetching a token ended without a result: its runtime shut down or idled, and
    /// the request's own runtime could not start it again. Not a failure of the token source:
    /// nothing is backed off.
    #[error("token fetch ended without a result")]
    FetchAborted,
    /// The token source panicked while fetching. The message is the panic's, with every
    /// credential replaced by `[redacted]` wherever it sits (the value of a sensitive key such
    /// as `client_secret=…` or `"refresh_token":"…"`, and anything shaped like a token or
    /// secret, inside JSON, `Some("…")` or a form body alike) and control characters removed.
    /// It counts as a failed fetch and is backed off like one.
    #[error("token source panicked: {0}")]
    FetchPanicked(String),
    /// The tokio runtime of the request has no time driver, which the cache needs for the
    /// fetch timeout and the refresh timer.
    #[error(
        "the tokio runtime has timers disabled: build it with `enable_time()` (or `enable_all()`)"
    )]
    NoTimeDriver,
    /// No tokio runtime is running, so no token can be fetched.
    #[error("no tokio runtime: veracity-auth fetches tokens on a tokio runtime")]
    NoRuntime,
    /// The identity provider no longer accepts the refresh token (`invalid_grant`: expired,
    /// revoked, or already rotated away; or `interaction_required`). Only signing in again
    /// helps. See [`Error::is_sign_in_required`].
    #[error("the refresh token is no longer accepted, sign in again: {0}")]
    SignInRequired(Box<OAuthError>),
    /// A refresh-token exchange sent the refresh token and got no answer by its deadline: it
    /// timed out or lost its connection, or its tokio runtime stopped running it (blocked, or
    /// idle after a `block_on` returned). One rule for all: the token may have reached the
    /// provider and been spent, so no fetch sends it again. Fetches fail with this error until
    /// a stalled exchange gets its answer after all (its runtime runs again) or, for a source
    /// from `SignIn::restore_or_sign_in`, the store holds a newer refresh token. Signing in
    /// again always helps.
    #[error(
        "a refresh-token exchange sent the refresh token and got no answer; the token is not \
         sent twice (the provider may have spent it): sign in again"
    )]
    RefreshStalled,
    /// Data Workbench refused a SAS request or answered it with something that is not a SAS.
    #[error(transparent)]
    Sas(#[from] SasError),
    /// The interactive sign-in (authorization code with PKCE) failed before a code could be
    /// exchanged. One rule for [`SignIn`](crate::SignIn): its methods return `Error`, with
    /// what went wrong in the sign-in itself here, a refused code exchange as
    /// [`Error::OAuth`], and an unusable authorize URL or redirect path as [`Error::Config`].
    #[cfg(feature = "sign-in")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
    #[error("sign-in failed: {0}")]
    SignIn(SignInError),
}

impl Error {
    /// The crate's error in `error` or in its chain of [`source`](std::error::Error::source)s:
    /// how to reach it from the `object_store::Error` a store operation returns, from a
    /// `tower::BoxError`, or from an `anyhow::Error` (`Error::find_in(&*error)`).
    ///
    /// ```
    /// use veracity_auth::Error;
    ///
    /// // What object_store's `Error::Generic { source, .. }` does: ours is its source.
    /// #[derive(Debug)]
    /// struct Wrapper(Error);
    /// impl std::fmt::Display for Wrapper {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    ///         f.write_str("the operation failed")
    ///     }
    /// }
    /// impl std::error::Error for Wrapper {
    ///     fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
    ///         Some(&self.0)
    ///     }
    /// }
    ///
    /// let failed: Box<dyn std::error::Error + Send + Sync> = Box::new(Wrapper(Error::FetchAborted));
    /// assert!(matches!(Error::find_in(&*failed), Some(Error::FetchAborted)));
    /// ```
    pub fn find_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(found) = error.downcast_ref::<Error>() {
                return Some(found);
            }
            next = error.source();
        }
        None
    }

    /// `true` when retrying the same call cannot help: wrong credentials, an unknown client, a
    /// wrong scope, a revoked grant, a refused SAS (400, 403, 404), or configuration mistakes.
    /// The cache still backs off on these; it never hammers the provider.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::OAuth(e) => e.is_permanent(),
            Error::Config(_)
            | Error::NoRuntime
            | Error::NoTimeDriver
            | Error::SignInRequired(_) => true,
            Error::Sas(e) => e.is_permanent(),
            #[cfg(feature = "sign-in")]
            Error::SignIn(e) => e.is_permanent(),
            _ => false,
        }
    }

    /// What the error asks of whoever runs the program, e.g. to map it to an exit code:
    /// fix the configuration, try again later, fix the credentials or permissions, or sign in
    /// again. See [`ErrorKind`] for which error is which.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) | Error::NoRuntime | Error::NoTimeDriver => ErrorKind::Config,
            Error::SignInRequired(_) | Error::RefreshStalled => ErrorKind::SignInRequired,
            Error::OAuth(e) if e.is_permanent() => ErrorKind::Refused,
            Error::Sas(e) if e.is_permanent() => ErrorKind::Refused,
            #[cfg(feature = "sign-in")]
            Error::SignIn(SignInError::NoRefreshToken) => ErrorKind::Config,
            #[cfg(feature = "sign-in")]
            Error::SignIn(e) if e.is_permanent() => ErrorKind::Refused,
            _ => ErrorKind::Temporary,
        }
    }

    /// How long the provider asked us to wait (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::OAuth(e) => e.retry_after,
            Error::TokenEndpointStatus { retry_after, .. }
            | Error::Sas(SasError::Refused { retry_after, .. }) => *retry_after,
            _ => None,
        }
    }

    /// The OAuth error body, when the token endpoint sent one.
    pub fn oauth(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth(e) | Error::SignInRequired(e) => Some(e),
            _ => None,
        }
    }

    /// `true` when the user must sign in again: the refresh token was rejected
    /// ([`Error::SignInRequired`]).
    ///
    /// ```
    /// fn explain(err: &veracity_auth::Error) {
    ///     if err.is_sign_in_required() {
    ///         eprintln!("your session has ended: please sign in again");
    ///     }
    /// }
    /// ```
    pub fn is_sign_in_required(&self) -> bool {
        matches!(self, Error::SignInRequired(_))
    }

    /// Wraps a token source's own error, unwrapping it if it already is an [`Error`].
    pub fn source_error(err: impl Into<BoxError>) -> Self {
        let err = err.into();
        match err.downcast::<Error>() {
            Ok(e) => *e,
            Err(other) => Error::Source(Arc::new(other)),
        }
    }

    pub(crate) fn transport(err: impl Into<BoxError>) -> Self {
        Error::Transport(Arc::new(err.into()))
    }

    /// A transport failure of a request to `endpoint` (already redacted to scheme, host and
    /// path).
    pub(crate) fn transport_to(endpoint: String, cause: Arc<BoxError>) -> Self {
        Error::Transport(Arc::new(Box::new(TransportError { endpoint, cause })))
    }
}

/// Where a token request went and why it failed. The cause stays reachable through
/// `source()`, for downcasting.
#[derive(Debug)]
struct TransportError {
    endpoint: String,
    cause: Arc<BoxError>,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "POST {}", self.endpoint)
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&**self.cause)
    }
}

/// What an [`Error`] asks of whoever runs the program ([`Error::kind`]): one answer per error,
/// e.g. for a command-line tool's exit code. A [`ConfigError`] (from a `build()`; downcast
/// it from a boxed or `anyhow` error) is always [`ErrorKind::Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A setting is wrong ([`ConfigError`], no tokio runtime or no timers, a sign-in without
    /// `offline_access`): fix the configuration. Every [`ConfigError`] is of this kind.
    Config,
    /// Retrying later may help: a network failure, a timeout, a 5xx or 429, an answer that
    /// could not be read, a sign-in that timed out or came from a stale tab.
    Temporary,
    /// The provider or Data Workbench said no and will keep saying it: wrong credentials
    /// ([`OAuthError::is_permanent`]), a SAS refused with 400, 403 or 404, a denied sign-in.
    Refused,
    /// Only signing in again helps: the refresh token is no longer accepted
    /// ([`Error::SignInRequired`]) or may have been spent ([`Error::RefreshStalled`]).
    SignInRequired,
}

/// A setting that cannot work, found before anything is sent: returned by every `build()`,
/// [`TokenEndpoint::new`](crate::TokenEndpoint::new), the `from_env` constructors and the
/// like. Of [`ErrorKind::Config`]. No variant carries a secret: URLs are shown without their
/// credentials and query, and the API key itself is never shown.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The API key holds characters that are not allowed in an HTTP header value.
    #[error("the API key contains characters not allowed in an HTTP header")]
    InvalidApiKey,
    /// A token URL is plain HTTP without
    /// [`TokenEndpoint::plain_http`](crate::TokenEndpoint::plain_http), or a SAS gateway or
    /// authorize URL is plain HTTP to a host that is not loopback.
    #[error(
        "refusing to send credentials over plain HTTP to {host}: use https (for a test server's \
         token endpoint, `TokenEndpoint::plain_http`)"
    )]
    InsecureUrl {
        /// The host the URL names.
        host: String,
    },
    /// The token URL cannot be used: not a valid absolute `https://` URL, or it carries
    /// credentials (`user:password@`).
    #[error("invalid token URL: {0}")]
    InvalidTokenUrl(String),
    /// A required environment variable is missing or empty.
    #[error("environment variable {0} is not set")]
    MissingEnv(&'static str),
    /// The environment variables are set but cannot be used (a half-done set-up, both
    /// `VERACITY_SCOPE` and `VERACITY_RESOURCE`, an unusable `VERACITY_TOKEN_URL`): the
    /// message names them.
    #[error("invalid configuration: {0}")]
    Env(String),
    /// An origin cannot be parsed, or the list is empty: the message names it.
    #[error("invalid configuration: {0}")]
    Origin(String),
    /// A [`CachePolicy`](crate::CachePolicy) the cache cannot work with: the message names
    /// the setting.
    #[error("invalid configuration: {0}")]
    CachePolicy(&'static str),
    /// The proxy URL is not a usable `http://` proxy URL (shown without its credentials).
    #[error("invalid configuration: {0}")]
    Proxy(String),
    /// A SAS setting cannot work: a zero lifetime, a gateway or request URL that is not a URL.
    #[error("invalid configuration: {0}")]
    Sas(String),
    /// A sign-in setting cannot work: the authorize URL or the redirect path.
    #[error("invalid configuration: {0}")]
    SignIn(String),
    /// No HTTP client (without the `default-client` feature), a storage client that cannot be
    /// built, or a token request that cannot be encoded.
    #[error("invalid configuration: {0}")]
    HttpClient(String),
}

/// Why Data Workbench gave no SAS ([`Error::Sas`]). Never contains the SAS.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SasError {
    /// Data Workbench refused a SAS request: 400 (an `expiresOn` in the past, a bad
    /// setting), 403 (the service account may not reach that storage, e.g. a dataset-scoped
    /// account asking for File storage), 404 (no such dataset or storage), ... `message` is
    /// the gateway's text, cleaned of anything shaped like a credential.
    #[error("Data Workbench refused the SAS request: HTTP {status}{}{}",
        if message.is_empty() { String::new() } else { format!(": {message}") },
        retry_after.map(|d| format!(" (Retry-After {}s)", d.as_secs())).unwrap_or_default())]
    Refused {
        /// The gateway's status code.
        status: StatusCode,
        /// What the gateway said, cleaned.
        message: String,
        /// The gateway's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Data Workbench answered a SAS request with something that is not a SAS (no resource
    /// URI, no signature, not JSON), or a dataset's folder holds no Delta table.
    #[error("invalid SAS response: {0}")]
    InvalidResponse(String),
}

impl SasError {
    /// `true` for a refusal that asking again cannot change: 400, 403 or 404.
    pub fn is_permanent(&self) -> bool {
        matches!(self, SasError::Refused { status, .. } if matches!(status.as_u16(), 400 | 403 | 404))
    }
}

/// An OAuth 2.0 error answer from the token endpoint (RFC 6749 §5.2, with the Azure AD and
/// B2C extensions Veracity's identity provider sends).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct OAuthError {
    /// The HTTP status it came with.
    pub status: StatusCode,
    /// The OAuth error code: `invalid_client`, `unauthorized_client`, `invalid_scope`, ...
    pub error: String,
    /// The provider's `error_description`, cleaned of control characters.
    pub description: Option<String>,
    /// Azure AD's numeric `error_codes` (7000215 for a wrong secret, ...).
    pub error_codes: Vec<u64>,
    /// The provider's `trace_id`, for a support request.
    pub trace_id: Option<String>,
    /// The provider's `correlation_id`, for a support request.
    pub correlation_id: Option<String>,
    /// The `Retry-After` that came with the answer, if any.
    pub retry_after: Option<Duration>,
    /// The token endpoint that answered (scheme, host and path only), when the error came
    /// from a token request this crate made.
    pub endpoint: Option<String>,
}

impl OAuthError {
    /// The Azure code of the error: `AADSTS7000215` from `error_codes` or the description's
    /// prefix, `AADB2C90081` from a B2C description.
    pub fn code(&self) -> Option<String> {
        let desc = self.description.as_deref().unwrap_or("");
        for prefix in ["AADB2C", "AADSTS"] {
            if let Some(rest) = desc.strip_prefix(prefix) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if !digits.is_empty() {
                    return Some(format!("{prefix}{digits}"));
                }
            }
        }
        self.error_codes.first().map(|c| format!("AADSTS{c}"))
    }

    /// `true` for errors that no retry can fix: `invalid_client`, `unauthorized_client`,
    /// `invalid_scope`, `invalid_grant`, `unsupported_grant_type`, and the B2C codes that
    /// mean the same under `invalid_request` (AADB2C90081: wrong secret; AADB2C90079: no
    /// secret; AADB2C90117: scope not supported).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.error.as_str(),
            "invalid_client"
                | "unauthorized_client"
                | "invalid_scope"
                | "invalid_grant"
                | "unsupported_grant_type"
        ) || matches!(
            self.code().as_deref(),
            Some("AADB2C90081" | "AADB2C90079" | "AADB2C90117")
        )
    }
}

/// `error (code): description [HTTP status from endpoint, trace_id …, correlation_id …]`; an
/// `invalid_client` error adds that service-account secrets expire two years after they are
/// created.
impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)?;
        match self.code() {
            Some(code) if !self.description.as_deref().unwrap_or("").starts_with(&code) => {
                write!(f, " ({code})")?
            }
            _ => {}
        }
        if let Some(desc) = &self.description {
            write!(f, ": {desc}")?;
        }
        write!(f, " [HTTP {}", self.status.as_u16())?;
        if let Some(endpoint) = &self.endpoint {
            write!(f, " from {endpoint}")?;
        }
        if let Some(t) = &self.trace_id {
            write!(f, ", trace_id {t}")?;
        }
        if let Some(c) = &self.correlation_id {
            write!(f, ", correlation_id {c}")?;
        }
        if let Some(r) = self.retry_after {
            write!(f, ", retry after {}s", r.as_secs())?;
        }
        f.write_str("]")?;
        if self.error == "invalid_client" {
            // The most likely cause that is not a typo, per Veracity's API management page.
            f.write_str(INVALID_CLIENT_HINT)?;
        }
        Ok(())
    }
}

/// Veracity's `apimanagement.md`: service-account secrets expire two years after creation,
/// with no warning, and are regenerated in the workspace's API management tab.
const INVALID_CLIENT_HINT: &str = "; note: Data Workbench service-account secrets expire two \
     years after they are created: regenerate the secret in the workspace's API management tab";

/// Why a [`SignIn`](crate::SignIn) ended without tokens, before or around the code exchange.
/// (An exchange the token endpoint refuses, a wrong PKCE verifier for instance, is an
/// [`Error::OAuth`] with `invalid_grant`.)
///
/// No variant carries a code, verifier, `state`, nonce or token; provider text is cleaned.
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
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
    /// The loopback redirect listener could not be set up.
    #[error("the redirect listener on {addr} failed")]
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
    #[error("the refresh-token store failed")]
    Store(#[source] StoreError),
}

#[cfg(feature = "sign-in")]
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

/// Why a [`RefreshTokenStore`](crate::RefreshTokenStore) could not load, save or delete a refresh token. It never
/// carries the token.
#[cfg(feature = "sign-in")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign-in")))]
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The platform has no configuration directory (no home directory): give one with
    /// [`FileStore::in_dir`](crate::FileStore::in_dir).
    #[error(
        "no configuration directory on this platform (no home directory); give the store a directory"
    )]
    NoConfigDir,
    /// The client id cannot name a stored token (empty, or longer than 128 bytes).
    #[error("the client id cannot name a stored refresh token (empty or longer than 128 bytes)")]
    InvalidClientId,
    /// A file operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create the directory`, ...).
        action: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The operating system's keychain failed (feature `keyring`): the message names the
    /// failure, never the token.
    #[error("the keychain failed: {0}")]
    Keyring(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth(error: &str, code: u64) -> OAuthError {
        OAuthError {
            status: StatusCode::UNAUTHORIZED,
            error: error.to_owned(),
            description: Some(format!(
                "AADSTS{code}: The provided client secret keys are expired."
            )),
            error_codes: vec![code],
            trace_id: Some("t1".into()),
            correlation_id: None,
            retry_after: None,
            endpoint: None,
        }
    }

    #[test]
    fn an_invalid_client_error_says_service_account_secrets_expire_two_years_after_creation() {
        let shown = Error::OAuth(Box::new(oauth("invalid_client", 7000222))).to_string();
        assert!(shown.contains("AADSTS7000222"), "{shown}");
        assert!(shown.contains("expire two years after"), "{shown}");
        assert!(shown.contains("API management"), "{shown}");
        for other in ["unauthorized_client", "invalid_scope", "invalid_grant"] {
            let shown = oauth(other, 700016).to_string();
            assert!(!shown.contains("two years"), "{shown}");
        }
    }

    #[test]
    fn each_error_answers_which_kind_it_is() {
        let refused = |status: u16| SasError::Refused {
            status: StatusCode::from_u16(status).unwrap(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(3)),
        };
        let cases = [
            (Error::from(ConfigError::InvalidApiKey), ErrorKind::Config),
            (Error::NoRuntime, ErrorKind::Config),
            (Error::Timeout(Duration::from_secs(1)), ErrorKind::Temporary),
            (Error::FetchAborted, ErrorKind::Temporary),
            (Error::Sas(refused(503)), ErrorKind::Temporary),
            (Error::Sas(refused(403)), ErrorKind::Refused),
            (
                Error::OAuth(Box::new(oauth("invalid_client", 7000222))),
                ErrorKind::Refused,
            ),
            (
                Error::OAuth(Box::new(oauth("temporarily_unavailable", 1))),
                ErrorKind::Temporary,
            ),
            (
                Error::SignInRequired(Box::new(oauth("invalid_grant", 1))),
                ErrorKind::SignInRequired,
            ),
            (Error::RefreshStalled, ErrorKind::SignInRequired),
        ];
        for (error, kind) in cases {
            assert_eq!(error.kind(), kind, "{error}");
            if matches!(kind, ErrorKind::Config | ErrorKind::Refused) {
                assert!(error.is_permanent(), "{error}");
            }
        }
        assert_eq!(
            Error::Sas(refused(503)).retry_after(),
            Some(Duration::from_secs(3))
        );
        // A wrapped error is shown once: its text, and no source repeating it.
        let wrapped = Error::from(ConfigError::InvalidApiKey);
        assert_eq!(wrapped.to_string(), ConfigError::InvalidApiKey.to_string());
        assert!(std::error::Error::source(&wrapped).is_none());
    }
}

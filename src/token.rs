//! Access tokens, and [`Secret`]: a credential string whose `Debug` never shows it.

use std::{fmt, time::Duration};

use bytes::Bytes;
use http::HeaderValue;

use crate::{
    Error,
    headers::{is_visible_ascii, sensitive_header},
    redact::REDACTED,
};

/// An access token as a [`TokenSource`](crate::TokenSource) returns it: the token and how long
/// it lives, counted from the moment the fetch started.
///
/// `Debug` never shows the token.
///
/// ```
/// use std::time::Duration;
/// use veracity_auth::Token;
///
/// let token = Token::new("eyJ0eXAi...", Some(Duration::from_secs(3599)));
/// assert_eq!(token.expires_in(), Some(Duration::from_secs(3599)));
/// assert!(!format!("{token:?}").contains("eyJ0eXAi"));
/// ```
#[derive(Clone)]
pub struct Token {
    access_token: Secret,
    expires_in: Option<Duration>,
}

impl Token {
    /// A token that lives `expires_in` (`None`: unknown, the cache assumes its configured
    /// default lifetime and relies on 401 handling).
    pub fn new(access_token: impl Into<String>, expires_in: Option<Duration>) -> Self {
        Token {
            access_token: Secret::new(access_token),
            expires_in,
        }
    }

    /// The token itself. Handle with care: it is a credential.
    pub fn access_token(&self) -> &str {
        self.access_token.expose()
    }

    /// How long the token lives, if the provider said.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// `Bearer <token>` as a sensitive header value, built once per token.
    ///
    /// Only visible ASCII is accepted (RFC 6750's `b64token` and then some): CR, LF, other
    /// control characters, spaces and non-ASCII bytes are refused, so a token can never
    /// inject a header.
    pub(crate) fn bearer_header(&self) -> Result<HeaderValue, Error> {
        let token = self.access_token.expose().as_bytes();
        if !is_visible_ascii(token) {
            return Err(Error::InvalidTokenCharacters);
        }
        let mut value = Vec::with_capacity(7 + token.len());
        value.extend_from_slice(b"Bearer ");
        value.extend_from_slice(token);
        sensitive_header(Bytes::from(value)).ok_or(Error::InvalidTokenCharacters)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &self.access_token)
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// A string that is a credential: `Debug` prints `[redacted]`, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_injection_is_refused() {
        for bad in [
            "a\r\nX-Evil: 1",
            "a\nb",
            "a\rb",
            "tab\there",
            "nul\0",
            "sp ace",
            "",
            "é",
        ] {
            let err = Token::new(bad, None).bearer_header().unwrap_err();
            assert!(matches!(err, Error::InvalidTokenCharacters), "{bad:?}");
        }
    }

    #[test]
    fn bearer_header_is_sensitive_and_exact() {
        let h = Token::new("abc.DEF-_~+/=", None).bearer_header().unwrap();
        assert_eq!(h, "Bearer abc.DEF-_~+/=");
        assert!(h.is_sensitive());
        assert!(!format!("{h:?}").contains("abc"));
    }

    #[test]
    fn debug_redacts() {
        let t = Token::new("s3cr3t-token", Some(Duration::from_secs(5)));
        let s = format!("{t:?}");
        assert!(!s.contains("s3cr3t"), "{s}");
        assert!(s.contains("redacted"));
    }
}

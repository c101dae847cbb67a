//! The two headers the crate adds, and the checks that keep their values safe: a leaf
//! module, imported by the token, the cache and the service alike.

use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};

/// `Ocp-Apim-Subscription-Key`, the Azure API Management header Veracity's gateway checks.
pub const API_KEY_HEADER: HeaderName = HeaderName::from_static("ocp-apim-subscription-key");

/// Visible ASCII only (0x21 to 0x7e), and not empty: no CR, LF, other control characters,
/// spaces or non-ASCII bytes, so a credential can never inject a header or be mangled.
pub(crate) fn is_visible_ascii(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A sensitive header value whose clones share one buffer: cloning it per request is a
/// reference-count increment, never an allocation.
pub(crate) fn sensitive_header(bytes: Bytes) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_maybe_shared(bytes).ok()?;
    value.set_sensitive(true);
    // The first clone of a `Vec`-backed `Bytes` promotes it to a shared buffer (one
    // allocation); do it here, once, rather than on the first request.
    drop(value.clone());
    Some(value)
}

/// The API key as a prepared, sensitive header value.
#[derive(Clone, Default)]
pub(crate) enum ApiKey {
    #[default]
    None,
    Valid(HeaderValue),
    /// Not a valid header value (CR, LF, ...): every request fails with
    /// [`ConfigError::InvalidApiKey`](crate::ConfigError::InvalidApiKey).
    Invalid,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApiKey::None => "None",
            ApiKey::Valid(_) => "[redacted]",
            ApiKey::Invalid => "Invalid",
        })
    }
}

impl ApiKey {
    pub(crate) fn new(key: String) -> ApiKey {
        let valid = is_visible_ascii(key.as_bytes());
        match valid.then(|| sensitive_header(Bytes::from(key))).flatten() {
            Some(value) => ApiKey::Valid(value),
            None => ApiKey::Invalid,
        }
    }

    /// The value to send, if there is a valid one.
    pub(crate) fn value(&self) -> Option<&HeaderValue> {
        match self {
            ApiKey::Valid(value) => Some(value),
            ApiKey::None | ApiKey::Invalid => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_ascii_is_accepted() {
        assert!(is_visible_ascii(b"eyJ0eXAi.abc-_~+/="));
        for bad in [
            &b""[..],
            b"a b",
            b"a\r\nX-Injected: 1",
            b"a\x00",
            b"caf\xc3\xa9",
            b"a\x7f",
        ] {
            assert!(!is_visible_ascii(bad), "{bad:?}");
        }
    }

    #[test]
    fn sensitive_values_are_marked_so() {
        let value = sensitive_header(Bytes::from_static(b"Bearer abc")).unwrap();
        assert!(value.is_sensitive());
        assert!(sensitive_header(Bytes::from_static(b"a\nb")).is_none());
    }
}

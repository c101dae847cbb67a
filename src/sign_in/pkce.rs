//! PKCE (RFC 7636, method `S256`), base64url without padding, and random strings from the
//! operating system. SHA-256 and randomness come from `ring`, which the default HTTPS client
//! already links; base64 from the `base64` crate, which the default client's proxy support
//! (hyper-util) already builds.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use ring::digest;

/// base64url without padding (RFC 4648 §5).
pub(crate) fn base64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url with or without padding; `None` for anything else.
pub(crate) fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD_INDIFFERENT.decode(s).ok()
}

/// The `S256` code challenge of a verifier: base64url(SHA-256(verifier)).
pub(crate) fn challenge(verifier: &str) -> String {
    base64url(digest::digest(&digest::SHA256, verifier.as_bytes()).as_ref())
}

/// 43 to 128 characters from RFC 3986's unreserved set, as RFC 7636 §4.1 requires.
#[cfg(test)]
pub(crate) fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// `bytes` random bytes from the operating system, base64url-encoded (32 bytes give the
/// 43 characters of a minimal PKCE verifier, 256 bits of entropy).
#[cfg(feature = "sign-in")]
pub(crate) fn random(bytes: usize) -> Result<String, crate::Error> {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| crate::Error::SignIn(crate::SignInError::Random))?;
    Ok(base64url(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn base64url_matches_rfc_4648_vectors_without_padding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(plain.as_bytes()), encoded);
        }
        assert_eq!(base64url(&[0xfb, 0xff, 0xbf]), "-_-_");
    }

    #[cfg(feature = "sign-in")]
    #[test]
    fn decoding_round_trips_and_refuses_garbage() {
        for len in 0..70 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let encoded = base64url(&bytes);
            assert_eq!(base64url_decode(&encoded).as_deref(), Some(&bytes[..]));
        }
        assert_eq!(base64url_decode("Zm9vYg==").as_deref(), Some(&b"foob"[..]));
        for bad in ["Z", "Zm9v+", "Zm/v", "é", "Zm 9v"] {
            assert_eq!(base64url_decode(bad), None, "{bad}");
        }
    }

    #[cfg(feature = "sign-in")]
    #[test]
    fn random_verifiers_are_valid_and_differ() {
        let a = random(32).unwrap();
        let b = random(32).unwrap();
        assert_eq!(a.len(), 43);
        assert!(is_valid_verifier(&a) && is_valid_verifier(&b));
        assert_ne!(a, b);
    }

    #[test]
    fn verifier_rules() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(42))));
        assert!(is_valid_verifier(&format!("{}-._~", "a".repeat(40))));
    }
}

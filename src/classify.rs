//! Which responses mean "this token was rejected, get a new one and replay".
//!
//! - HTTP 401 with a `Bearer` challenge, or with no challenge at all: yes.
//! - HTTP 401 with Azure API Management's `AzureApiManagementKey` challenge: no. The API
//!   key is wrong, and no token can fix that.
//! - gRPC `UNAUTHENTICATED` (`grpc-status: 16` in the response headers, as a trailers-only
//!   response carries it): yes.
//! - Anything else, 403 included: no.

use http::{HeaderMap, HeaderName, StatusCode, header::WWW_AUTHENTICATE};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a response says about the credentials it was sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Not a rejection of the credentials.
    None,
    /// The bearer token was rejected: refresh it and replay.
    Token,
    /// The API key was rejected: return the response as it is.
    ApiKey,
}

/// Classifies a response by its status and headers alone (never its body).
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap) -> Rejection {
    if status == StatusCode::UNAUTHORIZED {
        let mut challenges = headers.get_all(WWW_AUTHENTICATE).iter().peekable();
        if challenges.peek().is_none() {
            return Rejection::Token;
        }
        let mut bearer = false;
        for challenge in challenges {
            let scheme = challenge
                .as_bytes()
                .split(|b| *b == b' ' || *b == b',')
                .next()
                .unwrap_or_default();
            if scheme.eq_ignore_ascii_case(b"AzureApiManagementKey") {
                return Rejection::ApiKey;
            }
            bearer |= scheme.eq_ignore_ascii_case(b"Bearer");
        }
        return if bearer {
            Rejection::Token
        } else {
            Rejection::None
        };
    }
    // A trailers-only gRPC answer is HTTP 200; look for its status only then.
    if status == StatusCode::OK
        && headers
            .get(GRPC_STATUS)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"16")
    {
        return Rejection::Token;
    }
    Rejection::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_and_bare_401s_are_token_rejections() {
        let cases = [
            headers(&[]),
            headers(&[("www-authenticate", r#"Bearer error="invalid_token""#)]),
            headers(&[("www-authenticate", "bearer")]),
            headers(&[
                ("www-authenticate", r#"Basic realm="x""#),
                ("www-authenticate", "Bearer"),
            ]),
        ];
        for h in cases {
            assert_eq!(
                classify(StatusCode::UNAUTHORIZED, &h),
                Rejection::Token,
                "{h:?}"
            );
        }
    }

    #[test]
    fn the_api_key_challenge_is_not_a_token_problem() {
        let h = headers(&[(
            "www-authenticate",
            r#"AzureApiManagementKey realm="https://api.veracity.com/",name="Ocp-Apim-Subscription-Key",type="header""#,
        )]);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &h), Rejection::ApiKey);
    }

    #[test]
    fn other_schemes_403_and_grpc_codes() {
        let basic = headers(&[("www-authenticate", r#"Basic realm="x""#)]);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &basic), Rejection::None);
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &headers(&[])),
            Rejection::None
        );
        let unauthenticated = headers(&[("grpc-status", "16")]);
        assert_eq!(classify(StatusCode::OK, &unauthenticated), Rejection::Token);
        let denied = headers(&[("grpc-status", "7")]);
        assert_eq!(classify(StatusCode::OK, &denied), Rejection::None);
    }
}

//! Which responses mean "this token was rejected, get a new one and replay".
//!
//! - HTTP 401 with a `Bearer` challenge: yes.
//! - HTTP 401 with Azure API Management's `AzureApiManagementKey` challenge: no. The API
//!   key is wrong, and no token can fix that. This holds even when a `Bearer` challenge is
//!   offered too: a new token cannot make the gateway accept the key, so a replay would only
//!   spend a token fetch and get the same 401.
//! - HTTP 401 with no challenge at all: yes. No body is read: the response goes on as it
//!   came. API Management may answer an *invalid* key this way (with a JSON body saying so);
//!   what that costs is bounded all the same: at most one token fetch per rejection interval
//!   for the whole layer, and at most one replay per request.
//! - gRPC `UNAUTHENTICATED` (`grpc-status: 16` in the response headers, as a trailers-only
//!   response carries it): yes.
//! - Anything else, 403 included: no.
//!
//! Every challenge of every `WWW-Authenticate` field is read (RFC 9110 §11.6.1): one field
//! may hold several, as in `Basic realm="api", Bearer error="invalid_token"`.

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

/// Classifies a response by its status and headers.
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap) -> Rejection {
    if status == StatusCode::UNAUTHORIZED {
        let mut fields = headers.get_all(WWW_AUTHENTICATE).iter().peekable();
        if fields.peek().is_none() {
            return Rejection::Token;
        }
        let mut bearer = false;
        for field in fields {
            for scheme in Challenges::new(field.as_bytes()) {
                if scheme.eq_ignore_ascii_case(b"AzureApiManagementKey") {
                    return Rejection::ApiKey;
                }
                bearer |= scheme.eq_ignore_ascii_case(b"Bearer");
            }
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

/// The auth-schemes of the challenges in one `WWW-Authenticate` field value.
///
/// ```text
/// WWW-Authenticate = #challenge
/// challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
/// auth-param       = token BWS "=" BWS ( token / quoted-string )
/// ```
///
/// The list is split at commas outside quoted strings (which may hold commas and `\"`).
/// An element that starts with a token not followed by `=` starts a challenge: that token
/// is its scheme. An element whose token is followed by `=` is a parameter of the current
/// challenge. Anything malformed is skipped up to the next comma; nothing panics.
struct Challenges<'a> {
    value: &'a [u8],
    at: usize,
}

impl<'a> Challenges<'a> {
    fn new(value: &'a [u8]) -> Self {
        Self { value, at: 0 }
    }

    fn skip_whitespace(&mut self) {
        while self
            .value
            .get(self.at)
            .is_some_and(|b| *b == b' ' || *b == b'\t')
        {
            self.at += 1;
        }
    }

    /// Moves past the next comma that is not inside a quoted string (or to the end).
    fn skip_element(&mut self) {
        let mut quoted = false;
        while let Some(&b) = self.value.get(self.at) {
            self.at += 1;
            match b {
                b'\\' if quoted => self.at += 1,
                b'"' => quoted = !quoted,
                b',' if !quoted => return,
                _ => {}
            }
        }
    }
}

impl<'a> Iterator for Challenges<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        while self.at < self.value.len() {
            self.skip_whitespace();
            let start = self.at;
            while self.value.get(self.at).copied().is_some_and(is_tchar) {
                self.at += 1;
            }
            let token = &self.value[start..self.at];
            self.skip_whitespace();
            let param = self.value.get(self.at) == Some(&b'=');
            self.skip_element();
            if !token.is_empty() && !param {
                return Some(token);
            }
        }
        None
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    fn challenge(value: &'static str) -> Rejection {
        classify(
            StatusCode::UNAUTHORIZED,
            &headers(&[("www-authenticate", value)]),
        )
    }

    fn schemes(value: &str) -> Vec<String> {
        Challenges::new(value.as_bytes())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn bearer_401s_are_token_rejections() {
        let cases = [
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
    fn a_bare_401_is_a_token_rejection_whatever_its_body() {
        assert_eq!(
            classify(StatusCode::UNAUTHORIZED, &headers(&[])),
            Rejection::Token
        );
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &json), Rejection::Token);
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

    #[test]
    fn a_bearer_challenge_after_another_in_the_same_field_is_read() {
        assert_eq!(
            challenge(r#"Basic realm="api", Bearer error="invalid_token""#),
            Rejection::Token
        );
        assert_eq!(
            challenge(r#"Basic realm="api", charset="UTF-8", Bearer"#),
            Rejection::Token
        );
        assert_eq!(
            challenge(r#"Negotiate abc+/==, Bearer realm="x", error="invalid_token""#),
            Rejection::Token
        );
    }

    #[test]
    fn the_api_key_challenge_wins_over_a_bearer_challenge() {
        assert_eq!(
            challenge(r#"Bearer error="invalid_token", AzureApiManagementKey realm="x""#),
            Rejection::ApiKey
        );
        let h = headers(&[
            ("www-authenticate", "Bearer"),
            (
                "www-authenticate",
                r#"Basic realm="a", azureapimanagementkey"#,
            ),
        ]);
        assert_eq!(classify(StatusCode::UNAUTHORIZED, &h), Rejection::ApiKey);
    }

    #[test]
    fn parameters_and_quoted_strings_are_not_schemes() {
        // A parameter named like a scheme, with spaces around `=`.
        assert_eq!(challenge(r#"Basic Bearer = "x""#), Rejection::None);
        assert_eq!(challenge(r#"Basic realm="x", Bearer=1"#), Rejection::None);
        // Commas and escaped quotes inside a quoted string.
        assert_eq!(
            challenge(r#"Basic realm="a, Bearer \", Bearer b", charset="x, Bearer""#),
            Rejection::None
        );
        assert_eq!(
            schemes(r#"Basic realm="a, \"Bearer\", c", Digest nonce="n,=", Newauth"#),
            ["Basic", "Digest", "Newauth"]
        );
        // token68 may end in `=`.
        assert_eq!(schemes("Basic dXNlcjpwYXNz==, Bearer"), ["Basic", "Bearer"]);
    }

    #[test]
    fn malformed_values_are_skipped_without_panicking() {
        for value in [
            "",
            ",",
            " , ,",
            "=",
            "=Bearer",
            "\"Bearer\"",
            "Basic realm=\"unterminated, Bearer",
            "Basic realm=\"x\\",
            "\\",
            "Bearer\t,\t",
            "\t Bearer ,",
        ] {
            let _ = schemes(value);
        }
        assert_eq!(schemes(" , ,Bearer ,, "), ["Bearer"]);
        assert_eq!(schemes("=x, Bearer"), ["Bearer"]);
        assert_eq!(schemes("Basic realm=\"unterminated, Bearer"), ["Basic"]);
        assert_eq!(challenge("\t Bearer ,"), Rejection::Token);
    }

    /// One generated challenge, as the parser should see it.
    #[derive(Clone, Debug)]
    struct Generated {
        scheme: String,
        rendered: String,
    }

    fn scheme() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![
                "Bearer",
                "bearer",
                "BEARER",
                "Basic",
                "Digest",
                "Negotiate",
                "AzureApiManagementKey",
                "azureapimanagementkey",
            ])
            .prop_map(String::from),
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        ]
    }

    fn ows() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec!["", " ", "  ", "\t", " \t"])
    }

    /// A quoted string whose content may hold commas, `=`, scheme names and escaped quotes.
    fn quoted() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                "[ -~]{0,6}",
                prop::sample::select(vec![
                    ",",
                    "\"",
                    "\\",
                    "=",
                    ", Bearer",
                    "AzureApiManagementKey",
                    " Bearer ",
                ])
                .prop_map(String::from),
            ],
            0..5,
        )
        .prop_map(|parts| {
            let mut out = String::from("\"");
            for c in parts.concat().chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
            out
        })
    }

    fn param() -> impl Strategy<Value = String> {
        (
            prop_oneof![scheme(), "[a-z_]{1,10}"],
            ows(),
            ows(),
            prop_oneof![quoted(), "[A-Za-z0-9._~+/-]{1,10}"],
        )
            .prop_map(|(name, before, after, value)| format!("{name}{before}={after}{value}"))
    }

    fn generated() -> impl Strategy<Value = Generated> {
        let rest = prop_oneof![
            Just(Vec::new()),
            "[A-Za-z0-9._~+/-]{1,20}=*".prop_map(|t| vec![t]),
            prop::collection::vec(param(), 1..4),
        ];
        (scheme(), rest, ows(), ows()).prop_map(|(scheme, rest, before, after)| {
            let mut rendered = scheme.clone();
            if !rest.is_empty() {
                rendered.push(' ');
                rendered.push_str(&rest.join(&format!("{before},{after}")));
            }
            Generated { scheme, rendered }
        })
    }

    /// What the challenges mean, by the rule stated in the module docs.
    fn expected(challenges: &[Generated]) -> Rejection {
        let is = |name: &str| {
            challenges
                .iter()
                .any(|c| c.scheme.eq_ignore_ascii_case(name))
        };
        if challenges.is_empty() {
            Rejection::None
        } else if is("AzureApiManagementKey") {
            Rejection::ApiKey
        } else if is("Bearer") {
            Rejection::Token
        } else {
            Rejection::None
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn generated_challenge_lists_are_classified_by_every_scheme(
            challenges in prop::collection::vec(generated(), 1..6),
            fields in prop::collection::vec(any::<bool>(), 6),
            separators in prop::collection::vec((ows(), ows(), any::<bool>()), 6),
        ) {
            // Spread the challenges over one or more fields, with optional empty elements.
            let mut values = vec![String::new()];
            for (i, c) in challenges.iter().enumerate() {
                let (before, after, empty) = separators[i];
                let value = values.last_mut().unwrap();
                if !value.is_empty() {
                    value.push_str(before);
                    value.push(',');
                    if empty {
                        value.push_str(" ,");
                    }
                    value.push_str(after);
                }
                value.push_str(&c.rendered);
                if fields[i] {
                    values.push(String::new());
                }
            }
            let mut map = HeaderMap::new();
            for value in values.iter().filter(|v| !v.is_empty()) {
                map.append(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
            }
            let schemes: Vec<&[u8]> = values
                .iter()
                .flat_map(|v| Challenges::new(v.as_bytes()))
                .collect();
            let want: Vec<&[u8]> = challenges.iter().map(|c| c.scheme.as_bytes()).collect();
            prop_assert_eq!(schemes, want);
            prop_assert_eq!(classify(StatusCode::UNAUTHORIZED, &map), expected(&challenges));
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 0..4),
        ) {
            let mut map = HeaderMap::new();
            for value in values {
                if let Ok(value) = HeaderValue::from_bytes(&value) {
                    map.append(WWW_AUTHENTICATE, value);
                }
            }
            let _ = classify(StatusCode::UNAUTHORIZED, &map);
        }
    }
}

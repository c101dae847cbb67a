//! The 401 decision, written once: what a response means for the credentials it was sent
//! with, by its head alone ([`Rejection::of`]), and the one I/O it asks for
//! ([`renewal`]). The tower future, the reqwest middleware and the SAS fetch ask it and only
//! do their I/O. No body is read.
//!
//! - HTTP 401 with a `Bearer` challenge: the token was rejected.
//! - HTTP 401 with Azure API Management's `AzureApiManagementKey` challenge: the API key is
//!   wrong, and no token can fix that; the response is handed on, with a warning. This holds
//!   even when a `Bearer` challenge is offered too: a new token cannot make the gateway
//!   accept the key, so a replay would only spend a token fetch and get the same 401.
//! - HTTP 401 with no challenge at all: the token was rejected. No body is read: the
//!   response goes on as it came. API Management may answer an *invalid* key this way (with
//!   a JSON body saying so); what that costs is bounded all the same: at most one token
//!   fetch per rejection interval for the whole authenticator, and at most one replay per
//!   request.
//! - gRPC `UNAUTHENTICATED` (`grpc-status: 16` in the response headers, as a trailers-only
//!   response carries it): the token was rejected.
//! - Anything else, 403 included: no rejection.
//!
//! Every challenge of every `WWW-Authenticate` field is read (RFC 9110 §11.6.1): one field
//! may hold several, as in `Basic realm="api", Bearer error="invalid_token"`.
//!
//! A rejected token starts a refresh through [`Authenticator::rejected`] (only that token is
//! dropped; at most one per rejection interval), even when the request cannot be replayed,
//! so the next request gets a good token. The request is then replayed once, if it can be,
//! with a token newer than the rejected one.

use http::{HeaderMap, HeaderName, StatusCode, header::WWW_AUTHENTICATE};

use crate::{AuthHeaders, Authenticator, Generation, HeadersFuture};

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// What a response says about the credentials it was sent with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Not a rejection of the credentials.
    None,
    /// The API key was rejected: no token fixes that; hand the response on.
    ApiKey,
    /// The bearer token was rejected: renew it and replay.
    Token,
}

impl Rejection {
    /// What a response with this `status` and `headers` says. The hot path's one check is
    /// inline: only a 401, or a 200 with headers (where a gRPC status may be), is read on.
    #[inline]
    pub(crate) fn of(status: StatusCode, headers: &HeaderMap) -> Rejection {
        if status == StatusCode::UNAUTHORIZED || (status == StatusCode::OK && !headers.is_empty()) {
            classify(status, headers)
        } else {
            Rejection::None
        }
    }
}

/// [`Rejection::of`] for a response that may be a rejection.
#[cold]
fn classify(status: StatusCode, headers: &HeaderMap) -> Rejection {
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
    if headers
        .get(GRPC_STATUS)
        .is_some_and(|v| v.as_bytes().trim_ascii() == b"16")
    {
        return Rejection::Token;
    }
    Rejection::None
}

/// The I/O a response to a request sent with the token of `generation` asks for: for a
/// rejected token, a token newer than that one (the cache's one fetch, rate-limited; a
/// newer token already cached is ready at once). `None`: hand the response on (no
/// rejection, the API key's, or the rejection interval has not passed). Dropping the future
/// does not cancel the fetch it may have started, so the next request gets the new token
/// even when this one is not replayed.
#[inline]
pub(crate) fn renewal(
    authenticator: &Authenticator,
    generation: Generation,
    status: StatusCode,
    headers: &HeaderMap,
) -> Option<HeadersFuture> {
    match Rejection::of(status, headers) {
        Rejection::None => None,
        Rejection::ApiKey => {
            tracing::warn!(
                target: "veracity_auth",
                status = status.as_u16(),
                "the gateway rejected the API key (Ocp-Apim-Subscription-Key); \
                 a new token cannot fix that, returning the response"
            );
            None
        }
        Rejection::Token => authenticator.rejected(generation).or_else(|| {
            tracing::debug!(
                target: "veracity_auth",
                "401 within the rejection interval: returning it without a new token"
            );
            None
        }),
    }
}

/// Puts `token` into the replay's `headers`, and counts and logs the replay.
pub(crate) fn replaying(
    authenticator: &Authenticator,
    token: &AuthHeaders,
    headers: &mut HeaderMap,
) {
    token.insert_into(headers);
    authenticator.count_replay();
    tracing::debug!(
        target: "veracity_auth",
        generation = token.generation().get(),
        "replaying the request with a new token after a 401"
    );
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
        Rejection::of(
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
                Rejection::of(StatusCode::UNAUTHORIZED, &h),
                Rejection::Token,
                "{h:?}"
            );
        }
    }

    #[test]
    fn a_bare_401_is_a_token_rejection_whatever_its_body() {
        assert_eq!(
            Rejection::of(StatusCode::UNAUTHORIZED, &headers(&[])),
            Rejection::Token
        );
        let json = headers(&[("content-type", "application/json")]);
        assert_eq!(
            Rejection::of(StatusCode::UNAUTHORIZED, &json),
            Rejection::Token
        );
    }

    #[test]
    fn the_api_key_challenge_is_not_a_token_problem() {
        let h = headers(&[(
            "www-authenticate",
            r#"AzureApiManagementKey realm="https://api.veracity.com/",name="Ocp-Apim-Subscription-Key",type="header""#,
        )]);
        assert_eq!(
            Rejection::of(StatusCode::UNAUTHORIZED, &h),
            Rejection::ApiKey
        );
    }

    #[test]
    fn other_schemes_403_and_grpc_codes() {
        let basic = headers(&[("www-authenticate", r#"Basic realm="x""#)]);
        assert_eq!(
            Rejection::of(StatusCode::UNAUTHORIZED, &basic),
            Rejection::None
        );
        assert_eq!(
            Rejection::of(StatusCode::FORBIDDEN, &headers(&[])),
            Rejection::None
        );
        let unauthenticated = headers(&[("grpc-status", "16")]);
        assert_eq!(
            Rejection::of(StatusCode::OK, &unauthenticated),
            Rejection::Token
        );
        let denied = headers(&[("grpc-status", "7")]);
        assert_eq!(Rejection::of(StatusCode::OK, &denied), Rejection::None);
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
        assert_eq!(
            Rejection::of(StatusCode::UNAUTHORIZED, &h),
            Rejection::ApiKey
        );
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

    async fn sent() -> (Authenticator, Generation) {
        let auth = Authenticator::builder(crate::StaticToken::new("token"))
            .build()
            .unwrap();
        let generation = auth.headers().await.unwrap().generation();
        (auth, generation)
    }

    #[tokio::test]
    async fn a_response_that_is_no_rejection_is_handed_on_without_a_refresh() {
        let (auth, generation) = sent().await;
        for (status, headers) in [
            (StatusCode::OK, HeaderMap::new()),
            (StatusCode::FORBIDDEN, HeaderMap::new()),
            (
                StatusCode::UNAUTHORIZED,
                headers(&[("www-authenticate", "Basic realm=\"api\"")]),
            ),
        ] {
            let asked = renewal(&auth, generation, status, &headers);
            assert!(asked.is_none(), "{status}");
        }
        assert_eq!(auth.stats().replay_refreshes, 0);
    }

    #[tokio::test]
    async fn an_api_key_rejection_is_handed_on_without_a_refresh() {
        let (auth, generation) = sent().await;
        let headers = headers(&[(
            "www-authenticate",
            "AzureApiManagementKey realm=\"x\",name=\"k\",type=\"header\"",
        )]);
        let asked = renewal(&auth, generation, StatusCode::UNAUTHORIZED, &headers);
        assert!(asked.is_none());
        assert_eq!(auth.stats().replay_refreshes, 0);
    }

    #[tokio::test]
    async fn a_bare_401_is_a_token_rejection_by_its_head_alone() {
        let (auth, generation) = sent().await;
        let asked = renewal(
            &auth,
            generation,
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
        );
        assert!(asked.is_some());
        assert_eq!(auth.stats().replay_refreshes, 1);
    }

    #[tokio::test]
    async fn a_token_rejection_refreshes_and_replays_once_per_interval() {
        let (auth, generation) = sent().await;
        let bearer = headers(&[("www-authenticate", "Bearer error=\"invalid_token\"")]);
        let newer = renewal(&auth, generation, StatusCode::UNAUTHORIZED, &bearer)
            .expect("a token rejection is renewed")
            .await
            .unwrap();
        assert!(newer.generation() > generation);
        // The replay is rejected too: within the interval, no second refresh.
        let again = renewal(
            &auth,
            newer.generation(),
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
        );
        assert!(again.is_none());
        assert_eq!(auth.stats().replay_refreshes, 1);
    }

    #[tokio::test]
    async fn a_token_rejection_of_a_request_that_cannot_be_replayed_still_refreshes() {
        let (auth, generation) = sent().await;
        let bearer = headers(&[("www-authenticate", "Bearer error=\"invalid_token\"")]);
        // An adapter that cannot replay drops the renewal: the fetch runs on.
        drop(renewal(
            &auth,
            generation,
            StatusCode::UNAUTHORIZED,
            &bearer,
        ));
        assert_eq!(
            auth.stats().replay_refreshes,
            1,
            "the next request gets a new token"
        );
        assert!(auth.headers().await.unwrap().generation() > generation);
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
            prop_assert_eq!(Rejection::of(StatusCode::UNAUTHORIZED, &map), expected(&challenges));
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
            let _ = Rejection::of(StatusCode::UNAUTHORIZED, &map);
        }
    }
}

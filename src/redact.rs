//! Redaction: text that may hold a credential made safe for `Debug`, `Display`, errors and
//! logs (free text such as a panic message, a provider's error text, a URL).
//!
//! A leaf: it knows nothing of the rest of the crate. What each caller uses:
//!
//! - [`free_text`]: text of unknown origin (a token source's panic message). Values of
//!   sensitive keys (`client_secret=…`, `"refresh_token":"…"`) and every run of characters
//!   shaped like a credential are replaced, wherever they sit; then [`clean`]ed.
//! - [`clean`]: text a provider sent (an OAuth `error_description`): the secrets the caller
//!   knows it sent are replaced, control characters folded, the length capped.
//! - [`uri`], [`url`], [`origin`], [`proxy_url`]: a URL as scheme, host, port and path only,
//!   never its userinfo, query or fragment.
//!
//! What is left where a credential was is [`REDACTED`].

use http::Uri;

/// What stands where a credential was.
pub(crate) const REDACTED: &str = "[redacted]";

/// The shortest run of credential characters taken for a credential on its shape alone.
const MIN_SECRET_LEN: usize = 16;

/// Keys whose values are credentials, compared case-insensitively. OAuth 2.0 form fields
/// (RFC 6749, RFC 7636, RFC 7523), Azure storage SAS and connection-string fields, and the
/// API-key header.
const SENSITIVE_KEYS: &[&str] = &[
    "access_token",
    "accountkey",
    "api_key",
    "api-key",
    "apikey",
    "assertion",
    "client_assertion",
    "client_secret",
    "code",
    "code_verifier",
    "id_token",
    "ocp-apim-subscription-key",
    "password",
    "refresh_token",
    "secret",
    "sharedaccesskey",
    "sharedaccesssignature",
    "sig",
    "signature",
    "subscription-key",
    "subscription_key",
    "token",
];

/// Text of unknown origin made safe to show: the value of every sensitive key
/// (`client_secret=…` up to `&`, whitespace or a quote; `"refresh_token":"…"`;
/// `password: Some("…")`) and every run of credential characters that looks like a
/// credential (see [`secret_shaped`]) become [`REDACTED`]; then control characters are
/// folded and the length capped at about `max` bytes, as [`clean`] does.
pub(crate) fn free_text(s: &str, max: usize) -> String {
    let without_values = sensitive_values(s);
    let without_runs = shaped_runs(&without_values);
    fold_and_cap(&without_runs, max)
}

/// Provider text made safe to log: each of `secrets` (as sent, and form-encoded) removed,
/// control characters (CR/LF included) folded to spaces, whitespace collapsed, length capped
/// at about `max` bytes.
pub(crate) fn clean(s: &str, max: usize, secrets: &[&str]) -> String {
    let mut s = s.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        for form in [secret.to_string(), form_encoded(secret)] {
            if s.contains(&form) {
                s = s.replace(&form, REDACTED);
            }
        }
    }
    fold_and_cap(&s, max)
}

/// `scheme://host[:port]/path` of `uri`: never userinfo, query or fragment.
pub(crate) fn uri(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("");
    let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
    format!("{scheme}://{host}{port}{}", uri.path())
}

/// [`uri`] of a URL given as text, or `<invalid URL>`.
pub(crate) fn url(url: &str) -> String {
    match url.parse::<Uri>() {
        Ok(parsed) => uri(&parsed),
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// `scheme://host:port` of `uri`, the scheme defaulting to `http` and the port to the
/// scheme's: how a proxy is named.
#[cfg(feature = "default-client")]
pub(crate) fn origin(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    format!("{scheme}://{}:{port}", uri.host().unwrap_or(""))
}

/// [`origin`] of a proxy URL as a user gives it (`http://` assumed when it names no
/// scheme), or `<invalid URL>`.
#[cfg(feature = "default-client")]
pub(crate) fn proxy_url(url: &str) -> String {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("http://{url}")
    };
    match with_scheme.parse::<Uri>() {
        Ok(parsed) if parsed.host().is_some() => origin(&parsed),
        _ => "<invalid URL>".to_owned(),
    }
}

// === sensitive keys ===

/// `s` with the value of every [`SENSITIVE_KEYS`] key replaced.
///
/// A key counts when no letter, digit, `_` or `-` touches it on either side. After it may
/// come a closing quote (`"key":`), then `=` or `:` with optional spaces, then the value:
/// - quoted (`"…"`, `'…'`, also after `Some(`): up to the closing quote, `\` escapes
///   skipped;
/// - unquoted after `=` (a form or query): up to `&`, whitespace or a quote;
/// - unquoted after `:`: not taken (`code: 2` in a `Debug` line is no credential).
fn sensitive_values(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some((start, end)) = value_at(bytes, i) {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = end;
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// Where the value of a sensitive key starting at `i` lies, if one starts there and has a
/// value. Both ends are at ASCII bytes (or the end), so they are char boundaries.
fn value_at(bytes: &[u8], i: usize) -> Option<(usize, usize)> {
    let key_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if i > 0 && key_char(bytes[i - 1]) {
        return None;
    }
    let key_len = SENSITIVE_KEYS.iter().find_map(|key| {
        let key = key.as_bytes();
        let candidate = bytes.get(i..i + key.len())?;
        let bounded = bytes.get(i + key.len()).is_none_or(|&b| !key_char(b));
        (candidate.eq_ignore_ascii_case(key) && bounded).then_some(key.len())
    })?;
    let mut j = i + key_len;
    if matches!(bytes.get(j), Some(b'"' | b'\'')) {
        j += 1;
    }
    j = skip_spaces(bytes, j);
    let separator = *bytes.get(j)?;
    if separator != b'=' && separator != b':' {
        return None;
    }
    j = skip_spaces(bytes, j + 1);
    if bytes[j..].starts_with(b"Some(") {
        j += "Some(".len();
    }
    match bytes.get(j) {
        Some(&quote @ (b'"' | b'\'')) => {
            let start = j + 1;
            let mut end = start;
            while end < bytes.len() && bytes[end] != quote {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            let end = end.min(bytes.len());
            (end > start).then_some((start, end))
        }
        Some(_) if separator == b'=' => {
            let end = bytes[j..]
                .iter()
                .position(|&b| b == b'&' || b == b'"' || b == b'\'' || b.is_ascii_whitespace())
                .map_or(bytes.len(), |n| j + n);
            (end > j).then_some((j, end))
        }
        _ => None,
    }
}

fn skip_spaces(bytes: &[u8], mut j: usize) -> usize {
    while bytes.get(j).is_some_and(|&b| b == b' ') {
        j += 1;
    }
    j
}

// === credential-shaped runs ===

/// The alphabet of tokens and secrets: base64 and base64url, JWT dots, the `~` of Azure
/// client secrets.
fn is_run_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b)
}

/// `s` with every maximal run of [`is_run_byte`] characters that is [`secret_shaped`]
/// replaced, whatever punctuation surrounds it (`{"k":"<run>"}`, `Some("<run>")`,
/// `(<run>)`, `<run>:`).
///
/// An `=` followed by anything but `=` ends a piece of a run: base64 has `=` only as
/// padding at its end, so there it parts a key from its value (`error_code=7000215` is two
/// pieces, neither a credential), and each piece is judged alone.
fn shaped_runs(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_run_byte(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_run_byte(bytes[i]) {
            i += 1;
            if bytes[i - 1] == b'=' && bytes.get(i).is_some_and(|&b| b != b'=') {
                break;
            }
        }
        // Pieces are ASCII, so `start..i` lies on char boundaries.
        if secret_shaped(&s[start..i]) {
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = i;
        }
    }
    out.push_str(&s[copied..]);
    out
}

/// A run that is a credential by its shape: 16 or more characters holding both letters and
/// digits (a JWT, dots included, is one run; a client secret, a refresh token, a hex API
/// key, a base64 key), unless it is an identifier no credential looks like:
/// - a GUID (`83054ebf-1d7b-43f5-82ad-b2bde84d7b75`: client, tenant, trace ids);
/// - a URL's host and path or a file path (`//login.veracity.com/<GUID>/oauth2/v2.0/token`,
///   `5000/oauth2/token`): see [`is_path`].
///
/// Prose words hold no digits, or are shorter, and stay.
fn secret_shaped(run: &str) -> bool {
    long_and_mixed(run) && !is_guid(run) && !is_path(run)
}

fn long_and_mixed(s: &str) -> bool {
    s.len() >= MIN_SECRET_LEN
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.bytes().any(|b| b.is_ascii_digit())
}

/// 8-4-4-4-12 hexadecimal digits.
fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A run with `/` whose every `/`-separated segment is a plain name: a GUID, a host-like
/// lowercase name (`dnvglb2cprod.onmicrosoft.com`, `v2.0`), or a word that is neither
/// [`long_and_mixed`] nor a mix of upper case, lower case and digits of 8 or more
/// characters. A `+` or `=` anywhere is base64's: then the run is judged whole (so a path
/// with `key=value` segments is redacted if it holds digits).
///
/// The limit of a guess: unpadded base64 with `/` but no `+`, cut by its slashes into
/// pieces that all look like words, would pass for a path. Keys and signatures of 16, 32
/// or 64 bytes are padded, and a random piece of 8 characters or more almost always mixes
/// cases and digits.
fn is_path(run: &str) -> bool {
    run.contains('/') && !run.contains(['+', '=']) && run.split('/').all(plain_segment)
}

fn plain_segment(segment: &str) -> bool {
    let has = |f: fn(&u8) -> bool| segment.as_bytes().iter().any(f);
    let mixed_case_and_digits = segment.len() >= 8
        && has(u8::is_ascii_uppercase)
        && has(u8::is_ascii_lowercase)
        && has(u8::is_ascii_digit);
    is_guid(segment) || host_like(segment) || !(long_and_mixed(segment) || mixed_case_and_digits)
}

/// Lower-case letters, digits, `-` and `.`, in dot-separated labels shorter than
/// [`MIN_SECRET_LEN`]: a host name, a file name, a version.
fn host_like(segment: &str) -> bool {
    segment
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && segment.split('.').all(|label| label.len() < MIN_SECRET_LEN)
}

// === control characters and length ===

/// Control characters (CR/LF included) and whitespace folded to single spaces, the length
/// capped at about `max` bytes, never cutting a word: ` ...` marks a cut.
fn fold_and_cap(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for word in s.split(|c: char| c.is_whitespace() || c.is_control()) {
        if word.is_empty() {
            continue;
        }
        if out.len() + word.len() + 1 > max {
            out.push_str(" ...");
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `s` as `application/x-www-form-urlencoded` writes it (the WHATWG URL standard: ASCII
/// letters, digits and `*-._` kept, space as `+`, every other byte `%XX`), which is how a
/// secret travels in a token request and how an endpoint may echo it.
fn form_encoded(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";

    #[test]
    fn a_jwt_is_redacted_whatever_surrounds_it() {
        for text in [
            JWT.to_owned(),
            format!(r#"{{"access_token":"{JWT}","x":1}}"#),
            format!(r#"Some("{JWT}")"#),
            format!("({JWT})"),
            format!("token {JWT}: rejected"),
            format!("`{JWT}`,"),
            format!("Bearer {JWT}"),
        ] {
            let shown = free_text(&text, 512);
            assert!(!shown.contains("eyJ0eXAi"), "{shown}");
            assert!(!shown.contains("c2lnbmF0dXJl"), "{shown}");
            assert_eq!(shown.matches(REDACTED).count(), 1, "one run: {shown}");
        }
    }

    #[test]
    fn sensitive_keys_lose_their_values_in_forms_json_and_debug() {
        for (text, value) in [
            ("a=b&client_secret=xyz&c=d", "xyz"),
            (
                "grant_type=refresh_token&refresh_token=r-1&client_id=c",
                "r-1",
            ),
            ("code=abc&code_verifier=verifier-1 then", "verifier-1"),
            (r#"{"refresh_token":"short","other":1}"#, "short"),
            (r#"{ "password" : "with \"escaped\" quotes" }"#, "escaped"),
            (r#"Form { client_secret: Some("hunter"), id: 1 }"#, "hunter"),
            ("?sv=2022&sig=abc%2Bdef%3D&se=x", "abc%2Bdef"),
            ("AccountKey=base64key==;EndpointSuffix=core", "base64key"),
            ("Ocp-Apim-Subscription-Key: 'key1'", "key1"),
            ("CLIENT_SECRET=UPPER", "UPPER"),
        ] {
            let shown = free_text(text, 512);
            assert!(!shown.contains(value), "{text} -> {shown}");
            assert!(shown.contains(REDACTED), "{text} -> {shown}");
        }
        // Neighbours of a redacted value stay.
        assert_eq!(
            free_text("a=b&client_secret=xyz&c=d", 512),
            "a=b&client_secret=[redacted]&c=d"
        );
    }

    #[test]
    fn keys_inside_other_words_and_unquoted_values_after_a_colon_stay() {
        for text in [
            "error_code=7000215",
            "the codes=1,2",
            "Os { code: 2, kind: NotFound, message: \"No such file or directory\" }",
            "token: expired",
            "secretary=jane",
            "a code=",
        ] {
            assert_eq!(free_text(text, 512), text);
        }
    }

    #[test]
    fn prose_urls_paths_and_ids_are_not_redacted() {
        for text in [
            "Could not automatically determine the process-level CryptoProvider from Rustls crate features",
            "called `Result::unwrap()` on an `Err` value: Os { code: 2, kind: NotFound }",
            "https://login.veracity.com/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token",
            "https://login.microsoftonline.com/dnvglb2cprod.onmicrosoft.com/oauth2/token",
            "http://127.0.0.1:5000/oauth2/token and http://localhost:8080/dataworkbench/api/v2/x",
            "resource https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75",
            "client 83054ebf-1d7b-43f5-82ad-b2bde84d7b75 in tenant a68572e3-63ce-4bc1-acdc-b64943502e9d",
            "/home/user/.config/veracity-auth/app-2024/refresh-token.json",
            "src/source/client_credentials.rs:120:9",
            "veracity_auth::source::refresh_token::RefreshToken",
            "workspaces/00000000-0000-0000-0000-00000000c0de/datasets/query",
        ] {
            assert_eq!(free_text(text, 512), text);
        }
    }

    #[test]
    fn credential_shapes_without_context_are_redacted() {
        for secret in [
            "Q8~abcdEFGH1234ijklMNOP",                 // Azure client secret
            "0123456789abcdef0123456789abcdef",        // hex API key
            "3Sm+7Xh/9qLk0Pz2Wv5Ny8Tb1Rc4Ud6Fe=",      // base64 key with `/`
            "x/3Sm7XhA9qLk0Pz2Wv5Ny8Tb1Rc4Ud6Fe==",    // ... after a `/`
            "s3cr3t-Client-Secret-42",                 // a test's fake secret
            "0.AXoA8nE2kG3-refresh-token-part-7Qx_Zk", // a refresh token
        ] {
            let shown = free_text(&format!("got {secret} back"), 512);
            assert_eq!(shown, "got [redacted] back", "{secret}");
        }
    }

    #[test]
    fn control_characters_fold_and_long_text_is_capped_after_redaction() {
        assert_eq!(free_text("a\r\nb\tc\0d", 512), "a b c d");
        let long = format!("{} {JWT}", "word ".repeat(200));
        let shown = free_text(&long, 64);
        assert!(shown.len() <= 64 + 4, "{shown}");
        assert!(shown.ends_with(" ..."), "{shown}");
        // A secret cut by the cap would leave a piece too short to be recognised: redaction
        // runs first.
        let shown = free_text(&format!("x {JWT}"), 20);
        assert!(!shown.contains("eyJ"), "{shown}");
    }

    #[test]
    fn non_ascii_text_is_kept_and_never_split_inside_a_character() {
        let text = format!("é… ✓ «{JWT}» 日本 client_secret=ü&x");
        assert_eq!(
            free_text(&text, 512),
            "é… ✓ «[redacted]» 日本 client_secret=[redacted]&x"
        );
    }

    #[test]
    fn clean_replaces_known_secrets_as_sent_and_form_encoded() {
        let secret = "p@ss word/+~";
        let text = format!("got {secret} and p%40ss+word%2F%2B%7E\r\nend");
        assert_eq!(
            clean(&text, 512, &[secret]),
            "got [redacted] and [redacted] end"
        );
        // Provider text keeps ids and codes: `clean` does not judge shapes.
        let trace = "Trace ID: 0b2f0a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b AADSTS7000215";
        assert_eq!(clean(trace, 512, &[]), trace);
        assert_eq!(clean("x", 512, &[""]), "x");
    }

    #[test]
    fn form_encoding_matches_serde_urlencoded() {
        for s in ["plain", "a b", "p@ss/+~=&?é", "*-._", "\u{0}\n"] {
            let expected = serde_urlencoded::to_string([("", s)]).unwrap();
            assert_eq!(form_encoded(s), expected[1..], "{s:?}");
        }
    }

    #[test]
    fn uris_keep_scheme_host_port_and_path_only() {
        let full: Uri = "https://user:pass@login.example.com:8443/t/oauth2/token?code=x#f"
            .parse()
            .unwrap();
        assert_eq!(uri(&full), "https://login.example.com:8443/t/oauth2/token");
        assert_eq!(url("https://h/p?sig=s"), "https://h/p");
        assert_eq!(url("not a url"), "<invalid URL>");
    }

    #[cfg(feature = "default-client")]
    #[test]
    fn proxies_show_as_scheme_host_and_port() {
        assert_eq!(
            proxy_url("http://user:pass@proxy.corp:3128/x?y"),
            "http://proxy.corp:3128"
        );
        assert_eq!(proxy_url("user:pass@proxy.corp"), "http://proxy.corp:80");
        assert_eq!(proxy_url("https://proxy.corp"), "https://proxy.corp:443");
        assert_eq!(proxy_url("::::"), "<invalid URL>");
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// Standard base64 with padding, as keys and SAS signatures are written.
        fn base64(bytes: &[u8]) -> String {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
                for i in 0..4 {
                    if i <= chunk.len() {
                        out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
                    } else {
                        out.push('=');
                    }
                }
            }
            out
        }

        fn letters_and_digits(s: &str) -> bool {
            s.bytes().any(|b| b.is_ascii_alphabetic()) && s.bytes().any(|b| b.is_ascii_digit())
        }

        /// Credentials as Veracity's platform issues them.
        fn credential() -> impl Strategy<Value = String> {
            prop_oneof![
                // A JWT (access and ID tokens).
                "eyJ[A-Za-z0-9_-]{10,60}\\.eyJ[A-Za-z0-9_-]{10,200}\\.[A-Za-z0-9_-]{10,86}",
                // An Azure AD client secret.
                "[A-Za-z0-9]{3}[0-9]Q~[A-Za-z0-9~._-]{34}",
                // An API Management subscription key.
                "[0-9a-f]{32}",
                // A B2C refresh token or any base64url token.
                "[A-Za-z0-9_-]{20,200}",
                // A storage key or SAS signature.
                prop::sample::select(vec![16usize, 32, 64])
                    .prop_flat_map(|n| prop::collection::vec(any::<u8>(), n))
                    .prop_map(|bytes| base64(&bytes)),
            ]
            .prop_filter("holds letters and digits", |s| letters_and_digits(s))
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

            /// A credential inside any printable ASCII text, touching it or not, never
            /// survives, nor does any 8-character piece of it.
            #[test]
            fn a_credential_in_any_ascii_text_never_survives(
                before in "[ -~]{0,40}",
                secret in credential(),
                after in "[ -~]{0,40}",
            ) {
                let shown = free_text(&format!("{before}{secret}{after}"), 4096);
                for piece in secret.as_bytes().windows(8) {
                    let piece = std::str::from_utf8(piece).unwrap();
                    prop_assert!(
                        !shown.contains(piece) || before.contains(piece) || after.contains(piece),
                        "{piece} of {secret} survived: {shown}"
                    );
                }
            }

            /// The value of a sensitive key in a form, a JSON object or a `Debug` line
            /// never survives, whatever it is and whatever surrounds it.
            #[test]
            fn a_sensitive_keys_value_never_survives(
                before in "[ -~]{0,40}",
                boundary in "[ &?{(,]",
                key in prop::sample::select(SENSITIVE_KEYS.to_vec()),
                style in 0..3usize,
                value in "[!#-%(-~]{12,40}",
                after in "[ -~]{0,40}",
            ) {
                let pair = match style {
                    0 => format!("{key}={value}"),
                    1 => format!(r#""{key}":"{}""#, value.replace('\\', "\\\\")),
                    _ => format!(r#"{key}: Some("{}")"#, value.replace('\\', "\\\\")),
                };
                let text = format!("{before}{boundary}{pair}{after}");
                let shown = free_text(&text, 4096);
                prop_assert!(
                    !shown.contains(&value) || before.contains(&value) || after.contains(&value),
                    "{value} survived: {shown}"
                );
            }

            /// Any text, ASCII or not: no panic, and the cap holds.
            #[test]
            fn any_text_is_redacted_without_panicking(text in "\\PC{0,300}", max in 0usize..600) {
                let shown = free_text(&text, max);
                prop_assert!(shown.len() <= max + 4, "{} > {max}", shown.len());
            }
        }
    }
}

//! Parsing what a token endpoint answers: the three success styles of Veracity's identity
//! providers (Azure AD v2, B2C, Azure AD v1 with numbers as strings) and OAuth error bodies.
//!
//! The parser reads JSON into a `serde_json::Value` and picks fields by hand, so that no
//! error message ever quotes a value from the body (serde's typed errors would), and so that
//! the default features build no `serde_derive`.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value};

use crate::{Error, OAuthError, Token, redact::clean, token::Secret};

/// The longest lifetime accepted from `expires_in`; anything longer is nonsense, not a token.
const MAX_EXPIRES_IN: u64 = 366 * 24 * 3600;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Parses a token endpoint's answer: any of the success styles Veracity's identity providers
/// answer with (Azure AD v2.0, B2C, v1 with numbers as strings; see Microsoft's
/// [v2.0 client credentials](https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow),
/// [B2C access tokens](https://learn.microsoft.com/en-us/azure/active-directory-b2c/access-tokens)
/// and [v1 client credentials](https://learn.microsoft.com/en-us/previous-versions/azure/active-directory/azuread-dev/v1-oauth2-client-creds-grant-flow)
/// pages, and [Veracity's Data Workbench authentication](https://developer.veracity.com/docs/section/dataworkbench/authentication))
/// into a [`Token`], an OAuth error body into
/// [`Error::OAuth`], anything else into the typed error naming what is wrong. Never panics,
/// whatever the bytes; never quotes the body.
///
/// ```
/// use http::{HeaderMap, StatusCode};
///
/// let body = br#"{"token_type":"Bearer","expires_in":"3599","access_token":"eyJ0eXAi"}"#;
/// let token = veracity_auth::parse_token_response(StatusCode::OK, &HeaderMap::new(), body)?;
/// assert_eq!(token.expires_in(), Some(std::time::Duration::from_secs(3599)));
/// # Ok::<_, veracity_auth::Error>(())
/// ```
#[cfg(feature = "__fuzzing")]
pub fn parse_token_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Token, Error> {
    parse(status, headers, body, &[])
}

/// Parses a token endpoint's answer. `secrets` are scrubbed from any provider text kept in
/// the error (a misbehaving endpoint might echo what it was sent).
pub(crate) fn parse(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<Token, Error> {
    token(&object(status, headers, body, secrets)?)
}

/// What a user-delegated grant (`authorization_code`, `refresh_token`) answers: the access
/// token, and the refresh token and ID token when the provider sent them.
pub(crate) struct Grant {
    pub(crate) token: Token,
    pub(crate) refresh_token: Option<Secret>,
    #[cfg_attr(not(feature = "sign-in"), allow(dead_code))]
    pub(crate) id_token: Option<Secret>,
}

/// [`parse`], keeping the `refresh_token` and `id_token` fields too.
pub(crate) fn parse_grant(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<Grant, Error> {
    let obj = object(status, headers, body, secrets)?;
    let optional = |key: &str| match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(Secret::new(s.clone()))),
        Some(_) => Err(invalid(&format!("`{key}` is not a string"))),
    };
    Ok(Grant {
        token: token(&obj)?,
        refresh_token: optional("refresh_token")?,
        id_token: optional("id_token")?,
    })
}

/// The JSON object of a successful answer, or the error the answer amounts to.
fn object(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Result<Map<String, Value>, Error> {
    let retry_after = retry_after(headers);
    let json = serde_json::from_slice::<Value>(body).ok();
    let object = json.as_ref().and_then(Value::as_object);

    if let Some(obj) = object.filter(|o| o.contains_key("error")) {
        return Err(Error::OAuth(Box::new(oauth_error(
            status,
            obj,
            retry_after,
            secrets,
        ))));
    }
    if !status.is_success() {
        return Err(Error::TokenEndpointStatus {
            status,
            retry_after,
            content_type: content_type(headers),
        });
    }
    match json {
        Some(Value::Object(obj)) => Ok(obj),
        json => {
            let what = match (&json, body.is_empty()) {
                (_, true) => "an empty body".to_owned(),
                (Some(_), _) => "JSON that is not an object".to_owned(),
                (None, _) => match content_type(headers) {
                    Some(ct) => format!("a body that is not JSON ({ct})"),
                    None => "a body that is not JSON".to_owned(),
                },
            };
            Err(Error::InvalidResponse(format!("HTTP {status} with {what}")))
        }
    }
}

fn token(obj: &Map<String, Value>) -> Result<Token, Error> {
    let access_token = match obj.get("access_token") {
        Some(Value::String(s)) if !s.is_empty() => s,
        Some(Value::String(_)) => return Err(invalid("`access_token` is empty")),
        Some(_) => return Err(invalid("`access_token` is not a string")),
        None => return Err(invalid("no `access_token`")),
    };
    match obj.get("token_type") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(Value::String(t)) => {
            // A token type is not a secret, but keep the message short and printable.
            let t: String = t
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(32)
                .collect();
            return Err(invalid(&format!(
                "`token_type` is {t:?}, expected \"Bearer\""
            )));
        }
        Some(_) => return Err(invalid("`token_type` is not a string")),
        None => return Err(invalid("no `token_type`")),
    }
    let expires_in = match obj.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(expires_in(v)?),
    };
    Ok(Token::new(access_token.clone(), expires_in))
}

/// `expires_in` as a number (`3599`) or, from Azure AD v1, a string (`"3599"`).
fn expires_in(v: &Value) -> Result<Duration, Error> {
    let secs = match v {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(s), _, _) => Some(s),
            (None, Some(_), _) => return Err(invalid("`expires_in` is negative")),
            (None, None, Some(f)) if f < 0.0 => return Err(invalid("`expires_in` is negative")),
            (None, None, Some(f)) if f.fract() == 0.0 && f <= MAX_EXPIRES_IN as f64 => {
                Some(f as u64)
            }
            (None, None, Some(f)) if f.fract() == 0.0 => None,
            _ => return Err(invalid("`expires_in` is not a whole number of seconds")),
        },
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(s) if s < 0 => return Err(invalid("`expires_in` is negative")),
            Ok(s) => Some(s as u64),
            Err(_) if !s.is_empty() && s.trim().bytes().all(|b| b.is_ascii_digit()) => None,
            Err(_) => return Err(invalid("`expires_in` is not a number")),
        },
        _ => return Err(invalid("`expires_in` is not a number")),
    };
    match secs {
        Some(0) => Err(invalid("`expires_in` is 0: the token is already expired")),
        Some(s) if s <= MAX_EXPIRES_IN => Ok(Duration::from_secs(s)),
        _ => Err(invalid("`expires_in` is absurdly large (over a year)")),
    }
}

fn oauth_error(
    status: StatusCode,
    obj: &Map<String, Value>,
    retry_after: Option<Duration>,
    secrets: &[&str],
) -> OAuthError {
    let text = |key: &str, max: usize| {
        obj.get(key)
            .and_then(Value::as_str)
            .map(|s| clean(s, max, secrets))
            .filter(|s| !s.is_empty())
    };
    OAuthError {
        status,
        error: text("error", 64).unwrap_or_else(|| "unknown_error".to_owned()),
        description: text("error_description", 512),
        error_codes: obj
            .get("error_codes")
            .and_then(Value::as_array)
            .map(|codes| codes.iter().filter_map(Value::as_u64).take(8).collect())
            .unwrap_or_default(),
        trace_id: text("trace_id", 64),
        correlation_id: text("correlation_id", 64),
        retry_after,
        endpoint: None,
    }
}

fn invalid(what: &str) -> Error {
    Error::InvalidResponse(what.to_owned())
}

fn content_type(headers: &HeaderMap) -> Option<String> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let ct = ct.split(';').next()?.trim();
    (!ct.is_empty() && ct.len() <= 64).then(|| ct.to_owned())
}

/// `Retry-After` in seconds or as an HTTP date, capped.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Result<Token, Error> {
        parse(StatusCode::OK, &HeaderMap::new(), body.as_bytes(), &[])
    }

    #[test]
    fn v2_b2c_and_v1_styles_parse() {
        let v2 = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"a.b.c"}"#;
        let b2c = r#"{"access_token":"a.b.c","token_type":"Bearer","not_before":1645172292,"expires_in":3600,"expires_on":1645175892,"resource":"r"}"#;
        let v1 = r#"{"access_token":"a.b.c","token_type":"bearer","not_before":"1645172292","expires_in":"3599","expires_on":"1645175892","resource":"r"}"#;
        for (body, secs) in [(v2, 3599), (b2c, 3600), (v1, 3599)] {
            let t = ok(body).unwrap();
            assert_eq!(t.access_token(), "a.b.c");
            assert_eq!(t.expires_in(), Some(Duration::from_secs(secs)));
        }
    }

    #[test]
    fn grants_keep_refresh_and_id_tokens() {
        let body = r#"{"access_token":"a","token_type":"Bearer","expires_in":60,"refresh_token":"r-1","id_token":"i.d.t"}"#;
        let g = parse_grant(StatusCode::OK, &HeaderMap::new(), body.as_bytes(), &[]).unwrap();
        assert_eq!(g.token.access_token(), "a");
        assert_eq!(g.refresh_token.as_ref().map(Secret::expose), Some("r-1"));
        assert_eq!(g.id_token.as_ref().map(Secret::expose), Some("i.d.t"));
        let none = r#"{"access_token":"a","token_type":"Bearer","refresh_token":""}"#;
        let g = parse_grant(StatusCode::OK, &HeaderMap::new(), none.as_bytes(), &[]).unwrap();
        assert!(g.refresh_token.is_none() && g.id_token.is_none());
        let bad = r#"{"access_token":"a","token_type":"Bearer","refresh_token":7}"#;
        let err = parse_grant(StatusCode::OK, &HeaderMap::new(), bad.as_bytes(), &[]);
        assert!(matches!(err, Err(Error::InvalidResponse(m)) if m.contains("refresh_token")));
    }

    #[test]
    fn missing_expires_in_is_unknown_lifetime() {
        let t = ok(r#"{"access_token":"x","token_type":"BEARER"}"#).unwrap();
        assert_eq!(t.expires_in(), None);
    }

    #[test]
    fn bad_expires_in_is_a_typed_error() {
        for v in [
            "0",
            "-5",
            "\"-5\"",
            "\"abc\"",
            "1e12",
            "1.5",
            "\"99999999999999999999999\"",
            "true",
        ] {
            let body = format!(r#"{{"access_token":"x","token_type":"Bearer","expires_in":{v}}}"#);
            let err = ok(&body).unwrap_err();
            assert!(matches!(err, Error::InvalidResponse(_)), "{v}: {err}");
            assert!(err.to_string().contains("expires_in"), "{v}: {err}");
        }
    }

    #[test]
    fn oauth_error_names_code_and_ids_without_the_secret() {
        let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Got s3cret.\r\nTrace ID: t1","error_codes":[7000215],"trace_id":"t1","correlation_id":"c1"}"#;
        let err = parse(
            StatusCode::UNAUTHORIZED,
            &HeaderMap::new(),
            body.as_bytes(),
            &["s3cret"],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("invalid_client") && msg.contains("AADSTS7000215"),
            "{msg}"
        );
        assert!(msg.contains("t1") && msg.contains("c1"), "{msg}");
        assert!(!msg.contains("s3cret") && !msg.contains('\n'), "{msg}");
        assert!(err.is_permanent());
    }

    #[test]
    fn b2c_code_comes_from_the_description() {
        let body = r#"{"error":"invalid_request","error_description":"AADB2C90081: The specified client_secret does not match."}"#;
        let err = parse(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            body.as_bytes(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.oauth().unwrap().code().as_deref(), Some("AADB2C90081"));
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let when = SystemTime::now() + Duration::from_secs(120);
        h.insert(
            header::RETRY_AFTER,
            httpdate::fmt_http_date(when).parse().unwrap(),
        );
        let got = retry_after(&h).unwrap();
        assert!(
            got <= Duration::from_secs(120) && got >= Duration::from_secs(115),
            "{got:?}"
        );
    }

    #[test]
    fn non_json_and_non_oauth_errors() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "text/html; charset=utf-8".parse().unwrap(),
        );
        let err = parse(StatusCode::OK, &h, b"<html>oops</html>", &[]).unwrap_err();
        assert!(err.to_string().contains("text/html"), "{err}");
        let err = parse(StatusCode::SERVICE_UNAVAILABLE, &h, b"<html>", &[]).unwrap_err();
        assert!(matches!(err, Error::TokenEndpointStatus { status, .. } if status == 503));
        assert!(!err.is_permanent());
        for body in ["", "{\"access_tok", "[]", r#"{"token_type":"Bearer"}"#] {
            assert!(
                matches!(ok(body).unwrap_err(), Error::InvalidResponse(_)),
                "{body}"
            );
        }
        let err = ok(r#"{"access_token":"x","token_type":"mac"}"#).unwrap_err();
        assert!(err.to_string().contains("token_type"), "{err}");
    }
}

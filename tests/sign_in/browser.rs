//! Playing the browser against the mock, and reading what the mock saw.
#![allow(dead_code, unreachable_pub)]

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use veracity_auth::{PendingSignIn, SignIn, SignedIn, TokenEndpoint};
use veracity_auth_mock::MockVeracity;

pub use crate::common::gateway::{http_client, workspace};

pub fn sign_in(mock: &MockVeracity) -> SignIn {
    SignIn::new(mock.client_id())
        .authorize_url(mock.authorize_url())
        .endpoint(TokenEndpoint::plain_http(mock.user_token_url()).unwrap())
}

/// A sign-in of the client `app` (no mock behind it) waiting `timeout` for its redirect.
pub async fn pending_for(timeout: std::time::Duration) -> PendingSignIn {
    SignIn::new("app").timeout(timeout).start().await.unwrap()
}

/// A refresh-token grant for `client_id` posted to `url`: the status and the JSON answer.
pub async fn refresh_grant(
    url: &str,
    client_id: &str,
    refresh_token: &str,
) -> (StatusCode, serde_json::Value) {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", client_id),
        ("refresh_token", refresh_token),
    ];
    post_form(url, &form).await
}

pub async fn get(url: &str) -> (StatusCode, Option<String>, String) {
    let response = http_client().get(url.parse().unwrap()).await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .map(|l| l.to_str().unwrap().to_owned());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        location,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Plays the browser: opens the authorize URL, then follows its redirect (after `tamper`)
/// to the loopback listener. Returns the listener's status and page.
pub async fn browse(url: String, tamper: impl FnOnce(String) -> String) -> (StatusCode, String) {
    let (status, location, _) = get(&url).await;
    assert_eq!(status, StatusCode::FOUND, "the mock consents at once");
    let (status, _, page) = get(&tamper(location.expect("a Location header"))).await;
    (status, page)
}

pub fn query(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).unwrap()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let base = url.split_once('?').map_or(url, |(b, _)| b);
    let pairs: Vec<(String, String)> = query(url)
        .into_iter()
        .map(|(k, v)| {
            if k == name {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    format!("{base}?{}", serde_urlencoded::to_string(pairs).unwrap())
}

/// The form fields of the token requests the mock saw with this grant type.
pub fn token_requests(mock: &MockVeracity, grant: &str) -> Vec<Vec<(String, String)>> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.contains("/oauth2/v2.0/token"))
        .map(|r| serde_urlencoded::from_bytes::<Vec<(String, String)>>(&r.body).unwrap())
        .filter(|form| form.iter().any(|(k, v)| k == "grant_type" && v == grant))
        .collect()
}

pub fn field<'a>(form: &'a [(String, String)], name: &str) -> &'a str {
    form.iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

pub async fn start(sign_in: &SignIn) -> (PendingSignIn, String) {
    let pending = sign_in.start().await.unwrap();
    let url = pending.url().to_owned();
    (pending, url)
}

/// The whole sign-in with a browser that follows every redirect untouched: start, browse,
/// finish. Fails the test if the sign-in fails.
pub async fn signed_in(sign_in: &SignIn) -> SignedIn {
    let (pending, url) = start(sign_in).await;
    let (signed_in, _) = tokio::join!(pending.finish(), browse(url, |l| l));
    signed_in.unwrap()
}

/// `url` with its `localhost` host replaced by `ip` (`127.0.0.1` or `[::1]`): where a browser
/// that resolved `localhost` one way connects.
pub fn over(url: &str, ip: &str) -> String {
    url.replacen("//localhost:", &format!("//{ip}:"), 1)
}

/// [`get`] over one loopback address.
pub async fn get_over(url: &str, ip: &str) -> (StatusCode, Option<String>, String) {
    get(&over(url, ip)).await
}

/// Whether this machine can listen on `[::1]`; prints why not when it cannot.
pub fn ipv6_loopback() -> bool {
    match std::net::TcpListener::bind("[::1]:0") {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipped: cannot bind [::1] on this machine ({e})");
            false
        }
    }
}

/// Posts a form to `url` and returns the status and the JSON answer.
pub async fn post_form(url: &str, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(
            serde_urlencoded::to_string(form).unwrap(),
        )))
        .unwrap();
    let response = http_client().request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

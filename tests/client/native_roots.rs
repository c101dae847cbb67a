//! Feature `native-roots`: the default client trusts the platform's roots as well as the
//! webpki roots, and a private CA given through `SSL_CERT_FILE` (which rustls-native-certs
//! honours) is trusted; `Roots::Webpki` does not trust it, `Roots::Native` does.
//!
//! `SSL_CERT_FILE` is only ever set on a child process: this binary runs itself again for
//! each case (`child`), so the variable never changes in a running test process.
#![cfg(feature = "native-roots")]

use crate::common;

use common::child::{self, Child};
use common::proxy::{TlsFront, fixtures_tls};
use veracity_auth::{HttpClient, Roots, TokenSource};
use veracity_auth_mock::MockVeracity;

/// Runs `child` with the given roots and `SSL_CERT_FILE` (if any); its one-line outcome.
fn run_child(
    roots: &str,
    client_id: &str,
    client_secret: &str,
    token_url: &str,
    cert_file: Option<&str>,
) -> String {
    let stdout = Child::new("native_roots::child", roots)
        .client(client_id, client_secret, token_url)
        .envs_removed(["SSL_CERT_FILE", "SSL_CERT_DIR"])
        .envs_removed(["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"])
        .envs(cert_file.map(|file| ("SSL_CERT_FILE", file)))
        .passed();
    stdout
        .lines()
        .find_map(|l| Some(l.split_once("child fetched: ")?.1))
        .unwrap_or_else(|| panic!("the child did not run: {stdout}"))
        .to_owned()
}

/// The child side; does nothing unless run by `run_child`.
#[tokio::test]
async fn child() {
    let Some(roots) = child::role() else {
        return;
    };
    let client = |roots| HttpClient::builder().roots(roots).build().unwrap();
    let endpoint = child::endpoint();
    let endpoint = match roots.as_str() {
        "default" => endpoint,
        "webpki" => endpoint.http_client(client(Roots::Webpki)),
        "native" => endpoint.http_client(client(Roots::Native)),
        "both" => endpoint.http_client(client(Roots::WebpkiAndNative)),
        other => panic!("unknown roots {other}"),
    };
    let creds = child::credentials_at(endpoint);
    match creds.fetch().await {
        Ok(_) => println!("child fetched: ok"),
        Err(e) => println!("child fetched: error: {:#}", anyhow::Error::from(e)),
    }
}

/// Runs the children off the runtime's worker threads, which serve the mock meanwhile.
async fn outcome(roots: &'static str, mock: &MockVeracity, token_url: &str, ca: bool) -> String {
    let (id, secret, url) = (
        mock.client_id().to_owned(),
        mock.client_secret().to_owned(),
        token_url.to_owned(),
    );
    let ca = ca.then(|| fixtures_tls().join("ca.pem").to_str().unwrap().to_owned());
    tokio::task::spawn_blocking(move || run_child(roots, &id, &secret, &url, ca.as_deref()))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_in_ssl_cert_file_is_trusted_with_native_roots() {
    assert_eq!(Roots::default(), Roots::WebpkiAndNative);
    let mock = MockVeracity::start().await.unwrap();
    let front = TlsFront::start(mock.addr()).await;
    let token_url = mock
        .token_url()
        .replace(&mock.url(), &format!("https://localhost:{}", front.port()));

    // With the test CA in SSL_CERT_FILE: the default client, both and native trust it.
    for roots in ["default", "both", "native"] {
        assert_eq!(
            outcome(roots, &mock, &token_url, true).await,
            "ok",
            "{roots}"
        );
    }
    assert_eq!(mock.stats().tokens_issued, 3);
    // The webpki roots alone do not, whatever SSL_CERT_FILE says.
    let refused = outcome("webpki", &mock, &token_url, true).await;
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("unknown issuer"),
        "{refused}"
    );
    // Without SSL_CERT_FILE the platform store does not hold the test CA either.
    let refused = outcome("default", &mock, &token_url, false).await;
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("unknown issuer"),
        "{refused}"
    );
    assert_eq!(mock.stats().tokens_issued, 3);
    assert_eq!(mock.stats().token_requests, 3);
}

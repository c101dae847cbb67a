//! The default token client inside an application that links both of rustls' crypto
//! providers (as reqwest 0.13, hyper-rustls and tonic with their default TLS features do) and
//! installs no process default.
//!
//! `.ci/run` builds this one target with both providers:
//!
//! ```text
//! VERACITY_AUTH_BOTH_PROVIDERS=1 cargo test --all-features --features rustls/aws_lc_rs --test rustls_providers
//! ```
//!
//! The test stays alone in its binary: nothing else in the process may install a default
//! provider, or the panic it guards against would be masked.

mod common;

use crate::common::account::layer_over;
use common::gateway::{http_client, workspace};
use http::StatusCode;
use tower::{ServiceBuilder, ServiceExt};
use veracity_auth::TokenEndpoint;
use veracity_auth::{ClientCredentials, HttpClient};
use veracity_auth_mock::MockVeracity;

#[tokio::test]
async fn the_default_client_fetches_a_token_whatever_providers_the_application_links() {
    let mock = MockVeracity::start().await.unwrap();
    // The default client (the one `ClientCredentials` uses unless told otherwise), built the
    // way the crate builds it; plain HTTP to the loopback mock still builds its rustls config.
    let source = ClientCredentials::new(mock.client_id(), mock.client_secret()).endpoint(
        TokenEndpoint::plain_http(mock.token_url())
            .unwrap()
            .http_client(HttpClient::default_https()),
    );
    let auth = layer_over(source, &mock);
    let api = ServiceBuilder::new()
        .layer(auth.clone())
        .service(http_client());

    let response = api
        .oneshot(workspace(&mock))
        .await
        .expect("a token fetch with the default client and a request served");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(auth.stats().fetches, 1);
    assert_eq!(auth.stats().fetch_failures, 0);
    assert_eq!(mock.stats().token_requests, 1);

    // Prove the build is the one this test is for: with two providers linked and no process
    // default, rustls cannot pick one by itself (and panics saying so).
    if std::env::var_os("VERACITY_AUTH_BOTH_PROVIDERS").is_some() {
        assert!(
            rustls::crypto::CryptoProvider::get_default().is_none(),
            "nothing in this process may install a default provider"
        );
        let picked = std::panic::catch_unwind(rustls::ClientConfig::builder);
        assert!(
            picked.is_err(),
            "this build links one provider only: run it with --features rustls/aws_lc_rs"
        );
    }
}

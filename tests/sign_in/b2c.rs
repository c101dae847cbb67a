//! Signing in the way Veracity's B2C expects it, and a mock that holds the client to it: the
//! policy's token endpoint, the documented `user_impersonation` scopes, `localhost` over IPv4
//! and IPv6, B2C's error codes and string fields, confidential apps.

use crate::common::account::layer_over;
use crate::common::gateway::recording_mock;
use http::StatusCode;
use tower::{Layer, ServiceExt};
use veracity_auth::TokenEndpoint;
use veracity_auth::{
    DEFAULT_USER_SCOPE, DEFAULT_USER_TOKEN_URL, RedirectHost, RefreshToken,
    SERVICES_API_USER_SCOPE, SignIn, TokenSource,
};
use veracity_auth_mock::MockVeracity;

use super::browser::*;
use crate::common::gateway::get_workspace;

const POLICY_PATH: &str =
    "/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/token";

#[test]
fn the_defaults_are_veracitys_documented_values() {
    // veracity/node-auth src/constants.ts (VERACITY_API_SCOPES), SPEC §1.
    assert_eq!(
        DEFAULT_USER_SCOPE,
        "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14/user_impersonation"
    );
    assert_eq!(
        SERVICES_API_USER_SCOPE,
        "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/user_impersonation"
    );
    assert_eq!(
        DEFAULT_USER_TOKEN_URL,
        format!("https://login.veracity.com{POLICY_PATH}")
    );
}

/// Signs in with the defaults but the mock's URLs; the browser reaches `localhost` over `ip`.
async fn sign_in_over(ip: &str) {
    let mock = recording_mock().await;
    let (pending, url) = start(&sign_in(&mock)).await;
    let redirect_uri = pending.redirect_uri().to_owned();
    assert!(
        redirect_uri.starts_with("http://localhost:"),
        "{redirect_uri}"
    );
    assert!(param(&url, "scope").unwrap().contains(DEFAULT_USER_SCOPE));
    let (signed_in, (status, page)) = tokio::join!(
        pending.finish(),
        browse(url, |location| over(&location, ip))
    );
    assert_eq!(status, StatusCode::OK, "{page}");
    let signed_in = signed_in.unwrap();
    // Code exchange and refresh go to the policy's token endpoint.
    mock.revoke_all_tokens();
    let layer = layer_over(signed_in.into_refresh_token().unwrap(), &mock);
    let response = get_workspace(&layer, &mock).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token_paths: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/token"))
        .map(|r| r.path)
        .collect();
    assert_eq!(token_paths, [POLICY_PATH, POLICY_PATH]);
    let stats = mock.stats();
    assert_eq!(
        (stats.authorization_code_grants, stats.refresh_token_grants),
        (1, 1)
    );
    assert_eq!(stats.token_errors, 0);
}

#[tokio::test]
async fn signing_in_on_localhost_works_when_the_browser_connects_over_ipv4() {
    sign_in_over("127.0.0.1").await;
}

#[tokio::test]
async fn signing_in_on_localhost_works_when_the_browser_connects_over_ipv6() {
    if !ipv6_loopback() {
        return;
    }
    sign_in_over("[::1]").await;
}

#[tokio::test]
async fn a_fixed_port_and_the_ipv4_address_can_be_chosen_for_the_redirect() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let pending = SignIn::new("app")
        .redirect_port(port)
        .start()
        .await
        .unwrap();
    assert_eq!(pending.redirect_uri(), format!("http://localhost:{port}/"));
    drop(pending);

    let pending = SignIn::new("app")
        .redirect_host(RedirectHost::Ipv4Loopback)
        .start()
        .await
        .unwrap();
    let uri = pending.redirect_uri().to_owned();
    assert!(uri.starts_with("http://127.0.0.1:"), "{uri}");
    let port = uri
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/');
    if ipv6_loopback() {
        assert!(
            tokio::net::TcpStream::connect(format!("[::1]:{port}"))
                .await
                .is_err(),
            "127.0.0.1 only"
        );
    }
}

#[tokio::test]
async fn the_mock_takes_user_grants_only_at_the_policys_token_endpoint() {
    let mock = MockVeracity::start().await.unwrap();
    let rt = mock.issue_refresh_token();
    let refresh = |url: String, rt: String| {
        let client_id = mock.client_id().to_owned();
        async move { refresh_grant(&url, &client_id, &rt).await }
    };

    // Policy-less: refused, and the refresh token is not spent.
    let (status, body) = refresh(mock.token_url(), rt.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_request", "{body}");
    let err = RefreshToken::new(mock.client_id(), rt.clone())
        .endpoint(TokenEndpoint::plain_http(mock.token_url()).unwrap())
        .fetch()
        .await
        .unwrap_err();
    assert_eq!(err.oauth().unwrap().error, "invalid_request", "{err}");

    // The policy-less path with the policy as `p`, any case: accepted.
    let with_p = format!("{}?p=b2c_1a_signinwithadfsidp", mock.token_url());
    let (status, body) = refresh(with_p, rt.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rotated = body["refresh_token"].as_str().unwrap().to_owned();
    // The policy's own path: accepted.
    let (status, body) = refresh(mock.user_token_url(), rotated).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stats = mock.stats();
    assert_eq!(stats.refresh_token_grants, 4);
    assert_eq!(stats.rejected_refresh_tokens, 0);
}

#[tokio::test]
async fn the_mock_accepts_the_documented_user_scopes_and_refuses_others_with_b2cs_codes() {
    let mock = MockVeracity::start().await.unwrap();
    assert_eq!(mock.user_scope(), DEFAULT_USER_SCOPE);
    assert_eq!(mock.services_user_scope(), SERVICES_API_USER_SCOPE);
    let bare = "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14";
    let both = format!("openid {DEFAULT_USER_SCOPE} {SERVICES_API_USER_SCOPE}");
    let cases = [
        (format!("openid offline_access {DEFAULT_USER_SCOPE}"), None),
        (format!("openid offline_access {SERVICES_API_USER_SCOPE}"), None),
        // An app ID URI naming no permission: what the crate sent before.
        (format!("openid offline_access {bare}"), Some("AADB2C90055")),
        (
            "openid https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/.default".to_owned(),
            Some("AADB2C90117"),
        ),
        (both, Some("AADB2C90146")),
        ("openid offline_access".to_owned(), Some("AADB2C90115")),
    ];
    for (scope, refused) in cases {
        let pending = SignIn::new(mock.client_id())
            .authorize_url(mock.authorize_url())
            .scope("ignored")
            .start()
            .await
            .unwrap();
        let url = with_param(pending.url(), "scope", &scope);
        let (status, location, _) = get(&url).await;
        assert_eq!(status, StatusCode::FOUND);
        let location = location.unwrap();
        match refused {
            None => assert!(param(&location, "code").is_some(), "{scope}: {location}"),
            Some(code) => {
                assert_eq!(param(&location, "error").as_deref(), Some("invalid_scope"));
                let description = param(&location, "error_description").unwrap();
                assert!(description.starts_with(code), "{scope}: {description}");
            }
        }
    }
}

#[tokio::test]
async fn the_mock_refuses_with_the_codes_of_the_b2c_reference() {
    let mock = MockVeracity::builder()
        .client("mock-client-id", "mock-client-secret")
        .start()
        .await
        .unwrap();
    let (pending, url) = start(&sign_in(&mock)).await;
    drop(pending);
    // Unknown client: a page, never a redirect.
    let (status, location, page) = get(&with_param(&url, "client_id", "stranger")).await;
    assert_eq!((status, location), (StatusCode::BAD_REQUEST, None));
    assert!(page.starts_with("AADB2C90018"), "{page}");
    let (status, body) = post_form(
        &mock.user_token_url(),
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "stranger"),
            ("refresh_token", "x"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADB2C90018"),
        "{body}"
    );
    // Unsupported response_type.
    let (_, location, _) = get(&with_param(&url, "response_type", "token")).await;
    let location = location.unwrap();
    assert_eq!(
        param(&location, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert!(
        param(&location, "error_description")
            .unwrap()
            .starts_with("AADB2C90013")
    );
    // PKCE mismatch (AADB2C90182) and a scope naming no permission (AADB2C90055): see
    // `a_verifier_that_does_not_match_the_challenge_fails_with_invalid_grant` and
    // `the_mock_accepts_the_documented_user_scopes_and_refuses_others_with_b2cs_codes`.
}

#[tokio::test]
async fn user_grants_answer_every_field_as_a_string_with_the_apis_resource() {
    for (scope, resource) in [
        (DEFAULT_USER_SCOPE, "37c59c8d-cd9d-4cd5-b05a-e67f1650ee14"),
        (
            SERVICES_API_USER_SCOPE,
            "83054ebf-1d7b-43f5-82ad-b2bde84d7b75",
        ),
    ] {
        let mock = recording_mock().await;
        let rt = signed_in(&sign_in(&mock).scope(scope))
            .await
            .refresh_token()
            .unwrap()
            .to_owned();
        let (status, body) = post_form(
            &mock.user_token_url(),
            &[
                ("grant_type", "refresh_token"),
                ("client_id", mock.client_id()),
                ("refresh_token", &rt),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        for name in [
            "expires_in",
            "not_before",
            "expires_on",
            "refresh_token_expires_in",
            "resource",
        ] {
            assert!(body[name].is_string(), "{name} in {body}");
        }
        assert_eq!(body["resource"], resource);
        assert!(body["expires_in"].as_str().unwrap().parse::<u64>().is_ok());
    }
}

#[tokio::test]
async fn a_confidential_app_sends_its_secret_with_the_code_exchange_and_every_refresh() {
    let mock = recording_mock().await;
    mock.require_sign_in_client_secret(true);

    // Without the secret: refused with B2C's code for it.
    let (pending, url) = start(&sign_in(&mock)).await;
    let (result, _) = tokio::join!(pending.finish(), browse(url, |l| l));
    let err = result.unwrap_err();
    assert_eq!(
        err.oauth().unwrap().code().as_deref(),
        Some("AADB2C90079"),
        "{err}"
    );
    // A wrong one: AADB2C90081.
    let (pending, url) = start(&sign_in(&mock).client_secret("wrong")).await;
    let (result, _) = tokio::join!(pending.finish(), browse(url, |l| l));
    let err = result.unwrap_err();
    assert_eq!(
        err.oauth().unwrap().code().as_deref(),
        Some("AADB2C90081"),
        "{err}"
    );

    // With it: signed in, and refreshed.
    let source = signed_in(&sign_in(&mock).client_secret(mock.client_secret()))
        .await
        .into_refresh_token()
        .unwrap();
    mock.revoke_all_tokens();
    let api = layer_over(source, &mock).layer(http_client());
    let response = api.oneshot(workspace(&mock)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for grant in ["authorization_code", "refresh_token"] {
        let forms = token_requests(&mock, grant);
        let last = forms.last().unwrap();
        assert_eq!(
            field(last, "client_secret"),
            mock.client_secret(),
            "{grant}"
        );
    }
    assert_eq!(mock.stats().refresh_token_grants, 1);
}

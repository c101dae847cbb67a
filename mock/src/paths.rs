//! Where the mock answers and what it accepts there: the URL paths of the token, authorize and
//! gateway endpoints, the subscription-key header, and the user scopes and B2C policy Veracity
//! documents.

/// Path of the v2 token endpoint.
pub(crate) const TOKEN_PATH: &str = "/a68572e3-63ce-4bc1-acdc-b64943502e9d/oauth2/v2.0/token";
/// Path of the v1 token endpoint.
pub(crate) const TOKEN_PATH_V1: &str = "/dnvglb2cprod.onmicrosoft.com/oauth2/token";
/// Path of the gateway's v2 API.
pub(crate) const API_PATH: &str = "/veracity/dw/gateway/api/v2";
/// Path of the gateway's v1 API (the same endpoints).
pub(crate) const API_PATH_V1: &str = "/veracity/dw/gateway/api/v1";
/// Path of the authorize endpoint (Veracity's B2C policy).
pub(crate) const AUTHORIZE_PATH: &str =
    "/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/authorize";

/// The API Management subscription-key header.
pub(crate) const KEY_HEADER: &str = "ocp-apim-subscription-key";

/// The Data Fabric API's permission, for Data Workbench as a person (veracity/node-auth
/// `VERACITY_API_SCOPES.dataFabric`). Written out here, not taken from the client crate.
pub(crate) const DATA_FABRIC_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/37c59c8d-cd9d-4cd5-b05a-e67f1650ee14/user_impersonation";
/// The Services API's permission (veracity/node-auth `VERACITY_API_SCOPES.services`).
pub(crate) const SERVICES_SCOPE: &str =
    "https://dnvglb2cprod.onmicrosoft.com/83054ebf-1d7b-43f5-82ad-b2bde84d7b75/user_impersonation";
/// The B2C policy of Veracity's sign-in.
pub(crate) const POLICY: &str = "B2C_1A_SignInWithADFSIdp";
/// The token endpoint of that policy (B2C matches policy names case-insensitively).
pub(crate) const POLICY_TOKEN_PATH: &str =
    "/a68572e3-63ce-4bc1-acdc-b64943502e9d/b2c_1a_signinwithadfsidp/oauth2/v2.0/token";
/// The one API a scope string asks for: its resource (the app ID, as B2C's `resource` field
/// names it), or B2C's refusal (`error`, description with its `AADB2C` code).
pub(crate) fn check_scope(scope: &str) -> Result<&'static str, (&'static str, String)> {
    let mut resource = None;
    for item in scope.split_whitespace() {
        let found = match item {
            "openid" | "offline_access" | "profile" => continue,
            DATA_FABRIC_SCOPE => "37c59c8d-cd9d-4cd5-b05a-e67f1650ee14",
            SERVICES_SCOPE => "83054ebf-1d7b-43f5-82ad-b2bde84d7b75",
            // An app ID URI with no permission after it, the form B2C refuses.
            _ if names_no_permission(item) => {
                return Err((
                    "invalid_scope",
                    format!(
                        "AADB2C90055: The scope '{item}' provided in request must specify a resource, such as 'https://example.com/calendar.read'."
                    ),
                ));
            }
            _ => {
                return Err((
                    "invalid_scope",
                    format!(
                        "AADB2C90117: The scope '{item}' provided in the request is not supported."
                    ),
                ));
            }
        };
        if resource.is_some_and(|r| r != found) {
            return Err((
                "invalid_scope",
                format!(
                    "AADB2C90146: The scope '{scope}' provided in request specifies more than one resource for an access token, which is not supported."
                ),
            ));
        }
        resource = Some(found);
    }
    resource.ok_or((
        "invalid_scope",
        "AADB2C90115: When requesting the 'code' response_type, the scope parameter must include a resource or client ID for access tokens, and 'openid' for ID tokens. Additionally include 'offline_access' for refresh tokens.".to_owned(),
    ))
}

/// `https://host/<app id>`: a resource, but no permission on it.
fn names_no_permission(scope: &str) -> bool {
    let Some(rest) = scope.strip_prefix("https://") else {
        return false;
    };
    let segments: Vec<&str> = rest.split('/').skip(1).filter(|s| !s.is_empty()).collect();
    segments.len() <= 1
}

/// Whether a token request came to the policy's token endpoint: its own path, or the
/// policy-less path with `?p=B2C_1A_SignInWithADFSIdp`.
pub(crate) fn is_policy_endpoint(uri: &http::Uri) -> bool {
    if uri.path().eq_ignore_ascii_case(POLICY_TOKEN_PATH) {
        return true;
    }
    let query: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    query
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("p") && v.eq_ignore_ascii_case(POLICY))
}

//! Configuration from the environment: `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`,
//! `VERACITY_API_KEY`, and optionally `VERACITY_TOKEN_URL` and `VERACITY_SCOPE` or
//! `VERACITY_RESOURCE`.
//!
//! With neither `VERACITY_SCOPE` nor `VERACITY_RESOURCE`, the service account uses Veracity's
//! documented form: the Azure AD v1 endpoint with the Services API resource
//! ([`DEFAULT_RESOURCE`](crate::DEFAULT_RESOURCE)).
//! `VERACITY_RESOURCE` keeps the v1 endpoint, `VERACITY_SCOPE` selects the v2.0 endpoint,
//! unless `VERACITY_TOKEN_URL` names one (an `https://` URL). Setting both is an error naming
//! them, a missing variable is an error naming it, and so is a `VERACITY_TOKEN_URL` that is not
//! a usable token URL.
//!
//! The `quickstart` and `dw` examples also need `VERACITY_WORKSPACE_ID` to talk to the real
//! Veracity. With none of the variables set they use the embedded mock, and with only some of
//! them set they name the missing ones and exit with an error: [`is_configured`] does that
//! check for your own tools.

use crate::{ClientCredentials, ConfigError, TokenEndpoint, VeracityAuthLayer};

/// The service account's client id.
pub const CLIENT_ID: &str = "VERACITY_CLIENT_ID";
/// The service account's client secret.
pub const CLIENT_SECRET: &str = "VERACITY_CLIENT_SECRET";
/// The workspace service account's API key.
pub const API_KEY: &str = "VERACITY_API_KEY";
/// Optional: the token endpoint.
pub const TOKEN_URL: &str = "VERACITY_TOKEN_URL";
/// Optional: the scope; selects the v2.0 endpoint ([`V2_TOKEN_URL`](crate::V2_TOKEN_URL))
/// unless `VERACITY_TOKEN_URL` is set.
pub const SCOPE: &str = "VERACITY_SCOPE";
/// Optional: the resource (Azure AD v1, the default form), instead of a scope.
pub const RESOURCE: &str = "VERACITY_RESOURCE";

/// The variables a service account needs, in the order they are reported.
const REQUIRED: [&str; 3] = [CLIENT_ID, CLIENT_SECRET, API_KEY];
/// The optional ones: setting any of them also means "configured".
const OPTIONAL: [&str; 3] = [TOKEN_URL, SCOPE, RESOURCE];

/// Whether the environment describes a service account: `Ok(false)` when none of the
/// `VERACITY_*` variables (nor any of `also_required`) is set, `Ok(true)` when all required
/// ones are, and otherwise a [`ConfigError::Env`] naming every missing variable.
///
/// Tools that fall back to a mock or a default when nothing is configured use it to refuse
/// a half-done set-up instead of quietly ignoring it.
///
/// ```
/// // A tool that also needs a workspace id:
/// match veracity_auth::env::is_configured(&["VERACITY_WORKSPACE_ID"]) {
///     Ok(true) => { /* VeracityAuthLayer::from_env() */ }
///     Ok(false) => { /* nothing set: use the embedded mock */ }
///     Err(missing) => eprintln!("{missing}"),
/// }
/// ```
pub fn is_configured(also_required: &[&str]) -> Result<bool, ConfigError> {
    configured_from(&|name| std::env::var(name).ok(), also_required)
}

fn configured_from(
    lookup: &dyn Fn(&str) -> Option<String>,
    also_required: &[&str],
) -> Result<bool, ConfigError> {
    let required = REQUIRED.iter().chain(also_required);
    let (set, missing): (Vec<&str>, Vec<&str>) =
        required.partition(|name| optional(lookup, name).is_some());
    let optional_set: Vec<&str> = OPTIONAL
        .into_iter()
        .filter(|name| optional(lookup, name).is_some())
        .collect();
    match (
        missing.is_empty(),
        set.is_empty() && optional_set.is_empty(),
    ) {
        (true, _) => Ok(true),
        (false, true) => Ok(false),
        (false, false) => Err(ConfigError::Env(format!(
            "the Veracity set-up is incomplete: {} set, but {} {} not set; set all of them, or none",
            set.into_iter()
                .chain(optional_set)
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
        ))),
    }
}

impl VeracityAuthLayer {
    /// A layer for the service account described by the environment (see the
    /// [`env`](crate::env) module for the variables).
    ///
    /// Fails with [`ConfigError::MissingEnv`] naming the first missing variable,
    /// [`ConfigError::InvalidApiKey`] for a key that cannot be a header, or [`ConfigError::Env`] naming
    /// `VERACITY_TOKEN_URL` when it is not a usable token URL.
    pub fn from_env() -> Result<Self, ConfigError> {
        layer_from(|name| std::env::var(name).ok())
    }
}

impl ClientCredentials {
    /// Service-account credentials from `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET` and
    /// the optional `VERACITY_TOKEN_URL`, `VERACITY_SCOPE`, `VERACITY_RESOURCE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        credentials_from(&|name| std::env::var(name).ok())
    }
}

pub(crate) fn layer_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<VeracityAuthLayer, ConfigError> {
    let credentials = credentials_from(&lookup)?;
    let key = required(&lookup, API_KEY)?;
    let authenticator = crate::Authenticator::builder(credentials)
        .api_key(key)
        .build()?;
    Ok(VeracityAuthLayer::new(authenticator))
}

fn credentials_from(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<ClientCredentials, ConfigError> {
    let id = required(lookup, CLIENT_ID)?;
    let secret = required(lookup, CLIENT_SECRET)?;
    let mut credentials = ClientCredentials::new(id, secret);
    if let Some(url) = optional(lookup, TOKEN_URL) {
        let endpoint = TokenEndpoint::new(url)
            .map_err(|e| ConfigError::Env(format!("{TOKEN_URL} cannot be used: {e}")))?;
        credentials = credentials.endpoint(endpoint);
    }
    match (optional(lookup, SCOPE), optional(lookup, RESOURCE)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Env(format!(
                "set {SCOPE} or {RESOURCE}, not both"
            )));
        }
        (Some(scope), None) => credentials = credentials.scope(scope),
        (None, Some(resource)) => credentials = credentials.resource(resource),
        (None, None) => {}
    }
    Ok(credentials)
}

fn required(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    optional(lookup, name).ok_or(ConfigError::MissingEnv(name))
}

fn optional(lookup: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn missing_variables_are_named() {
        let err = layer_from(env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingEnv(CLIENT_ID)));
        assert!(err.to_string().contains("VERACITY_CLIENT_ID"));
        let err = layer_from(env(&[(CLIENT_ID, "id"), (CLIENT_SECRET, "s")])).unwrap_err();
        assert!(err.to_string().contains("VERACITY_API_KEY"), "{err}");
        let err = layer_from(env(&[
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, " "),
            (API_KEY, "k"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("VERACITY_CLIENT_SECRET"), "{err}");
    }

    #[test]
    fn complete_environment_builds_a_layer_without_leaking() {
        let layer = layer_from(env(&[
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, "the-secret"),
            (API_KEY, "the-key"),
            (RESOURCE, "https://r"),
        ]))
        .unwrap();
        let debug = format!("{layer:?}");
        assert!(
            !debug.contains("the-secret") && !debug.contains("the-key"),
            "{debug}"
        );
    }

    #[test]
    fn scope_and_resource_together_is_an_error() {
        let err = layer_from(env(&[
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, "s"),
            (API_KEY, "k"),
            (SCOPE, "a"),
            (RESOURCE, "b"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::Env(_)));
        let message = err.to_string();
        assert!(
            message.contains("VERACITY_SCOPE") && message.contains("VERACITY_RESOURCE"),
            "{message}"
        );
    }

    fn url_of(pairs: &[(&str, &str)]) -> String {
        let base = [(CLIENT_ID, "id"), (CLIENT_SECRET, "s")];
        let all: Vec<_> = base.iter().chain(pairs).copied().collect();
        let debug = format!("{:?}", credentials_from(&env(&all)).unwrap());
        let start = debug.find("token_url: ").unwrap() + "token_url: ".len();
        debug[start..].split(',').next().unwrap().to_owned()
    }

    #[test]
    fn resource_means_the_v1_url_scope_the_v2_url_unless_the_url_is_set() {
        assert_eq!(url_of(&[]), crate::DEFAULT_TOKEN_URL);
        assert_eq!(url_of(&[(RESOURCE, "https://r")]), crate::DEFAULT_TOKEN_URL);
        assert_eq!(
            url_of(&[(SCOPE, "https://r/.default")]),
            crate::V2_TOKEN_URL
        );
        for audience in [(SCOPE, "https://r/.default"), (RESOURCE, "https://r")] {
            assert_eq!(
                url_of(&[(TOKEN_URL, "https://login.example.com/t"), audience]),
                "https://login.example.com/t"
            );
        }
    }

    #[test]
    fn a_bad_token_url_is_an_error_naming_the_variable() {
        for url in [
            "not a url",
            "http://login.example.com/t",
            "https://u:p@host/t",
        ] {
            let base = [(CLIENT_ID, "id"), (CLIENT_SECRET, "s"), (TOKEN_URL, url)];
            let err = credentials_from(&env(&base)).unwrap_err();
            assert!(matches!(err, ConfigError::Env(_)), "{url}: {err:?}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(TOKEN_URL), "{shown}");
            assert!(!shown.contains("u:p"), "{shown}");
        }
    }

    #[test]
    fn a_partial_set_up_names_every_missing_variable() {
        let extra = ["VERACITY_WORKSPACE_ID"];
        assert!(!configured_from(&env(&[]), &extra).unwrap());
        let all = [
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, "s"),
            (API_KEY, "k"),
            ("VERACITY_WORKSPACE_ID", "ws"),
        ];
        assert!(configured_from(&env(&all), &extra).unwrap());
        let err = configured_from(&env(&[(CLIENT_ID, "id"), (API_KEY, " ")]), &extra).unwrap_err();
        let message = err.to_string();
        for missing in [CLIENT_SECRET, API_KEY, "VERACITY_WORKSPACE_ID"] {
            assert!(message.contains(missing), "{message}");
        }
        assert!(message.contains("VERACITY_CLIENT_ID set"), "{message}");
        // An optional variable alone is a set-up begun, not nothing.
        let err = configured_from(&env(&[(SCOPE, "x")]), &[]).unwrap_err();
        assert!(
            err.to_string().contains(
                "VERACITY_CLIENT_ID, VERACITY_CLIENT_SECRET, VERACITY_API_KEY are not set"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_api_key_with_a_newline_is_refused() {
        let err = layer_from(env(&[
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, "s"),
            (API_KEY, "k\nX: y"),
        ]))
        .unwrap_err();
        assert!(matches!(err, ConfigError::InvalidApiKey));
    }
}

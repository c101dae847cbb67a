//! Configuration from the environment: `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET`,
//! `VERACITY_API_KEY`, and optionally `VERACITY_TOKEN_URL` and `VERACITY_SCOPE` or
//! `VERACITY_RESOURCE`.

use crate::{ClientCredentials, Error, VeracityAuthLayer};

/// The service account's client id.
pub const CLIENT_ID: &str = "VERACITY_CLIENT_ID";
/// The service account's client secret.
pub const CLIENT_SECRET: &str = "VERACITY_CLIENT_SECRET";
/// The workspace service account's API key.
pub const API_KEY: &str = "VERACITY_API_KEY";
/// Optional: the token endpoint.
pub const TOKEN_URL: &str = "VERACITY_TOKEN_URL";
/// Optional: the scope (v2.0 endpoints).
pub const SCOPE: &str = "VERACITY_SCOPE";
/// Optional: the resource (Azure AD v1 endpoints), instead of a scope.
pub const RESOURCE: &str = "VERACITY_RESOURCE";

impl VeracityAuthLayer {
    /// A layer for the service account described by the environment (see the
    /// [`env`](crate::env) module for the variables).
    ///
    /// Fails with [`Error::MissingEnv`] naming the first missing variable, or
    /// [`Error::InvalidApiKey`] for a key that cannot be a header.
    pub fn from_env() -> Result<Self, Error> {
        layer_from(|name| std::env::var(name).ok())
    }
}

impl ClientCredentials {
    /// Service-account credentials from `VERACITY_CLIENT_ID`, `VERACITY_CLIENT_SECRET` and
    /// the optional `VERACITY_TOKEN_URL`, `VERACITY_SCOPE`, `VERACITY_RESOURCE`.
    pub fn from_env() -> Result<Self, Error> {
        credentials_from(&|name| std::env::var(name).ok())
    }
}

pub(crate) fn layer_from(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<VeracityAuthLayer, Error> {
    let credentials = credentials_from(&lookup)?;
    let key = required(&lookup, API_KEY)?;
    let layer = VeracityAuthLayer::new(credentials).api_key(key);
    if matches!(layer.shared.api_key, crate::layer::ApiKey::Invalid) {
        return Err(Error::InvalidApiKey);
    }
    Ok(layer)
}

fn credentials_from(lookup: &dyn Fn(&str) -> Option<String>) -> Result<ClientCredentials, Error> {
    let id = required(lookup, CLIENT_ID)?;
    let secret = required(lookup, CLIENT_SECRET)?;
    let mut credentials = ClientCredentials::new(id, secret);
    if let Some(url) = optional(lookup, TOKEN_URL) {
        credentials = credentials.token_url(url);
    }
    match (optional(lookup, SCOPE), optional(lookup, RESOURCE)) {
        (Some(_), Some(_)) => {
            return Err(Error::Config(format!(
                "set {SCOPE} or {RESOURCE}, not both"
            )));
        }
        (Some(scope), None) => credentials = credentials.scope(scope),
        (None, Some(resource)) => credentials = credentials.resource(resource),
        (None, None) => {}
    }
    Ok(credentials)
}

fn required(lookup: &dyn Fn(&str) -> Option<String>, name: &'static str) -> Result<String, Error> {
    optional(lookup, name).ok_or(Error::MissingEnv(name))
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
        assert!(matches!(err, Error::MissingEnv(CLIENT_ID)));
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
        assert!(matches!(err, Error::Config(_)));
    }

    #[test]
    fn an_api_key_with_a_newline_is_refused() {
        let err = layer_from(env(&[
            (CLIENT_ID, "id"),
            (CLIENT_SECRET, "s"),
            (API_KEY, "k\nX: y"),
        ]))
        .unwrap_err();
        assert!(matches!(err, Error::InvalidApiKey));
    }
}

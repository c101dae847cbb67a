//! Profiles: the TOML config file, and the implicit profile the `VERACITY_*` variables make.
//!
//! ```toml
//! default_profile = "me"
//!
//! [profiles.ci]                     # a service account
//! kind = "service-account"
//! client_id = "3f2b0c1e-…"
//! client_secret = { env = "CI_VERACITY_SECRET" }   # or { file = "/run/secrets/x" }, { keychain = "ci" }
//! api_key = { file = "/run/secrets/veracity-api-key" }
//!
//! [profiles.me]                     # a person, signing in with `veracity-auth login`
//! kind = "person"
//! client_id = "my-app-client-id"
//! api_key = { keychain = "me-api-key" }
//! workspace = "my-workspace-id"     # for `sas`
//! ```
//!
//! Optional for both kinds: `scope`, `token_url`, `gateway`, `workspace`; a service account
//! also takes `resource` (Azure AD v1, Veracity's default form), a person `authorize_url` and
//! a `client_secret` (confidential apps). The file never holds a secret: a secret is always
//! a reference to an environment variable, a file or the keychain, and a literal string
//! where one belongs is refused.

use std::{collections::BTreeMap, path::PathBuf};

use serde::Deserialize;
use veracity_auth::env as vars;

use crate::CliError;

/// The variable naming the config file (default: `config.toml` in the platform's
/// configuration directory for `veracity-auth`).
pub const CONFIG_VAR: &str = "VERACITY_AUTH_CONFIG";
/// The name of the implicit profile made from the `VERACITY_*` variables.
pub const ENV_PROFILE: &str = "env";
/// Optional with the implicit profile: the workspace `sas` asks for.
pub const WORKSPACE_VAR: &str = "VERACITY_WORKSPACE_ID";

/// The config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    default_profile: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// Who a profile signs in as.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// OAuth 2.0 client credentials.
    ServiceAccount,
    /// A signed-in person (authorization code with PKCE, then refresh tokens).
    Person,
}

/// One profile, as written in the file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Set when the profile is chosen: its name in the file, or [`ENV_PROFILE`].
    #[serde(skip)]
    pub name: String,
    /// Service account or person.
    pub kind: Kind,
    /// The app's client id.
    pub client_id: String,
    /// A service account's secret; a confidential app's, for a person.
    pub client_secret: Option<SecretRef>,
    /// The Data Workbench API key (`Ocp-Apim-Subscription-Key`).
    pub api_key: SecretRef,
    /// The scope (a service account: selects Azure AD v2.0).
    pub scope: Option<String>,
    /// A service account's resource (Azure AD v1).
    pub resource: Option<String>,
    /// The token endpoint.
    pub token_url: Option<String>,
    /// A person's authorize endpoint.
    pub authorize_url: Option<String>,
    /// The Data Workbench gateway (default Veracity's).
    pub gateway: Option<String>,
    /// The workspace, for `sas`.
    pub workspace: Option<String>,
}

/// Where a secret is: the file only ever names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// An environment variable.
    Env(String),
    /// A file (its content, without surrounding white space).
    File(PathBuf),
    /// An entry of the operating system's keychain, service `veracity-auth` (feature `keyring`).
    Keychain(String),
}

/// The config file: `VERACITY_AUTH_CONFIG`, or `config.toml` in the configuration directory.
pub fn config_path() -> Option<PathBuf> {
    match std::env::var_os(CONFIG_VAR) {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ => directories::ProjectDirs::from("com", "DNV", "veracity-auth")
            .map(|dirs| dirs.config_dir().join("config.toml")),
    }
}

/// The profile `name` (from `--profile` or `VERACITY_PROFILE`), or the default one: the
/// file's `default_profile`, its only profile, or, with no file, the `VERACITY_*` variables.
pub fn load(name: Option<&str>) -> Result<Profile, CliError> {
    let path = config_path();
    let explicit = std::env::var_os(CONFIG_VAR).is_some_and(|p| !p.is_empty());
    let text = match path.as_ref().map(std::fs::read_to_string) {
        Some(Ok(text)) => Some(text),
        Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound && !explicit => None,
        Some(Err(e)) => {
            let path = path
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string());
            return Err(CliError::Config(format!(
                "cannot read the config file {path}: {e}"
            )));
        }
        None => None,
    };
    match text {
        Some(text) => {
            let path = path.unwrap_or_default();
            let config = parse(&text).map_err(|why| {
                CliError::Config(format!(
                    "the config file {} is not valid: {why}",
                    path.display()
                ))
            })?;
            choose(config, name)
        }
        None if name.is_none_or(|n| n == ENV_PROFILE) => from_env(),
        None => Err(CliError::Config(format!(
            "no profile `{}`: there is no config file ({})",
            name.unwrap_or_default(),
            path.map_or("no configuration directory".into(), |p| p
                .display()
                .to_string())
        ))),
    }
}

/// The file, or what is wrong with it: the message and the line, never the line's text
/// (which `toml`'s own `Display` quotes, and which may hold a secret written by mistake).
fn parse(text: &str) -> Result<Config, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = match e.message() {
            m if m.contains(SECRET_FORMS) => SECRET_FORMS.to_owned(),
            m => m.to_owned(),
        };
        match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        }
    })
}

fn choose(mut config: Config, name: Option<&str>) -> Result<Profile, CliError> {
    let name = match (name, &config.default_profile) {
        (Some(name), _) => name.to_owned(),
        (None, Some(name)) => name.clone(),
        (None, None) if config.profiles.len() == 1 => {
            config.profiles.keys().next().cloned().unwrap_or_default()
        }
        (None, None) if config.profiles.is_empty() => return from_env(),
        (None, None) => {
            return Err(CliError::Config(format!(
                "several profiles and no `default_profile`: choose one with --profile ({})",
                config
                    .profiles
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let Some(mut profile) = config.profiles.remove(&name) else {
        if name == ENV_PROFILE {
            return from_env();
        }
        return Err(CliError::Config(format!(
            "no profile `{name}` in the config file (it has: {})",
            config
                .profiles
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    profile.name = name;
    profile.check()?;
    Ok(profile)
}

/// The implicit profile: a service account from the variables the library reads.
fn from_env() -> Result<Profile, CliError> {
    if !vars::is_configured(&[])? {
        return Err(CliError::Config(format!(
            "nothing is configured: write a config file ({}) or set {}, {} and {}",
            config_path().map_or("none".into(), |p| p.display().to_string()),
            vars::CLIENT_ID,
            vars::CLIENT_SECRET,
            vars::API_KEY
        )));
    }
    let var = |name| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let profile = Profile {
        name: ENV_PROFILE.to_owned(),
        kind: Kind::ServiceAccount,
        client_id: var(vars::CLIENT_ID).unwrap_or_default(),
        client_secret: Some(SecretRef::Env(vars::CLIENT_SECRET.to_owned())),
        api_key: SecretRef::Env(vars::API_KEY.to_owned()),
        scope: var(vars::SCOPE),
        resource: var(vars::RESOURCE),
        token_url: var(vars::TOKEN_URL),
        authorize_url: None,
        gateway: None,
        workspace: var(WORKSPACE_VAR),
    };
    profile.check()?;
    Ok(profile)
}

impl Profile {
    /// Settings that cannot go together.
    fn check(&self) -> Result<(), CliError> {
        let fail = |why: &str| Err(CliError::Config(format!("profile `{}`: {why}", self.name)));
        match self.kind {
            Kind::ServiceAccount if self.client_secret.is_none() => {
                fail("a service account needs `client_secret`")
            }
            Kind::ServiceAccount if self.authorize_url.is_some() => {
                fail("`authorize_url` is for a person's sign-in")
            }
            Kind::Person if self.resource.is_some() => {
                fail("`resource` is for a service account; a person's profile takes `scope`")
            }
            _ if self.scope.is_some() && self.resource.is_some() => {
                fail("set `scope` or `resource`, not both")
            }
            _ if self.client_id.trim().is_empty() => fail("`client_id` is empty"),
            _ => Ok(()),
        }
    }

    /// The audience tokens are for: what the token cache is keyed by, beside the profile.
    pub fn audience(&self) -> &str {
        match (&self.scope, &self.resource, self.kind) {
            (Some(scope), _, _) => scope,
            (None, Some(resource), _) => resource,
            (None, None, Kind::ServiceAccount) => veracity_auth::DEFAULT_RESOURCE,
            (None, None, Kind::Person) => veracity_auth::DEFAULT_USER_SCOPE,
        }
    }
}

const SECRET_FORMS: &str = "a secret is never written in the config file: use { env = \"NAME\" }, { file = \"PATH\" } or { keychain = \"NAME\" }";

/// By hand, so that an error never quotes what was written: it may be a secret.
impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SecretRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(SECRET_FORMS)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretRef, A::Error> {
                let fail = || serde::de::Error::custom(SECRET_FORMS);
                let Some(key) = map.next_key::<String>()? else {
                    return Err(fail());
                };
                let value: String = map.next_value().map_err(|_: A::Error| fail())?;
                if map.next_key::<String>()?.is_some() {
                    return Err(fail());
                }
                match key.as_str() {
                    "env" => Ok(SecretRef::Env(value)),
                    "file" => Ok(SecretRef::File(value.into())),
                    "keychain" => Ok(SecretRef::Keychain(value)),
                    _ => Err(fail()),
                }
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl SecretRef {
    /// The secret itself; `what` names it in errors ("the API key of profile `ci`").
    pub fn resolve(&self, what: &str) -> Result<String, CliError> {
        let value = match self {
            SecretRef::Env(name) => std::env::var(name).map_err(|_| {
                CliError::Config(format!(
                    "{what}: the environment variable {name} is not set"
                ))
            })?,
            SecretRef::File(path) => std::fs::read_to_string(path).map_err(|e| {
                CliError::Config(format!("{what}: cannot read {}: {e}", path.display()))
            })?,
            SecretRef::Keychain(name) => keychain(name, what)?,
        };
        let value = value.trim().to_owned();
        if value.is_empty() {
            return Err(CliError::Config(format!("{what} is empty")));
        }
        Ok(value)
    }
}

#[cfg(feature = "keyring")]
fn keychain(name: &str, what: &str) -> Result<String, CliError> {
    let failed =
        |e: keyring::Error| CliError::Config(format!("{what}: the keychain entry `{name}`: {e}"));
    keyring::Entry::new("veracity-auth", name)
        .map_err(failed)?
        .get_password()
        .map_err(failed)
}

#[cfg(not(feature = "keyring"))]
fn keychain(name: &str, what: &str) -> Result<String, CliError> {
    Err(CliError::Config(format!(
        "{what}: the keychain entry `{name}` cannot be read: this build has no keychain support \
         (build with `--features keyring`)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str, name: Option<&str>) -> Result<Profile, CliError> {
        choose(parse(text).map_err(CliError::Config)?, name)
    }

    #[test]
    fn profiles_of_both_kinds_parse() {
        let text = r#"
            default_profile = "me"
            [profiles.ci]
            kind = "service-account"
            client_id = "ci-id"
            client_secret = { env = "CI_SECRET" }
            api_key = { file = "/run/key" }
            [profiles.me]
            kind = "person"
            client_id = "app"
            api_key = { keychain = "me" }
        "#;
        let me = profile(text, None).unwrap();
        assert_eq!((me.name.as_str(), me.kind), ("me", Kind::Person));
        assert_eq!(me.api_key, SecretRef::Keychain("me".into()));
        let ci = profile(text, Some("ci")).unwrap();
        assert_eq!(ci.client_secret, Some(SecretRef::Env("CI_SECRET".into())));
        assert_eq!(ci.audience(), veracity_auth::DEFAULT_RESOURCE);
        assert!(
            matches!(profile(text, Some("nope")), Err(CliError::Config(m)) if m.contains("ci, me"))
        );
    }

    #[test]
    fn a_secret_written_in_the_file_is_refused() {
        let text = r#"
            [profiles.ci]
            kind = "service-account"
            client_id = "ci-id"
            client_secret = "the-secret-itself"
            api_key = { env = "KEY" }
        "#;
        let Err(CliError::Config(message)) = profile(text, None) else {
            panic!()
        };
        assert!(!message.contains("the-secret-itself"), "{message}");
    }

    #[test]
    fn settings_that_do_not_go_together_are_named() {
        let text = r#"
            [profiles.me]
            kind = "person"
            client_id = "app"
            resource = "https://r"
            api_key = { env = "KEY" }
        "#;
        let Err(CliError::Config(message)) = profile(text, None) else {
            panic!()
        };
        assert!(message.contains("`resource`"), "{message}");
    }
}

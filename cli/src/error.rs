//! [`CliError`]: why a command failed, and the exit code that says so.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | ok |
//! | 1 | any other error |
//! | 2 | usage: a wrong argument (clap's own code) |
//! | 3 | configuration: the config file, a profile, a missing variable |
//! | 4 | a sign-in is needed: run `veracity-auth login` |
//! | 5 | temporary: network, 5xx, 429, a timeout; trying again may help |
//! | 6 | credentials refused: `invalid_client`, an expired secret, `invalid_grant` |

use std::{fmt, process::ExitCode};

use veracity_auth::{ConfigError, Error, ErrorKind};

/// Why a command failed. `Display` is the message for stderr; it never holds a secret
/// (the library's errors carry none, and neither do the messages written here).
#[derive(Debug)]
pub enum CliError {
    /// A setting is wrong (exit 3).
    Config(String),
    /// The profile needs a person's sign-in and none can be had without a prompt (exit 4).
    SignInNeeded {
        /// The profile, named in the `login` command to run.
        profile: String,
        /// The command to run: `login`, or `login --paste` where no browser can be opened.
        login: &'static str,
    },
    /// The library's error (exit code by [`Error::kind`]).
    Auth(Error),
    /// Anything else (exit 1).
    Other(String),
    /// `exec`'s child ended with this code, passed on as it is.
    Child(u8),
}

impl CliError {
    /// Any other error, with its message.
    pub fn other(message: impl fmt::Display) -> Self {
        CliError::Other(message.to_string())
    }

    /// The process exit code (see the module docs).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Other(_) => 1,
            CliError::Config(_) => 3,
            CliError::SignInNeeded { .. } => 4,
            CliError::Child(code) => *code,
            CliError::Auth(e) => match e.kind() {
                ErrorKind::Config => 3,
                ErrorKind::SignInRequired => 4,
                ErrorKind::Temporary => 5,
                ErrorKind::Refused => 6,
                _ => 1,
            },
        }
    }

    /// Writes the message to stderr (none for a child's code) and returns the exit code.
    pub fn report(&self) -> ExitCode {
        if !matches!(self, CliError::Child(_)) {
            eprintln!("veracity-auth: {self}");
        }
        ExitCode::from(self.exit_code())
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Config(message) | CliError::Other(message) => f.write_str(message),
            CliError::SignInNeeded { profile, login } => write!(
                f,
                "a sign-in is needed: run `veracity-auth --profile {profile} {login}`"
            ),
            CliError::Auth(e) if e.kind() == ErrorKind::SignInRequired => {
                write!(f, "{e}; sign in again with `veracity-auth login`")
            }
            CliError::Auth(e) => {
                // Each cause once, as `anyhow`'s `{:#}` shows them.
                let mut message = e.to_string();
                let mut source = std::error::Error::source(e);
                while let Some(cause) = source {
                    let cause_text = cause.to_string();
                    if !message.contains(&cause_text) {
                        message = format!("{message}: {cause_text}");
                    }
                    source = cause.source();
                }
                f.write_str(&message)
            }
            CliError::Child(code) => write!(f, "the command exited with {code}"),
        }
    }
}

impl std::error::Error for CliError {}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError::Auth(e)
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::Config(e.to_string())
    }
}

impl From<crate::proxy::ProxyError> for CliError {
    fn from(e: crate::proxy::ProxyError) -> Self {
        match e {
            crate::proxy::ProxyError::Config(why) => CliError::Config(why),
            crate::proxy::ProxyError::Io(e) => CliError::Other(format!("proxy: {e}")),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_error_kind() {
        assert_eq!(CliError::Config("x".into()).exit_code(), 3);
        assert_eq!(CliError::other("x").exit_code(), 1);
        let needed = CliError::SignInNeeded {
            profile: "me".into(),
            login: "login",
        };
        assert_eq!(needed.exit_code(), 4);
        assert!(
            needed
                .to_string()
                .contains("veracity-auth --profile me login")
        );
        assert_eq!(
            CliError::from(Error::Timeout(std::time::Duration::from_secs(1))).exit_code(),
            5
        );
        assert_eq!(CliError::from(ConfigError::InvalidApiKey).exit_code(), 3);
        assert_eq!(CliError::Child(7).exit_code(), 7);
    }
}

//! The command line.

use std::{ffi::OsString, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{output::Shell, proxy::ProxyArgs, session::Want};

const EXIT_CODES: &str = "\
Exit codes: 0 ok, 1 error, 2 usage, 3 configuration, 4 sign-in needed (run `veracity-auth login`),
5 temporary (network, 5xx, 429, timeout), 6 credentials refused.
The artefact (token, headers, variables, SAS) goes to stdout; everything else to stderr.";

/// DNV Veracity Data Workbench credentials for curl, scripts, notebooks and a local proxy.
///
/// Profiles live in `config.toml` in the platform's configuration directory (or the file
/// VERACITY_AUTH_CONFIG names); with no config file, the VERACITY_CLIENT_ID,
/// VERACITY_CLIENT_SECRET and VERACITY_API_KEY variables make one implicit profile.
#[derive(Debug, Parser)]
#[command(name = "veracity-auth", version, about, long_about, after_help = EXIT_CODES)]
pub struct Cli {
    /// The profile to use (default: the config file's `default_profile`, or its only one).
    #[arg(long, global = true, env = "VERACITY_PROFILE")]
    pub profile: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in as a person (the profile's app), and keep the sign-in for later runs.
    Login(LoginArgs),
    /// Forget the profile's sign-in and its kept tokens.
    Logout,
    /// The profile, its account, its token's expiry and where the sign-in is kept; exits 0
    /// when a token can be had without a prompt, 4 when a sign-in is needed.
    Status(Want),
    /// Print an access token.
    Token(TokenArgs),
    /// Print the two headers a request needs: `veracity-auth header | curl -H @- URL`.
    Header(HeaderArgs),
    /// Print the token and API key as shell variable assignments (VERACITY_ACCESS_TOKEN,
    /// VERACITY_API_KEY): `eval "$(veracity-auth env)"`.
    Env(EnvArgs),
    /// Run a command with VERACITY_ACCESS_TOKEN and VERACITY_API_KEY in its environment;
    /// exits with its code.
    Exec(ExecArgs),
    /// Print a storage SAS (a dataset's or File storage's) for azcopy, DuckDB or rclone.
    Sas(SasArgs),
    /// Serve a loopback HTTP proxy to the gateway that adds the credentials.
    Proxy(ProxyArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Print the sign-in address instead of opening a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// For machines without a browser: open the printed address anywhere, then paste the
    /// `http://localhost:…/?code=…` address the browser landed on.
    #[arg(long)]
    pub paste: bool,
}

/// `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// `raw`: the token alone; `json`: `{"accessToken","tokenType","expiresOn","expires_on","profile"}`.
    #[arg(long, value_enum, default_value = "raw")]
    pub format: TokenFormat,
    #[command(flatten)]
    pub want: Want,
}

/// `token --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TokenFormat {
    /// The token alone.
    Raw,
    /// The token, its type and its expiry (RFC 3339 UTC and epoch seconds).
    Json,
}

/// `header`.
#[derive(Debug, Args)]
pub struct HeaderArgs {
    /// `lines`: for `curl -H @-`; `json`: `{"headers":{…},"expires":"…"}` (Bazel, uv).
    #[arg(long, value_enum, default_value = "lines")]
    pub format: HeaderFormat,
    #[command(flatten)]
    pub want: Want,
}

/// `header --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum HeaderFormat {
    /// `Name: value` lines.
    Lines,
    /// The credential-helper JSON answer.
    Json,
}

/// `env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The shell to write for.
    #[arg(long, value_enum, default_value = "sh")]
    pub shell: Shell,
    #[command(flatten)]
    pub want: Want,
}

/// `exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub want: Want,
    /// The command and its arguments, after `--`.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<OsString>,
}

/// `sas`.
#[derive(Debug, Args)]
pub struct SasArgs {
    /// A dataset's read-only SAS.
    #[arg(long, required_unless_present = "storage", conflicts_with = "storage")]
    pub dataset: Option<String>,
    /// The workspace's File storage SAS.
    #[arg(long)]
    pub storage: bool,
    /// File storage: read and write (default read only).
    #[arg(long, requires = "storage")]
    pub write: bool,
    /// File storage: which one (default the workspace's default storage).
    #[arg(long, requires = "storage")]
    pub storage_name: Option<String>,
    /// File storage: the path the SAS is for (default the container root).
    #[arg(long, requires = "storage")]
    pub path: Option<String>,
    /// The workspace (default the profile's `workspace`).
    #[arg(long)]
    pub workspace: Option<String>,
    /// Print the URL of this file under the SAS's folder (`--format url` only), for a tool that
    /// reads one file (DuckDB's `read_parquet`).
    #[arg(long)]
    pub file: Option<String>,
    /// How long the SAS is asked to live.
    #[arg(long, default_value = "1h", value_parser = crate::output::parse_duration)]
    pub lifetime: Duration,
    /// `url`: the signed URL; `json`: URL, resource, token and expiry; `env`: variables for
    /// azcopy, DuckDB and rclone.
    #[arg(long, value_enum, default_value = "url")]
    pub format: SasFormat,
    /// With `--format env`: the shell to write for.
    #[arg(long, value_enum, default_value = "sh")]
    pub shell: Shell,
}

/// `sas --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SasFormat {
    /// The signed URL.
    Url,
    /// `{"url","resourceUri","sasToken","expiresOn"}`.
    Json,
    /// VERACITY_SAS_URL, AZURE_STORAGE_SAS_TOKEN, RCLONE_AZUREBLOB_SAS_URL.
    Env,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! `veracity-auth proxy`: a loopback HTTP server that forwards to the gateway with the
//! credentials added by `VeracityAuthLayer`.

use crate::CliError;

/// `veracity-auth proxy` (stub until the proxy lands).
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// The loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
}

/// Serves until stopped (stub until the proxy lands).
pub async fn run(
    _args: ProxyArgs,
    _authenticator: veracity_auth::Authenticator,
    _gateway: http::Uri,
) -> Result<(), CliError> {
    Err(CliError::other("the proxy is not available yet"))
}

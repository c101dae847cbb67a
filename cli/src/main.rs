//! `veracity-auth`: Data Workbench credentials for every other tool.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use veracity_auth_cli::{
    CliError,
    args::{Cli, Command},
    commands, config, proxy,
    session::{self, Want},
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return CliError::other(format!("cannot start: {e}")).report(),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(),
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Completions { shell } = cli.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "veracity-auth", &mut script);
        return commands::out(&String::from_utf8_lossy(&script));
    }
    let profile = config::load(cli.profile.as_deref())?;
    match cli.command {
        Command::Login(args) => commands::login(&profile, args).await,
        Command::Logout => commands::logout(&profile).await,
        Command::Status(want) => commands::status(&profile, want).await,
        Command::Token(args) => commands::token(&profile, args.format, args.want).await,
        Command::Header(args) => commands::header(&profile, args.format, args.want).await,
        Command::Env(args) => commands::env(&profile, args.shell, args.want).await,
        Command::Exec(args) => commands::exec(&profile, args).await,
        Command::Sas(args) => commands::sas(&profile, args).await,
        Command::Proxy(args) => {
            let want = Want {
                min_valid: std::time::Duration::from_secs(300),
                force_refresh: false,
            };
            let authenticator = session::authenticator(&profile, want)?;
            proxy::run(args, authenticator, session::gateway(&profile)?).await
        }
        Command::Completions { .. } => Ok(()),
    }
}

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
    let result = runtime.block_on(run(cli));
    // A read of stdin (`login --paste`) cannot be cancelled: do not wait for it.
    runtime.shutdown_background();
    match result {
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
            let authenticator = session::authenticator(&profile, Want::default())?;
            proxy::run(args, authenticator, session::gateway(&profile)?).await
        }
        Command::Completions { .. } => Ok(()),
    }
}

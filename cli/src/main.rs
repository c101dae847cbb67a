//! `veracity-auth`: Data Workbench credentials for every other tool.

use std::process::ExitCode;

use clap::Parser;

/// DNV Veracity Data Workbench credentials for curl, scripts, notebooks and a local proxy.
#[derive(Debug, Parser)]
#[command(name = "veracity-auth", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}

//! The `veracity-auth` command's parts, as a library so that tests drive them in-process too.
//!
//! - [`args`]: the command line (clap);
//! - [`config`]: profiles, from the config file or the `VERACITY_*` variables;
//! - [`cache`]: access tokens kept between runs;
//! - [`session`]: a profile's credentials;
//! - [`commands`]: what each subcommand does, [`output`]: what it prints;
//! - [`proxy`]: the local proxy; [`error`]: errors and exit codes.

pub mod args;
pub mod cache;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;
pub mod proxy;
pub mod session;

pub use error::CliError;

//! The `baton-agent` command line. It is defined in the library, not in
//! `main.rs`, so the Debian package builder renders the man page from the
//! very parser the binary uses ([`command`]).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "baton-agent",
    about = "Baton backend agent: adopts handed-off TCP connections",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run the agent.
    Run {
        /// The YAML configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Parse and validate a configuration file, then exit.
    CheckConfig {
        /// The YAML configuration file.
        file: PathBuf,
    },
    /// Print the version and exit.
    Version,
}

/// The parser of `baton-agent`'s command line, as clap builds it.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

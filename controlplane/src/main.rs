//! `baton`: the content-aware Web switch.
//!
//! `baton run --config PROFILE` starts the switch; `baton check-config
//! PROFILE` validates a profile and prints it resolved; `baton version`.

use std::process::ExitCode;

use clap::Parser;

use controlplane::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, set } => controlplane::run::main(&config, &set),
        Command::CheckConfig {
            file,
            set,
            json,
            quiet,
        } => controlplane::cli::check_config(&file, &set, json, quiet),
        Command::Schema => {
            print!("{}", controlplane::config::json_schema());
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("{}", controlplane::cli::version_text());
            ExitCode::SUCCESS
        }
    }
}

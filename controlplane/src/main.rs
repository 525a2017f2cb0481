//! `baton`: the content-aware Web switch.
//!
//! `baton run --config PROFILE` starts the switch; `baton check-config
//! PROFILE` validates a profile and prints it resolved; `baton version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Baton, a content-aware Web switch with TCP handoff.
#[derive(Parser, Debug)]
#[command(name = "baton", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the switch with a profile.
    Run {
        /// The profile (YAML).
        #[arg(short, long)]
        config: PathBuf,
        /// Interpolation value for `${NAME}` in the profile (repeatable), e.g. `--set BATON_DATA_IFACE=veth3`.
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_kv)]
        set: Vec<(String, String)>,
    },
    /// Validate a profile and print it resolved (includes merged, defaults filled in).
    CheckConfig {
        /// The profile (YAML).
        file: PathBuf,
        /// Interpolation value for `${NAME}` (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_kv)]
        set: Vec<(String, String)>,
        /// Print the resolved profile as JSON instead of YAML.
        #[arg(long)]
        json: bool,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print the JSON Schema of profiles.
    Schema,
    /// Print the version and build features.
    Version,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

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

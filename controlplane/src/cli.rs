//! The `baton` command line: its definition, and the subcommands other than
//! `run` (profile checking, version text). The definition lives in the
//! library, not in `main.rs`, so the Debian package builder renders the man
//! pages from the very parser the binary uses ([`command`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config;

/// Baton, a content-aware Web switch with TCP handoff.
#[derive(Parser, Debug)]
#[command(name = "baton", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
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

/// The parser of `baton`'s command line, as clap builds it.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

/// `baton check-config`: exit 0 and print the resolved profile, or exit 1 and
/// print every problem with its file, line and field path.
pub fn check_config(file: &Path, set: &[(String, String)], json: bool, quiet: bool) -> ExitCode {
    let props = config::properties_from_env(set);
    match config::load_file_with(file, &props) {
        Ok(loaded) => {
            if !quiet {
                let files: Vec<String> = loaded
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&redacted(&loaded.profile))
                            .unwrap_or_default()
                    );
                } else {
                    println!("# {}: OK (read {})", file.display(), files.join(", "));
                    print!(
                        "{}",
                        serde_saphyr::to_string(&redacted(&loaded.profile)).unwrap_or_default()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
                if let Some(s) = &e.snippet {
                    // The first line repeats the message; keep the excerpt.
                    for line in s.lines().skip(1) {
                        eprintln!("{line}");
                    }
                }
            }
            eprintln!("{}: {} problem(s)", file.display(), errs.0.len());
            ExitCode::FAILURE
        }
    }
}

/// `baton version`.
pub fn version_text() -> String {
    let dpdk = if cfg!(feature = "dpdk") {
        "+dpdk"
    } else {
        "-dpdk"
    };
    let af_xdp = if cfg!(feature = "af_xdp") {
        "+af_xdp"
    } else {
        "-af_xdp"
    };
    format!(
        "baton {} ({dpdk}, {af_xdp}, af_packet, memory)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The profile with THOP secrets replaced, for printing.
pub fn redacted(p: &config::Profile) -> config::Profile {
    let mut p = p.clone();
    for k in &mut p.thop.keys {
        if k.secret_hex.is_some() {
            k.secret_hex = Some("<redacted>".into());
        }
    }
    p
}

//! `baton-demo` (`make demo`): brings the test bed up with Baton, drives
//! bounded curl and wrk traffic, prints a summary and writes
//! `target/demo/summary.json`. Everything is removed on exit and on Ctrl-C.

use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;
use testbed::baton::{self, BatonIo};
use testbed::demo::{self, DemoOptions};

#[derive(Parser)]
#[command(about = "Baton end to end on a namespace test bed, with real traffic")]
struct Cli {
    /// The switch's packet I/O: afpacket, dpdk, afxdp or afxdp-nofast.
    #[arg(long, default_value = "afpacket")]
    io: String,
    /// curl rounds per URL class and client.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of each wrk run.
    #[arg(long, default_value_t = 3)]
    wrk_seconds: u64,
    /// Keep the bed up after the traffic (Ctrl-C to remove it).
    #[arg(long)]
    hold: bool,
    /// Where to write the JSON summary.
    #[arg(long)]
    summary: Option<PathBuf>,
}

fn main() {
    let cli = Cli::parse();
    let Some(io) = BatonIo::parse(&cli.io) else {
        eprintln!("baton-demo: unknown --io `{}` ({})", cli.io, BatonIo::NAMES);
        std::process::exit(2);
    };
    let opts = DemoOptions {
        io,
        rounds: cli.rounds.max(1),
        wrk_duration: Duration::from_secs(cli.wrk_seconds.max(1)),
        hold: cli.hold,
    };
    let summary = match demo::run(&opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("baton-demo: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", demo::render(&summary));
    let path = cli
        .summary
        .unwrap_or_else(|| baton::workspace_root().join("target/demo/summary.json"));
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    match serde_json::to_string_pretty(&summary) {
        Ok(j) => match std::fs::write(&path, j + "\n") {
            Ok(()) => println!("  summary    {}", path.display()),
            Err(e) => eprintln!("baton-demo: {}: {e}", path.display()),
        },
        Err(e) => eprintln!("baton-demo: {e}"),
    }
    if summary.requests_failed > 0 || summary.requests_ok == 0 {
        std::process::exit(1);
    }
}

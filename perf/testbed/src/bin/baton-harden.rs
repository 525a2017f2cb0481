//! `baton-harden` (`make harden`): every attack of `testbed::attack` at full
//! size, each on a fresh namespace bed beside legitimate traffic, over every
//! packet I/O backend of the build (AF_XDP with its fast path). Prints a table, writes
//! `perf/results/harden-<timestamp>.json` and the table into
//! `docs/security.md`. Exits non-zero when a check failed.

use clap::Parser;
use std::path::PathBuf;
use testbed::attack::{suite, Outcome, Size};
use testbed::baton::{self, BatonIo};
use testbed::report::Machine;
use testbed::timefmt;

#[derive(Parser)]
#[command(about = "Attack Baton on the namespace test bed beside legitimate traffic")]
struct Cli {
    /// The short versions (the system tests' counts): checks the plumbing;
    /// the figures are not for quoting and docs/security.md is left alone.
    #[arg(long)]
    quick: bool,
    /// Only these attacks (comma-separated; see `--list`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Leave out the DPDK runs (a build without the `dpdk` feature).
    #[arg(long)]
    no_dpdk: bool,
    /// Leave out the AF_PACKET runs.
    #[arg(long)]
    no_afpacket: bool,
    /// Leave out the AF_XDP runs (only a build with the `af_xdp` feature
    /// has them).
    #[arg(long)]
    no_afxdp: bool,
    /// Directory for the JSON results.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Markdown file whose generated block receives the table.
    #[arg(long)]
    doc: Option<PathBuf>,
    /// Do not touch the Markdown file.
    #[arg(long)]
    no_doc: bool,
    /// List the attacks and exit.
    #[arg(long)]
    list: bool,
}

fn main() {
    let cli = Cli::parse();
    if cli.list {
        for a in suite::ATTACKS {
            println!("{a}");
        }
        return;
    }
    let size = if cli.quick { Size::Short } else { Size::Full };
    let mut ios = Vec::new();
    if !cli.no_afpacket {
        ios.push(BatonIo::AfPacket);
    }
    if !cli.no_dpdk {
        ios.push(BatonIo::Dpdk);
    }
    if cfg!(feature = "af_xdp") && !cli.no_afxdp {
        ios.push(BatonIo::AfXdp { fast_path: true });
    }
    let attacks: Vec<&str> = suite::ATTACKS
        .iter()
        .copied()
        .filter(|a| cli.only.is_empty() || cli.only.iter().any(|o| o == a))
        .collect();
    if attacks.is_empty() {
        eprintln!(
            "baton-harden: no attack selected (known: {})",
            suite::ATTACKS.join(", ")
        );
        std::process::exit(2);
    }
    let started = timefmt::now_secs();
    let mut outcomes: Vec<Outcome> = Vec::new();
    for io in &ios {
        for a in &attacks {
            eprintln!("baton-harden: {a} over {} ({size:?})", io.as_str());
            let o = suite::run_one(a, *io, size);
            eprintln!("{}", o.summary());
            outcomes.push(o);
        }
    }
    let table = suite::table(&outcomes);
    println!("{table}");

    let root = baton::workspace_root();
    let out_dir = cli.out_dir.unwrap_or_else(|| root.join("perf/results"));
    let stamp = timefmt::file_stamp(started);
    let json = serde_json::json!({
        "generated": timefmt::rfc3339(started),
        "size": size,
        "machine": Machine::current(),
        "outcomes": outcomes,
    });
    let path = out_dir.join(format!("harden-{stamp}.json"));
    let written = std::fs::create_dir_all(&out_dir)
        .and_then(|_| std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap_or_default()));
    match written {
        Ok(()) => eprintln!("baton-harden: wrote {}", path.display()),
        Err(e) => eprintln!("baton-harden: cannot write {}: {e}", path.display()),
    }
    if !cli.no_doc && !cli.quick {
        let doc = cli.doc.unwrap_or_else(|| root.join("docs/security.md"));
        let mut command = String::from("make harden");
        let args: Vec<String> = std::env::args().skip(1).collect();
        if !args.is_empty() {
            command.push_str(&format!(" HARDEN_ARGS='{}'", args.join(" ")));
        }
        let block = suite::markdown(&outcomes, &command, &timefmt::rfc3339(started));
        let old = std::fs::read_to_string(&doc).unwrap_or_default();
        match std::fs::write(&doc, suite::splice(&old, &block)) {
            Ok(()) => eprintln!("baton-harden: table written to {}", doc.display()),
            Err(e) => eprintln!("baton-harden: cannot write {}: {e}", doc.display()),
        }
    }
    if outcomes.iter().any(|o| !o.passed()) {
        eprintln!("baton-harden: some checks failed (see the table)");
        std::process::exit(1);
    }
}

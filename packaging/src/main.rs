//! `baton-deb`: builds the Debian packages `baton` (the switch) and
//! `baton-agent` (the backend agent and its preload library). `make deb`
//! runs it; the result is `target/debian/<package>_<version>_<arch>.deb`.
//!
//! A builder of our own instead of cargo-deb (docs/decisions.md): it needs
//! nothing beyond dpkg, dpkg-dev and binutils, which a Debian build machine
//! has, compiles with the workspace in seconds, renders the man pages from
//! the binaries' own clap definitions, and keeps what goes where in one
//! readable file ([`contents`]). The steps:
//!
//! 1. the release build of the three shipped artifacts, never with the
//!    test-only `testing` features ([`cargo`]);
//! 2. each package's tree, control files and `.deb` ([`deb`]), with the
//!    man pages ([`man`]) and a copyright file that lists the linked crates.
//!
//! The date in the packages is the source's ([`date`]), so one commit gives
//! the same packages twice.

mod cargo;
mod contents;
mod date;
mod deb;
mod man;
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;

use crate::util::Result;

/// Builds the Debian packages baton and baton-agent.
#[derive(Parser)]
#[command(name = "baton-deb", version)]
struct Args {
    /// Where the .deb files go [default: TARGET_DIR/debian].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Cargo's target directory for the release build [default:
    /// $CARGO_TARGET_DIR, else the workspace's target/].
    #[arg(long, value_name = "DIR")]
    target_dir: Option<PathBuf>,
    /// The folder with the units (systemd/) and sysctl files (sysctl/) to
    /// package [default: the workspace's packaging/].
    #[arg(long, value_name = "DIR")]
    packaging_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    match build(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("baton-deb: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace this builder belongs to.
fn workspace() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::canonicalize(&p).unwrap_or(p)
}

/// Cargo's version as a Debian version: a pre-release (`1.2.0-rc.1`) sorts
/// before its release in Debian only with a tilde.
fn debian_version(cargo: &str) -> String {
    cargo.replacen('-', "~", 1)
}

/// `Name <address>` from DEBFULLNAME and DEBEMAIL (what dch reads), or the
/// project's.
fn maintainer() -> String {
    let name = std::env::var("DEBFULLNAME").unwrap_or_else(|_| "Baton developers".into());
    let mail = std::env::var("DEBEMAIL").unwrap_or_else(|_| "baton@example.org".into());
    format!("{name} <{mail}>")
}

fn build(args: Args) -> Result<()> {
    let ws = workspace();
    let target = args
        .target_dir
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from))
        .unwrap_or_else(|| ws.join("target"));
    let target = if target.is_relative() {
        ws.join(target)
    } else {
        target
    };
    let out = args.out.unwrap_or_else(|| target.join("debian"));
    let packaging = args.packaging_dir.unwrap_or_else(|| ws.join("packaging"));

    let arch = util::output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned();
    let bins = cargo::build_release(&ws, &target)?;

    let epoch = date::source_epoch(&ws);
    let (day, rfc2822) = (date::iso_date(epoch), date::rfc2822(epoch));
    let years = date::copyright_years(&ws, epoch);
    let commit = util::output(Command::new("git").arg("-C").arg(&ws).args([
        "rev-parse",
        "--short=12",
        "HEAD",
    ]))
    .ok()
    .map(|s| s.trim().to_owned());
    let version = debian_version(env!("CARGO_PKG_VERSION"));
    let maintainer = maintainer();
    let features = cargo::features();
    let inputs = contents::Inputs {
        workspace: &ws,
        packaging: &packaging,
        bins: &bins,
        version: &version,
        maintainer: &maintainer,
        date: &day,
        date_rfc2822: &rfc2822,
        years: &years,
        commit: commit.as_deref(),
        features: &features,
    };
    let packages = [
        contents::baton(&inputs, &cargo::linked_crates(&ws, &["controlplane"])?)?,
        contents::agent(
            &inputs,
            &cargo::linked_crates(&ws, &["agent", "baton-handover"])?,
        )?,
    ];

    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let work = out.join("work");
    let b = deb::Build {
        version,
        arch,
        maintainer,
        epoch,
    };
    for p in &packages {
        let built = deb::build(p, &b, &work, &out)?;
        let size = std::fs::metadata(&built.path).map(|m| m.len()).unwrap_or(0);
        println!(
            "{} ({} KiB)\n  Depends: {}",
            built.path.display(),
            size / 1024,
            built.depends
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn debian_versions_sort_pre_releases_first() {
        assert_eq!(super::debian_version("0.1.0"), "0.1.0");
        assert_eq!(super::debian_version("1.2.0-rc.1"), "1.2.0~rc.1");
    }
}

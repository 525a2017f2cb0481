//! The release build of what the packages ship, and the crates it is made of.
//!
//! The build names its packages and targets (`-p controlplane -p agent -p
//! baton-handover --lib --bins`) instead of building the workspace: a
//! workspace build with examples or tests unifies the `testing` features of
//! `controlplane` and `agent` (test-only code: fault injection, the fuzzing
//! harness) into the binaries, and no package may ship that.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

/// The packet I/O backends this builder was built with; the packaged
/// `baton` gets the same (see the crate's features).
pub fn features() -> Vec<&'static str> {
    let mut f = Vec::new();
    if cfg!(feature = "dpdk") {
        f.push("dpdk");
    }
    if cfg!(feature = "af_xdp") {
        f.push("af_xdp");
    }
    f
}

/// `--features controlplane/dpdk,...`, or nothing.
fn feature_args() -> Vec<String> {
    let f = features();
    if f.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = f.iter().map(|f| format!("controlplane/{f}")).collect();
    vec!["--features".into(), list.join(",")]
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// The packaged files of the release build.
pub struct Binaries {
    pub baton: PathBuf,
    pub agent: PathBuf,
    pub preload: PathBuf,
}

/// Builds `baton`, `baton-agent` and the handover preload library in release
/// mode into `target_dir`.
pub fn build_release(workspace: &Path, target_dir: &Path) -> Result<Binaries> {
    let mut cmd = cargo();
    cmd.current_dir(workspace)
        .args(["build", "--release", "--locked"])
        .args(["-p", "controlplane", "-p", "agent", "-p", "baton-handover"])
        .args(["--lib", "--bins"])
        .args(feature_args())
        .arg("--target-dir")
        .arg(target_dir);
    eprintln!(
        "baton-deb: building the release binaries in {}",
        target_dir.display()
    );
    util::run(&mut cmd)?;
    let dir = target_dir.join("release");
    let bins = Binaries {
        baton: dir.join("baton"),
        agent: dir.join("baton-agent"),
        preload: dir.join("libbaton_handover.so"),
    };
    for p in [&bins.baton, &bins.agent, &bins.preload] {
        if !p.is_file() {
            return Err(format!("the build made no {}", p.display()));
        }
    }
    Ok(bins)
}

/// A crate linked into a binary: name, version, licence expression.
pub struct Crate {
    pub name: String,
    pub version: String,
    pub license: String,
}

/// Every crate the `roots` (workspace package names) link in, themselves
/// excluded, from `cargo metadata` for this host: what the copyright file
/// lists beside Baton's own licence. Build-time and dev dependencies do not
/// end up in the binaries and are left out.
pub fn linked_crates(workspace: &Path, roots: &[&str]) -> Result<Vec<Crate>> {
    let host = util::output(
        Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())).arg("-vV"),
    )?
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    .ok_or("`rustc -vV` names no host")?;
    let json = util::output(
        cargo()
            .current_dir(workspace)
            .args(["metadata", "--format-version", "1", "--locked"])
            .args(["--filter-platform", &host])
            .args(feature_args()),
    )?;
    let meta: serde_json::Value =
        serde_json::from_str(&json).map_err(|e| format!("cargo metadata: {e}"))?;
    let str_of = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();

    let mut by_id = BTreeMap::new();
    for p in meta["packages"].as_array().into_iter().flatten() {
        by_id.insert(str_of(p, "id"), p);
    }
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in meta["resolve"]["nodes"].as_array().into_iter().flatten() {
        let normal = n["deps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| str_of(d, "pkg"))
            .collect();
        edges.insert(str_of(n, "id"), normal);
    }
    let root_ids: Vec<String> = by_id
        .iter()
        .filter(|(_, p)| roots.contains(&p["name"].as_str().unwrap_or_default()))
        .map(|(id, _)| id.clone())
        .collect();
    if root_ids.len() != roots.len() {
        return Err(format!("cargo metadata lacks one of {roots:?}"));
    }
    let mut seen: BTreeSet<String> = root_ids.iter().cloned().collect();
    let mut todo = root_ids;
    while let Some(id) = todo.pop() {
        for d in edges.get(&id).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    let mut out: Vec<Crate> = seen
        .iter()
        .filter_map(|id| by_id.get(id))
        .filter(|p| p["source"].is_string())
        .map(|p| Crate {
            name: str_of(p, "name"),
            version: str_of(p, "version"),
            license: p["license"].as_str().unwrap_or("see its source").to_owned(),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
    Ok(out)
}

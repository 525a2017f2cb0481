//! Running the Debian and Cargo tools the builder relies on. A tool that is
//! missing is named with the Debian package that has it, since the whole
//! point of the builder is to need nothing but what a Debian machine with
//! `scripts/install-deps.sh` has.

use std::path::Path;
use std::process::{Command, Stdio};

pub type Result<T> = std::result::Result<T, String>;

/// The Debian package that provides each external tool the builder runs.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "dpkg" | "dpkg-deb" => "dpkg",
        "dpkg-shlibdeps" => "dpkg-dev",
        "strip" => "binutils",
        "gzip" => "gzip",
        "md5sum" => "coreutils",
        "git" => "git",
        _ => "the Rust toolchain",
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn spawn_error(cmd: &Command, e: std::io::Error) -> String {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    if e.kind() == std::io::ErrorKind::NotFound {
        format!(
            "`{tool}` not found: install {} (scripts/install-deps.sh does)",
            package_of(&tool)
        )
    } else {
        format!("cannot run `{}`: {e}", describe(cmd))
    }
}

/// Runs `cmd` with its output going to ours (long builds show progress).
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().map_err(|e| spawn_error(cmd, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {status}", describe(cmd)))
    }
}

/// Runs `cmd` and returns its standard output; on failure the error carries
/// its standard error.
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(cmd, e))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}\n{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim_end()
        ));
    }
    String::from_utf8(out.stdout).map_err(|_| format!("`{}`: output is not UTF-8", describe(cmd)))
}

pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The files of `dir` whose names end in `suffix`, sorted; none when `dir`
/// does not exist.
pub fn files_in(dir: &Path, suffix: &str) -> Result<Vec<std::path::PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let p = e.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        if p.is_file()
            && p.file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(suffix))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

//! A package's tree, its control files and the `.deb`, the way debhelper
//! would make them: binaries stripped (`dh_strip`), man pages and changelog
//! compressed with `gzip -9n` (`dh_compress`), every file under `/etc` a
//! conffile, `md5sums`, `Depends` from `dpkg-shlibdeps` on the ELF files,
//! `Installed-Size` as `dpkg-gencontrol` counts it, maintainer scripts from
//! `packaging/debian/`, and `dpkg-deb --build --root-owner-group` (files
//! owned by root without fakeroot, times clamped to the source date).

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, Result};

/// How a file is installed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An executable: mode 0755, stripped of debug information.
    Program,
    /// A shared object: mode 0644, stripped to its dynamic symbols.
    Library,
    /// Data, mode 0644.
    Data,
    /// Data compressed on the way in (`dest` gains `.gz`), mode 0644.
    Compressed,
}

pub enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// One file of a package, at `dest` (absolute, as installed).
pub struct Entry {
    pub dest: String,
    pub source: Source,
    pub kind: Kind,
}

pub struct Package {
    pub name: &'static str,
    pub section: &'static str,
    /// The description's first line.
    pub summary: &'static str,
    /// The description's paragraphs.
    pub description: Vec<String>,
    pub recommends: Vec<String>,
    pub entries: Vec<Entry>,
    /// Secret files the postinst creates in /etc/baton: (name, random bytes).
    pub secrets: Vec<(&'static str, u32)>,
}

/// What every package of one build shares.
pub struct Build {
    pub version: String,
    pub arch: String,
    pub maintainer: String,
    pub epoch: u64,
}

/// A built package.
pub struct Built {
    pub path: PathBuf,
    pub depends: String,
}

const POSTINST: &str = include_str!("../debian/postinst");
const PRERM: &str = include_str!("../debian/prerm");
const POSTRM: &str = include_str!("../debian/postrm");

/// Lays out `pkg` under `work/debian/<name>` and builds `out/<name>_<version>_<arch>.deb`.
pub fn build(pkg: &Package, b: &Build, work: &Path, out: &Path) -> Result<Built> {
    let root = work.join("debian").join(pkg.name);
    if root.exists() {
        std::fs::remove_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    }
    let mut elf = Vec::new();
    let mut conffiles = Vec::new();
    let mut units = Vec::new();
    for e in &pkg.entries {
        let rel = e.dest.trim_start_matches('/');
        let path = root.join(rel);
        match &e.source {
            Source::File(src) => util::write(&path, &util::read(src)?)?,
            Source::Bytes(bytes) => util::write(&path, bytes)?,
        }
        let mode = if e.kind == Kind::Program {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|err| format!("{}: {err}", path.display()))?;
        match e.kind {
            Kind::Program => {
                util::run(Command::new("strip").args(STRIP).arg(&path))?;
                elf.push(path);
            }
            Kind::Library => {
                util::run(
                    Command::new("strip")
                        .args(STRIP)
                        .arg("--strip-unneeded")
                        .arg(&path),
                )?;
                elf.push(path);
            }
            Kind::Compressed => util::run(Command::new("gzip").arg("-9nf").arg(&path))?,
            Kind::Data => {}
        }
        if e.dest.starts_with("/etc/") {
            conffiles.push(e.dest.clone());
        }
        if let Some(unit) = e.dest.strip_prefix("/usr/lib/systemd/system/") {
            units.push(unit.to_owned());
        }
    }

    let depends = shlib_depends(pkg.name, work, &elf)?;
    let control_dir = root.join("DEBIAN");
    let scripts = [("postinst", POSTINST), ("prerm", PRERM), ("postrm", POSTRM)];
    for (name, template) in scripts {
        let secrets: Vec<String> = pkg
            .secrets
            .iter()
            .map(|(n, b)| format!("{n}:{b}"))
            .collect();
        let text = template
            .replace("@PACKAGE@", pkg.name)
            .replace("@UNITS@", &units.join(" "))
            .replace("@SECRETS@", &secrets.join(" "));
        let path = control_dir.join(name);
        util::write(&path, text.as_bytes())?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if !conffiles.is_empty() {
        let mut text = conffiles.join("\n");
        text.push('\n');
        util::write(&control_dir.join("conffiles"), text.as_bytes())?;
    }
    let md5sums = md5sums(&root)?;
    util::write(&control_dir.join("md5sums"), md5sums.as_bytes())?;
    let control = control(pkg, b, &depends, installed_size_kib(&root)?);
    util::write(&control_dir.join("control"), control.as_bytes())?;
    fix_directory_modes(&root)?;

    let deb = out.join(format!("{}_{}_{}.deb", pkg.name, b.version, b.arch));
    util::run(
        Command::new("dpkg-deb")
            .env("SOURCE_DATE_EPOCH", b.epoch.to_string())
            .args(["--build", "--root-owner-group"])
            .arg(&root)
            .arg(&deb),
    )?;
    Ok(Built { path: deb, depends })
}

/// What dh_strip removes from every ELF file beside the debug information.
const STRIP: [&str; 2] = ["--remove-section=.comment", "--remove-section=.note"];

/// The package's `Depends`, from the shared libraries its ELF files need and
/// the packages that ship them (their `shlibs`/`symbols` files give the
/// minimum versions). dpkg-shlibdeps wants to run in a source tree, with a
/// `debian/control` naming the package and the files under `debian/<name>`.
fn shlib_depends(name: &str, work: &Path, elf: &[PathBuf]) -> Result<String> {
    if elf.is_empty() {
        return Ok(String::new());
    }
    let control = format!("Source: baton\n\nPackage: {name}\nArchitecture: any\n");
    util::write(&work.join("debian/control"), control.as_bytes())?;
    let mut cmd = Command::new("dpkg-shlibdeps");
    cmd.current_dir(work).arg("-O");
    for f in elf {
        let rel = f.strip_prefix(work).unwrap_or(f);
        cmd.arg(format!("-e{}", rel.display()));
    }
    let out = util::output(&mut cmd)?;
    let deps = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(deps)
}

/// `md5sum` of every file but the control area, paths relative to the root.
fn md5sums(root: &Path) -> Result<String> {
    let mut files = Vec::new();
    walk(root, &mut |p, is_dir| {
        if !is_dir && !p.starts_with(root.join("DEBIAN")) {
            files.push(p.strip_prefix(root).unwrap_or(p).to_path_buf());
        }
    })?;
    files.sort();
    if files.is_empty() {
        return Ok(String::new());
    }
    util::output(Command::new("md5sum").current_dir(root).args(&files))
}

/// Each file's size rounded up to KiB, and one KiB per directory, as
/// dpkg-gencontrol counts.
fn installed_size_kib(root: &Path) -> Result<u64> {
    let mut total = 0;
    let mut err = None;
    walk(root, &mut |p, is_dir| {
        if p.starts_with(root.join("DEBIAN")) || p == root {
            return;
        }
        if is_dir {
            total += 1;
        } else {
            match std::fs::metadata(p) {
                Ok(m) => total += m.len().div_ceil(1024),
                Err(e) => err = Some(format!("{}: {e}", p.display())),
            }
        }
    })?;
    err.map_or(Ok(total), Err)
}

/// Directories 0755 whatever the umask of the build was.
fn fix_directory_modes(root: &Path) -> Result<()> {
    let mut dirs = Vec::new();
    walk(root, &mut |p, is_dir| {
        if is_dir {
            dirs.push(p.to_path_buf());
        }
    })?;
    for d in dirs {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", d.display()))?;
    }
    Ok(())
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path, bool)) -> Result<()> {
    f(dir, true);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, f)?;
        } else {
            f(&p, false);
        }
    }
    Ok(())
}

fn control(pkg: &Package, b: &Build, depends: &str, installed_kib: u64) -> String {
    let mut c = String::new();
    let _ = writeln!(c, "Package: {}", pkg.name);
    let _ = writeln!(c, "Version: {}", b.version);
    let _ = writeln!(c, "Architecture: {}", b.arch);
    let _ = writeln!(c, "Maintainer: {}", b.maintainer);
    let _ = writeln!(c, "Installed-Size: {installed_kib}");
    if !depends.is_empty() {
        let _ = writeln!(c, "Depends: {depends}");
    }
    if !pkg.recommends.is_empty() {
        let _ = writeln!(c, "Recommends: {}", pkg.recommends.join(", "));
    }
    let _ = writeln!(c, "Section: {}", pkg.section);
    let _ = writeln!(c, "Priority: optional");
    let _ = writeln!(c, "Description: {}", pkg.summary);
    for (i, para) in pkg.description.iter().enumerate() {
        if i > 0 {
            c.push_str(" .\n");
        }
        for line in wrap(para, 72) {
            let _ = writeln!(c, " {line}");
        }
    }
    c
}

/// Words of `text` in lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for w in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + w.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(w);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_description_is_wrapped_with_paragraph_dots() {
        let pkg = Package {
            name: "p",
            section: "net",
            summary: "a summary",
            description: vec!["one ".repeat(30), "two".into()],
            recommends: vec!["dpdk".into()],
            entries: Vec::new(),
            secrets: Vec::new(),
        };
        let b = Build {
            version: "1.0".into(),
            arch: "amd64".into(),
            maintainer: "M <m@example.org>".into(),
            epoch: 0,
        };
        let c = control(&pkg, &b, "libc6 (>= 2.34)", 12);
        assert!(
            c.contains("Depends: libc6 (>= 2.34)\nRecommends: dpdk\n"),
            "{c}"
        );
        assert!(c.ends_with(" one one\n .\n two\n"), "{c}");
        assert!(c.lines().all(|l| l.len() <= 80), "{c}");
    }
}

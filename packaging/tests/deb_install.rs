//! `make deb` end to end: the builder makes both packages from a release
//! build of its own, dpkg installs them into a throw-away root (`--root`
//! with `--force-script-chrootless`, so the maintainer scripts run too, on
//! that root), and the installed files are checked against what the
//! documentation promises: the binaries run and carry no test-only code,
//! the profile passes `baton check-config` with the secrets the postinst
//! created, the conffiles are registered, the man pages render, the units
//! name files the packages ship. lintian must report no error. Then the
//! packages are removed (conffiles stay) and purged (nothing stays).
//!
//! The release build goes to `<target>/deb-build`, not `<target>/release`:
//! the suite's own binaries there are built with the `testing` features, and
//! a build without them would replace them under the running suite. The
//! test takes the machine to itself (threads-required in
//! .config/nextest.toml) so the build competes with no timing-sensitive
//! test. Needs root (dpkg) and the tools scripts/install-deps.sh installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The release build from scratch takes about eight minutes on two cores.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require_tools() {
    if !String::from_utf8_lossy(&run(Command::new("id").arg("-u")).stdout)
        .trim()
        .eq("0")
    {
        panic!("this test installs packages with dpkg and needs root (`sudo -E make test`)");
    }
    for (tool, package) in [
        ("dpkg-deb", "dpkg"),
        ("dpkg-shlibdeps", "dpkg-dev"),
        ("strip", "binutils"),
        ("lintian", "lintian"),
        ("man", "man-db"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{tool}` is missing: install {package} (scripts/install-deps.sh does)"
        );
    }
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, which must succeed; returns its standard output.
fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dpkg on the throw-away root: maintainer scripts run from the host with
/// DPKG_ROOT set, the libraries the packages depend on are the host's.
fn dpkg(root: &Path, args: &[&str]) -> String {
    ok(Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", root.join("../dpkg.log").display()))
        .args(["--force-script-chrootless", "--force-depends"])
        .args(args))
}

/// Every regular file under `root` outside dpkg's own database.
fn files_outside_dpkg(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.starts_with(root.join("var/lib/dpkg")) {
                continue;
            }
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn build_packages(out: &Path) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join("deb-build");
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton-deb"))
        .arg("--out")
        .arg(out)
        .arg("--target-dir")
        .arg(&target)
        .spawn()
        .expect("start baton-deb");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "baton-deb failed: {status}");
            return;
        }
        if start.elapsed() > BUILD_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("baton-deb did not finish within {BUILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn packages_install_run_and_purge_cleanly() {
    require_tools();
    let tmp = std::env::temp_dir().join(format!("baton-deb-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (out, root) = (tmp.join("out"), tmp.join("root"));
    build_packages(&out);

    let arch = ok(Command::new("dpkg").arg("--print-architecture"));
    let version = env!("CARGO_PKG_VERSION").replacen('-', "~", 1);
    let deb = |name: &str| out.join(format!("{name}_{version}_{}.deb", arch.trim()));
    let (baton_deb, agent_deb) = (deb("baton"), deb("baton-agent"));
    assert!(baton_deb.is_file() && agent_deb.is_file(), "{:?}", out);

    // Depends comes from the libraries the binaries link.
    let field = |deb: &Path, f: &str| ok(Command::new("dpkg-deb").arg("-f").arg(deb).arg(f));
    let depends = field(&baton_deb, "Depends");
    assert!(depends.contains("libc6"), "{depends}");
    if cfg!(feature = "dpdk") {
        assert!(depends.contains("librte-eal"), "{depends}");
        assert!(field(&baton_deb, "Recommends").contains("dpdk"));
    }
    assert!(field(&agent_deb, "Depends").contains("libc6"));

    // lintian: errors fail the test, warnings are the packager's to judge.
    let lint = run(Command::new("lintian")
        .args(["--fail-on", "error", "--no-tag-display-limit"])
        .arg(&baton_deb)
        .arg(&agent_deb));
    let lint_text = String::from_utf8_lossy(&lint.stdout);
    assert!(
        lint.status.success() && !lint_text.lines().any(|l| l.starts_with("E:")),
        "lintian: {}\n{lint_text}{}",
        lint.status,
        String::from_utf8_lossy(&lint.stderr)
    );

    // Install into an empty root.
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    dpkg(
        &root,
        &[
            "-i",
            baton_deb.to_str().unwrap(),
            agent_deb.to_str().unwrap(),
        ],
    );
    let r = |p: &str| root.join(p.trim_start_matches('/'));

    for f in [
        "/usr/bin/baton",
        "/usr/bin/baton-agent",
        "/usr/lib/systemd/system/baton.service",
        "/usr/lib/systemd/system/baton-agent.service",
        "/usr/share/doc/baton/copyright",
        "/usr/share/doc/baton/changelog.gz",
        "/usr/share/doc/baton/deployment.md",
        "/usr/share/doc/baton-agent/agent.md",
        "/usr/share/doc/baton-agent/copyright",
        "/usr/share/man/man1/baton.1.gz",
        "/usr/share/man/man1/baton-check-config.1.gz",
        "/usr/share/man/man1/baton-agent.1.gz",
    ] {
        assert!(r(f).is_file(), "{f} is not installed");
    }
    let library = agent::config::HandoverConfig::default().library;
    assert!(
        r(&library.display().to_string()).is_file(),
        "the preload library is not where the agent looks for it ({})",
        library.display()
    );

    // Conffiles, registered as such.
    let conffiles = |p: &str| {
        std::fs::read_to_string(root.join(format!("var/lib/dpkg/info/{p}.conffiles"))).unwrap()
    };
    assert!(conffiles("baton").contains("/etc/baton/baton.yaml\n"));
    assert!(conffiles("baton").contains("/etc/baton/base.yaml\n"));
    assert!(conffiles("baton-agent").contains("/etc/baton/agent.yaml\n"));

    // The postinst created the secrets the profile names: private, hex.
    for (name, hex_len) in [("thop.key", 64), ("admin.token", 32)] {
        let p = r(&format!("/etc/baton/{name}"));
        let meta = std::fs::metadata(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        let text = std::fs::read_to_string(&p).unwrap();
        let hex = text.trim_end();
        assert!(
            hex.len() == hex_len && hex.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}: {text:?}"
        );
    }
    let key_before = std::fs::read(r("/etc/baton/thop.key")).unwrap();

    // The binaries run; `baton` is the release build, without test-only code.
    let baton = r("/usr/bin/baton");
    let agent = r("/usr/bin/baton-agent");
    assert!(ok(Command::new(&baton).arg("--version")).contains(env!("CARGO_PKG_VERSION")));
    assert!(ok(Command::new(&agent).arg("--version")).contains(env!("CARGO_PKG_VERSION")));
    let features = ok(Command::new(&baton).arg("version"));
    if cfg!(feature = "dpdk") {
        assert!(features.contains("+dpdk"), "{features}");
    }
    if cfg!(feature = "af_xdp") {
        assert!(features.contains("+af_xdp"), "{features}");
    }
    let bytes = std::fs::read(&baton).unwrap();
    assert!(
        !bytes.windows(17).any(|w| w == b"BATON_TEST_FAULTS"),
        "the packaged baton contains the test-only fault injector"
    );

    // The installed profile is valid with the installed secrets (its key
    // files are named by BATON_* values, set here to the throw-away root).
    ok(Command::new(&baton)
        .arg("check-config")
        .arg("-q")
        .arg(r("/etc/baton/baton.yaml"))
        .arg("--set")
        .arg(format!(
            "BATON_THOP_KEY_FILE={}",
            r("/etc/baton/thop.key").display()
        ))
        .arg("--set")
        .arg(format!(
            "BATON_ADMIN_TOKEN_FILE={}",
            r("/etc/baton/admin.token").display()
        )));

    // Every man page renders without a warning.
    let man_dir = r("/usr/share/man/man1");
    for page in std::fs::read_dir(&man_dir).unwrap().flatten() {
        let out = run(Command::new("man")
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .args(["--warnings", "-P", "cat", "-l"])
            .arg(page.path()));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{}: {}",
            page.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("SYNOPSIS") && text.contains("baton"),
            "{text}"
        );
    }

    // The units start programs and read profiles the packages ship.
    let units = r("/usr/lib/systemd/system");
    for unit in std::fs::read_dir(&units).unwrap().flatten() {
        let text = std::fs::read_to_string(unit.path()).unwrap();
        for line in text.lines().filter(|l| l.starts_with("Exec")) {
            for word in line.split(['=', ' ']) {
                let word = word.trim_start_matches(['-', '@', '+', '!']);
                if word.starts_with("/usr/bin/baton") || word.starts_with("/etc/baton/") {
                    assert!(
                        r(word).exists(),
                        "{}: {word} is not installed",
                        unit.path().display()
                    );
                }
            }
        }
    }

    // Installing again keeps the operator's secrets.
    dpkg(&root, &["-i", baton_deb.to_str().unwrap()]);
    assert_eq!(std::fs::read(r("/etc/baton/thop.key")).unwrap(), key_before);

    // Remove: the programs go, the conffiles and secrets stay.
    dpkg(&root, &["-r", "baton", "baton-agent"]);
    assert!(!baton.exists() && !agent.exists());
    assert!(r("/etc/baton/baton.yaml").is_file() && r("/etc/baton/thop.key").is_file());

    // Purge: nothing is left but dpkg's database.
    dpkg(&root, &["-P", "baton", "baton-agent"]);
    let left = files_outside_dpkg(&root);
    assert!(left.is_empty(), "left after purge: {left:?}");
    assert!(!r("/etc/baton").exists());

    let _ = std::fs::remove_dir_all(&tmp);
}

//! The shipped systemd units (`packaging/systemd/`) as systemd reads them.
//!
//! A unit with a misspelt key, a wrong value or a command that does not
//! exist is only found when an operator starts it on an appliance, so each
//! unit goes through `systemd-analyze verify` here, byte for byte as shipped.
//! Verify also checks that every command a unit runs is an executable file,
//! and that the units it is ordered after or wanted by exist: it runs with
//! `--root` on a scratch tree holding the host's own units, the shipped ones
//! where the package installs them, and an executable stub at every command
//! path the units name (what the binaries do is tested elsewhere).
//!
//! `systemd-analyze security` keeps the hardening from eroding: each unit's
//! exposure score must stay at or below what it is now. The backend's VIP
//! unit is also run for real, in a throw-away network namespace: its
//! commands set the ARP sysctls of `packaging/sysctl/60-baton-backend.conf`
//! and put the VIP on `lo`, and its stop removes exactly that address.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::netns::Netns;
use testkit::temp_dir::TempDir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn units_dir() -> PathBuf {
    repo().join("packaging/systemd")
}

/// The shipped unit files, by name.
fn units() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(units_dir()).expect("packaging/systemd") {
        let p = e.expect("directory entry").path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".service") {
            m.insert(name, std::fs::read_to_string(&p).expect("unit text"));
        }
    }
    assert!(
        [
            "baton.service",
            "baton-agent.service",
            "baton-backend-vip@.service"
        ]
        .iter()
        .all(|u| m.contains_key(*u)),
        "units shipped: {:?}",
        m.keys()
    );
    m
}

/// `systemd-analyze ARGS`, failing the test with a hint when the tool is
/// missing; returns (success, stdout and stderr).
fn analyze(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "systemd-analyze cannot be run ({e}): it comes with the Debian package systemd, \
                 which scripts/install-deps.sh installs"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The values of `key=` lines of a unit (comments skipped).
fn values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// The program of every `Exec*=` line (after systemd's `-@:+!` prefixes).
fn commands(unit: &str) -> Vec<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("Exec"))
        .filter_map(|l| l.split_once('=').map(|(_, v)| v))
        .filter_map(|v| v.split_whitespace().next())
        .map(|p| p.trim_start_matches(['-', '@', ':', '+', '!']).to_string())
        .collect()
}

/// A scratch root with the host's units, the shipped units and sysctl file
/// where the package installs them, and a stub at each command path.
fn scratch_root() -> TempDir {
    let root = TempDir::new("ops-units");
    let sys = root.join("usr/lib/systemd");
    std::fs::create_dir_all(&sys).unwrap();
    let host = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .find(|p| Path::new(p).join("multi-user.target").exists())
        .expect("the host's systemd units (multi-user.target)");
    // `cp -a` keeps the aliases and .wants links the units rely on.
    let st = Command::new("cp")
        .args(["-a", host])
        .arg(&sys)
        .status()
        .expect("cp");
    assert!(st.success(), "copying {host}");
    let dest = sys.join("system");
    for (name, text) in units() {
        std::fs::write(dest.join(&name), text).unwrap();
    }
    let sysctl = root.join("usr/lib/sysctl.d");
    std::fs::create_dir_all(&sysctl).unwrap();
    std::fs::copy(
        repo().join("packaging/sysctl/60-baton-backend.conf"),
        sysctl.join("60-baton-backend.conf"),
    )
    .unwrap();
    for text in units().values() {
        for cmd in commands(text) {
            assert!(cmd.starts_with('/'), "{cmd}: commands need absolute paths");
            let stub = root.join(cmd.trim_start_matches('/'));
            std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
            std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    root
}

/// What is verified: the two services, and the VIP template through an
/// IPv4 and an IPv6 instance (the latter with its colons escaped, as
/// `systemd-escape` may write them: verify itself stumbles over a raw colon
/// in an instance name, which `systemctl enable` takes).
const VERIFIED: [&str; 4] = [
    "baton.service",
    "baton-agent.service",
    "baton-backend-vip@198.18.0.10.service",
    "baton-backend-vip@2001\\x3a2\\x3a\\x3a10.service",
];

#[test]
fn every_unit_passes_systemd_analyze_verify() {
    let root = scratch_root();
    let r = format!("--root={}", root.path().display());
    for unit in VERIFIED {
        let (ok, text) = analyze(&["verify", &r, unit]);
        // Verify exits 0 on warnings (an unknown key is "ignored"): any
        // output at all is a finding.
        assert!(
            ok && text.trim().is_empty(),
            "systemd-analyze verify {unit} (packaging/systemd):\n{text}"
        );
    }
}

#[test]
fn verify_finds_a_broken_unit() {
    // The check above is only worth something if verify reads the copy:
    // a unit with an unknown key and a missing command must be refused.
    let root = scratch_root();
    let dest = root.join("usr/lib/systemd/system/baton.service");
    let text = std::fs::read_to_string(&dest).unwrap();
    std::fs::write(
        &dest,
        text.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
            .replace("/usr/bin/baton run", "/usr/bin/baton-missing run"),
    )
    .unwrap();
    let r = format!("--root={}", root.path().display());
    let (ok, out) = analyze(&["verify", &r, "baton.service"]);
    assert!(!ok, "verify accepted a broken unit:\n{out}");
    assert!(out.contains("NoNewPrivilege"), "{out}");
    assert!(out.contains("baton-missing"), "{out}");
}

#[test]
fn hardening_keeps_its_exposure_score() {
    let root = scratch_root();
    let r = format!("--root={}", root.path().display());
    // `systemd-analyze security` scores 0 (locked down) to 100 (exposed);
    // these are the scores of the units as shipped (33, 30 and 23 with
    // systemd 252), rounded up: removing a hardening line fails here.
    for (unit, max) in [
        ("baton.service", 35),
        ("baton-agent.service", 32),
        ("baton-backend-vip@198.18.0.10.service", 25),
    ] {
        let t = format!("--threshold={max}");
        let (ok, text) = analyze(&["security", "--offline=true", &r, &t, unit]);
        let summary = text
            .lines()
            .rev()
            .find(|l| l.contains("Overall exposure"))
            .unwrap_or("");
        assert!(
            ok,
            "{unit}: exposure above {max} (0-100): {summary}\n{}",
            text.lines()
                .filter(|l| l.contains('✗'))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn capabilities_are_granted_as_bounded() {
    // The ambient set is what the process gets, the bounding set what it may
    // ever get: one capability more in either is a mistake.
    let all = units();
    for name in ["baton.service", "baton-agent.service"] {
        let u = &all[name];
        let set = |k| {
            let v = values(u, k);
            assert_eq!(v.len(), 1, "{name}: one {k}= line");
            let mut caps: Vec<&str> = v[0].split_whitespace().collect();
            caps.sort_unstable();
            caps
        };
        assert_eq!(
            set("CapabilityBoundingSet"),
            set("AmbientCapabilities"),
            "{name}"
        );
        assert_eq!(values(u, "NoNewPrivileges"), ["yes"], "{name}");
        assert_eq!(values(u, "ProtectSystem"), ["strict"], "{name}");
    }
    // The agent's replay state must outlive a restart of the agent.
    let agent = &all["baton-agent.service"];
    assert_eq!(values(agent, "RuntimeDirectory"), ["baton-agent"]);
    assert_eq!(values(agent, "RuntimeDirectoryPreserve"), ["yes"]);
}

/// `net.ipv4.conf.all.arp_ignore = 1` lines of a sysctl.d file.
fn sysctl_file() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(repo().join("packaging/sysctl/60-baton-backend.conf"))
        .expect("packaging/sysctl/60-baton-backend.conf");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("key = value");
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

/// The VIP unit's command lines, `%I` replaced by `vip`, as argument lists.
fn vip_unit_commands(key: &str, vip: &str) -> Vec<Vec<String>> {
    values(&units()["baton-backend-vip@.service"], key)
        .into_iter()
        .map(|l| {
            l.replace("%I", vip)
                .split_whitespace()
                .map(String::from)
                .collect()
        })
        .collect()
}

#[test]
fn the_vip_unit_sets_the_shipped_sysctls() {
    let file = sysctl_file();
    let pre = vip_unit_commands("ExecStartPre", "198.18.0.10");
    let set: BTreeMap<String, String> = pre
        .iter()
        .flatten()
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(
        set, file,
        "baton-backend-vip@.service and 60-baton-backend.conf must set the same values"
    );
}

/// Runs `argv` in namespace `ns`, failing with its output.
fn run_in(ns: &Netns, argv: &[String]) {
    let out = ns
        .command(&argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", argv[0]));
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{argv:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_vip_unit_puts_the_vip_on_lo_and_takes_it_off() {
    testkit::root::require_root();
    let ns = Netns::new("vipunit");
    let lo = |ns: &Netns| {
        String::from_utf8_lossy(
            &ns.exec(&["ip", "-o", "address", "show", "dev", "lo"])
                .stdout,
        )
        .into_owned()
    };
    for (vip, host) in [
        ("198.18.0.10", "198.18.0.10/32"),
        ("2001:2::10", "2001:2::10/128"),
    ] {
        for key in ["ExecStartPre", "ExecStart"] {
            for argv in vip_unit_commands(key, vip) {
                run_in(&ns, &argv);
            }
        }
        // Starting twice (a restart) is no error.
        for argv in vip_unit_commands("ExecStart", vip) {
            run_in(&ns, &argv);
        }
        assert!(lo(&ns).contains(host), "{vip}: {}", lo(&ns));
        for (k, v) in sysctl_file() {
            let got = ns.exec(&["sysctl", "-n", &k]);
            assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), v, "{k}");
        }
        for argv in vip_unit_commands("ExecStop", vip) {
            run_in(&ns, &argv);
        }
        let after = lo(&ns);
        assert!(!after.contains(host), "{vip} still on lo: {after}");
        assert!(after.contains("127.0.0.1/8"), "the stop took more: {after}");
    }
}

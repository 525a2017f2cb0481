//! The `baton-agent` command line: version, check-config, and the start-up
//! errors an operator must see clearly (no CAP_NET_ADMIN, VIP not on lo).

mod common;

use common::agent_proc::{bin, config};
use common::bed::Bed;
use std::process::Command;
use testkit::temp_dir::TempDir;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn version_prints_version() {
    let (code, out, _) = run(&["version"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("baton-agent {}", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
}

/// Writes a fresh random key to `dir/thop.key` with `mode`.
fn key_file(dir: &TempDir, mode: u32) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.0.join("thop.key");
    std::fs::write(&path, format!("{}\n", common::thop::key_hex())).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn shipped_configs_pass_check_config() {
    // They read the key from /etc/baton/thop.key: point them at a real one.
    let dir = TempDir::new("shipped");
    let key = key_file(&dir, 0o600);
    for f in ["agent.yaml", "agent-listener.yaml", "agent-handover.yaml"] {
        let src = format!("{}/../configs/{f}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(text.contains("key_file: /etc/baton/thop.key"), "{f}");
        let path = dir.0.join(f);
        std::fs::write(
            &path,
            text.replace("/etc/baton/thop.key", key.to_str().unwrap()),
        )
        .unwrap();
        let (code, out, err) = run(&["check-config", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{f}: {out}{err}");
        assert!(out.contains(": ok"), "{out}");
    }
}

#[test]
fn sample_key_and_open_key_file_are_refused_by_check_config() {
    let dir = TempDir::new("weak");
    let sample = dir.0.join("sample.yaml");
    std::fs::write(
        &sample,
        config("").replace(
            common::thop::key_hex(),
            "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", sample.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("thop.keys[0].key") && err.contains("sample"),
        "{err}"
    );
    let key = key_file(&dir, 0o644);
    let open = dir.0.join("open.yaml");
    std::fs::write(
        &open,
        config("").replace(
            &format!("key: \"{}\"", common::thop::key_hex()),
            &format!("key_file: {}", key.display()),
        ),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", open.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("thop.keys[0].key_file") && err.contains("0644"),
        "{err}"
    );
}

#[test]
fn check_config_names_field_and_line() {
    let dir = TempDir::new("cli");
    let bad = dir.0.join("bad.yaml");
    std::fs::write(
        &bad,
        config("").replace("    mode: relay", "    mode: relai"),
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(
        err.contains("services[0].mode") && err.contains("line 10"),
        "{err}"
    );
    let (code, _, err) = run(&["check-config", "/nonexistent/agent.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/agent.yaml"), "{err}");
}

#[test]
fn vip_missing_from_lo_is_a_clear_startup_error() {
    let bed = Bed::new();
    let dir = TempDir::new("cli");
    let cfg = dir.0.join("agent.yaml");
    std::fs::write(
        &cfg,
        config("").replace("vip: 198.18.0.10:80", "vip: 198.18.0.99:80"),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.backend,
            bin(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("services[0].vip: 198.18.0.99 is not on lo"),
        "{err}"
    );
    assert!(err.contains("ip addr add 198.18.0.99/32 dev lo"), "{err}");
    assert!(err.contains("arp_ignore"), "{err}");

    // An IPv6 VIP: the same error, without the ARP sysctls.
    std::fs::write(
        &cfg,
        config("").replace("vip: 198.18.0.10:80", "vip: \"[2001:2::99]:80\""),
    )
    .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.backend,
            bin(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("services[0].vip: 2001:2::99 is not on lo")
            && err.contains("ip addr add 2001:2::99/128 dev lo")
            && !err.contains("arp_ignore"),
        "{err}"
    );
}

/// check-config names the field of an unusable IPv6 address.
#[test]
fn check_config_names_unusable_ipv6_addresses() {
    let dir = TempDir::new("cli");
    let cfg = dir.0.join("agent.yaml");
    for (from, to, field) in [
        (
            "vip: 198.18.0.10:80",
            "vip: \"[::ffff:198.18.0.10]:80\"",
            "services[0].vip: ",
        ),
        (
            "vip: 198.18.0.10:80",
            "vip: \"[fe80::10]:80\"",
            "services[0].vip: ",
        ),
        (
            "listen: 198.18.0.11:9199",
            "listen: \"[2001:2::11]:9199\"",
            "thop.switches[0]: ",
        ),
    ] {
        std::fs::write(&cfg, config("").replace(from, to)).unwrap();
        let (code, _, err) = run(&["check-config", cfg.to_str().unwrap()]);
        assert_eq!(code, 2, "{err}");
        assert!(err.contains(field), "{to}: {err}");
    }
}

#[test]
fn missing_cap_net_admin_is_a_clear_startup_error() {
    let bed = Bed::new();
    let dir = TempDir::new("cli");
    let cfg = dir.0.join("agent.yaml");
    std::fs::write(&cfg, config("")).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.backend,
            "setpriv",
            "--bounding-set",
            "-net_admin",
            "--inh-caps",
            "-net_admin",
        ])
        .args([bin(), "run", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAP_NET_ADMIN is missing"), "{err}");
}

#[test]
fn listener_mode_is_refused_by_the_relay_binary() {
    let bed = Bed::new();
    let dir = TempDir::new("cli");
    let cfg = dir.0.join("agent.yaml");
    let yaml = config("").replace(
        "    mode: relay\n    upstream: 127.0.0.1:8080\n",
        "    mode: listener\n",
    );
    std::fs::write(&cfg, yaml).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.backend,
            bin(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("services[0].mode: listener mode is for applications"),
        "{err}"
    );
}

#[test]
fn missing_cap_net_bind_service_for_port_80_is_named() {
    let bed = Bed::new();
    let dir = TempDir::new("cli");
    let cfg = dir.0.join("agent.yaml");
    std::fs::write(&cfg, config("")).unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &bed.backend,
            "setpriv",
            "--bounding-set",
            "-net_bind_service",
        ])
        .args([
            "--inh-caps",
            "-net_bind_service",
            bin(),
            "run",
            "--config",
            cfg.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("port 80 is privileged and CAP_NET_BIND_SERVICE is missing"),
        "{err}"
    );
}

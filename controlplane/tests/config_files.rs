//! Every profile shipped in `configs/` passes `baton check-config`, and every
//! other YAML file there (the shared base) is included by one that does.
//! Agent configs (`agent*.yaml`) are the agent's and are checked by its tests.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

fn configs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn every_profile_in_configs_passes_check_config() {
    // The appliance profile reads its THOP key from a file; give it one.
    let key = std::env::temp_dir().join(format!("cp-thop-{}.key", std::process::id()));
    write_key(&key, &random_key_hex(), 0o600);
    // And its admin token file (private to its owner).
    let token = std::env::temp_dir().join(format!("cp-admin-{}.token", std::process::id()));
    std::fs::write(&token, format!("{}\n", "cd".repeat(16))).unwrap();
    std::fs::set_permissions(
        &token,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .filter(|p| {
            !p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("agent")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");

    let mut included = HashSet::new();
    let mut fragments = Vec::new();
    for f in &files {
        let props = controlplane::config::properties_from_env(&[
            ("BATON_THOP_KEY_FILE".into(), key.display().to_string()),
            ("BATON_ADMIN_TOKEN_FILE".into(), token.display().to_string()),
            (
                "BATON_CLUSTER_SECRET_FILE".into(),
                key.display().to_string(),
            ),
        ]);
        match controlplane::config::load_file_with(f, &props) {
            Ok(l) => {
                included.extend(l.files.iter().skip(1).map(|p| p.canonicalize().unwrap()));
                let out = Command::new(env!("CARGO_BIN_EXE_baton"))
                    .arg("check-config")
                    .arg(f)
                    .arg("--set")
                    .arg(format!("BATON_THOP_KEY_FILE={}", key.display()))
                    .arg("--set")
                    .arg(format!("BATON_ADMIN_TOKEN_FILE={}", token.display()))
                    .arg("--set")
                    .arg(format!("BATON_CLUSTER_SECRET_FILE={}", key.display()))
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{}: {}",
                    f.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                assert!(stdout.contains("OK"), "{stdout}");
                assert!(
                    !stdout.contains("6261746f6e"),
                    "secrets must not be printed"
                );
            }
            Err(e) => fragments.push((f.clone(), e.to_string())),
        }
    }
    for (f, err) in fragments {
        assert!(
            included.contains(&f.canonicalize().unwrap()),
            "{} is neither a valid profile nor included by one: {err}",
            f.display()
        );
    }
    let _ = std::fs::remove_file(&key);
    let _ = std::fs::remove_file(&token);
}

/// 32 random bytes as 64 hex digits.
fn random_key_hex() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .unwrap();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn write_key(path: &std::path::Path, hex: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{hex}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn weak_keys_and_open_key_files_are_refused_by_check_config() {
    let dir = std::env::temp_dir().join(format!("cp-weak-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["testbed.yaml", "base.yaml"] {
        std::fs::copy(configs_dir().join(f), dir.join(f)).unwrap();
    }
    let check = |thop: &str| {
        let p = dir.join("p.yaml");
        std::fs::write(&p, format!("<<: !include testbed.yaml\nthop:\n{thop}")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("check-config")
            .arg(&p)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let zero = "0".repeat(64);
    let published = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";
    for (key, why) in [
        (zero.as_str(), "same value"),
        (published, "published sample"),
    ] {
        let (ok, err) = check(&format!(
            "  keys:\n    - id: 1\n      secret_hex: \"{key}\"\n"
        ));
        assert!(!ok, "weak key {key} accepted");
        assert!(
            err.contains("thop.keys[0].secret_hex") && err.contains(why),
            "{err}"
        );
        // A test bed says so.
        let (ok, err) = check(&format!(
            "  allow_sample_keys: true\n  keys:\n    - id: 1\n      secret_hex: \"{key}\"\n"
        ));
        assert!(ok, "{err}");
    }
    let key = dir.join("thop.key");
    write_key(&key, &random_key_hex(), 0o644);
    let file = format!(
        "  keys:\n    - id: 1\n      secret_file: {}\n",
        key.display()
    );
    let (ok, err) = check(&file);
    assert!(!ok, "a key file readable by others was accepted");
    assert!(
        err.contains("thop.keys[0].secret_file") && err.contains("0644"),
        "{err}"
    );
    write_key(&key, &random_key_hex(), 0o600);
    let (ok, err) = check(&file);
    assert!(ok, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_config_reports_problems_and_fails() {
    let dir = std::env::temp_dir().join(format!("cp-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("bad.yaml");
    std::fs::write(
        &p,
        "<<: !include base.yaml\nname: x\nworkers:\n  count: 2\n  cores: [1]\n",
    )
    .unwrap();
    std::fs::copy(configs_dir().join("base.yaml"), dir.join("base.yaml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("missing field `io`"), "{stderr}");
    std::fs::write(
        &p,
        "<<: !include testbed.yaml\nworkers:\n  count: 2\n  cores: [1]\n",
    )
    .unwrap();
    std::fs::copy(configs_dir().join("testbed.yaml"), dir.join("testbed.yaml")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("check-config")
        .arg(&p)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("bad.yaml:4:"), "{stderr}");
    assert!(
        stderr.contains("`workers.cores`: lists 1 cores for 2 workers"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn version_names_the_build() {
    let out = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("baton "));
}

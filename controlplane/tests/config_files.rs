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
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
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

//! Profile loading: includes, interpolation, and errors that name the file,
//! the line and the field path.

use std::collections::HashMap;
use std::path::Path;

use controlplane::config::{load_file_with, ConfigError, Policy};
use testkit::temp_dir::TempDir;

/// A temporary directory of YAML files, removed on drop.
const KEY: &str = "6261746f6e2d746573746265642d6b65792d6e6f742d666f722d70726f642121";

fn base() -> String {
    format!(
        r#"thop: &thop
  allow_sample_keys: true
  keys:
    - {{ id: 1, secret_hex: "{KEY}" }}
tuning: &tuning
  burst_size: 32
  table_capacity: 4096
io:
  memory: {{}}
switch:
  data_ip: 198.18.0.2
backends:
  - name: static-1
    address: 198.18.0.11
  - name: app-1
    address: 198.18.0.13
pools:
  - name: static
    backends: [static-1]
  - name: app
    backends: [app-1]
services:
  - name: web
    vip: 198.18.0.10
    default_pool: app
name: base
"#
    )
}

fn load(dir: &TempDir, file: &str) -> Result<controlplane::config::Loaded, Vec<ConfigError>> {
    load_file_with(&dir.join(file), &HashMap::new()).map_err(|e| e.0)
}

fn one_error(dir: &TempDir, file: &str) -> ConfigError {
    let mut errs = load(dir, file).expect_err("profile must be rejected");
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs.remove(0)
}

#[test]
fn profile_keys_win_over_the_included_base_and_sections_merge_by_anchor() {
    let d = TempDir::with_files("cp-profiles", &[
        ("base.yaml", &base()),
        (
            "p.yaml",
            "<<: !include base.yaml\nname: mine\ntuning:\n  <<: !include base.yaml#tuning\n  burst_size: 64\n",
        ),
    ]);
    let l = load(&d, "p.yaml").unwrap();
    assert_eq!(l.profile.name, "mine");
    assert_eq!(l.profile.tuning.burst_size, 64);
    assert_eq!(
        l.profile.tuning.table_capacity, 4096,
        "kept from the base's anchored section"
    );
    assert_eq!(l.profile.backends.len(), 2);
    assert!(
        matches!(l.profile.pools[0].policy, Policy::WeightedRoundRobin(_)),
        "default policy"
    );
    assert_eq!(l.files, vec![d.join("p.yaml"), d.join("base.yaml")]);
}

#[test]
fn unknown_field_names_path_and_line() {
    let d = TempDir::with_files("cp-profiles", &[
        ("base.yaml", &base()),
        ("p.yaml", "<<: !include base.yaml\npools:\n  - name: a\n    backends: [app-1]\n  - name: b\n    backends: [app-1]\n    polcy: {}\n"),
    ]);
    let e = one_error(&d, "p.yaml");
    assert_eq!(e.path, "pools[1].polcy");
    assert_eq!(e.line, Some(7));
    assert_eq!(e.file, d.join("p.yaml"));
    assert!(e.message.contains("unknown field `polcy`"), "{}", e.message);
    let shown = e.to_string();
    assert!(
        shown.contains("p.yaml:7:5: `pools[1].polcy`: unknown field"),
        "{shown}"
    );
}

#[test]
fn type_errors_name_path_and_line() {
    let d = TempDir::with_files(
        "cp-profiles",
        &[
            ("base.yaml", &base()),
            (
                "p.yaml",
                "<<: !include base.yaml\ntimeouts:\n  header: 10\n",
            ),
            (
                "q.yaml",
                "<<: !include base.yaml\nbackends:\n  - name: x\n    address: 198.18.0.300\n",
            ),
        ],
    );
    let e = one_error(&d, "p.yaml");
    assert_eq!((e.path.as_str(), e.line), ("timeouts.header", Some(3)));
    assert!(e.message.contains("no unit"), "{}", e.message);
    let e = one_error(&d, "q.yaml");
    assert_eq!((e.path.as_str(), e.line), ("backends[0].address", Some(4)));
}

#[test]
fn an_error_inside_an_included_file_names_that_file_and_its_line() {
    let broken = base().replace("  burst_size: 32\n", "  burst_size: 32\n  brust: 1\n");
    let d = TempDir::with_files(
        "cp-profiles",
        &[
            ("base.yaml", &broken),
            ("p.yaml", "# a profile\n<<: !include base.yaml\n"),
        ],
    );
    let e = one_error(&d, "p.yaml");
    assert_eq!(e.file, d.join("base.yaml"));
    assert_eq!(e.path, "tuning.brust");
    assert_eq!(e.line, Some(7));
}

#[test]
fn semantic_errors_are_all_reported_with_path_and_line() {
    let d = TempDir::with_files("cp-profiles", &[(
        "p.yaml",
        &base()
            .replace("    backends: [app-1]\n", "    backends: [app-1, app-9]\n")
            .replace("    default_pool: app\n", "    default_pool: nope\n    rules:\n      - match: { path_regex: \"([\" }\n        pool: app\n")
            .replace("  table_capacity: 4096\n", "  table_capacity: 4096\n  syn_cookies: { threshold: 2.0 }\n"),
    )]);
    let errs = load(&d, "p.yaml").expect_err("invalid");
    let got: Vec<(String, Option<u64>)> = errs.iter().map(|e| (e.path.clone(), e.line)).collect();
    assert!(
        got.contains(&("pools[1].backends[1]".into(), Some(22))),
        "{got:?}"
    );
    assert!(
        got.contains(&("services[0].default_pool".into(), Some(26))),
        "{got:?}"
    );
    assert!(
        got.contains(&("services[0].rules[0].match.path_regex".into(), Some(28))),
        "{got:?}"
    );
    assert!(
        got.contains(&("tuning.syn_cookies.threshold".into(), Some(8))),
        "{got:?}"
    );
    for e in &errs {
        assert!(e.line.is_some(), "{e}");
    }
}

#[test]
fn interpolation_uses_given_values_then_defaults() {
    let text = base().replace(
        "  data_ip: 198.18.0.2\n",
        "  data_ip: ${BATON_T_IP:-198.18.0.3}\n",
    );
    let d = TempDir::with_files("cp-profiles", &[("p.yaml", &text)]);
    let l = load_file_with(&d.join("p.yaml"), &HashMap::new()).unwrap();
    assert_eq!(l.profile.switch.data_ip.to_string(), "198.18.0.3");
    let props = HashMap::from([("BATON_T_IP".to_string(), "198.18.0.4".to_string())]);
    let l = load_file_with(&d.join("p.yaml"), &props).unwrap();
    assert_eq!(l.profile.switch.data_ip.to_string(), "198.18.0.4");
}

#[test]
fn includes_cannot_leave_the_profile_directory_and_bad_yaml_is_an_error() {
    let d = TempDir::with_files(
        "cp-profiles",
        &[
            ("p.yaml", "<<: !include ../../etc/passwd\nname: x\n"),
            ("q.yaml", "name: [unclosed\n"),
            ("r.yaml", ""),
        ],
    );
    for f in ["p.yaml", "q.yaml", "r.yaml"] {
        let errs = load(&d, f).expect_err(f);
        assert!(!errs[0].message.is_empty());
    }
    let missing =
        load_file_with(Path::new("/nonexistent/baton.yaml"), &HashMap::new()).unwrap_err();
    assert!(missing.0[0].message.starts_with("cannot read"));
}

#[test]
fn pools_that_could_never_serve_and_shared_thop_addresses_are_refused() {
    let text = base()
        .replace(
            "  - name: static-1\n    address: 198.18.0.11\n",
            "  - name: static-1\n    address: 198.18.0.11\n    weight: 0\n",
        )
        .replace(
            "  - name: app-1\n    address: 198.18.0.13\n",
            "  - name: app-1\n    address: 198.18.0.13\n    thop: 198.18.0.11:9199\n",
        );
    let d = TempDir::with_files("cp-profiles", &[("p.yaml", &text)]);
    let errs = load(&d, "p.yaml").expect_err("invalid");
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"pools[0].backends"), "{errs:?}");
    assert!(paths.contains(&"backends[1].thop"), "{errs:?}");
}

#[test]
fn lard_url_table_bytes_below_the_minimum_are_refused_with_path_and_line() {
    let d = TempDir::with_files(
        "cp-profiles",
        &[(
            "p.yaml",
            &base().replace(
                "    backends: [app-1]\n",
                "    backends: [app-1]\n    policy:\n      lard_r:\n        max_bytes: 1000\n",
            ),
        )],
    );
    let e = one_error(&d, "p.yaml");
    assert_eq!(e.path, "pools[1].policy.lard_r.max_bytes", "{e}");
    assert_eq!(e.line, Some(24), "{e}");
    assert!(e.message.contains("at least 65536"), "{e}");
}

//! The committed JSON Schema (`docs/config.schema.json`) and the field
//! reference in `docs/configuration.md` are generated from the config types;
//! this test fails when they are stale. `BATON_BLESS=1` rewrites them.

use std::path::PathBuf;

use controlplane::config::{json_schema, reference};

fn docs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

fn bless() -> bool {
    std::env::var_os("BATON_BLESS").is_some()
}

#[test]
fn committed_schema_is_current() {
    let path = docs().join("config.schema.json");
    let want = json_schema();
    if bless() {
        std::fs::write(&path, &want).unwrap();
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(got == want, "docs/config.schema.json is stale: run `BATON_BLESS=1 cargo test -p controlplane --test schema`");
}

#[test]
fn configuration_md_documents_every_field() {
    let path = docs().join("configuration.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let (Some(b), Some(e)) = (text.find(reference::BEGIN), text.find(reference::END)) else {
        panic!("docs/configuration.md lacks the generated-reference markers");
    };
    let generated = reference::render();
    let current = &text[b + reference::BEGIN.len()..e];
    if bless() && current != generated {
        let new = format!(
            "{}{}{}{}",
            &text[..b],
            reference::BEGIN,
            generated,
            &text[e..]
        );
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert!(current == generated, "docs/configuration.md reference is stale: run `BATON_BLESS=1 cargo test -p controlplane --test schema`");
}

#[test]
fn schema_accepts_the_shape_of_a_real_profile() {
    // Not a full validator: checks that the schema forbids unknown top-level
    // fields and requires what the types require.
    let v: serde_json::Value = serde_json::from_str(&json_schema()).unwrap();
    assert_eq!(v["additionalProperties"], serde_json::Value::Bool(false));
    let required: Vec<&str> = v["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    for f in [
        "name", "io", "switch", "services", "backends", "pools", "thop",
    ] {
        assert!(required.contains(&f), "{f} must be required");
    }
}

#[test]
fn metrics_md_lists_every_metric() {
    let path = docs().join("metrics.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    const BEGIN: &str = "<!-- BEGIN GENERATED METRICS -->";
    const END: &str = "<!-- END GENERATED METRICS -->";
    let (Some(b), Some(e)) = (text.find(BEGIN), text.find(END)) else {
        panic!("docs/metrics.md lacks the generated-table markers");
    };
    let generated = format!(
        "\n{}",
        controlplane::metrics::Metrics::new("doc").catalog_markdown()
    );
    let current = &text[b + BEGIN.len()..e];
    if bless() && current != generated {
        std::fs::write(
            &path,
            format!("{}{BEGIN}{generated}{}", &text[..b], &text[e..]),
        )
        .unwrap();
        return;
    }
    assert!(
        current == generated,
        "docs/metrics.md is stale: run `BATON_BLESS=1 cargo test -p controlplane --test schema`"
    );
}

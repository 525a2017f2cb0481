//! The field reference of `docs/configuration.md`, rendered from the JSON
//! Schema (and so from the doc comments of the config types). A test keeps
//! the committed document equal to this rendering, so no field goes
//! undocumented.

use std::collections::VecDeque;

use serde_json::Value;

/// Marker lines around the generated part of `docs/configuration.md`.
pub const BEGIN: &str = "<!-- BEGIN GENERATED REFERENCE (cargo test -p controlplane --test schema; BATON_BLESS=1 to update) -->";
/// End marker.
pub const END: &str = "<!-- END GENERATED REFERENCE -->";

/// Renders the reference (one section per type, root first, in reference order).
pub fn render() -> String {
    let schema: Value = serde_json::from_str(&super::json_schema()).expect("schema is JSON");
    let empty = serde_json::Map::new();
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = String::new();
    let mut queue: VecDeque<(String, Value)> = VecDeque::new();
    let mut seen = std::collections::HashSet::new();
    queue.push_back(("Profile".to_string(), schema.clone()));
    seen.insert("Profile".to_string());
    while let Some((name, def)) = queue.pop_front() {
        out.push_str(&format!("\n### `{name}`\n\n"));
        if let Some(d) = def.get("description").and_then(Value::as_str) {
            out.push_str(&format!("{}\n\n", one_line(d)));
        }
        let mut refs = Vec::new();
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            render_object(&mut out, &def, props, &mut refs);
        } else if let Some(variants) = def.get("oneOf").and_then(Value::as_array) {
            render_variants(&mut out, variants, &mut refs);
        } else {
            out.push_str(&format!("Type: {}.\n", type_of(&def, &mut refs)));
            if let Some(p) = def.get("pattern").and_then(Value::as_str) {
                out.push_str(&format!("Pattern: `{p}`.\n"));
            }
        }
        for r in refs {
            if seen.insert(r.clone()) {
                if let Some(d) = defs.get(&r) {
                    queue.push_back((r, d.clone()));
                }
            }
        }
    }
    out
}

fn render_object(
    out: &mut String,
    def: &Value,
    props: &serde_json::Map<String, Value>,
    refs: &mut Vec<String>,
) {
    let required: Vec<&str> = def
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if props.is_empty() {
        out.push_str("No fields: write `{}`.\n");
        return;
    }
    out.push_str("| field | type | default | description |\n|---|---|---|---|\n");
    for (k, v) in props {
        let ty = type_of(v, refs);
        let default = if required.contains(&k.as_str()) {
            "**required**".to_string()
        } else {
            match v.get("default") {
                Some(Value::Null) | None => "—".to_string(),
                Some(d) => format!("`{}`", compact(d)),
            }
        };
        let desc = v
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        out.push_str(&format!("| `{k}` | {ty} | {default} | {desc} |\n"));
    }
}

fn render_variants(out: &mut String, variants: &[Value], refs: &mut Vec<String>) {
    out.push_str("Exactly one of:\n\n");
    for v in variants {
        let desc = v
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        if let Some(c) = v.get("const").and_then(Value::as_str) {
            out.push_str(&format!("- `{c}`: {desc}\n"));
        } else if let Some(e) = v.get("enum").and_then(Value::as_array) {
            for c in e.iter().filter_map(Value::as_str) {
                out.push_str(&format!("- `{c}`: {desc}\n"));
            }
        } else if let Some(p) = v.get("properties").and_then(Value::as_object) {
            for (k, inner) in p {
                out.push_str(&format!("- `{k}:` {} — {desc}\n", type_of(inner, refs)));
            }
        }
    }
}

/// A short type name; `$ref`s become links to their section and are queued.
fn type_of(v: &Value, refs: &mut Vec<String>) -> String {
    if let Some(r) = v.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        refs.push(name.clone());
        return format!("[`{name}`](#{})", name.to_lowercase());
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(alts) = v.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"))
                .map(|a| type_of(a, refs))
                .collect();
            return parts.join(" or ");
        }
    }
    let base = match v.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_string(),
    };
    let base = match (base.as_str(), v.get("format").and_then(Value::as_str)) {
        ("string", Some(f)) => format!("string ({f})"),
        ("integer", Some(f)) => f.to_string(),
        _ => base,
    };
    if base == "array" {
        if let Some(items) = v.get("items") {
            return format!("list of {}", type_of(items, refs));
        }
    }
    if let Some(e) = v.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = e
            .iter()
            .filter_map(Value::as_str)
            .map(|s| format!("`{s}`"))
            .collect();
        if !names.is_empty() {
            return names.join(" \\| ");
        }
    }
    base
}

fn one_line(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(m) if m.is_empty() => "{}".to_string(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

//! Reading a profile from disk: YAML → [`Profile`], includes resolved, every
//! error tied to a file, a line and a field path.
//!
//! Parsing is done by `serde-saphyr` (maintained, YAML 1.2, locations on every
//! error, `!include` with merge keys). `serde_path_to_error` wraps its
//! deserializer so a type error also names the field path
//! (`pools[1].policy.lard.t_low`). Semantic checks run on the typed profile and
//! name a path too; [`LineIndex`] maps that path back to the line it came from.
//!
//! Includes: `<<: !include base.yaml` at the top of a profile merges the base's
//! top-level keys (the profile's own keys win); `tuning: {<<: !include
//! base.yaml#tuning, burst_size: 64}` overrides single fields of one anchored
//! section. Includes are confined to the profile's directory.
//!
//! Interpolation: plain scalars may use `${BATON_DATA_IFACE:-sw-data}`
//! (docker-compose forms); values come from `BATON_*` environment variables and
//! `baton --set NAME=VALUE`, so one profile serves many hosts or test beds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::de::{self, Deserialize, Deserializer};
use serde_saphyr::{Options, SafeFileReadMode, SafeFileResolver, Spanned};

use super::types::Profile;
use super::validate;

/// A profile error: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File the offending text is in (the profile or an included file).
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// 1-based column, when known.
    pub column: Option<u64>,
    /// Field path, e.g. `pools[1].backends[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// The source excerpt with a marker, when the parser produced one.
    pub snippet: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        if self.path.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": `{}`: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one profile (parse errors stop at the first; semantic
/// checks report all).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded, validated profile and the files it was read from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub profile: Profile,
    /// The profile first, then every included file in include order.
    pub files: Vec<PathBuf>,
}

/// Values for `${NAME}` interpolation in profiles: every `BATON_*` variable of
/// the environment, then `overrides` (which win).
pub fn properties_from_env(overrides: &[(String, String)]) -> HashMap<String, String> {
    let mut props: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BATON_"))
        .collect();
    props.extend(overrides.iter().cloned());
    props
}

/// Reads, parses and validates the profile at `path`, with `BATON_*`
/// environment variables available for `${NAME}` interpolation.
pub fn load_file(path: &Path) -> Result<Loaded, ConfigErrors> {
    load_file_with(path, &properties_from_env(&[]))
}

/// Like [`load_file`] with explicit interpolation values.
pub fn load_file_with(
    path: &Path,
    props: &HashMap<String, String>,
) -> Result<Loaded, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read: {e}"),
            snippet: None,
        }])
    })?;
    load_str(&text, path, props)
}

/// Parses and validates profile text as if read from `path` (includes are
/// resolved in `path`'s directory).
pub fn load_str(
    text: &str,
    path: &Path,
    props: &HashMap<String, String>,
) -> Result<Loaded, ConfigErrors> {
    let (options, files) = options_for(path, props).map_err(|e| ConfigErrors(vec![*e]))?;

    let mut field_path = String::new();
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, Profile>(de).map_err(|e| {
            field_path = e.path().to_string();
            e.into_inner()
        })
    });
    let names = files.borrow().clone();
    let file_of = |source_id: u32| -> PathBuf {
        match source_id {
            0 | 1 => path.to_path_buf(),
            n => names
                .get(n as usize - 2)
                .cloned()
                .unwrap_or_else(|| path.to_path_buf()),
        }
    };
    let profile = match parsed {
        Ok(p) => p,
        Err(e) => {
            let loc = e.location();
            let message = bare_message(&e);
            let path_str = if field_path == "." {
                String::new()
            } else {
                field_path
            };
            return Err(ConfigErrors(vec![ConfigError {
                file: loc
                    .map(|l| file_of(l.source_id()))
                    .unwrap_or_else(|| path.to_path_buf()),
                line: loc.map(|l| l.line()).filter(|l| *l > 0),
                column: loc.map(|l| l.column()).filter(|c| *c > 0),
                path: path_str,
                message,
                snippet: Some(e.to_string()),
            }]));
        }
    };

    let problems = validate::validate(&profile);
    if !problems.is_empty() {
        let index = LineIndex::build(text, path, props).ok();
        let errs = problems
            .into_iter()
            .map(|p| {
                let loc = index.as_ref().and_then(|i| i.locate(&p.path));
                ConfigError {
                    file: loc
                        .map(|l| file_of(l.2))
                        .unwrap_or_else(|| path.to_path_buf()),
                    line: loc.map(|l| l.0),
                    column: loc.map(|l| l.1),
                    path: p.path,
                    message: p.message,
                    snippet: None,
                }
            })
            .collect();
        return Err(ConfigErrors(errs));
    }
    let mut all = vec![path.to_path_buf()];
    for f in names {
        if !all.contains(&f) {
            all.push(f);
        }
    }
    Ok(Loaded {
        profile,
        files: all,
    })
}

type IncludedFiles = Rc<RefCell<Vec<PathBuf>>>;

/// Parser options: strict duplicates, includes confined to the profile's directory.
fn options_for(
    path: &Path,
    props: &HashMap<String, String>,
) -> Result<(Options, IncludedFiles), Box<ConfigError>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let resolver = SafeFileResolver::new(&dir)
        .map_err(|e| ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot use directory {} for includes: {e}", dir.display()),
            snippet: None,
        })?
        .with_read_mode(SafeFileReadMode::Text);
    let files: IncludedFiles = Rc::default();
    let seen = files.clone();
    let include_dir = dir.clone();
    let options = serde_saphyr::options! {}
        .with_include_resolver(move |req| {
            let spec = req.spec.split('#').next().unwrap_or(req.spec).to_string();
            let resolved = resolver.resolve(req)?;
            seen.borrow_mut().push(include_dir.join(spec));
            Ok(resolved)
        })
        .with_properties(props.clone());
    Ok((options, files))
}

/// The parser's message without its own location prefix or suffix (we print
/// the location ourselves, with the file name).
fn bare_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let first = full.lines().next().unwrap_or("").trim().to_string();
    let mut msg = first.strip_prefix("error: ").unwrap_or(&first).to_string();
    if msg.starts_with("line ") {
        if let Some(i) = msg.find(": ") {
            msg = msg[i + 2..].to_string();
        }
    }
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    msg
}

/// Field path → (line, column, source id) of every node of a YAML document,
/// for pointing semantic errors at their line.
pub struct LineIndex {
    entries: Vec<(String, (u64, u64, u32))>,
}

impl LineIndex {
    /// Parses `text` (with includes) into a location tree.
    pub fn build(
        text: &str,
        path: &Path,
        props: &HashMap<String, String>,
    ) -> Result<Self, Box<ConfigError>> {
        let (options, _) = options_for(path, props)?;
        let root: Spanned<Node> =
            serde_saphyr::from_str_with_options(text, options).map_err(|e| ConfigError {
                file: path.to_path_buf(),
                line: None,
                column: None,
                path: String::new(),
                message: bare_message(&e),
                snippet: None,
            })?;
        let mut entries = Vec::new();
        walk(&root, String::new(), &mut entries);
        Ok(Self { entries })
    }

    /// Location of `path`, or of its nearest recorded ancestor.
    pub fn locate(&self, path: &str) -> Option<(u64, u64, u32)> {
        let mut p = path.to_string();
        loop {
            if let Some((_, loc)) = self.entries.iter().find(|(k, _)| *k == p) {
                return Some(*loc);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }
}

fn walk(node: &Spanned<Node>, path: String, out: &mut Vec<(String, (u64, u64, u32))>) {
    let d = node.defined;
    out.push((path.clone(), (d.line(), d.column(), d.source_id())));
    match &node.value {
        Node::Map(kv) => {
            for (k, v) in kv {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, p, out);
            }
        }
        Node::Seq(items) => {
            for (i, v) in items.iter().enumerate() {
                walk(v, format!("{path}[{i}]"), out);
            }
        }
        Node::Leaf => {}
    }
}

/// A YAML node with locations on every child (values themselves are not kept).
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Leaf)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Node, D2::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element()? {
                    v.push(x);
                }
                Ok(Node::Seq(v))
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<KeyName>()? {
                    v.push((k.0, a.next_value()?));
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key as text (numbers and booleans as keys are spelled out).
struct KeyName(String);

impl<'de> Deserialize<'de> for KeyName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = KeyName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyName, E> {
                Ok(KeyName(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

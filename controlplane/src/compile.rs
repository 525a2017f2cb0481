//! From a validated profile to what the running switch uses: compiled routing
//! rules, resolved THOP keys, and the dataplane's plain config structs.

use std::path::PathBuf;

use crate::config::{ConfigError, ConfigErrors, Profile};

fn err(path: String, message: String) -> ConfigError {
    ConfigError { file: PathBuf::new(), line: None, column: None, path, message, snippet: None }
}

/// The THOP keys as (id, 32 bytes), secret files read.
pub fn thop_keys(p: &Profile) -> Result<Vec<(u32, [u8; 32])>, ConfigErrors> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, k) in p.thop.keys.iter().enumerate() {
        let hex_text = match (&k.secret_hex, &k.secret_file) {
            (Some(h), _) => h.clone(),
            (None, Some(f)) => match std::fs::read_to_string(f) {
                Ok(t) => t.trim().to_string(),
                Err(e) => {
                    errs.push(err(format!("thop.keys[{i}].secret_file"), format!("cannot read {f}: {e}")));
                    continue;
                }
            },
            (None, None) => continue,
        };
        let mut key = [0u8; 32];
        match hex::decode_to_slice(&hex_text, &mut key) {
            Ok(()) => out.push((k.id, key)),
            Err(_) => errs.push(err(format!("thop.keys[{i}]"), "secret must be 64 hex digits (32 bytes)".into())),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(ConfigErrors(errs))
    }
}

//! YAML profiles: types, loading with includes, validation, JSON Schema.

pub mod load;
pub mod reference;
pub mod types;
pub mod units;
pub mod validate;

pub use load::{
    load_file, load_file_with, load_str, properties_from_env, ConfigError, ConfigErrors, Loaded,
};
pub use types::*;
pub use units::{Addresses, DurationStr, MacAddr};

/// The JSON Schema of a profile (draft 2020-12), pretty-printed with a trailing newline.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Profile);
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema always serializes");
    s.push('\n');
    s
}

//! Subcommands other than `run`: profile checking and version text.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

/// `baton check-config`: exit 0 and print the resolved profile, or exit 1 and
/// print every problem with its file, line and field path.
pub fn check_config(file: &Path, set: &[(String, String)], json: bool, quiet: bool) -> ExitCode {
    let props = config::properties_from_env(set);
    match config::load_file_with(file, &props) {
        Ok(loaded) => {
            if !quiet {
                let files: Vec<String> = loaded
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect();
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&redacted(&loaded.profile))
                            .unwrap_or_default()
                    );
                } else {
                    println!("# {}: OK (read {})", file.display(), files.join(", "));
                    print!(
                        "{}",
                        serde_saphyr::to_string(&redacted(&loaded.profile)).unwrap_or_default()
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
                if let Some(s) = &e.snippet {
                    // The first line repeats the message; keep the excerpt.
                    for line in s.lines().skip(1) {
                        eprintln!("{line}");
                    }
                }
            }
            eprintln!("{}: {} problem(s)", file.display(), errs.0.len());
            ExitCode::FAILURE
        }
    }
}

/// `baton version`.
pub fn version_text() -> String {
    let dpdk = if cfg!(feature = "dpdk") {
        "+dpdk"
    } else {
        "-dpdk"
    };
    let af_xdp = if cfg!(feature = "af_xdp") {
        "+af_xdp"
    } else {
        "-af_xdp"
    };
    format!(
        "baton {} ({dpdk}, {af_xdp}, af_packet, memory)",
        env!("CARGO_PKG_VERSION")
    )
}

/// The profile with THOP secrets replaced, for printing.
pub fn redacted(p: &config::Profile) -> config::Profile {
    let mut p = p.clone();
    for k in &mut p.thop.keys {
        if k.secret_hex.is_some() {
            k.secret_hex = Some("<redacted>".into());
        }
    }
    p
}

//! curl as a client: many URLs in one invocation, one line of figures per
//! transfer (`--write-out`), a new connection per request by default so each
//! request is dispatched on its own (a handed-off connection stays on its
//! backend).

use crate::error::{BedError, Result};
use crate::netns;

/// One transfer's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    /// The URL.
    pub url: String,
    /// HTTP status (0: no response).
    pub code: u16,
    /// `X-Backend` (or the listener example's `X-Served-By`), "" when absent.
    pub backend: String,
    /// Body bytes received.
    pub size: u64,
}

impl Transfer {
    /// A 2xx response arrived.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

/// Fetches every URL (new connection each, 10 s cap per transfer) from `ns`.
pub fn fetch_all(ns: &str, urls: &[String]) -> Result<Vec<Transfer>> {
    let mut args: Vec<String> = vec![
        "-s".into(),
        "--max-time".into(),
        "10".into(),
        "-H".into(),
        "Connection: close".into(),
        "-w".into(),
        "%{http_code} %{size_download} [%header{x-backend}%header{x-served-by}]\\n".into(),
    ];
    for u in urls {
        args.push("-o".into());
        args.push("/dev/null".into());
        args.push(u.clone());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    // curl exits non-zero when the last transfer failed; the lines still say
    // what happened to each, so read them either way.
    let out = netns::command(Some(ns), "curl", &argv)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| BedError::Spawn {
            cmd: "curl".into(),
            source,
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut res = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut it = line.splitn(3, ' ');
        let code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let size = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
        let backend = it
            .next()
            .unwrap_or("[]")
            .trim_matches(|c| c == '[' || c == ']')
            .to_string();
        res.push(Transfer {
            url: urls.get(i).cloned().unwrap_or_default(),
            code,
            backend,
            size,
        });
    }
    // Transfers curl never reported count as failed.
    for u in urls.iter().skip(res.len()) {
        res.push(Transfer {
            url: u.clone(),
            code: 0,
            backend: String::new(),
            size: 0,
        });
    }
    Ok(res)
}

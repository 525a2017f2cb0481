//! Who may change the switch's state through the admin API.
//!
//! Reads (`/metrics`, `/healthz`, `/backends`, `/status`) need only an address on
//! `admin.allow`. Writes change what every client gets (a drained backend, a
//! reloaded profile), so they also need the bearer token of
//! `admin.token_file`, and are refused when a browser says it sends them on
//! behalf of another site (`Origin`, `Sec-Fetch-Site`): a page on any site
//! can make a browser on the management network POST to the admin address,
//! without a body and without reading the answer.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use mgmt_http::Request;

/// Shortest token accepted (e.g. `openssl rand -hex 16` gives 32).
pub const MIN_TOKEN_LEN: usize = 32;

/// Reads the token from `path`: refused when others than the owner may read
/// or write the file, or when the token is shorter than [`MIN_TOKEN_LEN`].
pub fn read_token_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} has mode {mode:04o}: group and others may access it; make it 0600 (or 0400)"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN {
        return Err(format!(
            "{shown} must hold a token of at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 16`)"
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{shown}: the token must be one word of visible ASCII characters"
        ));
    }
    Ok(token.to_string())
}

/// Why a write was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `admin.token_file`: writes are off (403).
    WritesDisabled,
    /// Missing or wrong bearer token (401).
    Unauthorized,
    /// Sent by a browser for another site (403).
    CrossSite,
}

impl Denied {
    /// The label of `baton_admin_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Denied::WritesDisabled => "writes_disabled",
            Denied::Unauthorized => "unauthorized",
            Denied::CrossSite => "cross_site",
        }
    }
}

/// Whether `req`, a state-changing call, may proceed.
pub fn authorize_write(req: &Request, token: Option<&str>) -> Result<(), Denied> {
    // A browser names the page that made it send the request. Only the admin
    // endpoint's own origin (its status page) or none is accepted.
    if let Some(site) = req.header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return Err(Denied::CrossSite);
        }
    }
    if req.headers.contains_key("origin") {
        let own = format!("http://{}", req.local);
        if req.header("origin") != Some(own.as_str()) {
            return Err(Denied::CrossSite);
        }
    }
    let Some(token) = token else {
        return Err(Denied::WritesDisabled);
    };
    let given = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if equal_in_constant_time(given.trim().as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        Err(Denied::Unauthorized)
    }
}

/// Compares without stopping at the first difference, so the time taken
/// does not tell how much of a guess was right.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn req(headers: &[(&str, &str)]) -> Request {
        let mut h = mgmt_http::HeaderMap::new();
        for (k, v) in headers {
            h.insert(
                mgmt_http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        Request {
            method: mgmt_http::Method::POST,
            path: "/reload".into(),
            headers: h,
            peer: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:9100".parse().unwrap(),
            body: Default::default(),
        }
    }

    const T: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn writes_need_the_token_and_no_foreign_origin() {
        let bearer = format!("Bearer {T}");
        assert_eq!(
            authorize_write(&req(&[]), None),
            Err(Denied::WritesDisabled)
        );
        assert_eq!(
            authorize_write(&req(&[]), Some(T)),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            authorize_write(&req(&[("authorization", "Bearer nope")]), Some(T)),
            Err(Denied::Unauthorized)
        );
        assert_eq!(
            authorize_write(&req(&[("authorization", &bearer)]), Some(T)),
            Ok(())
        );
        assert_eq!(
            authorize_write(
                &req(&[
                    ("authorization", &bearer),
                    ("origin", "http://evil.example")
                ]),
                Some(T)
            ),
            Err(Denied::CrossSite)
        );
        assert_eq!(
            authorize_write(
                &req(&[
                    ("authorization", &bearer),
                    ("origin", "http://127.0.0.1:9100")
                ]),
                Some(T)
            ),
            Ok(())
        );
        assert_eq!(
            authorize_write(
                &req(&[("authorization", &bearer), ("sec-fetch-site", "same-site")]),
                Some(T)
            ),
            Err(Denied::CrossSite)
        );
    }

    #[test]
    fn token_files_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("cp-token-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t");
        std::fs::write(&p, format!("{T}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&p).unwrap(), T);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("0604"));
        std::fs::write(&p, "short").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_token_file(&p).unwrap_err().contains("at least 32"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

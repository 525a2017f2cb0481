//! The web content every backend serves.
//!
//! Binary objects are the same bytes on every backend (a seeded generator), so
//! a client can verify a download's SHA-256 wherever it was served from; the
//! HTML and `/api/` answers name the backend, and every response carries an
//! `X-Backend: <name>` header (set by the web server config).

use crate::error::{BedError, Result};
use sha2::{Digest, Sha256};
use std::path::Path;

/// A downloadable object of a fixed size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Object {
    /// URL path.
    pub path: &'static str,
    /// Size in bytes.
    pub size: usize,
}

/// 1 KiB object.
pub const OBJ_1K: Object = Object {
    path: "/static/1k.bin",
    size: 1024,
};
/// 100 KiB object.
pub const OBJ_100K: Object = Object {
    path: "/static/100k.bin",
    size: 100 * 1024,
};
/// 1 MiB object.
pub const OBJ_1M: Object = Object {
    path: "/static/1m.bin",
    size: 1024 * 1024,
};
/// 10 MB object (the integrity test's download).
pub const OBJ_10M: Object = Object {
    path: "/static/10m.bin",
    size: 10_000_000,
};
/// Every binary object.
pub const OBJECTS: [Object; 4] = [OBJ_1K, OBJ_100K, OBJ_1M, OBJ_10M];

/// The page with many objects (for Chromium) and how many images it holds.
pub const PAGE: &str = "/page/index.html";
/// Images referenced by [`PAGE`].
pub const PAGE_IMAGES: usize = 48;

/// The deterministic bytes of an object (xorshift64*, seeded by its size).
pub fn object_bytes(size: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ size as u64;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out
}

/// Hex SHA-256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 every backend's copy of `obj` has.
pub fn expected_sha256(obj: Object) -> String {
    sha256_hex(&object_bytes(obj.size))
}

fn write(root: &Path, rel: &str, bytes: &[u8]) -> Result<()> {
    let p = root.join(rel.trim_start_matches('/'));
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| BedError::file(d, e))?;
    }
    std::fs::write(&p, bytes).map_err(|e| BedError::file(&p, e))
}

/// Writes backend `name`'s document root under `root`.
pub fn write_site(root: &Path, name: &str) -> Result<()> {
    let index = format!(
        "<!doctype html><title>{name}</title><h1>Baton test bed: backend {name}</h1>\n\
         <p>Served by {name}. Try <a href=\"{PAGE}\">the page with many objects</a>.</p>\n"
    );
    write(root, "/index.html", index.as_bytes())?;
    // The app pool's URLs as files, for backends served by a static file
    // server (the agent's listener example); nginx answers /api/ itself.
    for api in ["/api/items", "/api/users/42"] {
        let body = format!("{{\"backend\":\"{name}\",\"uri\":\"{api}\"}}\n");
        write(root, api, body.as_bytes())?;
    }
    for obj in OBJECTS {
        write(root, obj.path, &object_bytes(obj.size))?;
    }
    write(
        root,
        "/static/style.css",
        b"body{font-family:sans-serif}img{width:32px;height:32px;margin:2px}\n",
    )?;
    write(
        root,
        "/static/app.js",
        b"window.addEventListener('load',()=>{const ok=[...document.images].filter(i=>i.complete&&i.naturalWidth>0).length;\
document.body.setAttribute('data-images-ok',String(ok));document.title='loaded '+ok;});\n",
    )?;
    let mut page = String::from(
        "<!doctype html><html><head><title>many objects</title>\
         <link rel=\"stylesheet\" href=\"/static/style.css\">\
         <script src=\"/static/app.js\"></script></head><body>\n",
    );
    for i in 0..PAGE_IMAGES {
        let hue = (i * 360 / PAGE_IMAGES) as u32;
        let svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"32\" height=\"32\">\
             <rect width=\"32\" height=\"32\" fill=\"hsl({hue},70%,50%)\"/>\
             <text x=\"4\" y=\"20\" font-size=\"12\">{i}</text></svg>\n"
        );
        write(root, &format!("/static/img/{i}.svg"), svg.as_bytes())?;
        page.push_str(&format!("<img src=\"/static/img/{i}.svg\" alt=\"{i}\">\n"));
    }
    page.push_str(&format!(
        "<p id=\"who\">page from {name}</p></body></html>\n"
    ));
    write(root, PAGE, page.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_are_deterministic_and_sized() {
        for obj in [OBJ_1K, OBJ_100K] {
            let a = object_bytes(obj.size);
            assert_eq!(a.len(), obj.size);
            assert_eq!(a, object_bytes(obj.size));
        }
        assert_ne!(object_bytes(1024)[..64], object_bytes(2048)[..64]);
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}

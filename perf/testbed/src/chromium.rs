//! Headless Chromium in a client namespace: loads a page with a fresh
//! profile and returns the DOM after its scripts ran (the test pages mark
//! how many of their objects loaded).

use std::path::Path;

use crate::error::Result;
use crate::netns;

/// Flags of every headless run: no sandbox (root in a namespace), no GPU,
/// nothing fetched or shown that the test did not ask for.
const HEADLESS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-extensions",
    "--disable-background-networking",
];

/// Loads `url` from namespace `ns` with the user profile in `profile`
/// (a directory of the bed), `extra` flags added; the DOM as
/// `--dump-dom` prints it. Bounded to 60 s.
pub fn dump_dom(ns: &str, profile: &Path, url: &str, extra: &[&str]) -> Result<String> {
    let user = format!("--user-data-dir={}", profile.display());
    let mut args = vec!["60", "chromium"];
    args.extend_from_slice(HEADLESS);
    args.extend_from_slice(&[&user, "--virtual-time-budget=10000", "--dump-dom"]);
    args.extend_from_slice(extra);
    args.push(url);
    netns::run_stdout(Some(ns), "timeout", &args)
}

/// Headless Chromium driven over the DevTools protocol: the page's own
/// scripts run, the test reads the page's state, types, clicks and takes
/// screenshots (what `--dump-dom` cannot: it sees one moment and no click).
pub struct Browser {
    _proc: crate::process::Proc,
    ws: tungstenite::WebSocket<std::net::TcpStream>,
    next_id: u64,
}

/// The DevTools port inside the namespace (each bed has its own).
const DEVTOOLS_PORT: u16 = 9222;
/// How long one DevTools call may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl Browser {
    /// Starts Chromium in namespace `ns` (profile in `profile`, output in
    /// `log`) with a 1280×900 window, and attaches to its first tab.
    pub fn launch(ns: &str, profile: &Path, log: &Path) -> Result<Browser> {
        use crate::error::BedError;
        use std::time::{Duration, Instant};
        let user = format!("--user-data-dir={}", profile.display());
        let port = format!("--remote-debugging-port={DEVTOOLS_PORT}");
        let proc = crate::process::Proc::spawn(
            "chromium",
            ns,
            "chromium",
            &[
                HEADLESS,
                &[
                    "--hide-scrollbars",
                    "--window-size=1280,900",
                    "--remote-debugging-address=127.0.0.1",
                    &port,
                    &user,
                    "about:blank",
                ],
            ]
            .concat(),
            log,
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let list = netns::in_ns(ns, || {
                crate::client::get(
                    std::net::SocketAddr::from(([127, 0, 0, 1], DEVTOOLS_PORT)),
                    "/json/list",
                    &[],
                    Duration::from_secs(2),
                )
            })?;
            let found = list.ok().and_then(|r| {
                let v: serde_json::Value = serde_json::from_str(&r.text()).ok()?;
                v.as_array()?
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            if let Some(u) = found {
                break u;
            }
            if Instant::now() > deadline {
                return Err(BedError::Setup(format!(
                    "Chromium's DevTools did not answer in 30 s; its log:\n{}",
                    crate::process::log_tail(log, 20)
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let stream = netns::in_ns(ns, || {
            std::net::TcpStream::connect(("127.0.0.1", DEVTOOLS_PORT))
        })?
        .map_err(|e| BedError::io("connect to Chromium's DevTools", e))?;
        stream
            .set_read_timeout(Some(CALL_TIMEOUT))
            .map_err(|e| BedError::io("DevTools socket", e))?;
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|e| BedError::Setup(format!("DevTools WebSocket {url}: {e}")))?;
        Ok(Browser {
            _proc: proc,
            ws,
            next_id: 1,
        })
    }

    /// One DevTools call; its `result` (events that arrive meanwhile are
    /// skipped).
    pub fn call(&mut self, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
        use crate::error::BedError;
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        let fail = |e: tungstenite::Error| BedError::Setup(format!("DevTools {method}: {e}"));
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .map_err(fail)?;
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        while std::time::Instant::now() < deadline {
            let tungstenite::Message::Text(t) = self.ws.read().map_err(fail)? else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(t.as_str())
                .map_err(|e| BedError::Setup(format!("DevTools {method}: {e}")))?;
            if v["id"] != id {
                continue;
            }
            if let Some(err) = v.get("error") {
                return Err(BedError::Setup(format!("DevTools {method}: {err}")));
            }
            return Ok(v["result"].clone());
        }
        Err(BedError::Setup(format!("DevTools {method}: no answer")))
    }

    /// Opens `url` in the tab.
    pub fn navigate(&mut self, url: &str) -> Result<()> {
        self.call("Page.navigate", serde_json::json!({ "url": url }))
            .map(|_| ())
    }

    /// Evaluates `expr` in the page (promises awaited); its value as JSON.
    pub fn eval(&mut self, expr: &str) -> Result<serde_json::Value> {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            return Err(crate::error::BedError::Setup(format!(
                "script `{expr}` threw: {ex}"
            )));
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expr` until it is truthy (or `timeout` passes); its value.
    pub fn wait_for(
        &mut self,
        expr: &str,
        timeout: std::time::Duration,
    ) -> Result<serde_json::Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let v = self.eval(expr)?;
            let truthy = !matches!(&v, serde_json::Value::Null | serde_json::Value::Bool(false))
                && v != 0
                && v != "";
            if truthy {
                return Ok(v);
            }
            if std::time::Instant::now() > deadline {
                return Err(crate::error::BedError::Setup(format!(
                    "page never satisfied `{expr}` in {timeout:?} (last: {v})"
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&mut self, path: &Path) -> Result<()> {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let data = r["data"].as_str().unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| crate::error::BedError::Setup(format!("screenshot: {e}")))?;
        std::fs::write(path, png).map_err(|e| crate::error::BedError::file(path, e))
    }
}

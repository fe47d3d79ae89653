//! Headless Chromium driven over the DevTools protocol (a websocket), for tests of the admin
//! status page: real page load, real script, real mouse clicks.
#![allow(clippy::unwrap_used)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Chromium binary, if installed (`make deps` installs Debian's `chromium`).
pub fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A headless Chromium with one page, ended (by its pid) when dropped.
pub struct Browser {
    child: Child,
    port: u16,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// DevTools events read while waiting for a command's answer, oldest first.
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `bin` headless on a fresh profile and attaches to its first page.
    pub fn start(bin: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = wait_port(profile.path());
        let page_ws = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let list =
                    get_json(&format!("http://127.0.0.1:{port}/json/list")).unwrap_or(Value::Null);
                let found = list.as_array().and_then(|targets| {
                    targets
                        .iter()
                        .find(|t| t["type"] == "page")
                        .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(String::from))
                });
                if let Some(ws) = found {
                    break ws;
                }
                assert!(Instant::now() < deadline, "chromium shows no page target");
                std::thread::sleep(Duration::from_millis(50));
            }
        };
        let (page, _) = tungstenite::connect(page_ws.as_str()).unwrap();
        if let MaybeTlsStream::Plain(s) = page.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        }
        Browser {
            child,
            port,
            page,
            next_id: 1,
            events: Vec::new(),
            _profile: profile,
        }
    }

    /// Sends one DevTools command to the page and returns its `result`.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.page.send(Message::text(msg.to_string())).unwrap();
        loop {
            let Message::Text(text) = self.page.read().unwrap() else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
            if v.get("method").is_some() {
                self.events.push(v);
            }
        }
    }

    /// True if the event `method` has been read and not consumed by [`Browser::wait_event`].
    pub fn events_seen(&self, method: &str) -> bool {
        self.events.iter().any(|e| e["method"] == method)
    }

    /// Waits for the DevTools event `method` (enable its domain first) and returns its params.
    pub fn wait_event(&mut self, method: &str) -> Value {
        loop {
            if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
                return self.events.remove(i)["params"].clone();
            }
            let Message::Text(text) = self.page.read().unwrap() else {
                continue;
            };
            self.events
                .push(serde_json::from_str(text.as_str()).unwrap());
        }
    }

    /// Evaluates `js` in the page and returns its value.
    pub fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        r["result"]["value"].clone()
    }

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// Polls `js` until it evaluates to `true`.
    pub fn wait_until(&mut self, what: &str, within: Duration, js: &str) {
        let deadline = Instant::now() + within;
        while self.eval(js) != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the middle of the element `selector` with the mouse, as a person would.
    pub fn click(&mut self, selector: &str) {
        let js = format!(
            "(function(){{const r=document.querySelector({sel}).getBoundingClientRect();\
             return [r.left+r.width/2,r.top+r.height/2];}})()",
            sel = serde_json::to_string(selector).unwrap()
        );
        let at = self.eval(&js);
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            );
        }
    }

    /// Saves a PNG of the page at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask the browser to close (it ends its own helper processes), then make sure.
        let version = get_json(&format!("http://127.0.0.1:{}/json/version", self.port));
        if let Some(ws) = version
            .as_ref()
            .and_then(|v| v["webSocketDebuggerUrl"].as_str())
        {
            if let Ok((mut b, _)) = tungstenite::connect(ws) {
                let _ = b.send(Message::text(r#"{"id":1,"method":"Browser.close"}"#));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools port Chromium chose, from `DevToolsActivePort` in its profile.
fn wait_port(profile: &Path) -> u16 {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(port) = std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse().ok()))
        {
            return port;
        }
        assert!(
            Instant::now() < deadline,
            "chromium did not open its DevTools port"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GETs `url` from the DevTools HTTP endpoint and parses the answer.
fn get_json(url: &str) -> Option<Value> {
    let text = crate::common::client().get(url).send().ok()?.text().ok()?;
    serde_json::from_str(&text).ok()
}

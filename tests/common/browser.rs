//! Headless Chromium driven over the Chrome DevTools Protocol (CDP), for tests that open a
//! self-contained HTML page and check its console, its network requests, its DOM and its
//! rendering. No Node: a plain websocket to the page target.
//!
//! ```ignore
//! let Some(mut page) = browser::Page::open(&html, 1280) else {
//!     eprintln!("skipped: no Chromium at /usr/bin/chromium");
//!     return;
//! };
//! assert_eq!(page.console_errors(), Vec::<String>::new());
//! assert!(page.requests().iter().all(|u| u == page.url()));
//! ```
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// Debian's Chromium launcher.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The viewport height of [`Page::open`] and [`Page::set_width`].
const HEIGHT: u32 = 900;
/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a navigation, a command or an evaluation may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Debian's Chromium, apt-installed once per process when missing and running as root, so that
/// fresh machines can run the browser tests; None (after saying why) when it stays missing.
pub fn chromium() -> Option<PathBuf> {
    let path = PathBuf::from(CHROMIUM);
    if path.exists() {
        return Some(path);
    }
    static INSTALLED: OnceLock<Option<PathBuf>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            if !is_root() {
                eprintln!("chromium: {CHROMIUM} is missing and not root, so no apt-get install");
                return None;
            }
            eprintln!("chromium: {CHROMIUM} is missing; apt-get install -y chromium …");
            if !apt(&["install", "-y", "-q", "chromium"]) {
                let _ = apt(&["update", "-q"]) && apt(&["install", "-y", "-q", "chromium"]);
            }
            let path = PathBuf::from(CHROMIUM);
            if path.exists() {
                Some(path)
            } else {
                eprintln!("chromium: still no {CHROMIUM} after apt-get");
                None
            }
        })
        .clone()
}

/// Whether this process runs as root (`id -u` is 0), the only case where apt-get can install.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `apt-get ARGS` non-interactively (waiting for a held dpkg lock), telling stderr how it
/// failed, so that a skipped test says why.
fn apt(args: &[&str]) -> bool {
    let output = Command::new("apt-get")
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let stderr = String::from_utf8_lossy(&o.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            eprintln!("chromium: apt-get {args:?} failed ({}): {tail:?}", o.status);
            false
        }
        Err(e) => {
            eprintln!("chromium: cannot run apt-get: {e}");
            false
        }
    }
}

/// A running headless Chromium with a fresh profile; its whole process group is killed on drop
/// so that no browser, zygote or renderer outlives the test.
struct Browser {
    child: Child,
    port: u16,
    /// Everything Chromium printed on stderr so far, for panic messages.
    stderr: Arc<Mutex<Vec<String>>>,
    /// The `--user-data-dir`, removed after the process is gone.
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts Chromium on a free DevTools port and waits for its `DevTools listening on` line,
    /// the only reliable way to learn that port.
    fn launch(exe: &Path) -> Browser {
        let profile = tempfile::tempdir().expect("temp dir for the Chromium profile");
        let mut child = Command::new(exe)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--remote-debugging-port=0", "about:blank"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let mut pipe = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::clone(&stderr);
        // Keeps draining stderr for the browser's whole life: a full pipe would block Chromium.
        std::thread::spawn(move || {
            let mut line = Vec::new();
            while pipe.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                log.lock().unwrap().push(text.clone());
                let _ = tx.send(text);
                line.clear();
            }
        });
        let mut browser = Browser {
            child,
            port: 0,
            stderr,
            _profile: profile,
        };
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let ws = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find("DevTools listening on ") {
                        break line[at + "DevTools listening on ".len()..]
                            .trim()
                            .to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "Chromium printed no DevTools address in {LAUNCH_TIMEOUT:?}; stderr:\n{}",
                        browser.stderr_text()
                    )
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = browser.child.wait();
                    panic!(
                        "Chromium exited ({status:?}) before listening; stderr:\n{}",
                        browser.stderr_text()
                    )
                }
            }
        };
        browser.port = host_port(&ws)
            .and_then(|hp| hp.rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no port in the DevTools address {ws:?}"));
        browser
    }

    /// Chromium's stderr so far, to explain a failure.
    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// The websocket URL of the `about:blank` page target, polled from `/json/list` because the
    /// target may show up a moment after the DevTools line.
    fn page_target(&self) -> String {
        let url = format!("http://127.0.0.1:{}/json/list", self.port);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let targets = ureq::get(&url)
                .timeout(Duration::from_secs(5))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok());
            let page = targets.as_ref().and_then(Value::as_array).and_then(|ts| {
                ts.iter()
                    .filter(|t| t["type"] == "page")
                    .find(|t| t["url"] == "about:blank")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            });
            if let Some(ws) = page {
                return ws.to_string();
            }
            if Instant::now() > deadline {
                panic!(
                    "no about:blank page in {url}: {targets:?}; stderr:\n{}",
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    /// Kills Chromium's process group (browser and helpers) and reaps the browser.
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain syscall; the group is the one `process_group(0)` made for this child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `host:port` of a `ws://host:port/path` URL, to open the TCP stream under the websocket.
fn host_port(ws: &str) -> Option<&str> {
    ws.strip_prefix("ws://")?.split('/').next()
}

/// A CDP session on one target: commands with increasing ids, and every event kept in arrival
/// order (events are what tests inspect).
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    events: Vec<Value>,
}

impl Cdp {
    /// Opens the websocket with no message or frame size limit, since full-page screenshots
    /// arrive as one large base64 frame.
    fn connect(url: &str) -> Cdp {
        let addr = host_port(url).unwrap_or_else(|| panic!("not a ws:// URL: {url}"));
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) = tungstenite::client::client_with_config(url, stream, Some(config))
            .unwrap_or_else(|e| panic!("websocket handshake with {url}: {e}"));
        Cdp {
            ws,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// The next CDP message, or None at the deadline (the read timeout is what lets a wait end).
    fn recv(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    return Some(serde_json::from_str(&text).expect("CDP message is JSON"))
                }
                Ok(Message::Binary(bytes)) => {
                    return Some(serde_json::from_slice(&bytes).expect("CDP message is JSON"))
                }
                Ok(Message::Close(frame)) => {
                    panic!("Chromium closed the DevTools socket: {frame:?}")
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("DevTools socket: {e}"),
            }
        }
    }

    /// Sends `method` and returns its result, keeping the events that arrive meanwhile; panics
    /// on a CDP error or after [`TIMEOUT`], so tests fail loudly rather than hang.
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.ws
            .send(Message::text(request.to_string()))
            .unwrap_or_else(|e| panic!("send {method}: {e}"));
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let Some(message) = self.recv(deadline) else {
                panic!("no reply to {method} in {TIMEOUT:?}")
            };
            if message["id"] == id {
                if let Some(error) = message.get("error") {
                    panic!("{method} failed: {error}");
                }
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Waits for an event named `method` among those from index `since` on, so an event that
    /// came while a command was pending still counts.
    fn wait_event(&mut self, method: &str, since: usize) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = since;
        loop {
            if let Some(e) = self.events[seen..].iter().find(|e| e["method"] == method) {
                return e.clone();
            }
            seen = self.events.len();
            match self.recv(deadline) {
                Some(message) if message.get("method").is_some() => self.events.push(message),
                Some(_) => {}
                None => panic!("no {method} in {TIMEOUT:?}"),
            }
        }
    }
}

/// One HTML file loaded in its own headless Chromium, with everything it logged and requested.
pub struct Page {
    /// Behind a RefCell so that the `&self` queries can first catch up with the browser.
    cdp: RefCell<Cdp>,
    url: String,
    width: u32,
    /// Declared last: the browser dies after the socket is closed.
    _browser: Browser,
}

impl Page {
    /// Opens `html` at `width` CSS px (mobile emulation below 600) once it has loaded, recording
    /// console and network from the first byte; None when there is no Chromium.
    pub fn open(html: &Path, width: u32) -> Option<Page> {
        let exe = chromium()?;
        let path = std::fs::canonicalize(html)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", html.display()));
        let url = file_url(&path);
        let browser = Browser::launch(&exe);
        let mut cdp = Cdp::connect(&browser.page_target());
        for domain in ["Runtime", "Log", "Network", "Page"] {
            cdp.call(&format!("{domain}.enable"), json!({}));
        }
        let mut page = Page {
            cdp: RefCell::new(cdp),
            url,
            width,
            _browser: browser,
        };
        page.set_viewport(width, HEIGHT);
        let cdp = page.cdp.get_mut();
        let since = cdp.events.len();
        let navigated = cdp.call("Page.navigate", json!({ "url": page.url }));
        if let Some(error) = navigated.get("errorText") {
            panic!("cannot navigate to {}: {error}", page.url);
        }
        cdp.wait_event("Page.loadEventFired", since);
        Some(page)
    }

    /// The file:// URL the page was loaded from, which is the one request a self-contained page
    /// should make.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every uncaught exception, `console.error`/`console.assert` failure and error-level log
    /// entry (failed loads, CSP, …) so far, one line each, so a test can assert there are none.
    pub fn console_errors(&self) -> Vec<String> {
        self.sync();
        let cdp = self.cdp.borrow();
        cdp.events.iter().filter_map(console_error).collect()
    }

    /// The URL of every request the page made so far (its own file:// URL included), so a test
    /// can assert that a self-contained page fetches nothing else.
    pub fn requests(&self) -> Vec<String> {
        self.sync();
        let cdp = self.cdp.borrow();
        cdp.events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str().map(String::from))
            .collect()
    }

    /// The value of `js` (promises awaited), keeping the events it causes; panics with the
    /// exception text when it throws, so a broken check cannot pass silently.
    pub fn eval(&mut self, js: &str) -> Value {
        let reply = self.cdp.get_mut().call(
            "Runtime.evaluate",
            json!({ "expression": js, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(details) = reply.get("exceptionDetails") {
            panic!("eval of {js:?} threw: {}", exception_text(details));
        }
        reply["result"].get("value").cloned().unwrap_or(Value::Null)
    }

    /// Writes a PNG of the whole page at the current width, by growing the viewport to the
    /// content height (so fixed and viewport-relative layout renders as it would when scrolled).
    pub fn screenshot(&mut self, out: &Path) {
        let metrics = self.cdp.get_mut().call("Page.getLayoutMetrics", json!({}));
        let height = metrics["cssContentSize"]["height"]
            .as_f64()
            .unwrap_or_else(|| panic!("no cssContentSize in {metrics}"));
        self.set_viewport(self.width, (height.ceil() as u32).max(1));
        let shot = self.cdp.get_mut().call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        self.set_viewport(self.width, HEIGHT);
        let data = shot["data"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot is base64");
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(out, png).unwrap_or_else(|e| panic!("write {}: {e}", out.display()));
    }

    /// Re-lays the page out at `width` CSS px (mobile below 600), for responsive checks.
    pub fn set_width(&mut self, width: u32) {
        self.width = width;
        self.set_viewport(width, HEIGHT);
    }

    /// Emulates a `width`×`height` screen at scale 1, mobile below 600 px as phones are.
    fn set_viewport(&mut self, width: u32, height: u32) {
        self.cdp.get_mut().call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": width < 600,
            }),
        );
    }

    /// One round trip to the renderer, so that every event it emitted before (say, an error
    /// thrown by a click handler) has been received.
    fn sync(&self) {
        self.cdp
            .borrow_mut()
            .call("Runtime.evaluate", json!({ "expression": "0" }));
    }
}

/// The one-line description of a console-error event, None for any other event.
fn console_error(event: &Value) -> Option<String> {
    let params = &event["params"];
    match event["method"].as_str()? {
        "Runtime.exceptionThrown" => Some(format!(
            "exception: {}",
            exception_text(&params["exceptionDetails"])
        )),
        "Runtime.consoleAPICalled" if params["type"] == "error" || params["type"] == "assert" => {
            let args: Vec<String> = params["args"]
                .as_array()
                .into_iter()
                .flatten()
                .map(remote_object_text)
                .collect();
            Some(format!(
                "console.{}: {}",
                params["type"].as_str()?,
                args.join(" ")
            ))
        }
        "Log.entryAdded" if params["entry"]["level"] == "error" => {
            let entry = &params["entry"];
            let mut line = format!(
                "log.{}: {}",
                entry["source"].as_str().unwrap_or("?"),
                entry["text"].as_str().unwrap_or("")
            );
            if let Some(url) = entry["url"].as_str().filter(|u| !u.is_empty()) {
                line.push_str(&format!(" ({url})"));
            }
            Some(line)
        }
        _ => None,
    }
}

/// The readable text of CDP `exceptionDetails`: "Uncaught" plus the error and where it was.
fn exception_text(details: &Value) -> String {
    let mut text = details["text"].as_str().unwrap_or("exception").to_string();
    if let Some(description) = details["exception"]["description"].as_str() {
        // The first line is the error; the rest is a stack trace.
        text.push_str(&format!(" {}", description.lines().next().unwrap_or("")));
    } else if let Some(value) = details["exception"].get("value") {
        text.push_str(&format!(" {value}"));
    }
    if let Some(url) = details["url"].as_str().filter(|u| !u.is_empty()) {
        let line = details["lineNumber"].as_u64().unwrap_or(0) + 1;
        text.push_str(&format!(" ({url}:{line})"));
    }
    text
}

/// A console argument as text: strings bare, other values as JSON, objects by description.
fn remote_object_text(arg: &Value) -> String {
    match arg.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => arg["description"]
            .as_str()
            .or(arg["unserializableValue"].as_str())
            .or(arg["type"].as_str())
            .unwrap_or("?")
            .to_string(),
    }
}

/// The file:// URL of an absolute path, percent-encoding all but unreserved bytes and `/`
/// (the form Chromium reports back in `requestWillBeSent`).
fn file_url(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut url = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            url.push(b as char);
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

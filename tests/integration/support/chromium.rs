//! Headless Chromium for the browser tests: one browser per test, tabs driven over CDP.
//!
//! `Chromium::launch` starts Debian's `/usr/bin/chromium` (or `$CHROMIUM`) with the flags this
//! closed network needs and a fresh profile under `target/tmp`. Without Chromium, a test fails
//! when `CI=true` and otherwise prints a skip notice and returns early.
//!
//! A `Tab` waits for what a person would wait for: `submit`/`open` mark the current document,
//! act, and return once a new document has finished loading, wherever the redirects led.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::cdp::Connection;

/// How long a page may take to arrive after a click or a navigation.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// The viewport of every tab, and so of the screenshots.
pub const VIEWPORT: (u32, u32) = (900, 760);

/// The flags this machine's closed network needs (see README: Browser tests).
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-features=Translate,MediaRouter,OptimizationHints",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
];

/// Where Chromium is: `$CHROMIUM` when set (nothing if that is not a file), else a Debian or
/// Google build in /usr/bin or on PATH.
fn chromium_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let names = ["chromium", "chromium-browser", "google-chrome"];
    let mut directories: Vec<PathBuf> = vec![PathBuf::from("/usr/bin")];
    if let Some(path) = std::env::var_os("PATH") {
        directories.extend(std::env::split_paths(&path));
    }
    directories
        .iter()
        .flat_map(|directory| names.iter().map(move |name| directory.join(name)))
        .find(|candidate| candidate.is_file())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true")
}

/// `target/screenshots`, next to `target/tmp`.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("screenshots"))
        .unwrap_or_else(|| PathBuf::from("target/screenshots"))
}

pub struct Chromium {
    connection: Arc<Connection>,
    child: Child,
    profile: PathBuf,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
        let log = self.profile.with_extension("log");
        if std::thread::panicking() {
            eprintln!("Chromium's own log: {}", log.display());
        } else {
            let _ = std::fs::remove_file(log);
        }
    }
}

impl Chromium {
    /// A fresh headless Chromium, or `None` (after a notice) when there is none and CI is unset.
    /// Panics when Chromium is missing and `CI=true`, or when it does not start.
    pub async fn launch(test: &str) -> Option<Chromium> {
        let Some(executable) = chromium_path() else {
            assert!(
                !in_ci(),
                "{test}: Chromium is required for the browser tests when CI=true, and none was \
                 found (looked for $CHROMIUM, /usr/bin/chromium, chromium on PATH). Install \
                 Debian's `chromium` package: `bash .ci/run` does."
            );
            // Straight to stderr, past the test harness's capture, so the skip is seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: Chromium not found (install Debian's `chromium` or set \
                 CHROMIUM=/path/to/chrome); with CI=true this is a failure"
            );
            return None;
        };
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let profile = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "chromium-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&profile);
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(profile.with_extension("log")).unwrap();
        // fd 3 ← our stdin pipe (commands), fd 4 → our stdout pipe (answers and events).
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>/dev/null"#)
            .arg(&executable)
            .args(FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
            .arg("about:blank")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("{test}: cannot start {}: {error}", executable.display())
            });
        let connection = Arc::new(Connection::new(
            child.stdin.take().unwrap(),
            child.stdout.take().unwrap(),
        ));
        let browser = Chromium {
            connection,
            child,
            profile,
        };
        if let Err(error) = browser
            .connection
            .call(None, "Browser.getVersion", json!({}))
            .await
        {
            let log =
                std::fs::read_to_string(browser.profile.with_extension("log")).unwrap_or_default();
            panic!("{test}: Chromium did not answer over CDP: {error}\n{log}");
        }
        Some(browser)
    }

    /// A new tab (sharing cookies with the others, like tabs of one window), at about:blank.
    pub async fn new_tab(&self) -> Tab {
        let created = self
            .connection
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await
            .unwrap();
        let target = created["targetId"].as_str().unwrap().to_string();
        let attached = self
            .connection
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target, "flatten": true}),
            )
            .await
            .unwrap();
        let session = attached["sessionId"].as_str().unwrap().to_string();
        let tab = Tab {
            connection: self.connection.clone(),
            session,
            console: Arc::default(),
        };
        tab.collect_console();
        tab.call("Page.enable", json!({})).await;
        tab.call("Runtime.enable", json!({})).await;
        tab.call("Network.enable", json!({})).await;
        tab.set_viewport(VIEWPORT.0, VIEWPORT.1, false).await;
        tab
    }

    /// Closes the browser and removes its profile.
    pub async fn close(mut self) {
        let _ = self.connection.call(None, "Browser.close", json!({})).await;
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }
}

/// What a page shows right now.
#[derive(Debug, Clone, Default)]
pub struct PageState {
    pub url: String,
    pub title: String,
    pub text: String,
    pub ready: bool,
    /// False while the document the tab showed before the last action is still there.
    pub fresh: bool,
}

impl PageState {
    pub fn shows(&self, text: &str) -> bool {
        self.text.contains(text)
    }
}

pub struct Tab {
    connection: Arc<Connection>,
    session: String,
    /// Console messages and uncaught exceptions, for failure messages.
    console: Arc<Mutex<Vec<String>>>,
}

impl Tab {
    pub async fn call(&self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|error| panic!("CDP {error}"))
    }

    pub async fn try_call(&self, method: &str, params: Value) -> Result<Value, String> {
        self.connection
            .call(Some(&self.session), method, params)
            .await
    }

    fn collect_console(&self) {
        let mut events = self.connection.events();
        let session = self.session.clone();
        let console = self.console.clone();
        tokio::spawn(async move {
            while let Ok(event) = events.recv().await {
                if event.session.as_deref() != Some(session.as_str()) {
                    continue;
                }
                let line = match event.method.as_str() {
                    "Runtime.consoleAPICalled" => format!(
                        "console.{}: {}",
                        event.params["type"].as_str().unwrap_or("log"),
                        event.params["args"]
                            .as_array()
                            .map(|args| args
                                .iter()
                                .map(|arg| arg["value"].to_string())
                                .collect::<Vec<_>>()
                                .join(" "))
                            .unwrap_or_default()
                    ),
                    "Runtime.exceptionThrown" => format!(
                        "exception: {}",
                        event.params["exceptionDetails"]["exception"]["description"]
                    ),
                    _ => continue,
                };
                console.lock().unwrap().push(line);
            }
        });
    }

    fn console_lines(&self) -> String {
        self.console.lock().unwrap().join("\n")
    }

    /// Sets the viewport (the screenshot size); `mobile` emulates a phone.
    pub async fn set_viewport(&self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }

    /// Evaluates JavaScript in the page (as if from a user gesture) and returns its value.
    pub async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let answer = self
            .try_call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(format!("JavaScript exception: {details}"));
        }
        Ok(answer["result"]["value"].clone())
    }

    pub async fn eval(&self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|error| panic!("{expression}: {error}"))
    }

    /// The page now; errors while a document is being replaced give an empty, unready state.
    pub async fn state(&self) -> PageState {
        let expression = "JSON.stringify({url: location.href, title: document.title, \
             text: document.body ? document.body.innerText : '', \
             ready: document.readyState === 'complete', fresh: !window.__porticoSeen})";
        let Ok(Value::String(text)) = self.try_eval(expression).await else {
            return PageState::default();
        };
        let value: Value = serde_json::from_str(&text).unwrap_or_default();
        PageState {
            url: value["url"].as_str().unwrap_or_default().to_string(),
            title: value["title"].as_str().unwrap_or_default().to_string(),
            text: value["text"].as_str().unwrap_or_default().to_string(),
            ready: value["ready"].as_bool().unwrap_or(false),
            fresh: value["fresh"].as_bool().unwrap_or(false),
        }
    }

    /// Waits until `check` holds for the page, failing after `PAGE_TIMEOUT` with what it showed.
    pub async fn wait_for(&self, what: &str, check: impl Fn(&PageState) -> bool) -> PageState {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let state = self.state().await;
            if state.ready && check(&state) {
                return state;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the tab shows {} ({:?}):\n{}\nconsole:\n{}",
                state.url,
                state.title,
                state.text,
                self.console_lines()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Marks the current document, so the next wait can tell a new one from it.
    async fn mark_document(&self) {
        let _ = self.try_eval("window.__porticoSeen = true").await;
    }

    async fn next_document(&self, what: &str) -> PageState {
        self.wait_for(what, |state| state.fresh).await
    }

    /// Navigates to `url` and returns the page it ends on after redirects.
    pub async fn open(&self, url: &str) -> PageState {
        self.mark_document().await;
        let navigated = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(error) = navigated.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url} failed: {error}");
        }
        self.next_document(&format!("the page after opening {url}"))
            .await
    }

    /// Clicks the element `selector` names (which must exist).
    pub async fn click(&self, selector: &str) {
        let selector_literal = serde_json::to_string(selector).unwrap();
        let clicked = self
            .eval(&format!(
                "(() => {{ const element = document.querySelector({selector_literal}); \
                 if (!element) return false; element.click(); return true; }})()"
            ))
            .await;
        assert_eq!(
            clicked,
            Value::Bool(true),
            "no element {selector} on {:?}",
            self.state().await
        );
    }

    /// Clicks `selector` and returns the next document (after any redirects).
    pub async fn submit(&self, selector: &str) -> PageState {
        self.mark_document().await;
        self.click(selector).await;
        self.next_document(&format!("the page after clicking {selector}"))
            .await
    }

    /// Types `value` into the input `selector` names.
    pub async fn fill(&self, selector: &str, value: &str) {
        let selector_literal = serde_json::to_string(selector).unwrap();
        let value_literal = serde_json::to_string(value).unwrap();
        let filled = self
            .eval(&format!(
                "(() => {{ const element = document.querySelector({selector_literal}); \
                 if (!element) return false; element.value = {value_literal}; return true; }})()"
            ))
            .await;
        assert_eq!(filled, Value::Bool(true), "no input {selector}");
    }

    /// Saves a PNG of the viewport as `target/screenshots/{name}.png`; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let shot = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap())
            .unwrap();
        let directory = screenshot_dir();
        std::fs::create_dir_all(&directory).unwrap();
        let path = directory.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// The cookies Chromium would send to `url`, as it stores them.
    pub async fn cookies(&self, url: &str) -> Vec<Value> {
        let answer = self
            .call("Network.getCookies", json!({"urls": [url]}))
            .await;
        answer["cookies"].as_array().cloned().unwrap_or_default()
    }

    /// Deletes every cookie for `url` whose name starts with `prefix`; returns how many.
    pub async fn delete_cookies(&self, url: &str, prefix: &str) -> usize {
        let names: Vec<String> = self
            .cookies(url)
            .await
            .iter()
            .filter_map(|cookie| cookie["name"].as_str())
            .filter(|name| name.starts_with(prefix))
            .map(str::to_string)
            .collect();
        for name in &names {
            self.call("Network.deleteCookies", json!({"name": name, "url": url}))
                .await;
        }
        names.len()
    }

    /// Adds a virtual platform authenticator (CTAP2, resident keys, user verification) that
    /// approves every ceremony; returns its id.
    pub async fn add_virtual_authenticator(&self) -> String {
        self.call("WebAuthn.enable", json!({"enableUI": false}))
            .await;
        let added = self
            .call(
                "WebAuthn.addVirtualAuthenticator",
                json!({"options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserVerified": true,
                    "automaticPresenceSimulation": true,
                }}),
            )
            .await;
        added["authenticatorId"].as_str().unwrap().to_string()
    }

    /// The credentials the virtual authenticator holds.
    pub async fn authenticator_credentials(&self, authenticator: &str) -> Vec<Value> {
        let answer = self
            .call(
                "WebAuthn.getCredentials",
                json!({"authenticatorId": authenticator}),
            )
            .await;
        answer["credentials"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

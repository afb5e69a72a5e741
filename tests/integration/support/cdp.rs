//! A small Chrome DevTools Protocol connection over `--remote-debugging-pipe`.
//!
//! With that flag Chromium reads commands from file descriptor 3 and writes answers and events
//! to descriptor 4, each one JSON message ended by a NUL byte. `Chromium::launch` maps the
//! child's stdin and stdout pipes onto those descriptors, so the tests need no websocket stack:
//! the CDP client crates bring one (tungstenite, and with it a second `rand`, plus a second
//! `reqwest` for chromiumoxide 0.9), which the one-version rule for direct dependencies forbids.
//! Commands go out with an id; the reader task hands each answer to whoever waits for that id
//! and broadcasts events.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

/// How long one command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A CDP event: which session (tab) it came from, its method and parameters.
#[derive(Clone, Debug)]
pub struct Event {
    pub session: Option<String>,
    pub method: String,
    pub params: Value,
}

pub struct Connection {
    writer: tokio::sync::Mutex<ChildStdin>,
    next_id: AtomicU64,
    waiters: Waiters,
    events: broadcast::Sender<Event>,
    reader: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Connection {
    pub fn new(stdin: ChildStdin, stdout: ChildStdout) -> Connection {
        let waiters: Waiters = Arc::default();
        let (events, _) = broadcast::channel(256);
        let reader = tokio::spawn(read_messages(stdout, waiters.clone(), events.clone()));
        Connection {
            writer: tokio::sync::Mutex::new(stdin),
            next_id: AtomicU64::new(1),
            waiters,
            events,
            reader,
        }
    }

    /// Events from now on.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Sends `method` (to the tab `session`, or to the browser) and waits for its result.
    pub async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let (sender, receiver) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id, sender);
        let mut bytes = serde_json::to_vec(&message).map_err(|error| error.to_string())?;
        bytes.push(0);
        {
            let mut writer = self.writer.lock().await;
            let written = async {
                writer.write_all(&bytes).await?;
                writer.flush().await
            };
            if let Err(error) = written.await {
                self.waiters.lock().unwrap().remove(&id);
                return Err(format!("{method}: cannot write to Chromium: {error}"));
            }
        }
        match tokio::time::timeout(COMMAND_TIMEOUT, receiver).await {
            Ok(Ok(answer)) => answer.map_err(|error| format!("{method}: {error}")),
            Ok(Err(_)) => Err(format!("{method}: Chromium closed the DevTools pipe")),
            Err(_) => {
                self.waiters.lock().unwrap().remove(&id);
                Err(format!("{method}: no answer within {COMMAND_TIMEOUT:?}"))
            }
        }
    }
}

async fn read_messages(stdout: ChildStdout, waiters: Waiters, events: broadcast::Sender<Event>) {
    let mut reader = BufReader::new(stdout);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(0, &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if buffer.last() == Some(&0) {
            buffer.pop();
        }
        let Ok(message) = serde_json::from_slice::<Value>(&buffer) else {
            continue;
        };
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            let answer = match message.get("error") {
                Some(error) => Err(error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error")
                    .to_string()),
                None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
            };
            if let Some(waiter) = waiters.lock().unwrap().remove(&id) {
                let _ = waiter.send(answer);
            }
        } else if let Some(method) = message.get("method").and_then(Value::as_str) {
            let _ = events.send(Event {
                session: message
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                method: method.to_string(),
                params: message.get("params").cloned().unwrap_or(Value::Null),
            });
        }
    }
    // Chromium is gone: everyone still waiting gets an error instead of a timeout.
    waiters.lock().unwrap().clear();
}

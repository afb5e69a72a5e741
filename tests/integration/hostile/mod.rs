//! The upstream edge under attack (issue 16): a hostile upstream of our own
//! (raw TCP, answering with exactly the bytes each case scripts) and hostile
//! clients (raw TCP, framing what no browser would). Every case checks what
//! the client got, what the upstream received, and that the next user's
//! answer, on the pooled connection or a new one, is their own.

mod client;
mod upstream;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::TestApp;

/// One request as the hostile upstream received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Which accepted connection carried it (0, 1, …).
    pub connection: usize,
    /// The request line and headers, as sent.
    pub head: String,
    /// The body, de-chunked when it came chunked.
    pub body: Vec<u8>,
}

impl Received {
    /// The request target.
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or_default()
    }

    /// Whether a header line named `name` (exactly, any case) was sent.
    pub fn has_header(&self, name: &str) -> bool {
        self.head.lines().skip(1).any(|line| {
            line.split_once(':')
                .is_some_and(|(sent, _)| sent.eq_ignore_ascii_case(name))
        })
    }
}

/// What the upstream does with one request.
pub enum Act {
    /// Read the body, write these bytes, keep the connection.
    Answer(Vec<u8>),
    /// Without reading the body, write these bytes, then hold the
    /// connection (reading nothing) for a while and close.
    AnswerUnread(Vec<u8>),
    /// Read the body, write these bytes, then hold the connection open
    /// without another word.
    Stall(Vec<u8>),
    /// Read the body, write `head`, then write `unit` over and over until
    /// portico stops reading.
    Flood(Vec<u8>, Vec<u8>),
}

/// The normal answer for the next user: who asked, on which connection.
pub fn own_answer(received: &Received) -> Act {
    let body = format!("for {} on {}", received.target(), received.connection);
    Act::Answer(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

/// A raw upstream: `script` says what to do with each request (given its
/// head; bodies are read unless the act says otherwise). Everything
/// received is kept, and connections ended by portico are counted.
pub struct Hostile {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    accepted: Arc<AtomicUsize>,
    closed_by_portico: Arc<AtomicUsize>,
}

impl Hostile {
    pub async fn start<F>(script: F) -> Hostile
    where
        F: Fn(&Received) -> Act + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hostile = Hostile {
            url,
            received: Arc::default(),
            accepted: Arc::default(),
            closed_by_portico: Arc::default(),
        };
        let (received, accepted, closed) = (
            hostile.received.clone(),
            hostile.accepted.clone(),
            hostile.closed_by_portico.clone(),
        );
        let script = Arc::new(script);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let connection = accepted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(
                    stream,
                    connection,
                    script.clone(),
                    received.clone(),
                    closed.clone(),
                ));
            }
        });
        hostile
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connections portico closed (the upstream saw end of file or a reset).
    pub fn closed_by_portico(&self) -> usize {
        self.closed_by_portico.load(Ordering::SeqCst)
    }
}

async fn serve<F>(
    mut stream: TcpStream,
    connection: usize,
    script: Arc<F>,
    received: Arc<Mutex<Vec<Received>>>,
    closed: Arc<AtomicUsize>,
) where
    F: Fn(&Received) -> Act + Send + Sync + 'static,
{
    let mut pending = Vec::new();
    loop {
        let Some(head) = read_head(&mut stream, &mut pending).await else {
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let mut request = Received {
            connection,
            head,
            body: Vec::new(),
        };
        let act = script(&request);
        if !matches!(act, Act::AnswerUnread(_)) {
            let Some(body) = read_body(&mut stream, &mut pending, &request.head).await else {
                received.lock().unwrap().push(request);
                closed.fetch_add(1, Ordering::SeqCst);
                return;
            };
            request.body = body;
        }
        received.lock().unwrap().push(request);
        match act {
            Act::Answer(bytes) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            Act::AnswerUnread(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(3)).await;
                return;
            }
            Act::Stall(bytes) => {
                let _ = stream.write_all(&bytes).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
            Act::Flood(head, unit) => {
                if stream.write_all(&head).await.is_err() {
                    return;
                }
                let batch = unit.repeat((64 * 1024 / unit.len()).max(1));
                // At most 64 MiB: a broken portico must not hang the test.
                for _ in 0..(64 * 1024 * 1024 / batch.len()) {
                    if stream.write_all(&batch).await.is_err() {
                        return;
                    }
                }
                return;
            }
        }
    }
}

async fn fill(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<()> {
    let mut buffer = [0u8; 16 * 1024];
    match stream.read(&mut buffer).await {
        Ok(0) | Err(_) => None,
        Ok(read) => {
            pending.extend_from_slice(&buffer[..read]);
            Some(())
        }
    }
}

async fn read_head(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = pending.windows(4).position(|window| window == b"\r\n\r\n") {
            let head: Vec<u8> = pending.drain(..end + 4).collect();
            return Some(String::from_utf8_lossy(&head).into_owned());
        }
        fill(stream, pending).await?;
    }
}

/// The body `head` announces: by Content-Length, or chunked (de-chunked).
async fn read_body(stream: &mut TcpStream, pending: &mut Vec<u8>, head: &str) -> Option<Vec<u8>> {
    let header = |name: &str| {
        head.lines().skip(1).find_map(|line| {
            let (sent, value) = line.split_once(':')?;
            sent.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_ascii_lowercase())
        })
    };
    if header("transfer-encoding").is_some_and(|coding| coding == "chunked") {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(end) = pending.windows(2).position(|window| window == b"\r\n") {
                    let line: Vec<u8> = pending.drain(..end + 2).collect();
                    break String::from_utf8_lossy(&line[..end]).into_owned();
                }
                fill(stream, pending).await?;
            };
            let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
            while pending.len() < size + 2 {
                fill(stream, pending).await?;
            }
            body.extend(pending.drain(..size));
            pending.drain(..2);
            if size == 0 {
                return Some(body);
            }
        }
    }
    let length: usize = match header("content-length") {
        Some(value) => value.parse().ok()?,
        None => 0,
    };
    while pending.len() < length {
        fill(stream, pending).await?;
    }
    Some(pending.drain(..length).collect())
}

/// A public route to `upstream`, with extra `[server]` lines.
pub async fn app_for(upstream: &str, server: &[&str]) -> TestApp {
    let mut builder = TestApp::builder().route(&format!(
        "path_prefix = \"/\"\nupstream = \"{upstream}\"\npublic = true"
    ));
    for line in server {
        builder = builder.config("server", line);
    }
    builder.build().await
}

/// Writes `request` on a new connection to `base` and reads until the
/// connection closes (or `within`): everything portico answered.
pub async fn raw_exchange(base: &str, request: &[u8], within: Duration) -> (String, bool) {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

/// The status code of the first answer in `raw`.
pub fn status_of(raw: &str) -> u16 {
    raw.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

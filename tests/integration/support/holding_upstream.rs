//! An HTTP/1.1 upstream that counts the connections open to it and holds
//! every answer until told to let them go: to see how many connections a
//! burst of clients turns into.
//!
//! Each request (a head without a body) is answered `200` with the body
//! `ok`, kept alive, once [`HoldingUpstream::release`] was called (or at
//! once after it). It counts connections open now, the most ever open at
//! once, all accepted, and requests held now.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[derive(Default)]
struct Counts {
    open: AtomicUsize,
    most_open: AtomicUsize,
    accepted: AtomicUsize,
    held: AtomicUsize,
    released: AtomicBool,
    release: Notify,
}

pub struct HoldingUpstream {
    pub address: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HoldingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HoldingUpstream {
    pub async fn start() -> HoldingUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let now = shared.open.fetch_add(1, Ordering::SeqCst) + 1;
                shared.most_open.fetch_max(now, Ordering::SeqCst);
                connections.spawn(serve(stream, shared.clone()));
            }
        });
        HoldingUpstream {
            address,
            counts,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.open.load(Ordering::SeqCst)
    }

    /// The most connections that were ever open at once.
    pub fn most_open(&self) -> usize {
        self.counts.most_open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.counts.accepted.load(Ordering::SeqCst)
    }

    /// Requests being held now.
    pub fn held(&self) -> usize {
        self.counts.held.load(Ordering::SeqCst)
    }

    /// Answers every request held, and from now on answers at once.
    pub fn release(&self) {
        self.counts.released.store(true, Ordering::SeqCst);
        self.counts.release.notify_waiters();
    }

    /// Waits (up to 10 s) until `held` requests are held.
    pub async fn wait_until_held(&self, held: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.held() != held {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} requests held, not {held}",
                self.held()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn serve(mut stream: tokio::net::TcpStream, counts: Arc<Counts>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    'connection: loop {
        while !buffer.windows(4).any(|window| window == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break 'connection,
                Ok(read) => buffer.extend_from_slice(&chunk[..read]),
            }
        }
        let end = buffer
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .unwrap()
            + 4;
        buffer.drain(..end);
        counts.held.fetch_add(1, Ordering::SeqCst);
        loop {
            let released = counts.release.notified();
            if counts.released.load(Ordering::SeqCst) {
                break;
            }
            released.await;
        }
        counts.held.fetch_sub(1, Ordering::SeqCst);
        let answer = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(answer).await.is_err() {
            break;
        }
    }
    counts.open.fetch_sub(1, Ordering::SeqCst);
}

//! A TCP proxy in front of a real redis-server that can cut the
//! connections that subscribed (pub/sub) without closing them: bytes in
//! either direction are then dropped, as when a network path dies silently,
//! and if Redis then closes its side the client still hears nothing.
//! New connections pass as usual, so a client that reconnects recovers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Link {
    subscriber: AtomicBool,
    cut: AtomicBool,
    /// This link's address as Redis sees it (`CLIENT LIST` addr).
    address: String,
}

pub struct RedisProxy {
    port: u16,
    links: Arc<Mutex<Vec<Arc<Link>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for RedisProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl RedisProxy {
    pub async fn start(redis_port: u16) -> RedisProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let links: Arc<Mutex<Vec<Arc<Link>>>> = Arc::default();
        let registry = Arc::clone(&links);
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                    continue;
                };
                let address = server
                    .local_addr()
                    .map(|address| address.to_string())
                    .unwrap_or_default();
                let link = Arc::new(Link {
                    subscriber: AtomicBool::new(false),
                    cut: AtomicBool::new(false),
                    address,
                });
                registry.lock().unwrap().push(Arc::clone(&link));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, Arc::clone(&link), true));
                tokio::spawn(pump(server_read, client_write, link, false));
            }
        });
        RedisProxy {
            port,
            links,
            accept,
        }
    }

    pub fn url(&self, database: u32) -> String {
        format!("redis://127.0.0.1:{}/{}", self.port, database)
    }

    /// The addresses, as Redis sees them, of the connections cut so far
    /// (for `CLIENT KILL ADDR`: Redis then drops the subscriber while the
    /// client still believes it is subscribed).
    pub fn cut_addresses(&self) -> Vec<String> {
        let links = self.links.lock().unwrap();
        links
            .iter()
            .filter(|link| link.cut.load(Ordering::SeqCst))
            .map(|link| link.address.clone())
            .collect()
    }

    /// Silently cuts every connection open now that has sent SUBSCRIBE;
    /// returns how many.
    pub fn cut_subscribers(&self) -> usize {
        let links = self.links.lock().unwrap();
        let mut cut = 0;
        for link in links.iter() {
            if link.subscriber.load(Ordering::SeqCst) && !link.cut.swap(true, Ordering::SeqCst) {
                cut += 1;
            }
        }
        cut
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
    from_client: bool,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            // A cut link that Redis closes stays open, and silent, on the
            // client's side: the client learns nothing.
            Ok(0) | Err(_) if link.cut.load(Ordering::SeqCst) => {
                return std::future::pending::<()>().await;
            }
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let chunk = &buffer[..read];
        if from_client
            && chunk
                .windows(9)
                .any(|window| window.eq_ignore_ascii_case(b"SUBSCRIBE"))
        {
            link.subscriber.store(true, Ordering::SeqCst);
        }
        if link.cut.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(chunk).await.is_err() {
            return;
        }
    }
}

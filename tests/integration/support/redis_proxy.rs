//! A TCP proxy in front of a real redis-server that can cut the
//! connections that subscribed (pub/sub) without closing them: bytes in
//! either direction are then dropped, as when a network path dies silently.
//! New connections pass as usual, so a client that reconnects recovers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Link {
    subscriber: AtomicBool,
    cut: AtomicBool,
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
                let link = Arc::new(Link {
                    subscriber: AtomicBool::new(false),
                    cut: AtomicBool::new(false),
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

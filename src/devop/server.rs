//! Serving a router on a spawned task that stops when its handle is dropped.
//!
//! Shared by the dev OP and the echo upstream so that tests never leak a server: dropping the
//! handle closes the listener, asks open connections to finish (idle keep-alive connections close
//! at once) and aborts the accept loop.

use std::net::SocketAddr;

use axum::serve::ListenerExt as _;
use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running server.
pub(crate) struct ServerHandle {
    address: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ServerHandle {
    /// Serves `router` on `listener`, calling `on_connection` for every accepted connection.
    pub fn spawn(
        listener: TcpListener,
        router: Router,
        mut on_connection: impl FnMut(&mut TcpStream) + Send + 'static,
    ) -> std::io::Result<ServerHandle> {
        let address = listener.local_addr()?;
        let (stop, mut stopped) = watch::channel(false);
        let listener = listener.tap_io(move |stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::trace!(%error, "could not set TCP_NODELAY");
            }
            on_connection(stream);
        });
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
            // Also completes when the handle (the sender) is gone.
            let _ = stopped.wait_for(|stopped| *stopped).await;
        });
        let task = tokio::spawn(async move {
            if let Err(error) = serving.await {
                tracing::warn!(%error, %address, "test server stopped with an error");
            }
        });
        Ok(ServerHandle {
            address,
            stop,
            task,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops accepting connections and closes the open ones once their requests finish.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
        self.task.abort();
    }
}

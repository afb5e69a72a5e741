//! Kept-alive upstream connections: per-worker shards of idle
//! connections by origin, each origin's limit shared between them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio_rustls::TlsConnector;
use url::Url;

use super::super::upstream_limit::{Gate, Permit};
use super::dial::{self, Stream};
use super::{Conn, UpstreamError, HEAD_CHUNK, IDLE_LIFETIME, MAX_IDLE_PER_UPSTREAM};
use crate::fasthash::FastMap;

/// One origin in a pool shard: its idle connections, each with the moment
/// it went idle, and its limit.
pub(super) struct Origin {
    pub(super) idle: Vec<(Conn, Instant)>,
    pub(super) gate: Arc<Gate<Conn>>,
}

/// Idle connections by origin.
pub(super) type Idle = FastMap<Arc<str>, Origin>;

/// The pool shard of the calling thread (before taking it modulo the
/// number of shards): 0 off the workers, else the worker's index + 1.
pub(super) fn shard_of_this_thread() -> usize {
    crate::front::current_worker().map_or(0, |index| index + 1)
}

/// Whether an idle connection may be used again.
pub(super) fn still_usable(conn: &Conn, since: Instant) -> bool {
    since.elapsed() < IDLE_LIFETIME && conn.stream.is_open()
}

/// Kept-alive upstream connections, by upstream origin. A connection goes
/// back when its response body has been read to the end and the upstream
/// allows another request on it; any other is closed.
///
/// Each per-core worker has a shard of its own (and everything off the
/// workers shares one more). A socket is registered with the reactor of the
/// runtime that opened it, and that reactor delivers its readiness: a
/// connection opened by one worker and reused by another made every answer on
/// it a cross-thread wake-up (an eventfd write, half of all requests with two
/// workers), and it would stop working once its own worker's runtime ended.
///
/// Each origin's limit ([`Gate`]) is shared by the shards; a connection's
/// permit holds it. Idle connections never cross shards, except to a request
/// that would otherwise wait at the limit (see `take_any`).
pub(super) struct Pool {
    pub(super) shards: Box<[Mutex<Idle>]>,
    /// Every origin's gate, by origin: the shards' entries are copies.
    pub(super) gates: Mutex<FastMap<Arc<str>, Arc<Gate<Conn>>>>,
}

impl Pool {
    pub(super) fn shard(&self, index: usize) -> std::sync::MutexGuard<'_, Idle> {
        self.shards[index % self.shards.len()]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An idle connection to `origin` from the calling worker's shard that
    /// is still open; else the origin's gate, to ask for a connection.
    pub(super) fn take_idle(&self, origin: &Arc<str>) -> Result<Conn, Arc<Gate<Conn>>> {
        let mut stale = Vec::new();
        let taken = {
            let mut idle = self.shard(shard_of_this_thread());
            let entry = match idle.get_mut(&**origin) {
                Some(entry) => entry,
                None => idle.entry(origin.clone()).or_insert_with(|| Origin {
                    idle: Vec::new(),
                    gate: self.gate(origin),
                }),
            };
            loop {
                match entry.idle.pop() {
                    Some((conn, since)) if still_usable(&conn, since) => break Ok(conn),
                    Some((conn, _)) => stale.push(conn),
                    None => break Err(entry.gate.clone()),
                }
            }
        };
        // Closed outside the shard's lock (closing gives the permit back).
        drop(stale);
        taken
    }

    pub(super) fn give_back(&self, origin: &Arc<str>, mut conn: Conn) {
        if !conn.buf.is_empty() {
            // The upstream sent more than its response: not to be trusted.
            return;
        }
        conn.reused = true;
        if conn.buf.capacity() > HEAD_CHUNK {
            // Grown for a large body: an idle connection keeps no more
            // than a head needs.
            conn.buf = BytesMut::new();
        }
        let mut surplus = None;
        let waited_for = {
            let mut idle = self.shard(conn.home);
            let entry = match idle.get_mut(&**origin) {
                Some(entry) => entry,
                None => idle.entry(origin.clone()).or_insert_with(|| Origin {
                    idle: Vec::new(),
                    gate: self.gate(origin),
                }),
            };
            if entry.idle.len() < MAX_IDLE_PER_UPSTREAM {
                entry.idle.push((conn, Instant::now()));
            } else {
                surplus = Some(conn);
            }
            // Asked under the shard's lock, after the push (see
            // `Gate::has_waiters`).
            entry.gate.has_waiters().then(|| entry.gate.clone())
        };
        drop(surplus);
        if let Some(gate) = waited_for {
            gate.serve_waiters(|stale| self.take_any(origin, stale));
        }
    }

    /// A new connection to `upstream` (TCP, and TLS for https), within
    /// `timeout`, holding `permit`.
    pub(super) async fn connect(
        &self,
        upstream: &Url,
        timeout: Duration,
        tls: &TlsConnector,
        permit: Permit<Conn>,
    ) -> Result<Conn, UpstreamError> {
        match tokio::time::timeout(timeout, self.open(upstream, tls)).await {
            Ok(opened) => opened.map(|stream| Conn::new(stream, permit)),
            Err(_) => Err(UpstreamError::ConnectTimeout(timeout)),
        }
    }

    pub(super) async fn open(
        &self,
        upstream: &Url,
        tls: &TlsConnector,
    ) -> Result<Stream, UpstreamError> {
        let tcp = dial::connect_tcp(upstream).await?;
        let stream = if upstream.scheme() == "https" {
            Stream::Tls(Box::new(dial::handshake(tls, upstream, tcp).await?))
        } else {
            Stream::Plain(tcp)
        };
        Ok(stream)
    }
}

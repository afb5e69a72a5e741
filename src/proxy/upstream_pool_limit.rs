//! The pool's side of the upstream connection limit: each origin's gate,
//! and the idle connections of every shard for a request at the limit.

use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::TlsConnector;
use url::Url;

use super::super::upstream_limit::{Gate, Grant, UpstreamLimit};
use super::pool::{still_usable, Pool};
use super::{Conn, UpstreamError};
use crate::ops::Metrics;

impl Pool {
    /// A connection to send on: an idle one of this worker's; a new one
    /// while `origin` is under its `max_connections`; at the limit, another
    /// worker's idle one, or the first to come free in line (refused past
    /// `max_pending` or `pending_timeout`).
    pub(super) async fn checkout(
        &self,
        upstream: &Url,
        origin: &Arc<str>,
        connect_timeout: Duration,
        metrics: &Metrics,
        tls: &TlsConnector,
    ) -> Result<Conn, UpstreamError> {
        let gate = match self.take_idle(origin) {
            Ok(conn) => return Ok(conn),
            Err(gate) => gate,
        };
        let granted = match gate.try_open() {
            Some(permit) => Grant::Open(permit),
            // At the limit: boxed, as waiting is rare and its future large.
            None => {
                let _pending = metrics.upstream_pending(origin);
                Box::pin(gate.acquire(|stale| self.take_any(origin, stale)))
                    .await
                    .map_err(UpstreamError::Overloaded)?
            }
        };
        match granted {
            Grant::Idle(conn) => Ok(conn),
            // Boxed: connecting is rare and its future large.
            Grant::Open(permit) => {
                Box::pin(self.connect(upstream, connect_timeout, tls, permit)).await
            }
        }
    }

    /// `origin`'s gate; made with the default limit for an origin no route
    /// named when the limits were set.
    pub(super) fn gate(&self, origin: &Arc<str>) -> Arc<Gate<Conn>> {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        gates
            .entry(origin.clone())
            .or_insert_with(|| Gate::new(UpstreamLimit::default()))
            .clone()
    }

    /// Sets each origin's limit (at start and when the routes are reloaded).
    pub(super) fn set_limits<'a>(
        &self,
        limits: impl IntoIterator<Item = (&'a Arc<str>, UpstreamLimit)>,
    ) {
        let mut gates = self
            .gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (origin, limit) in limits {
            match gates.get(origin) {
                Some(gate) => gate.set_limit(limit),
                None => {
                    gates.insert(origin.clone(), Gate::new(limit));
                }
            }
        }
    }

    /// An idle connection to `origin` from any shard, for a request at the
    /// limit: better served over another worker's reactor than kept
    /// waiting while a connection idles. Stale ones go to `stale`.
    pub(super) fn take_any(&self, origin: &str, stale: &mut Vec<Conn>) -> Option<Conn> {
        for index in 0..self.shards.len() {
            let mut idle = self.shard(index);
            let Some(entry) = idle.get_mut(origin) else {
                continue;
            };
            while let Some((conn, since)) = entry.idle.pop() {
                if still_usable(&conn, since) {
                    return Some(conn);
                }
                stale.push(conn);
            }
        }
        None
    }
}

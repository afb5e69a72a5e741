//! The connection limit of one upstream origin, and the bounded wait for a
//! free connection (issue 19), as Envoy's circuit breakers
//! (`max_connections`, `max_pending_requests`) and nginx's `max_conns` do.
//!
//! A [`Permit`] stands for one open upstream connection, idle or busy: it
//! lives inside the connection and goes when the connection is closed. At
//! most `max_connections` permits exist per origin, so however many clients
//! arrive, the upstream never sees more connections than that from this
//! process. A request that finds no idle connection and no permit left
//! waits in line (first come, first served) for either a connection that
//! finishes its exchange, handed over as it is, or a permit freed by a
//! connection that closed. At most `max_pending` wait, each at most
//! `pending_timeout`; past either the request is refused at once
//! ([`Overflow`], answered 503 with `Retry-After`) rather than sent on a new
//! connection the upstream would drop.
//!
//! The idle connections themselves stay in the upstream client's pool
//! (per-worker shards); the gate only sees them through the closures it is
//! given. No connection is ever dropped while the gate's lock is held: the
//! drop gives its permit back, which takes that lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

pub use crate::config::UpstreamLimit;

/// Why a request got no connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `max_pending` requests were already waiting.
    Full,
    /// None came free within `pending_timeout`.
    Timeout,
}

impl Overflow {
    /// The `reason` label of `portico_upstream_overflow_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Overflow::Full => "pending_full",
            Overflow::Timeout => "pending_timeout",
        }
    }
}

/// What a request gets to send on.
pub enum Grant<C> {
    /// An idle connection (it carries its own permit).
    Idle(C),
    /// Leave to open a new connection, which keeps the permit.
    Open(Permit<C>),
}

/// One origin's limit and the requests waiting at it. `C` is the upstream
/// client's connection.
pub struct Gate<C> {
    state: Mutex<State<C>>,
    /// How many requests wait (or are about to): read without the lock when
    /// a connection goes idle, to see whether anyone wants it.
    waiting: AtomicUsize,
}

struct State<C> {
    limit: UpstreamLimit,
    /// Permits out (connections open or being opened).
    open: usize,
    /// First come, first served. A waiter that gave up leaves its sender
    /// closed; such senders are skipped and swept.
    waiters: VecDeque<oneshot::Sender<Grant<C>>>,
}

/// The right to one open connection; given back (to the next waiter, or to
/// the gate) when dropped.
pub struct Permit<C> {
    gate: Option<Arc<Gate<C>>>,
}

impl<C> Permit<C> {
    fn new(gate: &Arc<Gate<C>>) -> Self {
        Permit {
            gate: Some(gate.clone()),
        }
    }

    /// Drops the permit without giving it back: for one whose place was
    /// already accounted for under the gate's lock.
    fn disarm(mut self) {
        self.gate = None;
    }
}

impl<C> Drop for Permit<C> {
    fn drop(&mut self) {
        if let Some(gate) = self.gate.take() {
            gate.release();
        }
    }
}

impl<C> Gate<C> {
    pub fn new(limit: UpstreamLimit) -> Arc<Self> {
        Arc::new(Gate {
            state: Mutex::new(State {
                limit,
                open: 0,
                waiters: VecDeque::new(),
            }),
            waiting: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<C>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open (or being opened) now.
    #[cfg(test)]
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// Requests waiting now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Whether a request waits for a connection. Read after an idle
    /// connection was put where `acquire`'s `take_idle` looks (under the
    /// same lock that look takes): then either the look found it, or this
    /// sees the waiter.
    pub fn has_waiters(&self) -> bool {
        self.waiting.load(Ordering::SeqCst) > 0
    }

    /// A permit, when fewer than `max_connections` are out.
    pub fn try_open(self: &Arc<Self>) -> Option<Permit<C>> {
        let mut state = self.lock();
        if state.open < state.limit.max_connections {
            state.open += 1;
            Some(Permit::new(self))
        } else {
            None
        }
    }

    /// A permit, or an idle connection `take_idle` finds (it may hand
    /// connections it will not use to the vector, to be closed), or a place
    /// in line until one of them comes free; refused when the line is full
    /// or the wait exceeds `pending_timeout`.
    pub async fn acquire(
        self: &Arc<Self>,
        mut take_idle: impl FnMut(&mut Vec<C>) -> Option<C>,
    ) -> Result<Grant<C>, Overflow> {
        let (receiver, timeout) = loop {
            let mut discarded = Vec::new();
            let decided = self.decide(&mut take_idle, &mut discarded);
            // Closing them gives their permits back: to those waiting, or
            // to the gate (so try again: a place may have come free).
            let freed = !discarded.is_empty();
            drop(discarded);
            match decided {
                Decided::Granted(grant) => return Ok(grant),
                Decided::Full if freed => continue,
                Decided::Full => return Err(Overflow::Full),
                Decided::Wait(receiver, timeout) => break (receiver, timeout),
            }
        };
        let mut waiting = Waiting {
            gate: self,
            receiver,
        };
        match tokio::time::timeout(timeout, &mut waiting.receiver).await {
            Ok(Ok(grant)) => Ok(grant),
            // The gate let go of the sender without a grant (it never does
            // while it exists); counted as a wait that came to nothing.
            Ok(Err(_)) => Err(Overflow::Timeout),
            // Granted just as the time ran out: taken all the same.
            Err(_) => waiting.receiver.try_recv().map_err(|_| Overflow::Timeout),
        }
    }

    /// `acquire`'s decision, under the lock.
    fn decide(
        self: &Arc<Self>,
        take_idle: &mut impl FnMut(&mut Vec<C>) -> Option<C>,
        discarded: &mut Vec<C>,
    ) -> Decided<C> {
        let mut state = self.lock();
        if state.open < state.limit.max_connections {
            state.open += 1;
            return Decided::Granted(Grant::Open(Permit::new(self)));
        }
        state.waiters.retain(|sender| !sender.is_closed());
        // Announced before looking, so that a connection going idle after
        // the look sees that someone waits (see `has_waiters`).
        self.waiting
            .store(state.waiters.len() + 1, Ordering::SeqCst);
        if let Some(conn) = take_idle(discarded) {
            self.waiting.store(state.waiters.len(), Ordering::SeqCst);
            return Decided::Granted(Grant::Idle(conn));
        }
        if state.waiters.len() >= state.limit.max_pending {
            self.waiting.store(state.waiters.len(), Ordering::SeqCst);
            return Decided::Full;
        }
        let (sender, receiver) = oneshot::channel();
        state.waiters.push_back(sender);
        Decided::Wait(receiver, state.limit.pending_timeout)
    }

    /// After a connection went idle while requests wait: hands idle
    /// connections (`take_idle` finds them) to waiters, first come first,
    /// while there are both.
    pub fn serve_waiters(&self, mut take_idle: impl FnMut(&mut Vec<C>) -> Option<C>) {
        let mut discarded = Vec::new();
        {
            let mut state = self.lock();
            while let Some(sender) = state.waiters.pop_front() {
                if sender.is_closed() {
                    continue;
                }
                let Some(conn) = take_idle(&mut discarded) else {
                    state.waiters.push_front(sender);
                    break;
                };
                // One that gave up just now: closed below, its permit to
                // the next.
                if let Err(Grant::Idle(conn)) = sender.send(Grant::Idle(conn)) {
                    discarded.push(conn);
                }
            }
            self.waiting.store(state.waiters.len(), Ordering::SeqCst);
        }
        drop(discarded);
    }

    /// A connection closed: its permit goes to the first waiter, or back.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(sender) = state.waiters.pop_front() {
            match sender.send(Grant::Open(Permit::new(self))) {
                Ok(()) => {
                    self.waiting.store(state.waiters.len(), Ordering::SeqCst);
                    return;
                }
                Err(refused) => {
                    if let Grant::Open(permit) = refused {
                        permit.disarm();
                    }
                }
            }
        }
        state.open = state.open.saturating_sub(1);
        self.waiting.store(0, Ordering::SeqCst);
    }

    /// A new limit (the routes were reloaded). More connections let
    /// waiters open theirs at once; fewer take effect as connections close.
    pub fn set_limit(self: &Arc<Self>, limit: UpstreamLimit) {
        let mut state = self.lock();
        state.limit = limit;
        while state.open < state.limit.max_connections {
            let Some(sender) = state.waiters.pop_front() else {
                break;
            };
            state.open += 1;
            if let Err(refused) = sender.send(Grant::Open(Permit::new(self))) {
                state.open -= 1;
                if let Grant::Open(permit) = refused {
                    permit.disarm();
                }
            }
        }
        self.waiting.store(state.waiters.len(), Ordering::SeqCst);
    }
}

enum Decided<C> {
    Granted(Grant<C>),
    Full,
    Wait(oneshot::Receiver<Grant<C>>, std::time::Duration),
}

/// A request in line; leaving (granted, timed out or cancelled) sweeps its
/// closed sender from the line.
struct Waiting<'a, C> {
    gate: &'a Gate<C>,
    receiver: oneshot::Receiver<Grant<C>>,
}

impl<C> Drop for Waiting<'_, C> {
    fn drop(&mut self) {
        // A grant that came after all is given back first (closing a
        // connection takes the gate's lock).
        self.receiver.close();
        drop(self.receiver.try_recv());
        let mut state = self.gate.lock();
        state.waiters.retain(|sender| !sender.is_closed());
        self.gate
            .waiting
            .store(state.waiters.len(), Ordering::SeqCst);
    }
}

#[cfg(test)]
#[path = "upstream_limit_tests.rs"]
mod tests;

//! The in-process cache of session records (`[session] local_cache`, on by
//! default), so most signed-in requests need no Redis round trip, that
//! cannot go stale on revocation.
//!
//! Every replica subscribes to one Redis channel (see `cache_sync`). A
//! replica that changes or ends a session evicts it locally, publishes the
//! session id, and waits (briefly, bounded) until every subscriber has
//! acknowledged the eviction, so when sign-out or back-channel logout
//! answers, no replica will serve that session from its cache again.
//!
//! The cache is served only while its channel is known to work: the
//! subscription confirmed by Redis, and this replica's own heartbeat, sent
//! through that channel, heard within [`LEASE`]. When the channel is lost
//! (disconnect, or a heartbeat not heard) the table is emptied and every
//! read goes to Redis until a new subscription is confirmed and heard; so
//! a missed invalidation is served at most until the loss is detected, never
//! for [`ENTRY_LIFETIME`]. Entries also expire on their own after
//! `ENTRY_LIFETIME`. Reads under a lock (refresh, idle extension) bypass the
//! cache.
//!
//! A load reads the record from Redis and then caches it; an invalidation
//! that lands between the read and the insert must win, or the record it
//! removed would be served again. So a load takes a ticket before it reads
//! ([`LocalCache::begin_load`]), every eviction cancels the tickets of that
//! id, a lost channel cancels them all, and the insert happens only if the
//! ticket is still current ([`LocalCache::finish_load`]), all under the one
//! lock that guards the entries.
//!
//! Memory: entries are counted in estimated bytes ([`entry_bytes`]) against
//! [`BUDGET_BYTES`]; past it the oldest insertions go first (they are the
//! closest to expiry anyway).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fred::prelude::{ClientLike, Pool};
use tower_sessions::session::Id;

use super::SessionData;
use crate::fasthash::FastMap;

/// How long an entry may be served at most, even with a working channel.
pub const ENTRY_LIFETIME: Duration = Duration::from_secs(10);
/// How long a change waits for every replica's acknowledgement before it
/// falls back to waiting out the leases of the silent ones.
pub const ACK_WAIT: Duration = Duration::from_millis(500);
/// How often each replica sends its heartbeat through the channel.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// How long a heard heartbeat lets the cache be served, counted from when
/// the heartbeat was sent: the bound on serving a missed invalidation when
/// the channel dies silently (no disconnect seen).
pub const LEASE: Duration = Duration::from_millis(1500);
/// Estimated bytes the cached records may take (see [`entry_bytes`]).
pub const BUDGET_BYTES: usize = 32 * 1024 * 1024;
/// Remembered cookie values (about 250 bytes each).
const OPENED_CAPACITY: usize = 100_000;

/// What a sealed session cookie opened to: the id as text (the cache key)
/// and parsed.
#[derive(Clone)]
pub struct OpenedCookie {
    pub text: Arc<str>,
    pub id: Id,
}

/// A load in progress for one session id: caches its result only if no
/// eviction of that id (and no loss of the channel) came in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTicket(u64);

/// Whether the invalidation channel can be trusted right now.
#[derive(Debug, Default)]
struct Channel {
    /// Bumped whenever the channel is lost or a subscription is confirmed;
    /// a heartbeat sent in an older epoch renews nothing.
    epoch: u64,
    /// Redis confirmed the subscription of this epoch.
    subscribed: bool,
    /// Served until then: the send time of the last own heartbeat heard in
    /// this epoch, plus [`LEASE`].
    lease_until: Option<Instant>,
}

impl Channel {
    fn serving(&self, now: Instant) -> bool {
        self.subscribed && self.lease_until.is_some_and(|until| now < until)
    }
}

/// The cached records and the loads in flight, kept under one lock.
struct Table {
    records: FastMap<String, (Arc<SessionData>, Instant)>,
    /// Insertions, oldest first (with their time, to tell a replaced
    /// record's stale slot from the live one).
    order: VecDeque<(String, Instant)>,
    bytes: usize,
    /// Session id → the ticket of the latest load that may still cache it.
    loading: FastMap<String, u64>,
    next_ticket: u64,
    channel: Channel,
    /// [`BUDGET_BYTES`], smaller in tests.
    budget: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table::with_budget(BUDGET_BYTES)
    }
}

/// An estimate of what one cached record costs: the map slot, the id, the
/// record with its strings and lists, the insertion-order slot. Measured
/// against the process's heap growth in docs/sessions.md.
pub fn entry_bytes(id: &str, data: &SessionData) -> usize {
    const STRING: usize = std::mem::size_of::<String>();
    // What the allocator adds to each allocation (header, rounding up).
    const PER_ALLOCATION: usize = 16;
    fn text(text: &str) -> usize {
        if text.is_empty() {
            0
        } else {
            text.len() + PER_ALLOCATION
        }
    }
    fn list(items: &[String]) -> usize {
        let buffer = if items.is_empty() { 0 } else { PER_ALLOCATION };
        buffer + items.iter().map(|item| STRING + text(item)).sum::<usize>()
    }
    fn optional(value: &Option<String>) -> usize {
        value.as_deref().map_or(0, text)
    }
    // The map's slot and the order queue's, each counted twice: both grow
    // by doubling, so up to half their room is empty.
    let slot = 2 * (STRING + std::mem::size_of::<(Arc<SessionData>, Instant)>() + 1);
    let order = 2 * (STRING + std::mem::size_of::<Instant>());
    // A JSON value in a map: its text, plus about 80 bytes of node overhead.
    let claims: usize = data
        .claims
        .iter()
        .map(|(key, value)| key.len() + value.to_string().len() + 80 + PER_ALLOCATION)
        .sum();
    slot + order
        + 2 * text(id)
        + 16
        + PER_ALLOCATION
        + std::mem::size_of::<SessionData>()
        + text(&data.sub)
        + optional(&data.email)
        + optional(&data.name)
        + optional(&data.preferred_username)
        + optional(&data.provider_sid)
        + list(&data.roles)
        + list(&data.groups)
        + list(&data.permissions)
        + list(&data.amr)
        + claims
        + text(&data.sealed_tokens)
}

impl Table {
    fn with_budget(budget: usize) -> Table {
        Table {
            records: FastMap::default(),
            order: VecDeque::new(),
            bytes: 0,
            loading: FastMap::default(),
            next_ticket: 0,
            channel: Channel::default(),
            budget,
        }
    }

    fn get(&self, id: &str, now: Instant) -> Option<Arc<SessionData>> {
        if !self.channel.serving(now) {
            return None;
        }
        let (data, stored) = self.records.get(id)?;
        (now.saturating_duration_since(*stored) < ENTRY_LIFETIME).then(|| data.clone())
    }

    fn remove(&mut self, id: &str) {
        if let Some((data, _)) = self.records.remove(id) {
            self.bytes = self.bytes.saturating_sub(entry_bytes(id, &data));
        }
    }

    /// Drops the oldest insertion; false when there is none.
    fn drop_oldest(&mut self) -> bool {
        let Some((id, inserted)) = self.order.pop_front() else {
            return false;
        };
        // A slot whose record was since replaced or evicted drops nothing.
        if self
            .records
            .get(&id)
            .is_some_and(|(_, stored)| *stored == inserted)
        {
            self.remove(&id);
        }
        true
    }

    fn put(&mut self, id: &str, data: Arc<SessionData>, now: Instant) {
        let cost = entry_bytes(id, &data);
        if cost > self.budget {
            return;
        }
        self.remove(id);
        // Expired entries first, then the oldest, until the new one fits;
        // stale order slots are bounded by the number of records.
        while let Some((_, inserted)) = self.order.front() {
            let expired = now.saturating_duration_since(*inserted) >= ENTRY_LIFETIME;
            let over =
                self.bytes + cost > self.budget || self.order.len() > 2 * self.records.len() + 16;
            if !(expired || over) || !self.drop_oldest() {
                break;
            }
        }
        self.records.insert(id.to_string(), (data, now));
        self.order.push_back((id.to_string(), now));
        self.bytes += cost;
    }

    fn begin_load(&mut self, id: &str) -> LoadTicket {
        self.next_ticket += 1;
        // Without a confirmed subscription nothing is cached: an eviction
        // could be missed. The ticket is then never current.
        if self.channel.subscribed {
            if self.loading.len() >= OPENED_CAPACITY {
                // Forgetting tickets only makes loads skip caching: safe.
                self.loading.clear();
            }
            self.loading.insert(id.to_string(), self.next_ticket);
        }
        LoadTicket(self.next_ticket)
    }

    /// Caches `data` if `ticket` is still the current load of `id`.
    fn finish_load(
        &mut self,
        id: &str,
        ticket: LoadTicket,
        data: Arc<SessionData>,
        now: Instant,
    ) -> bool {
        if self.loading.get(id) != Some(&ticket.0) {
            return false;
        }
        self.loading.remove(id);
        self.put(id, data, now);
        true
    }

    fn evict(&mut self, id: &str) {
        self.remove(id);
        self.loading.remove(id);
    }

    fn clear(&mut self) {
        self.records.clear();
        self.order.clear();
        self.loading.clear();
        self.bytes = 0;
    }

    /// The channel may have missed invalidations: stop serving, forget
    /// everything. Returns whether the cache had been served on this
    /// subscription (its lease may have run out just now).
    fn channel_lost(&mut self) -> bool {
        let had_lease = self.channel.subscribed && self.channel.lease_until.is_some();
        self.channel.epoch += 1;
        self.channel.subscribed = false;
        self.channel.lease_until = None;
        self.clear();
        had_lease
    }

    /// Redis confirmed a (new) subscription: every invalidation from now on
    /// arrives, those before may have been missed. Returns the new epoch.
    fn channel_confirmed(&mut self) -> u64 {
        self.channel.epoch += 1;
        self.channel.subscribed = true;
        self.channel.lease_until = None;
        self.clear();
        self.channel.epoch
    }

    /// Our heartbeat of `epoch`, sent at `sent`, came back through the
    /// channel. Returns whether this started serving.
    fn heartbeat_heard(&mut self, epoch: u64, sent: Instant, now: Instant) -> bool {
        if epoch != self.channel.epoch || !self.channel.subscribed {
            return false;
        }
        let was_serving = self.channel.serving(now);
        let until = sent + LEASE;
        self.channel.lease_until =
            Some(self.channel.lease_until.map_or(until, |old| old.max(until)));
        !was_serving && self.channel.serving(now)
    }
}

/// The invalidation channel of the deployment using `key_prefix` in
/// database `database`.
pub fn channel_name(key_prefix: &str, database: u8) -> String {
    format!("{key_prefix}invalidate:{database}")
}

pub struct LocalCache {
    entries: Mutex<Table>,
    /// Sealed session-cookie value → the session id it seals, as text and
    /// parsed. A value always opens to the same id (authenticated
    /// encryption), so this memo needs no invalidation; it only spares the
    /// decryption on every request.
    opened: Mutex<FastMap<String, OpenedCookie>>,
    pub(super) channel: String,
    pub(super) ack_prefix: String,
    pub(super) pool: Pool,
    /// Tells this replica's heartbeats from the others'.
    pub(super) instance: String,
    /// The zero of the heartbeats' send times.
    pub(super) started: Instant,
    /// This replica's last heartbeat PUBLISH worked.
    pub(super) publishing: AtomicBool,
    /// Replicas (this one included) whose heartbeat was heard within the lease.
    pub(super) peers: AtomicUsize,
}

impl LocalCache {
    pub fn new(pool: Pool, key_prefix: &str) -> Arc<Self> {
        // Pub/sub ignores database numbers, acknowledgements do not: two
        // deployments on one Redis in different databases need their own
        // channels, or each would wait for the other's acknowledgements.
        let database = pool.next().client_config().database.unwrap_or(0);
        Arc::new(LocalCache {
            entries: Mutex::new(Table::default()),
            opened: Mutex::new(FastMap::default()),
            channel: channel_name(key_prefix, database),
            ack_prefix: format!("{key_prefix}ack:"),
            pool,
            instance: super::coordination::random_token(),
            started: Instant::now(),
            publishing: AtomicBool::new(false),
            peers: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: &str, now: Instant) -> Option<Arc<SessionData>> {
        self.lock().get(id, now)
    }

    /// Call before reading the record of `id` from the store.
    pub fn begin_load(&self, id: &str) -> LoadTicket {
        self.lock().begin_load(id)
    }

    /// Caches what the load of `ticket` read, unless `id` was evicted (or
    /// the channel lost) since [`LocalCache::begin_load`]. Returns whether
    /// it was cached.
    pub fn finish_load(
        &self,
        id: &str,
        ticket: LoadTicket,
        data: Arc<SessionData>,
        now: Instant,
    ) -> bool {
        self.lock().finish_load(id, ticket, data, now)
    }

    /// The session id `sealed` opens to, opening it with `open` only the
    /// first time this value is seen.
    pub fn open_cookie(
        &self,
        sealed: &str,
        open: impl FnOnce(&str) -> Option<OpenedCookie>,
    ) -> Option<OpenedCookie> {
        let known = self
            .opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(sealed)
            .cloned();
        if known.is_some() {
            return known;
        }
        let id = open(sealed)?;
        let mut opened = self
            .opened
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if opened.len() >= OPENED_CAPACITY {
            opened.clear();
        }
        opened.insert(sealed.to_owned(), id.clone());
        Some(id)
    }

    pub fn evict(&self, id: &str) {
        self.lock().evict(id);
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes of the cached records.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Whether a cached record may be served now.
    pub fn serving(&self, now: Instant) -> bool {
        self.lock().channel.serving(now)
    }

    /// See `Table::channel_lost`.
    pub(super) fn channel_lost(&self) -> bool {
        self.lock().channel_lost()
    }

    /// Redis confirmed the subscription of the current epoch.
    pub(super) fn subscribed(&self) -> bool {
        self.lock().channel.subscribed
    }

    pub(super) fn channel_confirmed(&self) -> u64 {
        self.lock().channel_confirmed()
    }

    pub(super) fn epoch(&self) -> u64 {
        self.lock().channel.epoch
    }

    pub(super) fn heartbeat_heard(&self, epoch: u64, sent: Instant, now: Instant) -> bool {
        self.lock().heartbeat_heard(epoch, sent, now)
    }

    /// When the serving lease ends (None: not serving on a lease).
    pub(super) fn lease_until(&self) -> Option<Instant> {
        let table = self.lock();
        table
            .channel
            .subscribed
            .then_some(table.channel.lease_until)
            .flatten()
    }
}

#[cfg(test)]
#[path = "local_cache_tests.rs"]
mod tests;

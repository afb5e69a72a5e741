//! Tests of the local cache's table: loads against evictions, the
//! channel's lease, the byte budget and what an entry costs.

use super::*;

/// A table whose channel is confirmed and heard (lease from now).
fn serving_table() -> Table {
    let mut table = Table::default();
    let epoch = table.channel_confirmed();
    let now = Instant::now();
    table.heartbeat_heard(epoch, now + Duration::from_secs(60), now);
    table
}

fn record(sub: &str) -> Arc<SessionData> {
    Arc::new(SessionData::for_bearer(crate::session::Identity {
        sub: sub.to_string(),
        ..Default::default()
    }))
}

#[test]
fn an_invalidation_between_the_store_read_and_the_insert_wins() {
    let mut table = serving_table();
    let now = Instant::now();
    // A request misses the cache and starts reading the record...
    let ticket = table.begin_load("s1");
    let read_from_store = record("alice");
    // ...sign-out on another replica ends the session and the
    // invalidation arrives before the read's answer is cached...
    table.evict("s1");
    // ...so the record that was read is not cached.
    assert!(!table.finish_load("s1", ticket, read_from_store, now));
    assert!(table.get("s1", now).is_none());
    // A load that starts after the invalidation caches as usual.
    let later = table.begin_load("s1");
    assert!(table.finish_load("s1", later, record("alice"), now));
    assert!(table.get("s1", now).is_some());
}

#[test]
fn the_older_of_two_overlapping_loads_does_not_cache() {
    let mut table = serving_table();
    let now = Instant::now();
    let first = table.begin_load("s1");
    let second = table.begin_load("s1");
    assert!(!table.finish_load("s1", first, record("old"), now));
    assert!(table.finish_load("s1", second, record("new"), now));
    assert_eq!(table.get("s1", now).unwrap().sub, "new");
    // Another id's eviction does not cancel this one's load.
    let third = table.begin_load("s2");
    table.evict("s1");
    assert!(table.finish_load("s2", third, record("bob"), now));
}

/// A record as a sign-in with a typical provider makes it: a 1 KB
/// access token, a 1.1 KB ID token, a short refresh token, a few roles,
/// groups and kept claims.
fn realistic(index: usize) -> Arc<SessionData> {
    let keys = crate::session::Keys::derive(b"measure-the-cache-entry-cost-secret");
    let tokens = serde_json::json!({
        "access_token": "a".repeat(1000),
        "refresh_token": "r".repeat(43),
        "id_token": "i".repeat(1100),
    });
    let mut data = SessionData::for_bearer(crate::session::Identity {
        sub: format!("{index:08}-0000-4000-8000-000000000000"),
        email: Some(format!("user{index}@example.com")),
        name: Some("Alice Example".into()),
        preferred_username: Some(format!("user{index}")),
        roles: vec!["reader".into(), "writer".into(), "admin".into()],
        groups: vec!["engineering".into(), "on-call".into()],
        claims: serde_json::from_value(serde_json::json!({
            "tenant": "acme", "department": "platform"
        }))
        .unwrap(),
        ..Default::default()
    });
    data.provider_sid = Some(format!("sid-{index:024}"));
    data.sealed_tokens = keys.seal(
        crate::session::SealPurpose::SessionTokens,
        tokens.to_string().as_bytes(),
    );
    Arc::new(data)
}

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse::<usize>().ok())
        .unwrap_or(0)
        * 4096
}

/// Set in the child process [`bytes_per_entry_measured`] starts.
const MEASURING: &str = "PORTICO_MEASURE_CACHE_ENTRY";

/// The byte budget counts [`entry_bytes`]; this checks that estimate
/// against what a process really grows by when 20,000 records are cached
/// (the figure docs/sessions.md quotes). The process's memory is only
/// meaningful with no other test running in it, so the test binary runs
/// this one test again in a child process of its own and reads its report.
#[test]
fn bytes_per_entry_measured() {
    if std::env::var_os(MEASURING).is_some() {
        return measure_bytes_per_entry();
    }
    let child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "session::local_cache::tests::bytes_per_entry_measured",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MEASURING, "1")
        .output()
        .expect("the test binary runs again");
    let stdout = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
    assert!(
        stdout.contains("cache entry: estimate") && stdout.contains("1 passed"),
        "the measurement did not run: {stdout}"
    );
}

fn measure_bytes_per_entry() {
    const ENTRIES: usize = 20_000;
    let records: Vec<(String, Arc<SessionData>)> = (0..ENTRIES)
        .map(|index| (format!("{index:022}"), realistic(index)))
        .collect();
    let estimate = entry_bytes(&records[0].0, &records[0].1);
    let sealed = records[0].1.sealed_tokens.len();
    // The records exist before and after: measure only the growth of
    // keeping them (their own size counts, as the cache keeps the one
    // copy the load made).
    let mut table = Table::with_budget(usize::MAX);
    table.channel_confirmed();
    let before = resident_bytes();
    let fresh: Vec<(String, Arc<SessionData>)> = records
        .iter()
        .map(|(id, data)| (id.clone(), Arc::new((**data).clone())))
        .collect();
    let now = Instant::now();
    for (id, data) in fresh {
        table.put(&id, data, now);
    }
    let grown = resident_bytes().saturating_sub(before);
    assert_eq!(table.records.len(), ENTRIES);
    let measured = grown / ENTRIES;
    // The report the parent test reads (a test's own output, so
    // `cargo test --lib bytes_per_entry_measured -- --nocapture` shows it).
    use std::io::Write as _;
    writeln!(
        std::io::stdout(),
        "cache entry: estimate {estimate} bytes, measured {measured} bytes \
         (sealed tokens {sealed} bytes, {ENTRIES} entries, {} MiB)",
        grown / (1024 * 1024)
    )
    .expect("the report is written");
    assert!(
        before > 0,
        "the process's resident memory could not be read"
    );
    assert!(
        estimate * 2 > measured && estimate < measured * 2,
        "estimate {estimate} vs measured {measured}"
    );
}

#[test]
fn past_the_budget_the_oldest_insertions_go_first() {
    let cost = entry_bytes("00000000000000000000000", &realistic(0));
    let mut table = Table::with_budget(200 * cost);
    table.channel_confirmed();
    let now = Instant::now();
    let fits = 200;
    for index in 0..fits + 10 {
        let at = now + Duration::from_micros(index as u64);
        table.put(&format!("{index:023}"), realistic(index), at);
    }
    assert!(table.bytes <= table.budget);
    assert!(table.records.len() >= fits - 10, "{}", table.records.len());
    // The first ones in went out; the newest are there.
    assert!(!table.records.contains_key(&format!("{:023}", 0)));
    assert!(table.records.contains_key(&format!("{:023}", fits + 9)));
    // The order queue stays bounded by the records it describes.
    assert!(table.order.len() <= 2 * table.records.len() + 16);
}

#[test]
fn nothing_is_served_or_cached_without_a_confirmed_and_heard_channel() {
    let mut table = Table::default();
    let now = Instant::now();
    // Not subscribed: a load does not cache.
    let ticket = table.begin_load("s1");
    assert!(!table.finish_load("s1", ticket, record("alice"), now));
    // Subscribed, heartbeat not heard yet: cached but not served.
    let epoch = table.channel_confirmed();
    let ticket = table.begin_load("s1");
    assert!(table.finish_load("s1", ticket, record("alice"), now));
    assert!(table.get("s1", now).is_none());
    // A heartbeat of an older epoch renews nothing.
    assert!(!table.heartbeat_heard(epoch - 1, now, now));
    assert!(table.get("s1", now).is_none());
    assert!(table.heartbeat_heard(epoch, now, now));
    assert!(table.get("s1", now).is_some());
    // The lease runs out LEASE after the heartbeat was sent.
    assert!(table.get("s1", now + LEASE).is_none());
}

#[test]
fn a_lost_channel_empties_the_cache_and_cancels_every_load() {
    let mut table = Table::default();
    let now = Instant::now();
    let epoch = table.channel_confirmed();
    table.heartbeat_heard(epoch, now, now);
    table.put("s1", record("alice"), now);
    let in_flight = table.begin_load("s2");
    assert!(table.channel_lost(), "it had been serving");
    assert!(table.records.is_empty());
    assert!(!table.finish_load("s2", in_flight, record("bob"), now));
    // A heartbeat sent before the loss renews nothing afterwards.
    assert!(!table.heartbeat_heard(epoch, now, now));
    // A new subscription starts empty, and serves once heard.
    let next = table.channel_confirmed();
    assert!(table.get("s1", now).is_none());
    table.heartbeat_heard(next, now, now);
    table.put("s1", record("alice"), now);
    assert!(table.get("s1", now).is_some());
}

#[test]
fn entries_expire_after_their_lifetime() {
    let mut table = serving_table();
    let now = Instant::now();
    // Heard much later, so the lease outlasts the entry.
    let epoch = table.channel.epoch;
    table.heartbeat_heard(epoch, now + ENTRY_LIFETIME, now);
    table.put("s1", record("alice"), now);
    assert!(table.get("s1", now + ENTRY_LIFETIME / 2).is_some());
    assert!(table.get("s1", now + ENTRY_LIFETIME).is_none());
}

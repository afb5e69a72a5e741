//! The local session cache, as the DEFAULT config runs it (no
//! `local_cache` line anywhere here): no Redis round trip for a cached
//! session, revocation on one replica seen by every other on its next
//! request, and what happens when the invalidation channel is lost (cut
//! silently, killed, or refused by Redis): bounded staleness, then recovery.

use std::time::{Duration, Instant};

use portico::devop::LogoutTokenSpec;
use portico::session::{HEARTBEAT_INTERVAL, LEASE};
use reqwest::StatusCode;

use crate::metrics::{sample, scrape};
use crate::support::{csrf_of, Browser, RedisProxy, RedisServer, TestApp};

async fn cached_pair(redis: &RedisServer) -> (TestApp, TestApp) {
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let replica = app.replica().await;
    app.wait_until_cache_serves().await;
    replica.wait_until_cache_serves().await;
    (app, replica)
}

/// A replica that reaches Redis through a proxy able to cut its
/// subscription without closing it (as a dead network path does), both
/// replicas serving from their caches, and `browser` signed in on `app`
/// with its session already cached by the replica.
struct CutOffReplica {
    proxy: RedisProxy,
    app: TestApp,
    replica: TestApp,
    browser: Browser,
    cookie: String,
}

async fn signed_in_with_a_cuttable_replica(redis: &RedisServer) -> CutOffReplica {
    let proxy = RedisProxy::start(redis.port()).await;
    let app = TestApp::builder().redis_url(&redis.url(0)).build().await;
    let replica = app.replica_via(&proxy.url(0)).await;
    app.wait_until_cache_serves().await;
    replica.wait_until_cache_serves().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(
        browser.get(&replica.url("/warm")).await.status,
        StatusCode::OK
    );
    let cookie = browser.cookie("portico_session").unwrap();
    CutOffReplica {
        proxy,
        app,
        replica,
        browser,
        cookie,
    }
}

/// Redis commands since the last reset that are not heartbeats (a PUBLISH
/// every `HEARTBEAT_INTERVAL` per replica, which no request causes).
fn commands_besides_heartbeats(redis: &RedisServer) -> u64 {
    redis.data_commands() - redis.calls("publish")
}

/// Signs out `browser` on `app` (confirm page, then the form).
async fn sign_out(app: &TestApp, browser: &Browser) {
    let csrf = csrf_of(&browser.get(&app.url("/oauth2/sign_out")).await.body);
    let done = browser
        .post_form(
            &app.url("/oauth2/sign_out"),
            &[("csrf", &csrf)],
            &[("Origin", &app.base)],
        )
        .await;
    assert_eq!(done.status, StatusCode::FOUND);
}

/// The key of the one session record in database 0 (stored under its bare id).
fn session_key(redis: &RedisServer) -> String {
    let keys = redis.command(&["KEYS", "*"]);
    keys.lines()
        .filter(|line| !line.starts_with('*') && !line.starts_with('$'))
        .find(|key| !key.starts_with("portico:"))
        .unwrap_or_else(|| panic!("no session record among {keys}"))
        .to_string()
}

/// Waits (at most 5 s) until `app` has counted a loss of its channel for `reason`.
async fn wait_for_loss(app: &TestApp, reason: &str) {
    let series = format!("portico_session_cache_channel_losses_total{{reason=\"{reason}\"}}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(app).await;
        if sample(&text, &series).is_some_and(|losses| losses >= 1.0) {
            return;
        }
        assert!(Instant::now() < deadline, "{series} not counted: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn cached_sessions_need_no_redis_round_trip() {
    let redis = RedisServer::spawn();
    let (app, _replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    redis.reset_stats();
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(browser.get(&app.url("/hot")).await.status, StatusCode::OK);
    }
    let elapsed = started.elapsed();
    assert_eq!(
        commands_besides_heartbeats(&redis),
        0,
        "{}",
        redis.commands_by_name()
    );
    // The only traffic meanwhile: two replicas' heartbeats.
    let heartbeats = 2 * (elapsed.as_millis() / HEARTBEAT_INTERVAL.as_millis() + 2) as u64;
    assert!(
        redis.calls("publish") <= heartbeats,
        "{} heartbeats in {elapsed:?}: {}",
        redis.calls("publish"),
        redis.commands_by_name()
    );
}

#[tokio::test]
async fn with_local_cache_off_every_signed_in_request_reads_redis() {
    let redis = RedisServer::spawn();
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "local_cache = false")
        .build()
        .await;
    assert!(app.state.sessions.local_cache().is_none());
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    redis.reset_stats();
    for _ in 0..5 {
        assert_eq!(browser.get(&app.url("/read")).await.status, StatusCode::OK);
    }
    assert_eq!(redis.calls("get"), 5, "{}", redis.commands_by_name());
    assert_eq!(redis.calls("publish"), 0, "no channel when off");
}

#[tokio::test]
async fn sign_out_on_one_replica_is_seen_by_the_other_on_its_next_request() {
    let redis = RedisServer::spawn();
    let (app, replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // Both replicas now hold the session in their caches.
    assert_eq!(browser.get(&app.url("/a")).await.status, StatusCode::OK);
    assert_eq!(browser.get(&replica.url("/b")).await.status, StatusCode::OK);
    let cookie = browser.cookie("portico_session").unwrap();
    sign_out(&app, &browser).await;
    // The same cookie, replayed at the other replica right away.
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn backchannel_logout_on_one_replica_clears_every_cache() {
    let redis = RedisServer::spawn();
    let (app, replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let sid = app.op.stats().last_sid.unwrap();
    assert_eq!(
        browser.get(&replica.url("/cached")).await.status,
        StatusCode::OK
    );
    let token = app.op.logout_token(&LogoutTokenSpec {
        sid: Some(sid),
        ..Default::default()
    });
    let answer = app.backchannel_logout(&token).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        browser.get(&replica.url("/next")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_cached_session_is_not_reached_with_an_altered_cookie() {
    let redis = RedisServer::spawn();
    let (app, _replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // The cookie's value is now remembered as opening to this session.
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    let cookie = browser.cookie("portico_session").unwrap();
    let mut altered = cookie.clone().into_bytes();
    let last = altered.len() - 2;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let forged = Browser::new();
    forged.set_cookie("portico_session", &String::from_utf8(altered).unwrap());
    assert_eq!(
        forged.get(&app.url("/forged")).await.status,
        StatusCode::FOUND,
        "an altered cookie must start a sign-in, not reach the cached session"
    );
    let genuine = Browser::new();
    genuine.set_cookie("portico_session", &cookie);
    assert_eq!(genuine.get(&app.url("/again")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_silently_cut_channel_serves_a_missed_revocation_at_most_for_the_lease_then_recovers() {
    let redis = RedisServer::spawn();
    let CutOffReplica {
        proxy,
        app,
        replica,
        browser,
        ..
    } = signed_in_with_a_cuttable_replica(&redis).await;

    assert_eq!(proxy.cut_subscribers(), 1);
    let cut = Instant::now();
    // The record is deleted behind every cache's back: no invalidation is
    // sent, so only the channel's lease stops the replica serving it.
    let key = session_key(&redis);
    assert!(redis.command(&["DEL", &key]).contains(":1"));
    let mut served_after_the_delete = 0;
    let refused_at = loop {
        let status = browser.get(&replica.url("/stale?")).await.status;
        if status == StatusCode::FOUND {
            break cut.elapsed();
        }
        assert_eq!(status, StatusCode::OK);
        served_after_the_delete += 1;
        assert!(cut.elapsed() < Duration::from_secs(10), "served forever");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert!(
        served_after_the_delete > 0,
        "the cut replica served its cached copy for a while (this test's premise)"
    );
    // The bound the docs state: the lease, counted from the last heartbeat
    // heard (at most LEASE after the cut), plus a little for this loop.
    assert!(
        refused_at < LEASE + Duration::from_millis(500),
        "stale for {refused_at:?}, lease {LEASE:?}"
    );
    // The listener sees the lapse on its next tick (a quarter of a second
    // at most) and counts it.
    wait_for_loss(&replica, "lease_lapsed").await;

    // Recovery: the replica gives up the dead connection, subscribes anew,
    // hears its heartbeat and serves from its cache again.
    replica.wait_until_cache_serves().await;
    a_new_session_is_served_from_the_replicas_cache(&app, &replica, &redis).await;
}

#[tokio::test]
async fn sign_out_while_a_replica_is_silently_cut_off_waits_until_it_cannot_serve_the_session() {
    let redis = RedisServer::spawn();
    let CutOffReplica {
        proxy,
        app,
        replica,
        browser,
        cookie,
    } = signed_in_with_a_cuttable_replica(&redis).await;

    assert_eq!(proxy.cut_subscribers(), 1);
    let started = Instant::now();
    sign_out(&app, &browser).await;
    let took = started.elapsed();
    // Redis still counts the cut subscriber, which never acknowledges: the
    // sign-out answers once that replica's lease has run out, not before.
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND,
        "served after sign-out answered ({took:?})"
    );
    assert!(
        took < LEASE + Duration::from_secs(2),
        "the wait is bounded by the lease: {took:?}"
    );
}

#[tokio::test]
async fn a_killed_subscription_empties_the_cache_and_revocation_still_reaches_every_replica() {
    let redis = RedisServer::spawn();
    let (app, replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(
        browser.get(&replica.url("/warm")).await.status,
        StatusCode::OK
    );
    let cookie = browser.cookie("portico_session").unwrap();
    assert!(
        redis
            .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
            .contains(":2"),
        "both replicas' subscriptions killed"
    );
    sign_out(&app, &browser).await;
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND
    );
    wait_for_loss(&replica, "disconnected").await;
    // Both resubscribe by themselves and serve from their caches again.
    app.wait_until_cache_serves().await;
    replica.wait_until_cache_serves().await;
    a_new_session_is_served_from_the_replicas_cache(&app, &replica, &redis).await;
}

#[tokio::test]
async fn a_redis_that_refuses_pub_sub_gets_a_redis_read_per_request_and_never_a_stale_answer() {
    let redis = RedisServer::spawn();
    // As a managed Redis or an ACL that allows data commands but not
    // PUBLISH or SUBSCRIBE.
    let created = redis.command(&[
        "ACL", "SETUSER", "limited", "on", ">secret", "~*", "&*", "+@all", "-@pubsub",
    ]);
    assert!(created.contains("OK"), "{created}");
    let url = format!("redis://limited:secret@127.0.0.1:{}/0", redis.port());
    let app = TestApp::builder().redis_url(&url).build().await;
    let replica = app.replica().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    // Long enough for several heartbeats, had they been allowed.
    tokio::time::sleep(LEASE).await;
    assert!(!app.cache_serving() && !replica.cache_serving());
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "portico_session_cache_serving"),
        Some(0.0),
        "{text}"
    );
    redis.reset_stats();
    for _ in 0..5 {
        assert_eq!(
            browser.get(&replica.url("/read")).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(redis.calls("get"), 5, "{}", redis.commands_by_name());
    let cookie = browser.cookie("portico_session").unwrap();
    let started = Instant::now();
    sign_out(&app, &browser).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "sign-out does not wait on a channel that never worked: {:?}",
        started.elapsed()
    );
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn a_hanging_redis_is_served_from_the_cache_for_at_most_the_lease() {
    let redis = RedisServer::spawn();
    let (app, _replica) = cached_pair(&redis).await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    let sleeper = redis.hang_for(4);
    let hung = Instant::now();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // While Redis hangs no revocation can complete either; the cache is
    // served until its heartbeat is overdue, then reads time out.
    let mut served = 0;
    let answer = loop {
        let page = browser
            .get_with(&app.url("/during"), &[("Accept", "application/json")])
            .await;
        if page.status != StatusCode::OK {
            break page;
        }
        served += 1;
        assert!(hung.elapsed() < Duration::from_secs(4), "served all along");
    };
    assert!(served > 0, "the cache answered at first");
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(
        hung.elapsed() < LEASE + Duration::from_millis(1500),
        "lease plus one command timeout: {:?}",
        hung.elapsed()
    );
    tokio::task::spawn_blocking(move || sleeper.join().unwrap())
        .await
        .unwrap();
    app.wait_until_cache_serves().await;
    assert_eq!(browser.get(&app.url("/after")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_idle_extension_on_a_cached_session_is_one_write() {
    let redis = RedisServer::spawn();
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .config("session", "idle_timeout = \"10m\"")
        .build()
        .await;
    app.wait_until_cache_serves().await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/warm")).await.status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(61));
    redis.reset_stats();
    for path in ["/c", "/d", "/e"] {
        assert_eq!(browser.get(&app.url(path)).await.status, StatusCode::OK);
    }
    // One extension: the lock (SET NX) and the record (SET), released by
    // one EVAL; the requests after it are served fresh, not extended again.
    assert_eq!(redis.calls("set"), 2, "{}", redis.commands_by_name());
    assert_eq!(redis.calls("eval"), 1, "{}", redis.commands_by_name());
    // Idle for longer than the timeout: refused although cached.
    app.clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(
        browser.get(&app.url("/late")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn sign_out_waits_for_a_replica_that_redis_dropped_but_that_has_not_noticed() {
    let redis = RedisServer::spawn();
    let CutOffReplica {
        proxy,
        app,
        replica,
        browser,
        cookie,
    } = signed_in_with_a_cuttable_replica(&redis).await;
    // Redis drops the replica's subscription, but the replica is told
    // nothing: Redis no longer counts it as a receiver, yet it still
    // serves from its cache until its lease runs out.
    assert_eq!(proxy.cut_subscribers(), 1);
    let address = proxy.cut_addresses().remove(0);
    let killed = redis.command(&["CLIENT", "KILL", "ADDR", &address]);
    assert!(killed.contains(":1"), "{address}: {killed}");
    let started = Instant::now();
    sign_out(&app, &browser).await;
    let took = started.elapsed();
    // The sign-out expected an acknowledgement from every replica it had
    // heard from, not only from the subscribers Redis counted.
    let replay = Browser::new();
    replay.set_cookie("portico_session", &cookie);
    assert_eq!(
        replay.get(&replica.url("/after")).await.status,
        StatusCode::FOUND,
        "served after sign-out answered ({took:?})"
    );
    assert!(took < LEASE + Duration::from_secs(2), "{took:?}");
}

/// Signs a new person in on `app` and checks that, after one load, the
/// replica serves their requests from its cache: no Redis command besides
/// the heartbeats.
async fn a_new_session_is_served_from_the_replicas_cache(
    app: &TestApp,
    replica: &TestApp,
    redis: &RedisServer,
) {
    let fresh = Browser::new();
    app.sign_in(&fresh, "/").await;
    assert_eq!(
        fresh.get(&replica.url("/load")).await.status,
        StatusCode::OK
    );
    redis.reset_stats();
    for _ in 0..5 {
        assert_eq!(fresh.get(&replica.url("/hot")).await.status, StatusCode::OK);
    }
    assert_eq!(
        commands_besides_heartbeats(redis),
        0,
        "{}",
        redis.commands_by_name()
    );
}

//! Sessions through Redis Sentinel: real redis-servers watched by a real
//! Sentinel, which portico asks for the master's address
//! (`redis-sentinel://sentinel:port/0?sentinelServiceName=…`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::redis::{free_port, resp_command};
use crate::support::{Browser, RedisServer, TestApp};

const SERVICE: &str = "portico-test";

/// One `redis-server --sentinel` monitoring `SERVICE`, with its config (which
/// Sentinel rewrites) and log in a directory removed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    directory: PathBuf,
}

impl Sentinel {
    fn start(master_port: u16) -> Sentinel {
        crate::support::programs::require("redis-server", "redis-server");
        let port = free_port();
        let directory =
            std::env::temp_dir().join(format!("portico-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let config = directory.join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\n\
                 bind 127.0.0.1\n\
                 dir \"{directory}\"\n\
                 logfile \"{directory}/sentinel.log\"\n\
                 sentinel monitor {SERVICE} 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n",
                directory = directory.display()
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .current_dir(&directory)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let sentinel = Sentinel {
            child,
            port,
            directory,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !resp_command(port, &["PING"]).is_some_and(|reply| reply.contains("PONG")) {
            assert!(
                Instant::now() < deadline,
                "Sentinel did not start:\n{}",
                sentinel.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        sentinel
    }

    fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}/0?sentinelServiceName={SERVICE}",
            self.port
        )
    }

    /// The master's port as Sentinel announces it now.
    fn master_port(&self) -> Option<u16> {
        let reply = resp_command(self.port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE])?;
        reply.lines().last()?.parse().ok()
    }

    /// Whether Sentinel sees a replica it could promote (connected, in sync).
    fn has_a_good_replica(&self) -> bool {
        let replicas = Command::new("redis-cli")
            .args([
                "-p",
                &self.port.to_string(),
                "SENTINEL",
                "REPLICAS",
                SERVICE,
            ])
            .output()
            .expect("redis-cli");
        let lines: Vec<String> = String::from_utf8_lossy(&replicas.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        let field = |name: &str| {
            lines
                .iter()
                .position(|line| line == name)
                .and_then(|index| lines.get(index + 1))
                .map(String::as_str)
        };
        field("flags") == Some("slave") && field("master-link-status") == Some("ok")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// How many session records (keys outside portico's `portico:` prefix) on
/// `server` belong to `user`.
fn session_records(server: &RedisServer, user: &str) -> usize {
    server
        .command(&["KEYS", "*"])
        .lines()
        .filter(|line| {
            !line.is_empty()
                && !line.starts_with('*')
                && !line.starts_with('$')
                && !line.starts_with("portico:")
        })
        .filter(|key| server.command(&["GET", key]).contains(user))
        .count()
}

/// Polls `condition` every 50 ms (letting portico's tasks run meanwhile).
async fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn sessions_work_through_redis_sentinel() {
    let master = RedisServer::spawn();
    let sentinel = Sentinel::start(master.port());
    let app = TestApp::builder().redis_url(&sentinel.url()).build().await;

    let browser = Browser::new();
    let page = app.sign_in(&browser, "/").await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    let page = browser.get(&app.url("/signed-in")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    assert_eq!(
        session_records(&master, "alice"),
        1,
        "the session record is on the master Sentinel named: {}",
        master.command(&["KEYS", "*"])
    );

    // Back-channel logout (index keys, scripts) goes through Sentinel too.
    let token = app.op.logout_token(&portico::devop::LogoutTokenSpec {
        sub: Some("alice".into()),
        ..Default::default()
    });
    let answer = app.backchannel_logout(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(session_records(&master, "alice"), 0);
    assert_eq!(
        browser.get(&app.url("/signed-in")).await.status,
        StatusCode::FOUND
    );
}

#[tokio::test]
async fn sessions_survive_a_sentinel_failover() {
    let mut master = RedisServer::spawn();
    let replica = RedisServer::spawn();
    // Sync over the socket, at once: no RDB file in the test's directory.
    let master_port = master.port().to_string();
    let setup: [(&RedisServer, &[&str]); 4] = [
        (&master, &["CONFIG", "SET", "repl-diskless-sync", "yes"]),
        (&master, &["CONFIG", "SET", "repl-diskless-sync-delay", "0"]),
        (
            &replica,
            &["CONFIG", "SET", "repl-diskless-load", "on-empty-db"],
        ),
        (&replica, &["REPLICAOF", "127.0.0.1", &master_port]),
    ];
    for (server, command) in setup {
        let reply = server.command(command);
        assert!(reply.starts_with("+OK"), "{command:?}: {reply}");
    }
    wait_until(Duration::from_secs(10), "the replica is in sync", || {
        replica
            .command(&["INFO", "replication"])
            .contains("master_link_status:up")
    })
    .await;
    let sentinel = Sentinel::start(master.port());
    wait_until(Duration::from_secs(10), "Sentinel sees the replica", || {
        sentinel.has_a_good_replica()
    })
    .await;
    let app = TestApp::builder().redis_url(&sentinel.url()).build().await;

    let alice = Browser::new();
    app.sign_in(&alice, "/").await;
    assert_eq!(session_records(&master, "alice"), 1);
    wait_until(Duration::from_secs(5), "the session is replicated", || {
        session_records(&replica, "alice") == 1
    })
    .await;

    // The master dies; Sentinel promotes the replica, and portico, asking
    // Sentinel again as it reconnects, follows.
    master.stop();
    let promoted = replica.port();
    let deadline = Instant::now() + Duration::from_secs(15);
    while sentinel.master_port() != Some(promoted) {
        assert!(
            Instant::now() < deadline,
            "Sentinel did not fail over:\n{}",
            sentinel.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = loop {
        let page = alice.get(&app.url("/after-failover")).await;
        if page.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");

    // New sessions land on the promoted replica.
    app.op.set_auto_approve(Some("bob".into()));
    let bob = Browser::new();
    let page = app.sign_in(&bob, "/").await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "bob");
    assert_eq!(session_records(&replica, "bob"), 1);
    // The local cache subscribed anew on the promoted master and serves
    // again (the failover emptied it: a new subscription starts empty).
    app.wait_until_cache_serves().await;
    replica.reset_stats();
    for _ in 0..5 {
        assert_eq!(bob.get(&app.url("/cached")).await.status, StatusCode::OK);
    }
    // At most the first of them reads Redis (if the sign-in's landing came
    // before the cache served again); the rest are served from the cache.
    assert!(replica.calls("get") <= 1, "{}", replica.commands_by_name());
}

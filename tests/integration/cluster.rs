//! Sessions on a real three-node Redis Cluster started by the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::{Browser, TestApp};

struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
    directory: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

fn start_cluster() -> Cluster {
    crate::support::programs::require("redis-server", "redis-server");
    let ports: Vec<u16> = (0..3).map(|_| crate::support::redis::free_port()).collect();
    let directory = std::env::temp_dir().join(format!(
        "portico-cluster-{}-{}",
        std::process::id(),
        ports[0]
    ));
    std::fs::create_dir_all(&directory).unwrap();
    let nodes = ports
        .iter()
        .map(|port| {
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                ])
                .args(["--loglevel", "warning"])
                .current_dir(&directory)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server")
        })
        .collect();
    let cluster = Cluster {
        nodes,
        ports,
        directory,
    };
    for port in &cluster.ports {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
            assert!(Instant::now() < deadline, "cluster node did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let addresses: Vec<String> = cluster
        .ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    // Wait until every node reports the cluster as ok.
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in &cluster.ports {
        loop {
            let info = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&info.stdout).contains("cluster_state:ok") {
                break;
            }
            assert!(Instant::now() < deadline, "cluster never became ok");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    cluster
}

#[tokio::test]
async fn sessions_work_on_a_three_node_redis_cluster() {
    let cluster = start_cluster();
    let url = format!(
        "redis-cluster://127.0.0.1:{}?node=127.0.0.1:{}&node=127.0.0.1:{}",
        cluster.ports[0], cluster.ports[1], cluster.ports[2]
    );
    let app = TestApp::builder().redis_url(&url).build().await;
    let replica = app.replica().await;
    // The local cache (on by default) serves on a cluster too: each
    // replica's heartbeat, published on whichever node, comes back through
    // its subscription.
    app.wait_until_cache_serves().await;
    replica.wait_until_cache_serves().await;
    // Several users, so keys land on different nodes.
    let mut browsers = Vec::new();
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        app.op.set_auto_approve(Some(user.into()));
        let browser = Browser::new();
        let page = app.sign_in(&browser, "/").await;
        assert_eq!(page.json()["headers"]["x-forwarded-user"], user);
        browsers.push((user, browser));
    }
    for (user, browser) in &browsers {
        let page = browser.get(&replica.url("/on-the-replica")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.json()["headers"]["x-forwarded-user"], *user);
    }
    // Keys are spread over the nodes.
    let nodes_with_keys = cluster
        .ports
        .iter()
        .filter(|port| {
            let size = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "dbsize"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&size.stdout).trim() != "0"
        })
        .count();
    assert!(nodes_with_keys >= 2, "sessions spread over the cluster");
    // Back-channel logout (index keys, replay cache) works on the cluster too.
    let token = app.op.logout_token(&portico::devop::LogoutTokenSpec {
        sub: Some("alice".into()),
        ..Default::default()
    });
    let answer = app.backchannel_logout(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        browsers[0].1.get(&app.url("/x")).await.status,
        StatusCode::FOUND
    );
    // ...and on the replica, whose cache held alice's session a moment ago.
    assert_eq!(
        browsers[0].1.get(&replica.url("/x")).await.status,
        StatusCode::FOUND
    );
    assert_eq!(
        browsers[1].1.get(&app.url("/x")).await.status,
        StatusCode::OK
    );
}

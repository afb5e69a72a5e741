//! The real binary under signals: SIGTERM drains requests in flight and
//! exits 0; SIGHUP reloads the routes without dropping connections. And the
//! same reload in-process, through `reload_routes`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::metrics::sample;
use crate::support::process::{request_on, PorticoProcess};
use crate::support::{Browser, TestApp};

const OLD_ROUTES: &str = "[[routes]]\npath_prefix = \"/old\"\nupstream = \"{upstream}\"\npublic = true\n\
                          [[routes]]\npath_prefix = \"/slow\"\nupstream = \"{upstream}\"\npublic = true\n";
const NEW_ROUTES: &str = "[[routes]]\npath_prefix = \"/old\"\nupstream = \"{upstream}\"\npublic = true\n\
                          [[routes]]\npath_prefix = \"/new\"\nupstream = \"{upstream}\"\npublic = true\n";

async fn status_of(url: &str) -> Option<StatusCode> {
    reqwest::Client::new()
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await
        .ok()
        .map(|response| response.status())
}

#[tokio::test]
async fn sigterm_lets_a_request_in_flight_finish_then_exits_zero() {
    let mut portico = PorticoProcess::start(OLD_ROUTES, "upstream_timeout = \"20s\"").await;
    let slow_url = portico.url("/slow?ms=1500");
    let slow = tokio::spawn(async move {
        let response = reqwest::Client::new().get(slow_url).send().await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        (status, body)
    });
    // Wait until the slow request has reached the upstream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while portico.upstream.requests() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    portico.signal("TERM");

    // Not ready from the moment the signal arrives (the metrics listener stays up).
    let ready_url = format!("{}/readyz", portico.metrics_base);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if status_of(&ready_url).await == Some(StatusCode::SERVICE_UNAVAILABLE) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never turned 503: {:?}\n{}",
            status_of(&ready_url).await,
            portico.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The listener closes while the slow request is still running.
    let address = portico.base.trim_start_matches("http://").to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(&address).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener still accepts");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"/slow\""), "{body}");
    assert_eq!(portico.exit_code(Duration::from_secs(15)).await, Some(0));
    let logs = portico.logs();
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("every request finished"), "{logs}");
}

#[tokio::test]
async fn sigterm_cuts_off_requests_longer_than_shutdown_timeout_and_still_exits_zero() {
    let mut portico = PorticoProcess::start(
        OLD_ROUTES,
        "upstream_timeout = \"60s\"\nshutdown_timeout = \"300ms\"",
    )
    .await;
    let slow_url = portico.url("/slow?ms=30000");
    let slow = tokio::spawn(async move { reqwest::Client::new().get(slow_url).send().await });
    let deadline = Instant::now() + Duration::from_secs(5);
    while portico.upstream.requests() == 0 {
        assert!(Instant::now() < deadline, "the slow request never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    portico.signal("INT");
    assert_eq!(portico.exit_code(Duration::from_secs(15)).await, Some(0));
    let cut_off = slow.await.unwrap();
    assert!(cut_off.is_err(), "the cut-off request fails: {cut_off:?}");
    let logs = portico.logs();
    assert!(logs.contains("cut off"), "{logs}");
}

#[tokio::test]
async fn sighup_reloads_routes_without_dropping_connections_and_keeps_them_when_invalid() {
    let mut portico = PorticoProcess::start(OLD_ROUTES, "").await;
    let address = portico.base.trim_start_matches("http://").to_string();
    let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
    assert_eq!(request_on(&mut connection, "/old/a").await.unwrap().0, 200);
    assert_eq!(request_on(&mut connection, "/new/a").await.unwrap().0, 404);

    portico.write_routes(NEW_ROUTES);
    portico.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The same keep-alive connection serves the new table.
        let (status, _) = request_on(&mut connection, "/new/a").await.unwrap();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new route never appeared");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A broken file changes nothing, and the log says why.
    portico.write_config(&format!("{}\n[[routes]]\nupstrem = \"x\"\n", portico.head));
    portico.signal("HUP");
    let metrics_url = format!("{}/metrics", portico.metrics_base);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = reqwest::get(&metrics_url)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if sample(&text, "portico_config_reloads_total{outcome=\"rejected\"}") == Some(1.0) {
            assert_eq!(
                sample(&text, "portico_config_reloads_total{outcome=\"applied\"}"),
                Some(1.0)
            );
            break;
        }
        assert!(Instant::now() < deadline, "the bad reload was not counted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(request_on(&mut connection, "/new/b").await.unwrap().0, 200);
    assert_eq!(request_on(&mut connection, "/old/b").await.unwrap().0, 200);
    let logs = portico.logs();
    assert!(logs.contains("routes reloaded"), "{logs}");
    assert!(
        logs.contains("upstrem"),
        "the log names the problem: {logs}"
    );
    // /metrics lives on the metrics listener only: on the main one it is just a path.
    assert_eq!(
        status_of(&portico.url("/metrics")).await,
        Some(StatusCode::NOT_FOUND)
    );
    portico.signal("TERM");
    assert_eq!(portico.exit_code(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn reload_routes_swaps_the_table_and_rules_in_place() {
    let app = TestApp::builder()
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    let anonymous = Browser::new();
    assert_eq!(
        anonymous.get(&app.url("/open/x")).await.status,
        StatusCode::FOUND,
        "needs a login before the reload"
    );
    assert_eq!(
        browser.get(&app.url("/admin-only")).await.status,
        StatusCode::OK
    );

    let upstream = app.upstream.url();
    let new_text = app.config_text.replace(
        "[[routes]]",
        &format!(
            "[[routes]]\npath_prefix = \"/open\"\nupstream = \"{upstream}\"\npublic = true\n\n\
             [[routes]]\npath_prefix = \"/admin-only\"\nupstream = \"{upstream}\"\nrequire_roles = [\"auditor\"]\n\n[[routes]]"
        ),
    );
    let config = portico::config::parse(&new_text, &Default::default()).unwrap();
    assert_eq!(portico::ops::reload_routes(&app.state, config).unwrap(), 3);
    assert_eq!(app.state.routes.load().len(), 3);

    assert_eq!(
        anonymous.get(&app.url("/open/x")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        browser.get(&app.url("/admin-only")).await.status,
        StatusCode::FORBIDDEN,
        "the new rule applies to a session that already exists"
    );
    assert_eq!(browser.get(&app.url("/other")).await.status, StatusCode::OK);
}

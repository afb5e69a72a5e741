//! `deploy/observability/`: the alert rules pass `promtool check rules` and
//! their own `promtool test rules` cases, and every metric (and label) that
//! the Grafana dashboard and the rules name is one a real gateway exports on
//! `/metrics` after a sign-in and the traffic that feeds each family.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use portico::devop::Misbehavior;
use reqwest::StatusCode;
use serde_json::Value;

use crate::metrics::{sample, scrape};
use crate::support::deploy::{repository_path, yaml_documents};
use crate::support::{Browser, RedisServer, TestApp};

#[path = "observability_promql.rs"]
mod promql;
use promql::{label_block, promql_uses};

const RULES: &str = "deploy/observability/portico-alerts.yml";
const RULE_TESTS: &str = "deploy/observability/portico-alerts.test.yml";
const DASHBOARD: &str = "deploy/observability/portico-dashboard.json";

/// Series Prometheus itself writes for every target (prometheus.io, "Jobs
/// and instances": `up` is 1 when the scrape worked); not portico's to export.
const PROMETHEUS_SERIES: &[&str] = &["up"];
/// Labels Prometheus attaches to every scraped series (the target's).
const TARGET_LABELS: &[&str] = &["job", "instance"];

fn promtool(args: &[&str]) -> String {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repository_path(""))
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "promtool is missing ({error}); install it with:\n    \
                 apt-get install --no-install-recommends prometheus\n\
                 (.ci/run and scripts/test do this when it is missing)"
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{report}"
    );
    report
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests_pass() {
    let report = promtool(&["check", "rules", RULES]);
    assert!(report.contains("SUCCESS: 7 rules found"), "{report}");
    let report = promtool(&["test", "rules", RULE_TESTS]);
    assert!(report.contains("SUCCESS"), "{report}");
}

// ---- The exposition: what portico exports ----

/// Sample name → the label names seen on its samples.
type Exported = BTreeMap<String, BTreeSet<String>>;

/// The samples of an OpenMetrics text, by name, with their label names.
fn exported(text: &str) -> Exported {
    let mut exported = Exported::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..end];
        let labels = exported.entry(name.to_string()).or_default();
        if line[end..].starts_with('{') {
            let characters: Vec<char> = line[end..].chars().collect();
            labels.extend(label_block(&characters, 0).0);
        }
    }
    exported
}

/// Every PromQL expression in the dashboard: panel targets and the
/// template variables' `label_values(selector, label)` queries (the label
/// returned as a grouping label).
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "expr" {
                        found.push(value.as_str().unwrap().to_string());
                    } else if key == "query" && value.is_object() {
                        let query = value["query"].as_str().unwrap();
                        let inner = query
                            .strip_prefix("label_values(")
                            .and_then(|rest| rest.strip_suffix(')'))
                            .unwrap_or_else(|| panic!("unexpected variable query {query}"));
                        let (selector, label) = inner.rsplit_once(',').unwrap();
                        found.push(format!("{selector} / on({}) vector(1)", label.trim()));
                    } else {
                        walk(value, found);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(dashboard, &mut found);
    found
}

fn rule_expressions() -> Vec<String> {
    let documents = yaml_documents(&repository_path(RULES));
    documents[0]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap().iter())
        .map(|rule| rule["expr"].as_str().unwrap().to_string())
        .collect()
}

/// Problems with one expression against what portico exports.
fn unknown_uses(origin: &str, expression: &str, exported: &Exported) -> Vec<String> {
    let uses = promql_uses(expression);
    let mut problems = Vec::new();
    let mut known_labels: BTreeSet<String> = TARGET_LABELS
        .iter()
        .map(|label| label.to_string())
        .collect();
    for (name, labels) in &uses.selectors {
        if PROMETHEUS_SERIES.contains(&name.as_str()) {
            continue;
        }
        let Some(exported_labels) = exported.get(name) else {
            problems.push(format!("{origin}: {name} is not exported ({expression})"));
            continue;
        };
        known_labels.extend(exported_labels.iter().cloned());
        for label in labels {
            if !exported_labels.contains(label) && !TARGET_LABELS.contains(&label.as_str()) {
                problems.push(format!("{origin}: {name} has no label {label}"));
            }
        }
    }
    for label in &uses.grouping {
        if !known_labels.contains(label) {
            problems.push(format!(
                "{origin}: no metric in the expression has the label {label} ({expression})"
            ));
        }
    }
    problems
}

/// Polls the metrics until `series` is at least `at_least`.
async fn wait_for_sample(app: &TestApp, series: &str, at_least: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(app).await;
        if sample(&text, series).is_some_and(|value| value >= at_least) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {at_least}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A gateway that has served one of everything the dashboard shows:
/// sign-ins and a failed callback, proxied and bearer requests, a refresh,
/// a back-channel logout, an unreachable upstream, a refused oversized
/// request, a 503 at an upstream's connection limit, a route reload, a
/// failed key fetch and a Redis timeout.
async fn gateway_after_a_day_of_everything() -> (TestApp, RedisServer) {
    let redis = RedisServer::spawn();
    let limited = portico::devop::EchoUpstream::start().await.unwrap();
    let app = TestApp::builder()
        .redis_url(&redis.url(0))
        .op_options(|options| {
            options.access_token_ttl = Duration::from_secs(120);
            options.id_token_ttl = Duration::from_secs(120);
        })
        .config("session", "refresh_before = \"60s\"")
        .config("oidc", "jwks_refresh = \"200ms\"")
        .route("path_prefix = \"/\"\nupstream = \"{upstream}\"")
        .route("path_prefix = \"/api\"\nupstream = \"{upstream}\"\napi = true")
        .route("path_prefix = \"/down\"\nupstream = \"http://127.0.0.1:1\"")
        .route(&format!(
            "path_prefix = \"/slow\"\nupstream = \"{}\"\npublic = true\n\
             max_connections = 1\nmax_pending = 1\npending_timeout = \"200ms\"",
            limited.url()
        ))
        .build()
        .await;
    let browser = Browser::new();
    app.sign_in(&browser, "/").await;
    assert_eq!(browser.get(&app.url("/api/x")).await.status, StatusCode::OK);
    let bearer = Browser::new()
        .get_with(&app.url("/api/x"), &[("Authorization", "Bearer not-a-jwt")])
        .await;
    assert_eq!(bearer.status, StatusCode::UNAUTHORIZED, "{}", bearer.body);
    let callback = Browser::new()
        .get(&app.url("/oauth2/callback?code=forged&state=forged"))
        .await;
    assert_eq!(
        callback.status,
        StatusCode::BAD_REQUEST,
        "{}",
        callback.body
    );
    let logout = app.backchannel_logout("not-a-logout-token").await;
    assert_eq!(logout.status, StatusCode::BAD_REQUEST, "{}", logout.body);
    assert_eq!(
        browser.get(&app.url("/down")).await.status,
        StatusCode::BAD_GATEWAY
    );
    let oversized = browser
        .get(&app.url(&format!("/?q={}", "x".repeat(9 * 1024))))
        .await;
    assert!(oversized.status.is_client_error(), "{}", oversized.status);
    // One request holds the only connection to the limited upstream; the
    // next waits for it past pending_timeout and gets a 503.
    let holder = tokio::spawn({
        let url = app.url("/slow?ms=1500");
        async move { Browser::new().get(&url).await }
    });
    wait_for_sample(&app, "portico_upstream_active_requests", 1.0).await;
    let refused = Browser::new().get(&app.url("/slow?ms=0")).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(holder.await.unwrap().status, StatusCode::OK);
    app.advance(Duration::from_secs(61));
    assert_eq!(browser.get(&app.url("/later")).await.status, StatusCode::OK);
    let config = portico::config::parse(&app.config_text, &Default::default()).unwrap();
    portico::ops::reload_routes(&app.state, config).unwrap();

    app.op.set_misbehavior(Misbehavior::Unavailable);
    wait_for_sample(
        &app,
        "portico_jwks_fetches_total{trigger=\"periodic\",outcome=\"error\"}",
        1.0,
    )
    .await;
    app.op.set_misbehavior(Misbehavior::None);

    // Long enough for the local cache to stop serving (its heartbeats stop
    // coming back) and the store read then to time out.
    let sleeper = redis.hang_for(4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while app.cache_serving() {
        assert!(
            Instant::now() < deadline,
            "the cache served a hanging Redis"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during = browser
        .get_with(&app.url("/during"), &[("Accept", "application/json")])
        .await;
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        during.body
    );
    tokio::task::spawn_blocking(move || sleeper.join().unwrap())
        .await
        .unwrap();
    (app, redis)
}

#[tokio::test]
async fn every_metric_and_label_the_dashboard_and_alerts_use_is_exported() {
    let (app, _redis) = gateway_after_a_day_of_everything().await;
    let text = scrape(&app).await;
    let exported = exported(&text);

    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repository_path(DASHBOARD)).unwrap())
            .unwrap();
    let mut expressions: Vec<(String, String)> = dashboard_expressions(&dashboard)
        .into_iter()
        .map(|expression| (DASHBOARD.to_string(), expression))
        .collect();
    let panels = expressions.len();
    assert!(panels >= 20, "{panels} dashboard queries");
    expressions.extend(
        rule_expressions()
            .into_iter()
            .map(|expression| (RULES.to_string(), expression)),
    );
    assert_eq!(expressions.len(), panels + 7);

    let mut used = BTreeSet::new();
    let mut problems = Vec::new();
    for (origin, expression) in &expressions {
        used.extend(promql_uses(expression).selectors.into_keys());
        problems.extend(unknown_uses(origin, expression, &exported));
    }
    assert!(
        problems.is_empty(),
        "{}\n\nportico exports:\n{text}",
        problems.join("\n")
    );
    // What the issue asks the dashboard and the alerts to show.
    for name in [
        "portico_http_requests_total",
        "portico_http_request_duration_seconds_bucket",
        "portico_logins_started_total",
        "portico_logins_failed_total",
        "portico_session_refreshes_total",
        "portico_redis_command_errors_total",
        "portico_upstream_errors_total",
        "portico_backchannel_logouts_total",
        "portico_jwks_fetches_total",
        "portico_ready",
        "portico_client_connections",
        "portico_upstream_overflow_total",
        "portico_upstream_pending_requests",
        "portico_session_cache_serving",
        "portico_session_cache_channel_losses_total",
    ] {
        assert!(used.contains(name), "nothing shows {name}");
    }
    // The check can fail: a name portico does not export is reported.
    assert_eq!(
        unknown_uses("probe", "rate(portico_logins_failed[5m])", &exported).len(),
        1
    );
    assert_eq!(
        unknown_uses(
            "probe",
            "sum by (tenant) (rate(portico_logins_failed_total{reasons=\"x\"}[5m]))",
            &exported
        )
        .len(),
        2
    );
}

#[tokio::test]
async fn the_ready_gauge_follows_readyz() {
    let app = TestApp::start().await;
    let ready = || async { sample(&scrape(&app).await, "portico_ready") };
    assert_eq!(ready().await, Some(1.0));
    app.state.draining.begin();
    assert_eq!(
        Browser::new().get(&app.url("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(ready().await, Some(0.0));
}

#[test]
fn the_dashboard_panels_fit_the_grid_and_query_the_chosen_data_source() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repository_path(DASHBOARD)).unwrap())
            .unwrap();
    assert_eq!(dashboard["uid"], "portico");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| variable["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "job", "instance", "route"]);
    let panels = dashboard["panels"].as_array().unwrap();
    let mut ids = BTreeSet::new();
    // Grafana's grid is 24 columns wide; panels must not overlap.
    let mut cells = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(
            ids.insert(panel["id"].as_u64().unwrap()),
            "{title}: id reused"
        );
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(x + w <= 24, "{title} leaves the grid");
        for column in x..x + w {
            for row in y..y + h {
                assert!(
                    cells.insert((column, row)),
                    "{title} overlaps another panel"
                );
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{title}: no description"
        );
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for target in targets {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{title}");
            let expression = target["expr"].as_str().unwrap();
            // Every query follows the job and replica chosen at the top.
            for (name, _) in promql_uses(expression).selectors {
                if name.starts_with("portico_") || name == "up" {
                    assert!(
                        expression.contains("job=\"$job\", instance=~\"$instance\""),
                        "{title}: {expression}"
                    );
                }
            }
        }
    }
}

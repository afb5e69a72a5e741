//! docker-compose.yml and the Dockerfile's example, checked without Docker:
//! the file is parsed, each service is held against the real `portico` CLI
//! and the real config files, and the demo service's own command line is run
//! (ports and host names moved to loopback) until a person can sign in.
//!
//! Compose facts relied on (Compose Specification, compose-spec/compose-spec
//! `spec.md` and `05-services.md`): a short port entry `"IP:HOST:CONTAINER"`
//! binds only IP; an entry without IP binds every interface; services with
//! `profiles` start only when a profile is enabled; variables are
//! interpolated in every service before profiles are applied, so a
//! `${VAR:?}` anywhere stops even the default `docker compose up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml_ng::Value;

use crate::cli::{demo_port, sign_in_through_the_demo, wait_for_port, Child};
use crate::support::RedisServer;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

fn compose() -> Value {
    let text = std::fs::read_to_string(Path::new(REPOSITORY).join("docker-compose.yml")).unwrap();
    serde_yaml_ng::from_str(&text).expect("docker-compose.yml is YAML")
}

fn services(compose: &Value) -> Vec<(String, Value)> {
    compose["services"]
        .as_mapping()
        .expect("a services table")
        .iter()
        .map(|(name, service)| (name.as_str().unwrap().to_owned(), service.clone()))
        .collect()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().expect("a string").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A service built from this repository runs portico.
fn runs_portico(service: &Value) -> bool {
    service["build"].as_str() == Some(".")
}

fn is_default(service: &Value) -> bool {
    strings(&service["profiles"]).is_empty()
}

/// `${NAME:-default}` as compose would fill it from `variables`; `${NAME}`
/// and `${NAME:?…}` count as unset when absent (and fail this test).
fn interpolate(text: &str, variables: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closing brace") + start;
        let inner = &rest[start + 2..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        match (variables.get(name), default) {
            (Some(value), _) => out.push_str(value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => panic!("`{text}` needs the variable {name} and has no default"),
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn environment(service: &Value, variables: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    service["environment"]
        .as_mapping()
        .map(|entries| {
            entries
                .iter()
                .map(|(name, value)| {
                    let value = match value {
                        Value::String(text) => text.clone(),
                        other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
                    };
                    (
                        name.as_str().unwrap().to_owned(),
                        interpolate(&value, variables),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `./host/path:/container/path[:ro]` mounts of files in this repository.
fn file_mounts(service: &Value) -> Vec<(PathBuf, String)> {
    strings(&service["volumes"])
        .iter()
        .filter(|volume| volume.starts_with("./"))
        .map(|volume| {
            let mut parts = volume.split(':');
            let host = Path::new(REPOSITORY).join(parts.next().unwrap());
            let container = parts.next().expect("a container path").to_owned();
            (host, container)
        })
        .collect()
}

fn portico() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
    command
        .env_remove("PORTICO_CONFIG")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("PORTICO_") {
            command.env_remove(name);
        }
    }
    command
}

/// The healthcheck's command: `["CMD", "portico", "health", …]`.
fn health_arguments(service: &Value) -> Vec<String> {
    let test = strings(&service["healthcheck"]["test"]);
    assert_eq!(
        test.get(..3),
        Some(&["CMD".to_owned(), "portico".to_owned(), "health".to_owned()][..]),
        "the healthcheck runs portico health: {test:?}"
    );
    test[2..].to_vec()
}

#[test]
fn every_published_port_is_on_loopback_and_every_portico_service_has_a_health_command() {
    let compose = compose();
    let services = services(&compose);
    assert!(services.iter().any(|(_, service)| runs_portico(service)));
    for (name, service) in &services {
        for port in strings(&service["ports"]) {
            assert!(
                port.starts_with("127.0.0.1:"),
                "{name}: port {port:?} would be published on every interface"
            );
        }
        if runs_portico(service) {
            let health = health_arguments(service);
            // The real CLI accepts it: against a port nothing listens on, it
            // answers "not ready" (1), not a usage error (2).
            let closed = crate::support::redis::free_port();
            let arguments: Vec<String> = health
                .iter()
                .map(|argument| argument.replace(":4180", &format!(":{closed}")))
                .map(|argument| argument.replace(":4190", &format!(":{closed}")))
                .collect();
            let output = portico().args(&arguments).output().unwrap();
            assert_eq!(
                output.status.code(),
                Some(1),
                "{name}: {arguments:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

#[test]
fn the_default_up_needs_no_variable_and_runs_the_demo_with_redis() {
    let text = std::fs::read_to_string(Path::new(REPOSITORY).join("docker-compose.yml")).unwrap();
    for (index, _) in text.match_indices("${") {
        let inner = &text[index..index + text[index..].find('}').unwrap()];
        assert!(
            !inner.contains('?'),
            "{inner}}}: a required variable stops even the `docker compose up` of other profiles"
        );
    }
    let compose = compose();
    let defaults: Vec<(String, Value)> = services(&compose)
        .into_iter()
        .filter(|(_, service)| is_default(service))
        .collect();
    let none = BTreeMap::new();
    let redis = defaults
        .iter()
        .find(|(_, service)| {
            service["image"]
                .as_str()
                .is_some_and(|image| image.starts_with("redis"))
        })
        .expect("a redis service without a profile");
    let (name, demo) = defaults
        .iter()
        .find(|(_, service)| runs_portico(service))
        .expect("a portico service without a profile");
    let command = strings(&demo["command"]);
    assert_eq!(command.first().map(String::as_str), Some("demo"), "{name}");
    let environment = environment(demo, &none);
    assert!(
        environment["REDIS_URL"].starts_with(&format!("redis://{}:", redis.0)),
        "{name} keeps its sessions in the redis service: {environment:?}"
    );
    // Every default service's variables have defaults (interpolate panics otherwise).
    for (_, service) in &defaults {
        let _ = self::environment(service, &none);
    }
}

#[test]
fn the_descope_profile_mounts_a_config_that_passes_check_with_its_variables() {
    let compose = compose();
    let descope: Vec<(String, Value)> = services(&compose)
        .into_iter()
        .filter(|(_, service)| strings(&service["profiles"]).contains(&"descope".to_owned()))
        .filter(|(_, service)| runs_portico(service))
        .collect();
    assert_eq!(descope.len(), 1);
    let (name, service) = &descope[0];
    let variables = BTreeMap::from([
        ("DESCOPE_PROJECT_ID", "P2TestProject"),
        ("DESCOPE_ACCESS_KEY", "an-access-key"),
        (
            "PORTICO_SESSION__COOKIE_SECRET",
            "dGVzdC1jb29raWUtc2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2g=",
        ),
    ]);
    let command = strings(&service["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some("--config"),
        "{name} serves"
    );
    let mounts = file_mounts(service);
    let (host, _) = mounts
        .iter()
        .find(|(_, container)| Some(container) == command.get(1))
        .unwrap_or_else(|| {
            panic!(
                "{name}: the config {:?} is mounted from the repository",
                command.get(1)
            )
        });
    assert!(host.is_file(), "{} exists", host.display());
    let check = |variables: &BTreeMap<&str, &str>| {
        portico()
            .arg("check")
            .arg("--config")
            .arg(host)
            .envs(environment(service, variables))
            .output()
            .unwrap()
    };
    let output = check(&variables);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let effective = String::from_utf8_lossy(&output.stdout);
    assert!(effective.contains("P2TestProject"), "{effective}");
    // Without the variables portico stops and says what is missing and where to find it.
    let output = check(&BTreeMap::new());
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("oidc.project_id"), "{errors}");
    assert!(errors.contains("Project settings"), "{errors}");
    assert!(errors.contains("session.cookie_secret"), "{errors}");
    // The placeholder a person might paste from old docs is refused too.
    let mut placeholder = variables.clone();
    placeholder.insert("DESCOPE_PROJECT_ID", "P2YourProjectIdHere");
    let errors = String::from_utf8_lossy(&check(&placeholder).stderr).into_owned();
    assert!(errors.contains("placeholder"), "{errors}");
}

/// The demo service's command and environment, moved to loopback and free
/// ports: `:4180`/`:4181` to the test's, `0.0.0.0` to `127.0.0.1`, the
/// `redis` host to a real redis-server.
fn on_loopback(text: &str, port: u16, redis_port: u16) -> String {
    text.replace("0.0.0.0", "127.0.0.1")
        .replace(":4180", &format!(":{port}"))
        .replace(":4181", &format!(":{}", port + 1))
        .replace("redis:6379", &format!("127.0.0.1:{redis_port}"))
}

#[tokio::test]
async fn the_demo_services_own_command_line_serves_a_sign_in_with_sessions_in_redis() {
    let compose = compose();
    let (_, demo) = services(&compose)
        .into_iter()
        .find(|(_, service)| is_default(service) && runs_portico(service))
        .unwrap();
    let redis = RedisServer::spawn();
    let port = demo_port();
    let arguments: Vec<String> = strings(&demo["command"])
        .iter()
        .map(|argument| on_loopback(argument, port, redis.port()))
        .collect();
    let environment: BTreeMap<String, String> = environment(&demo, &BTreeMap::new())
        .into_iter()
        .map(|(name, value)| (name, on_loopback(&value, port, redis.port())))
        .collect();
    let _running = Child(
        portico()
            .args(&arguments)
            .envs(&environment)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port).await;

    // Its healthcheck, as compose would run it, turns healthy.
    let health: Vec<String> = health_arguments(&demo)
        .iter()
        .map(|argument| on_loopback(argument, port, redis.port()))
        .collect();
    let mut healthy = false;
    for _ in 0..100 {
        if portico().args(&health).status().unwrap().success() {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(healthy, "`portico {}` never said ready", health.join(" "));

    let page = sign_in_through_the_demo(port).await;
    assert_eq!(page.status, reqwest::StatusCode::OK);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    // The session is in Redis, not in the demo's memory.
    let keys = redis.command(&["DBSIZE"]);
    let count: u64 = keys.trim().trim_start_matches(':').parse().unwrap_or(0);
    assert!(count > 0, "no session in Redis: {keys:?}");
}

#[tokio::test]
async fn the_dockerfiles_own_example_runs_the_demo() {
    let text = std::fs::read_to_string(Path::new(REPOSITORY).join("Dockerfile")).unwrap();
    // The first `docker run` example in the comments, its lines joined.
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix('#'))
        .map(str::trim)
        .skip_while(|line| !line.starts_with("docker run"))
        .collect();
    let mut example = String::new();
    for line in lines {
        example.push_str(line.trim_end_matches('\\'));
        example.push(' ');
        if !line.ends_with('\\') {
            break;
        }
    }
    let words: Vec<&str> = example.split_whitespace().collect();
    for (index, word) in words.iter().enumerate() {
        if *word == "-p" {
            assert!(words[index + 1].starts_with("127.0.0.1:"), "{example}");
        }
    }
    // After the image name come portico's own arguments.
    let image = words
        .iter()
        .position(|word| *word == "portico")
        .expect("the image name");
    let port = demo_port();
    let arguments: Vec<String> = words[image + 1..]
        .iter()
        .map(|argument| on_loopback(argument, port, 0))
        .collect();
    assert_eq!(
        arguments.first().map(String::as_str),
        Some("demo"),
        "{example}"
    );
    let _running = Child(
        portico()
            .args(&arguments)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let page = sign_in_through_the_demo(port).await;
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    // The image's own HEALTHCHECK uses portico health too.
    assert!(
        text.lines()
            .any(|line| line.contains("CMD [\"portico\", \"health\"")),
        "a HEALTHCHECK through portico health"
    );
}

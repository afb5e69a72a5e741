//! The `portico` command as users run it: `check` and `demo`.

use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::support::Browser;

const SECRET: &str = "dGVzdC1jb29raWUtc2VjcmV0LXRoYXQtaXMtbG9uZy1lbm91Z2g=";

fn portico() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portico"));
    command.env_remove("PORTICO_CONFIG").env_remove("REDIS_URL");
    command
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("portico-cli-{}-{name}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn check(name: &str, text: &str) -> (i32, String, String) {
    let path = write_config(name, text);
    let output = portico()
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_lists_every_problem_at_once_and_exits_1() {
    let (code, _, errors) = check(
        "bad",
        r#"
[server]
listen = "nope"
public_url = "ftp://example.com"
[oidc]
issuer = "not a url"
client_id = ""
[session]
cookie_secret = "c2hvcnQ="
tll = "2h"
[[routes]]
upstream = "also not a url"
"#,
    );
    assert_eq!(code, 1, "{errors}");
    for key in [
        "server.listen",
        "server.public_url",
        "oidc.issuer",
        "oidc.client_id",
        "session.cookie_secret",
        "session.tll",
        "routes[0].upstream",
    ] {
        assert!(errors.contains(key), "{key} missing from:\n{errors}");
    }
    assert!(errors.contains("did you mean `ttl`"), "{errors}");
    assert!(
        !errors.contains("c2hvcnQ="),
        "secrets never printed:\n{errors}"
    );
}

#[test]
fn check_prints_the_effective_config_with_secrets_masked() {
    let client_secret_file = write_config("client-secret", "s3cr3t-from-a-file\n");
    let cookie_secret_file = write_config("cookie-secret", SECRET);
    let (code, output, errors) = check(
        "good",
        &format!(
            r#"
[server]
public_url = "https://app.example.com"
[oidc]
issuer = "https://op.example.com"
client_id = "my-client"
client_secret_file = "{}"
[session]
cookie_secret_file = "{}"
redis_url = "redis://:hunter2@redis.internal:6379/0"
[[routes]]
upstream = "http://127.0.0.1:9100"
"#,
            client_secret_file.display(),
            cookie_secret_file.display()
        ),
    );
    assert_eq!(code, 0, "{errors}");
    assert!(
        output.contains("redirect_url = \"https://app.example.com/oauth2/callback\""),
        "{output}"
    );
    assert!(output.contains("cookie_secure = true"), "{output}");
    for secret in ["s3cr3t-from-a-file", SECRET, "hunter2"] {
        assert!(!output.contains(secret), "{secret} leaked:\n{output}");
    }
    assert!(output.contains("***"), "{output}");
    // The effective config is itself a valid config once secrets are supplied.
    let reparsed = output
        .replace("client_secret = \"***\"", "client_secret = \"s\"")
        .replace(
            "cookie_secret = \"***\"",
            &format!("cookie_secret = \"{SECRET}\""),
        );
    assert!(
        portico::config::parse(&reparsed, &Default::default()).is_ok(),
        "{reparsed}"
    );
}

fn descope_check(project: &str, extra: &str) -> String {
    let (code, output, errors) = check(
        "descope",
        &format!(
            "[server]\npublic_url = \"https://app.example.com\"\n[oidc]\nprovider = \"descope\"\n\
             project_id = \"{project}\"\n{extra}\n[session]\ncookie_secret = \"{SECRET}\"\n\
             [[routes]]\nupstream = \"http://127.0.0.1:9100\"\n"
        ),
    );
    assert_eq!(code, 0, "{errors}");
    output
}

#[test]
fn check_shows_descope_endpoints_for_global_regional_and_custom_domain_projects() {
    let global = descope_check("P2abcDEF123", "");
    assert!(
        global.contains("issuer = \"https://api.descope.com/P2abcDEF123\""),
        "{global}"
    );
    assert!(global.contains("client_id = \"P2abcDEF123\""), "{global}");
    assert!(
        global.contains("https://api.descope.com/P2abcDEF123/.well-known/openid-configuration"),
        "{global}"
    );
    assert!(
        global.contains("https://api.descope.com/v2/keys/P2abcDEF123"),
        "{global}"
    );

    let regional_id = "Peuc12xYzAbCdEfGhIjKlMnOpQrStUvW";
    assert_eq!(regional_id.len(), 32);
    let regional = descope_check(regional_id, "");
    assert!(
        regional.contains(&format!(
            "issuer = \"https://api.euc1.descope.com/{regional_id}\""
        )),
        "{regional}"
    );

    let custom = descope_check("P2abcDEF123", "base_url = \"https://auth.example.com\"");
    assert!(
        custom.contains("issuer = \"https://auth.example.com/P2abcDEF123\""),
        "{custom}"
    );
    assert!(
        custom.contains("https://auth.example.com/v2/keys/P2abcDEF123"),
        "{custom}"
    );
}

#[test]
fn a_redirect_url_on_another_origin_needs_a_covering_cookie_domain() {
    let text = |extra: &str| {
        format!(
            "[server]\npublic_url = \"https://app.example.com\"\n[oidc]\nissuer = \"https://op.example.com\"\n\
             client_id = \"c\"\nredirect_url = \"https://auth.example.com/oauth2/callback\"\n\
             [session]\ncookie_secret = \"{SECRET}\"\n{extra}\n[[routes]]\nupstream = \"http://127.0.0.1:9100\"\n"
        )
    };
    let (code, _, errors) = check("origin", &text(""));
    assert_eq!(code, 1);
    assert!(errors.contains("oidc.redirect_url"), "{errors}");
    let (code, _, errors) = check("origin-covered", &text("cookie_domain = \"example.com\""));
    assert_eq!(code, 0, "{errors}");
}

#[test]
fn serving_without_a_config_says_how_to_start() {
    let output = portico().output().unwrap();
    assert!(!output.status.success());
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("--config"), "{errors}");
    assert!(errors.contains("portico demo"), "{errors}");
}

/// Kills the demo when the test ends, pass or fail.
pub(crate) struct Child(pub(crate) std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `portico demo` on `port` with extra environment variables.
pub(crate) fn spawn_demo(port: u16, environment: &[(&str, &str)]) -> Child {
    let mut command = portico();
    command
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in environment {
        command.env(name, value);
    }
    Child(command.spawn().unwrap())
}

/// Waits until something listens on `port` (at most 10 s).
pub(crate) async fn wait_for_port(port: u16) {
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    panic!("nothing listens on port {port}");
}

/// A free port with the next two free as well (the demo's OP and upstream).
pub(crate) fn demo_port() -> u16 {
    loop {
        let candidate = crate::support::redis::free_port();
        let free = (1..=2)
            .all(|offset| std::net::TcpListener::bind(("127.0.0.1", candidate + offset)).is_ok());
        if candidate < 65000 && free {
            return candidate;
        }
    }
}

/// Signs in through a running demo on `port` as a person would (the login
/// form, username alice) and returns the echo upstream's page.
pub(crate) async fn sign_in_through_the_demo(port: u16) -> crate::support::Page {
    let base = format!("http://127.0.0.1:{port}");
    let browser = Browser::new();
    let mut login_page = None;
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let page = browser.open(&format!("{base}/hello")).await;
            if page.status == StatusCode::OK && page.body.contains("<form") {
                login_page = Some(page);
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    let login_page = login_page.expect("the demo shows the dev OP's sign-in page");
    let field = |name: &str| {
        login_page
            .body
            .split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .replace("&#x2f;", "/")
            .replace("&#47;", "/")
            .replace("&amp;", "&")
    };
    let names = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    let values: Vec<String> = names.iter().map(|name| field(name)).collect();
    let mut form: Vec<(&str, &str)> = names
        .iter()
        .copied()
        .zip(values.iter().map(String::as_str))
        .collect();
    form.push(("username", "alice"));
    let posted = browser
        .post_form(
            &format!("http://127.0.0.1:{}/authorize", port + 1),
            &form,
            &[],
        )
        .await;
    assert_eq!(posted.status, StatusCode::FOUND, "{}", posted.body);
    let landing = browser
        .request(reqwest::Method::GET, &posted.location().unwrap(), &[], None)
        .await;
    assert_eq!(landing.status, StatusCode::FOUND, "{}", landing.body);
    browser.open(&landing.location().unwrap()).await
}

#[tokio::test]
async fn the_demo_lets_a_person_sign_in_at_the_dev_op_and_see_their_identity() {
    let port = demo_port();
    let _demo = Child(
        portico()
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let page = sign_in_through_the_demo(port).await;
    assert_eq!(page.status, StatusCode::OK);
    let headers = &page.json()["headers"];
    assert_eq!(headers["x-forwarded-user"], "alice");
    assert_eq!(headers["x-forwarded-groups"], "admin");
    assert_eq!(page.json()["path"], "/hello");
}

#[tokio::test]
async fn sessions_can_live_in_redis_over_tls() {
    crate::support::programs::require("redis-server", "redis-server");
    crate::support::programs::require("openssl", "openssl");
    let directory = std::env::temp_dir().join(format!("portico-rediss-{}", std::process::id()));
    let (cert, key) = crate::support::self_signed_certificate(&directory);
    let redis_port = crate::support::redis::free_port();
    let _redis = Child(
        Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &redis_port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .arg("--tls-ca-cert-file")
            .arg(&cert)
            .args([
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let port = demo_port();
    let _demo = Child(
        portico()
            .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
            .env("REDIS_URL", format!("rediss://127.0.0.1:{redis_port}/0"))
            // rustls reads the trusted roots from here, like most TLS clients.
            .env("SSL_CERT_FILE", &cert)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let page = sign_in_through_the_demo(port).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.json()["headers"]["x-forwarded-user"], "alice");
    let keys = Command::new("redis-cli")
        .args(["--tls", "-p", &redis_port.to_string()])
        .arg("--cacert")
        .arg(&cert)
        .arg("dbsize")
        .output()
        .unwrap();
    let count: u64 = String::from_utf8_lossy(&keys.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(count >= 1, "the session is stored in the TLS Redis");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn help_says_what_each_form_does() {
    let output = portico().arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for form in [
        "portico --config PATH            serve",
        "portico check --config PATH",
        "portico demo",
        "portico health [--url URL]",
    ] {
        assert!(help.contains(form), "{form:?} missing from:\n{help}");
    }
    assert!(help.contains("With no command, portico serves"), "{help}");
}

#[test]
fn the_demo_refuses_a_config_file_and_says_what_to_run_instead() {
    let output = portico()
        .args(["demo", "--config", "mine.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(errors.contains("built-in configuration"), "{errors}");
    assert!(errors.contains("portico --config PATH"), "{errors}");
    assert!(errors.contains("--public-url"), "{errors}");
}

#[tokio::test]
async fn a_redis_that_does_not_answer_at_start_is_a_warning_with_the_password_masked() {
    // The demo listens on three ports picked while other tests run: when one
    // of them is taken meanwhile the demo exits, and the check runs again
    // on fresh ports (a few times at most).
    let mut attempts = Vec::new();
    for _ in 0..3 {
        let closed = crate::support::redis::free_port();
        match redis_warning_of_a_demo(closed).await {
            Ok(warning) => {
                assert!(warning.contains("WARN"), "{warning}");
                assert!(
                    warning.contains(&format!("redis://:***@127.0.0.1:{closed}/0")),
                    "{warning}"
                );
                assert!(!warning.contains("s3cr3t-pw"), "{warning}");
                return;
            }
            Err(stderr) => attempts.push(stderr),
        }
    }
    panic!(
        "no warning about Redis in three tries; stderr of each:\n{}",
        attempts.join("\n---\n")
    );
}

/// Starts the demo with a Redis URL that nothing answers on `closed` and
/// returns its warning line, or all it wrote to stderr when it exited or
/// stayed silent for 30 s without one.
async fn redis_warning_of_a_demo(closed: u16) -> Result<String, String> {
    use tokio::io::AsyncBufReadExt;
    let port = demo_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
        .env_remove("PORTICO_CONFIG")
        .env(
            "REDIS_URL",
            format!("redis://:s3cr3t-pw@127.0.0.1:{closed}/0"),
        )
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    let warning = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Redis does not answer") {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    let _ = child.kill().await;
    match warning {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(format!("(the demo exited)\n{}", seen.join("\n"))),
        Err(_) => Err(format!("(30 s without the warning)\n{}", seen.join("\n"))),
    }
}

#[test]
fn health_asks_the_listen_address_of_the_config_when_given_no_url() {
    let closed = crate::support::redis::free_port();
    let path = write_config(
        "health",
        &format!(
            "[server]\nlisten = \"0.0.0.0:{closed}\"\npublic_url = \"https://app.example.com\"\n\
             [oidc]\nissuer = \"https://op.example.com\"\nclient_id = \"c\"\n\
             [session]\ncookie_secret = \"{SECRET}\"\n[[routes]]\nupstream = \"http://127.0.0.1:9100\"\n"
        ),
    );
    let output = portico()
        .args(["health", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&path);
    assert_eq!(output.status.code(), Some(1));
    let errors = String::from_utf8_lossy(&output.stderr);
    // 0.0.0.0 is asked on loopback.
    assert!(
        errors.contains(&format!("http://127.0.0.1:{closed}/readyz")),
        "{errors}"
    );
}

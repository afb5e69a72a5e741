//! `deploy/kubernetes/`: every manifest validates against the Kubernetes
//! OpenAPI schemas (offline, with the pinned `kubernetes-validate`, which
//! ships the schemas), the ConfigMap's `portico.toml` passes the real
//! `portico check`, and the objects agree with each other and with the
//! config (ports, probe paths, the Secret's files, the ingress's URLs).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::deploy::{repository_path, yaml_documents, yaml_files};

/// The validator (run as `python3 -m kubernetes_validate`, so that it is the
/// one pip installed for this python3) and the version the set-up installs
/// (.ci/run, scripts/test).
const VALIDATOR: &str = "kubernetes_validate";
const VALIDATOR_VERSION: &str = "1.37.0";
const INSTALL: &str = "python3 -m pip install kubernetes-validate==1.37.0";
/// The oldest Kubernetes the manifests claim (docs/deployment.md: the
/// preStop `sleep` action is on by default from 1.30) and the newest the
/// validator knows.
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.37.0"];

fn manifests() -> Vec<PathBuf> {
    let files = yaml_files(&repository_path("deploy/kubernetes"));
    assert!(files.len() >= 6, "manifests missing: {files:?}");
    files
}

/// Every object in every manifest, with the file it came from.
fn objects() -> Vec<(PathBuf, Value)> {
    manifests()
        .into_iter()
        .flat_map(|path| {
            yaml_documents(&path)
                .into_iter()
                .map(move |object| (path.clone(), object))
        })
        .collect()
}

fn find<'a>(objects: &'a [(PathBuf, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, object)| object)
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn validator() -> Command {
    let mut command = Command::new("python3");
    command.args(["-m", VALIDATOR]);
    command
}

fn validator_version() -> String {
    let output = validator().arg("--version").output();
    match output {
        Ok(output) if output.status.success() => {
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        }
        Ok(output) => panic!(
            "{VALIDATOR} is not installed ({}); install it with:\n    {INSTALL}\n\
             (.ci/run and scripts/test do this when it is missing)",
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => panic!("python3 is missing ({error}); {VALIDATOR} needs it: {INSTALL}"),
    }
}

#[test]
fn every_kubernetes_manifest_validates_against_the_openapi_schemas() {
    let version = validator_version();
    assert!(
        version == VALIDATOR_VERSION,
        "{VALIDATOR} {version} found, the tests pin {VALIDATOR_VERSION}: {INSTALL}"
    );
    let files = manifests();
    let objects = objects();
    for kubernetes in KUBERNETES_VERSIONS {
        let output = validator()
            .args(["--strict", "--kubernetes-version", kubernetes])
            .args(&files)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "manifests invalid for Kubernetes {kubernetes}:\n{report}"
        );
        // An unknown kind is only a warning (exit 0): every object must
        // have passed against a schema, and nothing else may be said.
        let passed = report
            .lines()
            .filter(|line| line.starts_with("INFO ") && line.contains(" passed for resource "))
            .count();
        assert_eq!(
            passed,
            objects.len(),
            "not every object was checked against a schema for {kubernetes}:\n{report}"
        );
        assert!(
            report
                .lines()
                .all(|line| line.starts_with("INFO ") || line.trim().is_empty()),
            "{report}"
        );
    }
}

#[test]
fn kubernetes_validate_rejects_a_misspelt_field() {
    // The check above can fail: a field the schema does not know is an error.
    validator_version();
    let path = repository_path("deploy/kubernetes/deployment.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("replicas: 2", "replica: 2");
    let broken = std::env::temp_dir().join(format!("portico-k8s-{}.yaml", std::process::id()));
    std::fs::write(&broken, text).unwrap();
    let output = validator()
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSIONS[0]])
        .arg(&broken)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&broken);
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{report}");
    assert!(report.contains("'replica' was unexpected"), "{report}");
}

/// The container named `name` in a Deployment.
fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|container| container["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn container_port(container: &Value, name: &str) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["name"] == name)
        .and_then(|port| port["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name} in {container}"))
}

/// The port of a `host:port` address in the config.
fn toml_port(config: &toml::Table, section: &str, key: &str) -> u64 {
    let address = config[section][key].as_str().unwrap();
    address.rsplit(':').next().unwrap().parse().unwrap()
}

fn toml_text<'a>(config: &'a toml::Table, section: &str, key: &str) -> &'a str {
    config[section][key]
        .as_str()
        .unwrap_or_else(|| panic!("{section}.{key} missing"))
}

/// The files a portico pod sees, laid out in a scratch directory: the
/// ConfigMap's `portico.toml`, and the Secret's files with the volume's
/// mode and the pod's fsGroup as their group (when the tests run as root).
/// Checks on the way that the Deployment mounts them where the config and
/// the arguments look.
struct PodFiles {
    directory: PathBuf,
    config_path: PathBuf,
    config: toml::Table,
    /// `PORTICO_*_FILE` overrides pointing the `*_file` keys at the local
    /// copies (the pod's paths are not on this machine).
    environment: Vec<(&'static str, PathBuf)>,
    /// The pod's runAsUser, runAsGroup and fsGroup.
    user: u32,
    group: u32,
    fs_group: u32,
    /// The tests run as root: files get the pod's owners, and the process
    /// can drop to the pod's user.
    as_root: bool,
}

impl Drop for PodFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

impl PodFiles {
    fn lay_out(objects: &[(PathBuf, Value)], name: &str, client_secret: &str) -> PodFiles {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};

        let config_map = find(objects, "ConfigMap", "portico-config");
        let text = config_map["data"]["portico.toml"].as_str().unwrap();
        let config: toml::Table = text.parse().unwrap();
        let deployment = find(objects, "Deployment", "portico");
        let pod = &deployment["spec"]["template"]["spec"];
        let portico = container(deployment, "portico");
        let id = |key: &str| pod["securityContext"][key].as_u64().unwrap() as u32;

        let directory =
            std::env::temp_dir().join(format!("portico-k8s-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        let as_root = std::fs::metadata(&directory).unwrap().uid() == 0;

        // The config file is mounted where the arguments point.
        let args = portico["args"].as_array().unwrap();
        assert_eq!(args[0], "--config");
        let mounts = portico["volumeMounts"].as_array().unwrap();
        let volume = |name: &str| {
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|volume| volume["name"] == name)
                .unwrap_or_else(|| panic!("no volume {name}"))
        };
        let config_mount = mounts
            .iter()
            .find(|mount| mount["mountPath"] == args[1])
            .unwrap_or_else(|| panic!("nothing mounted at {}", args[1]));
        let config_volume = volume(config_mount["name"].as_str().unwrap());
        assert_eq!(config_volume["configMap"]["name"], "portico-config");
        assert_eq!(config_mount["subPath"], "portico.toml");
        let config_path = directory.join("portico.toml");
        std::fs::write(&config_path, text).unwrap();
        // A ConfigMap volume's default mode.
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644)).unwrap();

        // Each *_file secret lies in the mounted Secret under its own key.
        let secrets = volume("secrets");
        assert_eq!(secrets["secret"]["secretName"], "portico-secrets");
        let mode = secrets["secret"]["defaultMode"].as_u64().unwrap() as u32;
        assert_eq!(mode & 0o007, 0, "secrets are not for others");
        let secret_dir = mounts
            .iter()
            .find(|mount| mount["name"] == "secrets")
            .unwrap()["mountPath"]
            .as_str()
            .unwrap();
        let items = secrets["secret"]["items"].as_array().unwrap();
        let fs_group = id("fsGroup");
        let mut environment = Vec::new();
        for (section, key, variable, contents) in [
            (
                "session",
                "cookie_secret_file",
                "PORTICO_SESSION__COOKIE_SECRET_FILE",
                crate::support::COOKIE_SECRET,
            ),
            (
                "oidc",
                "client_secret_file",
                "PORTICO_OIDC__CLIENT_SECRET_FILE",
                client_secret,
            ),
        ] {
            let path = Path::new(toml_text(&config, section, key));
            assert_eq!(
                path.parent().unwrap(),
                Path::new(secret_dir),
                "{section}.{key}"
            );
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(
                items
                    .iter()
                    .any(|item| item["path"] == file && item["key"] == file),
                "the Secret volume has no {file}: {items:?}"
            );
            let local = directory.join(file);
            std::fs::write(&local, contents).unwrap();
            std::fs::set_permissions(&local, std::fs::Permissions::from_mode(mode)).unwrap();
            if as_root {
                std::os::unix::fs::chown(&local, Some(0), Some(fs_group)).unwrap();
            }
            environment.push((variable, local));
        }
        PodFiles {
            directory,
            config_path,
            config,
            environment,
            user: id("runAsUser"),
            group: id("runAsGroup"),
            fs_group,
            as_root,
        }
    }

    /// `portico` with the overrides, and nothing of the test's own
    /// `PORTICO_*` environment.
    fn command(&self, binary: &Path) -> Command {
        let mut command = if self.as_root {
            // The pod's user, group and fsGroup, as the kubelet sets them.
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", self.user))
                .arg(format!("--regid={}", self.group))
                .arg(format!("--groups={}", self.fs_group))
                .arg("--")
                .arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.env_clear().env("PATH", "/usr/bin:/bin");
        for (variable, path) in &self.environment {
            command.env(variable, path);
        }
        command
    }

    /// A copy of the binary the pod's user can run (the checkout may sit
    /// where that user cannot reach).
    fn binary(&self) -> PathBuf {
        let copy = self.directory.join("portico");
        let original = env!("CARGO_BIN_EXE_portico");
        if std::fs::hard_link(original, &copy).is_err() {
            std::fs::copy(original, &copy).unwrap();
        }
        copy
    }
}

#[test]
fn the_kubernetes_config_passes_portico_check_with_the_secret_files_it_mounts() {
    let objects = objects();
    let files = PodFiles::lay_out(&objects, "check", "a-client-secret");
    let output = files
        .command(&files.binary())
        .arg("check")
        .arg("--config")
        .arg(&files.config_path)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "portico check refused the ConfigMap's portico.toml:\n{errors}"
    );
    assert!(printed.contains("listen = \"0.0.0.0:4180\""), "{printed}");
    assert!(
        !printed.contains(crate::support::COOKIE_SECRET),
        "{printed}"
    );

    // Ports and probes agree with the config.
    let portico = container(find(&objects, "Deployment", "portico"), "portico");
    let http = container_port(portico, "http");
    let metrics = container_port(portico, "metrics");
    assert_eq!(http, toml_port(&files.config, "server", "listen"));
    assert_eq!(
        metrics,
        toml_port(&files.config, "server", "metrics_listen")
    );
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(portico[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(portico[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
}

/// GETs `url` until it answers 200 (20 s at most); panics with the logs.
async fn wait_for_ok(url: &str, child: &mut tokio::process::Child, logs: &Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if reqwest::get(url)
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            return;
        }
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && std::time::Instant::now() < deadline,
            "{url} never answered 200 (exit: {exited:?}):\n{}",
            std::fs::read_to_string(logs).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_kubernetes_pod_serves_its_probes_on_the_metrics_port_as_the_pod_user() {
    let op = portico::devop::DevOp::start(portico::devop::DevOpOptions {
        client_id: crate::support::CLIENT_ID.to_string(),
        client_secret: crate::support::app::CLIENT_SECRET.to_string(),
        ..Default::default()
    })
    .await
    .unwrap();
    let objects = objects();
    let files = PodFiles::lay_out(&objects, "pod", crate::support::app::CLIENT_SECRET);
    let binary = files.binary();
    let port = crate::support::redis::free_port();
    let metrics_port = crate::support::redis::free_port();
    let redis = crate::support::redis::shared();
    let logs = files.directory.join("portico.log");
    // Only what differs off-cluster is overridden: the addresses (loopback,
    // free ports), the provider and Redis.
    let mut command = files.command(&binary);
    command
        .arg("--config")
        .arg(&files.config_path)
        .env("PORTICO_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "PORTICO_SERVER__METRICS_LISTEN",
            format!("127.0.0.1:{metrics_port}"),
        )
        .env("PORTICO_OIDC__ISSUER", op.issuer())
        .env("PORTICO_OIDC__CLIENT_ID", crate::support::CLIENT_ID)
        .env(
            "PORTICO_SESSION__REDIS_URL",
            redis.url(redis.fresh_database()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&logs).unwrap())
        .stderr(std::fs::File::create(files.directory.join("stderr.log")).unwrap());
    let mut child = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let metrics_base = format!("http://127.0.0.1:{metrics_port}");
    wait_for_ok(&format!("{metrics_base}/readyz"), &mut child, &logs).await;
    wait_for_ok(&format!("{metrics_base}/healthz"), &mut child, &logs).await;
    let metrics = reqwest::get(format!("{metrics_base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("portico_ready 1"), "{metrics}");
    // The port the ingress reaches does not serve the metrics: /metrics
    // there is an application path like any other (a sign-in redirect).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let public = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), reqwest::StatusCode::FOUND);
    if files.as_root {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", child.id().unwrap())).unwrap();
        let uid_line = status
            .lines()
            .find(|line| line.starts_with("Uid:"))
            .unwrap();
        assert!(
            uid_line
                .split_whitespace()
                .skip(1)
                .all(|uid| uid == files.user.to_string()),
            "{uid_line}"
        );
    }
    // SIGTERM, as the kubelet sends after preStop: a clean exit.
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(std::time::Duration::from_secs(25), child.wait())
        .await
        .expect("portico did not stop within shutdown_timeout")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_kubernetes_pods_run_locked_down() {
    let objects = objects();
    let deployment = find(&objects, "Deployment", "portico");
    assert_eq!(deployment["spec"]["replicas"], 2);
    for (_, object) in objects
        .iter()
        .filter(|(_, object)| object["kind"] == "Deployment")
    {
        let name = &object["metadata"]["name"];
        let pod = &object["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{name}");
        for container in pod["containers"].as_array().unwrap() {
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
            assert!(
                container["resources"]["requests"]["memory"].is_string()
                    && container["resources"]["limits"]["memory"].is_string(),
                "{name}: resources"
            );
        }
    }
    let budget = find(&objects, "PodDisruptionBudget", "portico");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn the_ingress_nginx_example_asks_portico_through_its_service() {
    let objects = objects();
    let service = find(&objects, "Service", "portico");
    let http_port = service["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|port| port["name"] == "http")
        .unwrap()["port"]
        .as_u64()
        .unwrap();
    let namespace = service["metadata"]["namespace"].as_str().unwrap();
    let app = find(&objects, "Ingress", "app");
    let annotations = &app["metadata"]["annotations"];
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-url"],
        format!("http://portico.{namespace}.svc.cluster.local:{http_port}/oauth2/auth").as_str()
    );
    let config: toml::Table = find(&objects, "ConfigMap", "portico-config")["data"]["portico.toml"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let public_url = toml_text(&config, "server", "public_url");
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/auth-signin"],
        format!("{public_url}/oauth2/start?rd=$escaped_request_uri").as_str()
    );
    // The sign-in's own paths reach portico on the same host.
    let oauth2 = find(&objects, "Ingress", "portico-oauth2");
    let host = public_url.trim_start_matches("https://");
    let rule = &oauth2["spec"]["rules"][0];
    assert_eq!(rule["host"], host);
    assert_eq!(app["spec"]["rules"][0]["host"], host);
    assert_eq!(rule["http"]["paths"][0]["path"], "/oauth2");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "portico"
    );
    let headers = annotations["nginx.ingress.kubernetes.io/auth-proxy-set-headers"]
        .as_str()
        .unwrap();
    let (headers_namespace, headers_name) = headers.split_once('/').unwrap();
    let headers_map = find(&objects, "ConfigMap", headers_name);
    assert_eq!(headers_map["metadata"]["namespace"], headers_namespace);
    assert_eq!(app["metadata"]["namespace"], headers_namespace);
    assert_eq!(headers_map["data"]["X-Forwarded-Uri"], "$request_uri");
}

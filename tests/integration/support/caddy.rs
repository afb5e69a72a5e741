//! A real Caddy (Debian's package) started by a test with a Caddyfile it
//! writes into a temporary directory, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Caddy {
    child: Child,
    pub port: u16,
    directory: PathBuf,
}

impl Caddy {
    /// Starts Caddy on loopback `port` with `site` as the body of the
    /// `http://127.0.0.1:{port}` site block (no admin API, no automatic
    /// HTTPS). Fails the test under CI when Caddy is missing; elsewhere
    /// returns None so a developer without Caddy sees a notice.
    pub fn start_on(port: u16, site: &str) -> Option<Caddy> {
        let binary = ["/usr/bin/caddy", "/usr/local/bin/caddy"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "caddy is not installed; .ci/run installs it"
            );
            eprintln!("notice: caddy is not installed; skipping this Caddy test (CI runs it)");
            return None;
        };
        let directory =
            std::env::temp_dir().join(format!("portico-caddy-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let caddyfile = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {{\n\t\troot {dir}\n\t}}\n}}\n\nhttp://127.0.0.1:{port} {{\n{site}\n}}\n",
            dir = directory.join("data").display(),
        );
        let config_path = directory.join("Caddyfile");
        std::fs::write(&config_path, caddyfile).unwrap();
        let log = std::fs::File::create(directory.join("caddy.log")).unwrap();
        let child = Command::new(binary)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .arg("--adapter")
            .arg("caddyfile")
            // Caddy keeps state under $HOME / $XDG_*: keep it in the test's directory.
            .env("HOME", &directory)
            .env("XDG_DATA_HOME", directory.join("data"))
            .env("XDG_CONFIG_HOME", directory.join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("caddy starts");
        let mut caddy = Caddy {
            child,
            port,
            directory,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = caddy.child.try_wait().ok().flatten();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "caddy did not start ({exited:?}): {}",
                caddy.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(caddy)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// What Caddy wrote to stderr (its log), for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("caddy.log")).unwrap_or_default()
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

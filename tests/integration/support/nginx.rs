//! A real nginx (Debian's package) started by a test with its own config in
//! a temporary directory, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Nginx {
    child: Child,
    pub port: u16,
    directory: PathBuf,
}

impl Nginx {
    /// Starts nginx with `server_block` (an nginx `server { … }` body without
    /// the `listen` line). Fails the test under CI when nginx is missing;
    /// elsewhere returns None so a developer without nginx sees a notice.
    pub fn start(server_block: &str) -> Option<Nginx> {
        Self::start_on(super::redis::free_port(), server_block)
    }

    /// As `start`, on a port chosen by the caller.
    pub fn start_on(port: u16, server_block: &str) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|path| std::path::Path::new(path).exists());
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "nginx is not installed: `sudo apt-get install nginx` (scripts/test installs it)"
            );
            eprintln!(
                "SKIPPED an nginx test: nginx is not installed (`sudo apt-get install nginx`, or \
                 run scripts/test); with CI=true this is a failure"
            );
            return None;
        };
        let directory =
            std::env::temp_dir().join(format!("portico-nginx-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let dir = directory.display();
        let config = format!(
            r#"
daemon off;
master_process off;
worker_processes 1;
error_log {dir}/error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        {server_block}
    }}
}}
"#
        );
        let config_path = directory.join("nginx.conf");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(&directory)
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(directory.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            child,
            port,
            directory,
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

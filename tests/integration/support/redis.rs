//! Real redis-server processes for the tests.
//!
//! One shared server per test binary (each test app takes its own database
//! number), and dedicated servers for tests that stop Redis or count its
//! commands. Servers are started through a small shell wrapper that kills
//! Redis when the test process's end closes its stdin, so no server outlives
//! the tests even when a static is never dropped.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    next_database: AtomicU32,
}

impl RedisServer {
    pub fn spawn() -> RedisServer {
        let mut server = RedisServer {
            port: free_port(),
            child: None,
            next_database: AtomicU32::new(0),
        };
        server.start();
        server
    }

    /// (Re)starts redis-server on this server's port.
    pub fn start(&mut self) {
        super::programs::require("redis-server", "redis-server");
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --save '' --appendonly no \
             --databases 4096 --loglevel warning --enable-debug-command local >/dev/null 2>&1 & pid=$!; echo started; read _; kill $pid",
            port = self.port
        );
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("sh starts");
        if let Some(stdout) = child.stdout.take() {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if ping(self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Stops the server (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while ping(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Makes the server hang for `seconds` (DEBUG SLEEP, sent from another
    /// thread so the test's runtime keeps running meanwhile).
    pub fn hang_for(&self, seconds: u32) -> std::thread::JoinHandle<()> {
        let port = self.port;
        std::thread::spawn(move || {
            let _ = resp_command(port, &["DEBUG", "SLEEP", &seconds.to_string()]);
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self, database: u32) -> String {
        format!("redis://127.0.0.1:{}/{}", self.port, database)
    }

    /// A database number no other test app of this server uses.
    pub fn fresh_database(&self) -> u32 {
        self.next_database.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends one command with redis-cli-free RESP over TCP; returns the raw reply.
    pub fn command(&self, arguments: &[&str]) -> String {
        resp_command(self.port, arguments).unwrap_or_default()
    }

    /// Total calls of data commands since the last `reset_stats`, ignoring
    /// connection housekeeping and the statistics commands themselves.
    pub fn data_commands(&self) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        info.lines()
            .filter_map(|line| line.strip_prefix("cmdstat_"))
            .filter_map(|line| {
                let (name, rest) = line.split_once(':')?;
                let calls = rest
                    .split(',')
                    .find_map(|field| field.strip_prefix("calls="))?
                    .parse::<u64>()
                    .ok()?;
                Some((name.to_string(), calls))
            })
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "info"
                        | "config"
                        | "config|resetstat"
                        | "ping"
                        | "client"
                        | "client|setname"
                        | "client|setinfo"
                        | "hello"
                        | "select"
                        | "command"
                        | "command|docs"
                )
            })
            .map(|(_, calls)| calls)
            .sum()
    }

    /// Calls of one command (lower case, e.g. "get", "publish") since the
    /// last `reset_stats`.
    pub fn calls(&self, name: &str) -> u64 {
        let info = self.command(&["INFO", "commandstats"]);
        let prefix = format!("cmdstat_{name}:calls=");
        info.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .and_then(|rest| rest.split(',').next())
            .and_then(|calls| calls.parse().ok())
            .unwrap_or(0)
    }

    pub fn commands_by_name(&self) -> String {
        self.command(&["INFO", "commandstats"])
    }

    pub fn reset_stats(&self) {
        self.command(&["CONFIG", "RESETSTAT"]);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ping(port: u16) -> bool {
    resp_command(port, &["PING"]).is_some_and(|reply| reply.contains("PONG"))
}

/// One command over raw RESP to any port (a Redis server or a Sentinel).
pub fn resp_command(port: u16, arguments: &[&str]) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut request = format!("*{}\r\n", arguments.len());
    for argument in arguments {
        request.push_str(&format!("${}\r\n{}\r\n", argument.len(), argument));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buffer = [0u8; 65536];
    loop {
        let read = stream.read(&mut buffer).ok()?;
        reply.extend_from_slice(&buffer[..read]);
        if read == 0 || complete(&reply) {
            break;
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether a RESP reply is complete (simple, error, integer or bulk string;
/// arrays of bulk strings for KEYS).
fn complete(reply: &[u8]) -> bool {
    let text = String::from_utf8_lossy(reply);
    match text.chars().next() {
        Some('+') | Some('-') | Some(':') => text.ends_with("\r\n"),
        Some('$') => {
            let Some((header, rest)) = text.split_once("\r\n") else {
                return false;
            };
            let length: i64 = header[1..].parse().unwrap_or(0);
            length < 0 || rest.len() >= length as usize + 2
        }
        Some('*') => {
            let Some((header, rest)) = text.split_once("\r\n") else {
                return false;
            };
            let count: usize = header[1..].parse().unwrap_or(0);
            rest.matches("\r\n").count() >= count * 2
        }
        _ => false,
    }
}

/// The server shared by every test app of this binary.
pub fn shared() -> &'static RedisServer {
    static SHARED: OnceLock<RedisServer> = OnceLock::new();
    SHARED.get_or_init(RedisServer::spawn)
}

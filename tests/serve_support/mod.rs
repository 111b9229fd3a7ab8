//! Shared by the tests that run `examples/serve.rs` as a real process: find (and build) the
//! binary, start it on a free port, talk HTTP/1.1 to it, stop it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository root (for `models/digits`).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `serve` example binary, next to this test binary: `target/<profile>/examples/serve`.
///
/// `cargo test` builds examples, but `cargo test --test serve_http` does not, and a binary
/// left from an earlier build may be stale. So this asks cargo to build it (a no-op when it
/// is fresh) with the features this test was compiled with, into the same target directory,
/// and fails — never skips — if that does not produce it.
pub fn serve_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let bin = profile_dir
            .join("examples")
            .join(format!("serve{}", std::env::consts::EXE_SUFFIX));
        // Every feature this test was built with, so the example reuses the same build of
        // the library instead of compiling another one.
        let enabled = [
            ("onnx", cfg!(feature = "onnx")),
            ("serde", cfg!(feature = "serde")),
            ("journal", cfg!(feature = "journal")),
            ("quarantine", cfg!(feature = "quarantine")),
            ("watch", cfg!(feature = "watch")),
            ("metrics", cfg!(feature = "metrics")),
            ("tower", cfg!(feature = "tower")),
            ("cuda", cfg!(feature = "cuda")),
            ("tensorrt", cfg!(feature = "tensorrt")),
            ("openvino", cfg!(feature = "openvino")),
            ("coreml", cfg!(feature = "coreml")),
            ("directml", cfg!(feature = "directml")),
        ];
        let features: Vec<&str> = enabled
            .iter()
            .filter(|(_, on)| *on)
            .map(|(f, _)| *f)
            .collect();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "--example",
            "serve",
            "--no-default-features",
        ])
        .arg("--features")
        .arg(features.join(","))
        .arg("--manifest-path")
        .arg(repo_root().join("Cargo.toml"));
        match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => {}
            Some("release") => {
                cmd.arg("--release");
            }
            Some(other) => {
                cmd.args(["--profile", other]);
            }
            None => {}
        }
        if let Some(target_dir) = profile_dir.parent() {
            cmd.arg("--target-dir").arg(target_dir);
        }
        let status = cmd
            .status()
            .expect("running cargo to build the serve example");
        assert!(
            status.success(),
            "building the serve example failed ({status}); run `cargo build --example serve`"
        );
        assert!(
            bin.is_file(),
            "the serve example is missing at {} after building it",
            bin.display()
        );
        bin
    })
}

/// A running `serve` process; killed when dropped.
pub struct Server {
    pub addr: SocketAddr,
    /// Where `/admin` and `/metrics` are served with `--admin-port` (else `addr`).
    pub admin_addr: SocketAddr,
    child: Child,
    log: PathBuf,
    _logdir: tempfile::TempDir,
}

/// How to start a server.
#[derive(Default, Clone)]
pub struct Opts {
    pub args: Vec<String>,
    pub token: Option<String>,
}

impl Opts {
    pub fn args<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Opts {
            args: args.into_iter().map(Into::into).collect(),
            token: None,
        }
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }
}

impl Server {
    /// Starts `serve --port 0 <args>` from the repository root and waits for its
    /// `listening on` line (bounded).
    pub fn start(opts: Opts) -> Server {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("serve.log");
        let mut cmd = Command::new(serve_binary());
        cmd.current_dir(repo_root())
            .args(["--port", "0", "--workers", "2", "--poll-ms", "100"])
            .args(&opts.args)
            .env_remove("BLUEGREEN_ADMIN_TOKEN")
            .env_remove("BLUEGREEN_PORT")
            .env_remove("BLUEGREEN_HOST")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(t) = &opts.token {
            cmd.env("BLUEGREEN_ADMIN_TOKEN", t);
        }
        let mut child = cmd.spawn().expect("starting the serve example");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut admin = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("admin listening on http://") {
                    admin = Some(addr.trim().to_owned());
                } else if let Some(addr) = line.strip_prefix("listening on http://") {
                    let _ = tx.send((addr.trim().to_owned(), admin.take()));
                }
            }
        });
        let (addr, admin_addr) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((a, admin)) => {
                let a: SocketAddr = a.parse().expect("a socket address");
                (a, admin.map_or(a, |x| x.parse().expect("a socket address")))
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "serve did not print its address; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        Server {
            addr,
            admin_addr,
            child,
            log,
            _logdir: logdir,
        }
    }

    /// The process's log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = try_request(self.addr, "GET", "/readyz", &[], b"")
                && r.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "not ready in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (bounded) until the initial model is loaded and checked (ready or not).
    pub fn wait_started(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = try_request(self.addr, "GET", "/readyz", &[], b"")
                && !r.text.contains("loading the initial model")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "did not start in time; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, &[], b"")
    }

    pub fn post(&self, path: &str, body: &str) -> Reply {
        self.request("POST", path, &[], body.as_bytes())
    }

    /// An admin call on model `digits` with `Authorization: Bearer <token>`.
    pub fn admin(&self, method: &str, op: &str, token: &str, body: &str) -> Reply {
        self.admin_model("digits", method, op, token, body)
    }

    /// An admin call on `model` with `Authorization: Bearer <token>`.
    pub fn admin_model(
        &self,
        model: &str,
        method: &str,
        op: &str,
        token: &str,
        body: &str,
    ) -> Reply {
        let auth = format!("Bearer {token}");
        let path = format!("/admin/models/{model}/{op}");
        try_request(
            self.admin_addr,
            method,
            &path,
            &[("Authorization", auth.as_str())],
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{method} {path} failed: {e}; server log:\n{}", self.log()))
    }

    /// The process id of the service.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The service's resident memory now, in KiB (`VmRSS` in /proc/<pid>/status).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_else(|e| panic!("reading the service's /proc status: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"))
    }

    /// `/metrics` (on the admin listener with `--admin-port`).
    pub fn metrics(&self) -> String {
        try_request(self.admin_addr, "GET", "/metrics", &[], b"")
            .unwrap_or_else(|e| panic!("GET /metrics failed: {e}; server log:\n{}", self.log()))
            .text
    }

    /// The value of one Prometheus series (`name{labels}` exactly as exported), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        try_request(self.addr, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}; server log:\n{}", self.log()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), bounded by timeouts.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(Reply {
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| std::io::Error::other("bad chunk"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| std::io::Error::other("bad chunk size"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&data[..size.min(data.len())]);
        data = &data[(size + 2).min(data.len())..];
    }
}

/// The first `n` golden rows as a predict body, and what model v2 answers for them
/// (`label_v2` in golden.npz).
pub fn golden_request(n: usize) -> (String, Vec<i64>) {
    let path = repo_root().join("models/digits/golden.npz");
    let golden = bluegreen::GoldenSet::npz(&path)
        .inputs("inputs")
        .labels("label_v2")
        .load()
        .unwrap();
    let rows: Vec<Vec<f32>> = golden
        .inputs()
        .outer_iter()
        .take(n)
        .map(|r| r.to_vec())
        .collect();
    let labels = golden.labels().unwrap().iter().take(n).copied().collect();
    (serde_json::json!({ "inputs": rows }).to_string(), labels)
}

/// Polls `f` (bounded) until it returns `Some`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

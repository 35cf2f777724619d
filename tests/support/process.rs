//! The real `strangler` binary as a child process: config files in the temp
//! dir, one-shot runs (`check`, `explain`) read to the end, long-running
//! proxies whose output is read line by line as it comes (their address
//! learnt from the "listening" log line, signals sent with `kill`, exits
//! awaited with a timeout, killed on drop), and the resident memory of a
//! running child.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

/// Safety net for a child to start, print a line, or exit.
pub const WAIT: Duration = Duration::from_secs(10);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_strangler");

/// The demo config the project ships (`config/demo.toml`).
pub const DEMO_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml");

// ---------------------------------------------------------------------------
// Config files

/// A config file under the temp dir, removed on drop.
pub struct TempConfig {
    path: PathBuf,
}

impl TempConfig {
    /// Writes `text` to a fresh file whose name contains `name`.
    pub fn new(name: &str, text: &str) -> TempConfig {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "strangler-test-{}-{}-{name}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).expect("write temp config");
        TempConfig { path }
    }

    /// The file's path, as the command line takes it.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

// ---------------------------------------------------------------------------
// One-shot runs

/// The binary with a clean environment for logging and config: no
/// `RUST_LOG`, no `STRANGLER_CONFIG`, no colors, no stdin.
pub fn strangler() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RUST_LOG")
        .env_remove("STRANGLER_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    c
}

/// A finished run; its `Display` is the whole transcript, for assertion
/// messages.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `strangler ARGS` to the end.
pub fn run(args: &[&str]) -> Out {
    let o = strangler().args(args).output().expect("run strangler");
    Out {
        code: o.status.code(),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A parsed `FILE:LINE:COL: message` line, as `check` reports config errors.
#[derive(Debug)]
pub struct Diag {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Parses every stderr line as `{file}:LINE:COL: message`; panics on any
/// other line.
pub fn diags(file: &str, stderr: &str) -> Vec<Diag> {
    stderr
        .lines()
        .map(|l| {
            let parse = || {
                let rest = l.strip_prefix(file)?.strip_prefix(':')?;
                let (line, rest) = rest.split_once(':')?;
                let (col, message) = rest.split_once(": ")?;
                Some(Diag {
                    line: line.parse().ok()?,
                    col: col.parse().ok()?,
                    message: message.to_owned(),
                })
            };
            parse().unwrap_or_else(|| panic!("not `{file}:LINE:COL: message`: {l:?}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Running proxies

/// Removes ANSI escape sequences (colored log output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('\x40'..='\x7e').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Forwards the lines of `r`, ANSI escapes removed, until it ends.
fn pump(r: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(r).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if tx.send(strip_ansi(&line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// The address in a "listening" log line, pretty or JSON (not "admin listening").
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
        return (v["message"] == "listening")
            .then(|| v["addr"].as_str()?.parse().ok())
            .flatten();
    }
    let rest = line.split(": listening ").nth(1)?;
    rest.split_whitespace()
        .find_map(|t| t.strip_prefix("addr="))?
        .parse()
        .ok()
}

/// The binary running as a child (killed on drop), its stdout and stderr
/// read line by line as they come.
pub struct ProxyProcess {
    child: tokio::process::Child,
    out: mpsc::UnboundedReceiver<String>,
    err: mpsc::UnboundedReceiver<String>,
    /// Every line read so far: ("out" | "err", line).
    seen: Vec<(&'static str, String)>,
    /// The proxy's address, once [`ProxyProcess::listening`] has seen it.
    addr: Option<SocketAddr>,
    /// The config it runs with, when [`ProxyProcess::start`] wrote it.
    _config: Option<TempConfig>,
}

impl ProxyProcess {
    /// `strangler run --config CONFIG --log-format json` at info level.
    pub fn json_logs(config: &std::path::Path) -> ProxyProcess {
        let mut cmd = strangler();
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info");
        ProxyProcess::spawn(cmd)
    }

    /// Spawns `cmd` (built with [`strangler`]) with its output piped.
    pub fn spawn(mut cmd: Command) -> ProxyProcess {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut cmd = tokio::process::Command::from(cmd);
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn strangler");
        let out = pump(child.stdout.take().unwrap());
        let err = pump(child.stderr.take().unwrap());
        ProxyProcess {
            child,
            out,
            err,
            seen: Vec::new(),
            addr: None,
            _config: None,
        }
    }

    /// Runs `strangler run` with JSON logs at `info` and the config
    /// `[server]\nlisten = "127.0.0.1:0"\n{toml}` (so `toml` may start with
    /// more `[server]` settings), and waits until it listens.
    pub async fn start(toml: &str) -> ProxyProcess {
        let config = TempConfig::new(
            "proxy",
            &format!("[server]\nlisten = \"127.0.0.1:0\"\n{toml}"),
        );
        let mut cmd = strangler();
        cmd.args(["run", "--config", config.path(), "--log-format", "json"])
            .env("RUST_LOG", "info");
        let mut p = ProxyProcess::spawn(cmd);
        p._config = Some(config);
        p.listening().await;
        p
    }

    /// The proxy's listening address; panics before it is known.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the proxy's address is not known yet")
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// The child's process id; panics once it has been reaped.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("child still running")
    }

    /// Every line read so far, marked `[out]` or `[err]`, for panic messages.
    pub fn transcript(&self) -> String {
        self.seen
            .iter()
            .map(|(w, l)| format!("[{w}] {l}\n"))
            .collect()
    }

    /// Waits (up to [`WAIT`]) for a line on stdout (`stdout = true`) or
    /// stderr matching `pred`; panics with the transcript if none comes.
    pub async fn line(&mut self, stdout: bool, pred: impl Fn(&str) -> bool) -> String {
        let fut = async {
            loop {
                let (which, rx) = if stdout {
                    ("out", &mut self.out)
                } else {
                    ("err", &mut self.err)
                };
                match rx.recv().await {
                    Some(l) => {
                        self.seen.push((which, l.clone()));
                        if pred(&l) {
                            return Some(l);
                        }
                    }
                    None => return None,
                }
            }
        };
        match tokio::time::timeout(WAIT, fut).await {
            Ok(Some(l)) => l,
            Ok(None) => panic!("output ended first; so far:\n{}", self.transcript()),
            Err(_) => panic!(
                "no such line within {WAIT:?}; so far:\n{}",
                self.transcript()
            ),
        }
    }

    /// Waits (up to [`WAIT`]) for a JSON log object on stderr matching `pred`.
    pub async fn log_line(
        &mut self,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let json = |l: &str| serde_json::from_str::<serde_json::Value>(l).ok();
        let line = self
            .line(false, |l| json(l).is_some_and(|v| pred(&v)))
            .await;
        json(&line).unwrap()
    }

    /// The proxy's listening address, from its "listening" log line.
    pub async fn listening(&mut self) -> SocketAddr {
        let line = self.line(false, |l| listening_addr(l).is_some()).await;
        let addr = listening_addr(&line).unwrap();
        self.addr = Some(addr);
        addr
    }

    /// Sends `SIG` with `kill -SIG PID`.
    pub fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Whether the child has not exited yet.
    pub fn still_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits (up to [`WAIT`]) for the child to exit; then reads the rest of
    /// its output.
    pub async fn exit(&mut self) -> ExitStatus {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(s) => s.expect("wait"),
            Err(_) => {
                self.drain_ready();
                panic!(
                    "strangler did not exit within {WAIT:?}; output:\n{}",
                    self.transcript()
                )
            }
        };
        while let Ok(Some(l)) = tokio::time::timeout(WAIT, self.out.recv()).await {
            self.seen.push(("out", l));
        }
        while let Ok(Some(l)) = tokio::time::timeout(WAIT, self.err.recv()).await {
            self.seen.push(("err", l));
        }
        status
    }

    /// Moves the lines already read into `seen`, without waiting.
    fn drain_ready(&mut self) {
        while let Ok(l) = self.out.try_recv() {
            self.seen.push(("out", l));
        }
        while let Ok(l) = self.err.try_recv() {
            self.seen.push(("err", l));
        }
    }

    /// The stderr lines read so far.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.seen
            .iter()
            .filter(|(w, _)| *w == "err")
            .map(|(_, l)| l.as_str())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Memory

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples a process's VmRSS every few ms on its own thread, keeping the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
    pid: u32,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(3));
                }
            })
        };
        RssSampler {
            stop,
            peak,
            thread: Some(thread),
            pid,
        }
    }

    /// Stops sampling; returns the peak in KiB.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(kib) = rss_kib(self.pid) {
            self.peak.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

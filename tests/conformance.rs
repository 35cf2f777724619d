//! The conformance suite against the real binary: `tests/conformance/suite.py`
//! puts strangler between real third-party software (curl, h2load, headless
//! Chromium, the Python `websockets` and `h2` packages; httpbin under
//! gunicorn, a Node `http` server, a `websockets` server) and checks SPEC
//! sections 3.1-3.4 on what they see. Its output (`PASS name` /
//! `FAIL name: reason` lines) is streamed as it comes; the test fails if any
//! check fails.
//!
//! The suite needs Python packages and Debian tools that
//! `tests/conformance/setup.sh` installs. Without them the test is skipped
//! with a note, except under CI, where it fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SUITE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/suite.py");
const BIN: &str = env!("CARGO_BIN_EXE_strangler");

/// Far beyond the suite's own ~2 minutes; each check has a watchdog too.
const DEADLINE: Duration = Duration::from_secs(600);

/// What the suite says is missing (`--check-deps`), or `None`.
fn missing_deps() -> Option<String> {
    match Command::new("python3")
        .args([SUITE, "--check-deps"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) => Some(format!("python3 could not be run ({e})")),
        Ok(o) if o.status.success() => None,
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            Some(text.trim().replace('\n', "; "))
        }
    }
}

/// Copies `from` line by line to this process's stderr as it arrives
/// (written directly, so the test harness does not hold it back) and keeps
/// the `FAIL` lines.
fn forward(
    from: impl Read + Send + 'static,
    fails: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(std::io::stderr(), "{line}");
            if line.starts_with("FAIL ") {
                fails.lock().unwrap().push(line);
            }
        }
    })
}

#[test]
fn strangler_passes_the_conformance_suite() {
    if let Some(missing) = missing_deps() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the conformance suite's tools are missing and CI is set: run tests/conformance/setup.sh \
             (as root) first. {missing}"
        );
        eprintln!(
            "note: the conformance suite is skipped, its tools are missing ({missing}); \
             run tests/conformance/setup.sh (as root)"
        );
        return;
    }

    let mut child = Command::new("python3")
        .args([SUITE, "--strangler", BIN])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python3 tests/conformance/suite.py");
    let fails = Arc::new(Mutex::new(Vec::new()));
    let out = forward(child.stdout.take().unwrap(), fails.clone());
    let err = forward(child.stderr.take().unwrap(), fails.clone());

    // The suite's end, or the deadline: a thread waits on the child.
    let pid = child.id();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done_rx.recv_timeout(DEADLINE) {
        Ok(status) => status.expect("wait for the suite"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("the conformance suite did not finish within {DEADLINE:?}");
        }
    };
    waiter.join().unwrap();
    out.join().unwrap();
    err.join().unwrap();

    let fails = fails.lock().unwrap();
    assert!(
        status.success(),
        "the conformance suite failed ({status}), {} check(s):\n{}",
        fails.len(),
        fails.join("\n")
    );
}

//! Live configuration (SPEC 3.5) on the real binary: SIGHUP and the file
//! watcher reload the file; a bad file keeps the old config and logs where
//! it is wrong; `strangler shift` on a watched file moves traffic; and
//! continuous keep-alive traffic through many reloads gets every answer.
//!
//! The SIGHUP tests must see SIGHUP do the reload, not the watcher. So the
//! file the proxy reads is a hard link to one in another directory, and the
//! test writes through that other name: the same file changes, but nothing
//! happens in the watched directory, so only the signal reloads it.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use support::process::{ProxyProcess, WAIT, strangler};
use support::{Server, backend, get, h1};

/// A directory for one test's config files, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "strangler-reload-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(d.join("watched")).unwrap();
        std::fs::create_dir_all(d.join("elsewhere")).unwrap();
        Dir(d)
    }

    /// The path the proxy is given.
    fn config(&self) -> PathBuf {
        self.0.join("watched").join("strangler.toml")
    }

    /// The same file, reached from a directory nobody watches.
    fn unwatched(&self) -> PathBuf {
        self.0.join("elsewhere").join("strangler.toml")
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Upstreams `a` and `b`; unmatched requests go to `to`, `/other` to the
/// other one (so both are always used and no warning is logged).
fn config(a: &Server, b: &Server, to: &str) -> String {
    let other = if to == "a" { "b" } else { "a" };
    format!(
        r#"[server]
listen = "127.0.0.1:0"

[upstreams.a]
targets = ["{}"]

[upstreams.b]
targets = ["{}"]

[default]
upstream = "{to}"

[[routes]]
name = "other"
prefix = "/other"
upstream = "{other}"
"#,
        a.url(),
        b.url()
    )
}

/// The lines a reload from the other side to `to` logs.
fn switch_lines(to: &str) -> [String; 2] {
    let from = if to == "a" { "b" } else { "a" };
    [
        format!("config change: [default]: upstream {from} -> {to}"),
        format!("config change: route \"other\": upstream {to} -> {from}"),
    ]
}

/// Starts `strangler run` on `dir`'s config (already written), JSON logs.
async fn start(dir: &Dir) -> ProxyProcess {
    let mut cmd = strangler();
    cmd.arg("run")
        .arg("--config")
        .arg(dir.config())
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info");
    let mut p = ProxyProcess::spawn(cmd);
    p.listening().await;
    p
}

/// Writes `text` as the config, linked so that writes through
/// [`Dir::unwatched`] change it without the watcher seeing.
fn write_linked(dir: &Dir, text: &str) {
    std::fs::write(dir.unwatched(), text).unwrap();
    std::fs::hard_link(dir.unwatched(), dir.config()).unwrap();
}

fn message(v: &Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// Waits for the end of a reload set off by `trigger` (`SIGHUP`, `file`).
async fn reloaded(p: &mut ProxyProcess, trigger: &str) -> Value {
    p.log_line(|v| {
        v["trigger"] == trigger
            && (message(v).starts_with("config reloaded")
                || message(v).starts_with("config not reloaded"))
    })
    .await
}

/// The messages of the log lines with `trigger` seen so far.
fn messages(p: &ProxyProcess, trigger: &str) -> Vec<String> {
    p.stderr_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["trigger"] == trigger)
        .map(|v| message(&v).to_owned())
        .collect()
}

async fn served_by(p: &ProxyProcess, path: &str) -> String {
    let a = get(&p.url(path)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.header("x-served-by").unwrap_or("?").to_owned()
}

#[tokio::test]
async fn sighup_reloads_the_file_and_logs_what_changed() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = Dir::new("sighup");
    write_linked(&dir, &config(&a, &b, "a"));
    let mut p = start(&dir).await;
    assert_eq!(served_by(&p, "/x").await, "a");
    assert_eq!(served_by(&p, "/other").await, "b");

    std::fs::write(dir.unwatched(), config(&a, &b, "b")).unwrap();
    p.signal("HUP");
    let done = reloaded(&mut p, "SIGHUP").await;
    assert_eq!(message(&done), "config reloaded", "{}", p.transcript());
    assert_eq!(done["changes"], 2);
    assert_eq!(done["level"], "INFO");
    assert_eq!(
        messages(&p, "SIGHUP"),
        [
            switch_lines("b")[0].as_str(),
            &switch_lines("b")[1],
            "config reloaded"
        ]
    );
    assert_eq!(served_by(&p, "/x").await, "b");
    assert_eq!(served_by(&p, "/other").await, "a");

    // The same file again: a reload that says nothing changed.
    p.signal("HUP");
    let same = reloaded(&mut p, "SIGHUP").await;
    assert_eq!(message(&same), "config reloaded: nothing changed");
    assert_eq!(same["changes"], 0);
    assert!(p.still_running());
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_config_and_logs_every_error_with_its_place() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = Dir::new("bad");
    let good = config(&a, &b, "a");
    write_linked(&dir, &good);
    let mut p = start(&dir).await;

    // Two mistakes: an unknown upstream (line 11, column 12) and a typo'd key.
    let bad = good
        .replace("upstream = \"a\"", "upstream = \"c\"")
        .replace("prefix = \"/other\"", "prefx = \"/other\"");
    std::fs::write(dir.unwatched(), &bad).unwrap();
    p.signal("HUP");
    let done = reloaded(&mut p, "SIGHUP").await;
    assert_eq!(
        message(&done),
        "config not reloaded: the current config keeps serving",
        "{}",
        p.transcript()
    );
    assert_eq!(done["errors"], 3, "{}", p.transcript());
    let file = dir.config().display().to_string();
    let errors: Vec<String> = messages(&p, "SIGHUP")
        .into_iter()
        .filter(|m| m.starts_with("config reload failed: "))
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "config reload failed: {file}:11:12: [default]: unknown upstream \"c\""
        )),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(
            |e| e.starts_with(&format!("config reload failed: {file}:15:1: route"))
                && e.contains("unknown key `prefx`")
        ),
        "{errors:?}"
    );
    // Nothing changed.
    assert_eq!(served_by(&p, "/x").await, "a");
    assert_eq!(served_by(&p, "/other").await, "b");

    // Fixed, it loads.
    std::fs::write(dir.unwatched(), config(&a, &b, "b")).unwrap();
    p.signal("HUP");
    let done = reloaded(&mut p, "SIGHUP").await;
    assert_eq!(message(&done), "config reloaded", "{}", p.transcript());
    assert_eq!(served_by(&p, "/x").await, "b");
}

/// Waits for a file-triggered reload that switched the default to `to`.
async fn watcher_switched_to(p: &mut ProxyProcess, to: &str) {
    let want = switch_lines(to)[0].clone();
    p.log_line(|v| v["trigger"] == "file" && message(v) == want)
        .await;
    let done = reloaded(p, "file").await;
    assert_eq!(message(&done), "config reloaded", "{}", p.transcript());
}

#[tokio::test]
async fn the_watcher_reloads_a_file_written_in_place() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = Dir::new("in-place");
    std::fs::write(dir.config(), config(&a, &b, "a")).unwrap();
    let mut p = start(&dir).await;
    assert_eq!(served_by(&p, "/x").await, "a");

    // Truncate, then write in pieces, as an editor saving in place may.
    {
        use std::io::Write as _;
        let text = config(&a, &b, "b");
        let (first, rest) = text.split_at(text.len() / 2);
        let mut f = std::fs::File::create(dir.config()).unwrap();
        f.write_all(first.as_bytes()).unwrap();
        f.flush().unwrap();
        f.write_all(rest.as_bytes()).unwrap();
    }
    watcher_switched_to(&mut p, "b").await;
    assert_eq!(served_by(&p, "/x").await, "b");
}

#[tokio::test]
async fn the_watcher_reloads_a_file_replaced_by_rename() {
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = Dir::new("rename");
    std::fs::write(dir.config(), config(&a, &b, "a")).unwrap();
    let mut p = start(&dir).await;

    // Write a temporary file beside it and rename it over (most editors,
    // `strangler shift`, configuration management tools).
    let tmp = dir.0.join("watched").join(".strangler.toml.tmp");
    std::fs::write(&tmp, config(&a, &b, "b")).unwrap();
    std::fs::rename(&tmp, dir.config()).unwrap();
    watcher_switched_to(&mut p, "b").await;
    assert_eq!(served_by(&p, "/x").await, "b");

    // Move the old file away, then write a new one (vim's default): the
    // file is missing for a moment, which must not matter.
    let backup = dir.0.join("watched").join("strangler.toml~");
    std::fs::rename(dir.config(), &backup).unwrap();
    std::fs::write(dir.config(), config(&a, &b, "a")).unwrap();
    std::fs::remove_file(&backup).unwrap();
    watcher_switched_to(&mut p, "a").await;
    assert_eq!(served_by(&p, "/x").await, "a");
}

#[tokio::test]
async fn strangler_shift_on_a_watched_file_moves_the_traffic() {
    let (legacy, new) = (backend("legacy").await, backend("customers").await);
    let dir = Dir::new("shift");
    let text = format!(
        r#"[server]
listen = "127.0.0.1:0"   # any port

[upstreams.legacy]
targets = ["{}"]

[upstreams.customers]
targets = ["{}"]

# Step by step.
[[routes]]
name = "customers"
prefix = "/api/customers"
upstream = "legacy"
shift = {{ to = "customers", percent = 0 }}   # not yet
"#,
        legacy.url(),
        new.url()
    );
    std::fs::write(dir.config(), &text).unwrap();
    let mut p = start(&dir).await;
    assert_eq!(served_by(&p, "/api/customers/1").await, "legacy");

    let out = strangler()
        .arg("shift")
        .arg("--config")
        .arg(dir.config())
        .args(["customers", "100"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    p.log_line(|v| {
        v["trigger"] == "file"
            && message(v) == "config change: route \"customers\": shift.percent 0 -> 100"
    })
    .await;
    reloaded(&mut p, "file").await;
    for _ in 0..5 {
        assert_eq!(served_by(&p, "/api/customers/1").await, "customers");
    }
    assert_eq!(
        std::fs::read_to_string(dir.config()).unwrap(),
        text.replace("percent = 0 }", "percent = 100 }")
    );
}

// ---------------------------------------------------------------------------
// Zero drops

/// Answers seen by the clients, by who served them, and every failure.
#[derive(Default)]
struct Tally {
    a: AtomicU64,
    b: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tally {
    fn served(&self, by: &str) -> u64 {
        match by {
            "a" => self.a.load(Ordering::SeqCst),
            _ => self.b.load(Ordering::SeqCst),
        }
    }
}

/// One keep-alive HTTP/1.1 client sending `path` until `stop`, counting.
async fn client_loop(url: String, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let client = h1();
    while !stop.load(Ordering::SeqCst) {
        let req = Request::get(url.as_str())
            .body(Full::<Bytes>::default())
            .unwrap();
        let outcome = tokio::time::timeout(WAIT, async {
            let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
            let status = resp.status();
            let by = resp
                .headers()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e:?}"))?;
            Ok::<_, String>((status, by, body.to_bytes()))
        })
        .await
        .unwrap_or_else(|_| Err("timed out".into()));
        match outcome {
            Ok((status, by, _)) if status == 200 && (by == "a" || by == "b") => {
                let n = if by == "a" { &tally.a } else { &tally.b };
                n.fetch_add(1, Ordering::SeqCst);
            }
            Ok((status, by, body)) => tally.failures.lock().unwrap().push(format!(
                "{url}: {status} from {by:?}: {}",
                String::from_utf8_lossy(&body)
            )),
            Err(e) => tally.failures.lock().unwrap().push(format!("{url}: {e}")),
        }
    }
}

/// Waits until `by` has served at least `n` answers.
async fn until_served(tally: &Tally, by: &str, n: u64) {
    let fut = async {
        while tally.served(by) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("no answer from {by} after the reload"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reloads_under_keep_alive_load_fail_drop_or_reset_nothing() {
    const RELOADS: usize = 24;
    let (a, b) = (backend("a").await, backend("b").await);
    let dir = Dir::new("zero-drop");
    write_linked(&dir, &config(&a, &b, "a"));
    let mut p = start(&dir).await;

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    // Quick requests, and slow ones that are in flight across reloads.
    let paths = ["/x", "/x", "/x", "/x", "/x", "/x", "/delay/20", "/delay/50"];
    let clients: Vec<_> = paths
        .iter()
        .map(|path| tokio::spawn(client_loop(p.url(path), stop.clone(), tally.clone())))
        .collect();
    until_served(&tally, "a", 1).await;

    for i in 0..RELOADS {
        let to = if i % 2 == 0 { "b" } else { "a" };
        std::fs::write(dir.unwatched(), config(&a, &b, to)).unwrap();
        let before = tally.served(to);
        p.signal("HUP");
        let done = reloaded(&mut p, "SIGHUP").await;
        assert_eq!(message(&done), "config reloaded", "{}", p.transcript());
        assert_eq!(done["changes"], 2, "reload {i}: {}", p.transcript());
        // The clients' traffic goes on, now to the other side, for a while
        // before the next reload.
        until_served(&tally, to, before + 20).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests, e.g. {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        p.transcript()
    );
    let (served_a, served_b) = (tally.served("a"), tally.served("b"));
    let reloads = messages(&p, "SIGHUP")
        .iter()
        .filter(|m| *m == "config reloaded")
        .count();
    assert_eq!(reloads, RELOADS);
    // Every answer the clients got is one a backend sent.
    assert_eq!(served_a, a.requests(), "answers from a vs requests a saw");
    assert_eq!(served_b, b.requests(), "answers from b vs requests b saw");
    eprintln!("{RELOADS} reloads, {served_a} answers from a, {served_b} from b, no failures");
    assert!(p.still_running());
}

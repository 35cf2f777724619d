use std::time::Duration;

use super::*;
use crate::config::{Config, SourceFile};
use crate::shift::Side;

// === verdict ===

fn ramp() -> Ramp {
    Ramp {
        step_basis_points: 1000,
        every: Duration::from_secs(10),
        max_error_rate: 0.01,
        max_latency_ratio: 2.0,
        min_requests: 100,
        max_mismatch_rate: 0.02,
    }
}

fn side(requests: u64, failures: u64, p99_ms: u64) -> Summary {
    Summary {
        requests,
        failures,
        p99: (requests > 0).then(|| Duration::from_millis(p99_ms)),
    }
}

fn breach(v: Verdict) -> String {
    match v {
        Verdict::Breach(reason) => reason,
        other => panic!("expected a breach, got {other:?}"),
    }
}

#[test]
fn too_few_new_requests_hold_and_say_so() {
    let v = verdict(&ramp(), side(500, 0, 10), side(99, 50, 900), Some(1.0));
    assert_eq!(
        v,
        Verdict::Hold(
            "new side served 99 requests, fewer than min_requests 100: no verdict".into()
        ),
        "no verdict at all, however bad the few requests were"
    );
    assert_eq!(
        verdict(&ramp(), side(500, 0, 10), side(100, 0, 10), None),
        Verdict::Step,
        "exactly min_requests is judged"
    );
}

#[test]
fn error_rate_at_the_limit_steps_and_above_it_breaches() {
    let r = ramp();
    assert_eq!(
        verdict(&r, side(900, 0, 10), side(1000, 10, 10), None),
        Verdict::Step,
        "1% is at most max_error_rate 1%"
    );
    assert_eq!(
        breach(verdict(&r, side(900, 0, 10), side(1000, 42, 10), None)),
        "new side error rate 4.2% over max_error_rate 1% (42 of 1000 requests)"
    );
    let strict = Ramp {
        max_error_rate: 0.0,
        ..ramp()
    };
    assert_eq!(
        breach(verdict(&strict, side(0, 0, 0), side(300, 1, 10), None)),
        "new side error rate 0.33% over max_error_rate 0% (1 of 300 requests)"
    );
}

#[test]
fn latency_is_judged_against_the_old_side() {
    let r = ramp();
    assert_eq!(
        verdict(&r, side(100, 0, 100), side(100, 0, 200), None),
        Verdict::Step,
        "twice the old p99 is at most max_latency_ratio 2"
    );
    assert_eq!(
        breach(verdict(&r, side(100, 0, 100), side(100, 0, 250), None)),
        "new side p99 250ms over max_latency_ratio 2 × old side p99 100ms (= 200ms)"
    );
    let loose = Ramp {
        max_latency_ratio: 1.5,
        ..ramp()
    };
    assert_eq!(
        breach(verdict(&loose, side(100, 0, 800), side(100, 0, 1500), None)),
        "new side p99 1.5s over max_latency_ratio 1.5 × old side p99 800ms (= 1.2s)"
    );
}

#[test]
fn without_old_traffic_latency_is_not_judged_but_errors_are() {
    let r = ramp();
    assert_eq!(
        verdict(&r, side(0, 0, 0), side(100, 0, 60_000), None),
        Verdict::Step
    );
    assert!(
        breach(verdict(&r, side(0, 0, 0), side(100, 5, 60_000), None))
            .starts_with("new side error rate 5%")
    );
}

#[test]
fn mismatches_are_judged_once_the_route_shadows() {
    let r = ramp();
    let (old, new) = (side(100, 0, 10), side(100, 0, 10));
    assert_eq!(
        verdict(&r, old, new, None),
        Verdict::Step,
        "no shadow: no check"
    );
    assert_eq!(verdict(&r, old, new, Some(0.02)), Verdict::Step);
    assert_eq!(
        breach(verdict(&r, old, new, Some(0.031))),
        "shadow mismatch rate 3.1% over max_mismatch_rate 2%"
    );
}

#[test]
fn every_limit_passed_is_named() {
    let reason = breach(verdict(
        &ramp(),
        side(100, 0, 10),
        side(200, 20, 100),
        Some(0.5),
    ));
    let parts: Vec<&str> = reason.split("; ").collect();
    assert_eq!(parts.len(), 3, "{reason}");
    assert!(parts[0].starts_with("new side error rate 10%"), "{reason}");
    assert!(parts[1].starts_with("new side p99 100ms"), "{reason}");
    assert!(parts[2].starts_with("shadow mismatch rate 50%"), "{reason}");
}

#[test]
fn numbers_read_well() {
    assert_eq!(pct(0.01), "1%");
    assert_eq!(pct(0.042), "4.2%");
    assert_eq!(pct(1.0 / 3.0), "33.33%");
    assert_eq!(pct(0.0), "0%");
    assert_eq!(latency(Duration::from_micros(850)), "850µs");
    assert_eq!(latency(Duration::from_micros(12_345)), "12.3ms");
    assert_eq!(latency(Duration::from_millis(200)), "200ms");
    assert_eq!(latency(Duration::from_millis(1250)), "1.25s");
    assert_eq!(latency(Duration::from_secs(3)), "3s");
}

// === the driver, on tokio's paused clock ===

/// One route `customers` on `legacy`, shifting to `customers` with `shift`;
/// `extra` is appended (more routes).
fn config(shift: &str, extra: &str) -> Config {
    let text = format!(
        "[upstreams.legacy]\ntargets = [\"http://127.0.0.1:1\"]\n\
         [upstreams.customers]\ntargets = [\"http://127.0.0.1:2\"]\n\
         [[routes]]\nname = \"customers\"\nprefix = \"/c\"\nupstream = \"legacy\"\nshift = {shift}\n{extra}"
    );
    Config::parse(&SourceFile::new("t.toml", text)).unwrap()
}

/// Steps 10 points every 10 s from `percent`, judging at least 10 requests.
fn ramped(percent: u16) -> Config {
    config(&ramp_at(percent, "10s", 0.05), "")
}

fn ramp_at(percent: u16, every: &str, max_error_rate: f64) -> String {
    format!(
        "{{ to = \"customers\", percent = {percent}, ramp = {{ step = 10, every = \"{every}\", min_requests = 10, max_error_rate = {max_error_rate}, max_latency_ratio = 2 }} }}"
    )
}

/// Starts the driver on `states` at the current (paused) time and lets it
/// take its first look, so what is recorded next counts.
async fn start(config: &Config) -> (Arc<ShiftStates>, Arc<ShiftState>, Instant) {
    let states = Arc::new(ShiftStates::default());
    states.sync(config);
    let s = states.get("customers").unwrap();
    let t0 = Instant::now();
    tokio::spawn(run(Arc::downgrade(&states)));
    tokio::task::yield_now().await;
    (states, s, t0)
}

/// Sleeps on the paused clock until `secs` after `t0`: the runtime jumps
/// from timer to timer, so every driver wake-up on the way runs first.
async fn at(t0: Instant, secs: f64) {
    tokio::time::sleep_until(t0 + Duration::from_secs_f64(secs)).await;
}

/// A window the ramp likes: both sides fast, no failures.
fn healthy(s: &ShiftState) {
    traffic(s, 20, 0, Duration::from_millis(10));
}

/// `n` requests on the new side (of which `failed` failed) taking `latency`,
/// and `n` old-side requests taking 10ms.
fn traffic(s: &ShiftState, n: u32, failed: u32, latency: Duration) {
    for i in 0..n {
        s.window.record(Side::New, latency, i < failed);
        s.window.record(Side::Old, Duration::from_millis(10), false);
    }
}

fn status(s: &ShiftState) -> RampStatus {
    s.control().status.clone()
}

#[tokio::test(start_paused = true)]
async fn steps_at_each_interval() {
    let (_states, s, t0) = start(&ramped(10)).await;
    healthy(&s);
    at(t0, 9.5).await;
    assert_eq!(s.basis_points(), 1000, "not before the interval ends");
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 2000);
    healthy(&s);
    at(t0, 20.5).await;
    assert_eq!(s.basis_points(), 3000);
    assert_eq!(status(&s), RampStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn too_few_requests_hold_and_windows_do_not_add_up() {
    let (_states, s, t0) = start(&ramped(10)).await;
    traffic(&s, 6, 0, Duration::from_millis(10));
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 1000, "6 < min_requests 10");
    traffic(&s, 6, 0, Duration::from_millis(10));
    at(t0, 20.5).await;
    assert_eq!(s.basis_points(), 1000, "each window is judged alone");
    assert_eq!(status(&s), RampStatus::Running);
    healthy(&s);
    at(t0, 30.5).await;
    assert_eq!(s.basis_points(), 2000);
}

#[tokio::test(start_paused = true)]
async fn errors_drop_the_share_to_zero_and_stop() {
    let (_states, s, t0) = start(&ramped(30)).await;
    traffic(&s, 20, 2, Duration::from_millis(10));
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 0);
    let RampStatus::Stopped { reason, .. } = status(&s) else {
        panic!("{:?}", status(&s));
    };
    assert_eq!(
        reason,
        "new side error rate 10% over max_error_rate 5% (2 of 20 requests)"
    );
    healthy(&s);
    at(t0, 40.5).await;
    assert_eq!(s.basis_points(), 0, "a stopped ramp does not step");
}

#[tokio::test(start_paused = true)]
async fn slow_new_side_drops_the_share_to_zero_and_stops() {
    let (_states, s, t0) = start(&ramped(30)).await;
    traffic(&s, 20, 0, Duration::from_millis(50));
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 0);
    let RampStatus::Stopped { reason, .. } = status(&s) else {
        panic!("{:?}", status(&s));
    };
    assert!(
        reason.starts_with("new side p99 ") && reason.contains("over max_latency_ratio 2"),
        "{reason}"
    );
}

#[tokio::test(start_paused = true)]
async fn done_at_one_hundred() {
    let (_states, s, t0) = start(&ramped(85)).await;
    healthy(&s);
    at(t0, 10.5).await;
    assert_eq!((s.basis_points(), status(&s)), (9500, RampStatus::Running));
    healthy(&s);
    at(t0, 20.5).await;
    assert_eq!(
        (s.basis_points(), status(&s)),
        (10_000, RampStatus::Done),
        "capped at 100%"
    );
    traffic(&s, 20, 20, Duration::from_millis(10));
    at(t0, 30.5).await;
    assert_eq!((s.basis_points(), status(&s)), (10_000, RampStatus::Done));
    assert_eq!(
        s.window.take().1.requests,
        0,
        "a finished ramp's windows are still taken"
    );
}

#[tokio::test(start_paused = true)]
async fn a_resumed_ramp_steps_from_zero_on_fresh_traffic() {
    let (_states, s, t0) = start(&ramped(30)).await;
    traffic(&s, 20, 20, Duration::from_millis(10));
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 0);
    assert_eq!(status(&s).as_str(), "stopped");
    // Failures while stopped (forced testers, say) are thrown away.
    traffic(&s, 100, 100, Duration::from_millis(10));
    at(t0, 21.5).await;
    s.resume().unwrap();
    assert_eq!(status(&s), RampStatus::Running);
    // The resume is seen at the next poll (22 s); the interval starts there.
    at(t0, 31.5).await;
    assert_eq!(s.basis_points(), 0, "a full interval after the resume");
    at(t0, 32.5).await;
    assert_eq!(
        s.basis_points(),
        1000,
        "at 0% there is no traffic to wait for: the first step is untested"
    );
    healthy(&s);
    at(t0, 42.5).await;
    assert_eq!(s.basis_points(), 2000);
    traffic(&s, 20, 20, Duration::from_millis(10));
    at(t0, 52.5).await;
    assert_eq!(s.basis_points(), 0, "and it still stops on a breach");
}

#[tokio::test(start_paused = true)]
async fn a_reloaded_percent_wins_and_the_ramp_goes_on_from_there() {
    let (states, s, t0) = start(&ramped(10)).await;
    healthy(&s);
    at(t0, 10.5).await;
    assert_eq!(s.basis_points(), 2000);
    at(t0, 12.5).await;
    states.sync(&ramped(50));
    assert_eq!(s.basis_points(), 5000, "the file wins at once");
    at(t0, 22.5).await;
    assert_eq!(
        s.basis_points(),
        5000,
        "the interval restarted when the reload was seen (13 s)"
    );
    healthy(&s);
    at(t0, 23.5).await;
    assert_eq!(s.basis_points(), 6000);
    assert_eq!(status(&s), RampStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_changed_ramp_resumes_a_stopped_one() {
    let (states, s, t0) = start(&ramped(30)).await;
    traffic(&s, 20, 20, Duration::from_millis(10));
    at(t0, 10.5).await;
    assert_eq!(status(&s).as_str(), "stopped");
    at(t0, 12.5).await;
    states.sync(&ramped(30));
    assert_eq!(
        status(&s).as_str(),
        "stopped",
        "an unchanged reload changes nothing"
    );
    states.sync(&config(&ramp_at(30, "10s", 0.5), ""));
    assert_eq!(status(&s), RampStatus::Running);
    assert_eq!(s.basis_points(), 0, "it goes on from the share in force");
    at(t0, 23.5).await;
    assert_eq!(s.basis_points(), 1000);
}

#[tokio::test(start_paused = true)]
async fn reloads_bring_new_intervals_and_new_routes() {
    let (states, s, t0) = start(&ramped(10)).await;
    at(t0, 2.5).await;
    let orders = format!(
        "[upstreams.orders]\ntargets = [\"http://127.0.0.1:3\"]\n\
         [[routes]]\nname = \"orders\"\nprefix = \"/o\"\nupstream = \"legacy\"\nshift = {}\n",
        ramp_at(10, "5s", 0.05).replace("\"customers\"", "\"orders\"")
    );
    states.sync(&config(&ramp_at(10, "30s", 0.05), &orders));
    let o = states.get("orders").unwrap();
    // Seen at the next poll (3 s): what came before is not judged.
    at(t0, 3.5).await;
    healthy(&s);
    healthy(&o);
    at(t0, 8.5).await;
    assert_eq!(
        o.basis_points(),
        2000,
        "the new route ticks on its own 5 s from 3 s"
    );
    at(t0, 32.5).await;
    assert_eq!(s.basis_points(), 1000, "every = 30s now, counted from 3 s");
    at(t0, 33.5).await;
    assert_eq!(s.basis_points(), 2000);
    healthy(&s);

    // Routes that lose their shift are forgotten without fuss.
    states.sync(&config(&ramp_at(10, "30s", 0.05), ""));
    assert!(states.get("orders").is_none());
    at(t0, 70.5).await;
    assert_eq!(s.basis_points(), 3000);
}

#[tokio::test(start_paused = true)]
async fn the_driver_ends_with_its_proxy() {
    let states = Arc::new(ShiftStates::default());
    states.sync(&ramped(10));
    let driver = tokio::spawn(run(Arc::downgrade(&states)));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(!driver.is_finished());
    drop(states);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(driver.is_finished());

    let proxy = Proxy::new(ramped(10));
    let weak = Arc::downgrade(&proxy);
    drop(proxy);
    drive(weak).await;
}

#[tokio::test(start_paused = true)]
async fn steps_and_breaches_are_written_for_a_restart() {
    let dir = crate::shift::persist::tests::temp_dir("driver");
    let file = dir.join("strangler.toml");
    let text = format!(
        "[upstreams.legacy]\ntargets = [\"http://127.0.0.1:1\"]\n\
         [upstreams.customers]\ntargets = [\"http://127.0.0.1:2\"]\n\
         [[routes]]\nname = \"customers\"\nprefix = \"/c\"\nupstream = \"legacy\"\nshift = {}\n",
        ramp_at(10, "10s", 0.05)
    );
    std::fs::write(&file, text).unwrap();
    let (_states, s, t0) = start(&Config::load(&file).unwrap()).await;
    let stored = || {
        crate::shift::persist::read(&crate::shift::persist::state_path(&file)).unwrap()["customers"]
            .clone()
    };
    healthy(&s);
    at(t0, 10.5).await;
    assert_eq!(
        (stored().percent, stored().status.as_str()),
        (20.0, "running")
    );
    traffic(&s, 20, 20, Duration::from_millis(10));
    at(t0, 20.5).await;
    let rec = stored();
    assert_eq!((rec.percent, rec.status.as_str()), (0.0, "stopped"));
    assert!(rec.reason.unwrap().contains("error rate 100%"));

    // A restart picks up where it stopped.
    let again = ShiftStates::default();
    again.sync(&Config::load(&file).unwrap());
    let r = again.get("customers").unwrap();
    assert_eq!((r.basis_points(), status(&r).as_str()), (0, "stopped"));
    std::fs::remove_dir_all(dir).unwrap();
}

//! Metrics (SPEC 5): every family's name, help text and labels, and the
//! registry `GET /metrics` encodes in the Prometheus text format. No HTTP
//! types here; the admin listener serves what [`Metrics::encode`] returns.
//!
//! Values that already live in the proxy's state (a route's share, a ramp's
//! status, the shadow outcomes, the reload counters) are read from it at scrape time by a
//! [`Collector`], never copied into a second set of counters that could drift.
//! Requests and their durations are counted by [`crate::traffic`] (atomics the
//! hot path adds to without a lock) and read here the same way; the compose
//! legs record into `prometheus_client` families owned by the proxy.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::proxy::Proxy;
use crate::reload::Reloader;
use crate::shift::state::RampStatus;

/// `Content-Type` of what [`Metrics::encode`] returns (text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// `strangler_requests_total{route, upstream, code}` (registered without
/// `_total`); `code` is the status class, `2xx` to `5xx` (and `1xx`).
pub const REQUESTS: &str = "strangler_requests";
/// `strangler_request_duration_seconds{route, upstream}`.
pub const REQUEST_DURATION: &str = "strangler_request_duration_seconds";
/// `strangler_shift_percent{route}`: a shifted route's share in force, 0 to 100.
pub const SHIFT_PERCENT: &str = "strangler_shift_percent";
/// `strangler_ramp_stopped{route}`: 1 while a breach has stopped the route's ramp.
pub const RAMP_STOPPED: &str = "strangler_ramp_stopped";
/// `strangler_shadow_total{route, outcome}` (registered without `_total`).
pub const SHADOW: &str = "strangler_shadow";
/// `strangler_config_reloads_total{result}`. Registered without `_total`: the
/// encoder appends it to every counter.
pub const CONFIG_RELOADS: &str = "strangler_config_reloads";

/// `strangler_upstream_up{upstream, target}`: 1 while a target may take traffic
/// (not down by its health checks, not ejected), else 0.
pub const UPSTREAM_UP: &str = "strangler_upstream_up";
/// `strangler_retries_total{upstream, result}` (registered without `_total`):
/// result `sent`, or `over_budget` for a retry the budget refused.
pub const RETRIES: &str = "strangler_retries";

/// `strangler_compose_leg_duration_seconds{route, leg}`.
pub const COMPOSE_LEG_DURATION: &str = "strangler_compose_leg_duration_seconds";
/// `strangler_compose_leg_failures_total{route, leg}` (registered without `_total`).
pub const COMPOSE_LEG_FAILURES: &str = "strangler_compose_leg_failures";

/// `route` and `leg`.
type LegLabels = [(&'static str, String); 2];

/// The families requests record into, owned by the proxy (they outlive
/// reloads, like the series Prometheus has already scraped) and shared with
/// the registry.
#[derive(Debug, Clone)]
pub struct Recorded {
    leg_duration: Family<LegLabels, Histogram>,
    leg_failures: Family<LegLabels, Counter>,
}

impl Default for Recorded {
    fn default() -> Self {
        Recorded {
            leg_duration: Family::new_with_constructor(|| {
                Histogram::new(LEG_BUCKETS.iter().copied())
            }),
            leg_failures: Family::default(),
        }
    }
}

/// Upper bounds of the leg-duration buckets, in seconds: 1 ms to 10 s.
const LEG_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Recorded {
    /// One leg of a composite of `route` is done: how long it ran (`None`
    /// when it never ran because a leg it reads from failed), and whether
    /// it failed.
    pub fn leg(&self, route: &str, leg: &str, took: Option<std::time::Duration>, failed: bool) {
        let labels = [("route", route.to_owned()), ("leg", leg.to_owned())];
        if let Some(took) = took {
            self.leg_duration
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
        if failed {
            self.leg_failures.get_or_create(&labels).inc();
        }
    }
}

/// Every metric family of one proxy.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    /// The families of `proxy`; `reloader` is `None` when the config did not
    /// come from a file (the reload counters then stay at 0).
    pub fn new(proxy: Arc<Proxy>, reloader: Option<Arc<Reloader>>) -> Metrics {
        let mut registry = Registry::default();
        let proxy_recorded = proxy.recorded.clone();
        registry.register_collector(Box::new(TrafficCollector {
            traffic: proxy.traffic.clone(),
        }));
        registry.register_collector(Box::new(UpstreamCollector {
            proxy: proxy.clone(),
        }));
        registry.register_collector(Box::new(ShiftCollector {
            proxy: proxy.clone(),
        }));
        registry.register_collector(Box::new(ShadowCollector { proxy }));
        registry.register_collector(Box::new(ReloadCollector { reloader }));
        registry.register(
            COMPOSE_LEG_DURATION,
            "Time each leg of a composed route took, until its answer was read (or it failed)",
            proxy_recorded.leg_duration.clone(),
        );
        registry.register(
            COMPOSE_LEG_FAILURES,
            "Legs of composed routes that failed (non-2xx, unreachable, timeout, not JSON, missing field)",
            proxy_recorded.leg_failures.clone(),
        );
        Metrics { registry }
    }

    /// Every family in the Prometheus text format, values as of now.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

// === impl TrafficCollector ===

/// Reads every (route, upstream) series: request counts per status class and
/// the duration histogram, sorted by route then upstream. Label values are
/// config names (or `(default)`, `(compose)`, `(none)`), never request paths.
struct TrafficCollector {
    traffic: Arc<crate::traffic::Traffic>,
}

impl fmt::Debug for TrafficCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TrafficCollector")
    }
}

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        use crate::traffic::{BUCKETS_US, CLASSES};

        let series: Vec<_> = self
            .traffic
            .all()
            .into_iter()
            .map(|(route, upstream, s)| (route, upstream, s.totals()))
            .collect();

        let mut family = encoder.encode_descriptor(
            REQUESTS,
            "Responses by route, upstream and status class; route (default) is the [default] route, (none) requests that matched nothing or were refused before matching; upstream (compose) a composed route's answer",
            None,
            MetricType::Counter,
        )?;
        for (route, upstream, totals) in &series {
            for (code, &n) in CLASSES.iter().zip(&totals.classes) {
                // 1xx (protocol switches) only once there is one: SPEC 5
                // lists 2xx to 5xx.
                if *code == "1xx" && n == 0 {
                    continue;
                }
                family
                    .encode_family(&[
                        ("route", route.as_str()),
                        ("upstream", upstream.as_str()),
                        ("code", code),
                    ])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None::<&Exemplar<NoLabelSet, u64>>)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            REQUEST_DURATION,
            "Time from the request's arrival until its response was fully sent, by route and upstream",
            None,
            MetricType::Histogram,
        )?;
        for (route, upstream, totals) in &series {
            let buckets: Vec<(f64, u64)> = BUCKETS_US
                .iter()
                .map(|&us| us as f64 / 1e6)
                .chain([f64::INFINITY])
                .zip(totals.buckets)
                .collect();
            let count = totals.buckets.iter().sum();
            family
                .encode_family(&[("route", route.as_str()), ("upstream", upstream.as_str())])?
                .encode_histogram::<NoLabelSet>(totals.sum.as_secs_f64(), count, &buckets, None)?;
        }
        Ok(())
    }
}

// === impl ShiftCollector ===

/// Reads each shifted route's share and ramp status from the current
/// snapshot, in config order.
struct ShiftCollector {
    proxy: Arc<Proxy>,
}

impl fmt::Debug for ShiftCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShiftCollector")
    }
}

impl Collector for ShiftCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snap = self.proxy.snapshot();
        let shifted: Vec<(&str, f64, bool)> = snap
            .config
            .routes
            .iter()
            .zip(&snap.shifts)
            .filter_map(|(route, state)| {
                let state = state.as_ref()?;
                let stopped = matches!(state.control().status, RampStatus::Stopped { .. });
                Some((
                    route.name.as_str(),
                    f64::from(state.basis_points()) / 100.0,
                    stopped,
                ))
            })
            .collect();

        let mut family = encoder.encode_descriptor(
            SHIFT_PERCENT,
            "Share of a shifted route's requests sent to its shift.to upstream now, in percent",
            None,
            MetricType::Gauge,
        )?;
        for (route, percent, _) in &shifted {
            family
                .encode_family(&[("route", *route)])?
                .encode_gauge(percent)?;
        }

        let mut family = encoder.encode_descriptor(
            RAMP_STOPPED,
            "1 while a breach has stopped the route's ramp (share dropped to 0) until it is resumed, else 0",
            None,
            MetricType::Gauge,
        )?;
        for (route, _, stopped) in &shifted {
            family
                .encode_family(&[("route", *route)])?
                .encode_gauge(&i64::from(*stopped))?;
        }
        Ok(())
    }
}

// === impl ShadowCollector ===

/// Reads each shadow report's outcome counts: four series per route that
/// has a report, sorted by route name.
struct ShadowCollector {
    proxy: Arc<Proxy>,
}

impl fmt::Debug for ShadowCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShadowCollector")
    }
}

impl Collector for ShadowCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let reports = self.proxy.shadow.all();
        let mut family = encoder.encode_descriptor(
            SHADOW,
            "Mirrored requests of shadowed routes by outcome: match, mismatch (a difference that is not noise), error (the shadow failed), skipped (not compared)",
            None,
            MetricType::Counter,
        )?;
        for (route, report) in &reports {
            for (outcome, n) in report.counts() {
                family
                    .encode_family(&[("route", route.as_str()), ("outcome", outcome.as_str())])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None::<&Exemplar<NoLabelSet, u64>>)?;
            }
        }
        Ok(())
    }
}

// === impl ReloadCollector ===

/// Reads the reloader's counters; both series are always there.
struct ReloadCollector {
    reloader: Option<Arc<Reloader>>,
}

impl fmt::Debug for ReloadCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadCollector")
    }
}

impl Collector for ReloadCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let (ok, error) = self.reloader.as_ref().map_or((0, 0), |r| r.counts());
        let mut family = encoder.encode_descriptor(
            CONFIG_RELOADS,
            "Config reloads (SIGHUP, file change, POST /admin/reload) by result",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [("ok", ok), ("error", error)] {
            family
                .encode_family(&[("result", result)])?
                .encode_counter::<NoLabelSet, _, u64>(&n, None::<&Exemplar<NoLabelSet, u64>>)?;
        }
        Ok(())
    }
}

// === impl UpstreamCollector ===

/// Reads each target's eligibility and each upstream's retry counters from
/// the current snapshot, in config order.
struct UpstreamCollector {
    proxy: Arc<Proxy>,
}

impl fmt::Debug for UpstreamCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamCollector")
    }
}

impl Collector for UpstreamCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let snap = self.proxy.snapshot();
        let mut family = encoder.encode_descriptor(
            UPSTREAM_UP,
            "1 while a target may take traffic (not down by its health checks, not ejected), else 0",
            None,
            MetricType::Gauge,
        )?;
        for pool in &snap.pools {
            for t in &pool.targets {
                family
                    .encode_family(&[("upstream", pool.name.as_str()), ("target", t.url.as_str())])?
                    .encode_gauge(&i64::from(t.stats.health.eligible()))?;
            }
        }
        let mut family = encoder.encode_descriptor(
            RETRIES,
            "Retries of idempotent requests on another target, by result: sent, or over_budget (refused by the retry budget)",
            None,
            MetricType::Counter,
        )?;
        for pool in snap.pools.iter().filter(|p| p.retries > 0) {
            let (sent, denied) = pool.budget.counts();
            for (result, n) in [("sent", sent), ("over_budget", denied)] {
                family
                    .encode_family(&[("upstream", pool.name.as_str()), ("result", result)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None::<&Exemplar<NoLabelSet, u64>>)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, SourceFile};
    use crate::shadow::report::Outcome;

    const CONFIG: &str = r#"
[upstreams.legacy]
targets = ["http://127.0.0.1:9000"]
[upstreams.customers]
targets = ["http://127.0.0.1:9101"]
[[routes]]
name = "plain"
prefix = "/plain"
upstream = "legacy"
[[routes]]
name = "cust\"omers"
prefix = "/api/customers"
upstream = "legacy"
shift = { to = "customers", percent = 12.5, ramp = { step = 5, every = "1m" } }
"#;

    fn metrics() -> (Arc<Proxy>, Metrics) {
        let config = Config::parse(&SourceFile::new("t.toml", CONFIG)).unwrap();
        let proxy = Proxy::new(config);
        let m = Metrics::new(proxy.clone(), None);
        (proxy, m)
    }

    #[test]
    fn targets_are_up_until_ejected() {
        let (proxy, m) = metrics();
        let text = m.encode().unwrap();
        let series = "strangler_upstream_up{upstream=\"legacy\",target=\"http://127.0.0.1:9000\"}";
        assert!(text.contains(&format!("{series} 1\n")), "{text}");
        let snap = proxy.snapshot();
        let eject = crate::config::Eject {
            consecutive_failures: 1,
            duration: std::time::Duration::from_secs(60),
        };
        snap.pools[0].targets[0].stats.health.record(
            true,
            Some(&eject),
            crate::upstream::health::now_ms(),
            "test",
        );
        let text = m.encode().unwrap();
        assert!(text.contains(&format!("{series} 0\n")), "{text}");
        // No upstream has retries: no retry series.
        assert!(!text.contains("strangler_retries_total{"), "{text}");
    }

    #[test]
    fn families_are_read_from_the_state_at_scrape_time() {
        let (proxy, m) = metrics();
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE strangler_shift_percent gauge\n"),
            "{text}"
        );
        // Label values are escaped; routes without a shift have no series.
        assert!(
            text.contains("strangler_shift_percent{route=\"cust\\\"omers\"} 12.5\n"),
            "{text}"
        );
        assert!(!text.contains("plain"), "{text}");
        assert!(
            text.contains("strangler_ramp_stopped{route=\"cust\\\"omers\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE strangler_config_reloads_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("strangler_config_reloads_total{result=\"ok\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("strangler_config_reloads_total{result=\"error\"} 0\n"),
            "{text}"
        );

        // The ramp moves the share: the next scrape shows it, nothing to sync.
        let state = proxy.shifts.get("cust\"omers").unwrap();
        state.set_basis_points(4000);
        let text = m.encode().unwrap();
        assert!(
            text.contains("strangler_shift_percent{route=\"cust\\\"omers\"} 40.0\n"),
            "{text}"
        );

        // A breach shows as 1 until the ramp is resumed.
        state.set_basis_points(0);
        state.control().status = RampStatus::Stopped {
            reason: "error rate 0.2 over 0.01".into(),
            at: std::time::SystemTime::now(),
        };
        let text = m.encode().unwrap();
        assert!(
            text.contains("strangler_ramp_stopped{route=\"cust\\\"omers\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("strangler_shift_percent{route=\"cust\\\"omers\"} 0.0\n"),
            "{text}"
        );
        state.resume().unwrap();
        assert!(
            m.encode()
                .unwrap()
                .contains("strangler_ramp_stopped{route=\"cust\\\"omers\"} 0\n")
        );
    }

    #[test]
    fn requests_are_read_from_the_traffic_series() {
        let (proxy, m) = metrics();
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE strangler_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE strangler_request_duration_seconds histogram\n"),
            "{text}"
        );
        let snap = proxy.snapshot();
        let now = crate::traffic::now_ms();
        let series = snap.traffic.series(&snap.config, Some(1), Some(1));
        series.record(200, std::time::Duration::from_millis(3), now);
        series.record(503, std::time::Duration::from_millis(40), now);
        snap.traffic.series(&snap.config, None, None).record(
            404,
            std::time::Duration::from_micros(10),
            now,
        );
        let text = m.encode().unwrap();
        for line in [
            "strangler_requests_total{route=\"cust\\\"omers\",upstream=\"customers\",code=\"2xx\"} 1",
            "strangler_requests_total{route=\"cust\\\"omers\",upstream=\"customers\",code=\"5xx\"} 1",
            "strangler_requests_total{route=\"cust\\\"omers\",upstream=\"customers\",code=\"4xx\"} 0",
            "strangler_requests_total{route=\"(none)\",upstream=\"(none)\",code=\"4xx\"} 1",
            "strangler_request_duration_seconds_bucket{route=\"cust\\\"omers\",upstream=\"customers\",le=\"0.0025\"} 0",
            "strangler_request_duration_seconds_bucket{route=\"cust\\\"omers\",upstream=\"customers\",le=\"0.005\"} 1",
            "strangler_request_duration_seconds_bucket{route=\"cust\\\"omers\",upstream=\"customers\",le=\"0.05\"} 2",
            "strangler_request_duration_seconds_bucket{route=\"cust\\\"omers\",upstream=\"customers\",le=\"+Inf\"} 2",
            "strangler_request_duration_seconds_count{route=\"cust\\\"omers\",upstream=\"customers\"} 2",
            "strangler_request_duration_seconds_sum{route=\"cust\\\"omers\",upstream=\"customers\"} 0.043",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Only pairs that served have series.
        assert!(!text.contains("route=\"plain\""), "{text}");
    }

    #[test]
    fn shadow_outcomes_are_counted_per_route_from_the_reports() {
        use crate::shadow::compare::Difference;

        let (proxy, m) = metrics();
        // No report, no series; the family is still described.
        let text = m.encode().unwrap();
        assert!(
            text.contains("# TYPE strangler_shadow_total counter\n"),
            "{text}"
        );
        assert!(!text.contains("strangler_shadow_total{"), "{text}");

        let reports = proxy
            .shadow
            .sync([("plain", "new"), ("cust\"omers", "new")]);
        let plain = &reports["plain"];
        let diff = Difference {
            pointer: "/total".into(),
            primary: Some(1.into()),
            shadow: Some(2.into()),
        };
        assert_eq!(plain.compared(&[], "GET", "/plain"), Outcome::Match);
        assert_eq!(plain.compared(&[], "GET", "/plain"), Outcome::Match);
        assert_eq!(
            plain.compared(&[diff], "GET", "/plain/1"),
            Outcome::Mismatch
        );
        plain.error();
        for _ in 0..3 {
            plain.skipped();
        }
        let text = m.encode().unwrap();
        for line in [
            "strangler_shadow_total{route=\"plain\",outcome=\"match\"} 2",
            "strangler_shadow_total{route=\"plain\",outcome=\"mismatch\"} 1",
            "strangler_shadow_total{route=\"plain\",outcome=\"error\"} 1",
            "strangler_shadow_total{route=\"plain\",outcome=\"skipped\"} 3",
            // Every outcome of a route with a report, zero or not; labels escaped.
            "strangler_shadow_total{route=\"cust\\\"omers\",outcome=\"match\"} 0",
            "strangler_shadow_total{route=\"cust\\\"omers\",outcome=\"skipped\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        assert_eq!(text.matches("strangler_shadow_total{").count(), 8, "{text}");

        // A route that stops shadowing loses its series.
        proxy.shadow.sync([("plain", "new")]);
        let text = m.encode().unwrap();
        assert!(!text.contains("omers\",outcome"), "{text}");
        assert_eq!(text.matches("strangler_shadow_total{").count(), 4, "{text}");
    }
}

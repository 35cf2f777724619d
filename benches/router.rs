//! `Router::find` with 10 routes vs 10,000 routes (the issue's "10,000 routes cost
//! under 5%" target, at the router level; bench/run.py's `routes` scenario measures
//! the same thing end to end through the proxy).
//!
//!     cargo bench --bench router              # full run
//!     cargo bench --bench router -- --quick   # a quick look
//!
//! The route mix is the one bench/run.py generates (keep them in step): literal
//! paths with parameters under thousands of `/api/v1/svcN/...` siblings, prefixes,
//! catch-alls, and method / header / host conditions. The looked-up paths share
//! their leading segments with most routes, so the trie walk does real work.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use strangler::router::{Conditions, HostMatch, Pattern, RequestInfo, Router};

/// The service whose routes the requests hit; never used by a filler route.
const HIT_SVC: usize = 7777;

fn path(p: &str) -> Pattern {
    Pattern::path(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn prefix(p: &str) -> Pattern {
    Pattern::prefix(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn methods(ms: &[Method]) -> Conditions {
    Conditions {
        methods: Some(ms.to_vec()),
        ..Conditions::default()
    }
}

fn header(name: &'static str, value: &str) -> Conditions {
    Conditions {
        headers: vec![(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).unwrap(),
        )],
        ..Conditions::default()
    }
}

/// Route number `i` of the mix (kinds cycle over `i % 10`), as in run.py's `filler_route`.
fn filler(i: usize) -> (Pattern, Conditions) {
    let none = Conditions::default();
    match i % 10 {
        0 => (path(&format!("/api/v1/svc{i}/items/{{id}}")), none),
        1 => (
            path(&format!("/api/v1/svc{i}/items/{{id}}/reviews/{{rid}}")),
            none,
        ),
        2 => (
            path(&format!("/api/v1/svc{i}/orders/{{id}}")),
            methods(&[Method::POST, Method::PUT, Method::PATCH]),
        ),
        3 => (prefix(&format!("/static/{i}")), none),
        4 => (path(&format!("/api/v2/svc{i}/{{*rest}}")), none),
        5 => (
            path(&format!("/api/v1/svc{i}/items")),
            methods(&[Method::GET, Method::HEAD]),
        ),
        6 => (
            path(&format!("/api/v1/svc{i}/items/{{id}}")),
            header("x-tenant", &format!("t{i}")),
        ),
        7 => (
            path(&format!("/api/v1/svc{i}/users/{{uid}}/items/{{id}}")),
            none,
        ),
        8 => (
            prefix(&format!("/api/v1/svc{i}/legacy")),
            Conditions {
                host: Some(HostMatch::parse("*.example.com")),
                ..Conditions::default()
            },
        ),
        _ => (path(&format!("/assets/{i}/{{*file}}")), none),
    }
}

/// Route ids of the routes the requests should land on.
struct Ids {
    canary: usize,
    items: usize,
    list: usize,
    catchall: usize,
}

/// `n` routes: fillers, the hit routes in the middle of the file (a canary with a
/// header condition the requests do not meet, then the route that takes them, then
/// a literal one), and a `/api/v1` prefix catch-all last.
fn routes(n: usize) -> (Vec<(Pattern, Conditions)>, Ids) {
    assert!(n >= 5);
    let fill: Vec<usize> = (0..).filter(|&i| i != HIT_SVC).take(n - 4).collect();
    let mid = fill.len() / 2;
    let mut out: Vec<(Pattern, Conditions)> = fill[..mid].iter().map(|&i| filler(i)).collect();
    let canary = out.len();
    out.push((
        path(&format!("/api/v1/svc{HIT_SVC}/items/{{id}}")),
        header("x-canary", "1"),
    ));
    let items = out.len();
    out.push((
        path(&format!("/api/v1/svc{HIT_SVC}/items/{{id}}")),
        methods(&[Method::GET, Method::HEAD]),
    ));
    let list = out.len();
    out.push((
        path(&format!("/api/v1/svc{HIT_SVC}/items")),
        methods(&[Method::GET, Method::HEAD]),
    ));
    out.extend(fill[mid..].iter().map(|&i| filler(i)));
    let catchall = out.len();
    out.push((prefix("/api/v1"), Conditions::default()));
    assert_eq!(out.len(), n);
    (
        out,
        Ids {
            canary,
            items,
            list,
            catchall,
        },
    )
}

fn bench_find(c: &mut Criterion) {
    let headers = HeaderMap::new();
    let get = Method::GET;
    let cases: [(&str, String); 4] = [
        // literal hit: every segment literal
        ("literal_hit", format!("/api/v1/svc{HIT_SVC}/items")),
        // param hit: literal walk, a parameter, and a header-conditioned route tried first
        ("param_hit", format!("/api/v1/svc{HIT_SVC}/items/42")),
        // walks /api/v1/svc7777, finds nothing below, falls back to the /api/v1 prefix
        (
            "prefix_fallthrough",
            format!("/api/v1/svc{HIT_SVC}/unknown/deep/path"),
        ),
        // no route at all: the default upstream would take it
        ("miss", "/api/v3/svc1/items/1".to_owned()),
    ];

    let mut group = c.benchmark_group("router_find");
    for n in [10usize, 10_000] {
        let (table, ids) = routes(n);
        let router = Router::new(table);
        for (case, p) in &cases {
            let req = RequestInfo {
                method: &get,
                path: p,
                host: Some("shop.local"),
                headers: &headers,
            };
            // The bench is only honest if each case lands where it says it does.
            let want = match *case {
                "literal_hit" => Some(ids.list),
                "param_hit" => Some(ids.items),
                "prefix_fallthrough" => Some(ids.catchall),
                _ => None,
            };
            let got = router.find(&req).map(|m| m.route);
            assert_eq!(got, want, "{case} with {n} routes");
            assert_ne!(got, Some(ids.canary));
            group.bench_with_input(BenchmarkId::new(*case, n), &req, |b, req| {
                b.iter(|| router.find(black_box(req)))
            });
        }
    }
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_new");
    group.sample_size(10);
    for n in [10usize, 10_000] {
        let (table, _) = routes(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &table, |b, table| {
            b.iter(|| Router::new(black_box(table.clone())))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_find, bench_build);
criterion_main!(benches);

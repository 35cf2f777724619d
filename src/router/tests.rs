use super::*;
use proptest::prelude::*;

fn req<'a>(method: &'a Method, path: &'a str, headers: &'a HeaderMap) -> RequestInfo<'a> {
    RequestInfo {
        method,
        path,
        host: Some("shop.example.com"),
        headers,
    }
}

fn path(p: &str) -> (Pattern, Conditions) {
    (Pattern::path(p).unwrap(), Conditions::default())
}

fn prefix(p: &str) -> (Pattern, Conditions) {
    (Pattern::prefix(p).unwrap(), Conditions::default())
}

fn find(r: &Router, p: &str) -> Option<usize> {
    let h = HeaderMap::new();
    r.find(&req(&Method::GET, p, &h)).map(|m| m.route)
}

#[test]
fn most_specific_wins_whatever_the_order() {
    let r = Router::new([
        prefix("/"),
        prefix("/api"),
        path("/api/{kind}/{id}"),
        path("/api/orders/{id}"),
        path("/api/orders/{*rest}"),
        path("/api/orders/special"),
    ]);
    assert_eq!(find(&r, "/"), Some(0));
    assert_eq!(find(&r, "/x"), Some(0));
    assert_eq!(find(&r, "/api"), Some(1));
    assert_eq!(find(&r, "/api/customers/1"), Some(2));
    assert_eq!(find(&r, "/api/orders/1"), Some(3));
    assert_eq!(find(&r, "/api/orders/1/lines"), Some(4));
    assert_eq!(find(&r, "/api/orders/special"), Some(5));
    assert_eq!(find(&r, "/api/orders/"), Some(4));
    assert_eq!(find(&r, "/api/orders"), Some(1));
}

#[test]
fn falls_through_to_less_specific_patterns_and_then_nothing() {
    let get_only = Conditions {
        methods: Some(vec![Method::GET]),
        ..Conditions::default()
    };
    let r = Router::new([
        (Pattern::path("/api/orders/{id}").unwrap(), get_only),
        prefix("/api"),
    ]);
    let h = HeaderMap::new();
    let m = r.find(&req(&Method::GET, "/api/orders/7", &h)).unwrap();
    assert_eq!(m.route, 0);
    let caps: Vec<&str> = m
        .captures
        .iter()
        .map(|r| &"/api/orders/7"[r.clone()])
        .collect();
    assert_eq!(caps, ["7"]);
    let m = r.find(&req(&Method::DELETE, "/api/orders/7", &h)).unwrap();
    assert_eq!(m.route, 1);
    assert!(r.find(&req(&Method::GET, "/other", &h)).is_none());
}

#[test]
fn same_pattern_takes_the_first_accepting_route_in_file_order() {
    let beta = Conditions {
        headers: vec![(
            HeaderName::from_static("x-beta"),
            HeaderValue::from_static("1"),
        )],
        ..Conditions::default()
    };
    let host = Conditions {
        host: Some(HostMatch::parse("*.example.com")),
        ..Conditions::default()
    };
    let r = Router::new([
        (Pattern::prefix("/api").unwrap(), beta),
        (Pattern::prefix("/api").unwrap(), host),
        prefix("/api"),
    ]);
    let mut h = HeaderMap::new();
    assert_eq!(r.find(&req(&Method::GET, "/api/x", &h)).unwrap().route, 1);
    h.insert("x-beta", HeaderValue::from_static("1"));
    assert_eq!(r.find(&req(&Method::GET, "/api/x", &h)).unwrap().route, 0);
    let empty = HeaderMap::new();
    let other_host = RequestInfo {
        host: Some("example.org:8080"),
        ..req(&Method::GET, "/api/x", &empty)
    };
    assert_eq!(r.find(&other_host).unwrap().route, 2);
}

#[test]
fn host_matching_ignores_port_and_case() {
    let exact = HostMatch::parse("Shop.Example.com");
    assert!(exact.accepts("shop.example.COM:8080"));
    assert!(!exact.accepts("example.com"));
    let sub = HostMatch::parse("*.example.com");
    assert!(sub.accepts("a.example.com"));
    assert!(!sub.accepts("example.com"));
    assert!(HostMatch::parse("[::1]").accepts("[::1]:8080"));
}

#[test]
fn unreachable_routes_are_found() {
    let get = Conditions {
        methods: Some(vec![Method::GET]),
        ..Conditions::default()
    };
    let r = Router::new([
        prefix("/api"),
        (Pattern::prefix("/api").unwrap(), get.clone()),
        path("/api/{*rest}"),
        (Pattern::path("/x").unwrap(), get),
        path("/x"),
    ]);
    assert_eq!(r.unreachable(), vec![(1, 0), (2, 0)]);
}

#[test]
fn matching_order_is_by_specificity_then_file_order() {
    let r = Router::new([
        prefix("/"),
        path("/api/{id}"),
        path("/api/x"),
        prefix("/api"),
        path("/api/{other}"),
    ]);
    assert_eq!(r.matching_order(), vec![2, 1, 4, 3, 0]);
}

// === property tests ===

#[derive(Debug, Clone)]
enum GenSeg {
    Lit(&'static str),
    Param,
}

#[derive(Debug, Clone)]
struct GenRoute {
    segs: Vec<GenSeg>,
    /// 0: exact path, 1: `{*rest}`, 2: prefix.
    tail: u8,
    get_only: bool,
    beta_header: bool,
}

impl GenRoute {
    fn build(&self) -> (Pattern, Conditions) {
        let mut text = String::new();
        let mut params = 0;
        for s in &self.segs {
            text.push('/');
            match s {
                GenSeg::Lit(l) => text.push_str(l),
                GenSeg::Param => {
                    text.push_str(&format!("{{p{params}}}"));
                    params += 1;
                }
            }
        }
        let has_param = self.segs.iter().any(|s| matches!(s, GenSeg::Param));
        let pattern = match self.tail {
            2 if !has_param => Pattern::prefix(if text.is_empty() { "/" } else { &text }),
            1 | 2 => Pattern::path(&format!("{text}/{{*rest}}")),
            _ => Pattern::path(if text.is_empty() { "/" } else { &text }),
        }
        .unwrap();
        let mut c = Conditions::default();
        if self.get_only {
            c.methods = Some(vec![Method::GET]);
        }
        if self.beta_header {
            c.headers = vec![(
                HeaderName::from_static("x-beta"),
                HeaderValue::from_static("1"),
            )];
        }
        (pattern, c)
    }
}

fn gen_route() -> impl Strategy<Value = GenRoute> {
    (
        prop::collection::vec(
            prop_oneof![
                3 => prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(GenSeg::Lit),
                1 => Just(GenSeg::Param),
            ],
            0..4,
        ),
        0u8..3,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(segs, tail, get_only, beta_header)| GenRoute {
            segs,
            tail,
            get_only,
            beta_header,
        })
}

fn gen_path() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("x"), Just("")],
        0..5,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

/// The oracle: every route that accepts the request, the most specific pattern
/// first and file order among equals, with no trie involved.
fn oracle(routes: &[(Pattern, Conditions)], r: &RequestInfo<'_>) -> Option<Match> {
    routes
        .iter()
        .enumerate()
        .filter_map(|(id, (p, c))| {
            let caps = p.matches(r.path)?;
            c.accepts(r).then_some((p.rank(), id, caps))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, route, captures)| Match { route, captures })
}

proptest! {
    #[test]
    fn the_router_agrees_with_the_oracle(
        routes in prop::collection::vec(gen_route(), 0..12),
        path in gen_path(),
        post in any::<bool>(),
        beta in any::<bool>(),
    ) {
        let built: Vec<_> = routes.iter().map(GenRoute::build).collect();
        let router = Router::new(built.clone());
        let method = if post { Method::POST } else { Method::GET };
        let mut h = HeaderMap::new();
        if beta {
            h.insert("x-beta", HeaderValue::from_static("1"));
        }
        let r = req(&method, &path, &h);
        prop_assert_eq!(router.find(&r), oracle(&built, &r));
    }

    #[test]
    fn file_order_does_not_matter_between_different_patterns(
        routes in prop::collection::vec(gen_route(), 1..12),
        path in gen_path(),
        seed in any::<u64>(),
    ) {
        // One route per pattern shape, no conditions: then only specificity decides.
        let mut built: Vec<(Pattern, Conditions)> = Vec::new();
        for g in &routes {
            let (p, _) = g.build();
            if !built.iter().any(|(q, _)| q.same_shape(&p) || q.rank() == p.rank() && q.walked_segments() == p.walked_segments()) {
                built.push((p, Conditions::default()));
            }
        }
        let mut shuffled = built.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let a = Router::new(built.clone());
        let b = Router::new(shuffled.clone());
        let h = HeaderMap::new();
        let r = req(&Method::GET, &path, &h);
        let pa = a.find(&r).map(|m| built[m.route].0.to_string());
        let pb = b.find(&r).map(|m| shuffled[m.route].0.to_string());
        prop_assert_eq!(pa, pb);
    }
}

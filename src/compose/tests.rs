use serde_json::json;

use super::*;
use crate::config::{Config, SourceFile};

fn compose(text: &str) -> Compose {
    let full = format!(
        "[upstreams.orders]\ntargets = [\"http://127.0.0.1:1\"]\n[upstreams.customers]\ntargets = [\"http://127.0.0.1:2\"]\n{text}"
    );
    let c = Config::parse(&SourceFile::new("t.toml", full)).unwrap_or_else(|e| panic!("{e}"));
    c.routes[0].compose.clone().expect("a composed route")
}

const DETAILS: &str = r#"
[[routes]]
name = "order-details"
path = "/api/order-details/{id}"
[routes.compose]
merge = "MERGE"
[[routes.compose.legs]]
name = "order"
upstream = "orders"
path = "/orders/{id}"
[[routes.compose.legs]]
name = "customer"
upstream = "customers"
path = "/customers/{order.customer_id}"
pick = ["name"]
[[routes.compose.legs]]
name = "stock"
upstream = "orders"
path = "/inventory/{order.lines.*.sku}"
optional = true
timeout = "300ms"
"#;

#[test]
fn legs_are_ordered_after_what_they_read() {
    let c = compose(&DETAILS.replace("MERGE", "nest"));
    assert_eq!(c.merge, Merge::Nest);
    assert_eq!(c.legs[1].deps, [0]);
    assert_eq!(c.legs[2].deps, [0]);
    assert_eq!(c.order[0], 0);
    assert!(c.legs[2].optional);
    assert_eq!(c.legs[2].timeout, Some(Duration::from_millis(300)));
    assert_eq!(c.legs[1].pick.as_deref(), Some(&["name".to_owned()][..]));
    // File order does not decide: a leg listed before the one it reads waits.
    let swapped = compose(
        r#"
[[routes]]
path = "/x/{id}"
[[routes.compose.legs]]
name = "b"
upstream = "orders"
path = "/b/{a.id}"
[[routes.compose.legs]]
name = "a"
upstream = "customers"
path = "/a/{id}"
"#,
    );
    assert_eq!(swapped.order, [1, 0]);
}

#[test]
fn nest_and_flat_merge() {
    let nest = compose(&DETAILS.replace("MERGE", "nest"));
    let values = vec![
        json!({"id": 1, "status": "shipped"}),
        json!({"name": "Ada"}),
        Value::Null,
    ];
    assert_eq!(
        merge(&nest, values.clone()),
        json!({"order": {"id": 1, "status": "shipped"}, "customer": {"name": "Ada"}, "stock": null})
    );
    let flat = compose(&DETAILS.replace("MERGE", "flat"));
    let values = vec![
        json!({"id": 1, "name": "order one"}),
        json!({"name": "Ada"}),
        json!([{"sku": "A"}]),
    ];
    // Later legs win; a value that is not an object keeps its leg's name.
    assert_eq!(
        merge(&flat, values),
        json!({"id": 1, "name": "Ada", "stock": [{"sku": "A"}]})
    );
}

#[test]
fn keys_keep_file_order_and_pick_shapes_only_the_output() {
    let nest = compose(&DETAILS.replace("MERGE", "nest"));
    let body = merge(
        &nest,
        vec![
            json!({"status": "shipped", "id": 1}),
            json!({"name": "Ada", "email": "a@x"}),
            Value::Null,
        ],
    );
    // The customer leg picks `name`; the answer keeps file order throughout.
    assert_eq!(
        serde_json::to_string(&body).unwrap(),
        r#"{"order":{"status":"shipped","id":1},"customer":{"name":"Ada"},"stock":null}"#
    );
}

#[test]
fn pick_walk_and_scalars() {
    let c = compose(&DETAILS.replace("MERGE", "nest"));
    assert_eq!(
        pick(&c.legs[1], json!({"name": "Ada", "email": "a@x"})),
        json!({"name": "Ada"})
    );
    assert_eq!(
        pick(&c.legs[0], json!({"a": 1})),
        json!({"a": 1}),
        "no pick"
    );
    let v = json!({"lines": [{"sku": "TEA-1"}, {"sku": 7}], "ok": true});
    let path = |p: &str| p.split('.').map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(walk(&v, &path("lines.1.sku")), Some(&json!(7)));
    assert_eq!(walk(&v, &path("lines.2.sku")), None);
    assert_eq!(walk(&v, &path("ok.x")), None);
    assert_eq!(scalar(&json!("TEA-1")), Some("TEA-1".into()));
    assert_eq!(scalar(&json!(7)), Some("7".into()));
    assert_eq!(scalar(&json!(true)), Some("true".into()));
    assert_eq!(scalar(&json!(null)), None);
    assert_eq!(scalar(&json!({"a": 1})), None);
}

#[test]
fn failures_map_to_the_composite_status() {
    assert_eq!(LegFailure::Status(404).status(), StatusCode::NOT_FOUND);
    assert_eq!(LegFailure::Status(500).status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        LegFailure::Timeout(Duration::from_millis(5)).status(),
        StatusCode::GATEWAY_TIMEOUT
    );
    assert_eq!(LegFailure::NotJson.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        LegFailure::Missing("order.customer_id".into()).status(),
        StatusCode::BAD_GATEWAY
    );
    let r = Report {
        legs: vec![
            (
                "order".into(),
                Some(LegOutcome::Done {
                    status: 200,
                    took: Duration::ZERO,
                }),
            ),
            (
                "stock".into(),
                Some(LegOutcome::Failed {
                    failure: LegFailure::Timeout(Duration::ZERO),
                    took: Duration::ZERO,
                }),
            ),
            ("customer".into(), None),
        ],
    };
    assert_eq!(r.summary(), "order=200 stock=timeout customer=cancelled");
}

#[test]
fn bad_compositions_are_config_errors() {
    let route = |legs: &str| {
        format!(
            "[upstreams.orders]\ntargets = [\"http://127.0.0.1:1\"]\n[[routes]]\nname = \"r\"\npath = \"/x/{{id}}\"\n{legs}"
        )
    };
    let leg = |name: &str, path: &str| {
        format!(
            "[[routes.compose.legs]]\nname = \"{name}\"\nupstream = \"orders\"\npath = \"{path}\"\n"
        )
    };
    let cases = [
        (
            leg("a", "/a/{b.id}") + &leg("b", "/b/{a.id}"),
            "the legs form a cycle (a → b → a)",
        ),
        (leg("a", "/a/{a.id}"), "reads the leg's own answer"),
        (leg("a", "/a/{c.id}"), "names no leg \"c\" (legs: a)"),
        (
            leg("a", "/a/{sku}"),
            "`{sku}` is neither a parameter of the route's pattern (known: id)",
        ),
        (leg("a", "/a/{id"), "has a `{` without its `}`"),
        (leg("my leg", "/a"), "a leg name is letters, digits, `_` and `-`"),
        (leg("a", "a/{id}"), "must start with `/`"),
        (leg("a", "/a") + &leg("a", "/b"), "two legs are named \"a\""),
        (String::new(), "`upstream` is missing (or `[routes.compose]` legs)"),
        (
            "[routes.compose]\nmerge = \"deep\"\n".to_owned() + &leg("a", "/a"),
            "unknown merge \"deep\" (known: flat, nest)",
        ),
        (
            "[routes.compose]\n".to_owned(),
            "needs at least one leg",
        ),
        (
            "upstream = \"orders\"\n".to_owned() + &leg("a", "/a"),
            "a composed route takes no `upstream`",
        ),
        (
            "strip_prefix = \"/x\"\n".to_owned() + &leg("a", "/a"),
            "`strip_prefix` does not apply to a composed route",
        ),
        (
            "[[routes.compose.legs]]\nname = \"a\"\nupstream = \"ordrs\"\npath = \"/a\"\n".to_owned(),
            "unknown upstream \"ordrs\" (did you mean \"orders\"?",
        ),
        (
            "[[routes.compose.legs]]\nname = \"a\"\nupstream = \"orders\"\npath = \"/a\"\nmethod = \"get\"\n"
                .to_owned(),
            "is not an upper-case method",
        ),
    ];
    for (legs, want) in cases {
        let text = route(&legs);
        match Config::parse(&SourceFile::new("t.toml", text.clone())) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => {
                let all = e.messages();
                assert!(
                    all.iter().any(|m| m.contains(want)),
                    "wanted {want:?} in {all:?}\n{text}"
                );
            }
        }
    }
}

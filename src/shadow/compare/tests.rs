use http::HeaderValue;
use proptest::prelude::*;
use serde_json::json;

use super::*;

fn none() -> Ignore {
    Ignore::default()
}

fn pointers(d: &[Difference]) -> Vec<&str> {
    d.iter().map(|d| d.pointer.as_str()).collect()
}

#[test]
fn key_order_and_number_spelling_do_not_count() {
    let a: Value = serde_json::from_str(r#"{"a": 1, "b": {"x": 2.0, "y": [1, 2]}}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{"b": {"y": [1, 2], "x": 2}, "a": 1.0}"#).unwrap();
    assert_eq!(diff_json(&a, &b, &none()), []);
    let c: Value = serde_json::from_str(r#"{"a": 1e0, "b": {"x": 20e-1, "y": [1, 2]}}"#).unwrap();
    assert_eq!(diff_json(&a, &c, &none()), []);
}

#[test]
fn differences_are_named_by_pointer() {
    let a = json!({"id": 1, "created_at": "2026-03-02", "lines": [{"sku": "A"}, {"sku": "B"}], "a/b": 1, "t~": 1});
    let b = json!({"id": 1, "created_at": "2026-03-02T00:00:00Z", "lines": [{"sku": "A"}], "a/b": 2, "t~": 2, "new": true});
    let d = diff_json(&a, &b, &none());
    assert_eq!(
        pointers(&d),
        ["/created_at", "/lines/1", "/a~1b", "/t~0", "/new"]
    );
    assert_eq!(d[0].primary, Some(json!("2026-03-02")));
    assert_eq!(d[0].shadow, Some(json!("2026-03-02T00:00:00Z")));
    assert_eq!(d[1].shadow, None, "absent on the shadow side");
    assert_eq!(d[4].primary, None, "absent on the primary side");
    // Type changes are differences.
    assert_eq!(
        pointers(&diff_json(&json!({"n": 1}), &json!({"n": "1"}), &none())),
        ["/n"]
    );
}

#[test]
fn ignore_pointers_with_stars() {
    let a = json!({"meta": {"generated_at": 1, "v": 1}, "items": [{"updated_at": 1, "p": 1}, {"updated_at": 2, "p": 2}]});
    let b = json!({"meta": {"generated_at": 9, "v": 1}, "items": [{"updated_at": 7, "p": 1}, {"updated_at": 8, "p": 3}]});
    let ig = Ignore::parse(&["/meta/generated_at", "/items/*/updated_at"]).unwrap();
    assert_eq!(pointers(&diff_json(&a, &b, &ig)), ["/items/1/p"]);
    // A pointer covers everything below it.
    let ig = Ignore::parse(&["/items"]).unwrap();
    assert_eq!(pointers(&diff_json(&a, &b, &ig)), ["/meta/generated_at"]);
    // Escapes.
    let ig = Ignore::parse(&["/a~1b"]).unwrap();
    assert_eq!(diff_json(&json!({"a/b": 1}), &json!({"a/b": 2}), &ig), []);
    assert_eq!(
        Ignore::parse(&["meta"]),
        Err(PointerError::NoSlash("meta".into()))
    );
    assert_eq!(
        Ignore::parse(&["/a~2"]),
        Err(PointerError::BadEscape("/a~2".into()))
    );
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn status_headers_and_bodies() {
    let json_ct = headers(&[
        ("content-type", "application/json; charset=utf-8"),
        ("x-v", "1"),
    ]);
    let json_ct2 = headers(&[("content-type", "application/problem+json"), ("x-v", "2")]);
    let a = Answer {
        status: 200,
        headers: &json_ct,
        body: br#"{"a":1}"#,
    };
    let b = Answer {
        status: 404,
        headers: &json_ct2,
        body: br#"{"a":2}"#,
    };
    let xv = [HeaderName::from_static("x-v")];
    let d = compare(&a, &b, &xv, &none());
    assert_eq!(
        pointers(&d),
        ["(status)", "(header content-type)", "(header x-v)", "/a"]
    );
    // Without compare_headers, x-v is not looked at.
    assert_eq!(pointers(&compare(&a, &b, &[], &none())).len(), 3);
    // Not JSON: byte for byte.
    let text = headers(&[("content-type", "text/html")]);
    let same = Answer {
        status: 200,
        headers: &text,
        body: b"<p>hi</p>",
    };
    assert_eq!(compare(&same, &same, &[], &none()), []);
    let other = Answer {
        status: 200,
        headers: &text,
        body: b"<p>hi!</p>",
    };
    assert_eq!(pointers(&compare(&same, &other, &[], &none())), ["(body)"]);
    // JSON content-type but a body that does not parse: compared as bytes.
    let broken = Answer {
        status: 200,
        headers: &json_ct,
        body: b"{not json",
    };
    assert_eq!(pointers(&compare(&a, &broken, &[], &none())), ["(body)"]);
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The same object with its keys in reverse order, recursively.
fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(reversed).collect()),
        v => v.clone(),
    }
}

proptest! {
    /// A value never differs from itself, however its keys are ordered.
    #[test]
    fn a_value_equals_itself_in_any_key_order(v in arb_json()) {
        prop_assert_eq!(diff_json(&v, &v, &none()), vec![]);
        prop_assert_eq!(diff_json(&v, &reversed(&v), &none()), vec![]);
    }

    /// Ignoring every pointer that differed leaves nothing, and every
    /// reported pointer is distinct.
    #[test]
    fn ignoring_what_differs_leaves_no_difference(a in arb_json(), b in arb_json()) {
        let d = diff_json(&a, &b, &none());
        let ps: Vec<String> = d.iter().map(|d| d.pointer.clone()).collect();
        let mut unique = ps.clone();
        unique.sort();
        unique.dedup();
        prop_assert_eq!(unique.len(), ps.len());
        if !ps.iter().any(|p| p.is_empty()) {
            let ig = Ignore::parse(&ps).unwrap();
            prop_assert_eq!(diff_json(&a, &b, &ig), vec![]);
        }
    }
}

use serde_json::json;

use super::*;

fn diff(pointer: &str, primary: Value, shadow: Value) -> Difference {
    Difference {
        pointer: pointer.into(),
        primary: Some(primary),
        shadow: Some(shadow),
    }
}

/// What a primary that stamps every answer differs by from itself.
fn stamps(n: u64) -> Vec<Difference> {
    vec![
        diff(
            "/meta/generated_at",
            json!(format!("2026-03-02T10:00:{n:02}Z")),
            json!(format!("2026-03-02T10:01:{n:02}Z")),
        ),
        diff(
            "/meta/request_id",
            json!(format!("a{n}")),
            json!(format!("b{n}")),
        ),
    ]
}

fn outcome_counts(r: &Report) -> Vec<(&'static str, u64)> {
    r.counts().iter().map(|(o, n)| (o.as_str(), *n)).collect()
}

#[test]
fn reports_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Report>();
    check::<Reports>();
}

#[test]
fn outcomes_are_counted_and_the_window_is_taken_once() {
    let r = Report::new("orders");
    assert_eq!(r.compared(&[], "GET", "/a"), Outcome::Match);
    assert_eq!(
        r.compared(&[diff("/total", json!(1), json!(2))], "GET", "/a"),
        Outcome::Mismatch
    );
    assert_eq!(r.compared(&[], "GET", "/b"), Outcome::Match);
    r.error();
    r.skipped();
    r.skipped();
    assert_eq!(
        outcome_counts(&r),
        [("match", 2), ("mismatch", 1), ("error", 1), ("skipped", 2)]
    );
    // Errors and skipped copies are not comparisons.
    assert_eq!(r.take_window(), (3, 1));
    assert_eq!(r.take_window(), (0, 0));
    r.compared(&[diff("(status)", json!(200), json!(500))], "GET", "/c");
    assert_eq!(r.take_window(), (1, 1));
    // The counters never go back.
    assert_eq!(r.counts()[1], (Outcome::Mismatch, 2));
    let v = r.view();
    assert_eq!(
        v["outcomes"],
        json!({"match": 2, "mismatch": 2, "error": 1, "skipped": 2})
    );
    assert_eq!(v["match_rate"], json!(0.5));
}

#[test]
fn an_empty_report_has_no_rates() {
    let v = Report::new("x").view();
    assert_eq!(v["match_rate"], Value::Null);
    assert_eq!(v["pointers"], json!([]));
    assert_eq!(v["samples"], json!([]));
    assert_eq!(
        v["calibration"],
        json!({"runs": 0, "min_runs": MIN_CALIBRATIONS})
    );
}

#[test]
fn array_indices_count_as_star() {
    assert_eq!(
        counted_pointer("/items/3/updated_at"),
        "/items/*/updated_at"
    );
    assert_eq!(counted_pointer("/items/0"), "/items/*");
    assert_eq!(counted_pointer("/a/10/b/25"), "/a/*/b/*");
    // Not array indices: a leading zero, a sign, letters, the empty key.
    assert_eq!(counted_pointer("/a/01/-1/x1/"), "/a/01/-1/x1/");
    assert_eq!(counted_pointer(""), "");
    assert_eq!(counted_pointer("(status)"), "(status)");
    assert_eq!(counted_pointer("(header etag)"), "(header etag)");
    // Keys are the answers' to choose: long ones are cut, on a char boundary.
    let long = format!("/{}", "é".repeat(400));
    let p = counted_pointer(&long);
    assert!(p.len() <= MAX_POINTER_LEN + '…'.len_utf8(), "{}", p.len());
    assert!(p.ends_with('…'));
}

#[test]
fn one_pointer_counts_once_per_comparison() {
    let r = Report::new("x");
    r.compared(
        &[
            diff("/items/0/price", json!(1), json!(2)),
            diff("/items/1/price", json!(3), json!(4)),
            diff("/items/7/price", json!(5), json!(6)),
        ],
        "GET",
        "/cart",
    );
    let (counts, class) = r.pointer("/items/*/price").unwrap();
    assert_eq!(counts.mismatches, 1);
    assert_eq!(class, Classification::Mismatch);
    // The sample shows the first exact difference and counts the others.
    let s = &r.view()["samples"][0];
    assert_eq!(
        s["differences"],
        json!([{"pointer": "/items/0/price", "primary": 1, "shadow": 2}])
    );
    assert_eq!(s["omitted"], 2);
}

#[test]
fn top_pointers_are_the_most_frequent_first() {
    let r = Report::new("x");
    // /b differs 3 times, /a and /c twice (tie broken by name), /d once.
    for ps in [
        &["/b", "/a", "/d"][..],
        &["/b", "/c"],
        &["/b", "/c", "/a"],
        &[],
    ] {
        let diffs: Vec<Difference> = ps.iter().map(|p| diff(p, json!(1), json!(2))).collect();
        r.compared(&diffs, "GET", "/");
    }
    let v = r.view();
    let top: Vec<(&str, u64)> = v["pointers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pointer"].as_str().unwrap(),
                p["mismatches"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(top, [("/b", 3), ("/a", 2), ("/c", 2), ("/d", 1)]);
    assert_eq!(
        v["pointers"][0],
        json!({
            "pointer": "/b",
            "mismatches": 3,
            "mismatch_rate": 0.75,
            "noise": 0,
            "noise_rate": null,
            "classification": "mismatch",
        })
    );
    assert_eq!(v["pointers_tracked"], 4);

    // At most TOP_POINTERS are shown.
    let r = Report::new("x");
    for i in 0..TOP_POINTERS + 5 {
        // Pointer k differs k+1 times: the most frequent are the highest.
        let diffs: Vec<Difference> = (i..TOP_POINTERS + 5)
            .map(|k| diff(&format!("/k{k}"), json!(1), json!(2)))
            .collect();
        r.compared(&diffs, "GET", "/");
    }
    let v = r.view();
    let top = v["pointers"].as_array().unwrap();
    assert_eq!(top.len(), TOP_POINTERS);
    assert_eq!(top[0]["pointer"], format!("/k{}", TOP_POINTERS + 4));
    assert_eq!(top[TOP_POINTERS - 1]["pointer"], "/k5");
    assert_eq!(v["pointers_tracked"], TOP_POINTERS + 5);
}

#[test]
fn the_last_twenty_mismatches_are_kept_newest_first() {
    let r = Report::new("x");
    for i in 0..SAMPLES + 5 {
        r.compared(
            &[diff("/n", json!(i), json!(i + 1))],
            "GET",
            &format!("/orders/{i}"),
        );
        // Matches are not samples.
        r.compared(&[], "GET", "/fine");
    }
    let v = r.view();
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), SAMPLES);
    let paths: Vec<&str> = samples
        .iter()
        .map(|s| s["path"].as_str().unwrap())
        .collect();
    let want: Vec<String> = (5..SAMPLES + 5)
        .rev()
        .map(|i| format!("/orders/{i}"))
        .collect();
    assert_eq!(paths, want);
    let s = &samples[0];
    assert_eq!(s["method"], "GET");
    assert_eq!(
        s["differences"],
        json!([{"pointer": "/n", "primary": SAMPLES + 4, "shadow": SAMPLES + 5}])
    );
    assert_eq!(s["omitted"], 0);
    let at = s["at"].as_str().unwrap();
    assert!(at.len() == 20 && at.ends_with('Z'), "{at}");
}

#[test]
fn samples_stay_small() {
    let r = Report::new("x");
    let mut diffs: Vec<Difference> = (0..SAMPLE_DIFFERENCES + 3)
        .map(|i| diff(&format!("/f{i}"), json!(i), json!(-1)))
        .collect();
    // A field absent on one side has no key for that side.
    diffs.push(Difference {
        pointer: "/gone".into(),
        primary: Some(json!("x")),
        shadow: None,
    });
    diffs[0].shadow = Some(json!("y".repeat(SAMPLE_VALUE_LEN * 4)));
    diffs[1].primary = None;
    r.compared(&diffs, "GET", &format!("/{}", "p".repeat(5000)));
    let v = r.view();
    let s = &v["samples"][0];
    let listed = s["differences"].as_array().unwrap();
    assert_eq!(listed.len(), SAMPLE_DIFFERENCES);
    assert_eq!(s["omitted"], 4);
    let long = listed[0]["shadow"].as_str().unwrap();
    assert!(long.len() < SAMPLE_VALUE_LEN + 64, "{}", long.len());
    assert!(long.ends_with(&format!("… ({} bytes of JSON)", SAMPLE_VALUE_LEN * 4 + 2)));
    assert_eq!(listed[1], json!({"pointer": "/f1", "shadow": -1}));
    assert!(s["path"].as_str().unwrap().len() < 1100);
}

#[test]
fn the_noise_rule() {
    let c = |mismatches, noise| PointerCounts { mismatches, noise };
    use Classification::{Mismatch, Noise};
    // Never noise before MIN_CALIBRATIONS runs, nor without a calibration that saw it.
    assert_eq!(
        classify(c(100, MIN_CALIBRATIONS - 1), 100, MIN_CALIBRATIONS - 1),
        Mismatch
    );
    assert_eq!(
        classify(c(100, MIN_CALIBRATIONS), 100, MIN_CALIBRATIONS),
        Noise
    );
    assert_eq!(classify(c(1, 0), 100, 1000), Mismatch);
    // Differs on every answer, against the primary too: noise.
    assert_eq!(classify(c(1000, 20), 1000, 20), Noise);
    // Differs against the shadow always, between primaries one time in ten: real.
    assert_eq!(classify(c(1000, 10), 1000, 100), Mismatch);
    // At the threshold 0.5 * 1.5 + 0.02 = 0.77: noise up to it, mismatch above.
    assert_eq!(classify(c(77, 50), 100, 100), Noise);
    assert_eq!(classify(c(78, 50), 100, 100), Mismatch);
    // Small rates: the absolute slack.
    assert_eq!(classify(c(3, 1), 100, 100), Noise);
    assert_eq!(classify(c(4, 1), 100, 100), Mismatch);
    // Seen only in calibration.
    assert_eq!(classify(c(0, 5), 0, 50), Noise);
}

#[test]
fn calibration_turns_stamps_into_noise_and_leaves_real_differences() {
    let r = Report::new("x");
    // Before calibration has run enough, a stamp is a mismatch.
    assert_eq!(r.compared(&stamps(0), "GET", "/o/0"), Outcome::Mismatch);
    for n in 0..MIN_CALIBRATIONS - 1 {
        r.calibrated(&stamps(n));
    }
    assert_eq!(r.compared(&stamps(1), "GET", "/o/0"), Outcome::Mismatch);
    r.calibrated(&stamps(9));
    assert_eq!(r.calibrations(), MIN_CALIBRATIONS);
    // Now answers that differ only by stamps are matches...
    for n in 2..31 {
        assert_eq!(r.compared(&stamps(n), "GET", "/o/1"), Outcome::Match);
    }
    // ...while a real difference is still a mismatch, its sample without the stamps.
    let mut diffs = stamps(99);
    diffs.push(diff("/total", json!(10), json!(12)));
    assert_eq!(r.compared(&diffs, "GET", "/o/2"), Outcome::Mismatch);
    assert_eq!(
        outcome_counts(&r),
        [("match", 29), ("mismatch", 3), ("error", 0), ("skipped", 0)]
    );
    let v = r.view();
    assert_eq!(
        v["samples"][0]["differences"],
        json!([{"pointer": "/total", "primary": 10, "shadow": 12}])
    );
    assert_eq!(v["samples"][0]["omitted"], 0);
    let by_name = |name: &str| {
        v["pointers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pointer"] == name)
            .cloned()
            .unwrap()
    };
    let ts = by_name("/meta/generated_at");
    assert_eq!(ts["mismatches"], 32);
    assert_eq!(ts["noise"], MIN_CALIBRATIONS);
    assert_eq!(ts["noise_rate"], 1.0);
    assert_eq!(ts["mismatch_rate"], 1.0);
    assert_eq!(ts["classification"], "noise");
    assert_eq!(by_name("/meta/request_id")["classification"], "noise");
    let total = by_name("/total");
    assert_eq!(total["mismatches"], 1);
    assert_eq!(total["noise"], 0);
    assert_eq!(total["noise_rate"], 0.0);
    assert_eq!(total["classification"], "mismatch");
    assert_eq!(v["calibration"]["runs"], MIN_CALIBRATIONS);
}

#[test]
fn a_field_the_primary_rarely_changes_but_the_shadow_always_does_is_a_mismatch() {
    let r = Report::new("x");
    // The primary's answers differ at /rank one time in ten...
    for n in 0..50 {
        let diffs = if n % 10 == 0 {
            vec![diff("/rank", json!(1), json!(2))]
        } else {
            vec![]
        };
        r.calibrated(&diffs);
    }
    // ...the shadow's on every answer.
    for _ in 0..20 {
        assert_eq!(
            r.compared(&[diff("/rank", json!(1), json!(3))], "GET", "/"),
            Outcome::Mismatch
        );
    }
    let (counts, class) = r.pointer("/rank").unwrap();
    assert_eq!(
        counts,
        PointerCounts {
            mismatches: 20,
            noise: 5
        }
    );
    assert_eq!(class, Classification::Mismatch);
}

#[test]
fn pointers_tracked_are_bounded_and_the_rest_is_other() {
    let r = Report::new("x");
    for i in 0..MAX_POINTERS + 50 {
        r.compared(&[diff(&format!("/k{i}"), json!(1), json!(2))], "GET", "/");
    }
    let v = r.view();
    assert_eq!(v["pointers_tracked"], MAX_POINTERS + 1);
    let (other, _) = r.pointer(OTHER).unwrap();
    assert_eq!(other.mismatches, 50);
    assert_eq!(v["pointers"][0]["pointer"], OTHER);
    // A tracked pointer keeps counting; an untracked one still goes to (other).
    r.compared(&[diff("/k0", json!(1), json!(2))], "GET", "/");
    assert_eq!(r.pointer("/k0").unwrap().0.mismatches, 2);
    // (other) mixes pointers: never noise, however often calibration fills it.
    for i in 0..MIN_CALIBRATIONS * 2 {
        r.calibrated(&[diff(&format!("/new{i}"), json!(1), json!(2))]);
    }
    let (other, class) = r.pointer(OTHER).unwrap();
    assert_eq!(other.noise, MIN_CALIBRATIONS * 2);
    assert_eq!(class, Classification::Mismatch);
    assert_eq!(
        r.compared(&[diff("/new0", json!(1), json!(2))], "GET", "/"),
        Outcome::Mismatch
    );
    assert_eq!(r.view()["pointers_tracked"], MAX_POINTERS + 1);
}

#[test]
fn reports_outlive_reloads_while_name_and_basis_stay() {
    let reports = Reports::default();
    let first = reports.sync([("orders", "orders-v2"), ("carts", "carts-v2")]);
    first["orders"].error();
    assert_eq!(reports.get("orders").unwrap().basis(), "orders-v2");

    // Kept: the same report, its counts intact.
    let next = reports.sync([("orders", "orders-v2"), ("carts", "carts-v3")]);
    assert!(Arc::ptr_eq(&first["orders"], &next["orders"]));
    assert_eq!(next["orders"].counts()[2], (Outcome::Error, 1));
    // A new basis starts afresh.
    assert!(!Arc::ptr_eq(&first["carts"], &next["carts"]));

    // Gone from the list, gone from the reports; `all` is sorted by name.
    reports.sync([("zeta", "z"), ("alpha", "a")]);
    assert!(reports.get("orders").is_none());
    let names: Vec<String> = reports.all().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["alpha", "zeta"]);
}

//! Shift (SPEC 2.2) end to end: a route on `legacy` moves a share of its
//! traffic to `new`; sticky users stay on their side, raising the share only
//! moves users forward, `force_header` picks a side, and every request of a
//! shifted route is counted on its side for the ramp.

mod support;

use std::collections::HashMap;

use http::Request;
use http_body_util::Full;
use strangler::shift::{BUCKETS, Side, bucket};
use support::*;

/// Two backends and a route shifting `percent`% from `legacy` to `new`.
fn shifted(legacy: &Server, new: &Server, shift: &str) -> String {
    format!(
        r#"
[upstreams.legacy]
targets = ["{}"]
[upstreams.new]
targets = ["{}"]
[default]
upstream = "legacy"
[[routes]]
name = "customers"
prefix = "/api/customers"
strip_prefix = "/api/customers"
upstream = "legacy"
shift = {{ to = "new", {shift} }}
"#,
        legacy.url(),
        new.url()
    )
}

/// Which backend answered (the test backend's echo names itself).
async fn served_by(url: &str, headers: &[(&str, &str)]) -> String {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let a = send(&h1(), req.body(Full::default()).unwrap()).await;
    assert_eq!(a.status, 200, "{}", a.text());
    a.json()["server"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sticky_users_land_where_their_bucket_says_and_stay_there() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&shifted(
        &legacy,
        &new,
        "percent = 30, sticky = \"cookie:session\"",
    ))
    .await;
    let mut on_new = 0;
    for i in 0..200 {
        let user = format!("user-{i}");
        let cookie = format!("theme=dark; session={user}");
        let want = if bucket(user.as_bytes()) < 3000 {
            "new"
        } else {
            "legacy"
        };
        for _ in 0..3 {
            let got = served_by(&p.url("/api/customers/1"), &[("cookie", &cookie)]).await;
            assert_eq!(got, want, "{user} (bucket {})", bucket(user.as_bytes()));
        }
        on_new += usize::from(want == "new");
    }
    // The buckets themselves spread: 30% of 200 users, loosely.
    assert!((35..=85).contains(&on_new), "{on_new} of 200 users on new");
}

#[tokio::test]
async fn raising_the_share_only_moves_users_forward() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&shifted(
        &legacy,
        &new,
        "percent = 20, sticky = \"header:x-user\"",
    ))
    .await;
    let users: Vec<String> = (0..150).map(|i| format!("u{i}")).collect();
    let mut before = HashMap::new();
    for u in &users {
        before.insert(
            u,
            served_by(&p.url("/api/customers/"), &[("x-user", u)]).await,
        );
    }
    p.proxy.install(config(&shifted(
        &legacy,
        &new,
        "percent = 60, sticky = \"header:x-user\"",
    )));
    let mut moved = 0;
    for u in &users {
        let after = served_by(&p.url("/api/customers/"), &[("x-user", u)]).await;
        if before[u] == "new" {
            assert_eq!(after, "new", "{u} moved back to the old side");
        } else if after == "new" {
            moved += 1;
        }
        let want_new = u32::from(bucket(u.as_bytes())) < 6000;
        assert_eq!(after == "new", want_new, "{u}");
    }
    assert!(moved > 0, "raising the share moved nobody");
}

#[tokio::test]
async fn requests_without_the_key_are_spread_per_request() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&shifted(
        &legacy,
        &new,
        "percent = 50, sticky = \"cookie:session\"",
    ))
    .await;
    let mut new_count = 0;
    for _ in 0..200 {
        if served_by(&p.url("/api/customers/1"), &[]).await == "new" {
            new_count += 1;
        }
    }
    // Binomial(200, 0.5): the standard deviation is about 7.
    assert!((60..=140).contains(&new_count), "{new_count} of 200 on new");
}

#[tokio::test]
async fn force_header_and_the_extremes() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&shifted(
        &legacy,
        &new,
        "percent = 0, sticky = \"ip\", force_header = \"x-strangler-side\"",
    ))
    .await;
    let url = p.url("/api/customers/7");
    for _ in 0..20 {
        assert_eq!(served_by(&url, &[]).await, "legacy");
    }
    assert_eq!(served_by(&url, &[("x-strangler-side", "new")]).await, "new");
    assert_eq!(
        served_by(&url, &[("x-strangler-side", "other")]).await,
        "legacy"
    );
    // Other routes are not shifted.
    assert_eq!(
        served_by(&p.url("/elsewhere"), &[("x-strangler-side", "new")]).await,
        "legacy"
    );

    p.proxy.install(config(&shifted(
        &legacy,
        &new,
        "percent = 100, sticky = \"ip\", force_header = \"x-strangler-side\"",
    )));
    for _ in 0..20 {
        assert_eq!(served_by(&url, &[]).await, "new");
    }
    assert_eq!(
        served_by(&url, &[("x-strangler-side", "legacy")]).await,
        "legacy"
    );
    // The shift state is the same one across the reload.
    assert_eq!(
        p.proxy.shifts.get("customers").unwrap().basis_points(),
        BUCKETS
    );
}

#[tokio::test]
async fn every_request_is_counted_on_its_side() {
    let (legacy, new) = (backend("legacy").await, backend("new").await);
    let p = start(&shifted(
        &legacy,
        &new,
        "percent = 50, sticky = \"header:x-user\"",
    ))
    .await;
    let (mut old_n, mut new_n, mut new_fail) = (0, 0, 0);
    for i in 0..60 {
        let user = format!("user-{i}");
        let side = if bucket(user.as_bytes()) < 5000 {
            Side::New
        } else {
            Side::Old
        };
        // Every third request fails on whichever side it lands.
        let path = if i % 3 == 0 {
            "/api/customers/status/503"
        } else {
            "/api/customers/ok"
        };
        let a = send(
            &h1(),
            Request::get(p.url(path))
                .header("x-user", &user)
                .body(Full::default())
                .unwrap(),
        )
        .await;
        match side {
            Side::Old => old_n += 1,
            Side::New => {
                new_n += 1;
                new_fail += usize::from(a.status == 503);
            }
        }
    }
    assert!(
        new_fail > 0 && old_n > 0 && new_n > 0,
        "{old_n} {new_n} {new_fail}"
    );
    let state = p.proxy.shifts.get("customers").unwrap();
    let (old, new) = state.window.take();
    assert_eq!(old.requests, old_n);
    assert_eq!(new.requests, new_n);
    assert_eq!(new.failures as usize, new_fail);
    assert!(new.p99.is_some() && old.p99.is_some());
}

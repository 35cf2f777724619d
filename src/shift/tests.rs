use std::net::{IpAddr, Ipv4Addr};

use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use proptest::prelude::*;

use super::*;
use crate::config::{Shift, Sticky};

fn shift(sticky: Option<Sticky>) -> Shift {
    Shift {
        to: 1,
        basis_points: 0,
        sticky,
        force_header: Some(HeaderName::from_static("x-side")),
        ramp: None,
    }
}

fn side(s: &Shift, bp: u16, uri: &str, headers: &[(&str, &str)], ip: IpAddr) -> Side {
    let uri: Uri = uri.parse().unwrap();
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let req = Request {
        uri: &uri,
        headers: &map,
        client_ip: ip,
    };
    choose(s, bp, ["legacy", "customers"], &req)
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The hash is part of the contract (replicas and restarts must agree, and
/// docs/config.md tells how to compute it): these values, computed by an
/// independent Python implementation of the documented algorithm, must never
/// change.
#[test]
fn buckets_are_fixed() {
    assert_eq!(
        [bucket(b"alice"), bucket(b"bob"), bucket(b"10.0.0.1")],
        [7236, 9952, 1640],
        "the sticky hash changed: users would switch sides on upgrade"
    );
}

#[test]
fn sticky_keys_are_read_from_where_the_config_says() {
    let cookie = shift(Some(Sticky::Cookie("session".into())));
    let b = bucket(b"abc");
    let at = |s: &Shift, uri: &str, h: &[(&str, &str)], ip| {
        (side(s, b, uri, h, ip), side(s, b + 1, uri, h, ip))
    };
    // bucket b: not below b (old), below b + 1 (new).
    let split = (Side::Old, Side::New);
    assert_eq!(
        at(
            &cookie,
            "/",
            &[("cookie", "theme=dark; session=abc; x=1")],
            IP
        ),
        split
    );
    assert_eq!(
        at(&cookie, "/", &[("cookie", "session=\"abc\"")], IP),
        split
    );
    assert_eq!(
        at(
            &cookie,
            "/",
            &[("cookie", "a=1"), ("cookie", "session=abc")],
            IP
        ),
        split
    );
    let header = shift(Some(Sticky::Header(HeaderName::from_static("x-user"))));
    assert_eq!(at(&header, "/", &[("x-user", "abc")], IP), split);
    let query = shift(Some(Sticky::Query("uid".into())));
    assert_eq!(at(&query, "/p?a=1&uid=abc&uid=zzz", &[], IP), split);
    let ip_shift = shift(Some(Sticky::Ip));
    let ip: IpAddr = "10.1.2.3".parse().unwrap();
    let b_ip = bucket(b"10.1.2.3");
    assert_eq!(side(&ip_shift, b_ip, "/", &[], ip), Side::Old);
    assert_eq!(side(&ip_shift, b_ip + 1, "/", &[], ip), Side::New);
}

#[test]
fn force_header_names_a_side() {
    let s = shift(None);
    assert_eq!(side(&s, 0, "/", &[("x-side", "customers")], IP), Side::New);
    assert_eq!(
        side(&s, 10_000, "/", &[("x-side", "legacy")], IP),
        Side::Old
    );
    // Any other value is ignored.
    assert_eq!(side(&s, 0, "/", &[("x-side", "orders")], IP), Side::Old);
}

#[test]
fn the_extremes_need_no_key() {
    let s = shift(Some(Sticky::Cookie("session".into())));
    for _ in 0..100 {
        assert_eq!(side(&s, 0, "/", &[], IP), Side::Old);
        assert_eq!(side(&s, 10_000, "/", &[], IP), Side::New);
    }
}

#[test]
fn requests_without_the_key_are_spread_per_request() {
    let s = shift(Some(Sticky::Cookie("session".into())));
    let new = (0..10_000)
        .filter(|_| side(&s, 3_000, "/", &[], IP) == Side::New)
        .count();
    // 30% of 10,000: the binomial standard deviation is about 46.
    assert!((2_700..=3_300).contains(&new), "{new}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Over many users the new side's share is the configured one.
    #[test]
    fn shares_hold_over_many_keys(percent in 1u16..100, seed in any::<u64>()) {
        let s = shift(Some(Sticky::Header(HeaderName::from_static("x-user"))));
        let n = 20_000u32;
        let new = (0..n)
            .filter(|i| {
                let user = format!("user-{seed}-{i}");
                side(&s, percent * 100, "/", &[("x-user", user.as_str())], IP) == Side::New
            })
            .count() as f64;
        let want = f64::from(n) * f64::from(percent) / 100.0;
        // Six standard deviations of a binomial: fails by chance about never.
        let sd = (want * (1.0 - f64::from(percent) / 100.0)).sqrt();
        prop_assert!((new - want).abs() <= 6.0 * sd + 1.0, "{new} vs {want}");
    }

}

proptest! {
    /// Raising the share never moves a key back to the old side, and the
    /// same key always lands on the same side.
    #[test]
    fn raising_the_share_only_moves_keys_forward(
        key in "[a-zA-Z0-9]{1,24}",
        a in 0u16..=10_000,
        b in 0u16..=10_000,
    ) {
        let s = shift(Some(Sticky::Cookie("session".into())));
        let cookie = format!("session={key}");
        let (lo, hi) = (a.min(b), a.max(b));
        let at = |bp| side(&s, bp, "/", &[("cookie", cookie.as_str())], IP);
        prop_assert_eq!(at(lo), at(lo));
        if at(lo) == Side::New {
            prop_assert_eq!(at(hi), Side::New);
        }
    }
}

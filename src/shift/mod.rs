//! Shift (SPEC 2.2): which side of a shifted route a request goes to — the
//! route's own upstream (the old side) or `shift.to` (the new side).
//!
//! A user's key (`sticky`) is hashed into one of 10,000 buckets; the bucket
//! goes to the new side when it is below the share in hundredths of a percent.
//! The hash is fixed and seedless ([`bucket`]), so every replica, and the same
//! proxy after a restart, puts a key on the same side, and raising the share
//! only ever moves keys from the old side to the new one. Requests without the
//! key are spread per request.
//!
//! The share itself is runtime state ([`state::ShiftState`]), because the ramp
//! moves it between reloads.

pub mod persist;
pub mod ramp;
pub mod state;
pub mod stats;

use std::net::IpAddr;

use http::{HeaderMap, Uri, header};

use crate::config::{Shift, Sticky};

/// Buckets a key can fall into: the share's resolution is 1/10,000.
pub const BUCKETS: u16 = 10_000;

/// The side a request was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The route's own `upstream`: what is being migrated away from.
    Old,
    /// `shift.to`: the service taking over.
    New,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Old => "old",
            Side::New => "new",
        }
    }
}

/// What [`choose`] looks at in a request.
pub struct Request<'a> {
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub client_ip: IpAddr,
}

/// Picks the side for `req` when `basis_points` (0..=10000) of the traffic
/// goes to the new side. `names` are the two sides' upstream names, which a
/// `force_header` value may give.
pub fn choose(shift: &Shift, basis_points: u16, names: [&str; 2], req: &Request<'_>) -> Side {
    if let Some(h) = &shift.force_header
        && let Some(v) = req.headers.get(h)
    {
        let v = v.as_bytes();
        if v == names[0].as_bytes() {
            return Side::Old;
        }
        if v == names[1].as_bytes() {
            return Side::New;
        }
    }
    if basis_points == 0 {
        return Side::Old;
    }
    if basis_points >= BUCKETS {
        return Side::New;
    }
    let b = match &shift.sticky {
        Some(sticky) => match key(sticky, req) {
            Some(k) => bucket(&k),
            None => fastrand::u16(..BUCKETS),
        },
        None => fastrand::u16(..BUCKETS),
    };
    if b < basis_points {
        Side::New
    } else {
        Side::Old
    }
}

/// The user's key as bytes, when the request carries one (what `explain`
/// shows, and what [`bucket`] hashes).
pub fn sticky_key(sticky: &Sticky, req: &Request<'_>) -> Option<Vec<u8>> {
    key(sticky, req)
}

fn key(sticky: &Sticky, req: &Request<'_>) -> Option<Vec<u8>> {
    match sticky {
        Sticky::Ip => Some(req.client_ip.to_string().into_bytes()),
        Sticky::Header(name) => req
            .headers
            .get(name)
            .map(|v| v.as_bytes().to_vec())
            .filter(|v| !v.is_empty()),
        Sticky::Cookie(name) => cookie(req.headers, name).map(<[u8]>::to_vec),
        Sticky::Query(name) => query_param(req.uri.query()?, name).map(|v| v.as_bytes().to_vec()),
    }
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265
/// section 5.4: `name=value` pairs separated by `;`), when present and not empty.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|&b| b == b'=')?;
            let (n, v) = (&pair[..eq], &pair[eq + 1..]);
            (n.trim_ascii() == name.as_bytes()).then(|| trim_quotes(v.trim_ascii()))
        })
        .filter(|v| !v.is_empty())
}

fn trim_quotes(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// The raw (not percent-decoded) value of the first `name=` in `query`, when
/// not empty.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .find_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            (n == name).then_some(v)
        })
        .filter(|v| !v.is_empty())
}

/// The bucket (0..10000) of a sticky key: FNV-1a (64-bit) of the key's
/// bytes, mixed with MurmurHash3's 64-bit finalizer, modulo 10,000. Fixed and
/// seedless on purpose: it is part of the contract that every replica and
/// every restart agree, and other tools may compute it (docs/config.md).
pub fn bucket(key: &[u8]) -> u16 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % u64::from(BUCKETS)) as u16
}

#[cfg(test)]
mod tests;

//! The router: from a normalized request to the route that serves it (SPEC 2.1).
//!
//! Patterns live in a segment trie. A lookup walks it depth first, trying at each
//! position a literal child, then the parameter child, then the catch-alls that
//! end there, so candidates come out most specific first whatever the file
//! order. Routes with the same pattern sit in one list in file order; the first
//! whose conditions accept the request wins, and if none does the walk goes on
//! to the next less specific pattern. The walk only descends along the trie, so
//! its depth is bounded by the longest pattern, not by the request.

pub mod pattern;

use std::collections::HashMap;
use std::ops::Range;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

pub use pattern::{Kind, PathMap, Pattern, PatternError, Segment};

/// What a request must also satisfy, besides its path, for a route to take it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// `methods = [...]`; `None` accepts every method.
    pub methods: Option<Vec<Method>>,
    /// `headers = {...}`: every one must be present with exactly this value.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub host: Option<HostMatch>,
}

/// `host = "shop.example.com"` or `host = "*.example.com"`, compared without
/// the port and ignoring case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMatch {
    Exact(String),
    /// `*.example.com`, stored as `.example.com`: any subdomain, not the domain itself.
    Suffix(String),
}

impl HostMatch {
    pub fn parse(s: &str) -> HostMatch {
        let s = s.to_ascii_lowercase();
        match s.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => HostMatch::Suffix(suffix.to_owned()),
            _ => HostMatch::Exact(s),
        }
    }

    pub fn accepts(&self, host: &str) -> bool {
        let host = strip_port(host);
        match self {
            HostMatch::Exact(h) => host.eq_ignore_ascii_case(h),
            HostMatch::Suffix(sfx) => {
                host.len() > sfx.len()
                    && host
                        .get(host.len() - sfx.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(sfx))
            }
        }
    }
}

impl std::fmt::Display for HostMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMatch::Exact(h) => f.write_str(h),
            HostMatch::Suffix(s) => write!(f, "*{s}"),
        }
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rfind(':') {
        Some(i) if host[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &host[..i],
        _ => host,
    }
}

impl Conditions {
    pub fn accepts(&self, req: &RequestInfo<'_>) -> bool {
        if let Some(h) = &self.host
            && !req.host.is_some_and(|host| h.accepts(host))
        {
            return false;
        }
        if let Some(methods) = &self.methods
            && !methods.contains(req.method)
        {
            return false;
        }
        self.headers
            .iter()
            .all(|(name, want)| req.headers.get_all(name).iter().any(|v| v == want))
    }

    /// True when every request these conditions accept, `self` accepts too.
    pub fn covers(&self, other: &Conditions) -> bool {
        let methods = match (&self.methods, &other.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs.iter().all(|m| mine.contains(m)),
        };
        let host = match (&self.host, &other.host) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(HostMatch::Suffix(s)), Some(HostMatch::Exact(h))) => {
                HostMatch::Suffix(s.clone()).accepts(h)
            }
            (Some(a), Some(b)) => a == b,
        };
        let headers = self.headers.iter().all(|h| other.headers.contains(h));
        methods && host && headers
    }

    pub fn is_empty(&self) -> bool {
        self.methods.is_none() && self.headers.is_empty() && self.host.is_none()
    }
}

/// The parts of a request the router looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a Method,
    /// The normalized path (see [`crate::path`]).
    pub path: &'a str,
    /// The Host (or `:authority`), port included or not.
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// The route chosen for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index of the route, in file order.
    pub route: usize,
    /// Byte ranges of the path captured by the pattern's parameters, in order.
    pub captures: Vec<Range<usize>>,
}

#[derive(Debug, Default)]
struct Node {
    literals: HashMap<Box<str>, usize>,
    param: Option<usize>,
    /// Routes whose pattern ends exactly here, in file order.
    exact: Vec<usize>,
    /// Routes that catch everything below here (`{*rest}` and prefixes), in file order.
    tail: Vec<usize>,
}

struct Entry {
    pattern: Pattern,
    conditions: Conditions,
}

/// An immutable routing table.
pub struct Router {
    nodes: Vec<Node>,
    entries: Vec<Entry>,
}

impl Router {
    /// Builds the table; `routes` are in file order and their index is the route id.
    pub fn new(routes: impl IntoIterator<Item = (Pattern, Conditions)>) -> Router {
        let mut router = Router {
            nodes: vec![Node::default()],
            entries: Vec::new(),
        };
        for (id, (pattern, conditions)) in routes.into_iter().enumerate() {
            let mut node = 0;
            for seg in pattern.walked_segments() {
                node = match seg {
                    Segment::Literal(l) => match router.nodes[node].literals.get(l) {
                        Some(&n) => n,
                        None => {
                            let n = router.push_node();
                            router.nodes[node].literals.insert(l.clone(), n);
                            n
                        }
                    },
                    Segment::Param(_) => match router.nodes[node].param {
                        Some(n) => n,
                        None => {
                            let n = router.push_node();
                            router.nodes[node].param = Some(n);
                            n
                        }
                    },
                    Segment::Rest(_) => unreachable!("walked_segments excludes {{*rest}}"),
                };
            }
            if pattern.has_tail() {
                router.nodes[node].tail.push(id);
            } else {
                router.nodes[node].exact.push(id);
            }
            router.entries.push(Entry {
                pattern,
                conditions,
            });
        }
        router
    }

    fn push_node(&mut self) -> usize {
        self.nodes.push(Node::default());
        self.nodes.len() - 1
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most specific route accepting `req`, or `None` (then the default applies).
    pub fn find(&self, req: &RequestInfo<'_>) -> Option<Match> {
        if !req.path.starts_with('/') {
            return None;
        }
        let mut caps = Vec::new();
        self.walk(0, Some(1), req, &mut caps)
    }

    /// `pos` is where the next segment starts in `req.path`, `None` once the
    /// path is used up.
    fn walk(
        &self,
        node: usize,
        pos: Option<usize>,
        req: &RequestInfo<'_>,
        caps: &mut Vec<Range<usize>>,
    ) -> Option<Match> {
        let n = &self.nodes[node];
        let Some(pos) = pos else {
            // Path used up: patterns ending here, then prefixes ending here.
            return self.first_accepting(&n.exact, req, caps, None).or_else(|| {
                let prefixes = n
                    .tail
                    .iter()
                    .copied()
                    .filter(|&id| self.entries[id].pattern.kind() == Kind::Prefix);
                self.first_accepting_iter(prefixes, req, caps, None)
            });
        };
        let path = req.path;
        let end = path[pos..].find('/').map_or(path.len(), |i| pos + i);
        let segment = &path[pos..end];
        let next = (end < path.len()).then_some(end + 1);

        if let Some(&child) = n.literals.get(segment)
            && let Some(m) = self.walk(child, next, req, caps)
        {
            return Some(m);
        }
        if let Some(child) = n.param
            && !segment.is_empty()
        {
            caps.push(pos..end);
            if let Some(m) = self.walk(child, next, req, caps) {
                return Some(m);
            }
            caps.pop();
        }
        self.first_accepting(&n.tail, req, caps, Some(pos..path.len()))
    }

    fn first_accepting(
        &self,
        ids: &[usize],
        req: &RequestInfo<'_>,
        caps: &[Range<usize>],
        rest: Option<Range<usize>>,
    ) -> Option<Match> {
        self.first_accepting_iter(ids.iter().copied(), req, caps, rest)
    }

    fn first_accepting_iter(
        &self,
        ids: impl Iterator<Item = usize>,
        req: &RequestInfo<'_>,
        caps: &[Range<usize>],
        rest: Option<Range<usize>>,
    ) -> Option<Match> {
        for id in ids {
            let e = &self.entries[id];
            if !e.conditions.accepts(req) {
                continue;
            }
            let mut captures = caps.to_vec();
            if matches!(e.pattern.segments().last(), Some(Segment::Rest(_))) {
                captures.push(rest.clone().unwrap_or(req.path.len()..req.path.len()));
            }
            return Some(Match {
                route: id,
                captures,
            });
        }
        None
    }

    /// Route ids in matching order: most specific pattern first, file order
    /// among equals (what `check` prints).
    pub fn matching_order(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.entries.len()).collect();
        ids.sort_by(|&a, &b| {
            self.entries[a]
                .pattern
                .cmp_specificity(&self.entries[b].pattern)
                .then(a.cmp(&b))
        });
        ids
    }

    /// Routes no request can reach, each with the earlier route that takes all
    /// its requests: same pattern, and conditions that accept everything it would.
    pub fn unreachable(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (later, e) in self.entries.iter().enumerate() {
            let shadow = self.entries[..later].iter().position(|earlier| {
                let same = earlier.pattern.same_shape(&e.pattern)
                    || (earlier.pattern.kind() == Kind::Prefix
                        && e.pattern.has_tail()
                        && earlier.pattern.walked_segments() == e.pattern.walked_segments());
                same && earlier.conditions.covers(&e.conditions)
            });
            if let Some(earlier) = shadow {
                out.push((later, earlier));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;

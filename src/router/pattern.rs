//! Route patterns (`path = "/api/orders/{id}"`, `prefix = "/api"`), the upstream
//! path templates that reuse their parameters (`rewrite`, `strip_prefix`), and
//! the specificity order between patterns (SPEC 2.1).

use std::cmp::Ordering;
use std::fmt;
use std::ops::Range;

use crate::path;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this (normalized) text.
    Literal(Box<str>),
    /// `{name}`: any one non-empty segment.
    Param(Box<str>),
    /// `{*name}`: the rest of the path, one or more segments (possibly one empty
    /// one, so `/a/{*rest}` matches `/a/` but not `/a`). Only last.
    Rest(Box<str>),
}

/// How a pattern was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `path = ...`: the segments, exactly.
    Path,
    /// `prefix = ...`: the literal segments and everything below them, including
    /// the prefix itself. Segment-wise: `/api` matches `/api` and `/api/x`, never `/apix`.
    Prefix,
}

/// A validated route pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    kind: Kind,
    /// As written in the config, for messages.
    text: String,
    segments: Vec<Segment>,
}

/// Why a pattern or template is invalid; the message says how to write it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with `/`")]
    NotAbsolute,
    #[error("has an empty segment (`//`), which no normalized path contains")]
    EmptySegment,
    #[error("has a `.` or `..` segment, which no normalized path contains")]
    DotSegment,
    #[error("segment `{0}`: {1}")]
    BadSegment(String, path::PathError),
    #[error(
        "`{0}` is not a parameter: write `{{name}}` or `{{*name}}` as a whole segment, name made of letters, digits and `_`"
    )]
    BadParam(String),
    #[error("`{{*{0}}}` must be the last segment")]
    RestNotLast(String),
    #[error("parameter `{0}` appears twice")]
    DuplicateParam(String),
    #[error("a prefix is literal; for parameters use `path = \"...{{*rest}}\"`")]
    ParamInPrefix,
    #[error(
        "a prefix must not end with `/` (`prefix = \"/api\"` already matches `/api/` and everything below)"
    )]
    PrefixTrailingSlash,
    #[error("uses `{{{0}}}`, which the route's pattern does not define (it defines: {1})")]
    UnknownParam(String, String),
    #[error("`{0}` is not a prefix of the route's pattern `{1}`")]
    NotAPrefix(String, String),
}

fn is_param_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

impl Pattern {
    /// Parses `path = "..."`.
    pub fn path(text: &str) -> Result<Pattern, PatternError> {
        let segments = parse_segments(text)?;
        if let Some(pos) = segments.iter().position(|s| matches!(s, Segment::Rest(_)))
            && pos + 1 != segments.len()
            && let Segment::Rest(name) = &segments[pos]
        {
            return Err(PatternError::RestNotLast(name.to_string()));
        }
        let mut seen: Vec<&str> = Vec::new();
        for s in &segments {
            if let Segment::Param(n) | Segment::Rest(n) = s {
                if seen.contains(&&**n) {
                    return Err(PatternError::DuplicateParam(n.to_string()));
                }
                seen.push(n);
            }
        }
        Ok(Pattern {
            kind: Kind::Path,
            text: text.to_owned(),
            segments,
        })
    }

    /// Parses `prefix = "..."`.
    pub fn prefix(text: &str) -> Result<Pattern, PatternError> {
        if text == "/" {
            return Ok(Pattern {
                kind: Kind::Prefix,
                text: text.to_owned(),
                segments: Vec::new(),
            });
        }
        if text.len() > 1 && text.ends_with('/') {
            return Err(PatternError::PrefixTrailingSlash);
        }
        let segments = parse_segments(text)?;
        if segments.iter().any(|s| !matches!(s, Segment::Literal(_))) {
            return Err(PatternError::ParamInPrefix);
        }
        Ok(Pattern {
            kind: Kind::Prefix,
            text: text.to_owned(),
            segments,
        })
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Parameter names, in the order they are captured.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) | Segment::Rest(n) => Some(&**n),
            Segment::Literal(_) => None,
        })
    }

    /// True when this pattern ends in a catch-all (`{*rest}` or a prefix).
    pub fn has_tail(&self) -> bool {
        self.kind == Kind::Prefix || matches!(self.segments.last(), Some(Segment::Rest(_)))
    }

    /// Segments excluding a trailing `{*rest}`: the part a trie walks.
    pub fn walked_segments(&self) -> &[Segment] {
        match self.segments.last() {
            Some(Segment::Rest(_)) => &self.segments[..self.segments.len() - 1],
            _ => &self.segments,
        }
    }

    /// How specific this pattern is, as a sequence compared lexicographically,
    /// smaller = more specific: per position a literal (0) beats a parameter (1)
    /// beats a catch-all (2); a pattern that ends where another continues with a
    /// catch-all is the more specific one.
    pub fn rank(&self) -> Vec<u8> {
        let mut r: Vec<u8> = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 0,
                Segment::Param(_) => 1,
                Segment::Rest(_) => 2,
            })
            .collect();
        if self.kind == Kind::Prefix {
            r.push(2);
        }
        r
    }

    /// Compares specificity; `Less` means `self` is more specific.
    pub fn cmp_specificity(&self, other: &Pattern) -> Ordering {
        self.rank().cmp(&other.rank())
    }

    /// True when both patterns accept exactly the same paths (parameter names aside).
    pub fn same_shape(&self, other: &Pattern) -> bool {
        self.kind == other.kind
            && self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| match (a, b) {
                    (Segment::Literal(x), Segment::Literal(y)) => x == y,
                    (Segment::Param(_), Segment::Param(_))
                    | (Segment::Rest(_), Segment::Rest(_)) => true,
                    _ => false,
                })
    }

    /// Reference matcher, segment by segment, independent of the router's trie:
    /// used by `explain`-style checks and by tests as an oracle. Returns the
    /// captures (byte ranges of `path`) in parameter order.
    pub fn matches(&self, path: &str) -> Option<Vec<Range<usize>>> {
        let mut caps = Vec::new();
        let mut pos = 1; // just after the leading '/'
        let mut exhausted = !path.starts_with('/');
        if exhausted {
            return None;
        }
        for seg in &self.segments {
            if exhausted {
                return None;
            }
            if let Segment::Rest(_) = seg {
                caps.push(pos..path.len());
                return Some(caps);
            }
            let end = path[pos..].find('/').map_or(path.len(), |i| pos + i);
            let text = &path[pos..end];
            match seg {
                Segment::Literal(l) if **l == *text => {}
                Segment::Param(_) if !text.is_empty() => caps.push(pos..end),
                _ => return None,
            }
            if end == path.len() {
                exhausted = true;
            } else {
                pos = end + 1;
            }
        }
        match self.kind {
            Kind::Prefix => Some(caps),
            Kind::Path if exhausted => Some(caps),
            Kind::Path => None,
        }
    }
}

impl fmt::Display for Pattern {
    /// Paths print as written; prefixes as `PREFIX/**` so the table shows that
    /// everything below matches.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Path => f.write_str(&self.text),
            Kind::Prefix if self.text == "/" => f.write_str("/**"),
            Kind::Prefix => write!(f, "{}/**", self.text),
        }
    }
}

fn parse_segments(text: &str) -> Result<Vec<Segment>, PatternError> {
    let Some(body) = text.strip_prefix('/') else {
        return Err(PatternError::NotAbsolute);
    };
    let raw: Vec<&str> = body.split('/').collect();
    let last = raw.len() - 1;
    let mut out = Vec::with_capacity(raw.len());
    for (i, seg) in raw.into_iter().enumerate() {
        // A trailing slash is a real (empty) last segment: `/a/` matches only `/a/`.
        if seg.is_empty() && i != last {
            return Err(PatternError::EmptySegment);
        }
        if seg == "." || seg == ".." {
            return Err(PatternError::DotSegment);
        }
        if seg.starts_with('{') || seg.ends_with('}') {
            let inner = seg
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or_else(|| PatternError::BadParam(seg.to_owned()))?;
            if let Some(name) = inner.strip_prefix('*') {
                if !is_param_name(name) {
                    return Err(PatternError::BadParam(seg.to_owned()));
                }
                out.push(Segment::Rest(name.into()));
            } else {
                if !is_param_name(inner) {
                    return Err(PatternError::BadParam(seg.to_owned()));
                }
                out.push(Segment::Param(inner.into()));
            }
            continue;
        }
        if seg.contains(['{', '}']) {
            return Err(PatternError::BadParam(seg.to_owned()));
        }
        let normal = path::normalize_segment(seg)
            .map_err(|e| PatternError::BadSegment(seg.to_owned(), e))?;
        if normal == "." || normal == ".." {
            return Err(PatternError::DotSegment);
        }
        out.push(Segment::Literal(normal.into()));
    }
    Ok(out)
}

/// How a route turns the matched path into the upstream path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMap {
    /// The normalized path as matched.
    Keep,
    /// `strip_prefix`: drop this many leading bytes of the normalized path
    /// (the literal prefix), leaving at least `/`.
    Strip { prefix: String },
    /// `rewrite`: a template of literal text and captured parameters.
    Rewrite {
        template: String,
        pieces: Vec<Piece>,
    },
}

impl fmt::Display for PathMap {
    /// How `check` and `explain` show it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMap::Keep => f.write_str("path as matched"),
            PathMap::Strip { prefix } => write!(f, "strip_prefix {prefix}"),
            PathMap::Rewrite { template, .. } => write!(f, "rewrite {template}"),
        }
    }
}

/// A piece of a rewrite template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(Box<str>),
    /// Index into the pattern's captures.
    Param(usize),
}

impl PathMap {
    /// Validates `rewrite = "..."` against the route's pattern.
    pub fn rewrite(template: &str, pattern: &Pattern) -> Result<PathMap, PatternError> {
        if !template.starts_with('/') {
            return Err(PatternError::NotAbsolute);
        }
        let params: Vec<&str> = pattern.params().collect();
        let mut pieces = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].into()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| PatternError::BadParam(rest[open..].to_owned()))?;
            let name = &after[..close];
            let idx = params.iter().position(|p| *p == name).ok_or_else(|| {
                let defined = if params.is_empty() {
                    "none".to_owned()
                } else {
                    params.join(", ")
                };
                PatternError::UnknownParam(name.to_owned(), defined)
            })?;
            pieces.push(Piece::Param(idx));
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(PatternError::BadParam(rest.to_owned()));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.into()));
        }
        for p in &pieces {
            if let Piece::Text(t) = p {
                path::normalize_segment(t)
                    .map_err(|e| PatternError::BadSegment(t.to_string(), e))?;
            }
        }
        Ok(PathMap::Rewrite {
            template: template.to_owned(),
            pieces,
        })
    }

    /// Validates `strip_prefix = "..."`: it must be literal leading segments of the pattern.
    pub fn strip(prefix: &str, pattern: &Pattern) -> Result<PathMap, PatternError> {
        let not_prefix = || PatternError::NotAPrefix(prefix.to_owned(), pattern.to_string());
        let strip = Pattern::prefix(prefix).map_err(|_| not_prefix())?;
        if strip.segments.len() > pattern.segments.len()
            || strip
                .segments
                .iter()
                .zip(&pattern.segments)
                .any(|(a, b)| a != b)
        {
            return Err(not_prefix());
        }
        let normal: String = strip
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                _ => String::new(),
            })
            .collect();
        Ok(PathMap::Strip { prefix: normal })
    }

    /// The upstream path for a matched, normalized `path` with its `captures`.
    pub fn apply(&self, path: &str, captures: &[Range<usize>]) -> String {
        match self {
            PathMap::Keep => path.to_owned(),
            PathMap::Strip { prefix } => {
                let rest = path.get(prefix.len()..).unwrap_or("");
                if rest.is_empty() {
                    "/".to_owned()
                } else {
                    rest.to_owned()
                }
            }
            PathMap::Rewrite { pieces, .. } => {
                let mut out = String::with_capacity(path.len() + 16);
                for p in pieces {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Param(i) => {
                            if let Some(r) = captures.get(*i) {
                                out.push_str(path.get(r.clone()).unwrap_or(""));
                            }
                        }
                    }
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps<'a>(p: &Pattern, path: &'a str) -> Option<Vec<&'a str>> {
        p.matches(path)
            .map(|c| c.into_iter().map(|r| &path[r]).collect())
    }

    #[test]
    fn parses_and_matches_paths() {
        let p = Pattern::path("/api/orders/{id}").unwrap();
        assert_eq!(caps(&p, "/api/orders/17"), Some(vec!["17"]));
        assert_eq!(caps(&p, "/api/orders/"), None);
        assert_eq!(caps(&p, "/api/orders"), None);
        assert_eq!(caps(&p, "/api/orders/17/x"), None);

        let rest = Pattern::path("/api/orders/{*rest}").unwrap();
        assert_eq!(caps(&rest, "/api/orders/1/lines"), Some(vec!["1/lines"]));
        assert_eq!(caps(&rest, "/api/orders/"), Some(vec![""]));
        assert_eq!(caps(&rest, "/api/orders"), None);

        let root = Pattern::path("/").unwrap();
        assert_eq!(caps(&root, "/"), Some(vec![]));
        assert_eq!(caps(&root, "/a"), None);
    }

    #[test]
    fn prefixes_match_segment_wise() {
        let p = Pattern::prefix("/api/orders").unwrap();
        assert!(p.matches("/api/orders").is_some());
        assert!(p.matches("/api/orders/").is_some());
        assert!(p.matches("/api/orders/1/x").is_some());
        assert!(p.matches("/api/ordersx").is_none());
        assert!(p.matches("/api").is_none());
        let all = Pattern::prefix("/").unwrap();
        assert!(all.matches("/").is_some());
        assert!(all.matches("/anything/at/all").is_some());
        assert_eq!(all.to_string(), "/**");
        assert_eq!(p.to_string(), "/api/orders/**");
    }

    #[test]
    fn literals_are_normalized_like_requests() {
        let p = Pattern::path("/%61pi/caf\u{e9}").unwrap();
        assert!(p.matches("/api/caf%C3%A9").is_some());
    }

    #[test]
    fn bad_patterns() {
        use PatternError::*;
        assert_eq!(Pattern::path("api"), Err(NotAbsolute));
        assert_eq!(Pattern::path("/a//b"), Err(EmptySegment));
        assert_eq!(Pattern::path("/a/../b"), Err(DotSegment));
        assert_eq!(Pattern::path("/a/%2e"), Err(DotSegment));
        assert_eq!(Pattern::path("/a/{id"), Err(BadParam("{id".into())));
        assert_eq!(Pattern::path("/a/x{id}"), Err(BadParam("x{id}".into())));
        assert_eq!(Pattern::path("/a/{1d}"), Err(BadParam("{1d}".into())));
        assert_eq!(Pattern::path("/a/{*r}/b"), Err(RestNotLast("r".into())));
        assert_eq!(Pattern::path("/{a}/{a}"), Err(DuplicateParam("a".into())));
        assert!(matches!(Pattern::path("/a%zz"), Err(BadSegment(..))));
        assert_eq!(Pattern::prefix("/api/{x}"), Err(ParamInPrefix));
        assert_eq!(Pattern::prefix("/api/"), Err(PrefixTrailingSlash));
    }

    #[test]
    fn specificity_order() {
        let lit = Pattern::path("/api/orders").unwrap();
        let param = Pattern::path("/api/{x}").unwrap();
        let rest = Pattern::path("/api/{*r}").unwrap();
        let prefix = Pattern::prefix("/api").unwrap();
        let exact = Pattern::path("/api").unwrap();
        let all = Pattern::prefix("/").unwrap();
        assert_eq!(lit.cmp_specificity(&param), Ordering::Less);
        assert_eq!(param.cmp_specificity(&rest), Ordering::Less);
        assert_eq!(rest.cmp_specificity(&prefix), Ordering::Equal);
        assert_eq!(exact.cmp_specificity(&prefix), Ordering::Less);
        assert_eq!(prefix.cmp_specificity(&all), Ordering::Less);
    }

    #[test]
    fn rewrites_and_strips() {
        let p = Pattern::path("/api/orders/{*rest}").unwrap();
        let rw = PathMap::rewrite("/orders/{rest}", &p).unwrap();
        let path = "/api/orders/17/lines";
        let c = p.matches(path).unwrap();
        assert_eq!(rw.apply(path, &c), "/orders/17/lines");

        let strip = PathMap::strip("/api", &p).unwrap();
        assert_eq!(strip.apply(path, &c), "/orders/17/lines");
        let pre = Pattern::prefix("/api").unwrap();
        let strip = PathMap::strip("/api", &pre).unwrap();
        assert_eq!(strip.apply("/api", &[]), "/");

        assert_eq!(
            PathMap::rewrite("/x/{id}", &p),
            Err(PatternError::UnknownParam("id".into(), "rest".into()))
        );
        assert!(matches!(
            PathMap::strip("/apx", &p),
            Err(PatternError::NotAPrefix(..))
        ));
        assert!(matches!(
            PathMap::strip("/api/orders/x", &p),
            Err(PatternError::NotAPrefix(..))
        ));
    }
}

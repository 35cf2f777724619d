//! A composition leg's path template (SPEC 2.5): `/customers/{order.customer_id}`,
//! `/inventory/{order.lines.*.sku}`, `/search?q={id}`.
//!
//! A placeholder is a route parameter (`{id}`) or a field of another leg's
//! answer (`{leg.path.to.field}`: object keys, array indexes, and at most one
//! `*` for "every element"). Values are percent-encoded as one path segment,
//! or as a query value after `?`, so an answer can never add a segment or a
//! query parameter of its own.

use std::fmt;

/// Where a placeholder's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A parameter of the route's pattern.
    Param(String),
    /// A field of leg `leg`'s answer; `path` is the steps after the leg name.
    Field { leg: String, path: Vec<String> },
}

impl Source {
    /// Whether the field path has a `*` step (the leg runs once per element).
    pub fn is_each(&self) -> bool {
        matches!(self, Source::Field { path, .. } if path.iter().any(|s| s == "*"))
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Param(p) => f.write_str(p),
            Source::Field { leg, path } => {
                f.write_str(leg)?;
                for step in path {
                    write!(f, ".{step}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Slot { source: Source, in_query: bool },
}

/// A parsed leg path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    text: String,
    pieces: Vec<Piece>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must start with `/`")]
    NoSlash,
    #[error("has a `{{` without its `}}`")]
    Unclosed,
    #[error("has a `}}` without its `{{`")]
    Unopened,
    #[error("has an empty placeholder `{{}}`")]
    Empty,
    #[error("placeholder `{{{0}}}` is not a name or a leg field such as `{{order.customer_id}}`")]
    BadPlaceholder(String),
    #[error(
        "placeholder `{{{0}}}`: `*` stands for the elements of an array in another leg's answer, e.g. `{{order.lines.*.sku}}`"
    )]
    BadStar(String),
    #[error("has more than one `*` placeholder; a leg runs once per element of one array")]
    TwoStars,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        if !text.starts_with('/') {
            return Err(TemplateError::NoSlash);
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut in_query = false;
        let mut rest = text;
        let mut stars = 0;
        while let Some(c) = rest.chars().next() {
            match c {
                '{' => {
                    let end = rest.find('}').ok_or(TemplateError::Unclosed)?;
                    let inner = &rest[1..end];
                    if inner.contains('{') {
                        return Err(TemplateError::Unclosed);
                    }
                    let source = placeholder(inner)?;
                    if source.is_each() {
                        stars += 1;
                        if stars > 1 {
                            return Err(TemplateError::TwoStars);
                        }
                    }
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot { source, in_query });
                    rest = &rest[end + 1..];
                }
                '}' => return Err(TemplateError::Unopened),
                _ => {
                    if c == '?' {
                        in_query = true;
                    }
                    literal.push(c);
                    rest = &rest[c.len_utf8()..];
                }
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template {
            text: text.to_owned(),
            pieces,
        })
    }

    /// Every placeholder's source, in order.
    pub fn sources(&self) -> impl Iterator<Item = &Source> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Slot { source, .. } => Some(source),
            Piece::Literal(_) => None,
        })
    }

    /// The placeholder with a `*`, when the leg runs once per element.
    pub fn each(&self) -> Option<&Source> {
        self.sources().find(|s| s.is_each())
    }

    /// The legs this template reads from.
    pub fn legs(&self) -> impl Iterator<Item = &str> {
        self.sources().filter_map(|s| match s {
            Source::Field { leg, .. } => Some(leg.as_str()),
            Source::Param(_) => None,
        })
    }

    /// The path with every placeholder replaced by `value(source)` (raw
    /// bytes, not yet encoded), percent-encoded for where it stands; `None`
    /// when a value is missing.
    pub fn render(&self, mut value: impl FnMut(&Source) -> Option<Vec<u8>>) -> Option<String> {
        let mut out = String::with_capacity(self.text.len() + 16);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Slot { source, in_query } => {
                    let v = value(source)?;
                    encode(&v, *in_query, &mut out);
                }
            }
        }
        Some(out)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a route parameter, a leg or a field step may be called in a
/// placeholder: letters, digits, `_` and `-`.
pub fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn placeholder(inner: &str) -> Result<Source, TemplateError> {
    if inner.is_empty() {
        return Err(TemplateError::Empty);
    }
    let mut steps = inner.split('.');
    let head = steps.next().unwrap_or_default();
    let name_ok = is_name;
    if head == "*" || head.starts_with('*') {
        return Err(TemplateError::BadStar(inner.to_owned()));
    }
    if !name_ok(head) {
        return Err(TemplateError::BadPlaceholder(inner.to_owned()));
    }
    let path: Vec<String> = steps.map(str::to_owned).collect();
    if path.is_empty() {
        return Ok(Source::Param(head.to_owned()));
    }
    if path.iter().any(|s| s != "*" && !name_ok(s)) {
        return Err(TemplateError::BadPlaceholder(inner.to_owned()));
    }
    Ok(Source::Field {
        leg: head.to_owned(),
        path,
    })
}

/// Decodes `%XX` escapes (a route parameter arrives in its path spelling);
/// an escape that is not one stays as it is.
pub fn percent_decode(v: &str) -> Vec<u8> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// Percent-encodes `v` so it stays one path segment (or one query value).
/// Unreserved characters (RFC 3986) stay as they are; everything else is
/// escaped, `/`, `?`, `#`, `&`, `=` and `%` included.
fn encode(v: &[u8], in_query: bool, out: &mut String) {
    for &b in v {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (!in_query
                && matches!(
                    b,
                    b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b':' | b'@'
                ));
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[(b >> 4) as usize]));
            out.push(char::from(HEX[(b & 15) as usize]));
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

#[cfg(test)]
mod tests {
    use super::*;

    fn field(leg: &str, path: &[&str]) -> Source {
        Source::Field {
            leg: leg.into(),
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn placeholders_are_params_or_leg_fields() {
        let t = Template::parse("/customers/{order.customer_id}/x?lang={lang}").unwrap();
        let sources: Vec<&Source> = t.sources().collect();
        assert_eq!(
            sources,
            [
                &field("order", &["customer_id"]),
                &Source::Param("lang".into())
            ]
        );
        assert_eq!(t.legs().collect::<Vec<_>>(), ["order"]);
        assert!(t.each().is_none());
        let each = Template::parse("/inventory/{order.lines.*.sku}").unwrap();
        assert_eq!(each.each(), Some(&field("order", &["lines", "*", "sku"])));
        assert_eq!(each.to_string(), "/inventory/{order.lines.*.sku}");
    }

    #[test]
    fn values_are_encoded_as_one_segment_or_one_query_value() {
        let t = Template::parse("/a/{id}/b?q={q}&x=1").unwrap();
        let path = t
            .render(|s| match s {
                Source::Param(p) if p == "id" => Some(b"x/../y?z#w%".to_vec()),
                Source::Param(_) => Some(b"a&b=c d+e".to_vec()),
                Source::Field { .. } => None,
            })
            .unwrap();
        assert_eq!(path, "/a/x%2F..%2Fy%3Fz%23w%25/b?q=a%26b%3Dc%20d%2Be&x=1");
        assert_eq!(t.render(|_| None), None, "a missing value renders nothing");
    }

    #[test]
    fn parameters_are_decoded_before_they_are_encoded_again() {
        assert_eq!(percent_decode("a%20b%2Fc"), b"a b/c");
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é".as_bytes());
    }

    #[test]
    fn bad_templates() {
        for (text, want) in [
            ("orders/{id}", TemplateError::NoSlash),
            ("/orders/{id", TemplateError::Unclosed),
            ("/orders/id}", TemplateError::Unopened),
            ("/orders/{}", TemplateError::Empty),
            ("/o/{a b}", TemplateError::BadPlaceholder("a b".into())),
            (
                "/o/{order.}",
                TemplateError::BadPlaceholder("order.".into()),
            ),
            ("/o/{*rest}", TemplateError::BadStar("*rest".into())),
            ("/o/{a.*.x}/{b.*}", TemplateError::TwoStars),
        ] {
            assert_eq!(Template::parse(text), Err(want), "{text}");
        }
    }
}

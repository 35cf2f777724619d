//! `[routes.compose]`: the legs of a composed route (SPEC 2.5), each checked
//! with a located error, and the graph they form — unknown references and
//! cycles are errors, and the legs are put in an order where every leg comes
//! after the legs it reads from.

use std::ops::Range;
use std::time::Duration;

use http::Method;
use toml::de::DeTable;

use super::parse::upstream_ref;
use super::reader::{Diags, TableReader};
use crate::compose::template::{Source, Template};

/// `[routes.compose]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Compose {
    pub merge: Merge,
    /// In file order: the order of `nest` keys and of `flat` merging.
    pub legs: Vec<Leg>,
    /// Indexes into `legs`, each after every leg it references.
    pub order: Vec<usize>,
}

/// How the legs' answers become one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `{"leg": answer, ...}`.
    Nest,
    /// The legs' top-level objects merged in leg order, later legs winning.
    Flat,
}

/// One `[[routes.compose.legs]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub name: String,
    /// Index into [`super::Config::upstreams`].
    pub upstream: usize,
    pub method: Method,
    pub path: Template,
    /// A failure makes this leg `null` instead of failing the composite.
    pub optional: bool,
    /// Overrides the route's timeout for this leg.
    pub timeout: Option<Duration>,
    /// Top-level fields kept from the answer (from each answer of a `*` leg).
    pub pick: Option<Vec<String>>,
    /// Indexes of the legs this one reads from.
    pub deps: Vec<usize>,
}

impl Compose {
    /// `compose(order, customer, stock?)`: the route table's target column
    /// (SPEC 1.1), optional legs marked `?`.
    pub fn summary(&self) -> String {
        let names: Vec<String> = self
            .legs
            .iter()
            .map(|l| format!("{}{}", l.name, if l.optional { "?" } else { "" }))
            .collect();
        format!("compose({})", names.join(", "))
    }

    /// Every setting of every leg, one string: what a reload diff compares.
    pub fn detail(&self, upstreams: &[super::Upstream]) -> String {
        let merge = match self.merge {
            Merge::Nest => "nest",
            Merge::Flat => "flat",
        };
        let legs: Vec<String> = self
            .legs
            .iter()
            .map(|l| {
                let mut s = format!(
                    "{}{} {} {} {}",
                    l.name,
                    if l.optional { "?" } else { "" },
                    l.method,
                    upstreams[l.upstream].name,
                    l.path
                );
                if let Some(t) = l.timeout {
                    s.push_str(&format!(" timeout {}ms", t.as_millis()));
                }
                if let Some(p) = &l.pick {
                    s.push_str(&format!(" pick [{}]", p.join(", ")));
                }
                s
            })
            .collect();
        format!("{merge}: {}", legs.join("; "))
    }
}

/// Reads `[routes.compose]` of route `what`, whose pattern has `params`.
pub(super) fn parse_compose(
    t: &DeTable<'_>,
    span: Range<usize>,
    params: &[&str],
    names: &[&str],
    what: &str,
    diags: &Diags,
) -> Option<Compose> {
    let what = format!("{what}: compose");
    let mut r = TableReader::new(t, what.clone(), diags);
    let merge = match r.string("merge") {
        None => Some(Merge::Nest),
        Some(m) => match m.get_ref().as_str() {
            "nest" => Some(Merge::Nest),
            "flat" => Some(Merge::Flat),
            other => {
                diags.error(
                    m.span(),
                    format!("{what}: unknown merge \"{other}\" (known: flat, nest)"),
                );
                None
            }
        },
    };
    let tables = r.tables("legs");
    r.finish();
    let tables = match tables {
        Some(t) if !t.is_empty() => t,
        Some(_) | None => {
            diags.error(
                span,
                format!("{what}: needs at least one leg ([[routes.compose.legs]])"),
            );
            return None;
        }
    };
    let leg_names: Vec<Option<String>> = tables
        .iter()
        .map(|(t, _)| {
            t.get("name")
                .and_then(|v| v.get_ref().as_str())
                .map(str::to_owned)
        })
        .collect();
    let mut legs = Vec::with_capacity(tables.len());
    let mut ok = merge.is_some();
    for (i, (t, leg_span)) in tables.iter().enumerate() {
        match parse_leg(
            i,
            t,
            leg_span.clone(),
            &leg_names,
            params,
            names,
            &what,
            diags,
        ) {
            Some(leg) => legs.push((leg, leg_span.clone())),
            None => ok = false,
        }
    }
    if !ok || legs.len() != tables.len() {
        return None;
    }
    for (i, (leg, span)) in legs.iter().enumerate() {
        if let Some((first, _)) = legs[..i].iter().find(|(o, _)| o.name == leg.name) {
            diags.error(
                span.clone(),
                format!(
                    "{what}: two legs are named \"{}\" (leg names must be unique; {} is taken)",
                    leg.name, first.name
                ),
            );
            ok = false;
        }
    }
    let spans: Vec<Range<usize>> = legs.iter().map(|(_, s)| s.clone()).collect();
    let legs: Vec<Leg> = legs.into_iter().map(|(l, _)| l).collect();
    let order = match order(&legs) {
        Ok(order) => order,
        Err(cycle) => {
            let path: Vec<&str> = cycle.iter().map(|&i| legs[i].name.as_str()).collect();
            diags.error(
                spans[cycle[0]].clone(),
                format!(
                    "{what}: the legs form a cycle ({}): a leg cannot wait for itself",
                    path.join(" → ")
                ),
            );
            return None;
        }
    };
    ok.then_some(Compose {
        merge: merge?,
        legs,
        order,
    })
}

#[allow(clippy::too_many_arguments)]
fn parse_leg(
    index: usize,
    t: &DeTable<'_>,
    span: Range<usize>,
    leg_names: &[Option<String>],
    params: &[&str],
    names: &[&str],
    what: &str,
    diags: &Diags,
) -> Option<Leg> {
    let name = leg_names[index].clone();
    let what = match &name {
        Some(n) => format!("{what} leg \"{n}\""),
        None => format!("{what} leg #{}", index + 1),
    };
    let mut r = TableReader::new(t, what.clone(), diags);
    let name_v = r.string("name");
    if name_v.is_none() {
        diags.error(span.clone(), format!("{what}: `name` is missing"));
    }
    if let Some(n) = &name_v
        && !crate::compose::template::is_name(n.get_ref())
    {
        diags.error(
            n.span(),
            format!("{what}: a leg name is letters, digits, `_` and `-` (it is written as `{{name.field}}` in other legs' paths)"),
        );
    }
    let upstream = match r.string("upstream") {
        Some(s) => upstream_ref(&s, &what, names, diags),
        None => {
            diags.error(span.clone(), format!("{what}: `upstream` is missing"));
            None
        }
    };
    let method = match r.string("method") {
        None => Some(Method::GET),
        Some(m) => match Method::from_bytes(m.get_ref().as_bytes()) {
            Ok(method) if !m.get_ref().bytes().any(|b| b.is_ascii_lowercase()) => Some(method),
            _ => {
                diags.error(
                    m.span(),
                    format!("{what}: \"{}\" is not an upper-case method", m.get_ref()),
                );
                None
            }
        },
    };
    let path = match r.string("path") {
        None => {
            diags.error(span.clone(), format!("{what}: `path` is missing"));
            None
        }
        Some(p) => match Template::parse(p.get_ref()) {
            Err(e) => {
                diags.error(p.span(), format!("{what}: `path` \"{}\" {e}", p.get_ref()));
                None
            }
            Ok(template) => {
                let mut good = true;
                let mut deps = Vec::new();
                for source in template.sources() {
                    match source {
                        Source::Param(param) if !params.contains(&param.as_str()) => {
                            let mut known = params.to_vec();
                            known.sort_unstable();
                            diags.error(
                                p.span(),
                                format!(
                                    "{what}: `{{{param}}}` is neither a parameter of the route's pattern ({}) nor a leg field such as `{{leg.field}}`",
                                    if known.is_empty() { "it has none".to_owned() } else { format!("known: {}", known.join(", ")) }
                                ),
                            );
                            good = false;
                        }
                        Source::Param(_) => {}
                        Source::Field { leg, .. } => {
                            match leg_names.iter().position(|n| n.as_deref() == Some(leg)) {
                                Some(i) if i == index => {
                                    diags.error(
                                        p.span(),
                                        format!("{what}: `{{{source}}}` reads the leg's own answer, which does not exist yet"),
                                    );
                                    good = false;
                                }
                                Some(i) => {
                                    if !deps.contains(&i) {
                                        deps.push(i);
                                    }
                                }
                                None => {
                                    let mut known: Vec<&str> =
                                        leg_names.iter().flatten().map(String::as_str).collect();
                                    known.sort_unstable();
                                    diags.error(
                                        p.span(),
                                        format!(
                                            "{what}: `{{{source}}}` names no leg \"{leg}\" (legs: {})",
                                            known.join(", ")
                                        ),
                                    );
                                    good = false;
                                }
                            }
                        }
                    }
                }
                good.then_some((template, deps))
            }
        },
    };
    let optional = r.bool("optional").unwrap_or(false);
    let timeout = r.duration("timeout");
    let pick = r.string_list("pick").map(|list| {
        if list.is_empty() {
            diags.error(
                t.get("pick").map_or(span.clone(), |v| v.span()),
                format!("{what}: `pick` is empty; leave it out to keep the whole answer"),
            );
        }
        list.into_iter().map(|s| s.into_inner()).collect::<Vec<_>>()
    });
    r.finish();
    let (path, deps) = path?;
    Some(Leg {
        name: name_v?.into_inner(),
        upstream: upstream?,
        method: method?,
        path,
        optional,
        timeout,
        pick,
        deps,
    })
}

/// The legs in an order where each comes after its dependencies (Kahn's
/// algorithm, ties in file order), or the legs of a cycle.
fn order(legs: &[Leg]) -> Result<Vec<usize>, Vec<usize>> {
    let mut placed = vec![false; legs.len()];
    let mut out = Vec::with_capacity(legs.len());
    while out.len() < legs.len() {
        let next = (0..legs.len()).find(|&i| !placed[i] && legs[i].deps.iter().all(|&d| placed[d]));
        match next {
            Some(i) => {
                placed[i] = true;
                out.push(i);
            }
            None => return Err(cycle(legs, &placed)),
        }
    }
    Ok(out)
}

/// A cycle among the legs not yet placed: follow unplaced dependencies until
/// a leg repeats.
fn cycle(legs: &[Leg], placed: &[bool]) -> Vec<usize> {
    let start = (0..legs.len()).find(|&i| !placed[i]).unwrap_or(0);
    let mut path = vec![start];
    let mut at = start;
    loop {
        let Some(&next) = legs[at].deps.iter().find(|&&d| !placed[d]) else {
            return path;
        };
        if let Some(pos) = path.iter().position(|&p| p == next) {
            let mut c = path[pos..].to_vec();
            c.push(next);
            return c;
        }
        path.push(next);
        at = next;
    }
}

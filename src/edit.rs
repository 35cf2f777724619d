//! `strangler shift --config FILE ROUTE PERCENT` (SPEC 1): sets one route's
//! `shift.percent` in the config file itself, so the file stays the one
//! source of truth and a running proxy that watches it picks the change up.
//!
//! Only the number changes. `toml_edit` finds where it is written — in an
//! inline `shift = { ... }`, a `[routes.shift]` table or dotted keys — and
//! exactly those bytes are replaced, so every comment, blank line and odd
//! spacing comes back byte for byte. The edited text must load as a config,
//! and differ from the old one by that one setting, before it replaces the
//! file (atomically: a temporary file in the same directory, renamed over).

use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml_edit::{Item, TableLike, Value};

use crate::config::{Config, ConfigDiff, ConfigError, SourceFile, percent_text, suggestion};

/// What `strangler shift` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shifted {
    pub route: String,
    /// As the diff says it: `10`, `12.5`.
    pub old: String,
    pub new: String,
    /// The file as given.
    pub file: PathBuf,
    /// False when the file already said `new`: nothing was written.
    pub written: bool,
}

impl std::fmt::Display for Shifted {
    /// `route "customers": shift.percent 10 -> 25 (FILE)`, the reload's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.written {
            write!(
                f,
                "route \"{}\": shift.percent {} -> {} ({})",
                self.route,
                self.old,
                self.new,
                self.file.display()
            )
        } else {
            write!(
                f,
                "route \"{}\": shift.percent is already {} ({}); file not changed",
                self.route,
                self.new,
                self.file.display()
            )
        }
    }
}

/// Why the file was not changed.
#[derive(Debug, thiserror::Error)]
pub enum ShiftError {
    #[error("PERCENT \"{0}\" is not a number: write e.g. 25 or 12.5")]
    NotANumber(String),
    #[error("PERCENT {0} is outside 0-100")]
    OutOfRange(String),
    #[error("PERCENT {0} has more than two decimals (the finest share is 0.01%)")]
    TooPrecise(String),
    /// The file cannot be read or is not a valid config as it stands; one
    /// `FILE:LINE:COL: message` per problem.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{file}: no route \"{route}\" ({hint}routes: {known})")]
    UnknownRoute {
        file: String,
        route: String,
        /// `did you mean "x"? ` or empty.
        hint: String,
        /// Comma-separated, in file order.
        known: String,
    },
    #[error(
        "{file}:{line}:1: route \"{route}\" has no shift: add `shift = {{ to = \"UPSTREAM\", percent = N }}` to it first"
    )]
    NoShift {
        file: String,
        line: usize,
        route: String,
    },
    /// The file changed shape in a way this command does not understand; a
    /// bug if it ever happens, since the file was valid.
    #[error("{file}: cannot find route \"{route}\"'s shift.percent in the file's text")]
    NotFound { file: String, route: String },
    /// The edited text would not load, or would change more than the one
    /// number; the file is left as it was.
    #[error("{file}: the edited file would not say just this (nothing written): {why}")]
    Unexpected { file: String, why: String },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `25`, `12.5`, `0.01`, `100`, `25%` → hundredths of a percent.
pub fn parse_percent(s: &str) -> Result<u16, ShiftError> {
    let t = s.trim();
    let t = t.strip_suffix('%').unwrap_or(t);
    if let Some(rest) = t.strip_prefix('-')
        && !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return Err(ShiftError::OutOfRange(s.trim().to_owned()));
    }
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || (t.contains('.') && frac.is_empty()) {
        return Err(ShiftError::NotANumber(s.to_owned()));
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return Err(ShiftError::TooPrecise(s.trim().to_owned()));
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 3 {
        return Err(ShiftError::OutOfRange(s.trim().to_owned()));
    }
    let whole: u32 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| ShiftError::NotANumber(s.to_owned()))?
    };
    let frac: u32 = format!("{frac:0<2}")
        .parse()
        .map_err(|_| ShiftError::NotANumber(s.to_owned()))?;
    let bp = whole * 100 + frac;
    if bp > 10_000 {
        return Err(ShiftError::OutOfRange(s.trim().to_owned()));
    }
    Ok(bp as u16)
}

/// The edit, decided but not yet written.
#[derive(Debug)]
pub struct Edit {
    /// The whole new file text.
    pub text: String,
    /// False when the file already says it.
    pub changed: bool,
    pub old: String,
    pub new: String,
}

/// Sets route `route`'s `shift.percent` to `basis_points` in `src`'s text.
/// Pure: nothing is read or written.
pub fn edit_shift(src: &SourceFile, route: &str, basis_points: u16) -> Result<Edit, ShiftError> {
    let file = src.name().to_owned();
    let config = Config::parse(src)?;
    let Some(r) = config.routes.iter().find(|r| r.name == route) else {
        let names: Vec<&str> = config.routes.iter().map(|r| r.name.as_str()).collect();
        let hint = suggestion(route, &names)
            .map(|s| format!("did you mean \"{s}\"? "))
            .unwrap_or_default();
        let known = if names.is_empty() {
            "none in the file".to_owned()
        } else {
            names.join(", ")
        };
        return Err(ShiftError::UnknownRoute {
            file,
            route: route.to_owned(),
            hint,
            known,
        });
    };
    let Some(shift) = &r.shift else {
        return Err(ShiftError::NoShift {
            file,
            line: r.line,
            route: route.to_owned(),
        });
    };
    let (old, new) = (percent_text(shift.basis_points), percent_text(basis_points));
    if shift.basis_points == basis_points {
        return Ok(Edit {
            text: src.text().to_owned(),
            changed: false,
            old,
            new,
        });
    }
    let span = percent_span(src.text(), route).ok_or_else(|| ShiftError::NotFound {
        file: file.clone(),
        route: route.to_owned(),
    })?;
    let mut text = String::with_capacity(src.text().len() + new.len());
    text.push_str(&src.text()[..span.start]);
    text.push_str(&new);
    text.push_str(&src.text()[span.end..]);

    // Never write a file that would not load, or that says more than asked.
    let unexpected = |why: String| ShiftError::Unexpected {
        file: file.clone(),
        why,
    };
    let edited = Config::parse(&SourceFile::new(src.name(), text.as_str()))
        .map_err(|e| unexpected(e.to_string()))?;
    let summary = ConfigDiff::between(&config, &edited).summary();
    let expected = format!("route \"{route}\": shift.percent {old} -> {new}");
    if summary != [expected] {
        return Err(unexpected(summary.join("; ")));
    }
    Ok(Edit {
        text,
        changed: true,
        old,
        new,
    })
}

/// Where route `route`'s `shift.percent` value is written in `text` (the
/// number itself, without the spaces and comments around it).
fn percent_span(text: &str, route: &str) -> Option<Range<usize>> {
    let doc = toml_edit::Document::parse(text).ok()?;
    let routes: Vec<&dyn TableLike> = match doc.get("routes")? {
        Item::ArrayOfTables(a) => a.iter().map(|t| t as &dyn TableLike).collect(),
        Item::Value(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_inline_table().map(|t| t as &dyn TableLike))
            .collect(),
        _ => return None,
    };
    let r = routes.into_iter().find(|t| route_name(*t) == Some(route))?;
    let percent = r.get("shift")?.as_table_like()?.get("percent")?;
    match percent.as_value()? {
        v @ (Value::Integer(_) | Value::Float(_)) => v.span(),
        _ => None,
    }
}

/// A route's name as the config reads it: `name`, else the pattern as written.
fn route_name(t: &dyn TableLike) -> Option<&str> {
    ["name", "path", "prefix"]
        .into_iter()
        .find_map(|k| t.get(k).and_then(Item::as_str))
}

/// Sets `route`'s share in the file at `path` to `percent` (as typed: `25`,
/// `12.5`), writing only when it changes.
pub fn shift_file(path: &Path, route: &str, percent: &str) -> Result<Shifted, ShiftError> {
    let basis_points = parse_percent(percent)?;
    let src = SourceFile::read(path)?;
    let edit = edit_shift(&src, route, basis_points)?;
    if edit.changed {
        write_atomically(path, &edit.text).map_err(|source| ShiftError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(Shifted {
        route: route.to_owned(),
        old: edit.old,
        new: edit.new,
        file: path.to_path_buf(),
        written: edit.changed,
    })
}

/// Replaces the file behind `path` (through symlinks) with `text`: written
/// to a temporary file beside it with the same permissions (and owner, when
/// allowed), flushed, then renamed over it, so a reader — the proxy's
/// watcher — sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let real = std::fs::canonicalize(path)?;
    let meta = std::fs::metadata(&real)?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.strangler-shift-{}.tmp",
        std::process::id()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(meta.permissions())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            // Only root may give a file away; anyone else keeps ownership.
            let _ = std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()));
        }
        f.sync_all()?;
        std::fs::rename(&tmp, &real)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    // Make the rename itself durable; a failure here loses nothing visible.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;

//! The text a config came from, and the errors and warnings found in it.
//!
//! Every problem is reported as `FILE:LINE:COL: message`, so an operator can jump
//! straight to it. Problems are gathered, never returned one at a time: a config
//! with three mistakes reports all three.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A config file's name and text, with the line starts needed to turn byte
/// offsets (what the TOML parser gives) into line and column numbers.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: String,
    /// Byte offset of the start of every line; `line_starts[0] == 0`.
    line_starts: Vec<usize>,
}

impl SourceFile {
    /// `name` is what messages show: the path as the operator gave it.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// Reads `path`; the name in messages is the path as given.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(SourceFile::new(path.display().to_string(), text)),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn location(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// Turns a span-carrying diagnostic into a located one.
    pub fn locate(&self, d: &Diagnostic) -> Located {
        let (line, col) = d.span.as_ref().map_or((1, 1), |s| self.location(s.start));
        Located {
            file: self.name.clone(),
            line,
            col,
            message: d.message.clone(),
        }
    }
}

/// One problem found while reading a config, before it is tied to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Byte range in the source; `None` for problems about the file as a whole.
    pub span: Option<Range<usize>>,
    pub message: String,
}

impl Diagnostic {
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Diagnostic {
            span: Some(span),
            message: message.into(),
        }
    }
}

/// A problem with its place in a file, printed as `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in file order.
    #[error("{}", Errors(.0))]
    Invalid(Vec<Located>),
}

impl ConfigError {
    /// The individual problems (one for a read error).
    pub fn messages(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid(list) => list.iter().map(ToString::to_string).collect(),
        }
    }
}

struct Errors<'a>(&'a [Located]);

impl fmt::Display for Errors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_one_based_and_count_characters() {
        let src = SourceFile::new("f.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(src.location(0), (1, 1));
        assert_eq!(src.location(4), (1, 5));
        assert_eq!(src.location(6), (2, 1));
        // "é" is two bytes but one column.
        assert_eq!(src.location(10), (2, 4));
        assert_eq!(src.location(10_000), (3, 1));
    }

    #[test]
    fn invalid_lists_every_problem() {
        let e = ConfigError::Invalid(vec![
            Located {
                file: "f".into(),
                line: 1,
                col: 2,
                message: "one".into(),
            },
            Located {
                file: "f".into(),
                line: 3,
                col: 4,
                message: "two".into(),
            },
        ]);
        assert_eq!(e.to_string(), "f:1:2: one\nf:3:4: two");
    }
}

//! Configuration errors that say where: `FILE:LINE:COL: what is wrong (hint)`.

use core::fmt;
use core::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub file: PathBuf,
    /// 1-based line and column (in characters); 0 when the problem has no place in the file.
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// Every problem found in a configuration, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl fmt::Display for Errors {
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

impl std::error::Error for Errors {}

/// Collects errors against one file's text, turning byte spans into lines and columns.
pub(crate) struct Diagnostics<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<(usize, Error)>,
}

impl<'a> Diagnostics<'a> {
    pub(crate) fn new(file: &'a Path, text: &'a str) -> Self {
        Diagnostics {
            file,
            text,
            errors: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary_compat(offset)];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }

    /// Records a problem at `span`, with an optional hint.
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (line, col) = self.position(span.start);
        self.errors.push((
            span.start,
            Error {
                file: self.file.to_path_buf(),
                line,
                col,
                message: message.into(),
                hint,
            },
        ));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub(crate) fn finish(mut self) -> Errors {
        self.errors.sort_by_key(|(offset, _)| *offset);
        Errors(self.errors.into_iter().map(|(_, e)| e).collect())
    }
}

/// `str::floor_char_boundary` is not stable; this is the same for our use.
trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_character_columns() {
        let text = "a = 1\nbé = 2\n  c = 3\n";
        let mut d = Diagnostics::new(Path::new("f.toml"), text);
        d.error(0..1, "first", None);
        d.error(text.find("= 2").unwrap()..0, "second", Some("hint".into()));
        d.error(text.find('c').unwrap()..0, "third", None);
        let e = d.finish();
        let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "f.toml:1:1: first",
                "f.toml:2:4: second (hint)",
                "f.toml:3:3: third"
            ]
        );
    }
}

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

/// Collects errors against a configuration's text, turning byte spans into files, lines and
/// columns: the text may be several files one after the other (the main file, then those of
/// `interlink.d`), each from its offset on.
pub(crate) struct Diagnostics<'a> {
    files: Vec<(usize, PathBuf)>,
    text: &'a str,
    errors: Vec<(usize, Error)>,
}

impl<'a> Diagnostics<'a> {
    #[cfg(test)]
    pub(crate) fn new(file: &Path, text: &'a str) -> Self {
        Diagnostics::of_files(vec![(0, file.to_path_buf())], text)
    }

    /// `files`: where each file starts in `text`, in order; the first at 0.
    pub(crate) fn of_files(files: Vec<(usize, PathBuf)>, text: &'a str) -> Self {
        Diagnostics {
            files,
            text,
            errors: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (&Path, usize, usize) {
        let offset = self
            .text
            .floor_char_boundary_compat(offset.min(self.text.len()));
        let (start, file) = self
            .files
            .iter()
            .rev()
            .find(|(start, _)| *start <= offset)
            .map_or((0, Path::new("")), |(s, f)| (*s, f.as_path()));
        let before = &self.text[start..offset];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (file, line, col)
    }

    /// Records a problem at `span`, with an optional hint.
    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let (file, line, col) = self.position(span.start);
        let file = file.to_path_buf();
        self.errors.push((
            span.start,
            Error {
                file,
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

    #[test]
    fn positions_in_later_files_count_from_their_start() {
        let text = "a = 1\n\n[[link]]\nb = 2\n";
        let second = text.find("[[link]]").unwrap();
        let mut d = Diagnostics::of_files(
            vec![(0, "main.toml".into()), (second, "d/x.toml".into())],
            text,
        );
        d.error(text.find("b =").unwrap()..0, "in the second", None);
        d.error(0..1, "in the first", None);
        let lines: Vec<String> = d.finish().0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            ["main.toml:1:1: in the first", "d/x.toml:2:1: in the second"]
        );
    }
}

//! Reading the whole file when parts of it are wrong, so that `--check` reports every
//! problem in one run, as a compiler does.
//!
//! serde stops at the first field it cannot take (an unknown key, a wrong type, a missing
//! key). Each time it does, the problem is recorded and the smallest key-value, array element
//! or table that holds it is blanked out with spaces, which keeps every other byte where it
//! was (so later problems, and the checks that run on what is left, keep their lines and
//! columns); then the text is read again. A syntax error ends the reading: what follows it
//! cannot be trusted.

use core::ops::Range;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, Table, Value};

use crate::error::Diagnostics;

/// Enough for any real file; each pass removes at least one byte, so this only bounds the
/// work a hostile file can ask for (each pass reads the file again).
const MAX_PASSES: usize = 64;

/// Reads `text` as `T`, recording each problem in `diag`; `None` when the file cannot be read
/// at all (a syntax error, or too many problems).
pub(crate) fn read<T: DeserializeOwned>(diag: &mut Diagnostics<'_>, text: &str) -> Option<T> {
    let mut text = text.to_owned();
    // Keys removed so far: a "missing field" that names one of them is a consequence of the
    // first problem, not a second one.
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..MAX_PASSES {
        // A file that reads is read once; the places are only worked out for one that does
        // not (and its syntax errors are told by the document parser).
        let e = match toml::from_str::<T>(&text) {
            Ok(raw) => return Some(raw),
            Err(e) => e,
        };
        let doc = match ImDocument::parse(text.as_str()) {
            Ok(doc) => doc,
            Err(e) => {
                diag.error(e.span().unwrap_or(0..0), e.message().trim_end(), None);
                return None;
            }
        };
        let message = e.message().trim_end();
        let Some(span) = e.span() else {
            // Nowhere to point at, so nothing to remove either.
            diag.error(0..0, message, None);
            return None;
        };
        let consequence = missing_field(message).is_some_and(|k| removed.iter().any(|r| r == k));
        if !consequence {
            diag.error(span.clone(), message, None);
        }
        let mut places = Vec::new();
        table_places(doc.as_table(), &mut places);
        let place = innermost(&places, span.start)?;
        removed.push(key_at(&text, place.start));
        drop(doc);
        blank(&mut text, place);
    }
    None
}

/// The key named in serde's "missing field `name`".
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
}

/// The bare key a blanked place starts with (for `missing_field`).
fn key_at(text: &str, at: usize) -> String {
    text[at..]
        .trim_start_matches('[')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// The smallest place that holds `offset`.
fn innermost(places: &[Range<usize>], offset: usize) -> Option<Range<usize>> {
    places
        .iter()
        .filter(|p| p.start <= offset && offset < p.end.max(p.start + 1))
        .min_by_key(|p| p.end - p.start)
        .cloned()
}

/// Every key-value (from its key to the end of its value), array element and table (from its
/// header to the end of its last key-value) under `t`; returns the end of the last.
fn table_places(t: &Table, out: &mut Vec<Range<usize>>) -> Option<usize> {
    let mut end: Option<usize> = None;
    for (k, item) in t.iter() {
        let key = t.key(k).and_then(|k| k.span());
        let place = match item {
            Item::None => None,
            Item::Value(v) => value_places(v, out).map(|v_end| {
                let start = key.as_ref().map_or(v_end, |k| k.start);
                start..v_end
            }),
            Item::Table(sub) => header_table(sub, out),
            Item::ArrayOfTables(a) => {
                let mut last = None;
                for sub in a.iter() {
                    if let Some(p) = header_table(sub, out) {
                        last = Some(p.end);
                        out.push(p);
                    }
                }
                last.map(|e| e..e)
            }
        };
        if let Some(p) = place {
            end = Some(end.map_or(p.end, |e| e.max(p.end)));
            if !matches!(item, Item::ArrayOfTables(_)) {
                out.push(p);
            }
        }
    }
    end
}

/// A `[table]` or one `[[table]]` element: its header to its last key-value. An implicit
/// table (only named by its subtables' headers) is the extent of what it holds.
fn header_table(t: &Table, out: &mut Vec<Range<usize>>) -> Option<Range<usize>> {
    let body_end = table_places(t, out);
    t.span()
        .map(|h| h.start..body_end.map_or(h.end, |b| b.max(h.end)))
}

/// Records the places inside an inline table or array `v`; returns the end of `v`.
fn value_places(v: &Value, out: &mut Vec<Range<usize>>) -> Option<usize> {
    match v {
        Value::InlineTable(t) => {
            for (k, item) in t.iter() {
                let key = t.key(k).and_then(|k| k.span());
                if let (Some(key), Some(end)) = (key, value_places(item, out)) {
                    out.push(key.start..end);
                }
            }
        }
        Value::Array(a) => {
            for item in a.iter() {
                if let (Some(s), Some(end)) = (item.span(), value_places(item, out)) {
                    out.push(s.start..end);
                }
            }
        }
        _ => {}
    }
    v.span().map(|s| s.end)
}

/// Replaces `place` with spaces (newlines kept), and one comma that separated it from a
/// neighbour in an array or inline table, so that what is left still parses.
fn blank(text: &mut String, place: Range<usize>) {
    let mut bytes = std::mem::take(text).into_bytes();
    for b in &mut bytes[place.clone()] {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    let after = bytes[place.end..]
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| place.end + i);
    let before = bytes[..place.start]
        .iter()
        .rposition(|b| !b.is_ascii_whitespace());
    match (after, before) {
        (Some(i), _) if bytes[i] == b',' => bytes[i] = b' ',
        (_, Some(i)) if bytes[i] == b',' => bytes[i] = b' ',
        _ => {}
    }
    // Only ASCII bytes were replaced by ASCII, on character boundaries: still UTF-8.
    *text = String::from_utf8(bytes).unwrap_or_default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        a: Option<u32>,
        b: Option<String>,
        #[serde(default)]
        t: Vec<Inner>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        name: String,
        #[serde(default)]
        list: Vec<u32>,
        x: Option<Pair>,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Pair {
        p: u32,
        q: u32,
    }

    fn problems(text: &str) -> (Option<Doc>, Vec<String>) {
        let mut d = Diagnostics::new(Path::new("f.toml"), text);
        let doc = read::<Doc>(&mut d, text);
        (doc, d.finish().0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let (doc, e) = problems(
            "a = \"one\"\nzz = 1\nb = \"ok\"\n\n[[t]]\nname = 5\nlist = [1, \"two\", 3]\n\
             x = { p = 1, r = 2, q = 3 }\n\n[[t]]\nname = \"fine\"\n\n[extra]\nk = 1\n",
        );
        assert_eq!(e.len(), 6, "{e:#?}");
        assert!(e[0].starts_with("f.toml:1:5: invalid type"), "{e:#?}");
        assert!(e[1].starts_with("f.toml:2:1: unknown field `zz`"), "{e:#?}");
        assert!(e[2].starts_with("f.toml:6:8: invalid type"), "{e:#?}");
        assert!(e[3].starts_with("f.toml:7:12: invalid type"), "{e:#?}");
        assert!(e[4].starts_with("f.toml:8:14: unknown field `r`"), "{e:#?}");
        assert!(
            e[5].starts_with("f.toml:13:2: unknown field `extra`"),
            "{e:#?}"
        );
        // What was right is still read: b, and the second table.
        let doc = doc.unwrap();
        assert_eq!(doc.b.as_deref(), Some("ok"));
        assert_eq!(doc.t.len(), 1);
        assert_eq!(doc.t[0].name, "fine");
    }

    #[test]
    fn a_syntax_error_ends_the_reading() {
        let (doc, e) = problems("zz = 1\na = = 2\n");
        assert!(doc.is_none());
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with("f.toml:2:"), "{e:#?}");
    }

    #[test]
    fn the_missing_key_of_a_removed_value_is_not_a_second_problem() {
        let (_, e) = problems("[[t]]\nname = 1\n");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].contains("invalid type"), "{e:#?}");
        let (_, e) = problems("[[t]]\nlist = []\n");
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].contains("missing field `name`"), "{e:#?}");
    }

    #[test]
    fn a_hostile_file_is_bounded() {
        let text: String = (0..1000).map(|i| format!("k{i} = 1\n")).collect();
        let (doc, e) = problems(&text);
        assert!(doc.is_none());
        assert_eq!(e.len(), MAX_PASSES);
    }
}

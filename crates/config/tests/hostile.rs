//! The checker on hostile files: the example configuration with lines dropped, repeated and
//! given wrong values. It never panics, and every problem it reports points inside the file.

use std::path::Path;

use interlink_config::Config;
use proptest::prelude::*;

const EXAMPLE: &str = include_str!("../../../config/interlink.toml");

/// What a mutated line becomes.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1".to_owned()),
        Just("\"x\"".to_owned()),
        Just("[1, \"a\", { b = 2 }]".to_owned()),
        Just("{ unknown = true }".to_owned()),
        Just("-9223372036854775808".to_owned()),
        "[a-z_]{1,8}".prop_map(|k| format!("\"{k}\"")),
    ]
}

#[derive(Clone, Debug)]
enum Edit {
    Drop(usize),
    Repeat(usize),
    Value(usize, String),
    Key(usize, String),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Drop),
        any::<usize>().prop_map(Edit::Repeat),
        (any::<usize>(), value()).prop_map(|(l, v)| Edit::Value(l, v)),
        (any::<usize>(), "[a-z_]{1,12}").prop_map(|(l, k)| Edit::Key(l, k)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn a_mangled_example_is_reported_never_panics(edits in prop::collection::vec(edit(), 1..12)) {
        let mut lines: Vec<String> = EXAMPLE.lines().map(str::to_owned).collect();
        for e in edits {
            let n = lines.len().max(1);
            match e {
                Edit::Drop(l) => { if !lines.is_empty() { lines.remove(l % n); } }
                Edit::Repeat(l) => { if !lines.is_empty() { let x = lines[l % n].clone(); lines.insert(l % n, x); } }
                Edit::Value(l, v) => {
                    if let Some(line) = lines.get_mut(l % n) {
                        if let Some((k, _)) = line.split_once('=') {
                            *line = format!("{k}= {v}");
                        }
                    }
                }
                Edit::Key(l, k) => {
                    if let Some(line) = lines.get_mut(l % n) {
                        if let Some((_, v)) = line.split_once('=') {
                            *line = format!("{k} ={v}");
                        }
                    }
                }
            }
        }
        let text = lines.join("\n");
        let count = lines.len() + 1;
        let dir = std::env::temp_dir();
        if let Err(errors) = Config::parse(Path::new("f.toml"), &text, &dir) {
            prop_assert!(!errors.0.is_empty());
            for e in &errors.0 {
                prop_assert!(e.line <= count, "{e} ({count} lines)");
            }
        }
    }
}

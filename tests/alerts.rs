//! `contrib/prometheus/interlink-alerts.yml`: `promtool check rules` passes, `promtool test
//! rules` with the synthetic series of `interlink-alerts.test.yml` passes (each alert fires
//! where it should, with its labels and text, and not elsewhere), and every metric the rules
//! read is one interlinkd exports. Skipped, with a note, without promtool (`scripts/test.sh`
//! installs prometheus).

use std::path::Path;
use std::process::Command;

fn promtool(args: &[&str]) -> Option<(bool, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .ok()?;
    Some((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

#[test]
fn the_alert_rules_check_and_pass_their_tests() {
    let Some((ok, text)) = promtool(&["check", "rules", "interlink-alerts.yml"]) else {
        eprintln!("skipped: promtool is not installed");
        return;
    };
    assert!(ok, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let (ok, text) = promtool(&["test", "rules", "interlink-alerts.test.yml"]).unwrap();
    assert!(ok, "{text}");
}

#[test]
fn the_rules_read_only_metrics_interlinkd_exports() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules =
        std::fs::read_to_string(root.join("contrib/prometheus/interlink-alerts.yml")).unwrap();
    let metrics = std::fs::read_to_string(root.join("daemon/src/metrics.rs")).unwrap();
    let mut names: Vec<&str> = rules
        .match_indices("interlink_")
        .map(|(at, _)| {
            let rest = &rules[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|n| !n.ends_with('.')) // file names
        .collect();
    names.sort_unstable();
    names.dedup();
    assert!(names.len() >= 10, "{names:?}");
    for n in names {
        if n == "interlink_" || n.starts_with("interlink_alerts") {
            continue;
        }
        assert!(
            metrics.contains(&format!("\"{n}\"")),
            "{n} is not a metric interlinkd exports"
        );
    }
}

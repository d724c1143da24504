//! interlinkd's Prometheus endpoint: the families of the product's list, in the text format,
//! with values that follow what the daemon does. Needs root (a namespace of its own).

use interlink_testkit as netns;

use std::path::Path;
use std::time::Duration;

use netns::Lab;

fn get(lab: &Lab, path: &str) -> String {
    netns::http_get(&lab.ns("d"), "127.0.0.1:9477", path).unwrap()
}

#[test]
fn metrics_in_the_text_format() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("metrics");
    lab.add_ns("d");
    let cfg = lab.file(
        "interlink.toml",
        "[metrics]\nlisten = \"127.0.0.1:9477\"\n\n[[route]]\nprefix = \"10.99.0.0/16\"\ntype = \"blackhole\"\n",
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("d", "d", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("the metrics endpoint", Duration::from_secs(10), || {
        lab.log("d")
            .contains("metrics on http://127.0.0.1:9477/metrics")
    });
    let mut body = String::new();
    lab.wait_for("the route in the metrics", Duration::from_secs(5), || {
        body = get(&lab, "/metrics");
        body.contains("interlink_fib_routes{table=\"254\",family=\"ipv4\"} 1")
    });
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    assert!(body.contains("Content-Type: text/plain; version=0.0.4"));
    let text = body.split("\r\n\r\n").nth(1).unwrap();
    assert!(
        text.contains("interlink_fib_operations_total{op=\"add\",result=\"ok\"} 1"),
        "{text}"
    );
    // Families without a sample (no link, no BGP here) are left out, as the registry does;
    // the lab's test sees those, through promtool.
    assert!(!text.contains("interlink_link_up"), "{text}");
    for family in [
        "interlink_fib_routes gauge",
        "interlink_fib_operations_total counter",
        "process_resident_memory_bytes gauge",
        "process_cpu_seconds_total counter",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family}:\n{text}"
        );
    }
    // Every sample belongs to a family declared before it, and parses as name, labels, value.
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# TYPE ") {
            declared.push(t.split_whitespace().next().unwrap().to_owned());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name_labels, value) = line.rsplit_once(' ').unwrap();
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
        let name = name_labels.split('{').next().unwrap();
        assert!(
            declared
                .iter()
                .any(|f| name == f || name.starts_with(&format!("{f}_"))),
            "{line} has no family"
        );
    }
    let rss: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(rss > 1e6, "{rss}");
    assert!(get(&lab, "/").starts_with("HTTP/1.1 404"));
}

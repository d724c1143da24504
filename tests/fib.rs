//! interlinkd and the kernel FIB, in a network namespace: static routes installed with
//! interlink's protocol; after kill -9 the kernel keeps them; a restart adopts them without
//! a delete and re-add (watched with `ip monitor route`) and sweeps the one no longer
//! configured; SIGTERM withdraws them, or keeps them with `on_shutdown = "keep"`.

use interlink_testkit as netns;

use std::path::Path;
use std::time::Duration;

use netns::Lab;

const ROUTES: &str = r#"
[[route]]
prefix = "10.50.0.0/16"
via = ["192.0.2.2"]

[[route]]
prefix = "10.51.0.0/16"
via = ["192.0.2.2", "192.0.2.3"]

[[route]]
prefix = "2001:db8:50::/48"
via = ["2001:db8:1::2"]
"#;

const SWEPT: &str = r#"
[[route]]
prefix = "10.52.0.0/16"
type = "blackhole"
"#;

/// The lines of `ip monitor route` output about the prefixes these tests configure.
fn ours(monitor: &str) -> String {
    monitor
        .lines()
        .filter(|l| {
            ["10.50.", "10.51.", "10.52.", "2001:db8:50:"]
                .iter()
                .any(|p| l.contains(p))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

fn lab(test: &str) -> Option<Lab> {
    if !netns::require_root() {
        return None;
    }
    let mut lab = Lab::new(test);
    lab.add_ns("gw");
    lab.exec(
        "gw",
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "p0",
        ],
    );
    lab.exec("gw", &["ip", "link", "set", "v0", "up"]);
    lab.exec("gw", &["ip", "link", "set", "p0", "up"]);
    lab.exec("gw", &["ip", "addr", "add", "192.0.2.1/24", "dev", "v0"]);
    lab.exec(
        "gw",
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:1::1/64",
            "dev",
            "v0",
            "nodad",
        ],
    );
    Some(lab)
}

/// Our routes in the namespace, both families, as `ip route show` prints them.
fn routes(lab: &Lab) -> String {
    let mut all = String::new();
    for family in ["-4", "-6"] {
        let out = lab.exec("gw", &["ip", family, "route", "show", "proto", "77"]);
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

fn start(lab: &mut Lab, name: &str, config: &str) {
    let cfg = lab.file(&format!("{name}.toml"), config);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in(name, "gw", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("interlinkd to run", Duration::from_secs(10), || {
        lab.log(name).contains("running with")
    });
}

fn wait_routes(lab: &Lab, what: &str, cond: impl Fn(&str) -> bool) {
    lab.wait_for(what, Duration::from_secs(10), || cond(&routes(lab)));
}

#[test]
fn routes_survive_kill_9_and_a_restart_adopts_them_without_a_change() {
    let Some(mut lab) = lab("fib-restart") else {
        return;
    };
    start(&mut lab, "first", &format!("{ROUTES}{SWEPT}"));
    // Through nexthop objects where one gateway carries them (`nhid N via ...`).
    wait_routes(&lab, "the routes in the kernel", |r| {
        r.lines().any(|l| {
            l.starts_with("10.50.0.0/16 nhid ")
                && l.trim_end().ends_with("via 192.0.2.2 dev v0 metric 20")
        }) && r.contains("nexthop via 192.0.2.3 dev v0 weight 1")
            && r.contains("blackhole 10.52.0.0/16 metric 20")
            && r.lines().any(|l| {
                l.starts_with("2001:db8:50::/48 nhid ")
                    && l.contains("via 2001:db8:1::2 dev v0 metric 20")
            })
    });
    let installed = routes(&lab);
    // The object of 10.50.0.0/16, the group of 10.51.0.0/16 and its two members, the IPv6
    // object.
    assert_eq!(nexthops(&lab).len(), 5, "{:?}", nexthops(&lab));
    assert!(
        nexthops(&lab).iter().any(|l| l.contains(" group ")),
        "{:?}",
        nexthops(&lab)
    );

    // A crash: the kernel keeps forwarding on the routes.
    lab.kill9("first");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(routes(&lab), installed);

    // Watch every change from here on, then restart without the blackhole route.
    lab.spawn_in("monitor", "gw", Path::new("ip"), &["monitor", "route"]);
    std::thread::sleep(Duration::from_millis(300));
    start(&mut lab, "second", ROUTES);
    wait_routes(&lab, "the unconfigured route swept", |r| {
        !r.contains("10.52.0.0/16")
    });
    std::thread::sleep(Duration::from_millis(300));
    let log = lab.log("second");
    assert!(
        log.contains("4 route(s) of a previous run adopted"),
        "{log}"
    );
    // Only our prefixes count: the kernel adds routes of its own (IPv6 link-local addresses
    // come up late on the veths).
    let changes = ours(&lab.log("monitor"));
    let lines: Vec<&str> = changes.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "only the sweep may change the kernel:\n{changes}"
    );
    assert!(
        lines[0].starts_with("Deleted blackhole 10.52.0.0/16"),
        "{changes}"
    );
    let kept: String = installed
        .lines()
        .filter(|l| !l.contains("10.52.0.0/16"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(routes(&lab), kept);

    // SIGTERM withdraws them (the default).
    let (status, log) = lab.stop("second");
    assert_eq!(status, Some(0), "{log}");
    assert_eq!(routes(&lab), "", "{log}");
    assert!(nexthops(&lab).is_empty(), "{:?}", nexthops(&lab));
    assert!(
        log.contains("fib: stopped; 0 route(s) left after the withdrawal"),
        "{log}"
    );
}

/// Our nexthop objects in the namespace, as `ip nexthop show` prints them.
fn nexthops(lab: &Lab) -> Vec<String> {
    let out = lab.exec("gw", &["ip", "nexthop", "show", "proto", "77"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn on_shutdown_keep_leaves_the_routes_forwarding() {
    let Some(mut lab) = lab("fib-keep") else {
        return;
    };
    let config = format!("[fib]\non_shutdown = \"keep\"\n{ROUTES}");
    start(&mut lab, "first", &config);
    wait_routes(&lab, "the routes in the kernel", |r| r.lines().count() >= 5);
    let installed = routes(&lab);
    let (status, log) = lab.stop("first");
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("3 route(s) kept in the kernel"), "{log}");
    assert_eq!(routes(&lab), installed);
    let objects = nexthops(&lab);
    assert_eq!(
        objects.len(),
        5,
        "the objects stay with their routes: {objects:?}"
    );
    // And the next start takes them over as they are.
    lab.spawn_in("monitor", "gw", Path::new("ip"), &["monitor", "route"]);
    std::thread::sleep(Duration::from_millis(300));
    start(&mut lab, "second", &config);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ours(&lab.log("monitor")), "");
    let log = lab.log("second");
    assert!(
        log.contains("3 route(s) of a previous run adopted"),
        "{log}"
    );
    assert_eq!(routes(&lab), installed);
    assert_eq!(nexthops(&lab), objects, "adopted as they were");
}

#[test]
fn a_foreign_route_is_reported_not_overwritten() {
    let Some(mut lab) = lab("fib-foreign") else {
        return;
    };
    lab.exec(
        "gw",
        &[
            "ip",
            "route",
            "add",
            "10.50.0.0/16",
            "via",
            "192.0.2.9",
            "metric",
            "20",
        ],
    );
    start(&mut lab, "gw", ROUTES);
    lab.wait_for("the conflict in the log", Duration::from_secs(5), || {
        lab.log("gw")
            .contains("fib: 10.50.0.0/16: a route that interlink does not own")
    });
    let out = lab.exec("gw", &["ip", "route", "show", "10.50.0.0/16"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.50.0.0/16 via 192.0.2.9 dev v0 metric 20"
    );
    // The others went in.
    assert!(routes(&lab).contains("10.51.0.0/16"));
}

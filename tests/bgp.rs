//! interlinkd's BGP against BIRD 2, in network namespaces: IPv4 and IPv6 sessions; BIRD's
//! routes that the import policy admits reach the kernel (proto 77) and the others do not;
//! interlinkd's networks reach BIRD; a withdrawal propagates; SIGTERM withdraws. When BIRD
//! restarts (graceful restart), its routes stay in the kernel throughout. interlinkctl,
//! reloads and policy against BIRD; at the end, the same basics against FRR (TCP-MD5, route
//! refresh), GoBGP (a max-prefix teardown) and OpenBGPD (TCP-MD5 held, restarted and
//! refused, communities both ways). Needs root, bird2, frr, gobgpd and openbgpd.

use interlink_testkit as netns;

use std::path::Path;
use std::time::Duration;

use netns::Lab;

const BIRD: &str = r#"
router id 10.0.0.2;
protocol device {}
protocol static static4 {
    ipv4;
    route 10.60.0.0/16 blackhole;
    route 10.99.0.0/16 blackhole;
}
protocol static static6 {
    ipv6;
    route 2001:db8:60::/48 blackhole;
}
protocol bgp v4 {
    local 10.0.0.2 as 64512;
    neighbor 10.0.0.1 as 65001;
    connect retry time 1;
    ipv4 { import all; export all; };
}
protocol bgp v6 {
    local fd00::2 as 64512;
    neighbor fd00::1 as 65001;
    connect retry time 1;
    ipv6 { import all; export all; };
}
"#;

const INTERLINK: &str = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
import = { prefixes = ["10.60.0.0/16 le 24"] }
export = { networks = true }

[[neighbor]]
address = "fd00::2"
remote_asn = 64512
import = { prefixes = ["2001:db8:60::/48"] }
export = { networks = true }

[bgp]
networks = ["10.70.0.0/16", "2001:db8:70::/48"]
"#;

fn routes(lab: &Lab) -> String {
    let mut all = String::new();
    for family in ["-4", "-6"] {
        let out = lab.exec("gw", &["ip", family, "route", "show", "proto", "77"]);
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    without_nhid(&all)
}

/// `ip route` output with the nexthop object ids taken out (`nhid N `): which object a
/// route uses is the FIB's business (crates/fib/tests/kernel.rs), where it goes is these
/// tests'.
fn without_nhid(routes: &str) -> String {
    routes
        .lines()
        .map(|l| {
            let mut words = l.split_whitespace();
            let mut kept = Vec::new();
            while let Some(w) = words.next() {
                if w == "nhid" {
                    words.next();
                } else {
                    kept.push(w);
                }
            }
            kept.join(" ") + "\n"
        })
        .collect()
}

fn birdc(lab: &Lab, args: &[&str]) -> String {
    netns::birdc(&lab.dir.join("bird.ctl"), args)
}

#[test]
fn routes_flow_both_ways_with_bird() {
    if !netns::require_root() {
        return;
    }
    let mut lab = start("bgp-e2e", BIRD, INTERLINK);

    // BIRD's admitted routes in the kernel, through BIRD.
    lab.wait_for(
        "BIRD's routes in the kernel",
        Duration::from_secs(20),
        || {
            let r = routes(&lab);
            r.contains("10.60.0.0/16 via 10.0.0.2 dev eth0 metric 20")
                && r.contains("2001:db8:60::/48 via fd00::2 dev eth0 metric 20")
        },
    );
    assert!(
        !routes(&lab).contains("10.99.0.0/16"),
        "an unadmitted route went in"
    );
    // Both sessions sent End-of-RIB.
    lab.wait_for("convergence", Duration::from_secs(10), || {
        lab.log("gw").contains("converged")
    });
    let log = lab.log("gw");
    assert!(
        log.contains("bgp: 10.0.0.2 (AS 64512) established"),
        "{log}"
    );
    assert!(log.contains("bgp: fd00::2 (AS 64512) established"), "{log}");

    // Our networks in BIRD, from us.
    lab.wait_for("our networks in BIRD", Duration::from_secs(10), || {
        let r = birdc(&lab, &["show", "route", "all"]);
        r.contains("10.70.0.0/16") && r.contains("2001:db8:70::/48") && r.contains("65001")
    });

    // A withdrawal propagates.
    birdc(&lab, &["disable", "static4"]);
    lab.wait_for(
        "the withdrawal in the kernel",
        Duration::from_secs(10),
        || !routes(&lab).contains("10.60.0.0/16"),
    );

    // SIGTERM withdraws what is left.
    let (status, log) = lab.stop("gw");
    assert_eq!(status, Some(0), "{log}");
    assert_eq!(routes(&lab), "", "{log}");
    lab.wait_for("BIRD to see the shutdown", Duration::from_secs(5), || {
        birdc(&lab, &["show", "protocols", "all", "v4"]).contains("interlinkd is stopping")
    });
}

/// A lab with BIRD (config `bird`) and interlinkd (config `interlink`) joined by a veth.
fn start(test: &str, bird: &str, interlink: &str) -> Lab {
    let mut lab = Lab::new(test);
    lab.add_ns("gw");
    lab.add_ns("bird");
    lab.veth("gw", "eth0", "bird", "eth0");
    lab.addr("gw", "eth0", "10.0.0.1/24");
    lab.addr("gw", "eth0", "fd00::1/64");
    lab.addr("bird", "eth0", "10.0.0.2/24");
    lab.addr("bird", "eth0", "fd00::2/64");
    lab.spawn_bird("bird", "bird", bird);
    spawn_interlinkd(&mut lab, interlink);
    lab
}

/// BIRD's static routes of the large-table tests: 10,050 /24s from 10.100.0.0 on.
fn large_table() -> String {
    (0..10_050u32)
        .map(|i| {
            format!(
                "    route 10.{}.{}.0/24 blackhole;\n",
                100 + i / 256,
                i % 256
            )
        })
        .collect()
}

#[test]
fn a_restarting_peers_routes_stay_in_the_kernel() {
    if !netns::require_root() {
        return;
    }
    let bird = BIRD.replace(
        "ipv4 { import all; export all; };",
        "graceful restart on;\n    ipv4 { import all; export all; };",
    );
    let mut lab = start("bgp-gr", &bird, INTERLINK);
    lab.wait_for(
        "BIRD's route in the kernel",
        Duration::from_secs(20),
        || routes(&lab).contains("10.60.0.0/16 via 10.0.0.2"),
    );
    lab.wait_for("convergence", Duration::from_secs(10), || {
        lab.log("gw").contains("converged")
    });
    // Watch the kernel's routes from here on.
    lab.spawn_in("monitor", "gw", Path::new("ip"), &["monitor", "route"]);
    std::thread::sleep(Duration::from_millis(300));

    // BIRD dies without a NOTIFICATION: its routes stay, stale, for its restart time.
    lab.kill9("bird");
    lab.wait_for(
        "interlinkd to keep BIRD's routes",
        Duration::from_secs(10),
        || lab.log("gw").contains("keeping its routes"),
    );
    assert!(routes(&lab).contains("10.60.0.0/16 via 10.0.0.2"));

    // BIRD comes back and announces them again: nothing changes in the kernel.
    let bird_cfg = lab.dir.join("bird.conf");
    let sock = lab.dir.join("bird.ctl");
    let _ = std::fs::remove_file(&sock);
    lab.spawn_in(
        "bird2",
        "bird",
        Path::new("bird"),
        &[
            "-f",
            "-c",
            bird_cfg.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
        ],
    );
    lab.wait_for("the session again", Duration::from_secs(20), || {
        lab.log("gw")
            .matches("bgp: 10.0.0.2 (AS 64512) established")
            .count()
            == 2
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(routes(&lab).contains("10.60.0.0/16 via 10.0.0.2"));
    let changes = lab.log("monitor");
    assert!(
        !changes.contains("10.60.0.0/16"),
        "the kernel saw BIRD's route change:\n{changes}"
    );
}

/// Runs interlinkctl against the lab's control socket: (exit status, stdout, stderr).
fn ctl(lab: &Lab, args: &[&str]) -> (i32, String, String) {
    let sock = lab.dir.join("ctl.sock");
    netns::interlinkctl(env!("CARGO_BIN_EXE_interlinkctl"), &sock, args)
}

fn ctl_json(lab: &Lab, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ctl(lab, &all);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

#[test]
fn interlinkctl_shows_and_drives_the_sessions() {
    if !netns::require_root() {
        return;
    }
    let mut lab = start(
        "bgp-ctl",
        BIRD,
        &format!("{INTERLINK}\n[control]\nsocket = \"ctl.sock\"\n"),
    );
    lab.wait_for("convergence", Duration::from_secs(20), || {
        lab.log("gw").contains("fib: in sync with BGP")
    });
    // The socket: owner root, mode 0660.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(lab.dir.join("ctl.sock")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(meta.uid(), 0);

    // Neighbors: BIRD sent 10.60.0.0/16 and 10.99.0.0/16 over IPv4; policy took the first.
    let n = ctl_json(&lab, &["show", "neighbors"]);
    let v4 = &n[0];
    assert_eq!(v4["address"], "10.0.0.2");
    assert_eq!(v4["state"], "established");
    assert_eq!(v4["remote_as"], 64512);
    // Refused prefixes are counted, not kept: without soft reconfiguration, no received
    // count.
    assert_eq!(v4["received"], serde_json::Value::Null, "{n}");
    assert_eq!(v4["refused"]["ipv4"], 1, "{n}");
    assert_eq!(v4["accepted"]["ipv4"], 1, "{n}");
    assert_eq!(v4["advertised"]["ipv4"], 1, "{n}");
    assert_eq!(n[1]["address"], "fd00::2");
    assert_eq!(n[1]["accepted"]["ipv6"], 1, "{n}");
    let (code, table, _) = ctl(&lab, &["show", "neighbors"]);
    assert_eq!(code, 0);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("NEIGHBOR  AS     STATE"), "{table}");
    assert!(header.contains("ACCEPTED  REFUSED"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("10.0.0.2") && l.contains("established") && l.contains("1/0")),
        "{table}"
    );

    // Routes: the Loc-RIB, and every candidate for one prefix.
    let (_, table, _) = ctl(&lab, &["show", "routes"]);
    assert!(
        table.lines().any(|l| l.starts_with("10.60.0.0/16")
            && l.contains("10.0.0.2")
            && l.contains("64512")),
        "{table}"
    );
    assert!(table
        .lines()
        .any(|l| l.starts_with("10.70.0.0/16") && l.contains("local")));
    let r = ctl_json(&lab, &["show", "routes", "10.60.0.0/16"]);
    assert_eq!(r.as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r[0]["best"], true);
    assert_eq!(r[0]["next_hops"][0], "10.0.0.2");
    assert_eq!(r[0]["origin"], "igp");

    let s = ctl_json(&lab, &["status"]);
    assert_eq!(s["neighbors"], 2);
    assert_eq!(s["fib_routes"]["ipv4"], 1, "{s}");
    let f = ctl_json(&lab, &["show", "fib"]);
    assert_eq!(f["routes"]["ipv6"], 1, "{f}");
    assert_eq!(f["protocol"], 77);

    // Shut the IPv4 session down: BIRD hears why, its route leaves the kernel.
    let (code, _, err) = ctl(&lab, &["neighbor", "10.0.0.2", "shutdown"]);
    assert_eq!(code, 0, "{err}");
    lab.wait_for("BIRD to see the shutdown", Duration::from_secs(10), || {
        birdc(&lab, &["show", "protocols", "all", "v4"]).contains("shut down by the operator")
    });
    lab.wait_for("the route gone", Duration::from_secs(10), || {
        !routes(&lab).contains("10.60.0.0/16")
    });
    // It stays down (BIRD retries every second) until enabled.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        ctl_json(&lab, &["show", "neighbors"])[0]["state"],
        "shutdown"
    );
    ctl(&lab, &["neighbor", "10.0.0.2", "enable"]);
    lab.wait_for("the session back", Duration::from_secs(15), || {
        routes(&lab).contains("10.60.0.0/16")
    });
    // A reset bounces it.
    let up = ctl_json(&lab, &["show", "neighbors"])[0]["uptime_seconds"].clone();
    assert!(up.is_u64(), "{up}");
    ctl(&lab, &["neighbor", "10.0.0.2", "reset"]);
    lab.wait_for("BIRD to see the reset", Duration::from_secs(10), || {
        birdc(&lab, &["show", "protocols", "all", "v4"]).contains("Administrative reset")
    });

    // Mistakes: clear, with their exit status.
    let (code, _, err) = ctl(&lab, &["neighbor", "10.0.0.9", "reset"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("10.0.0.9 is not a configured neighbor"),
        "{err}"
    );
    let (code, _, err) = ctl(&lab, &["show", "routes", "10.0.0.0/33"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a prefix"), "{err}");
    let (code, _, err) = ctl(&lab, &["show", "everything"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command: show everything"), "{err}");
    let (code, _, err) = ctl(&lab, &["link", "nope", "rekey"]);
    assert_eq!(code, 1);
    assert!(err.contains("no link named \"nope\""), "{err}");

    let (status, log) = lab.stop("gw");
    assert_eq!(status, Some(0), "{log}");
    // The daemon is gone, and so is its socket: interlinkctl says so.
    assert!(!lab.dir.join("ctl.sock").exists());
    let (code, _, err) = ctl(&lab, &["status"]);
    assert_eq!(code, 3);
    assert!(err.contains("is it running?"), "{err}");
}

#[test]
fn a_reload_changes_bgp_without_bouncing_what_did_not_change() {
    if !netns::require_root() {
        return;
    }
    let ctl_section = "\n[control]\nsocket = \"ctl.sock\"\n";
    let mut lab = start("bgp-reload", BIRD, &format!("{INTERLINK}{ctl_section}"));
    lab.wait_for("convergence", Duration::from_secs(20), || {
        lab.log("gw").contains("fib: in sync with BGP")
    });
    let cfg = lab.dir.join("interlink.toml");
    let write = |text: &str| std::fs::write(&cfg, format!("{text}{ctl_section}")).unwrap();
    let uptime =
        |lab: &Lab, i: usize| ctl_json(lab, &["show", "neighbors"])[i]["uptime_seconds"].as_u64();
    let v6_up = uptime(&lab, 1).expect("v6 established");

    // Import policy: 10.99.0.0/16 admitted too. A route refresh brings it, no session bounces.
    write(&INTERLINK.replace(
        "import = { prefixes = [\"10.60.0.0/16 le 24\"] }",
        "import = { prefixes = [\"10.60.0.0/16 le 24\", \"10.99.0.0/16\"] }",
    ));
    let (code, out, err) = ctl(&lab, &["reload"]);
    assert_eq!(code, 0, "{out}{err}");
    lab.wait_for(
        "10.99.0.0/16 in the kernel",
        Duration::from_secs(10),
        || routes(&lab).contains("10.99.0.0/16 via 10.0.0.2"),
    );
    assert!(lab
        .log("gw")
        .contains("import policy changed; route refresh asked"));

    // Export policy: nothing more to BIRD over IPv4; our 10.70.0.0/16 leaves BIRD. A new
    // network goes out over IPv6.
    let text = INTERLINK
        .replace(
            "import = { prefixes = [\"10.60.0.0/16 le 24\"] }\nexport = { networks = true }",
            "import = { prefixes = [\"10.60.0.0/16 le 24\", \"10.99.0.0/16\"] }\nexport = { networks = false }",
        )
        .replace(
            "networks = [\"10.70.0.0/16\", \"2001:db8:70::/48\"]",
            "networks = [\"10.70.0.0/16\", \"2001:db8:70::/48\", \"2001:db8:71::/48\"]",
        );
    write(&text);
    let (code, _, err) = ctl(&lab, &["reload"]);
    assert_eq!(code, 0, "{err}");
    lab.wait_for(
        "10.70.0.0/16 withdrawn from BIRD",
        Duration::from_secs(10),
        || !birdc(&lab, &["show", "route"]).contains("10.70.0.0/16"),
    );
    lab.wait_for("2001:db8:71::/48 in BIRD", Duration::from_secs(10), || {
        birdc(&lab, &["show", "route"]).contains("2001:db8:71::/48")
    });
    // The IPv6 session never went down: its uptime kept counting.
    assert!(
        uptime(&lab, 1).unwrap() >= v6_up,
        "the IPv6 session was bounced"
    );
    assert!(!lab.log("gw").contains("fd00::2 down"), "{}", lab.log("gw"));

    // The IPv6 neighbor removed: BIRD hears why, its route leaves the kernel; IPv4 stays.
    let v4_only = text.replace(
        "[[neighbor]]\naddress = \"fd00::2\"\nremote_asn = 64512\nimport = { prefixes = [\"2001:db8:60::/48\"] }\nexport = { networks = true }\n",
        "",
    );
    assert_ne!(v4_only, text);
    write(&v4_only);
    ctl(&lab, &["reload"]);
    lab.wait_for("BIRD to see the removal", Duration::from_secs(10), || {
        birdc(&lab, &["show", "protocols", "all", "v6"])
            .contains("neighbor removed from the configuration")
    });
    lab.wait_for("the IPv6 route gone", Duration::from_secs(10), || {
        !routes(&lab).contains("2001:db8:60::/48")
    });
    assert_eq!(
        ctl_json(&lab, &["show", "neighbors"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(routes(&lab).contains("10.60.0.0/16"));
    // And back.
    write(&text);
    ctl(&lab, &["reload"]);
    lab.wait_for("the IPv6 route back", Duration::from_secs(15), || {
        routes(&lab).contains("2001:db8:60::/48 via fd00::2")
    });
    // A session setting (the hold time) restarts that session only.
    write(&text.replacen(
        "remote_asn = 64512\n",
        "remote_asn = 64512\nhold_time = 30\n",
        1,
    ));
    ctl(&lab, &["reload"]);
    lab.wait_for(
        "the IPv4 session restarted",
        Duration::from_secs(15),
        || {
            lab.log("gw").contains("10.0.0.2: session settings changed")
                && lab
                    .log("gw")
                    .matches("10.0.0.2 (AS 64512) established")
                    .count()
                    >= 2
        },
    );
    let (status, log) = lab.stop("gw");
    assert_eq!(status, Some(0), "{log}");
}

#[test]
fn policy_matches_and_sets_communities_med_local_pref_and_prepends() {
    if !netns::require_root() {
        return;
    }
    let bird = r#"
router id 10.0.0.2;
protocol device {}
protocol static static4 {
    ipv4;
    route 10.60.0.0/16 blackhole { bgp_community.add((64512,100)); };
    route 10.61.0.0/16 blackhole;
}
protocol bgp v4 {
    local 10.0.0.2 as 64512;
    neighbor 10.0.0.1 as 65001;
    connect retry time 1;
    ipv4 { import all; export all; };
}
"#;
    let interlink = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
import = { prefixes = ["10.60.0.0/14 le 24"], match_communities = ["64512:100"], local_pref = 300, communities = ["65001:7"], max_received = 100, soft_reconfiguration = true }
export = { networks = true, communities = ["65001:42", "no-export"], large_communities = ["65001:1:1"], med = 77, prepend = 2 }

[bgp]
networks = ["10.70.0.0/16"]

[control]
socket = "ctl.sock"
"#;
    let lab = start("bgp-policy", bird, interlink);
    lab.wait_for(
        "10.60.0.0/16 in the kernel",
        Duration::from_secs(20),
        || routes(&lab).contains("10.60.0.0/16"),
    );
    lab.wait_for("convergence", Duration::from_secs(10), || {
        lab.log("gw").contains("converged")
    });
    // Only the route with the community came in, with what import sets.
    assert!(!routes(&lab).contains("10.61.0.0/16"), "{}", routes(&lab));
    let r = ctl_json(&lab, &["show", "routes", "10.60.0.0/16"]);
    assert_eq!(r[0]["local_pref"], 300, "{r}");
    assert_eq!(
        r[0]["communities"],
        serde_json::json!(["64512:100", "65001:7"]),
        "{r}"
    );
    // Soft reconfiguration keeps the refused route, so it is counted as received.
    let n = ctl_json(&lab, &["show", "neighbors"]);
    assert_eq!(n[0]["received"]["ipv4"], 2, "{n}");
    assert_eq!(n[0]["refused"]["ipv4"], 1, "{n}");
    assert_eq!(n[0]["accepted"]["ipv4"], 1, "{n}");
    // What went out: prepended twice more, with the MED and communities export sets.
    lab.wait_for("our network in BIRD", Duration::from_secs(10), || {
        birdc(&lab, &["show", "route", "all"]).contains("10.70.0.0/16")
    });
    let all = birdc(&lab, &["show", "route", "all"]);
    let ours = &all[all.find("10.70.0.0/16").unwrap()..];
    assert!(ours.contains("BGP.as_path: 65001 65001 65001"), "{ours}");
    assert!(ours.contains("BGP.med: 77"), "{ours}");
    assert!(ours.contains("(65001,42)"), "{ours}");
    assert!(ours.contains("(65001, 1, 1)"), "{ours}");
}

/// The interlinkd side of the interop tests: an IPv4 and an IPv6 session with the peer at
/// 10.0.0.2 / fd00::2 (AS 64512), the IPv4 one with TCP-MD5 when `md5` is set.
fn interop_config(lab: &Lab, md5: bool, v4_import: &str) -> String {
    let password = if md5 {
        lab.secret("peer.md5", "interop-secret\n");
        "password_file = \"peer.md5\"\n"
    } else {
        ""
    };
    format!(
        r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
{password}import = {v4_import}
export = {{ networks = true }}

[[neighbor]]
address = "fd00::2"
remote_asn = 64512
import = {{ prefixes = ["2001:db8:60::/48"] }}
export = {{ networks = true }}

[bgp]
networks = ["10.70.0.0/16", "2001:db8:70::/48"]

[control]
socket = "ctl.sock"
"#
    )
}

/// Namespaces gw and peer joined by a veth, addressed as `start` does.
fn two_hosts(test: &str) -> Lab {
    let mut lab = Lab::new(test);
    lab.add_ns("gw");
    lab.add_ns("peer");
    lab.veth("gw", "eth0", "peer", "eth0");
    lab.addr("gw", "eth0", "10.0.0.1/24");
    lab.addr("gw", "eth0", "fd00::1/64");
    lab.addr("peer", "eth0", "10.0.0.2/24");
    lab.addr("peer", "eth0", "fd00::2/64");
    lab
}

fn spawn_interlinkd(lab: &mut Lab, config: &str) {
    let cfg = lab.file("interlink.toml", config);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);
}

/// What both interop tests check once the peer announces 10.60.0.0/16, 10.99.0.0/16 and
/// 2001:db8:60::/48: the admitted ones in the kernel, the other not.
fn peer_routes_arrive(lab: &Lab) {
    lab.wait_for(
        "the peer's routes in the kernel",
        Duration::from_secs(30),
        || {
            let r = routes(lab);
            r.contains("10.60.0.0/16 via 10.0.0.2 dev eth0 metric 20")
                && r.contains("2001:db8:60::/48 via fd00::2 dev eth0 metric 20")
        },
    );
    assert!(!routes(lab).contains("10.99.0.0/16"), "{}", routes(lab));
}

#[test]
fn interop_with_frr_md5_route_refresh_and_withdrawal() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("vtysh") {
        eprintln!("skipped: FRR is not installed (scripts/test.sh installs frr)");
        return;
    }
    let mut lab = two_hosts("bgp-frr");
    let vty = lab.spawn_frr(
        "frr",
        "peer",
        r#"
hostname peer
log stdout
router bgp 64512
 bgp router-id 10.0.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.0.1 remote-as 65001
 neighbor 10.0.0.1 password interop-secret
 neighbor fd00::1 remote-as 65001
 address-family ipv4 unicast
  network 10.60.0.0/16
  network 10.99.0.0/16
  no neighbor fd00::1 activate
 exit-address-family
 address-family ipv6 unicast
  neighbor fd00::1 activate
  network 2001:db8:60::/48
 exit-address-family
"#,
    );
    let config = interlink_config(&lab);
    spawn_interlinkd(&mut lab, &config);
    peer_routes_arrive(&lab);
    // Our networks in FRR, over both sessions.
    lab.wait_for("our networks in FRR", Duration::from_secs(15), || {
        let v4 = lab.vtysh("peer", &vty, &["show bgp ipv4 unicast 10.70.0.0/16"]);
        let v6 = lab.vtysh("peer", &vty, &["show bgp ipv6 unicast 2001:db8:70::/48"]);
        v4.contains("65001") && v6.contains("65001")
    });
    // A reload admits 10.99.0.0/16: FRR answers the route refresh.
    let cfg = lab.dir.join("interlink.toml");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "[\"10.60.0.0/16 le 24\"]",
        "[\"10.60.0.0/16 le 24\", \"10.99.0.0/16\"]",
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, _, err) = ctl(&lab, &["reload"]);
    assert_eq!(code, 0, "{err}");
    lab.wait_for(
        "10.99.0.0/16 after the refresh",
        Duration::from_secs(15),
        || routes(&lab).contains("10.99.0.0/16 via 10.0.0.2"),
    );
    let s = lab.vtysh("peer", &vty, &["show bgp neighbors 10.0.0.1"]);
    assert!(s.contains("Route refresh"), "{s}");
    // A withdrawal propagates.
    lab.vtysh(
        "peer",
        &vty,
        &[
            "configure terminal",
            "router bgp 64512",
            "address-family ipv4 unicast",
            "no network 10.60.0.0/16",
        ],
    );
    lab.wait_for("10.60.0.0/16 withdrawn", Duration::from_secs(15), || {
        !routes(&lab).contains("10.60.0.0/16")
    });
    let (status, log) = lab.stop("gw");
    assert_eq!(status, Some(0), "{log}");
    assert_eq!(routes(&lab), "", "{log}");
    lab.wait_for("FRR to see the shutdown", Duration::from_secs(10), || {
        lab.vtysh("peer", &vty, &["show bgp neighbors 10.0.0.1"])
            .contains("Administrative Shutdown")
    });
}

fn interlink_config(lab: &Lab) -> String {
    interop_config(lab, true, "{ prefixes = [\"10.60.0.0/16 le 24\"] }")
}

#[test]
fn interop_with_gobgp_and_a_max_prefix_teardown() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("gobgpd") {
        eprintln!("skipped: GoBGP is not installed (scripts/test.sh installs gobgpd)");
        return;
    }
    let mut lab = two_hosts("bgp-gobgp");
    lab.exec("peer", &["ip", "link", "set", "lo", "up"]);
    lab.spawn_gobgp(
        "gobgpd",
        "peer",
        r#"
[global.config]
  as = 64512
  router-id = "10.0.0.2"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.0.1"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv4-unicast"

[[neighbors]]
  [neighbors.config]
    neighbor-address = "fd00::1"
    peer-as = 65001
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "ipv6-unicast"
"#,
    );
    for (p, family) in [
        ("10.60.0.0/16", "ipv4"),
        ("10.99.0.0/16", "ipv4"),
        ("2001:db8:60::/48", "ipv6"),
    ] {
        let out = lab.gobgp("peer", &["global", "rib", "add", p, "-a", family]);
        assert!(!out.contains("rror"), "{out}");
    }
    let config = interop_config(&lab, false, "{ prefixes = [\"10.60.0.0/16 le 24\"] }");
    spawn_interlinkd(&mut lab, &config);
    peer_routes_arrive(&lab);
    lab.wait_for("our networks in GoBGP", Duration::from_secs(15), || {
        lab.gobgp("peer", &["global", "rib", "-a", "ipv4"])
            .contains("10.70.0.0/16")
            && lab
                .gobgp("peer", &["global", "rib", "-a", "ipv6"])
                .contains("2001:db8:70::/48")
    });
    let rib = lab.gobgp("peer", &["global", "rib", "-a", "ipv4"]);
    assert!(
        rib.lines()
            .any(|l| l.contains("10.70.0.0/16") && l.contains("65001")),
        "{rib}"
    );
    // A withdrawal propagates.
    lab.gobgp(
        "peer",
        &["global", "rib", "del", "10.60.0.0/16", "-a", "ipv4"],
    );
    lab.wait_for("10.60.0.0/16 withdrawn", Duration::from_secs(15), || {
        !routes(&lab).contains("10.60.0.0/16")
    });
    lab.gobgp(
        "peer",
        &["global", "rib", "add", "10.60.0.0/16", "-a", "ipv4"],
    );
    peer_routes_arrive(&lab);

    // Max-prefix: a limit of 1 over IPv4, and GoBGP sends 2 that policy admits: Cease
    // subcode 1 (RFC 4486), which GoBGP reports.
    let (_, log) = lab.stop("gw");
    let config = interop_config(
        &lab,
        false,
        "{ prefixes = [\"10.0.0.0/8 le 24\"], max_prefixes = 1, max_prefixes_restart = \"3s\" }",
    );
    std::fs::write(lab.dir.join("interlink.toml"), &config).unwrap();
    assert!(!log.contains("over the limit"), "{log}");
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    let cfg = lab.dir.join("interlink.toml");
    lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("the teardown", Duration::from_secs(20), || {
        lab.log("gw")
            .contains("2 IPv4 prefixes, over the limit of 1: tearing the session down for 3 s")
    });
    let torn = std::time::Instant::now();
    lab.wait_for("GoBGP to hear why", Duration::from_secs(10), || {
        lab.log("gobgpd")
            .contains("subcode 1(maximum number of prefixes reached)")
    });
    // The IPv6 session is not affected: its one prefix is within the limit.
    assert!(
        routes(&lab).contains("2001:db8:60::/48"),
        "{}",
        routes(&lab)
    );
    // Held down for the restart time, then started again (and torn down again).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ctl_json(&lab, &["show", "neighbors"])[0]["state"], "down");
    lab.wait_for("the restart", Duration::from_secs(10), || {
        lab.log("gw")
            .contains("10.0.0.2: max-prefix hold over; starting again")
    });
    assert!(
        torn.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        torn.elapsed()
    );
}

#[test]
fn show_routes_lists_the_first_ten_thousand_of_a_large_table() {
    if !netns::require_root() {
        return;
    }
    // BIRD announces 10,050 /24s.
    let routes = large_table();
    let bird = format!(
        "router id 10.0.0.2;\nprotocol device {{}}\nprotocol static s4 {{\n    ipv4;\n{routes}}}\n\
         protocol bgp v4 {{\n    local 10.0.0.2 as 64512;\n    neighbor 10.0.0.1 as 65001;\n\
             connect retry time 1;\n    ipv4 {{ import all; export all; }};\n}}\n"
    );
    let interlink = "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n[[neighbor]]\n\
                     address = \"10.0.0.2\"\nremote_asn = 64512\n\
                     import = { prefixes = [\"10.0.0.0/8 le 24\"] }\n\n[control]\nsocket = \"ctl.sock\"\n";
    let lab = start("bgp-many", &bird, interlink);
    lab.wait_for("the table in the kernel", Duration::from_secs(30), || {
        lab.log("gw").contains("fib: in sync with BGP: 10050 IPv4")
    });
    let (code, table, err) = ctl(&lab, &["show", "routes"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    // The header, 10,000 routes in prefix order, and what was left out.
    assert_eq!(lines.len(), 1 + 10_000 + 1, "{}", lines.len());
    assert!(lines[1].starts_with("10.100.0.0/24"), "{}", lines[1]);
    assert_eq!(
        lines[10_001],
        "(the first 10000 of 10050 routes in the kernel; `show routes PREFIX` for one)"
    );
    let r = ctl_json(&lab, &["show", "routes", "10.139.65.0/24"]);
    assert_eq!(r[0]["from"], "10.0.0.2", "{r}");
}

#[test]
fn routes_passed_on_to_another_peer_go_packed() {
    if !netns::require_root() {
        return;
    }
    // Two BIRDs in the peer namespace, each bound to its own address: B listens for what
    // interlinkd passes on; A then announces 10,050 /24s.
    let mut lab = two_hosts("bgp-pack");
    lab.addr("peer", "eth0", "10.0.0.3/24");
    let routes = large_table();
    let bird_a = format!(
        "router id 10.0.0.2;\nprotocol device {{}}\nprotocol static s4 {{\n    ipv4;\n{routes}}}\n\
         protocol bgp a {{\n    local 10.0.0.2 as 64512;\n    strict bind on;\n\
             neighbor 10.0.0.1 as 65001;\n    connect retry time 1;\n\
             ipv4 {{ import none; export all; }};\n}}\n"
    );
    let bird_b = "router id 10.0.0.3;\nprotocol device {}\nprotocol bgp b {\n\
                  local 10.0.0.3 as 64513;\n    strict bind on;\n    neighbor 10.0.0.1 as 65001;\n\
                  connect retry time 1;\n    ipv4 { import all; export none; };\n}\n";
    let sock_b = lab.spawn_bird("bird-b", "peer", bird_b);
    let interlink = "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n\
                     [[neighbor]]\naddress = \"10.0.0.2\"\nremote_asn = 64512\n\
                     import = { prefixes = [\"10.0.0.0/8 le 24\"] }\n\n\
                     [[neighbor]]\naddress = \"10.0.0.3\"\nremote_asn = 64513\n\
                     export = { prefixes = [\"10.0.0.0/8 le 24\"] }\n\n\
                     [control]\nsocket = \"ctl.sock\"\n";
    spawn_interlinkd(&mut lab, interlink);
    lab.wait_for("B established", Duration::from_secs(20), || {
        lab.log("gw").contains("10.0.0.3 (AS 64513) established")
    });
    lab.spawn_bird("bird-a", "peer", &bird_a);
    let count = |sock: &Path| {
        let all = [
            "birdc",
            "-s",
            sock.to_str().unwrap(),
            "show",
            "route",
            "count",
        ];
        let out = String::from_utf8_lossy(&netns::sh(&all).stdout).into_owned();
        out.lines()
            .find(|l| l.contains("routes for"))
            .and_then(|l| l.split_whitespace().next()?.parse::<usize>().ok())
            .unwrap_or(0)
    };
    lab.wait_for("10,050 routes in B", Duration::from_secs(30), || {
        count(&sock_b) >= 10_050
    });
    // Passed on as they came, in UPDATEs of many prefixes each (a thousand /24s fit in one),
    // not one UPDATE a prefix.
    let n = ctl_json(&lab, &["show", "neighbors"]);
    let to_b = &n[1];
    assert_eq!(to_b["address"], "10.0.0.3");
    assert_eq!(to_b["advertised"]["ipv4"], 10_050, "{to_b}");
    let updates = to_b["messages"]["sent"]["update"].as_u64().unwrap();
    assert!(updates < 200, "{updates} UPDATEs for 10,050 prefixes");
}

/// OpenBGPD's side of its interop test: IPv4 and IPv6 sessions with TCP-MD5, one network with
/// a community and a large community, one policy refuses, and one IPv6 network.
const OPENBGPD: &str = r#"
AS 64512
router-id 10.0.0.2
network 10.60.0.0/16 set { community 64512:100 large-community 64512:1:2 }
network 10.99.0.0/16
network 2001:db8:60::/48 set large-community 64512:6:6
neighbor 10.0.0.1 {
    remote-as 65001
    tcp md5sig password interop-secret
}
neighbor fd00::1 {
    remote-as 65001
    tcp md5sig password interop-secret
    announce IPv4 none
    announce IPv6 unicast
}
allow from any
allow to any
"#;

/// Both of interlinkd's sessions established, as interlinkctl shows them (false while it
/// does not answer yet).
fn both_established(lab: &Lab) -> bool {
    let (code, out, _) = ctl(lab, &["--json", "show", "neighbors"]);
    let n: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
    code == 0
        && n.as_array()
            .is_some_and(|a| a.len() == 2 && a.iter().all(|n| n["state"] == "established"))
}

#[test]
fn interop_with_openbgpd_md5_held_restarted_and_refused() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("bgpd") || !netns::have("bgpctl") {
        eprintln!("skipped: OpenBGPD is not installed (scripts/test.sh installs openbgpd)");
        return;
    }
    let mut lab = two_hosts("bgp-openbgpd");
    lab.secret("peer.md5", "interop-secret\n");
    let config = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
password_file = "peer.md5"
import = { prefixes = ["10.60.0.0/16 le 24"] }
export = { networks = true, communities = ["65001:42"], large_communities = ["65001:1:1"] }

[[neighbor]]
address = "fd00::2"
remote_asn = 64512
password_file = "peer.md5"
import = { prefixes = ["2001:db8:60::/48"] }
export = { networks = true, large_communities = ["65001:6:6"] }

[bgp]
networks = ["10.70.0.0/16", "2001:db8:70::/48"]

[control]
socket = "ctl.sock"
"#;
    // interlinkd first: its connections wait on a peer that is not there yet (with TCP-MD5
    // its SYNs go unanswered), the order that used to drop the session.
    spawn_interlinkd(&mut lab, config);
    lab.wait_for("interlinkd", Duration::from_secs(10), || {
        lab.log("gw").contains("running with")
    });
    std::thread::sleep(Duration::from_secs(3));
    let sock = lab.spawn_openbgpd("openbgpd", "peer", OPENBGPD);
    peer_routes_arrive(&lab);
    lab.wait_for("both sessions", Duration::from_secs(30), || {
        both_established(&lab)
    });

    // Communities and large communities, both ways.
    let r = ctl_json(&lab, &["show", "routes", "10.60.0.0/16"]);
    assert_eq!(r[0]["communities"], serde_json::json!(["64512:100"]), "{r}");
    assert_eq!(
        r[0]["large_communities"],
        serde_json::json!(["64512:1:2"]),
        "{r}"
    );
    let r = ctl_json(&lab, &["show", "routes", "2001:db8:60::/48"]);
    assert_eq!(
        r[0]["large_communities"],
        serde_json::json!(["64512:6:6"]),
        "{r}"
    );
    lab.wait_for("our networks in OpenBGPD", Duration::from_secs(15), || {
        let v4 = lab.bgpctl("peer", &sock, &["show", "rib", "detail", "10.70.0.0/16"]);
        let v6 = lab.bgpctl(
            "peer",
            &sock,
            &["show", "rib", "detail", "2001:db8:70::/48"],
        );
        v4.contains("65001:42") && v4.contains("65001:1:1") && v6.contains("65001:6:6")
    });

    // Held for two minutes: no session drops on either side. (A connection collision as both
    // sides connect at once, RFC 4271 §6.8, may end a first session at the start; what
    // counts is that none ends while held.)
    let downs = |lab: &Lab| lab.log("gw").matches(" down:").count();
    let theirs_downs = |lab: &Lab| lab.log("openbgpd").matches("Established -> ").count();
    let (ours_before, theirs_before) = (downs(&lab), theirs_downs(&lab));
    let held = std::time::Instant::now();
    while held.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_secs(5));
        assert!(both_established(&lab), "{}", lab.log("gw"));
    }
    assert_eq!(downs(&lab), ours_before, "{}", lab.log("gw"));
    assert_eq!(theirs_downs(&lab), theirs_before, "{}", lab.log("openbgpd"));

    // A withdrawal: a network OpenBGPD adds and then deletes.
    let out = lab.bgpctl("peer", &sock, &["network", "add", "10.60.5.0/24"]);
    assert!(!out.contains("rror"), "{out}");
    lab.wait_for(
        "10.60.5.0/24 in the kernel",
        Duration::from_secs(15),
        || routes(&lab).contains("10.60.5.0/24 via 10.0.0.2"),
    );
    lab.bgpctl("peer", &sock, &["network", "delete", "10.60.5.0/24"]);
    lab.wait_for("10.60.5.0/24 withdrawn", Duration::from_secs(15), || {
        !routes(&lab).contains("10.60.5.0/24")
    });

    // OpenBGPD restarts: both sessions come back, with TCP-MD5.
    let (_, _) = lab.stop("openbgpd");
    lab.wait_for("the sessions down", Duration::from_secs(15), || {
        !both_established(&lab)
    });
    let sock = lab.spawn_openbgpd("openbgpd", "peer", OPENBGPD);
    lab.wait_for("both sessions again", Duration::from_secs(60), || {
        both_established(&lab)
    });
    peer_routes_arrive(&lab);
    let _ = sock;

    // A wrong password: the sessions are never established.
    lab.secret("peer.md5", "not-the-secret\n");
    let (code, _, err) = ctl(&lab, &["reload"]);
    assert_eq!(code, 0, "{err}");
    lab.wait_for("the sessions down", Duration::from_secs(15), || {
        let n = ctl_json(&lab, &["show", "neighbors"]);
        n.as_array()
            .is_some_and(|a| a.iter().all(|n| n["state"] != "established"))
    });
    let mark = lab.log("gw").len();
    std::thread::sleep(Duration::from_secs(15));
    let after = lab.log("gw")[mark..].to_owned();
    assert!(!after.contains("established"), "{after}");
    assert!(ctl_json(&lab, &["show", "neighbors"])
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["state"] != "established"));
    let (status, log) = lab.stop("gw");
    assert_eq!(status, Some(0), "{log}");
}

/// A peer that completes the OPEN exchange and then reads nothing (its receive window
/// closed), while sending KEEPALIVEs so that our hold timer never fires: interlinkd's writes
/// to it stall, and the session ends at the hold time with Hold Timer Expired. Meanwhile the
/// session with BIRD and the FIB carry on: a withdrawal from BIRD reaches the kernel.
#[test]
fn a_peer_that_stops_reading_costs_only_its_own_session() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use interlink_bgp::wire::{frame, Capabilities, Family, Message, Open, KEEPALIVE, MAX_LEN};

    if !netns::require_root() {
        return;
    }
    // 40,000 /28s of our own: 200 kB of NLRI, more than the peer's window and our socket's
    // send buffer (capped at 64 kB in this namespace) hold.
    let networks: Vec<String> = (0..40_000u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x6440_0000 + (i << 4));
            format!("\"{a}/28\"")
        })
        .collect();
    let interlink = format!(
        "{INTERLINK}\n[[neighbor]]\naddress = \"10.0.1.2\"\nremote_asn = 64513\nhold_time = 9\n\
         passive = true\nexport = {{ networks = true }}\n"
    )
    .replace(
        "networks = [\"10.70.0.0/16\", \"2001:db8:70::/48\"]",
        &format!("networks = [{}]", networks.join(", ")),
    );
    // The [[neighbor]] appended after [bgp] would belong to it: put [bgp] last.
    let (head, bgp) = interlink.split_at(interlink.find("[bgp]").unwrap());
    let (bgp, slow) = bgp.split_at(bgp.find("[[neighbor]]").unwrap());
    let interlink = format!("{head}{slow}\n{bgp}\n[control]\nsocket = \"ctl.sock\"\n");

    let mut lab = Lab::new("bgp-slow");
    lab.add_ns("gw");
    lab.add_ns("bird");
    lab.add_ns("slow");
    lab.veth("gw", "eth0", "bird", "eth0");
    lab.veth("gw", "eth1", "slow", "eth0");
    lab.addr("gw", "eth0", "10.0.0.1/24");
    lab.addr("gw", "eth0", "fd00::1/64");
    lab.addr("bird", "eth0", "10.0.0.2/24");
    lab.addr("bird", "eth0", "fd00::2/64");
    lab.addr("gw", "eth1", "10.0.1.1/24");
    lab.addr("slow", "eth0", "10.0.1.2/24");
    lab.exec(
        "gw",
        &[
            "sh",
            "-c",
            "echo '4096 16384 65536' > /proc/sys/net/ipv4/tcp_wmem",
        ],
    );
    lab.spawn_bird("bird", "bird", BIRD);
    spawn_interlinkd(&mut lab, &interlink);
    lab.wait_for(
        "BIRD's route in the kernel",
        Duration::from_secs(30),
        || routes(&lab).contains("10.60.0.0/16 via 10.0.0.2"),
    );

    // The slow peer: OPEN, KEEPALIVE, read until our OPEN and KEEPALIVE, then no more reads.
    let stop = Arc::new(AtomicBool::new(false));
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let peer = netns::in_ns(&lab.ns("slow"), move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut s = loop {
            match std::net::TcpStream::connect("10.0.1.1:179") {
                Ok(s) => break s,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("connect: {e}"),
            }
        };
        let small: libc::c_int = 2048;
        // SAFETY: a c_int option value that lives across the call.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&small as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        let mut out = Vec::new();
        Message::Open(Open {
            asn: 64513,
            hold_time: 9,
            router_id: std::net::Ipv4Addr::new(10, 0, 1, 2),
            caps: Capabilities {
                multiprotocol: vec![Family::IPV4_UNICAST],
                four_octet_as: Some(64513),
                ..Capabilities::default()
            },
        })
        .encode(&mut out);
        Message::Keepalive.encode(&mut out);
        s.write_all(&out).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 512];
        'opening: loop {
            let n = s.read(&mut chunk).unwrap();
            assert!(n > 0, "closed while opening");
            buf.extend_from_slice(&chunk[..n]);
            while let Some(f) = frame(&buf, MAX_LEN).unwrap() {
                let (len, kind) = (f.len, f.kind);
                buf.drain(..len);
                if kind == KEEPALIVE {
                    break 'opening;
                }
            }
        }
        up_tx.send(std::time::Instant::now()).unwrap();
        // KEEPALIVEs every 3 s, nothing read, until the connection is closed on us.
        let mut k = Vec::new();
        Message::Keepalive.encode(&mut k);
        while !stop2.load(Ordering::Relaxed) {
            if s.write_all(&k).is_err() {
                return Some(std::time::Instant::now());
            }
            std::thread::sleep(Duration::from_secs(3));
        }
        None
    });
    let up = up_rx.recv_timeout(Duration::from_secs(30)).unwrap();

    // While its writes stall: BIRD withdraws, and the kernel follows.
    std::thread::sleep(Duration::from_secs(2));
    birdc(&lab, &["disable", "static4"]);
    lab.wait_for(
        "the withdrawal in the kernel",
        Duration::from_secs(5),
        || !routes(&lab).contains("10.60.0.0/16"),
    );
    assert!(up.elapsed() < Duration::from_secs(8), "{:?}", up.elapsed());

    // At the hold time (9 s) the stalled session ends.
    lab.wait_for(
        "the stalled session to end",
        Duration::from_secs(20),
        || {
            lab.log("gw")
                .contains("10.0.1.2 down: sent hold timer expired")
        },
    );
    let took = up.elapsed();
    assert!(
        took >= Duration::from_secs(8) && took < Duration::from_secs(16),
        "{took:?}"
    );
    // BIRD's session never went down, and takes routes still.
    birdc(&lab, &["enable", "static4"]);
    lab.wait_for("BIRD's route again", Duration::from_secs(10), || {
        routes(&lab).contains("10.60.0.0/16 via 10.0.0.2")
    });
    let log = lab.log("gw");
    assert!(!log.contains("10.0.0.2 down"), "{log}");
    stop.store(true, Ordering::Relaxed);
    let _ = peer.join();
}

/// The TTL (IPv4) or hop limit (IPv6) of each captured segment from `src` that carries BGP
/// messages. (The handshake and an ACK or two before the session's options are set on an
/// accepted socket come from the listener, with the system's TTL, as FRR's do.)
fn ttls_from(frames: &[Vec<u8>], src: std::net::IpAddr) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| {
            let ip = f.get(14..)?;
            let (ttl, tcp, ip_payload) = match (ip.first()? >> 4, src) {
                (4, std::net::IpAddr::V4(a)) if ip.get(12..16)? == a.octets() => {
                    let ihl = usize::from(ip[0] & 0x0f) * 4;
                    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                    (ip[8], ip.get(ihl..)?, total.checked_sub(ihl)?)
                }
                (6, std::net::IpAddr::V6(a)) if ip.get(8..24)? == a.octets() => {
                    let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                    (ip[7], ip.get(40..)?, len)
                }
                _ => return None,
            };
            let data_offset = usize::from(tcp.get(12)? >> 4) * 4;
            (ip_payload > data_offset).then_some(ttl)
        })
        .collect()
}

/// Session hardening: GTSM (RFC 5082) with BIRD's `ttl security`, TTL 1 on a passive eBGP
/// session too, and the listener bound to the neighbors' local addresses only. Then BIRD
/// without GTSM: the session is never established.
#[test]
fn gtsm_ttl_one_when_passive_and_a_bound_listener() {
    if !netns::require_root() {
        return;
    }
    let bird = BIRD.replace(
        "    neighbor 10.0.0.1 as 65001;\n",
        "    neighbor 10.0.0.1 as 65001;\n    ttl security on;\n",
    );
    let interlink = INTERLINK
        .replace(
            "address = \"10.0.0.2\"\nremote_asn = 64512\n",
            "address = \"10.0.0.2\"\nremote_asn = 64512\nttl_security = true\nlocal_address = \"10.0.0.1\"\n",
        )
        .replace(
            "address = \"fd00::2\"\nremote_asn = 64512\n",
            "address = \"fd00::2\"\nremote_asn = 64512\npassive = true\nlocal_address = \"fd00::1\"\n",
        )
        + "\n[control]\nsocket = \"ctl.sock\"\n";
    let mut lab = two_hosts("bgp-gtsm");
    lab.capture("cap", "peer", "eth0", "tcp port 179");
    lab.spawn_bird("bird", "peer", &bird);
    spawn_interlinkd(&mut lab, &interlink);
    lab.wait_for("both sessions", Duration::from_secs(30), || {
        both_established(&lab)
    });
    // Listeners on the local addresses only.
    let ss = String::from_utf8_lossy(&lab.exec("gw", &["ss", "-ltnH"]).stdout).into_owned();
    assert!(ss.contains("10.0.0.1:179"), "{ss}");
    assert!(ss.contains("[fd00::1]:179"), "{ss}");
    assert!(
        !ss.contains("0.0.0.0:179") && !ss.contains("[::]:179"),
        "{ss}"
    );
    let frames = lab.stop_capture("cap");
    let v4 = ttls_from(&frames, "10.0.0.1".parse().unwrap());
    let v6 = ttls_from(&frames, "fd00::1".parse().unwrap());
    assert!(!v4.is_empty() && v4.iter().all(|t| *t == 255), "{v4:?}");
    // The IPv6 session is BIRD's connection, accepted: TTL 1 all the same.
    assert!(!v6.is_empty() && v6.iter().all(|t| *t == 1), "{v6:?}");
    assert!(
        lab.log("gw").contains("fd00::2 (AS 64512) established"),
        "{}",
        lab.log("gw")
    );

    // BIRD without GTSM sends with TTL 1: nothing it sends is taken on the GTSM session.
    lab.stop("bird");
    let _ = std::fs::remove_file(lab.dir.join("bird.ctl"));
    let mark = lab.log("gw").len();
    lab.spawn_bird("bird", "peer", BIRD);
    lab.wait_for("the IPv6 session back", Duration::from_secs(30), || {
        lab.log("gw")[mark..].contains("fd00::2 (AS 64512) established")
    });
    std::thread::sleep(Duration::from_secs(8));
    let after = lab.log("gw")[mark..].to_owned();
    assert!(
        !after.contains("10.0.0.2 (AS 64512) established"),
        "{after}"
    );
}

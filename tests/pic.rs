//! BGP PIC edge against the kernel: interlinkd learns the same prefixes from two BIRDs over
//! two veths, prefers A (local preference), and keeps B as each route's backup in one
//! nexthop object. When A falls silent (SIGSTOP: its kernel still answers TCP, its BGP does
//! not) and its address for the traffic goes, interlinkd's hold timer (3 s) expires and the
//! object is switched to B before any route is rewritten (`ip monitor`), traffic flows
//! through B at once, and the routes then move to B's own object. Needs root and bird2.

use interlink_testkit as netns;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netns::Lab;

const N: u32 = 200;

fn bird(me: &str, peer: &str, asn: u32) -> String {
    let routes: String = (0..N)
        .map(|i| format!("    route 198.18.{}.0/24 blackhole;\n", i))
        .collect();
    format!(
        "router id {me};\nprotocol device {{}}\nprotocol static s4 {{\n    ipv4;\n{routes}}}\n\
         protocol bgp up {{\n    local {me} as {asn};\n    neighbor {} as 65001;\n    hold time 3;\n\
         connect retry time 1;\n    ipv4 {{ import none; export all; next hop self; }};\n}}\n",
        peer,
    )
}

const INTERLINK: &str = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
hold_time = 3
import = { prefixes = ["198.18.0.0/16 le 24"], local_pref = 200 }

[[neighbor]]
address = "10.0.1.2"
remote_asn = 64513
hold_time = 3
import = { prefixes = ["198.18.0.0/16 le 24"], local_pref = 100 }

[control]
socket = "ctl.sock"
"#;

fn nexthops(lab: &Lab) -> Vec<String> {
    let out = lab.exec("gw", &["ip", "nexthop", "show", "proto", "77"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect()
}

fn routes(lab: &Lab) -> Vec<String> {
    let out = lab.exec("gw", &["ip", "route", "show", "proto", "77"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .collect()
}

fn ctl(lab: &Lab, args: &[&str]) -> Option<serde_json::Value> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let sock = lab.dir.join("ctl.sock");
    let (code, out, _) = netns::interlinkctl(env!("CARGO_BIN_EXE_interlinkctl"), &sock, &all);
    (code == 0)
        .then(|| serde_json::from_str(&out).ok())
        .flatten()
}

/// How many IPv4 prefixes interlinkd has taken from B (its backups' source).
fn accepted_from_b(lab: &Lab) -> Option<u64> {
    let n = ctl(lab, &["show", "neighbors"])?;
    n.as_array()?.iter().find(|v| v["address"] == "10.0.1.2")?["accepted"]["ipv4"].as_u64()
}

/// No route request outstanding: the kernel holds what BGP chose.
fn in_sync(lab: &Lab) -> bool {
    ctl(lab, &["status"]).is_some_and(|s| s["fib_in_sync"] == true)
}

/// One ping to 198.18.0.1 from the gateway, answered within half a second.
fn ping(lab: &Lab) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("gw"),
            "ping",
            "-c1",
            "-W0.5",
            "198.18.0.1",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_silent_peer_s_routes_move_to_their_backup_in_one_switch() {
    if !netns::require_root() || !netns::have("bird") {
        return;
    }
    let mut lab = Lab::new("pic");
    lab.add_ns("gw");
    for (ns, dev, me, gw) in [
        ("a", "eth0", "10.0.0.2/24", "10.0.0.1/24"),
        ("b", "eth1", "10.0.1.2/24", "10.0.1.1/24"),
    ] {
        lab.add_ns(ns);
        lab.veth("gw", dev, ns, "eth0");
        lab.addr("gw", dev, gw);
        lab.addr(ns, "eth0", me);
        // The traffic's destination, on both.
        lab.exec(ns, &["ip", "link", "set", "lo", "up"]);
        lab.exec(ns, &["ip", "addr", "add", "198.18.0.1/32", "dev", "lo"]);
    }
    let conf_a = bird("10.0.0.2", "10.0.0.1", 64512);
    let conf_b = bird("10.0.1.2", "10.0.1.1", 64513);
    lab.spawn_bird("bird-a", "a", &conf_a);
    lab.spawn_bird("bird-b", "b", &conf_b);
    let cfg = lab.file("interlink.toml", INTERLINK);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);

    // Every route through one object: A, with B as its backup. The backups come with B's
    // table, which can arrive well after its session is up (a loaded machine took more than
    // 0.8 s): until then the routes go through A's unprotected object, which is the same
    // next hop to `ip`. So wait for all of B's routes accepted and the FIB in sync with them.
    lab.wait_for(
        "the routes through A, protected by B",
        Duration::from_secs(30),
        || {
            let r = routes(&lab);
            r.len() == N as usize
                && r.iter()
                    .all(|l| l.contains(" nhid ") && l.contains("via 10.0.0.2 dev eth0"))
                && accepted_from_b(&lab) == Some(u64::from(N))
                && in_sync(&lab)
                && nexthops(&lab).len() == 1
        },
    );
    let before = nexthops(&lab);
    assert_eq!(before.len(), 1, "{before:?}");
    let id = before[0].split_whitespace().nth(1).unwrap().to_owned();
    assert!(ping(&lab), "no traffic through A");

    lab.spawn_in(
        "monitor",
        "gw",
        Path::new("ip"),
        &["monitor", "nexthop", "route"],
    );
    std::thread::sleep(Duration::from_millis(300));
    // A falls silent, and stops taking the traffic.
    let cut = Instant::now();
    lab.signal("bird-a", "STOP");
    lab.exec("a", &["ip", "addr", "del", "198.18.0.1/32", "dev", "lo"]);
    lab.wait_for("the hold timer", Duration::from_secs(10), || {
        lab.log("gw").contains("bgp: 10.0.0.2 down")
    });
    let detected = cut.elapsed();
    assert!(ping(&lab), "no traffic through B after the detection");
    lab.wait_for("the routes through B", Duration::from_secs(10), || {
        let r = routes(&lab);
        r.len() == N as usize && r.iter().all(|l| l.contains("via 10.0.1.2 dev eth1"))
    });
    lab.wait_for("the old object gone", Duration::from_secs(10), || {
        let n = nexthops(&lab);
        n.len() == 1 && !n[0].contains(&format!("id {id} "))
    });
    std::thread::sleep(Duration::from_millis(300));
    // The first change the kernel saw: the object switched, in place, to B; the routes'
    // own changes only after it.
    let log = lab.log("monitor");
    // (The kernel's own routes of IPv6 link-local addresses come and go meanwhile.)
    let first = log
        .lines()
        .find(|l| l.contains("proto 77"))
        .unwrap_or_default();
    assert!(
        first.starts_with(&format!("id {id} via 10.0.1.2 dev eth1")),
        "detected after {detected:?}; monitor:\n{}",
        log.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    lab.signal("bird-a", "CONT");
}

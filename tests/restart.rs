//! A restart of interlinkd keeps forwarding (RFC 4724 as the restarting speaker): a ping
//! every 10 ms from host A to host B goes on while gateway A's interlinkd stops (SIGTERM with
//! `on_shutdown = "keep"`, kill -9, and SIGABRT as systemd's watchdog sends it) and starts
//! again, losing less than a second, and the
//! peers never withdraw gateway A's routes, nor gateway A theirs. Across interlinkd's own
//! encrypted link (MKA, GCM-AES-XPN-256), whose interface the next run attaches to, against
//! interlinkd; and over plain Ethernet against BIRD and FRR as graceful restart helpers.
//! `interlinkd --cleanup` removes what is left. Needs root; bird2 and frr for the second.

use interlink_testkit as netns;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use netns::Lab;

/// A ping of `count` echoes every 10 ms from `from` to `to`, known as `name`.
fn start_ping(lab: &mut Lab, name: &str, from: &str, to: &str, count: u32) {
    lab.spawn_in(
        name,
        from,
        Path::new("ping"),
        &[
            "-D",
            "-n",
            "-i",
            "0.01",
            "-W",
            "1",
            "-c",
            &count.to_string(),
            to,
        ],
    );
}

/// What a ping saw: (replies, the longest time between two replies, s).
fn ping_result(lab: &mut Lab, name: &str) -> (usize, f64) {
    let (_, log) = lab.wait_exit(name, Duration::from_secs(30));
    let times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    (times.len(), gap)
}

/// `ip -o monitor route` in namespace `ns`, known as `name`.
fn monitor_routes(lab: &mut Lab, name: &str, ns: &str) {
    lab.spawn_in(name, ns, Path::new("ip"), &["-o", "monitor", "route"]);
    std::thread::sleep(Duration::from_millis(200));
}

fn deleted(lab: &Lab, monitor: &str, prefix: &str) -> Vec<String> {
    lab.log(monitor)
        .lines()
        .filter(|l| l.starts_with("Deleted") && l.contains(prefix))
        .map(str::to_owned)
        .collect()
}

/// Gateway `side`'s config: the MKA link to the other gateway and eBGP across it.
fn gateway(lab: &Lab, side: &str, extra: &str) -> String {
    let (me, peer, tun, peer_tun, asn, peer_asn, net) = if side == "a" {
        (
            "192.0.2.1",
            "192.0.2.2",
            "169.254.0.1",
            "169.254.0.2",
            65010,
            65020,
            "10.1.0.0/24",
        )
    } else {
        (
            "192.0.2.2",
            "192.0.2.1",
            "169.254.0.2",
            "169.254.0.1",
            65020,
            65010,
            "10.2.0.0/24",
        )
    };
    let cfg = lab.file(
        &format!("{side}.toml"),
        &format!(
            r#"[[link]]
name = "to-peer"
interface = "il0"
addresses = ["{tun}/30"]
transport = "udp"
local = "{me}:61440"
remote = "{peer}:61440"
probe_interval = "500ms"

[link.macsec]
cipher_suite = "gcm-aes-xpn-256"
keying = "mka"
ckn = "696e7465726c696e6b"
cak_file = "link.cak"

[router]
asn = {asn}
router_id = "{me}"

[[neighbor]]
address = "{peer_tun}"
remote_asn = {peer_asn}
import = {{ prefixes = ["10.0.0.0/8 le 24"] }}
export = {{ networks = true }}

[bgp]
networks = ["{net}"]

[control]
socket = "ctl-{side}.sock"
{extra}"#
        ),
    );
    cfg.to_str().unwrap().to_owned()
}

fn spawn(lab: &mut Lab, name: &str, ns: &str, cfg: &str) {
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in(name, ns, bin, &["--config", cfg]);
}

fn ifindex(lab: &Lab, ns: &str, dev: &str) -> String {
    let out = lab.exec(ns, &["ip", "-o", "link", "show", dev]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split(':').next().unwrap_or_default().to_owned()
}

/// How gateway A goes away before it starts again.
#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGTERM, with on_shutdown = "keep".
    Term,
    /// SIGKILL, as a crash.
    Kill,
    /// SIGABRT, what systemd sends when the watchdog is not fed (then it restarts the unit).
    Watchdog,
}

/// Stops the interlinkd known as `old` in namespace `ns` as `how` says, and starts it again
/// as `new` at once; returns the log of the stop.
fn restart(lab: &mut Lab, old: &str, new: &str, ns: &str, cfg: &str, how: Stop) -> String {
    let log = match how {
        Stop::Term => {
            let (status, log) = lab.stop(old);
            assert_eq!(status, Some(0), "{log}");
            assert!(log.contains("kept in the kernel"), "{log}");
            log
        }
        Stop::Kill => {
            lab.kill9(old);
            lab.log(old)
        }
        Stop::Watchdog => {
            lab.signal(old, "ABRT");
            let (status, log) = lab.wait_exit(old, Duration::from_secs(10));
            assert_eq!(status, None, "killed by the signal: {log}");
            log
        }
    };
    spawn(lab, new, ns, cfg);
    log
}

#[test]
fn a_restart_keeps_forwarding_across_the_link() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("restart-link");
    lab.two_sites();
    lab.secret(
        "link.cak",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    );
    let cfg_a = gateway(&lab, "a", "[fib]\non_shutdown = \"keep\"\n");
    let cfg_b = gateway(&lab, "b", "");
    spawn(&mut lab, "ga", "ga", &cfg_a);
    spawn(&mut lab, "gb", "gb", &cfg_b);
    let routes = |lab: &Lab, ns: &str| {
        String::from_utf8_lossy(&lab.exec(ns, &["ip", "route", "show", "proto", "77"]).stdout)
            .into_owned()
    };
    lab.wait_for(
        "each site's prefix in the other",
        Duration::from_secs(30),
        || routes(&lab, "ga").contains("10.2.0.0/24") && routes(&lab, "gb").contains("10.1.0.0/24"),
    );
    lab.wait_for("MKA and the probes up", Duration::from_secs(15), || {
        lab.log("ga").contains("peer reachable") && lab.log("gb").contains("peer reachable")
    });
    let index = ifindex(&lab, "ga", "il0");
    monitor_routes(&mut lab, "mon-a", "ga");
    monitor_routes(&mut lab, "mon-b", "gb");

    let mut name = "ga".to_owned();
    for (round, how) in [Stop::Term, Stop::Kill, Stop::Watchdog]
        .into_iter()
        .enumerate()
    {
        let ping = format!("ping{round}");
        start_ping(&mut lab, &ping, "ha", "10.2.0.2", 400);
        std::thread::sleep(Duration::from_secs(1));
        let next = format!("ga{round}");
        let stopped = restart(&mut lab, &name, &next, "ga", &cfg_a, how);
        if matches!(how, Stop::Term) {
            assert!(stopped.contains("its interface kept"), "{stopped}");
        }
        name = next;
        let (replies, gap) = ping_result(&mut lab, &ping);
        eprintln!(
            "{how:?}: {} of 400 echoes lost, the longest gap between replies {:.0} ms",
            400 - replies,
            gap * 1000.0
        );
        assert!(
            gap < 1.0,
            "{how:?}: no reply for {gap} s\n{}",
            lab.log(&name)
        );
        assert!(replies >= 300, "{how:?}: {replies} replies");
        let log = lab.log(&name);
        assert!(log.contains("the interface a previous run left"), "{log}");
        assert!(
            !log.contains(" 0 route(s) of a previous run adopted"),
            "{log}"
        );
        lab.wait_for("BGP back, End-of-RIB", Duration::from_secs(30), || {
            lab.log(&name).contains("converged (End-of-RIB")
        });
        assert_eq!(
            ifindex(&lab, "ga", "il0"),
            index,
            "the interface was replaced"
        );
    }
    // Gateway B kept A's routes throughout (graceful restart), and A kept B's.
    assert!(
        lab.log("gb").contains("keeping its routes"),
        "{}",
        lab.log("gb")
    );
    assert_eq!(deleted(&lab, "mon-b", "10.1.0.0/24"), Vec::<String>::new());
    assert_eq!(deleted(&lab, "mon-a", "10.2.0.0/24"), Vec::<String>::new());

    // What a stop with keep leaves, --cleanup removes; refused while the daemon runs.
    let bin = env!("CARGO_BIN_EXE_interlinkd");
    let out = lab.try_exec("ga", &[bin, "--cleanup", "--config", &cfg_a]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let (status, _) = lab.stop(&name);
    assert_eq!(status, Some(0));
    assert!(routes(&lab, "ga").contains("10.2.0.0/24"));
    let out = lab.try_exec("ga", &[bin, "--cleanup", "--config", &cfg_a]);
    assert!(out.status.success(), "{out:?}");
    assert!(!lab
        .try_exec("ga", &["ip", "link", "show", "il0"])
        .status
        .success());
    assert_eq!(routes(&lab, "ga"), "");
}

const BIRD: &str = r#"
router id 10.0.0.2;
protocol device {}
protocol direct { ipv4; interface "lan"; }
protocol kernel { ipv4 { export where source = RTS_BGP; }; }
protocol bgp edge {
    local 10.0.0.2 as 64512;
    neighbor 10.0.0.1 as 65001;
    connect retry time 1;
    graceful restart on;
    ipv4 { import all; export where source = RTS_DEVICE; };
}
"#;

const FRR: &str = r#"
hostname frr
log stdout
router bgp 64513
 bgp router-id 10.0.1.2
 bgp graceful-restart
 no bgp ebgp-requires-policy
 neighbor 10.0.1.1 remote-as 65001
 neighbor 10.0.1.1 timers connect 1
"#;

const INTERLINK: &str = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
import = { prefixes = ["10.2.0.0/24"] }
export = { networks = true }

[[neighbor]]
address = "10.0.1.2"
remote_asn = 64513
import = { prefixes = ["10.0.0.0/8 le 24"] }
export = { networks = true }

[bgp]
networks = ["10.1.0.0/24"]

[fib]
on_shutdown = "keep"

[control]
socket = "ctl.sock"
"#;

/// host A - gateway (interlinkd) - BIRD - host B, FRR on a second interface of the gateway:
/// BIRD and FRR keep interlinkd's route (BIRD in its kernel table, FRR in its BGP table) while
/// interlinkd restarts, and traffic through it and BIRD goes on.
#[test]
fn bird_and_frr_keep_our_routes_while_we_restart() {
    if !netns::require_root() || !netns::have("bird") {
        return;
    }
    let frr = Path::new("/usr/lib/frr/bgpd").exists();
    let mut lab = Lab::new("restart-gr");
    for ns in ["ha", "gw", "bird", "hb", "frr"] {
        lab.add_ns(ns);
    }
    lab.veth("ha", "eth0", "gw", "lan");
    lab.veth("gw", "eth0", "bird", "eth0");
    lab.veth("bird", "lan", "hb", "eth0");
    lab.veth("gw", "eth1", "frr", "eth0");
    for (ns, dev, addr) in [
        ("ha", "eth0", "10.1.0.2/24"),
        ("gw", "lan", "10.1.0.1/24"),
        ("gw", "eth0", "10.0.0.1/24"),
        ("gw", "eth1", "10.0.1.1/24"),
        ("bird", "eth0", "10.0.0.2/24"),
        ("bird", "lan", "10.2.0.1/24"),
        ("hb", "eth0", "10.2.0.2/24"),
        ("frr", "eth0", "10.0.1.2/24"),
    ] {
        lab.addr(ns, dev, addr);
    }
    lab.route("ha", &["default", "via", "10.1.0.1"]);
    lab.route("hb", &["default", "via", "10.2.0.1"]);
    lab.forwarding("gw");
    lab.forwarding("bird");
    lab.spawn_bird("bird", "bird", BIRD);
    let vty = frr.then(|| lab.spawn_frr("frr", "frr", FRR));
    let cfg = lab.file("interlink.toml", INTERLINK);
    let cfg = cfg.to_str().unwrap().to_owned();
    spawn(&mut lab, "gw", "gw", &cfg);
    let has = |lab: &Lab, ns: &str, prefix: &str| {
        String::from_utf8_lossy(&lab.exec(ns, &["ip", "route", "show", prefix]).stdout)
            .contains(prefix.split('/').next().unwrap())
    };
    lab.wait_for(
        "routes both ways through BIRD",
        Duration::from_secs(30),
        || has(&lab, "gw", "10.2.0.0/24") && has(&lab, "bird", "10.1.0.0/24"),
    );
    let in_frr = |lab: &Lab, vty: &Path| {
        lab.vtysh("frr", vty, &["show bgp ipv4 unicast 10.1.0.0/24"])
            .contains("65001")
    };
    if let Some(vty) = &vty {
        lab.wait_for("our route in FRR", Duration::from_secs(30), || {
            in_frr(&lab, vty)
        });
        let n = lab.vtysh("frr", vty, &["show bgp neighbors 10.0.1.1"]);
        assert!(n.contains("Graceful Restart"), "{n}");
    }
    monitor_routes(&mut lab, "mon-gw", "gw");
    monitor_routes(&mut lab, "mon-bird", "bird");
    // FRR's table, watched every 20 ms by a thread of its own.
    let watching = Arc::new(AtomicBool::new(true));
    let frr_lost = Arc::new(AtomicBool::new(false));
    let watcher = vty.clone().map(|vty| {
        let (watching, lost) = (watching.clone(), frr_lost.clone());
        let ns = lab.ns("frr");
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns, "vtysh", "--vty_socket"])
                    .arg(&vty)
                    .args(["-c", "show bgp ipv4 unicast 10.1.0.0/24"])
                    .output()
                    .unwrap();
                if !String::from_utf8_lossy(&out.stdout).contains("65001") {
                    lost.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    });

    let mut name = "gw".to_owned();
    for (round, how) in [Stop::Term, Stop::Kill].into_iter().enumerate() {
        let ping = format!("ping{round}");
        start_ping(&mut lab, &ping, "ha", "10.2.0.2", 300);
        std::thread::sleep(Duration::from_secs(1));
        let next = format!("gw{round}");
        restart(&mut lab, &name, &next, "gw", &cfg, how);
        name = next;
        let (replies, gap) = ping_result(&mut lab, &ping);
        eprintln!(
            "{how:?} (BIRD, FRR): {} of 300 echoes lost, the longest gap between replies {:.0} ms",
            300 - replies,
            gap * 1000.0
        );
        assert!(gap < 1.0, "{how:?}: no reply for {gap} s");
        lab.wait_for("BGP back, End-of-RIB", Duration::from_secs(30), || {
            lab.log(&name).contains("converged (End-of-RIB")
        });
    }
    watching.store(false, Ordering::Relaxed);
    if let Some(w) = watcher {
        w.join().unwrap();
    }
    let bird = netns::birdc(
        &lab.dir.join("bird.ctl"),
        &["show", "protocols", "all", "edge"],
    );
    assert!(bird.contains("Established"), "{bird}");
    assert_eq!(
        deleted(&lab, "mon-bird", "10.1.0.0/24"),
        Vec::<String>::new()
    );
    assert_eq!(deleted(&lab, "mon-gw", "10.2.0.0/24"), Vec::<String>::new());
    assert!(!frr_lost.load(Ordering::Relaxed), "FRR dropped our route");
    assert!(has(&lab, "bird", "10.1.0.0/24"));
}

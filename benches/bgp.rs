//! BGP load: N prefixes over one eBGP session from a fast sender of pre-encoded UPDATEs, for
//! N = 100k and 1M (or `INTERLINK_BGP_BENCH_N`, comma-separated). For interlinkd it prints the
//! time from Established until all N are in the Loc-RIB (the End-of-RIB that follows them is
//! processed) with the RSS then, until all N are in the kernel (the FIB in sync), the peak
//! RSS, and, once the session closes, the time until the kernel holds none of the routes,
//! and the peak RSS over the whole run, the withdrawal included.
//! In the same run, the same for BIRD 2 with a kernel protocol, as the reference, for
//! another interlinkd binary if `INTERLINK_BGP_BENCH_BASELINE` names one (before a change),
//! and the bare pipelined netlink writer's adds of the same routes (`interlink_benches`), the
//! kernel's own pace, with interlinkd's Established-to-kernel time over Loc-RIB plus that.
//!
//! The sender (`benches/sender.rs`) opens the session, then writes the UPDATEs (/24s from
//! 16.0.0.0 on, one attribute set, packed into 4096-octet messages) and End-of-RIB as fast as
//! TCP takes them. Needs root and bird2: `./scripts/bench-bgp.sh`.

use interlink_testkit as netns;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interlink_benches::sender::{self, Speaker};
use netns::{birdc, Lab};

/// The sender: AS 64512 at 10.0.0.2, to interlinkd or BIRD at 10.0.0.1.
const GEN: Speaker = Speaker {
    peer: Ipv4Addr::new(10, 0, 0, 1),
    address: Ipv4Addr::new(10, 0, 0, 2),
    asn: 64512,
    hold_time: 240,
};

fn updates(n: usize) -> Vec<u8> {
    sender::updates(n, &GEN)
}

/// Peak resident set (VmHWM) of the process named `comm` in namespace `ns`, in MiB.
fn peak_rss(ns: &str, comm: &str) -> f64 {
    memory(ns, comm, "VmHWM:")
}

/// `field` (VmHWM: or VmRSS:) of the process named `comm` in namespace `ns`, in MiB.
fn memory(ns: &str, comm: &str, field: &str) -> f64 {
    let pids = netns::sh(&["ip", "netns", "pids", ns]);
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if status
            .lines()
            .next()
            .is_some_and(|l| l.trim_end().ends_with(comm))
        {
            let kib: f64 = status
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0.0);
            return kib / 1024.0;
        }
    }
    0.0
}

struct Figures {
    rib: Duration,
    kernel: Duration,
    /// From the session's close until the kernel holds none of the routes.
    withdraw: Duration,
    /// Peak RSS when the Loc-RIB is complete, when the kernel is in sync too, and over the
    /// whole run, the withdrawal included.
    rib_rss_mib: f64,
    rss_mib: f64,
    run_peak_mib: f64,
}

fn lab(name: &str) -> Lab {
    let mut lab = Lab::new(name);
    lab.add_ns("dut");
    lab.add_ns("gen");
    lab.veth("dut", "eth0", "gen", "eth0");
    lab.addr("dut", "eth0", "10.0.0.1/24");
    lab.addr("gen", "eth0", "10.0.0.2/24");
    lab
}

/// Sends `wire` from the generator namespace; returns when Established and keeps the session
/// open until it is closed.
fn send(lab: &Lab, wire: Vec<u8>) -> sender::Session {
    sender::send(&lab.ns("gen"), GEN, wire)
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Instant {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
    Instant::now()
}

/// A lab named `name` with interlinkd (`bin`) in it, its neighbor the sender, taking what
/// the import prefix list `import` admits; returns once interlinkd runs.
fn lab_with_interlink(name: &str, bin: &Path, import: &str) -> Lab {
    let mut lab = lab(name);
    let cfg = lab.file(
        "dut.toml",
        &format!(
            "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n[[neighbor]]\naddress = \"10.0.0.2\"\n\
             remote_asn = 64512\npassive = true\nhold_time = 240\n\
             import = {{ prefixes = [\"{import}\"] }}\n\n[control]\nsocket = \"ctl.sock\"\n"
        ),
    );
    lab.spawn_in("dut", "dut", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("interlinkd", Duration::from_secs(10), || {
        lab.log("dut").contains("running with")
    });
    lab
}

fn interlink(n: usize, wire: Vec<u8>, bin: &Path) -> Figures {
    let mut lab = lab_with_interlink(&format!("bgpb-il{n}"), bin, "0.0.0.0/0 le 32");
    let session = send(&lab, wire);
    let t0 = session.established;
    let t_rib = wait("the Loc-RIB", Duration::from_secs(600), || {
        lab.log("dut").contains("converged")
    });
    let rib_rss = peak_rss(&lab.ns("dut"), "interlinkd");
    let t_kernel = wait("the kernel", Duration::from_secs(600), || {
        lab.log("dut").contains("fib: in sync")
    });
    let log = lab.log("dut");
    assert!(
        log.contains(&format!("fib: in sync with BGP: {n} IPv4")),
        "{log}"
    );
    let rss = peak_rss(&lab.ns("dut"), "interlinkd");
    // The session closes: how long until the kernel holds none of the routes.
    let ctl = bin.with_file_name("interlinkctl");
    let sock = lab.dir.join("ctl.sock");
    let installed = || {
        let out = std::process::Command::new(&ctl)
            .arg("--socket")
            .arg(&sock)
            .args(["--json", "status"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (v["fib_routes"]["ipv4"].as_u64(), v["fib_in_sync"].as_bool())
    };
    assert_eq!(installed().0, Some(n as u64), "interlinkctl status");
    let t_close = Instant::now();
    session.close();
    let t_gone = wait("the withdrawal", Duration::from_secs(600), || {
        installed() == (Some(0), Some(true))
    });
    let run_peak = peak_rss(&lab.ns("dut"), "interlinkd");
    lab.stop("dut");
    Figures {
        withdraw: t_gone - t_close,
        rib: t_rib - t0,
        kernel: t_kernel - t0,
        rib_rss_mib: rib_rss,
        rss_mib: rss,
        run_peak_mib: run_peak,
    }
}

fn bird(n: usize, wire: Vec<u8>) -> Figures {
    let mut lab = lab(&format!("bgpb-bird{n}"));
    let sock = lab.spawn_bird(
        "bird",
        "dut",
        "router id 10.0.0.1;\nprotocol device {}\nprotocol kernel k4 { ipv4 { export all; }; }\n\
         protocol bgp gen { local 10.0.0.1 as 65001; neighbor 10.0.0.2 as 64512; passive on;\n\
         hold time 240; ipv4 { import all; export none; }; }\n",
    );
    let session = send(&lab, wire);
    let t0 = session.established;
    let count = |text: &str, key: &str| -> usize {
        text.lines()
            .find(|l| l.contains(key))
            .and_then(|l| l.split_whitespace().find_map(|w| w.parse().ok()))
            .unwrap_or(0)
    };
    let t_rib = wait("BIRD's table", Duration::from_secs(600), || {
        count(&birdc(&sock, &["show", "route", "count"]), "routes for") >= n
    });
    let rib_rss = peak_rss(&lab.ns("dut"), "bird");
    // The routes BIRD's kernel protocol has exported to the kernel.
    let exported = || {
        let s = birdc(&sock, &["show", "protocols", "all", "k4"]);
        s.lines()
            .find(|l| l.contains("Routes:"))
            .and_then(|l| l.split(',').nth(1))
            .and_then(|x| {
                x.split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
            })
            .unwrap_or(0)
    };
    let t_kernel = wait("BIRD's kernel protocol", Duration::from_secs(600), || {
        exported() >= n
    });
    let rss = peak_rss(&lab.ns("dut"), "bird");
    let t_close = Instant::now();
    session.close();
    let t_gone = wait("BIRD's withdrawal", Duration::from_secs(600), || {
        exported() == 0
    });
    let run_peak = peak_rss(&lab.ns("dut"), "bird");
    lab.stop("bird");
    Figures {
        withdraw: t_gone - t_close,
        rib: t_rib - t0,
        kernel: t_kernel - t0,
        rib_rss_mib: rib_rss,
        rss_mib: rss,
        run_peak_mib: run_peak,
    }
}

/// Memory of a speaker whose import policy refuses everything the peer sends: resident set
/// before the session, its peak while the table arrives, and resident set once it is all
/// processed (End-of-RIB), in MiB.
struct Flood {
    before: f64,
    peak: f64,
    after: f64,
}

fn interlink_refusing(n: usize, wire: Vec<u8>, bin: &Path) -> Flood {
    let mut lab = lab_with_interlink(&format!("bgpb-ref{n}"), bin, "192.0.2.0/24");
    let ns = lab.ns("dut");
    let before = memory(&ns, "interlinkd", "VmRSS:");
    let session = send(&lab, wire);
    wait("the End-of-RIB", Duration::from_secs(600), || {
        lab.log("dut").contains("converged")
    });
    let flood = Flood {
        before,
        peak: peak_rss(&ns, "interlinkd"),
        after: memory(&ns, "interlinkd", "VmRSS:"),
    };
    session.close();
    lab.stop("dut");
    flood
}

fn bird_refusing(n: usize, wire: Vec<u8>) -> Flood {
    let mut lab = lab(&format!("bgpb-bref{n}"));
    let sock = lab.spawn_bird(
        "bird",
        "dut",
        "router id 10.0.0.1;\nprotocol device {}\nprotocol kernel k4 { ipv4 { export all; }; }\n\
         protocol bgp gen { local 10.0.0.1 as 65001; neighbor 10.0.0.2 as 64512; passive on;\n\
         hold time 240; ipv4 { import none; export none; }; }\n",
    );
    let ns = lab.ns("dut");
    let before = memory(&ns, "bird", "VmRSS:");
    let session = send(&lab, wire);
    // BIRD counts what its import filter refused: "Import updates: N ... filtered".
    let filtered = || {
        birdc(&sock, &["show", "protocols", "all", "gen"])
            .lines()
            .find(|l| l.contains("Import updates:"))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(4)
                    .and_then(|v| v.parse::<usize>().ok())
            })
            .unwrap_or(0)
    };
    wait("BIRD's import filter", Duration::from_secs(600), || {
        filtered() >= n
    });
    let flood = Flood {
        before,
        peak: peak_rss(&ns, "bird"),
        after: memory(&ns, "bird", "VmRSS:"),
    };
    session.close();
    lab.stop("bird");
    flood
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"bgp".contains(a.as_str()))
    {
        return;
    }
    if !netns::require_root() {
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/interlinkd");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p interlinkd",
        bin.display()
    );
    let sizes: Vec<usize> = std::env::var("INTERLINK_BGP_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    println!("\nBGP load over one eBGP session, IPv4 /24s, one attribute set, from Established:");
    // INTERLINK_BGP_BENCH_BIRD=0 leaves BIRD out (while working on interlinkd alone).
    let with_bird = std::env::var("INTERLINK_BGP_BENCH_BIRD").map_or(true, |v| v != "0");
    println!(
        "  {:>9}  {:<14} {:>12} {:>14} {:>12} {:>14} {:>12} {:>14}",
        "prefixes",
        "speaker",
        "Loc-RIB, s",
        "RSS then, MiB",
        "kernel, s",
        "peak RSS, MiB",
        "withdraw, s",
        "run peak, MiB"
    );
    for &n in &sizes {
        let wire = updates(n);
        let il = interlink(n, wire.clone(), &bin);
        let mut rows = vec![("interlinkd", il)];
        // INTERLINK_BGP_BENCH_BASELINE=PATH: another interlinkd binary (a build before a
        // change) measured in the same run, for before-and-after figures.
        if let Some(base) = std::env::var_os("INTERLINK_BGP_BENCH_BASELINE") {
            rows.push(("baseline", interlink(n, wire.clone(), Path::new(&base))));
        }
        if with_bird {
            rows.push(("BIRD 2", bird(n, wire)));
        }
        // The bare pipelined netlink writer's adds of the same routes, in this run: what the
        // kernel allows, for the ratio the end-to-end figure is judged by.
        let mut floor_lab = Lab::new(&format!("bgpb-floor{n}"));
        let (floor_add, _) =
            interlink_benches::raw_writer(&mut floor_lab, n, interlink_benches::Floor::Gateway);
        drop(floor_lab);
        for (name, f) in &rows {
            println!(
                "  {:>9}  {:<14} {:>12.2} {:>14.1} {:>12.2} {:>14.1} {:>12.2} {:>14.1}",
                n,
                name,
                f.rib.as_secs_f64(),
                f.rib_rss_mib,
                f.kernel.as_secs_f64(),
                f.rss_mib,
                f.withdraw.as_secs_f64(),
                f.run_peak_mib
            );
        }
        let il = &rows[0].1;
        println!(
            "  {:>9}  bare netlink floor, adds: {:.2} s; interlinkd's kernel / (Loc-RIB + floor) = {:.2}x",
            n,
            floor_add.as_secs_f64(),
            il.kernel.as_secs_f64() / (il.rib + floor_add).as_secs_f64()
        );
    }
    // A peer sending what import policy refuses: memory should not follow it.
    println!("\nThe same table, every prefix refused by import policy (resident set, MiB):");
    println!(
        "  {:>9}  {:<14} {:>12} {:>14} {:>12}",
        "prefixes", "speaker", "before", "peak", "after"
    );
    for &n in &sizes {
        let wire = updates(n);
        let mut rows = vec![("interlinkd", interlink_refusing(n, wire.clone(), &bin))];
        if let Some(base) = std::env::var_os("INTERLINK_BGP_BENCH_BASELINE") {
            rows.push((
                "baseline",
                interlink_refusing(n, wire.clone(), Path::new(&base)),
            ));
        }
        if with_bird {
            rows.push(("BIRD 2", bird_refusing(n, wire)));
        }
        for (name, f) in &rows {
            println!(
                "  {:>9}  {:<14} {:>12.1} {:>14.1} {:>12.1}",
                n, name, f.before, f.peak, f.after
            );
        }
    }
}

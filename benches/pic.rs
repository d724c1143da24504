//! Failover of a full table (BGP PIC edge): N prefixes (100k and 1M, or `INTERLINK_PIC_BENCH_N`)
//! learned from two eBGP peers over two links, A preferred by local preference, B the backup.
//! A probe stream (UDP, one datagram every 200 µs) goes from interlinkd's namespace to an
//! address in the table's last prefix, which both peers hold. Then A stops answering: its
//! BGP speaker falls silent (no more keepalives) and its forwarding stops (the probe address
//! removed in its namespace, which does not forward); the link and A's kernel stay up, as
//! with a hung router. interlinkd detects it when its hold timer (3 s) expires, and sends A a
//! NOTIFICATION, whose arrival marks the detection. Printed: the
//! detection after the cut, the first datagram through B after the detection, and the kernel
//! table converged (every route rewritten through B) after it.
//!
//! In the same run, interlinkd with `nexthop_objects = false`: routes carry their next hop,
//! so traffic moves when the route is rewritten, one of N (the probe's prefix is the last
//! BGP withdraws). Needs root: `./scripts/bench-pic.sh`.

use interlink_testkit as netns;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_benches::prefix;
use interlink_benches::sender::{self, Speaker};
use netns::{in_ns, Lab};

const A: Speaker = Speaker {
    peer: Ipv4Addr::new(10, 0, 0, 1),
    address: Ipv4Addr::new(10, 0, 0, 2),
    asn: 64512,
    hold_time: 3,
};
const B: Speaker = Speaker {
    peer: Ipv4Addr::new(10, 0, 1, 1),
    address: Ipv4Addr::new(10, 0, 1, 2),
    asn: 64513,
    hold_time: 3,
};
const PORT: u16 = 7777;
const EVERY: Duration = Duration::from_micros(200);

struct Figures {
    detect: Duration,
    backup: Duration,
    converged: Duration,
    /// Probe datagrams sent from the cut until the first one through B, none of which
    /// arrived anywhere.
    lost: u64,
}

fn config(objects: bool) -> String {
    let neighbor = |s: &Speaker, lp: u32| {
        format!(
            "[[neighbor]]\naddress = \"{}\"\nremote_asn = {}\npassive = true\nhold_time = 3\n\
             import = {{ prefixes = [\"16.0.0.0/4 le 32\"], local_pref = {lp} }}\n\n",
            s.address, s.asn
        )
    };
    format!(
        "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n{}{}[fib]\nnexthop_objects = {objects}\n\n\
         [control]\nsocket = \"ctl.sock\"\n",
        neighbor(&A, 200),
        neighbor(&B, 100)
    )
}

/// Counts datagrams arriving at `addr:PORT` in `ns`, and notes when the first came.
fn receiver(
    ns: &str,
    addr: Ipv4Addr,
    stop: Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Arc<std::sync::Mutex<Option<Instant>>>) {
    let count = Arc::new(AtomicU64::new(0));
    let first = Arc::new(std::sync::Mutex::new(None));
    let (c, f) = (count.clone(), first.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    in_ns(ns, move || {
        let sock = UdpSocket::bind(SocketAddr::from((addr, PORT))).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            if sock.recv(&mut buf).is_ok() {
                let now = Instant::now();
                f.lock().unwrap().get_or_insert(now);
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    ready_rx.recv().unwrap();
    (count, first)
}

fn ask(ctl: &Path, sock: &Path, what: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(ctl)
        .arg("--socket")
        .arg(sock)
        .arg("--json")
        .args(what)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_default()
}

fn status(ctl: &Path, sock: &Path) -> serde_json::Value {
    ask(ctl, sock, &["status"])
}

/// Routes the FIB has replaced so far.
fn replaced(ctl: &Path, sock: &Path) -> u64 {
    ask(ctl, sock, &["show", "fib"])["operations"]["replace"]["ok"]
        .as_u64()
        .unwrap_or(0)
}

fn wait(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> Instant {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
    Instant::now()
}

fn run(n: usize, objects: bool, bin: &Path) -> Figures {
    let mut lab = Lab::new(&format!("pic{n}{}", if objects { "o" } else { "r" }));
    lab.add_ns("dut");
    lab.add_ns("ga");
    lab.add_ns("gb");
    lab.veth("dut", "eth0", "ga", "eth0");
    lab.veth("dut", "eth1", "gb", "eth0");
    lab.addr("dut", "eth0", "10.0.0.1/24");
    lab.addr("ga", "eth0", "10.0.0.2/24");
    lab.addr("dut", "eth1", "10.0.1.1/24");
    lab.addr("gb", "eth0", "10.0.1.2/24");
    // The probe's destination: in the last prefix, on both peers.
    let dest = Ipv4Addr::from(u32::from(prefix(n - 1)) + 1);
    for g in ["ga", "gb"] {
        lab.exec(g, &["ip", "link", "set", "lo", "up"]);
        lab.exec(
            g,
            &["ip", "addr", "add", &format!("{dest}/32"), "dev", "lo"],
        );
    }
    let cfg = lab.file("dut.toml", &config(objects));
    lab.spawn_in("dut", "dut", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("interlinkd", Duration::from_secs(10), || {
        lab.log("dut").contains("running with")
    });
    let a = sender::send(&lab.ns("ga"), A, sender::updates(n, &A));
    let b = sender::send(&lab.ns("gb"), B, sender::updates(n, &B));
    let ctl = bin.with_file_name("interlinkctl");
    let sock = lab.dir.join("ctl.sock");
    // Both tables in, and every route in the kernel as the sources want it (with its backup).
    wait("both tables", Duration::from_secs(900), || {
        lab.log("dut").contains("converged")
    });
    wait("the kernel", Duration::from_secs(900), || {
        let v = status(&ctl, &sock);
        v["fib_routes"]["ipv4"].as_u64() == Some(n as u64) && v["fib_in_sync"] == true
    });
    if objects {
        let out = lab.exec("dut", &["ip", "nexthop", "show", "proto", "77"]);
        let objs = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            objs.lines().count() == 1 && objs.contains("via 10.0.0.2"),
            "one object, through A: {objs}"
        );
    }
    // The probe stream, through A.
    let stop = Arc::new(AtomicBool::new(false));
    let (got_a, _) = receiver(&lab.ns("ga"), dest, stop.clone());
    let (got_b, first_b) = receiver(&lab.ns("gb"), dest, stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let (s2, st) = (sent.clone(), stop.clone());
    in_ns(&lab.ns("dut"), move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        let to = SocketAddr::from((dest, PORT));
        let mut next = Instant::now();
        while !st.load(Ordering::Relaxed) {
            let _ = sock.send_to(&s2.load(Ordering::Relaxed).to_be_bytes(), to);
            s2.fetch_add(1, Ordering::Relaxed);
            next += EVERY;
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    });
    wait(
        "the probe stream through A",
        Duration::from_secs(10),
        || got_a.load(Ordering::Relaxed) > 100,
    );
    assert_eq!(got_b.load(Ordering::Relaxed), 0, "the probe went through B");
    // A stops answering.
    let replaced_before = replaced(&ctl, &sock);
    let t_cut = Instant::now();
    let sent_at_cut = sent.load(Ordering::Relaxed);
    a.fall_silent();
    lab.exec(
        "ga",
        &["ip", "addr", "del", &format!("{dest}/32"), "dev", "lo"],
    );
    let got_a_at_cut = got_a.load(Ordering::Relaxed);
    // Detected: interlinkd's hold timer expired and it sent A its NOTIFICATION.
    wait("the hold timer", Duration::from_secs(30), || {
        a.notified().is_some()
    });
    let t_detect = a.notified().expect("notified");
    wait("interlinkd's word", Duration::from_secs(5), || {
        lab.log("dut").contains("bgp: 10.0.0.2 down")
    });
    let t_backup = wait(
        "the probe stream through B",
        Duration::from_secs(600),
        || first_b.lock().unwrap().is_some(),
    );
    let t_backup = first_b.lock().unwrap().unwrap_or(t_backup);
    let sent_at_backup = sent.load(Ordering::Relaxed);
    // Every route rewritten through B (its own next hop, no backup left), and nothing more
    // to do.
    let t_converged = wait("the kernel through B", Duration::from_secs(900), || {
        std::thread::sleep(Duration::from_millis(10));
        let v = status(&ctl, &sock);
        v["fib_routes"]["ipv4"].as_u64() == Some(n as u64)
            && v["fib_in_sync"] == true
            && replaced(&ctl, &sock) - replaced_before >= n as u64
    });
    stop.store(true, Ordering::Relaxed);
    let late_a = got_a.load(Ordering::Relaxed) - got_a_at_cut;
    a.close();
    b.close();
    lab.stop("dut");
    Figures {
        detect: t_detect - t_cut,
        backup: t_backup.saturating_duration_since(t_detect),
        converged: t_converged - t_detect,
        lost: (sent_at_backup - sent_at_cut).saturating_sub(late_a),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"pic".contains(a.as_str()))
    {
        return;
    }
    if !netns::require_root() {
        return;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/interlinkd");
    assert!(
        bin.exists(),
        "build interlinkd --release first: {}",
        bin.display()
    );
    let sizes: Vec<usize> = std::env::var("INTERLINK_PIC_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    println!(
        "\nFailover of a full table from peer A to backup B when A stops answering (hold time \
         3 s), probe every {} µs to the last prefix:",
        EVERY.as_micros()
    );
    println!(
        "  {:>9}  {:<34} {:>11} {:>22} {:>21} {:>11}",
        "prefixes",
        "interlinkd",
        "detect, s",
        "backup traffic, ms",
        "kernel converged, s",
        "probes lost"
    );
    for &n in &sizes {
        // INTERLINK_PIC_BENCH_ONLY=objects skips the reference (for profiling).
        let only = std::env::var("INTERLINK_PIC_BENCH_ONLY").is_ok_and(|v| v == "objects");
        for objects in [true, false].into_iter().filter(|&o| o || !only) {
            let f = run(n, objects, &bin);
            println!(
                "  {:>9}  {:<34} {:>11.2} {:>22.1} {:>21.2} {:>11}",
                n,
                if objects {
                    "nexthop objects (PIC)"
                } else {
                    "next hops per route (no PIC)"
                },
                f.detect.as_secs_f64(),
                f.backup.as_secs_f64() * 1e3,
                f.converged.as_secs_f64(),
                f.lost,
            );
        }
    }
    println!(
        "  backup traffic and kernel converged: after the detection (interlinkd's NOTIFICATION \
         to A); probes lost: sent from the cut until the first through B"
    );
}

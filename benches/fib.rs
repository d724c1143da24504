//! Kernel FIB load: N routes installed, then removed, in a fresh network namespace for each
//! writer, for N = 100k and 1M (or `INTERLINK_FIB_BENCH_N`, comma-separated), printed as
//! routes per second. Three writers in the same run:
//! - `ip -batch`: one request at a time, each waiting for its answer;
//! - a minimal pipelined netlink writer, written here from scratch: requests encoded on the
//!   fly into 128 KiB sendmsg batches with up to `WINDOW` unacknowledged, acks counted by
//!   sequence number and nothing else: the floor for a pipelined writer; and the same with
//!   the routes naming a nexthop object (Linux 5.3) instead of a gateway, deleted route by
//!   route, or all at once by deleting the object;
//! - interlink's FIB (`interlink_fib::Driver`), with the same window, from the first route
//!   handed to it until the kernel has acked the last.
//!
//! The floor and interlink take turns for `INTERLINK_BENCH_ROUNDS` rounds (3); the table gives
//! medians. `ip -batch` runs once.
//!
//! The routes are /24s from 16.0.0.0 on, via a gateway on a veth, metric 20, protocol 77.
//! Needs root: `./scripts/bench-fib.sh`.

use interlink_testkit as netns;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use interlink_fib::sock::NlSocket;
use interlink_fib::{wire, Driver, NextHop, Prefix, Route, Target};
use netns::{in_ns, Lab};

const WINDOW: usize = 4096;
const T: Target = Target {
    table: 254,
    metric: 20,
    protocol: 77,
};

fn prefix(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x1000_0000u32 + ((i as u32) << 8))
}

/// A namespace with a veth whose near end has 192.0.2.1/24.
fn fresh(lab: &mut Lab, name: &str) -> String {
    let ns = lab.add_ns(name);
    lab.exec(
        name,
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "p0",
        ],
    );
    lab.exec(name, &["ip", "link", "set", "v0", "up"]);
    lab.exec(name, &["ip", "link", "set", "p0", "up"]);
    lab.exec(name, &["ip", "addr", "add", "192.0.2.1/24", "dev", "v0"]);
    ns
}

fn count_routes(lab: &Lab, name: &str) -> usize {
    let out = lab.exec(name, &["ip", "-4", "route", "show", "proto", "77"]);
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

fn ip_batch(lab: &mut Lab, n: usize) -> (Duration, Duration) {
    let name = format!("batch{n}");
    let ns = fresh(lab, &name);
    let mut add = String::with_capacity(n * 60);
    let mut del = String::with_capacity(n * 50);
    for i in 0..n {
        let p = prefix(i);
        add.push_str(&format!(
            "route add {p}/24 via 192.0.2.2 metric 20 proto 77\n"
        ));
        del.push_str(&format!("route del {p}/24 metric 20 proto 77\n"));
    }
    let add_file = lab.file(&format!("{name}-add"), &add);
    let del_file = lab.file(&format!("{name}-del"), &del);
    let run = |file: &std::path::Path| {
        let t = Instant::now();
        let out = netns::sh(&["ip", "-n", &ns, "-batch", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "ip -batch: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let a = run(&add_file);
    assert_eq!(count_routes(lab, &name), n);
    let d = run(&del_file);
    assert_eq!(count_routes(lab, &name), 0);
    lab.del_ns(&name);
    (a, d)
}

/// How a floor writer's routes reach their gateway, and how they go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Floor {
    /// `RTA_GATEWAY` in each route; deleted route by route.
    Gateway,
    /// A nexthop object (Linux 5.3: `RTM_NEWNEXTHOP`, id 1, via 192.0.2.2 dev v0) that each
    /// route names with `RTA_NH_ID`; deleted route by route.
    Nexthop,
    /// The same, deleted as one `RTM_DELNEXTHOP`: the kernel takes every route using the
    /// object with it.
    NexthopObject,
}

/// The floor: a pipelined writer with nothing but encoding, sending and counting acks.
fn raw_writer(lab: &mut Lab, n: usize, floor: Floor) -> (Duration, Duration) {
    let name = format!("raw{n}");
    let ns = fresh(lab, &name);
    let run = move |delete: bool| {
        in_ns(&ns, move || {
            let sock = NlSocket::open(&[], 32 << 20).unwrap();
            let mut out = Vec::with_capacity(140 * 1024);
            let mut inbuf = vec![0u8; 64 * 1024];
            let nh = floor != Floor::Gateway;
            if floor == Floor::NexthopObject && delete {
                // Every route goes with the object, in one request.
                let t = Instant::now();
                nexthop(&mut out, 0x7fff_0000, true);
                sock.send(&out).unwrap();
                wait_acks(&sock, &mut inbuf, 1);
                return t.elapsed();
            }
            if nh && !delete {
                // The object first: one request, not timed.
                nexthop(&mut out, 0x7fff_0000, false);
                sock.send(&out).unwrap();
                wait_acks(&sock, &mut inbuf, 1);
            }
            let total = n;
            let (mut next, mut acked) = (0usize, 0usize);
            let t = Instant::now();
            while acked < total {
                out.clear();
                while next < total && next - acked < WINDOW && out.len() < 128 * 1024 {
                    encode(&mut out, next as u32 + 1, delete, prefix(next), nh);
                    next += 1;
                }
                if !out.is_empty() {
                    sock.send(&out).unwrap();
                }
                loop {
                    match sock.recv(&mut inbuf).unwrap() {
                        Some(len) => {
                            for m in wire::messages(&inbuf[..len]) {
                                let (errno, _) = wire::parse_error(&m).unwrap();
                                assert_eq!(errno, 0);
                                acked += 1;
                            }
                        }
                        None if next - acked < WINDOW && next < total => break,
                        None if acked == total => break,
                        None => {
                            interlink_fib::sock::poll([sock.fd()], 1000).unwrap();
                        }
                    }
                }
            }
            t.elapsed()
        })
        .join()
        .unwrap()
    };
    let a = run(false);
    assert_eq!(count_routes(lab, &name), n);
    let d = run(true);
    assert_eq!(count_routes(lab, &name), 0);
    lab.del_ns(&name);
    (a, d)
}

/// Waits for `n` acks, each a success.
fn wait_acks(sock: &NlSocket, inbuf: &mut [u8], n: usize) {
    let mut acked = 0;
    while acked < n {
        match sock.recv(inbuf).unwrap() {
            Some(len) => {
                for m in wire::messages(&inbuf[..len]) {
                    let (errno, msg) = wire::parse_error(&m).unwrap();
                    assert_eq!(errno, 0, "{msg:?}");
                    acked += 1;
                }
            }
            None => {
                interlink_fib::sock::poll([sock.fd()], 10_000).unwrap();
            }
        }
    }
}

/// RTM_NEWNEXTHOP (id 1 via 192.0.2.2 dev v0, protocol 77) or RTM_DELNEXTHOP of id 1.
fn nexthop(out: &mut Vec<u8>, seq: u32, delete: bool) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(if delete { 105u16 } else { 104u16 }).to_ne_bytes());
    let flags: u16 = if delete { 0x5 } else { 0x5 | 0x400 | 0x200 };
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct nhmsg: family, scope, protocol, reserved, flags (a delete names the id alone).
    let (family, protocol) = if delete {
        (0, 0)
    } else {
        (libc::AF_INET as u8, 77)
    };
    out.extend_from_slice(&[family, 0, protocol, 0, 0, 0, 0, 0]);
    let attr = |out: &mut Vec<u8>, t: u16, v: [u8; 4]| {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&t.to_ne_bytes());
        out.extend_from_slice(&v);
    };
    attr(out, 1, 1u32.to_ne_bytes()); // NHA_ID
    if !delete {
        // SAFETY: a NUL-terminated name; the index is looked up in this thread's namespace.
        let oif = unsafe { libc::if_nametoindex(c"v0".as_ptr()) };
        attr(out, 5, oif.to_ne_bytes()); // NHA_OIF
        attr(out, 6, [192, 0, 2, 2]); // NHA_GATEWAY
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// RTM_NEWROUTE (create, exclusive) or RTM_DELROUTE for `p`/24, written out field by field;
/// through the gateway, or (`nh`) through nexthop object 1.
fn encode(out: &mut Vec<u8>, seq: u32, delete: bool, p: Ipv4Addr, nh: bool) {
    let len: u32 = if delete {
        16 + 12 + 8 + 8 + 8
    } else {
        16 + 12 + 8 + 8 + 8 + 8
    };
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&(if delete { 25u16 } else { 24u16 }).to_ne_bytes());
    let flags: u16 = if delete { 0x5 } else { 0x5 | 0x400 | 0x200 };
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    let (kind, scope) = if delete { (0, 255) } else { (1, 0) };
    out.extend_from_slice(&[2, 24, 0, 0, 254, 77, scope, kind, 0, 0, 0, 0]);
    let attr = |out: &mut Vec<u8>, t: u16, v: [u8; 4]| {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&t.to_ne_bytes());
        out.extend_from_slice(&v);
    };
    attr(out, 1, p.octets());
    attr(out, 15, 254u32.to_ne_bytes());
    attr(out, 6, 20u32.to_ne_bytes());
    if !delete && nh {
        attr(out, 30, 1u32.to_ne_bytes()); // RTA_NH_ID
    } else if !delete {
        attr(out, 5, [192, 0, 2, 2]);
    }
}

fn interlink(lab: &mut Lab, n: usize) -> (Duration, Duration, u64) {
    let name = format!("fib{n}");
    let ns = fresh(lab, &name);
    let (a, d, rss) = in_ns(&ns, move || {
        let route =
            Route::unicast(vec![NextHop::via(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))]).unwrap();
        let mut drv = Driver::open(T, WINDOW).unwrap();
        let t = Instant::now();
        for i in 0..n {
            let p = Prefix::new(IpAddr::V4(prefix(i)), 24).unwrap();
            drv.fib().set(p, Some(&route));
        }
        drv.run_until_idle(Duration::from_secs(600)).unwrap();
        let a = t.elapsed();
        let rss = rss_kib();
        let stats = drv.fib().stats();
        assert_eq!(
            (stats.ok[0], stats.installed.ipv4),
            (n as u64, n as u64),
            "{stats:?}"
        );
        let t = Instant::now();
        for i in 0..n {
            let p = Prefix::new(IpAddr::V4(prefix(i)), 24).unwrap();
            drv.fib().set(p, None);
        }
        drv.run_until_idle(Duration::from_secs(600)).unwrap();
        (a, t.elapsed(), rss)
    })
    .join()
    .unwrap();
    assert_eq!(count_routes(lab, &name), 0);
    lab.del_ns(&name);
    (a, d, rss)
}

/// This process's resident set, KiB (VmRSS).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"fib".contains(a.as_str()))
    {
        return;
    }
    if !netns::require_root() {
        return;
    }
    let sizes: Vec<usize> = std::env::var("INTERLINK_FIB_BENCH_N")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let rounds: usize = std::env::var("INTERLINK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let mut lab = Lab::new("fibbench");
    println!(
        "\nKernel FIB, IPv4 /24 routes via one gateway, each writer in a fresh namespace; \
         the floor and interlink take turns for {rounds} rounds, median [lowest-highest]:"
    );
    println!(
        "  {:>9}  {:<31} {:>22} {:>9} {:>22} {:>9}",
        "routes", "writer", "add, s", "adds/s", "delete, s", "dels/s"
    );
    // INTERLINK_FIB_BENCH_ONLY=interlink skips the references (for profiling).
    let only_ours = std::env::var("INTERLINK_FIB_BENCH_ONLY").is_ok_and(|v| v == "interlink");
    for &n in &sizes {
        let batch = (!only_ours).then(|| ip_batch(&mut lab, n));
        let mut raw = Vec::new();
        let mut raw_nh = Vec::new();
        let mut raw_nh_object = Vec::new();
        let mut ours = Vec::new();
        let mut rss = 0;
        for _ in 0..rounds {
            if !only_ours {
                raw.push(raw_writer(&mut lab, n, Floor::Gateway));
                raw_nh.push(raw_writer(&mut lab, n, Floor::Nexthop));
                raw_nh_object.push(raw_writer(&mut lab, n, Floor::NexthopObject));
            }
            let (a, d, r) = interlink(&mut lab, n);
            ours.push((a, d));
            rss = rss.max(r);
        }
        let median = |v: &[(Duration, Duration)], add: bool| {
            let mut s: Vec<Duration> = v.iter().map(|x| if add { x.0 } else { x.1 }).collect();
            s.sort();
            (s[s.len() / 2], s[0], s[s.len() - 1])
        };
        let row = |name: &str, v: &[(Duration, Duration)]| {
            let (a, alo, ahi) = median(v, true);
            let (d, dlo, dhi) = median(v, false);
            println!(
                "  {:>9}  {:<31} {:>22} {:>9.0} {:>22} {:>9.0}",
                n,
                name,
                format!(
                    "{:.2} [{:.2}-{:.2}]",
                    a.as_secs_f64(),
                    alo.as_secs_f64(),
                    ahi.as_secs_f64()
                ),
                n as f64 / a.as_secs_f64(),
                format!(
                    "{:.2} [{:.2}-{:.2}]",
                    d.as_secs_f64(),
                    dlo.as_secs_f64(),
                    dhi.as_secs_f64()
                ),
                n as f64 / d.as_secs_f64(),
            );
            (a, d)
        };
        if let Some(b) = batch {
            row("ip -batch (one run)", &[b]);
        }
        let floor = (!raw.is_empty()).then(|| row("pipelined raw netlink (floor)", &raw));
        // The same with a nexthop object: what issue 15's design rests on.
        if !raw_nh.is_empty() {
            row("  via a nexthop object", &raw_nh);
            row("  ...deleted with the object", &raw_nh_object);
        }
        let (fa, fd) = row("interlink-fib", &ours);
        if let Some((ra, rd)) = floor {
            println!(
                "  {:>9}  interlink-fib / floor: add {:.2}x, delete {:.2}x",
                n,
                fa.as_secs_f64() / ra.as_secs_f64(),
                fd.as_secs_f64() / rd.as_secs_f64(),
            );
        }
        println!(
            "  {:>9}  bench process RSS after interlink's adds: {:.1} MiB",
            n,
            rss as f64 / 1024.0
        );
    }
}

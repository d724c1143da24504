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
//!   handed to it until the kernel has acked the last: with per-route next hops (as on a
//!   kernel without nexthop objects), and through a nexthop object (what it does where the
//!   kernel has them; the withdrawal of every route is then one delete of the object).
//!
//! The floor and interlink take turns for `INTERLINK_BENCH_ROUNDS` rounds (3); the table gives
//! medians. `ip -batch` runs once.
//!
//! The routes are /24s from 16.0.0.0 on, via a gateway on a veth, metric 20, protocol 77.
//! Needs root: `./scripts/bench-fib.sh`.

use interlink_testkit as netns;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use interlink_benches::{count_routes, fresh, prefix, raw_writer, Floor, T, WINDOW};
use interlink_fib::driver::Options;
use interlink_fib::{Driver, NextHop, Prefix, Route};
use netns::{in_ns, Lab};

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

fn interlink(lab: &mut Lab, n: usize, objects: bool) -> (Duration, Duration, u64) {
    let name = format!("fib{n}{}", if objects { "o" } else { "" });
    let ns = fresh(lab, &name);
    let (a, d, rss) = in_ns(&ns, move || {
        let route =
            Route::unicast(vec![NextHop::via(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)))]).unwrap();
        let opts = Options {
            nexthop_objects: objects,
            ..Options::default()
        };
        let mut drv = Driver::open_with(T, WINDOW, opts).unwrap();
        assert_eq!(
            drv.fib().nexthop_objects(),
            objects,
            "a kernel without objects"
        );
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
        let mut ours_nh = Vec::new();
        let mut rss = 0;
        for _ in 0..rounds {
            if !only_ours {
                raw.push(raw_writer(&mut lab, n, Floor::Gateway));
                raw_nh.push(raw_writer(&mut lab, n, Floor::Nexthop));
                raw_nh_object.push(raw_writer(&mut lab, n, Floor::NexthopObject));
            }
            let (a, d, r) = interlink(&mut lab, n, false);
            ours.push((a, d));
            rss = rss.max(r);
            let (a, d, r) = interlink(&mut lab, n, true);
            ours_nh.push((a, d));
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
        // The same with a nexthop object.
        let floor_nh = (!raw_nh.is_empty()).then(|| {
            (
                row("  via a nexthop object", &raw_nh),
                row("  ...deleted with the object", &raw_nh_object),
            )
        });
        let (fa, fd) = row("interlink-fib, per-route hops", &ours);
        let (oa, od) = row("interlink-fib, nexthop object", &ours_nh);
        if let (Some((ra, rd)), Some(((na, _), (_, nd)))) = (floor, floor_nh) {
            let x = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
            println!(
                "  {:>9}  per-route hops / floor: add {:.2}x, delete {:.2}x; \
                 object / floor via object: add {:.2}x, delete {:.2}x (against the object \
                 deleted: {:.2}x)",
                n,
                x(fa, ra),
                x(fd, rd),
                x(oa, na),
                x(od, rd),
                x(od, nd),
            );
            println!(
                "  {:>9}  interlink with objects against per-route hops: add {:.2}x, delete {:.2}x",
                n,
                x(oa, fa),
                x(od, fd)
            );
        }
        println!(
            "  {:>9}  bench process RSS after interlink's adds: {:.1} MiB",
            n,
            rss as f64 / 1024.0
        );
    }
}

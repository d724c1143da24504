//! The FIB against a real kernel, in a network namespace of its own per test: add, replace,
//! delete, ECMP, blackhole and unreachable, IPv4 and IPv6; a foreign route left alone; an
//! owned route deleted from outside put back; a second FIB (a restarted daemon) adopting the
//! first one's routes without touching them, then sweeping the ones not wanted; nexthop
//! objects as the wire layer writes and reads them. Needs root.

use interlink_testkit as netns;

use std::net::IpAddr;
use std::time::Duration;

use interlink_fib::driver::Options;
use interlink_fib::{Driver, FibEvent, NextHop, Prefix, Route, Target};
use netns::{in_ns, Lab};

const T: Target = Target {
    table: 254,
    metric: 20,
    protocol: 77,
};

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn gw(s: &str) -> NextHop {
    NextHop::via(s.parse::<IpAddr>().unwrap())
}

fn via(hops: &[&str]) -> Route {
    Route::unicast(hops.iter().map(|h| gw(h)).collect()).unwrap()
}

/// A namespace with two veth pairs whose near ends carry 192.0.2.1/24 + 2001:db8:1::1/64 and
/// 198.51.100.1/24 + 2001:db8:2::1/64, so that gateways in those nets resolve.
fn lab(test: &str) -> Option<(Lab, String)> {
    if !netns::require_root() {
        return None;
    }
    let mut lab = Lab::new(test);
    let ns = lab.add_ns("fib");
    for (a, b, v4, v6) in [
        ("v0", "p0", "192.0.2.1/24", "2001:db8:1::1/64"),
        ("v1", "p1", "198.51.100.1/24", "2001:db8:2::1/64"),
    ] {
        lab.exec(
            "fib",
            &["ip", "link", "add", a, "type", "veth", "peer", "name", b],
        );
        lab.exec("fib", &["ip", "link", "set", a, "up"]);
        lab.exec("fib", &["ip", "link", "set", b, "up"]);
        lab.exec("fib", &["ip", "addr", "add", v4, "dev", a]);
        lab.exec("fib", &["ip", "-6", "addr", "add", v6, "dev", a, "nodad"]);
    }
    Some((lab, ns))
}

/// `ip route show` of our protocol, one family, as lines without trailing spaces.
fn routes(lab: &Lab, family: &str) -> Vec<String> {
    let out = lab.exec("fib", &["ip", family, "route", "show", "proto", "77"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs `f` with a FIB driver opened inside the lab's namespace, with routes carrying their
/// own next hops (as on a kernel without nexthop objects).
fn with_driver<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce(&mut Driver) -> R + Send + 'static,
) -> R {
    with(ns, false, f)
}

/// The same, with routes through nexthop objects.
fn with_objects<R: Send + 'static>(
    ns: &str,
    f: impl FnOnce(&mut Driver) -> R + Send + 'static,
) -> R {
    with(ns, true, f)
}

fn with<R: Send + 'static>(
    ns: &str,
    objects: bool,
    f: impl FnOnce(&mut Driver) -> R + Send + 'static,
) -> R {
    in_ns(ns, move || {
        let opts = Options {
            nexthop_objects: objects,
            ..Options::default()
        };
        let mut d = Driver::open_with(T, 1024, opts).expect("open the FIB");
        assert_eq!(d.fib().nexthop_objects(), objects);
        f(&mut d)
    })
    .join()
    .unwrap()
}

/// `ip nexthop show proto 77`, as lines.
fn nexthops(lab: &Lab) -> Vec<String> {
    let out = lab.exec("fib", &["ip", "nexthop", "show", "proto", "77"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_end().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Runs the FIB until it is idle; the events about routes (not addresses) it had.
fn settle(d: &mut Driver) -> Vec<FibEvent> {
    d.run_until_idle(Duration::from_secs(10)).unwrap();
    d.fib()
        .drain_events()
        .filter(|e| {
            !matches!(
                e,
                FibEvent::AddressAdded { .. } | FibEvent::AddressRemoved { .. }
            )
        })
        .collect()
}

#[test]
fn add_replace_delete_and_ecmp_in_both_families() {
    let Some((lab, ns)) = lab("fib-crud") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<Vec<FibEvent>>();
    let ns2 = ns.clone();
    let worker = std::thread::spawn(move || {
        with_driver(&ns2, move |d| {
            let step = |d: &mut Driver, done: &std::sync::mpsc::Sender<Vec<FibEvent>>| {
                let ev = settle(d);
                done.send(ev).unwrap();
                rx.recv().unwrap();
            };
            d.fib().set(p("10.1.0.0/16"), Some(&via(&["192.0.2.2"])));
            d.fib()
                .set(p("10.2.0.0/16"), Some(&via(&["192.0.2.2", "198.51.100.2"])));
            d.fib().set(p("10.3.0.0/16"), Some(&Route::Blackhole));
            d.fib().set(p("10.4.0.0/16"), Some(&Route::Unreachable));
            d.fib()
                .set(p("2001:db8:10::/48"), Some(&via(&["2001:db8:1::2"])));
            d.fib().set(
                p("2001:db8:20::/48"),
                Some(&via(&["2001:db8:1::2", "2001:db8:2::2"])),
            );
            step(d, &done_tx);
            // Replace: another gateway; ECMP down to one path; delete.
            d.fib().set(p("10.1.0.0/16"), Some(&via(&["198.51.100.2"])));
            d.fib().set(p("10.2.0.0/16"), Some(&via(&["192.0.2.2"])));
            d.fib()
                .set(p("2001:db8:10::/48"), Some(&via(&["2001:db8:2::2"])));
            d.fib().set(p("10.3.0.0/16"), None);
            d.fib().set(p("2001:db8:20::/48"), None);
            step(d, &done_tx);
            let stats = d.fib().stats();
            assert_eq!(stats.ok, [6, 3, 2], "{stats:?}");
            assert_eq!(stats.failed, [0, 0, 0]);
            assert_eq!((stats.installed.ipv4, stats.installed.ipv6), (3, 1));
        })
    });
    let ev = done_rx.recv().unwrap();
    assert!(
        ev.iter()
            .all(|e| !matches!(e, FibEvent::Failed { .. } | FibEvent::Conflict { .. })),
        "{ev:?}"
    );
    let v4 = routes(&lab, "-4");
    assert!(
        v4.contains(&"10.1.0.0/16 via 192.0.2.2 dev v0 metric 20".to_owned()),
        "{v4:?}"
    );
    assert!(
        v4.contains(&"blackhole 10.3.0.0/16 metric 20".to_owned()),
        "{v4:?}"
    );
    assert!(
        v4.contains(&"unreachable 10.4.0.0/16 metric 20".to_owned()),
        "{v4:?}"
    );
    let ecmp = v4
        .iter()
        .position(|l| l == "10.2.0.0/16 metric 20")
        .expect("ECMP route");
    assert!(
        v4[ecmp + 1].contains("nexthop via 192.0.2.2 dev v0 weight 1"),
        "{v4:?}"
    );
    assert!(
        v4[ecmp + 2].contains("nexthop via 198.51.100.2 dev v1 weight 1"),
        "{v4:?}"
    );
    let v6 = routes(&lab, "-6");
    assert!(
        v6.iter()
            .any(|l| l.starts_with("2001:db8:10::/48 via 2001:db8:1::2 dev v0 metric 20")),
        "{v6:?}"
    );
    let ecmp6 = v6
        .iter()
        .position(|l| l.starts_with("2001:db8:20::/48 metric 20"))
        .expect("IPv6 ECMP");
    assert!(
        v6[ecmp6 + 1].contains("nexthop via 2001:db8:1::2 dev v0"),
        "{v6:?}"
    );
    assert!(
        v6[ecmp6 + 2].contains("nexthop via 2001:db8:2::2 dev v1"),
        "{v6:?}"
    );
    tx.send(()).unwrap();

    let ev = done_rx.recv().unwrap();
    assert!(
        ev.iter().all(|e| !matches!(e, FibEvent::Failed { .. })),
        "{ev:?}"
    );
    let v4 = routes(&lab, "-4");
    assert_eq!(
        v4,
        [
            "10.1.0.0/16 via 198.51.100.2 dev v1 metric 20",
            "10.2.0.0/16 via 192.0.2.2 dev v0 metric 20",
            "unreachable 10.4.0.0/16 metric 20",
        ]
    );
    let v6 = routes(&lab, "-6");
    assert_eq!(v6.len(), 1, "{v6:?}");
    assert!(
        v6[0].starts_with("2001:db8:10::/48 via 2001:db8:2::2 dev v1 metric 20"),
        "{v6:?}"
    );
    tx.send(()).unwrap();
    worker.join().unwrap();
}

#[test]
fn a_foreign_route_is_left_alone_and_reported() {
    let Some((lab, ns)) = lab("fib-foreign") else {
        return;
    };
    lab.exec(
        "fib",
        &[
            "ip",
            "route",
            "add",
            "10.5.0.0/16",
            "via",
            "192.0.2.9",
            "metric",
            "20",
        ],
    );
    let (ev, stats) = with_driver(&ns, |d| {
        d.fib().set(p("10.5.0.0/16"), Some(&via(&["192.0.2.2"])));
        let ev = settle(d);
        (ev, d.fib().stats())
    });
    assert_eq!(
        ev,
        [FibEvent::Conflict {
            prefix: p("10.5.0.0/16")
        }]
    );
    assert_eq!(stats.ok, [0, 0, 0]);
    let out = lab.exec("fib", &["ip", "route", "show", "10.5.0.0/16"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "10.5.0.0/16 via 192.0.2.9 dev v0 metric 20"
    );
    assert_eq!(routes(&lab, "-4"), Vec::<String>::new());
}

#[test]
fn an_owned_route_deleted_from_outside_is_put_back() {
    let Some((lab, ns)) = lab("fib-repair") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        with_driver(&ns, move |d| {
            d.fib().set(p("10.6.0.0/16"), Some(&via(&["192.0.2.2"])));
            d.fib()
                .set(p("2001:db8:60::/48"), Some(&via(&["2001:db8:1::2"])));
            settle(d);
            ready_tx.send(()).unwrap();
            rx.recv().unwrap();
            // Wait for the kernel's notifications and what they cause.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            let mut ev = Vec::new();
            while ev.len() < 2 && std::time::Instant::now() < deadline {
                d.pump(None, Duration::from_millis(50)).unwrap();
                ev.extend(d.fib().drain_events());
            }
            d.run_until_idle(Duration::from_secs(5)).unwrap();
            ev
        })
    });
    ready_rx.recv().unwrap();
    lab.exec("fib", &["ip", "route", "del", "10.6.0.0/16", "proto", "77"]);
    lab.exec(
        "fib",
        &[
            "ip",
            "-6",
            "route",
            "del",
            "2001:db8:60::/48",
            "proto",
            "77",
        ],
    );
    tx.send(()).unwrap();
    let ev = worker.join().unwrap();
    assert!(
        ev.contains(&FibEvent::Repaired {
            prefix: p("10.6.0.0/16")
        }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&FibEvent::Repaired {
            prefix: p("2001:db8:60::/48")
        }),
        "{ev:?}"
    );
    assert_eq!(
        routes(&lab, "-4"),
        ["10.6.0.0/16 via 192.0.2.2 dev v0 metric 20"]
    );
    assert_eq!(routes(&lab, "-6").len(), 1);
}

#[test]
fn a_restarted_fib_adopts_without_a_change_and_sweeps_the_rest() {
    let Some((mut lab, ns)) = lab("fib-restart") else {
        return;
    };
    // The first life: three routes, then gone without withdrawing them (as after kill -9).
    with_driver(&ns, |d| {
        d.fib().set(p("10.7.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib()
            .set(p("10.8.0.0/16"), Some(&via(&["192.0.2.2", "198.51.100.2"])));
        d.fib()
            .set(p("2001:db8:70::/48"), Some(&via(&["2001:db8:1::2"])));
        settle(d);
    });
    let before = (routes(&lab, "-4"), routes(&lab, "-6"));
    assert_eq!(before.0.len(), 4, "{before:?}");
    // Watch every route change from here on.
    lab.spawn_in(
        "monitor",
        "fib",
        std::path::Path::new("ip"),
        &["monitor", "route"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (stale_at_start, stats) = with_driver(&ns, |d| {
        let stale = d.fib().stale();
        // The sources want two of them back as they were; the third is not wanted again.
        d.fib().set(p("10.7.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib()
            .set(p("10.8.0.0/16"), Some(&via(&["192.0.2.2", "198.51.100.2"])));
        settle(d);
        (stale, d.fib().stats())
    });
    assert_eq!(stale_at_start, 3);
    assert_eq!(stats.ok, [0, 0, 0], "adoption changed something: {stats:?}");
    assert_eq!((routes(&lab, "-4"), routes(&lab, "-6")), before);
    std::thread::sleep(Duration::from_millis(300));
    // Our prefixes only: the kernel adds routes of its own (IPv6 link-local addresses).
    let ours = |m: String| -> String {
        m.lines()
            .filter(|l| {
                ["10.7.", "10.8.", "2001:db8:70:"]
                    .iter()
                    .any(|p| l.contains(p))
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(ours(lab.log("monitor")), "", "the kernel saw changes");
    // A third life sweeps: the stale IPv6 route goes, the others stay.
    let stats = with_driver(&ns, |d| {
        d.fib().set(p("10.7.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib()
            .set(p("10.8.0.0/16"), Some(&via(&["192.0.2.2", "198.51.100.2"])));
        assert_eq!(d.fib().sweep_stale(), 1);
        settle(d);
        d.fib().stats()
    });
    assert_eq!(stats.ok, [0, 0, 1]);
    assert_eq!(routes(&lab, "-4"), before.0);
    assert_eq!(routes(&lab, "-6"), Vec::<String>::new());
    let log = ours(lab.log("monitor"));
    assert!(log.starts_with("Deleted 2001:db8:70::/48"), "{log}");
}

#[test]
fn lost_notifications_are_caught_up_by_a_resync() {
    let Some((lab, ns)) = lab("fib-enobufs") else {
        return;
    };
    // 5000 routes of someone else's (protocol 4, static) to flood the monitor socket with,
    // in two batches with our route deleted between them: its notification is lost with the
    // others.
    let batch = |from: u32| -> String {
        (from..from + 2500)
            .map(|i| {
                format!(
                    "route add 10.200.{}.{}/32 via 198.51.100.2 proto 4\n",
                    i / 256,
                    i % 256
                )
            })
            .collect()
    };
    let first = lab.file("flood1.batch", &batch(0));
    let second = lab.file("flood2.batch", &batch(2500));
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        in_ns(&ns, move || {
            // A monitor buffer of a few kilobytes: the flood cannot fit.
            let mut d = Driver::open_with(
                T,
                1024,
                Options {
                    rcvbuf: 4096,
                    nexthop_objects: false,
                },
            )
            .expect("open the FIB");
            d.fib().set(p("10.6.0.0/16"), Some(&via(&["192.0.2.2"])));
            settle(&mut d);
            ready_tx.send(()).unwrap();
            // Not reading while the flood comes.
            rx.recv().unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while d.resyncs == 0 && std::time::Instant::now() < deadline {
                d.pump(None, Duration::from_millis(50)).unwrap();
            }
            d.run_until_idle(Duration::from_secs(10)).unwrap();
            let ev: Vec<FibEvent> = d.fib().drain_events().collect();
            (d.resyncs, ev)
        })
        .join()
        .unwrap()
    });
    ready_rx.recv().unwrap();
    lab.exec("fib", &["ip", "-batch", first.to_str().unwrap()]);
    lab.exec("fib", &["ip", "route", "del", "10.6.0.0/16", "proto", "77"]);
    lab.exec("fib", &["ip", "-batch", second.to_str().unwrap()]);
    assert!(routes(&lab, "-4").is_empty(), "deleted from outside");
    tx.send(()).unwrap();
    let (resyncs, ev) = worker.join().unwrap();
    assert!(resyncs >= 1, "no ENOBUFS, no resync");
    // The resync found our route gone and put it back.
    assert_eq!(
        routes(&lab, "-4"),
        ["10.6.0.0/16 via 192.0.2.2 dev v0 metric 20"],
        "{ev:?}"
    );
}

/// Sends `buf` on a fresh request socket and returns each answer's errno, in order.
fn request(buf: &[u8], answers: usize) -> Vec<i32> {
    use interlink_fib::{sock::NlSocket, wire};
    let sock = NlSocket::open(&[], 1 << 20).unwrap();
    sock.send(buf).unwrap();
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut errnos = Vec::new();
    while errnos.len() < answers {
        match sock.recv(&mut inbuf).unwrap() {
            Some(len) => {
                for m in wire::messages(&inbuf[..len]) {
                    errnos.push(wire::parse_error(&m).map_or(-1, |(e, _)| e));
                }
            }
            None => {
                interlink_fib::sock::poll([sock.fd()], 5000).unwrap();
            }
        }
    }
    errnos
}

/// Everything a dump of `kind` for `family` gives, parsed by `parse`.
fn dump<T>(
    kind: u16,
    family: u8,
    parse: impl Fn(&interlink_fib::wire::Message<'_>) -> Option<T>,
) -> Vec<T> {
    use interlink_fib::{sock::NlSocket, wire};
    let sock = NlSocket::open(&[], 1 << 20).unwrap();
    let mut out = Vec::new();
    wire::encode_dump(&mut out, 0x8000_0001, kind, family);
    sock.send(&out).unwrap();
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut found = Vec::new();
    loop {
        match sock.recv(&mut inbuf).unwrap() {
            Some(len) => {
                for m in wire::messages(&inbuf[..len]) {
                    if m.kind == 3 {
                        return found;
                    }
                    found.extend(parse(&m));
                }
            }
            None => {
                interlink_fib::sock::poll([sock.fd()], 5000).unwrap();
            }
        }
    }
}

/// Nexthop objects (Linux 5.3) as the wire layer writes and reads them: an IPv4 and an
/// IPv6 object, routes naming them, the dumps of both, and the delete of an object taking
/// its routes with it.
#[test]
fn nexthop_objects_are_written_read_and_take_their_routes_when_deleted() {
    use interlink_fib::wire::{self, Op};
    let Some((lab, ns)) = lab("fib-nexthop") else {
        return;
    };
    let (objects, routes4) = in_ns(&ns, move || {
        // SAFETY: a NUL-terminated name, looked up in this thread's namespace.
        let v0 = unsafe { libc::if_nametoindex(c"v0".as_ptr()) };
        let hop4 = NextHop {
            gateway: Some("192.0.2.2".parse().unwrap()),
            ifindex: Some(v0),
            weight: 1,
        };
        let hop6 = NextHop {
            gateway: Some("2001:db8:1::2".parse().unwrap()),
            ifindex: Some(v0),
            weight: 1,
        };
        let mut buf = Vec::new();
        wire::encode_nexthop(&mut buf, 1, Op::Add, 77, 0x1000_0001, &hop4);
        wire::encode_nexthop(&mut buf, 2, Op::Add, 77, 0x1000_0002, &hop6);
        // Again: replaced in place.
        wire::encode_nexthop(&mut buf, 3, Op::Replace, 77, 0x1000_0001, &hop4);
        for (i, pfx) in ["10.1.0.0/16", "10.2.0.0/16", "2001:db8:99::/48"]
            .iter()
            .enumerate()
        {
            let nh = if i < 2 { 0x1000_0001 } else { 0x1000_0002 };
            wire::encode_route_via(&mut buf, 10 + i as u32, Op::Add, &T, &p(pfx), nh);
        }
        assert_eq!(request(&buf, 6), [0; 6]);
        // An id that is taken is refused to an add, never taken over.
        let mut buf = Vec::new();
        wire::encode_nexthop(&mut buf, 7, Op::Add, 77, 0x1000_0001, &hop6);
        assert_eq!(request(&buf, 1), [libc::EEXIST]);
        let objects = dump(wire::RTM_GETNEXTHOP, 0, wire::parse_nexthop);
        let routes4 = dump(
            wire::RTM_GETROUTE,
            libc::AF_INET as u8,
            |m| match wire::parse_event(m) {
                Some(interlink_fib::wire::KernelEvent::NewRoute(r)) if r.protocol == 77 => Some(r),
                _ => None,
            },
        );
        (objects, routes4)
    })
    .join()
    .unwrap();
    // The objects as dumped: ids, protocol, gateway and interface.
    let ours: Vec<_> = objects.iter().filter(|n| n.protocol == 77).collect();
    assert_eq!(ours.len(), 2, "{objects:?}");
    let four = ours.iter().find(|n| n.id == 0x1000_0001).unwrap();
    assert_eq!(
        four.hop.as_ref().unwrap().gateway,
        Some("192.0.2.2".parse().unwrap())
    );
    // The routes name their object, and the kernel gives the gateway with it.
    assert_eq!(routes4.len(), 2, "{routes4:?}");
    for r in &routes4 {
        assert_eq!(r.nh_id, Some(0x1000_0001), "{r:?}");
        assert_eq!(
            r.route,
            Some(via(&["192.0.2.2"])).map(|x| with_oif(x, &lab)),
            "{r:?}"
        );
    }
    assert!(
        routes(&lab, "-4")
            .iter()
            .all(|l| l.contains("nhid 268435457")),
        "{:?}",
        routes(&lab, "-4")
    );
    assert_eq!(routes(&lab, "-6").len(), 1, "{:?}", routes(&lab, "-6"));
    // Deleting the IPv4 object takes both of its routes, in one request.
    in_ns(&ns, || {
        let mut buf = Vec::new();
        let any = NextHop::dev(1);
        wire::encode_nexthop(&mut buf, 20, Op::Delete, 77, 0x1000_0001, &any);
        assert_eq!(request(&buf, 1), [0]);
    })
    .join()
    .unwrap();
    assert_eq!(routes(&lab, "-4"), Vec::<String>::new());
    assert_eq!(routes(&lab, "-6").len(), 1);
}

/// `route` with the interface index of v0 in the lab's namespace on each hop.
fn with_oif(route: Route, lab: &Lab) -> Route {
    let out = lab.exec("fib", &["cat", "/sys/class/net/v0/ifindex"]);
    let v0: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    match route {
        Route::Unicast(hops) => Route::unicast(
            hops.into_iter()
                .map(|h| NextHop {
                    ifindex: Some(v0),
                    ..h
                })
                .collect(),
        )
        .unwrap(),
        r => r,
    }
}

/// Routes through one gateway go through one object of interlink's, IPv4 and IPv6 alike
/// and ECMP routes through a group of objects (blackholes keep their own); withdrawn
/// together, routes go with one delete of their object.
#[test]
fn routes_go_through_objects_and_leave_with_them() {
    let Some((lab, ns)) = lab("fib-objects") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<interlink_fib::FibStats>();
    let worker = std::thread::spawn(move || {
        with_objects(&ns, move |d| {
            for i in 0..100 {
                d.fib()
                    .set(p(&format!("10.{i}.0.0/16")), Some(&via(&["192.0.2.2"])));
            }
            d.fib().set(
                p("10.200.0.0/16"),
                Some(&via(&["192.0.2.2", "198.51.100.2"])),
            );
            d.fib().set(p("10.201.0.0/16"), Some(&Route::Blackhole));
            d.fib()
                .set(p("2001:db8:10::/48"), Some(&via(&["2001:db8:1::2"])));
            assert!(settle(d).is_empty());
            done_tx.send(d.fib().stats()).unwrap();
            rx.recv().unwrap();
            for i in 0..100 {
                d.fib().set(p(&format!("10.{i}.0.0/16")), None);
            }
            assert!(settle(d).is_empty());
            done_tx.send(d.fib().stats()).unwrap();
        })
    });
    let stats = done_rx.recv().unwrap();
    assert_eq!(stats.ok, [103, 0, 0], "{stats:?}");
    // The object of the hundred, the group and its two members, the IPv6 one.
    assert_eq!((stats.nexthops, stats.nexthop_ok), (5, [5, 0]));
    let objects = nexthops(&lab);
    assert_eq!(objects.len(), 5, "{objects:?}");
    assert!(
        objects.iter().any(|l| l.contains("via 192.0.2.2 dev v0")),
        "{objects:?}"
    );
    let id = objects[0].split_whitespace().nth(1).unwrap().to_owned();
    let group = objects
        .iter()
        .find(|l| l.contains(" group "))
        .expect("a group");
    let gid = group.split_whitespace().nth(1).unwrap().to_owned();
    let v4 = routes(&lab, "-4");
    assert!(
        v4.iter()
            .filter(|l| l.contains(&format!("nhid {id} via 192.0.2.2 dev v0")))
            .count()
            == 100
            || v4.iter().filter(|l| l.contains("nhid")).count() == 100,
        "{v4:?}"
    );
    assert!(
        v4.contains(&format!("10.200.0.0/16 nhid {gid} metric 20")),
        "{v4:?}"
    );
    assert!(
        v4.contains(&"blackhole 10.201.0.0/16 metric 20".to_owned()),
        "{v4:?}"
    );
    let v6 = routes(&lab, "-6");
    assert!(
        v6.iter().any(|l| l.starts_with("2001:db8:10::/48 nhid")),
        "{v6:?}"
    );
    tx.send(()).unwrap();
    let stats = done_rx.recv().unwrap();
    worker.join().unwrap();
    // One request took the hundred routes.
    assert_eq!(stats.ok, [103, 0, 0], "{stats:?}");
    assert_eq!(stats.nexthop_ok, [5, 1], "{stats:?}");
    assert_eq!((stats.installed.ipv4, stats.installed.ipv6), (2, 1));
    assert_eq!(
        routes(&lab, "-4"),
        [
            format!("10.200.0.0/16 nhid {gid} metric 20"),
            "\tnexthop via 192.0.2.2 dev v0 weight 1".to_owned(),
            "\tnexthop via 198.51.100.2 dev v1 weight 1".to_owned(),
            "blackhole 10.201.0.0/16 metric 20".to_owned(),
        ]
    );
    assert_eq!(
        nexthops(&lab).len(),
        4,
        "the group, its members, the IPv6 one stay"
    );
}

/// A restart with objects: the second life adopts the objects and the routes through them
/// without a change the kernel sees, and its sweep deletes the unwanted object with its
/// route in one request.
#[test]
fn a_restart_adopts_objects_and_sweeps_them_whole() {
    let Some((mut lab, ns)) = lab("fib-objrestart") else {
        return;
    };
    let ecmp = || via(&["192.0.2.2", "198.51.100.2"]);
    with_objects(&ns, move |d| {
        d.fib().set(p("10.7.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib().set(p("10.8.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib().set(p("10.9.0.0/16"), Some(&ecmp()));
        d.fib()
            .set(p("2001:db8:70::/48"), Some(&via(&["2001:db8:1::2"])));
        settle(d);
    });
    let before = (routes(&lab, "-4"), routes(&lab, "-6"), nexthops(&lab));
    // The object of two routes, a group and its two members, the IPv6 object.
    assert_eq!(before.2.len(), 5, "{before:?}");
    lab.spawn_in(
        "monitor",
        "fib",
        std::path::Path::new("ip"),
        &["monitor", "route", "nexthop"],
    );
    std::thread::sleep(Duration::from_millis(300));
    let (stale, stats) = with_objects(&ns, move |d| {
        let stale = d.fib().stale();
        d.fib().set(p("10.7.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib().set(p("10.8.0.0/16"), Some(&via(&["192.0.2.2"])));
        d.fib().set(p("10.9.0.0/16"), Some(&ecmp()));
        settle(d);
        assert_eq!(d.fib().sweep_stale(), 1);
        settle(d);
        (stale, d.fib().stats())
    });
    assert_eq!(stale, 4);
    assert_eq!(stats.ok, [0, 0, 0], "{stats:?}");
    assert_eq!(stats.nexthop_ok, [0, 1], "{stats:?}");
    assert_eq!(routes(&lab, "-4"), before.0);
    assert_eq!(routes(&lab, "-6"), Vec::<String>::new());
    let kept: Vec<String> = before
        .2
        .into_iter()
        .filter(|l| !l.contains("2001:db8"))
        .collect();
    assert_eq!(nexthops(&lab), kept);
    std::thread::sleep(Duration::from_millis(300));
    let log = lab.log("monitor");
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| {
            ["10.7.", "10.8.", "10.9.", "2001:db8:70:", "id "]
                .iter()
                .any(|p| l.contains(p))
        })
        .collect();
    // The object's delete, and the kernel's word that the IPv6 route went with it (it tells
    // of IPv6 routes an object takes along, not of IPv4 ones).
    assert!(
        changes.len() == 2
            && changes[0].starts_with("Deleted id ")
            && changes[1].starts_with("Deleted 2001:db8:70::/48"),
        "{changes:?}"
    );
}

/// An interface going down takes the objects on it and their routes without a word from the
/// kernel: the FIB finds out (a dump of the objects), counts them gone, and when the
/// interface is back, puts them back through a new object.
#[test]
fn objects_flushed_with_their_interface_come_back_with_it() {
    let Some((lab, ns)) = lab("fib-objflush") else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<interlink_fib::FibStats>();
    let worker = std::thread::spawn(move || {
        with_objects(&ns, move |d| {
            d.fib().set(p("10.1.0.0/16"), Some(&via(&["192.0.2.2"])));
            d.fib().set(p("10.2.0.0/16"), Some(&via(&["198.51.100.2"])));
            d.fib().set(p("10.3.0.0/16"), Some(&via(&["198.51.100.2"])));
            settle(d);
            for _ in 0..2 {
                done_tx.send(d.fib().stats()).unwrap();
                rx.recv().unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(3);
                while std::time::Instant::now() < deadline {
                    d.pump(None, Duration::from_millis(50)).unwrap();
                }
                d.run_until_idle(Duration::from_secs(5)).unwrap();
            }
            done_tx.send(d.fib().stats()).unwrap();
        })
    });
    let stats = done_rx.recv().unwrap();
    assert_eq!((stats.installed.ipv4, stats.nexthops), (3, 2));
    lab.exec("fib", &["ip", "link", "set", "v1", "down"]);
    assert_eq!(routes(&lab, "-4").len(), 1, "the kernel flushed them");
    tx.send(()).unwrap();
    let stats = done_rx.recv().unwrap();
    assert_eq!((stats.installed.ipv4, stats.nexthops), (1, 1), "{stats:?}");
    lab.exec("fib", &["ip", "link", "set", "v1", "up"]);
    tx.send(()).unwrap();
    let stats = done_rx.recv().unwrap();
    worker.join().unwrap();
    assert_eq!((stats.installed.ipv4, stats.nexthops), (3, 2), "{stats:?}");
    let v4 = routes(&lab, "-4");
    assert_eq!(
        v4.iter().filter(|l| l.contains("nhid")).count(),
        3,
        "{v4:?}"
    );
}

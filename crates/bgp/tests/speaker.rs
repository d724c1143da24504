//! The speaker's decisions, reached without sockets or root: a `Speaker` fed the time and its
//! sessions' events, its answers checked. Max-prefix per family and its restart timer,
//! graceful restart's stale routes and End-of-RIB, convergence, reconfiguration by
//! difference, RFC 8212 and export packing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use interlink_bgp::fsm::{Down, Negotiated};
use interlink_bgp::fuzzing::{bodies, codec};
use interlink_bgp::peer::{PeerCmd, PeerEvent};
use interlink_bgp::policy::{ExportPolicy, ImportPolicy, PrefixFilter};
use interlink_bgp::rib::PeerId;
use interlink_bgp::speaker::{
    Input, Neighbor, Output, Severity, Speaker, SpeakerConfig, SpeakerEvent,
};
use interlink_bgp::update::{self, Attrs, Nlri, Origin, Segment};
use interlink_bgp::wire::{code, Capabilities, Family, GracefulRestart, Open};

const LOCAL_AS: u32 = 65000;

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pfx(s: &str) -> Nlri {
    let (a, l) = s.split_once('/').unwrap();
    Nlri::new(addr(a), l.parse().unwrap()).unwrap()
}

/// 10.<i / 256>.<i % 256>.0/24, for i in `range`.
fn prefixes(range: std::ops::Range<u32>) -> Vec<Nlri> {
    range
        .map(|i| {
            Nlri::new(
                IpAddr::V4(Ipv4Addr::new(10, (i >> 8) as u8, i as u8, 0)),
                24,
            )
            .unwrap()
        })
        .collect()
}

fn accept_all() -> ImportPolicy {
    ImportPolicy {
        prefixes: vec![PrefixFilter {
            prefix: pfx("0.0.0.0/0"),
            ge: 0,
            le: 32,
        }],
        max_prefixes_restart: Duration::from_secs(30),
        ..ImportPolicy::default()
    }
}

fn export_all() -> ExportPolicy {
    ExportPolicy {
        networks: true,
        prefixes: vec![PrefixFilter {
            prefix: pfx("0.0.0.0/0"),
            ge: 0,
            le: 32,
        }],
        ..ExportPolicy::default()
    }
}

fn neighbor(a: &str, remote_as: u32) -> Neighbor {
    Neighbor {
        address: addr(a),
        port: 179,
        remote_as,
        hold_time: 90,
        passive: false,
        md5: None,
        import: Some(accept_all()),
        export: Some(export_all()),
        families: vec![Family::IPV4_UNICAST],
        local_address: None,
        ttl_security: false,
    }
}

fn config(neighbors: Vec<Neighbor>) -> SpeakerConfig {
    SpeakerConfig {
        local_as: LOCAL_AS,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        neighbors,
        networks: vec![],
        multipath: false,
        listen_port: 179,
        restart_time: 120,
        restarting: false,
    }
}

/// What the FSM reports when a session with `asn` is established.
fn up(asn: u32, restart_time: Option<u16>) -> PeerEvent {
    let gr = restart_time.map(|t| GracefulRestart {
        restarting: false,
        restart_time: t,
        families: vec![(Family::IPV4_UNICAST, true)],
    });
    let n = Negotiated {
        peer: Open {
            asn,
            hold_time: 90,
            router_id: Ipv4Addr::new(198, 51, 100, asn as u8),
            caps: Capabilities {
                multiprotocol: vec![Family::IPV4_UNICAST],
                route_refresh: true,
                four_octet_as: Some(asn),
                graceful_restart: gr.clone(),
                extended_message: false,
                unknown: vec![],
            },
        },
        hold_time: 90,
        keepalive: Duration::from_secs(30),
        families: vec![Family::IPV4_UNICAST],
        four_octet_as: true,
        route_refresh: true,
        extended_message: false,
        peer_graceful_restart: gr,
    };
    let local = SocketAddr::new(addr("192.0.2.1"), 179);
    PeerEvent::Up(Box::new(n), local)
}

/// UPDATE bodies from a peer of `asn` announcing `ps` with next hop `nh`.
fn announce(ps: &[Nlri], asn: u32, nh: &str) -> Vec<Vec<u8>> {
    let attrs = Attrs {
        origin: Some(Origin::Igp),
        as_path: vec![Segment::Sequence(vec![asn])],
        next_hop: Some(addr(nh)),
        ..Attrs::default()
    };
    let mut wire = Vec::new();
    update::encode_announce(&mut wire, ps, &attrs, &codec(true, true));
    bodies(&wire)
}

fn end_of_rib() -> Vec<u8> {
    let mut wire = Vec::new();
    update::encode_end_of_rib(&mut wire, Family::IPV4_UNICAST);
    bodies(&wire).remove(0)
}

/// A speaker and its clock.
struct Run {
    s: Speaker,
    now: Instant,
}

impl Run {
    fn new(cfg: SpeakerConfig) -> (Run, Vec<Output>) {
        let (s, out) = Speaker::new(cfg);
        (
            Run {
                s,
                now: Instant::now(),
            },
            out,
        )
    }

    fn id(&self, a: &str) -> PeerId {
        self.s.peer_id(addr(a)).unwrap()
    }

    fn peer(&mut self, a: &str, e: PeerEvent) -> Vec<Output> {
        let id = self.id(a);
        self.s.handle(self.now, Input::Peer(id, e))
    }

    fn updates(&mut self, a: &str, bodies: Vec<Vec<u8>>) -> Vec<Output> {
        bodies
            .into_iter()
            .flat_map(|b| self.peer(a, PeerEvent::Update(b)))
            .collect()
    }

    fn advance(&mut self, d: Duration) -> Vec<Output> {
        self.now += d;
        self.s.on_timer(self.now)
    }
}

fn cmds(out: &[Output], id: PeerId) -> Vec<&PeerCmd> {
    out.iter()
        .filter_map(|o| match o {
            Output::Peer(i, c) if *i == id => Some(c),
            _ => None,
        })
        .collect()
}

/// The UPDATE messages sent to `id`, and the prefixes they announce and withdraw.
fn sent(out: &[Output], id: PeerId) -> (usize, Vec<Nlri>, Vec<Nlri>) {
    let (mut n, mut ann, mut wd) = (0, vec![], vec![]);
    for c in cmds(out, id) {
        if let PeerCmd::Send(wire) = c {
            for b in bodies(wire) {
                if let update::Decoded::Update(u) = update::decode(&b, &codec(true, true)) {
                    if u.end_of_rib.is_empty() {
                        n += 1;
                    }
                    ann.extend(u.announced);
                    wd.extend(u.withdrawn);
                }
            }
        }
    }
    (n, ann, wd)
}

fn sorted(mut v: Vec<Nlri>) -> Vec<Nlri> {
    v.sort();
    v
}

/// Best-route changes for the FIB: (announced, withdrawn).
fn best(out: &[Output]) -> (Vec<Nlri>, Vec<Nlri>) {
    let (mut a, mut w) = (vec![], vec![]);
    for o in out {
        if let Output::Event(SpeakerEvent::Best(changes)) = o {
            for c in changes {
                match c.best {
                    Some(_) => a.push(c.prefix),
                    None => w.push(c.prefix),
                }
            }
        }
    }
    (a, w)
}

fn warnings(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(SpeakerEvent::Log {
                severity: Severity::Warning,
                text,
            }) => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn converged(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::Event(SpeakerEvent::Converged)))
}

#[test]
fn a_new_speaker_starts_its_sessions_and_listens() {
    let (_, out) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    assert!(matches!(out[0], Output::StartPeer { .. }));
    assert!(out.iter().any(|o| matches!(o, Output::Listen { .. })));
    // With a neighbor, nothing has converged yet.
    assert!(!converged(&out));
    let (_, out) = Run::new(config(vec![]));
    assert!(converged(&out), "no neighbor: converged at once");
}

#[test]
fn max_prefix_tears_the_session_down_and_the_timer_starts_it_again() {
    let mut n = neighbor("10.0.0.2", 65001);
    n.import.as_mut().unwrap().max_prefixes = Some(2);
    let (mut r, _) = Run::new(config(vec![n]));
    let id = r.id("10.0.0.2");
    r.peer("10.0.0.2", up(65001, None));
    let out = r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    assert!(
        cmds(&out, id).is_empty(),
        "two prefixes: at the limit, not over"
    );
    let out = r.updates("10.0.0.2", announce(&prefixes(2..3), 65001, "10.0.0.2"));
    let c = cmds(&out, id);
    // RFC 4486: Cease, maximum number of prefixes, with AFI 1, SAFI 1 and the bound.
    match c.as_slice() {
        [PeerCmd::Reset(n), PeerCmd::Stop(_)] => {
            assert_eq!((n.code, n.subcode), (code::CEASE, code::CEASE_MAX_PREFIXES));
            assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 2]);
        }
        other => panic!("{other:?}"),
    }
    assert!(warnings(&out)[0].contains("over the limit of 2"), "{out:?}");
    assert_eq!(r.s.next_timer(), Some(r.now + Duration::from_secs(30)));
    // Held down until the timer; then started again.
    let out = r.advance(Duration::from_secs(29));
    assert!(cmds(&out, id).is_empty());
    let out = r.advance(Duration::from_secs(1));
    assert!(
        matches!(cmds(&out, id).as_slice(), [PeerCmd::Start]),
        "{out:?}"
    );
    assert_eq!(r.s.next_timer(), None);
}

fn withdraw(ps: &[Nlri]) -> Vec<Vec<u8>> {
    let mut wire = Vec::new();
    update::encode_withdraw(&mut wire, ps, &codec(true, true));
    bodies(&wire)
}

/// The neighbor view of `a`.
fn view(r: &Run, a: &str) -> interlink_bgp::speaker::NeighborView {
    r.s.neighbors(r.now)
        .into_iter()
        .find(|n| n.address == addr(a))
        .unwrap()
}

/// Only 10.0.0.0/24 is taken; everything else is refused.
fn accept_one() -> ImportPolicy {
    ImportPolicy {
        prefixes: vec![PrefixFilter {
            prefix: pfx("10.0.0.0/24"),
            ge: 24,
            le: 24,
        }],
        max_prefixes_restart: Duration::from_secs(30),
        ..ImportPolicy::default()
    }
}

#[test]
fn the_update_that_crosses_max_prefix_reaches_neither_the_rib_nor_other_peers() {
    let mut b = neighbor("10.0.0.2", 65001);
    b.import.as_mut().unwrap().max_prefixes = Some(2);
    let (mut r, _) = Run::new(config(vec![b, neighbor("10.0.0.3", 65002)]));
    let c = r.id("10.0.0.3");
    r.peer("10.0.0.2", up(65001, None));
    r.peer("10.0.0.3", up(65002, None));
    let out = r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    assert_eq!(best(&out).0.len(), 2);
    // One UPDATE with two more (one new, one already held): three, over the limit.
    let out = r.updates("10.0.0.2", announce(&prefixes(1..3), 65001, "10.0.0.2"));
    assert!(
        warnings(&out)[0].contains("3 IPv4 prefixes, over the limit of 2"),
        "{out:?}"
    );
    assert_eq!(
        best(&out),
        (vec![], vec![]),
        "not applied: nothing for the FIB"
    );
    assert_eq!(sent(&out, c).1, vec![], "nothing for the other peer");
    assert_eq!(view(&r, "10.0.0.2").accepted.ipv4, 2);
    // What else comes before the session is down is not applied either, and not warned.
    let out = r.updates("10.0.0.2", announce(&prefixes(3..4), 65001, "10.0.0.2"));
    assert_eq!(best(&out), (vec![], vec![]));
    assert!(warnings(&out).is_empty());
    assert_eq!(view(&r, "10.0.0.2").accepted.ipv4, 2);
}

#[test]
fn refused_prefixes_are_counted_not_kept() {
    let mut b = neighbor("10.0.0.2", 65001);
    b.import = Some(accept_one());
    let (mut r, _) = Run::new(config(vec![b]));
    r.peer("10.0.0.2", up(65001, None));
    let out = r.updates("10.0.0.2", announce(&prefixes(0..1000), 65001, "10.0.0.2"));
    assert_eq!(best(&out).0, prefixes(0..1));
    let v = view(&r, "10.0.0.2");
    assert_eq!(v.accepted.ipv4, 1);
    assert_eq!(v.refused.ipv4, 999);
    assert_eq!(
        v.received, None,
        "no received limit: refused prefixes are not kept"
    );
    // Sent again, they are counted again (a counter of announcements, not a set).
    r.updates("10.0.0.2", announce(&prefixes(1..11), 65001, "10.0.0.2"));
    assert_eq!(view(&r, "10.0.0.2").refused.ipv4, 1009);
    // The session going down starts the count again.
    r.peer("10.0.0.2", PeerEvent::Down(Down::ConnectionClosed));
    assert_eq!(view(&r, "10.0.0.2").refused.ipv4, 0);
}

#[test]
fn max_received_counts_refused_prefixes_before_they_are_applied() {
    let mut b = neighbor("10.0.0.2", 65001);
    let mut i = accept_one();
    i.max_received = Some(5);
    i.soft_reconfiguration = true;
    b.import = Some(i);
    let (mut r, _) = Run::new(config(vec![b]));
    let id = r.id("10.0.0.2");
    r.peer("10.0.0.2", up(65001, None));
    // Five: one taken, four refused and kept. At the limit, not over.
    let out = r.updates("10.0.0.2", announce(&prefixes(0..5), 65001, "10.0.0.2"));
    assert!(cmds(&out, id).is_empty(), "{out:?}");
    let v = view(&r, "10.0.0.2");
    assert_eq!((v.received.unwrap().ipv4, v.accepted.ipv4), (5, 1));
    // Announced again: the same prefixes, no more received.
    let out = r.updates("10.0.0.2", announce(&prefixes(1..5), 65001, "10.0.0.2"));
    assert!(cmds(&out, id).is_empty(), "{out:?}");
    // Two withdrawn, two new: still five.
    r.updates("10.0.0.2", withdraw(&prefixes(1..3)));
    assert_eq!(view(&r, "10.0.0.2").received.unwrap().ipv4, 3);
    let out = r.updates("10.0.0.2", announce(&prefixes(5..7), 65001, "10.0.0.2"));
    assert!(cmds(&out, id).is_empty(), "{out:?}");
    // One more, refused by policy, crosses the received limit: torn down (Cease subcode 1).
    let out = r.updates("10.0.0.2", announce(&prefixes(7..8), 65001, "10.0.0.2"));
    assert!(
        warnings(&out)[0]
            .contains("6 IPv4 prefixes received (before import policy), over the limit of 5"),
        "{out:?}"
    );
    match cmds(&out, id).as_slice() {
        [PeerCmd::Reset(n), PeerCmd::Stop(_)] => {
            assert_eq!((n.code, n.subcode), (code::CEASE, code::CEASE_MAX_PREFIXES));
            assert_eq!(n.data, [0, 1, 1, 0, 0, 0, 5]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        view(&r, "10.0.0.2").received.unwrap().ipv4,
        5,
        "not applied"
    );
}

#[test]
fn max_prefix_warn_only_warns_once_per_crossing() {
    let mut n = neighbor("10.0.0.2", 65001);
    let i = n.import.as_mut().unwrap();
    i.max_prefixes = Some(1);
    i.warn_only = true;
    let (mut r, _) = Run::new(config(vec![n]));
    let id = r.id("10.0.0.2");
    r.peer("10.0.0.2", up(65001, None));
    let out = r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    assert!(cmds(&out, id).is_empty());
    assert_eq!(warnings(&out).len(), 1);
    let out = r.updates("10.0.0.2", announce(&prefixes(2..3), 65001, "10.0.0.2"));
    assert!(warnings(&out).is_empty(), "still over: no second warning");
    assert_eq!(best(&out).0.len(), 1, "warn only: the route is taken");
}

#[test]
fn graceful_restart_keeps_stale_routes_until_end_of_rib() {
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    r.peer("10.0.0.2", up(65001, Some(120)));
    r.updates("10.0.0.2", announce(&prefixes(0..3), 65001, "10.0.0.2"));
    // The connection drops: the routes stay (nothing for the FIB), stale, for 120 s.
    let out = r.peer("10.0.0.2", PeerEvent::Down(Down::ConnectionClosed));
    assert_eq!(best(&out), (vec![], vec![]));
    assert_eq!(r.s.next_timer(), Some(r.now + Duration::from_secs(120)));
    // Back within the restart time: it sends two of the three again, then End-of-RIB; the
    // third, not refreshed, goes.
    r.now += Duration::from_secs(10);
    r.peer("10.0.0.2", up(65001, Some(120)));
    r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    let out = r.peer("10.0.0.2", PeerEvent::Update(end_of_rib()));
    assert_eq!(best(&out), (vec![], prefixes(2..3)));
    assert_eq!(r.s.next_timer(), None);
}

#[test]
fn graceful_restart_stale_routes_go_when_the_restart_time_runs_out() {
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    r.peer("10.0.0.2", up(65001, Some(60)));
    r.updates("10.0.0.2", announce(&prefixes(0..3), 65001, "10.0.0.2"));
    r.peer("10.0.0.2", PeerEvent::Down(Down::ConnectionClosed));
    let out = r.advance(Duration::from_secs(59));
    assert_eq!(best(&out), (vec![], vec![]));
    let out = r.advance(Duration::from_secs(1));
    let (_, mut gone) = best(&out);
    gone.sort();
    assert_eq!(gone, prefixes(0..3));
}

/// Whether `out` tells the daemon that a peer went down (and whether its routes stay).
fn peer_down(out: &[Output]) -> Option<bool> {
    out.iter().find_map(|o| match o {
        Output::Event(SpeakerEvent::PeerDown { routes_kept, .. }) => Some(*routes_kept),
        _ => None,
    })
}

#[test]
fn a_notification_flushes_the_routes_at_once() {
    // RFC 4724 §4.2: graceful restart covers TCP failures, not a NOTIFICATION.
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    r.peer("10.0.0.2", up(65001, Some(120)));
    r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    let n = interlink_bgp::wire::Notification::new(code::CEASE, code::CEASE_ADMIN_RESET, &[]);
    let out = r.peer("10.0.0.2", PeerEvent::Down(Down::Received(n)));
    // The daemon hears of it in a turn of its own, before any withdrawal (it moves the
    // routes through the peer to their backups); the withdrawal is due at once.
    assert_eq!(peer_down(&out), Some(false));
    assert_eq!(best(&out).1.len(), 0);
    assert!(r.s.next_timer().is_some_and(|t| t <= r.now));
    let out = r.advance(Duration::ZERO);
    assert_eq!(best(&out).1.len(), 2);
    assert_eq!(r.s.next_timer(), None);
}

#[test]
fn a_peer_restarting_gracefully_keeps_its_routes_and_says_so() {
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    r.peer("10.0.0.2", up(65001, Some(120)));
    r.updates("10.0.0.2", announce(&prefixes(0..2), 65001, "10.0.0.2"));
    let out = r.peer("10.0.0.2", PeerEvent::Down(Down::ConnectionClosed));
    assert_eq!(
        peer_down(&out),
        Some(true),
        "no failover for a restarting peer"
    );
}

#[test]
fn convergence_waits_for_end_of_rib_from_every_peer() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
    ]));
    r.peer("10.0.0.2", up(65001, None));
    r.peer("10.0.0.3", up(65002, None));
    let out = r.peer("10.0.0.2", PeerEvent::Update(end_of_rib()));
    assert!(!converged(&out), "one of two");
    let out = r.peer("10.0.0.3", PeerEvent::Update(end_of_rib()));
    assert!(converged(&out));
    // Once.
    r.peer("10.0.0.3", PeerEvent::Down(Down::ConnectionClosed));
    r.peer("10.0.0.3", up(65002, None));
    let out = r.peer("10.0.0.3", PeerEvent::Update(end_of_rib()));
    assert!(!converged(&out));
}

#[test]
fn rfc_8212_takes_and_gives_nothing_to_ebgp_without_policy() {
    let mut n = neighbor("10.0.0.2", 65001);
    n.import = None;
    n.export = None;
    let mut cfg = config(vec![n, neighbor("10.0.0.3", 65002)]);
    cfg.networks = vec![pfx("192.0.2.0/24")];
    let (mut r, _) = Run::new(cfg);
    let to_b = r.id("10.0.0.2");
    let out = r.peer("10.0.0.2", up(65001, None));
    // Our network does not go to it.
    assert_eq!(sent(&out, to_b).1, vec![]);
    let out = r.updates("10.0.0.2", announce(&prefixes(0..4), 65001, "10.0.0.2"));
    assert_eq!(best(&out), (vec![], vec![]));
    // Counted as refused, not accepted (and not kept).
    let b = view(&r, "10.0.0.2");
    assert_eq!((b.refused.ipv4, b.accepted.ipv4), (4, 0));
}

#[test]
fn routes_go_to_the_other_peers_packed_by_attribute_set() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
    ]));
    let c = r.id("10.0.0.3");
    r.peer("10.0.0.2", up(65001, None));
    r.peer("10.0.0.3", up(65002, None));
    // 1,000 prefixes in a few UPDATEs from B: to C in as few as fit, not one per prefix,
    // with our AS prepended and ourselves as next hop; none back to B.
    let from_b = announce(&prefixes(0..1000), 65001, "10.0.0.2");
    let n_in = from_b.len();
    let out = r.updates("10.0.0.2", from_b);
    let (n, ann, _) = sent(&out, c);
    assert_eq!(ann.len(), 1000);
    assert!(n <= n_in, "{n} UPDATEs for {n_in}");
    assert_eq!(sent(&out, r.id("10.0.0.2")).1, vec![]);
    let out = r.updates("10.0.0.2", announce(&prefixes(0..1), 65001, "10.0.0.2"));
    for o in &out {
        if let Output::Peer(id, PeerCmd::Send(wire)) = o {
            assert_eq!(*id, c);
            let update::Decoded::Update(u) = update::decode(&bodies(wire)[0], &codec(true, true))
            else {
                panic!()
            };
            let a = u.attrs.unwrap();
            assert_eq!(a.as_path, [Segment::Sequence(vec![LOCAL_AS, 65001])]);
            assert_eq!(a.next_hop, Some(addr("192.0.2.1")));
        }
    }
    // A withdrawal from B is withdrawn from C.
    let mut wire = Vec::new();
    update::encode_withdraw(&mut wire, &prefixes(5..7), &codec(true, true));
    let out = r.updates("10.0.0.2", bodies(&wire));
    assert_eq!(sorted(sent(&out, c).2), prefixes(5..7));
}

#[test]
fn a_reload_adds_removes_and_restarts_by_difference() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
        neighbor("10.0.0.4", 65003),
    ]));
    let (b, c, d) = (r.id("10.0.0.2"), r.id("10.0.0.3"), r.id("10.0.0.4"));
    for (a, asn) in [
        ("10.0.0.2", 65001),
        ("10.0.0.3", 65002),
        ("10.0.0.4", 65003),
    ] {
        r.peer(a, up(asn, None));
    }
    r.updates("10.0.0.3", announce(&prefixes(0..2), 65002, "10.0.0.3"));
    // B stays as it is; C goes; D's hold time changes (a new session); E is new; B's import
    // policy changes (a route refresh, nothing restarts).
    let mut b_cfg = neighbor("10.0.0.2", 65001);
    b_cfg.import.as_mut().unwrap().set.local_pref = Some(200);
    let mut d_cfg = neighbor("10.0.0.4", 65003);
    d_cfg.hold_time = 30;
    let new = config(vec![b_cfg, d_cfg, neighbor("10.0.0.5", 65004)]);
    let out = r.s.handle(r.now, Input::Reconfigure(Box::new(new)));
    // B: ROUTE-REFRESH (type 5) for its family, and C's routes withdrawn; no stop.
    let to_b = cmds(&out, b);
    assert!(
        matches!(to_b[0], PeerCmd::Send(m) if m[18] == 5),
        "{to_b:?}"
    );
    assert!(!to_b
        .iter()
        .any(|c| matches!(c, PeerCmd::Stop(_) | PeerCmd::Reset(_))));
    assert_eq!(sorted(sent(&out, b).2), prefixes(0..2));
    // C: stopped, forgotten, its routes withdrawn.
    assert!(matches!(cmds(&out, c).as_slice(), [PeerCmd::Stop(_)]));
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::ForgetPeer { id, .. } if *id == c)));
    assert_eq!(best(&out).1.len(), 2);
    // D: stopped and started anew (under a new id); E started.
    assert!(matches!(cmds(&out, d).as_slice(), [PeerCmd::Stop(_)]));
    let started: Vec<IpAddr> = out
        .iter()
        .filter_map(|o| match o {
            Output::StartPeer { config, .. } => Some(config.remote.ip()),
            _ => None,
        })
        .collect();
    assert_eq!(started, [addr("10.0.0.4"), addr("10.0.0.5")]);
    assert_ne!(r.id("10.0.0.4"), d);
    assert!(out.iter().any(|o| matches!(o, Output::Listen { .. })));
}

#[test]
fn an_export_policy_change_withdraws_what_may_no_longer_go_and_resends() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
    ]));
    let c = r.id("10.0.0.3");
    r.peer("10.0.0.2", up(65001, None));
    r.peer("10.0.0.3", up(65002, None));
    r.updates("10.0.0.2", announce(&prefixes(0..4), 65001, "10.0.0.2"));
    // C may now have 10.0.0.0/24 and 10.0.1.0/24 only.
    let mut c_cfg = neighbor("10.0.0.3", 65002);
    c_cfg.export.as_mut().unwrap().prefixes = vec![PrefixFilter {
        prefix: pfx("10.0.0.0/23"),
        ge: 24,
        le: 24,
    }];
    let new = config(vec![neighbor("10.0.0.2", 65001), c_cfg]);
    let out = r.s.handle(r.now, Input::Reconfigure(Box::new(new)));
    let (_, ann, mut wd) = sent(&out, c);
    // Withdrawn in the order of the Adj-RIB-Out's set: compared sorted.
    wd.sort();
    assert_eq!(wd, prefixes(2..4));
    let mut ann = ann;
    ann.sort();
    assert_eq!(ann, prefixes(0..2));
    assert!(!cmds(&out, c).iter().any(|c| matches!(c, PeerCmd::Stop(_))));
}

#[test]
fn an_operators_commands_reach_the_session() {
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    let id = r.id("10.0.0.2");
    let out =
        r.s.neighbor_op(
            addr("10.0.0.2"),
            interlink_bgp::speaker::NeighborOp::Shutdown("x".into()),
        )
        .unwrap();
    assert!(matches!(cmds(&out, id).as_slice(), [PeerCmd::Stop(t)] if t == "x"));
    assert_eq!(r.s.neighbors(r.now)[0].state, "shutdown");
    assert!(r
        .s
        .neighbor_op(addr("10.9.9.9"), interlink_bgp::speaker::NeighborOp::Reset)
        .is_err());
}

/// 10.0.0.0/28 on, `range` of them (five octets each in an UPDATE).
fn many(range: std::ops::Range<u32>) -> Vec<Nlri> {
    range
        .map(|i| Nlri::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 4))), 28).unwrap())
        .collect()
}

/// The octets of UPDATEs handed to `id`'s session task.
fn octets(out: &[Output], id: PeerId) -> usize {
    cmds(out, id)
        .iter()
        .map(|c| match c {
            PeerCmd::Send(w) => w.len(),
            _ => 0,
        })
        .sum()
}

/// A peer that writes nothing is handed a bounded amount: the rest waits as one entry per
/// prefix and is encoded from the RIB, in its latest state, as the peer reports writes.
#[test]
fn a_peer_that_does_not_read_is_handed_a_window_and_then_the_latest_state() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
    ]));
    let c = r.id("10.0.0.3");
    r.peer("10.0.0.2", up(65001, None));
    r.peer("10.0.0.3", up(65002, None));
    // 80,000 /28s from B: 400 kB of NLRI.
    let all = many(0..80_000);
    let out = r.updates("10.0.0.2", announce(&all, 65001, "10.0.0.2"));
    let handed = octets(&out, c);
    assert!(handed >= 200_000, "{handed}");
    // The window (256 KiB) and at most one batch over it.
    assert!(handed < 256 * 1024 + 64 * 1024, "{handed}");
    let (_, mut got, _) = sent(&out, c);
    assert!(got.len() < all.len(), "{}", got.len());
    // B withdraws the second half while C is stalled: what C had not been sent of it is
    // never announced to it.
    let mut wire = Vec::new();
    update::encode_withdraw(&mut wire, &many(40_000..80_000), &codec(true, true));
    let out = r.updates("10.0.0.2", bodies(&wire));
    assert_eq!(octets(&out, c), 0, "nothing more while the window is full");
    // C writes: more comes, a window at a time, until it has all it is owed.
    let mut withdrawn = Vec::new();
    for _ in 0..100 {
        let out = r.peer("10.0.0.3", PeerEvent::Written(256 * 1024));
        if octets(&out, c) == 0 {
            break;
        }
        let (_, a, w) = sent(&out, c);
        got.extend(a);
        withdrawn.extend(w);
    }
    got.sort();
    got.dedup();
    withdrawn.sort();
    // C ends with the first half: announced, and whatever of the second half it had been
    // sent withdrawn again.
    let kept: Vec<Nlri> = got
        .iter()
        .copied()
        .filter(|p| withdrawn.binary_search(p).is_err())
        .collect();
    assert_eq!(kept, many(0..40_000));
    assert!(withdrawn.iter().all(|p| *p >= many(40_000..40_001)[0]));
    let v = view(&r, "10.0.0.3");
    assert_eq!(v.advertised.ipv4, 40_000);
}

/// The initial export is a walk of the table as the peer takes it, End-of-RIB last.
#[test]
fn the_initial_table_goes_a_window_at_a_time_with_end_of_rib_last() {
    let (mut r, _) = Run::new(config(vec![
        neighbor("10.0.0.2", 65001),
        neighbor("10.0.0.3", 65002),
    ]));
    let c = r.id("10.0.0.3");
    r.peer("10.0.0.2", up(65001, None));
    r.updates("10.0.0.2", announce(&many(0..80_000), 65001, "10.0.0.2"));
    let mut outs = vec![r.peer("10.0.0.3", up(65002, None))];
    assert!(octets(&outs[0], c) < 256 * 1024 + 64 * 1024);
    for _ in 0..100 {
        let out = r.peer("10.0.0.3", PeerEvent::Written(256 * 1024));
        if octets(&out, c) == 0 {
            break;
        }
        outs.push(out);
    }
    let all: Vec<Output> = outs.into_iter().flatten().collect();
    let (_, mut ann, _) = sent(&all, c);
    ann.sort();
    assert_eq!(ann, many(0..80_000));
    // The last message handed over is End-of-RIB.
    let last = cmds(&all, c)
        .into_iter()
        .rev()
        .find_map(|c| match c {
            PeerCmd::Send(w) => Some(w.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bodies(&last).last().unwrap(), &end_of_rib());
}

/// With soft reconfiguration, an import policy change is applied to what the peer sent, kept
/// with the attributes it came with: no route refresh asked, no reset, even of a peer that
/// cannot refresh; what the new policy takes comes in, what it refuses goes.
#[test]
fn soft_reconfiguration_applies_a_new_import_policy_without_the_peer() {
    let mut b = neighbor("10.0.0.2", 65001);
    let mut i = accept_one();
    i.soft_reconfiguration = true;
    i.max_received = Some(100);
    b.import = Some(i);
    let (mut r, _) = Run::new(config(vec![b.clone()]));
    let id = r.id("10.0.0.2");
    // A peer without route refresh.
    let PeerEvent::Up(mut n, local) = up(65001, None) else {
        unreachable!()
    };
    n.route_refresh = false;
    n.peer.caps.route_refresh = false;
    r.peer("10.0.0.2", PeerEvent::Up(n, local));
    r.updates("10.0.0.2", announce(&prefixes(0..4), 65001, "10.0.0.2"));
    assert_eq!(view(&r, "10.0.0.2").accepted.ipv4, 1);
    assert_eq!(view(&r, "10.0.0.2").received.unwrap().ipv4, 4);
    // Now 10.0.1.0/24 to 10.0.3.0/24 are taken, with LOCAL_PREF 250, and 10.0.0.0/24 not.
    let mut policy = accept_one();
    policy.set.local_pref = Some(250);
    policy.soft_reconfiguration = true;
    policy.max_received = Some(100);
    policy.prefixes = (1..4)
        .map(|k| PrefixFilter {
            prefix: prefixes(k..k + 1)[0],
            ge: 24,
            le: 24,
        })
        .collect();
    b.import = Some(policy);
    let out =
        r.s.handle(r.now, Input::Reconfigure(Box::new(config(vec![b]))));
    assert!(
        !cmds(&out, id)
            .iter()
            .any(|c| matches!(c, PeerCmd::Reset(_) | PeerCmd::Send(_) | PeerCmd::Stop(_))),
        "{out:?}"
    );
    let (mut ann, wd) = best(&out);
    ann.sort();
    assert_eq!(ann, prefixes(1..4));
    assert_eq!(wd, prefixes(0..1));
    let routes = r.s.routes(Some(prefixes(2..3)[0]));
    assert_eq!(routes[0].attrs.local_pref, Some(250));
    let v = view(&r, "10.0.0.2");
    assert_eq!((v.accepted.ipv4, v.received.unwrap().ipv4), (3, 4));
}

/// A new import policy applied softly meets max_prefixes as an UPDATE would: one that lets
/// more of the kept routes through than the limit ends the session (Cease, max prefixes) and
/// puts none of them in; with the action "warn", a warning and the routes.
#[test]
fn a_soft_reimport_over_max_prefixes_ends_the_session_and_applies_nothing() {
    for warn_only in [false, true] {
        let mut b = neighbor("10.0.0.2", 65001);
        let mut i = accept_one();
        i.soft_reconfiguration = true;
        i.max_received = Some(100);
        i.max_prefixes = Some(2);
        i.warn_only = warn_only;
        b.import = Some(i.clone());
        let (mut r, _) = Run::new(config(vec![b.clone()]));
        let id = r.id("10.0.0.2");
        r.peer("10.0.0.2", up(65001, None));
        r.updates("10.0.0.2", announce(&prefixes(0..4), 65001, "10.0.0.2"));
        assert_eq!(view(&r, "10.0.0.2").accepted.ipv4, 1);
        // Now all four would be taken: over the limit of two.
        let mut wide = i;
        wide.prefixes = (0..4)
            .map(|k| PrefixFilter {
                prefix: prefixes(k..k + 1)[0],
                ge: 24,
                le: 24,
            })
            .collect();
        b.import = Some(wide);
        let out =
            r.s.handle(r.now, Input::Reconfigure(Box::new(config(vec![b]))));
        assert!(
            warnings(&out)
                .iter()
                .any(|w| w.contains("4 IPv4 prefixes, over the limit of 2")),
            "{out:?}"
        );
        let (ann, _) = best(&out);
        if warn_only {
            assert_eq!(ann.len(), 3, "{out:?}");
            assert!(cmds(&out, id).is_empty(), "{out:?}");
        } else {
            assert!(ann.is_empty(), "applied: {ann:?}");
            match cmds(&out, id).as_slice() {
                [PeerCmd::Reset(n), PeerCmd::Stop(_)] => {
                    assert_eq!((n.code, n.subcode), (code::CEASE, code::CEASE_MAX_PREFIXES));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(r.s.next_timer(), Some(r.now + Duration::from_secs(30)));
        }
    }
}

/// A session with a large table goes down: its routes leave a chunk per turn (the speaker
/// asks to be called again at once), so no turn carries a whole table's changes; a new
/// session of the same peer first ends what is left.
#[test]
fn a_large_table_goes_a_chunk_per_turn() {
    use interlink_bgp::speaker::FLUSH_CHUNK;
    let (mut r, _) = Run::new(config(vec![neighbor("10.0.0.2", 65001)]));
    r.peer("10.0.0.2", up(65001, None));
    let all = many(0..40_000);
    r.updates("10.0.0.2", announce(&all, 65001, "10.0.0.2"));
    assert_eq!(r.s.rib().len(), 40_000);
    let out = r.peer("10.0.0.2", PeerEvent::Down(Down::ConnectionClosed));
    // The word first, alone; the withdrawal due at once.
    assert_eq!(peer_down(&out), Some(false));
    let (_, mut gone) = best(&out);
    assert!(gone.is_empty());
    assert!(r.s.next_timer().is_some_and(|t| t <= r.now));
    let out = r.advance(Duration::ZERO);
    gone.extend(best(&out).1);
    assert_eq!(gone.len(), FLUSH_CHUNK);
    assert!(r.s.next_timer().is_some_and(|t| t <= r.now));
    let out = r.advance(Duration::ZERO);
    gone.extend(best(&out).1);
    assert_eq!(gone.len(), 2 * FLUSH_CHUNK);
    // The peer is back before the rest went: the rest goes first, then its new routes.
    let out = r.peer("10.0.0.2", up(65001, None));
    gone.extend(best(&out).1);
    gone.sort();
    assert_eq!(gone, all);
    assert_eq!(r.s.rib().len(), 0);
    assert_eq!(r.s.next_timer(), None);
    r.updates("10.0.0.2", announce(&all[..10], 65001, "10.0.0.2"));
    assert_eq!(r.s.rib().len(), 10);
}

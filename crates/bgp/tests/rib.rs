//! The decision process in table form, and the RIB's bookkeeping: withdrawals, flushes,
//! stale routes of a restarting peer, multipath, interning.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use interlink_bgp::rib::{better, PeerInfo, Rib, LOCAL};
use interlink_bgp::update::{Attrs, Nlri, Origin, Segment, Update};

fn peer(n: u8, asn: u32, ebgp: bool) -> PeerInfo {
    PeerInfo {
        address: IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)),
        router_id: Ipv4Addr::new(10, 0, 0, n),
        asn,
        ebgp,
    }
}

fn peers() -> HashMap<u32, PeerInfo> {
    HashMap::from([
        (1, peer(1, 64501, true)),
        (2, peer(2, 64502, true)),
        (3, peer(3, 65000, false)),
        (4, peer(4, 64501, true)),
    ])
}

#[derive(Clone, Copy)]
struct R {
    peer: u32,
    lp: Option<u32>,
    path: &'static [u32],
    origin: Origin,
    med: Option<u32>,
}

const BASE: R = R {
    peer: 1,
    lp: None,
    path: &[64501],
    origin: Origin::Igp,
    med: None,
};

fn attrs(r: R) -> (u32, Arc<Attrs>) {
    (
        r.peer,
        Arc::new(Attrs {
            origin: Some(r.origin),
            as_path: vec![Segment::Sequence(r.path.to_vec())],
            next_hop: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, r.peer as u8))),
            local_pref: r.lp,
            med: r.med,
            ..Attrs::default()
        }),
    )
}

#[test]
fn decision_process_in_table_form() {
    use std::cmp::Ordering::*;
    let p = peers();
    // (why, a, b, a compared with b)
    let table: &[(&str, R, R, std::cmp::Ordering)] = &[
        (
            "higher local-pref wins",
            R {
                lp: Some(200),
                path: &[1, 2, 3],
                ..BASE
            },
            R {
                peer: 2,
                lp: Some(100),
                ..BASE
            },
            Greater,
        ),
        (
            "no local-pref counts as 100",
            R { lp: None, ..BASE },
            R {
                peer: 2,
                lp: Some(101),
                ..BASE
            },
            Less,
        ),
        (
            "shorter AS path wins",
            R {
                path: &[64501],
                ..BASE
            },
            R {
                peer: 2,
                path: &[64502, 1],
                ..BASE
            },
            Greater,
        ),
        (
            "lower origin wins",
            R {
                origin: Origin::Igp,
                ..BASE
            },
            R {
                peer: 2,
                origin: Origin::Incomplete,
                path: &[64502],
                ..BASE
            },
            Greater,
        ),
        (
            "lower MED wins from the same neighbour AS",
            R {
                med: Some(10),
                ..BASE
            },
            R {
                peer: 4,
                med: Some(5),
                ..BASE
            },
            Less,
        ),
        (
            "a missing MED is 0",
            R { med: None, ..BASE },
            R {
                peer: 4,
                med: Some(5),
                ..BASE
            },
            Greater,
        ),
        (
            "MED is not compared across neighbour ASes",
            R {
                med: Some(50),
                ..BASE
            },
            R {
                peer: 2,
                med: Some(5),
                path: &[64502],
                ..BASE
            },
            Greater,
        ),
        (
            "eBGP wins over iBGP",
            R {
                peer: 2,
                path: &[64502],
                ..BASE
            },
            R {
                peer: 3,
                path: &[64502],
                ..BASE
            },
            Greater,
        ),
        (
            "then the lower router id",
            R { peer: 1, ..BASE },
            R { peer: 4, ..BASE },
            Greater,
        ),
        (
            "our own route wins",
            R {
                peer: LOCAL,
                path: &[],
                ..BASE
            },
            R {
                lp: Some(500),
                ..BASE
            },
            Greater,
        ),
    ];
    for (why, a, b, want) in table {
        assert_eq!(better(&attrs(*a), &attrs(*b), &p), *want, "{why}");
        assert_eq!(
            better(&attrs(*b), &attrs(*a), &p),
            want.reverse(),
            "{why}, reversed"
        );
    }
}

fn nlri(s: &str) -> Nlri {
    let (a, l) = s.split_once('/').unwrap();
    Nlri::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

fn announce(rib: &mut Rib, r: R, prefixes: &[&str]) -> usize {
    let (peer, a) = attrs(r);
    let u = Update {
        announced: prefixes.iter().map(|p| nlri(p)).collect(),
        attrs: Some(a),
        ..Update::default()
    };
    // What a peer would be told of: a change of backup alone is the FIB's.
    rib.apply(peer, &u)
        .iter()
        .filter(|c| !c.backup_only)
        .count()
}

fn rib(multipath: bool) -> Rib {
    let mut rib = Rib::new(multipath);
    for (id, info) in peers() {
        rib.set_peer(id, info);
    }
    rib
}

#[test]
fn best_routes_follow_announcements_and_withdrawals() {
    let mut rib = rib(false);
    let p = nlri("10.1.0.0/16");
    assert_eq!(announce(&mut rib, BASE, &["10.1.0.0/16"]), 1);
    // A worse route changes nothing; a better one takes over.
    assert_eq!(
        announce(
            &mut rib,
            R {
                peer: 2,
                path: &[64502, 7],
                ..BASE
            },
            &["10.1.0.0/16"]
        ),
        0
    );
    assert_eq!(
        announce(
            &mut rib,
            R {
                peer: 3,
                lp: Some(300),
                ..BASE
            },
            &["10.1.0.0/16"]
        ),
        1
    );
    assert_eq!(rib.best(&p).unwrap().peer, 3);
    // Withdrawn: the next best comes back.
    let w = Update {
        withdrawn: vec![p],
        ..Update::default()
    };
    let ch = rib.apply(3, &w);
    assert_eq!(ch[0].best.as_ref().unwrap().peer, 1);
    // The peer goes down: its routes go, the other one's stays.
    let ch = rib.flush(1);
    assert_eq!(ch[0].best.as_ref().unwrap().peer, 2);
    let ch = rib.flush(2);
    assert_eq!(ch[0].best, None);
    assert!(rib.is_empty());
    assert_eq!(rib.count(1), 0);
}

#[test]
fn a_restarting_peer_keeps_its_routes_until_end_of_rib() {
    let mut rib = rib(false);
    announce(&mut rib, BASE, &["10.1.0.0/16", "10.2.0.0/16"]);
    rib.mark_stale(1);
    // Announced again after the restart: no longer stale.
    announce(&mut rib, BASE, &["10.1.0.0/16"]);
    let ch = rib.sweep_stale(1);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].prefix, nlri("10.2.0.0/16"));
    assert!(rib.best(&nlri("10.1.0.0/16")).is_some());
}

#[test]
fn multipath_gathers_the_next_hops_of_equal_routes() {
    let mut rib = rib(true);
    announce(&mut rib, BASE, &["10.1.0.0/16"]);
    announce(
        &mut rib,
        R {
            peer: 2,
            path: &[64502],
            ..BASE
        },
        &["10.1.0.0/16"],
    );
    announce(
        &mut rib,
        R {
            peer: 4,
            path: &[64501, 1],
            ..BASE
        },
        &["10.1.0.0/16"],
    );
    let b = rib.best(&nlri("10.1.0.0/16")).unwrap();
    assert_eq!(
        b.next_hops,
        [
            "192.0.2.1".parse::<IpAddr>().unwrap(),
            "192.0.2.2".parse().unwrap()
        ]
    );
}

#[test]
fn many_prefixes_share_one_attribute_set() {
    let mut rib = rib(false);
    let (peer, a) = attrs(BASE);
    let u = Update {
        announced: (0..100_000u32)
            .map(|i| Nlri::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
            .collect(),
        attrs: Some(a.clone()),
        ..Update::default()
    };
    assert_eq!(rib.apply(peer, &u).len(), 100_000);
    // An equal attribute set from another UPDATE is the same allocation.
    let (_, again) = attrs(BASE);
    let u2 = Update {
        announced: vec![nlri("11.0.0.0/8")],
        attrs: Some(again),
        ..Update::default()
    };
    rib.apply(peer, &u2);
    let b1 = rib.best(&nlri("10.0.0.0/24")).unwrap();
    let b2 = rib.best(&nlri("11.0.0.0/8")).unwrap();
    assert!(Arc::ptr_eq(&b1.attrs, &b2.attrs));
    assert_eq!(rib.count(1), 100_001);
}

#[test]
fn attribute_sets_no_route_uses_are_not_kept() {
    let mut rib = rib(false);
    // A route whose MED changes ten thousand times: one set in use at any time.
    for med in 0..10_000u32 {
        announce(
            &mut rib,
            R {
                med: Some(med),
                ..BASE
            },
            &["10.1.0.0/16"],
        );
    }
    // Each set goes with its last route.
    assert_eq!(rib.attribute_sets(), 1);
}

#[test]
fn routes_through_unreachable_next_hops_are_not_candidates() {
    let mut rib = rib(true);
    let p = nlri("10.1.0.0/16");
    // Peer 3 (next hop 192.0.2.3) is best by LOCAL_PREF; peer 2 (192.0.2.2) is the other.
    announce(
        &mut rib,
        R {
            peer: 3,
            lp: Some(300),
            ..BASE
        },
        &["10.1.0.0/16"],
    );
    announce(
        &mut rib,
        R {
            peer: 2,
            path: &[64502],
            ..BASE
        },
        &["10.1.0.0/16", "10.2.0.0/16"],
    );
    assert_eq!(rib.best(&p).unwrap().peer, 3);
    // The network of 192.0.2.3 goes down: peer 2 takes over, nothing else changes.
    let ch = rib.set_unreachable(vec![nlri("192.0.2.3/32")]);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].best.as_ref().unwrap().peer, 2);
    assert_eq!(
        ch[0].best.as_ref().unwrap().next_hops,
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))]
    );
    // The same set again: nothing to do.
    assert!(rib.set_unreachable(vec![nlri("192.0.2.3/32")]).is_empty());
    // All of 192.0.2.0/24 down: no route left for either prefix.
    let ch = rib.set_unreachable(vec![nlri("192.0.2.0/24")]);
    assert_eq!(ch.len(), 2);
    assert!(ch.iter().all(|c| c.best.is_none()));
    // Back up: the best returns.
    let ch = rib.set_unreachable(vec![]);
    assert_eq!(ch.len(), 2);
    assert_eq!(rib.best(&p).unwrap().peer, 3);
    // IPv6 networks never cover IPv4 next hops.
    assert!(rib.set_unreachable(vec![nlri("::/0")]).is_empty());
}

#[test]
fn multipath_can_be_turned_on_and_off() {
    let mut rib = rib(false);
    let p = nlri("10.1.0.0/16");
    announce(&mut rib, BASE, &["10.1.0.0/16", "10.2.0.0/16"]);
    announce(
        &mut rib,
        R {
            peer: 2,
            path: &[64502],
            ..BASE
        },
        &["10.1.0.0/16"],
    );
    assert_eq!(rib.best(&p).unwrap().next_hops.len(), 1);
    // On: the prefix with two equal routes gets both next hops; the other does not change.
    let ch = rib.set_multipath(true);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].prefix, p);
    assert_eq!(ch[0].best.as_ref().unwrap().next_hops.len(), 2);
    assert_eq!(rib.best(&p).unwrap().next_hops.len(), 2);
    assert!(rib.set_multipath(true).is_empty());
    // Off again.
    let ch = rib.set_multipath(false);
    assert_eq!(ch.len(), 1);
    assert_eq!(rib.best(&p).unwrap().next_hops.len(), 1);
}

#[test]
fn an_unreachable_ecmp_member_leaves_the_set() {
    // Two links to the other site, ECMP over both: the link that is not the best route's
    // dies. The best route stays, its set of next hops shrinks; with the set computed after
    // the change for both sides of the comparison, no change was seen and traffic stayed
    // on the dead link.
    let mut rib = rib(true);
    let p = nlri("10.1.0.0/16");
    announce(&mut rib, BASE, &["10.1.0.0/16"]);
    announce(
        &mut rib,
        R {
            peer: 2,
            path: &[64502],
            ..BASE
        },
        &["10.1.0.0/16"],
    );
    assert_eq!(rib.best(&p).unwrap().next_hops.len(), 2);
    let first = rib.best(&p).unwrap().peer;
    let other = if first == 1 { 2 } else { 1 };
    let ch = rib.set_unreachable(vec![nlri(&format!("192.0.2.{other}/32"))]);
    assert_eq!(ch.len(), 1);
    let best = ch[0].best.as_ref().unwrap();
    assert_eq!(
        best.next_hops,
        [IpAddr::V4(Ipv4Addr::new(192, 0, 2, first as u8))]
    );
    // Back: both again.
    let ch = rib.set_unreachable(vec![]);
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].best.as_ref().unwrap().next_hops.len(), 2);
}

/// The backup of a best route (BGP PIC edge) is the best of the other usable routes through
/// another next hop: it follows announcements, withdrawals and reachability, and a change of
/// it alone is marked as such (the peers are not sent it).
#[test]
fn backups_are_the_best_other_next_hop() {
    let mut rib = rib(false);
    let p = nlri("10.1.0.0/16");
    let gw = |n: u8| Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, n)));
    announce(&mut rib, BASE, &["10.1.0.0/16"]);
    assert_eq!(rib.best(&p).unwrap().backup, None, "one route, no backup");
    let worse = |peer, path: &'static [u32]| R { peer, path, ..BASE };
    let (peer, a) = attrs(worse(2, &[64502, 7, 8]));
    let u = Update {
        announced: vec![p],
        attrs: Some(a),
        ..Update::default()
    };
    let changes = rib.apply(peer, &u);
    assert_eq!(changes.len(), 1);
    assert!(changes[0].backup_only);
    assert_eq!(changes[0].best.as_ref().unwrap().backup, gw(2));
    // A better backup than that one takes its place; the best stays.
    announce(&mut rib, worse(3, &[64503, 7]), &["10.1.0.0/16"]);
    let best = rib.best(&p).unwrap();
    assert_eq!(
        (best.next_hops.clone(), best.backup),
        (vec![gw(1).unwrap()], gw(3))
    );
    // The best goes: the backup's route is the best, with the next one as its backup.
    let mut out = Vec::new();
    rib.remove(1, &p, &mut out);
    assert!(!out[0].backup_only);
    let best = out[0].best.clone().unwrap();
    assert_eq!((best.next_hops, best.backup), (vec![gw(3).unwrap()], gw(2)));
    // A route through the same next hop as the best is no backup.
    let (peer, mut a) = attrs(worse(4, &[64504, 7, 8, 9]));
    Arc::make_mut(&mut a).next_hop = gw(3);
    rib.apply(
        peer,
        &Update {
            announced: vec![p],
            attrs: Some(a),
            ..Update::default()
        },
    );
    assert_eq!(rib.best(&p).unwrap().backup, gw(2));
}

//! The fuzz entry point, shared by `crates/bgp/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as what a peer sends on the TCP connection, framed and decoded message by
//! message (UPDATE bodies through the RFC 7606 decoder) and fed to a session state machine
//! that has just sent its OPEN. Nothing may
//! panic, and a decode error must be one the session can send.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fsm::{Config, Event, Session};
use crate::wire::{frame, Capabilities, Family, Message, MAX_EXTENDED_LEN, MAX_LEN};

pub fn messages(data: &[u8]) {
    let now = Instant::now();
    let mut s = Session::new(Config {
        local_as: 65001,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        peer_as: 64512,
        hold_time: 90,
        connect_retry: Duration::from_secs(30),
        passive: false,
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            four_octet_as: Some(65001),
            extended_message: true,
            ..Capabilities::default()
        },
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(60),
    });
    s.handle(now, Event::Start);
    s.handle(now, Event::Connected);
    // The first octet picks the size limit, as negotiation would.
    let (max, mut rest) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (MAX_EXTENDED_LEN, rest),
        Some((_, rest)) => (MAX_LEN, rest),
        None => return,
    };
    loop {
        match frame(rest, max) {
            Ok(Some(f)) => {
                let ev = match Message::decode(f.kind, f.body) {
                    Ok(m) => {
                        // What decodes encodes to a message that decodes, and encoding is
                        // then stable (unknown capabilities are not sent on, by design).
                        let mut once = Vec::new();
                        m.encode(&mut once);
                        let g = frame(&once, MAX_EXTENDED_LEN).ok().flatten();
                        let again = g.map(|g| Message::decode(g.kind, g.body));
                        let Some(Ok(again)) = again else {
                            panic!("{m:?} encodes to something that does not decode");
                        };
                        let mut twice = Vec::new();
                        again.encode(&mut twice);
                        assert_eq!(once, twice);
                        // UPDATE bodies through the RFC 7606 decoder, both AS widths.
                        if let Message::Update(body) = &m {
                            let _ = crate::update::decode(body, &codec(true, true));
                            let _ = crate::update::decode(body, &codec(false, false));
                        }
                        Event::Received(m)
                    }
                    Err(n) => Event::Malformed(n),
                };
                s.handle(now, ev);
                rest = &rest[f.len..];
            }
            Ok(None) => break,
            Err(n) => {
                s.handle(now, Event::Malformed(n));
                break;
            }
        }
    }
    s.on_timer(now + Duration::from_secs(300));
}

/// A codec for the fuzz targets and tests: standard messages.
pub fn codec(four_octet_as: bool, ebgp: bool) -> crate::update::Codec {
    crate::update::Codec {
        four_octet_as,
        ebgp,
        max_len: crate::wire::MAX_LEN,
    }
}

/// The speaker's fuzz entry point: three neighbors (an eBGP one with a max-prefix limit of 40
/// per family, an eBGP one with soft reconfiguration and a received limit of 60 that takes
/// only part of 10.0.0.0/8,
/// and an iBGP one) driven by `data` as a sequence of operations, each an opcode octet
/// (high nibble: which neighbor; low nibble: what) and its operands: sessions up and down,
/// raw UPDATE bodies, UPDATEs announcing and withdrawing generated prefixes, writes
/// reported, route refreshes, time passing, export policy reloads and next hops lost.
///
/// Nothing may panic, and after every operation: the limits hold (a teardown peer never has
/// more than its limit accepted, nor the other more than its limit received: both are
/// checked before an UPDATE is applied), and what waits unwritten for a peer stays within
/// the speaker's window and one batch over it, however little the peer writes.
pub fn speaker(data: &[u8]) {
    use std::net::{IpAddr, SocketAddr};

    use crate::fsm::{Down, Negotiated};
    use crate::peer::{PeerCmd, PeerEvent};
    use crate::policy::{ExportPolicy, ImportPolicy, PrefixFilter};
    use crate::speaker::{Input, Neighbor, Output, Speaker, SpeakerConfig, BATCH, WINDOW};
    use crate::update::{encode_announce, encode_withdraw, Attrs, Nlri, Origin, Segment};
    use crate::wire::Open;

    const ASNS: [u32; 3] = [65002, 65003, 65001];
    let addrs: [IpAddr; 3] = [
        Ipv4Addr::new(10, 255, 0, 2).into(),
        Ipv4Addr::new(10, 255, 0, 3).into(),
        Ipv4Addr::new(10, 255, 0, 4).into(),
    ];
    let filter = |p: &str, ge, le| {
        let (a, l) = p.split_once('/').expect("a prefix");
        PrefixFilter {
            prefix: Nlri::new(a.parse().expect("an address"), l.parse().expect("a length"))
                .expect("a prefix"),
            ge,
            le,
        }
    };
    let all = || vec![filter("0.0.0.0/0", 0, 32), filter("::/0", 0, 128)];
    let export = |networks| ExportPolicy {
        networks,
        prefixes: all(),
        ..ExportPolicy::default()
    };
    let neighbor =
        |k: usize, import: Option<ImportPolicy>, export: Option<ExportPolicy>| Neighbor {
            address: addrs[k],
            port: 179,
            remote_as: ASNS[k],
            hold_time: 90,
            passive: false,
            md5: None,
            import,
            export,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            local_address: None,
            ttl_security: false,
        };
    let neighbors = |networks: bool| {
        vec![
            neighbor(
                0,
                Some(ImportPolicy {
                    prefixes: all(),
                    max_prefixes: Some(40),
                    max_prefixes_restart: Duration::from_secs(30),
                    ..ImportPolicy::default()
                }),
                Some(export(networks)),
            ),
            neighbor(
                1,
                Some(ImportPolicy {
                    prefixes: vec![filter("10.0.0.0/9", 9, 32)],
                    max_received: Some(60),
                    soft_reconfiguration: true,
                    max_prefixes_restart: Duration::from_secs(30),
                    ..ImportPolicy::default()
                }),
                Some(export(!networks)),
            ),
            neighbor(2, None, None),
        ]
    };
    let net = |s: &str| {
        let (a, l) = s.split_once('/').expect("a prefix");
        Nlri::new(a.parse().expect("an address"), l.parse().expect("a length")).expect("a prefix")
    };
    let cfg = |networks: bool| SpeakerConfig {
        local_as: 65001,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        neighbors: neighbors(networks),
        networks: vec![net("192.0.2.0/24"), net("2001:db8::/32")],
        multipath: true,
        listen_port: 179,
        restart_time: 120,
        restarting: false,
    };
    let (mut s, _) = Speaker::new(cfg(true));
    let ids: Vec<_> = addrs
        .iter()
        .map(|a| s.peer_id(*a).expect("a neighbor"))
        .collect();
    let up = |k: usize, gr: bool| {
        let families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        let graceful_restart = gr.then(|| crate::wire::GracefulRestart {
            restarting: false,
            restart_time: 60,
            families: families.iter().map(|f| (*f, true)).collect(),
        });
        let n = Negotiated {
            peer: Open {
                asn: ASNS[k],
                hold_time: 90,
                router_id: Ipv4Addr::new(198, 51, 100, k as u8 + 1),
                caps: Capabilities {
                    multiprotocol: families.clone(),
                    route_refresh: true,
                    four_octet_as: Some(ASNS[k]),
                    graceful_restart: graceful_restart.clone(),
                    ..Capabilities::default()
                },
            },
            hold_time: 90,
            keepalive: Duration::from_secs(30),
            families,
            four_octet_as: true,
            route_refresh: true,
            extended_message: false,
            peer_graceful_restart: graceful_restart,
        };
        PeerEvent::Up(
            Box::new(n),
            SocketAddr::new(Ipv4Addr::new(10, 255, 0, 1).into(), 179),
        )
    };
    let attrs = |k: usize, med: u8| Attrs {
        origin: Some(Origin::Igp),
        as_path: if k == 2 {
            vec![]
        } else {
            vec![Segment::Sequence(vec![ASNS[k]])]
        },
        next_hop: Some(addrs[k]),
        med: Some(med.into()),
        ..Attrs::default()
    };
    // Generated prefixes: /24s in 10.0.0.0/8 or /48s in 2001:db8::/32, from a base and a count.
    let generated = |base: u8, count: u8| -> Vec<Nlri> {
        (0..u16::from(count) + 1)
            .map(|i| {
                let i = u32::from(base) * 16 + u32::from(i);
                if base & 0x80 == 0 {
                    Nlri::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)).into(), 24)
                } else {
                    let a = std::net::Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0);
                    Nlri::new(a.into(), 48)
                }
                .expect("a prefix")
            })
            .collect()
    };

    let mut now = Instant::now();
    // Octets handed to each peer's task and not reported written.
    let mut unwritten = [0usize; 3];
    let mut networks = true;
    let mut rest = data;
    let take = |n: usize, rest: &mut &[u8]| -> Vec<u8> {
        let n = n.min(rest.len());
        let (a, b) = rest.split_at(n);
        *rest = b;
        a.to_vec()
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let k = usize::from(op >> 4) % 3;
        let id = ids[k];
        let peer = |e| Input::Peer(id, e);
        let operand = take(1, &mut rest).first().copied().unwrap_or(0);
        let out: Vec<Output> = match op & 0x0f {
            0 => {
                unwritten[k] = 0;
                s.handle(now, peer(up(k, operand & 1 == 1)))
            }
            1 => {
                let body = take(usize::from(operand), &mut rest);
                s.handle(now, peer(PeerEvent::Update(body)))
            }
            2 | 3 => {
                let count = take(1, &mut rest).first().copied().unwrap_or(0) % 64;
                let ps = generated(operand, count);
                let mut wire = Vec::new();
                if op & 0x0f == 2 {
                    encode_announce(&mut wire, &ps, &attrs(k, count), &codec(true, k != 2));
                } else {
                    encode_withdraw(&mut wire, &ps, &codec(true, k != 2));
                }
                bodies(&wire)
                    .into_iter()
                    .flat_map(|b| s.handle(now, peer(PeerEvent::Update(b))))
                    .collect()
            }
            4 => {
                unwritten[k] = 0;
                s.handle(now, peer(PeerEvent::Down(Down::ConnectionClosed)))
            }
            5 => {
                let n = usize::from(operand) * 4096;
                unwritten[k] = unwritten[k].saturating_sub(n);
                s.handle(now, peer(PeerEvent::Written(n)))
            }
            6 => s.handle(now, peer(PeerEvent::RouteRefresh(Family::IPV4_UNICAST))),
            7 => {
                now += Duration::from_secs(operand.into());
                s.on_timer(now)
            }
            8 => {
                networks = !networks;
                s.handle(now, Input::Reconfigure(Box::new(cfg(networks))))
            }
            9 => s.handle(now, Input::Unreachable(generated(operand, 3))),
            _ => Vec::new(),
        };
        for o in &out {
            if let Output::Peer(to, PeerCmd::Send(w)) = o {
                if let Some(j) = ids.iter().position(|i| i == to) {
                    unwritten[j] += w.len();
                }
            }
        }
        // One batch over the window at most: a batch's prefixes may each go with an
        // attribute set of their own, an UPDATE each.
        for u in unwritten {
            assert!(u <= WINDOW + BATCH * MAX_LEN, "{u} octets unwritten");
        }
        for n in s.neighbors(now) {
            if n.address == addrs[0] {
                assert!(n.accepted.ipv4 <= 40 && n.accepted.ipv6 <= 40, "{n:?}");
            }
            if n.address == addrs[1] {
                let r = n.received.expect("kept for max_received");
                assert!(r.ipv4 <= 60 && r.ipv6 <= 60, "{n:?}");
            }
        }
    }
}

/// The bodies of the messages in `wire`, encoded messages back to back (what the session
/// hands the speaker: the headers stripped). For the fuzz targets and tests.
pub fn bodies(wire: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 19 <= wire.len() {
        let len = usize::from(u16::from_be_bytes([wire[at + 16], wire[at + 17]])).max(19);
        out.push(wire[at + 19..(at + len).min(wire.len())].to_vec());
        at += len;
    }
    out
}

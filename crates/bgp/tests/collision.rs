//! Two interlink peers that connect to each other at the same moment (as two gateways do when
//! the link under them comes up): a connection collision (RFC 4271 §6.8), which must end in
//! one Established session, not in a stand-off, and without ending a session on the way (a
//! side Established on one connection closes the other without an OPEN; the other side must
//! not settle the collision on one OPEN and close the connection that was kept). Ten rounds,
//! since the interleaving differs from one to the next. Needs root (a namespace of its own).

use interlink_testkit as netns;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use interlink_bgp::fsm;
use interlink_bgp::peer::{self, PeerConfig, PeerEvent};
use interlink_bgp::wire::{Capabilities, Family};
use netns::{in_ns, Lab};
use tokio::sync::{mpsc, watch};

fn config(me: u8, peer_n: u8, port: u16) -> PeerConfig {
    PeerConfig {
        fsm: fsm::Config {
            local_as: 65000 + u32::from(me),
            router_id: Ipv4Addr::new(10, 0, 0, me),
            peer_as: 65000 + u32::from(peer_n),
            hold_time: 90,
            connect_retry: Duration::from_secs(30),
            passive: false,
            caps: Capabilities {
                multiprotocol: vec![Family::IPV4_UNICAST],
                four_octet_as: Some(65000 + u32::from(me)),
                ..Capabilities::default()
            },
            idle_hold: Duration::from_secs(1),
            max_idle_hold: Duration::from_secs(5),
        },
        remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer_n)), port),
        local: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, me))),
        ttl: interlink_bgp::peer::Ttl::One,
        md5: None,
        counts: Default::default(),
    }
}

#[test]
fn simultaneous_connections_end_in_one_session() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("bgp-collision");
    lab.add_ns("n");
    lab.exec(
        "n",
        &[
            "ip", "link", "add", "va", "type", "veth", "peer", "name", "vb",
        ],
    );
    lab.exec("n", &["ip", "link", "set", "va", "up"]);
    lab.exec("n", &["ip", "link", "set", "vb", "up"]);
    lab.exec("n", &["ip", "addr", "add", "10.0.0.1/24", "dev", "va"]);
    lab.exec("n", &["ip", "addr", "add", "10.0.0.2/24", "dev", "vb"]);
    let rounds = in_ns(&lab.ns("n"), || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut rounds = Vec::new();
            for port in 1790..1800 {
                rounds.push(round(port).await);
            }
            rounds
        })
    })
    .join()
    .unwrap();
    for (i, (ups, downs)) in rounds.iter().enumerate() {
        assert_eq!(
            *ups,
            [1, 1],
            "round {i}: the collision did not resolve into one session each: {rounds:?}"
        );
        assert_eq!(
            *downs,
            [0, 0],
            "round {i}: a session ended on the way: {rounds:?}"
        );
    }
}

/// Both peers connect at once on `port`; how many times each came up, and went down, before
/// both were up (and 300 ms after, for a late Cease).
async fn round(port: u16) -> ([u32; 2], [u32; 2]) {
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut rxs = Vec::new();
    let mut tasks = Vec::new();
    let mut cmd_txs = Vec::new();
    for (me, other) in [(1u8, 2u8), (2, 1)] {
        let cfg = config(me, other, port);
        let l = peer::listen(SocketAddr::new(cfg.local.unwrap(), port), &[]).unwrap();
        let (in_tx, in_rx) = mpsc::channel(4);
        tasks.push(tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let _ = in_tx.send(s).await;
            }
        }));
        let (ev_tx, ev_rx) = mpsc::channel(64);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        cmd_txs.push(cmd_tx);
        rxs.push(ev_rx);
        tasks.push(tokio::spawn(peer::run(
            cfg,
            in_rx,
            ev_tx,
            stop_rx.clone(),
            cmd_rx,
        )));
    }
    let mut ups = [0u32; 2];
    let mut downs = [0u32; 2];
    let count =
        |rxs: &mut [mpsc::Receiver<PeerEvent>], ups: &mut [u32; 2], downs: &mut [u32; 2]| {
            for (i, rx) in rxs.iter_mut().enumerate() {
                while let Ok(e) = rx.try_recv() {
                    match e {
                        PeerEvent::Up(..) => ups[i] += 1,
                        PeerEvent::Down(_) | PeerEvent::Failed(_) => downs[i] += 1,
                        _ => {}
                    }
                }
            }
        };
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            count(&mut rxs, &mut ups, &mut downs);
            if ups[0] >= 1 && ups[1] >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    count(&mut rxs, &mut ups, &mut downs);
    let _ = stop_tx.send(Some("test over".into()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    for t in tasks {
        t.abort();
    }
    drop(cmd_txs);
    (ups, downs)
}

//! Interop with BIRD 2, in network namespaces: interlink's BGP session machinery against a
//! real speaker. Sessions come up over IPv4 and over IPv6, actively and passively, with the
//! capabilities negotiated as both sides advertised them; TCP-MD5 works with the right key
//! and keeps the session down with a wrong one; a shutdown reaches BIRD with its
//! communication. Needs root and bird2.

use interlink_testkit as netns;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use interlink_bgp::fsm;
use interlink_bgp::peer::{self, PeerConfig, PeerEvent};
use interlink_bgp::wire::{Capabilities, Family};
use netns::{in_ns, Lab};
use tokio::sync::{mpsc, watch};

fn lab(test: &str, password: Option<&str>) -> Option<Lab> {
    if !netns::require_root() {
        return None;
    }
    let mut lab = Lab::new(test);
    lab.add_ns("il");
    lab.add_ns("bird");
    lab.veth("il", "eth0", "bird", "eth0");
    lab.addr("il", "eth0", "10.0.0.1/24");
    lab.addr("il", "eth0", "fd00::1/64");
    lab.addr("bird", "eth0", "10.0.0.2/24");
    lab.addr("bird", "eth0", "fd00::2/64");
    let password = password
        .map(|p| format!("password \"{p}\";"))
        .unwrap_or_default();
    lab.spawn_bird(
        "bird",
        "bird",
        &format!(
            r#"
router id 10.0.0.2;
protocol device {{}}
protocol bgp v4 {{
    local 10.0.0.2 as 64512;
    neighbor 10.0.0.1 as 65001;
    {password}
    connect retry time 1;
    ipv4 {{ import all; export none; }};
}}
protocol bgp v6 {{
    local fd00::2 as 64512;
    neighbor fd00::1 as 65001;
    connect retry time 1;
    ipv6 {{ import all; export none; }};
}}
"#
        ),
    );
    Some(lab)
}

fn birdc(lab: &Lab, args: &[&str]) -> String {
    netns::birdc(&lab.dir.join("bird.ctl"), args)
}

fn config(remote: &str, local: IpAddr, family: Family, passive: bool) -> PeerConfig {
    PeerConfig {
        fsm: fsm::Config {
            local_as: 65001,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            peer_as: 64512,
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            passive,
            caps: Capabilities {
                multiprotocol: vec![family],
                route_refresh: true,
                four_octet_as: Some(65001),
                extended_message: true,
                ..Capabilities::default()
            },
            idle_hold: Duration::from_secs(1),
            max_idle_hold: Duration::from_secs(5),
        },
        remote: remote.parse().unwrap(),
        local: Some(local),
        ttl: interlink_bgp::peer::Ttl::One,
        md5: None,
        counts: Default::default(),
    }
}

/// Runs the peer in the lab's interlink namespace until it is Up (or `wait` passes), then
/// stops it with `communication`; the events it had.
fn session(
    lab: &Lab,
    cfg: PeerConfig,
    listen: Option<SocketAddr>,
    wait: Duration,
) -> Vec<PeerEvent> {
    let ns = lab.ns("il");
    in_ns(&ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let (ev_tx, mut ev_rx) = mpsc::channel(64);
            let (in_tx, in_rx) = mpsc::channel(4);
            let (stop_tx, stop_rx) = watch::channel(None);
            if let Some(addr) = listen {
                let md5: Vec<(IpAddr, peer::Secret)> = cfg
                    .md5
                    .iter()
                    .map(|k| (cfg.remote.ip(), k.clone()))
                    .collect();
                let l = peer::listen(addr, &md5).unwrap();
                let remote = cfg.remote.ip();
                tokio::spawn(async move {
                    while let Ok((s, from)) = l.accept().await {
                        if from.ip() == remote {
                            let _ = in_tx.send(s).await;
                        }
                    }
                });
            } else {
                drop(in_tx);
            }
            let (_cmd_tx, cmd_rx) = mpsc::unbounded_channel();
            let task = tokio::spawn(peer::run(cfg, in_rx, ev_tx, stop_rx, cmd_rx));
            let mut events = Vec::new();
            let _ = tokio::time::timeout(wait, async {
                while let Some(e) = ev_rx.recv().await {
                    let up = matches!(e, PeerEvent::Up(..));
                    events.push(e);
                    if up {
                        break;
                    }
                }
            })
            .await;
            let _ = stop_tx.send(Some("interlink test over".into()));
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            while let Ok(e) = ev_rx.try_recv() {
                events.push(e);
            }
            events
        })
    })
    .join()
    .unwrap()
}

fn up(events: &[PeerEvent]) -> Option<&fsm::Negotiated> {
    events.iter().find_map(|e| match e {
        PeerEvent::Up(n, _) => Some(&**n),
        _ => None,
    })
}

#[test]
fn ipv4_and_ipv6_sessions_come_up_with_bird_and_shut_down_cleanly() {
    let Some(lab) = lab("bgp-bird", None) else {
        return;
    };
    let v4 = config(
        "10.0.0.2:179",
        "10.0.0.1".parse().unwrap(),
        Family::IPV4_UNICAST,
        false,
    );
    let events = session(&lab, v4, None, Duration::from_secs(15));
    let n = up(&events).unwrap_or_else(|| {
        panic!(
            "no session: {events:?}\n{}",
            birdc(&lab, &["show", "protocols", "all", "v4"])
        )
    });
    assert_eq!(n.peer.asn, 64512);
    assert_eq!(n.peer.router_id, Ipv4Addr::new(10, 0, 0, 2));
    assert_eq!(n.hold_time, 90);
    assert_eq!(n.families, [Family::IPV4_UNICAST]);
    assert!(n.four_octet_as && n.route_refresh);
    assert!(
        events.iter().any(|e| matches!(e, PeerEvent::Down(_))),
        "{events:?}"
    );
    // BIRD heard why.
    lab.wait_for("BIRD to see the shutdown", Duration::from_secs(5), || {
        birdc(&lab, &["show", "protocols", "all", "v4"]).contains("interlink test over")
    });

    let v6 = config(
        "[fd00::2]:179",
        "fd00::1".parse().unwrap(),
        Family::IPV6_UNICAST,
        false,
    );
    let events = session(&lab, v6, None, Duration::from_secs(15));
    let n = up(&events).unwrap_or_else(|| panic!("no IPv6 session: {events:?}"));
    assert_eq!(n.families, [Family::IPV6_UNICAST]);
}

#[test]
fn a_passive_peer_takes_birds_connection() {
    let Some(lab) = lab("bgp-bird-passive", None) else {
        return;
    };
    let cfg = config(
        "10.0.0.2:179",
        "10.0.0.1".parse().unwrap(),
        Family::IPV4_UNICAST,
        true,
    );
    let events = session(
        &lab,
        cfg,
        Some("10.0.0.1:179".parse().unwrap()),
        Duration::from_secs(15),
    );
    assert!(up(&events).is_some(), "{events:?}");
}

#[test]
fn tcp_md5_with_the_right_key_and_a_wrong_one() {
    let Some(lab) = lab("bgp-bird-md5", Some("s3cret")) else {
        return;
    };
    let mut cfg = config(
        "10.0.0.2:179",
        "10.0.0.1".parse().unwrap(),
        Family::IPV4_UNICAST,
        false,
    );
    cfg.md5 = Some(peer::Secret::new(b"wrong".to_vec()));
    let events = session(&lab, cfg.clone(), None, Duration::from_secs(4));
    assert!(up(&events).is_none(), "up with a wrong MD5 key: {events:?}");
    cfg.md5 = Some(peer::Secret::new(b"s3cret".to_vec()));
    let events = session(&lab, cfg, None, Duration::from_secs(15));
    assert!(up(&events).is_some(), "{events:?}");
}

//! SA rotation while TCP transfers (IPv4 and IPv6) run across the link, on both transports:
//! no frame is dropped because of it.
//! Two `Link`s run in this process, each created from a thread that entered its gateway's
//! network namespace (the sockets and the TUN interface stay in that namespace). Needs root.

use interlink_testkit as netns;

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use interlink_dataplane::{netlink, Link, LinkSpec, SaKeys, StaticSas, Underlay};
use interlink_macsec::{An, Backend, CipherSuite, RxConfig, Sak};
use netns::Lab;

fn key(seed: u8) -> SaKeys {
    SaKeys {
        sak: Sak::new((0..32).map(|i| i ^ seed).collect()),
        xpn: None,
    }
}

fn udp(local: &str, remote: &str) -> Underlay {
    Underlay::Udp {
        local: local.parse::<SocketAddr>().unwrap(),
        remote: remote.parse().unwrap(),
    }
}

fn ethernet(peer_mac: &str) -> Underlay {
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(peer_mac.split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    Underlay::Ethernet {
        ifname: "wan".into(),
        peer_mac: mac,
    }
}

/// Starts a link inside namespace `ns` and configures its TUN interface there.
fn start_in(ns: &str, underlay: Underlay, tun_addr: &str, keys: StaticSas) -> Link {
    let ns_path = format!("/run/netns/{ns}");
    let spec = LinkSpec {
        name: "rot".into(),
        ifname: "il0".into(),
        underlay,
        suite: CipherSuite::GcmAes256,
        backend: Backend::default(),
        sci: None,
        peer_sci: None,
        port: 1,
        rx: RxConfig::default(),
        mtu: None,
        probe_interval: Duration::from_millis(200),
        keys: Some(keys),
        queues: 1,
        bandwidth: None,
        busy_poll: Duration::from_micros(100),
        reattach: false,
        flows: None,
    };
    let addr: std::net::IpAddr = tun_addr.parse().unwrap();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        // SAFETY: setns on a namespace file, for this thread only.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let link = Link::start(spec).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            tokio::spawn(conn);
            netlink::configure(
                &handle,
                link.ifindex(),
                link.mtu(),
                &netlink::alias("rot"),
                &[(addr, 30)],
            )
            .await
            .unwrap();
        });
        link
    })
    .join()
    .unwrap()
}

fn rotation_during_tcp_transfers_drops_nothing(test: &str, ethernet_underlay: bool) {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new(test);
    lab.two_sites();
    let an = |n| An::new(n).unwrap();
    let (underlay_a, underlay_b) = if ethernet_underlay {
        (ethernet(netns::MAC_B), ethernet(netns::MAC_A))
    } else {
        (
            udp("192.0.2.1:61440", "192.0.2.2:61440"),
            udp("192.0.2.2:61440", "192.0.2.1:61440"),
        )
    };
    let mut a = start_in(
        &lab.ns("ga"),
        underlay_a,
        "169.254.0.1",
        StaticSas {
            tx_an: an(0),
            rx_an: an(0),
            tx: key(0xa0),
            rx: key(0xb0),
            state: lab.dir.join("a.pn"),
        },
    );
    let mut b = start_in(
        &lab.ns("gb"),
        underlay_b,
        "169.254.0.2",
        StaticSas {
            tx_an: an(0),
            rx_an: an(0),
            tx: key(0xb0),
            rx: key(0xa0),
            state: lab.dir.join("b.pn"),
        },
    );
    lab.route("ga", &["10.2.0.0/24", "dev", "il0"]);
    lab.route("gb", &["10.1.0.0/24", "dev", "il0"]);
    lab.route("ga", &["fd02::/64", "dev", "il0"]);
    lab.route("gb", &["fd01::/64", "dev", "il0"]);

    // Both families through before the transfers start: on a loaded machine the hosts'
    // IPv6 neighbours can take a moment, and the test is about the rotations.
    for dst in ["10.2.0.2", "fd02::2"] {
        lab.wait_for("the path across the link", Duration::from_secs(10), || {
            lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", dst])
                .status
                .success()
        });
    }

    // One transfer over IPv4 and one over IPv6, at the same time.
    for (tag, port) in [("4", "5201"), ("6", "5202")] {
        lab.iperf3_server(&format!("server{tag}"), "hb", port);
    }
    for (tag, dst, port) in [("4", "10.2.0.2", "5201"), ("6", "fd02::2", "5202")] {
        lab.spawn_in(
            &format!("client{tag}"),
            "ha",
            Path::new("iperf3"),
            &["-c", dst, "-p", port, "-t", "6", "-i", "0", "--forceflush"],
        );
    }
    std::thread::sleep(Duration::from_millis(1500));

    // What happened before the rotations is not the rotation's doing.
    let before = [a.counters(), b.counters()];

    // Twice, as a key agreement protocol would: both receive SAs first, then both
    // transmitters switch. Frames still in flight on the old AN keep validating.
    for (n, seed) in [(1, 0x10), (2, 0x20)] {
        let (ka, kb) = (key(0xa0 ^ seed), key(0xb0 ^ seed));
        b.install_rx_sa(an(n), ka.clone(), 1).unwrap();
        a.install_rx_sa(an(n), kb.clone(), 1).unwrap();
        a.install_tx_sa(an(n), &ka, 1).unwrap();
        b.install_tx_sa(an(n), &kb, 1).unwrap();
        a.use_tx_sa(an(n)).unwrap();
        b.use_tx_sa(an(n)).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    for tag in ["4", "6"] {
        let client = format!("client{tag}");
        lab.wait_for("the transfers to end", Duration::from_secs(15), || {
            lab.log(&client).contains("iperf Done")
        });
        let report = lab.log(&client);
        assert!(report.contains("receiver"), "{report}");
    }

    // The last SA carried traffic both ways, and nothing was dropped on either side.
    for ((name, link), before) in [("a", &a), ("b", &b)].into_iter().zip(before) {
        let sent_on_an2 = link
            .tx_secy()
            .sa(an(2))
            .and_then(|sa| sa.next_pn())
            .unwrap();
        assert!(
            sent_on_an2 > 100,
            "{name} sent only {} frames on AN 2",
            sent_on_an2 - 1
        );
        let c = link.counters();
        let grew = |now: u64, then: u64| now - then;
        assert_eq!(
            grew(c.secy_rx.dropped(), before.secy_rx.dropped()),
            0,
            "{name}: {:?}",
            c.secy_rx
        );
        assert_eq!(
            grew(c.secy_tx.dropped(), before.secy_tx.dropped()),
            0,
            "{name}: {:?}",
            c.secy_tx
        );
        assert_eq!(
            grew(c.link.underlay_tx_errors, before.link.underlay_tx_errors),
            0,
            "{name}: {:?}",
            c.link
        );
        assert_eq!(
            grew(c.link.tun_tx_errors, before.link.tun_tx_errors),
            0,
            "{name}: {:?}",
            c.link
        );
        assert_eq!(
            grew(c.link.tun_down, before.link.tun_down),
            0,
            "{name}: {:?}",
            c.link
        );
        assert!(
            grew(c.secy_rx.in_pkts_ok, before.secy_rx.in_pkts_ok) > 1000,
            "{name}: {:?}",
            c.secy_rx
        );
    }
    a.stop(false);
    b.stop(false);
}

#[test]
fn udp_sa_rotation_during_tcp_transfers_drops_nothing() {
    rotation_during_tcp_transfers_drops_nothing("rotudp", false);
}

#[test]
fn ethernet_sa_rotation_during_tcp_transfers_drops_nothing() {
    rotation_during_tcp_transfers_drops_nothing("roteth", true);
}

//! Two sites joined by an interlink link, in network namespaces:
//! host A - gateway A - underlay - gateway B - host B, with interlinkd on both gateways,
//! on both transports: UDP over IPv4, and 802.1AE frames on the Ethernet underlay.

use interlink_testkit as netns;

use std::path::Path;
use std::time::Duration;

use netns::{in_ns, inject, pcap_frames, Lab, MAC_A, MAC_B};

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const KEY_B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n";

#[derive(Clone, Copy)]
enum Wire {
    Udp,
    Ethernet,
}

/// The transport lines of gateway `side`'s link: UDP between the underlay addresses, or the
/// Ethernet underlay to the other gateway's MAC.
fn transport(side: &str, wire: Wire, me: &str, peer: &str) -> String {
    match wire {
        Wire::Udp => {
            format!("transport = \"udp\"\nlocal = \"{me}:61440\"\nremote = \"{peer}:61440\"")
        }
        Wire::Ethernet => format!(
            "transport = \"ethernet\"\nunderlay = \"wan\"\npeer_mac = \"{}\"",
            if side == "a" { MAC_B } else { MAC_A }
        ),
    }
}

/// Waits for both TUN interfaces, then routes each site's network across the link.
fn route_across(lab: &Lab) {
    lab.wait_for("both il0 interfaces up", Duration::from_secs(10), || {
        interface_up(lab, "ga") && interface_up(lab, "gb")
    });
    lab.route("ga", &["10.2.0.0/24", "dev", "il0"]);
    lab.route("ga", &["fd02::/64", "dev", "il0"]);
    lab.route("gb", &["10.1.0.0/24", "dev", "il0"]);
    lab.route("gb", &["fd01::/64", "dev", "il0"]);
}

/// Gateway `side`'s config. Gateway A sends on AN `ans.0`, gateway B on `ans.1`.
fn config(
    lab: &Lab,
    side: &str,
    suite: &str,
    wire: Wire,
    ans: (u8, u8),
    queues: usize,
) -> std::path::PathBuf {
    let (tx_an, rx_an) = if side == "a" { ans } else { (ans.1, ans.0) };
    // Several transmit queues put PNs out of order: then a window.
    let window = if queues > 1 { 256 } else { 0 };
    let (me, peer, tun4, tun6, ssci) = match side {
        "a" => (
            "192.0.2.1",
            "192.0.2.2",
            "169.254.0.1/30",
            "fd00::1/126",
            (1, 2),
        ),
        _ => (
            "192.0.2.2",
            "192.0.2.1",
            "169.254.0.2/30",
            "fd00::2/126",
            (2, 1),
        ),
    };
    let (tx, rx) = if side == "a" {
        ("a.sak", "b.sak")
    } else {
        ("b.sak", "a.sak")
    };
    let xpn = if suite.contains("xpn") {
        format!(
            "tx_ssci = {}\nrx_ssci = {}\nsalt = \"000102030405060708090a0b\"\n",
            ssci.0, ssci.1
        )
    } else {
        String::new()
    };
    let transport = transport(side, wire, me, peer);
    let daemon = lab.daemon_section(&format!("state-{side}"));
    lab.file(
        &format!("{side}.toml"),
        &format!(
            r#"{daemon}
[[link]]
name = "to-{peer_side}"
interface = "il0"
addresses = ["{tun4}", "{tun6}"]
{transport}
probe_interval = "200ms"
queues = {queues}

[link.macsec]
cipher_suite = "{suite}"
keying = "static"
tx_sak_file = "{tx}"
rx_sak_file = "{rx}"
an = {tx_an}
rx_an = {rx_an}
replay_window = {window}
{xpn}
[control]
socket = "ctl-{side}.sock"
"#,
            peer_side = if side == "a" { "b" } else { "a" },
        ),
    )
}

/// Writes both SAKs at the length `suite` takes.
fn keys(lab: &Lab, suite: &str) {
    let hex_len = if suite.ends_with("128") { 32 } else { 64 };
    lab.secret("a.sak", &KEY_A[..hex_len]);
    lab.secret("b.sak", &KEY_B[..hex_len]);
}

fn interface_up(lab: &Lab, ns: &str) -> bool {
    let out = lab.try_exec(ns, &["ip", "-o", "link", "show", "il0"]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains(",UP")
}

fn start_gateways(lab: &mut Lab, suite: &str, wire: Wire, ans: (u8, u8), queues: usize) {
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    for side in ["a", "b"] {
        let cfg = config(lab, side, suite, wire, ans, queues);
        let cfg = cfg.to_str().unwrap().to_owned();
        lab.spawn(&format!("g{side}"), bin, &["--config", &cfg]);
    }
    route_across(lab);
}

/// The hosts' traffic carries this, and the underlay must never show it.
const MARKER: &[u8] = b"interlink-marker";

fn ping(lab: &Lab, from: &str, to: &str) {
    let pattern: String = MARKER.iter().map(|b| format!("{b:02x}")).collect();
    let out = lab.try_exec(
        from,
        &[
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-p", &pattern, to,
        ],
    );
    assert!(
        out.status.success(),
        "ping {to} from {from} failed:\n{}\n--- ga.log\n{}\n--- gb.log\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log("ga"),
        lab.log("gb")
    );
}

fn hosts_reach_each_other(suite: &str, wire: Wire, ans: (u8, u8), queues: usize, test: &str) {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new(test);
    lab.two_sites();
    keys(&lab, suite);
    start_gateways(&mut lab, suite, wire, ans, queues);
    lab.capture("cap-wan", "ga", "wan", "");
    lab.capture("cap-lan", "ga", "lan", "");
    ping(&lab, "ha", "10.2.0.2");
    ping(&lab, "hb", "10.1.0.2");
    ping(&lab, "ha", "fd02::2");
    ping(&lab, "hb", "fd01::2");
    let lan = lab.stop_capture("cap-lan");
    let wan = lab.stop_capture("cap-wan");
    let carries = |frames: &[Vec<u8>]| {
        frames
            .iter()
            .filter(|f| f.windows(MARKER.len()).any(|w| w == MARKER))
            .count()
    };
    // On the LAN side the pings carry the marker in clear; on the underlay it never shows.
    assert!(
        carries(&lan) >= 12,
        "only {} marked frames on the LAN",
        carries(&lan)
    );
    assert!(wan.len() >= 24, "only {} frames on the underlay", wan.len());
    assert_eq!(carries(&wan), 0, "the marker crossed the underlay in clear");
    if let Wire::Ethernet = wire {
        dissects_as_macsec(&lab.dir.join("cap-wan.pcap"), ans.0);
    }
    // Static keys over UDP with several queues (and a replay window) open a lane per queue,
    // each with its receive worker reserving PNs from one shared request.
    if queues > 1 && matches!(wire, Wire::Udp) {
        for side in ["ga", "gb"] {
            let log = lab.log(side);
            assert!(log.contains(&format!("{queues} lanes")), "{log}");
        }
    }
    // The tunnel addresses answer too: the gateways reach each other across the link.
    ping(&lab, "ga", "169.254.0.2");
    ping(&lab, "ga", "fd00::2");
    // TCP transfers, over IPv4 and over IPv6.
    for (tag, server) in [("tcp4", "10.2.0.2"), ("tcp6", "fd02::2")] {
        let received = tcp_transfer(&mut lab, tag, server);
        assert!(received > 1_000_000, "{tag}: only {received} octets");
    }
    udp_trains_cross_intact(&lab);
    lab.wait_for(
        "the probes to report the peer",
        Duration::from_secs(5),
        || lab.log("ga").contains("peer reachable") && lab.log("gb").contains("peer reachable"),
    );

    for side in ["ga", "gb"] {
        let (status, log) = lab.stop(side);
        assert_eq!(status, Some(0), "{side} did not exit cleanly:\n{log}");
        assert!(log.contains("stopping"), "{log}");
        // Its TUN interface went away with it.
        let out = lab.try_exec(side, &["ip", "link", "show", "il0"]);
        assert!(!out.status.success(), "il0 still exists in {side}");
    }
}

/// The payload of datagram `i` of a train.
fn datagram(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// Sends `datagrams` as one UDP GSO send (`UDP_SEGMENT`) on a connected socket.
fn send_gso(sock: &std::net::UdpSocket, datagrams: &[Vec<u8>]) {
    use std::os::fd::AsRawFd;
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|d| libc::iovec {
            iov_base: d.as_ptr() as *mut libc::c_void,
            iov_len: d.len(),
        })
        .collect();
    let mut ctrl = [0u64; 4];
    // SAFETY: the cmsg macros stay within `ctrl`, sized for one u16 cmsg; everything
    // pointed at lives across the call.
    let sent = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iovs.as_mut_ptr();
        msg.msg_iovlen = iovs.len() as _;
        msg.msg_control = ctrl.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(2) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = 103; // UDP_SEGMENT
        (*cmsg).cmsg_len = libc::CMSG_LEN(2) as _;
        std::ptr::write_unaligned(
            libc::CMSG_DATA(cmsg).cast::<u16>(),
            datagrams[0].len() as u16,
        );
        libc::sendmsg(sock.as_raw_fd(), &msg, 0)
    };
    assert!(
        sent > 0,
        "UDP GSO send: {}",
        std::io::Error::last_os_error()
    );
}

/// Trains of UDP datagrams cross the link intact and in order, both ways the link joins and
/// splits them: a UDP GSO send on gateway A reaches its TUN as one packet (UDP segmentation
/// offload), which the transmit worker cuts into datagrams; a burst of equal datagrams from
/// host A is joined again by gateway B's receive worker into UDP GSO writes to its TUN.
fn udp_trains_cross_intact(lab: &Lab) {
    const TRAINS: [(&str, &str, usize, usize); 4] = [
        // (from, to, datagrams, size): a GSO send on the gateway; plain sends from the host.
        ("ga", "10.2.0.2", 41, 1000),
        ("ga", "fd02::2", 20, 1200),
        ("ha", "10.2.0.2", 200, 64),
        ("ha", "fd02::2", 200, 64),
    ];
    let expected: usize = TRAINS.iter().map(|t| t.2).sum();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = in_ns(&lab.ns("hb"), move || {
        let sock = std::net::UdpSocket::bind("[::]:9000").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        // Room for every datagram of every train: this test is about what arrives, not
        // about how fast this thread reads.
        use std::os::fd::AsRawFd;
        let size: libc::c_int = 8 << 20;
        // SAFETY: a c_int option value that lives across the call.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        ready_tx.send(()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < expected {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => got.push(buf[..n].to_vec()),
                Err(_) => break,
            }
        }
        got
    });
    ready_rx.recv().unwrap();
    for (k, &(from, to, count, size)) in TRAINS.iter().enumerate() {
        let train: Vec<Vec<u8>> = (0..count)
            .map(|i| {
                let mut d = datagram(i, size);
                d[0] = k as u8;
                d
            })
            .collect();
        let to = to.to_owned();
        in_ns(&lab.ns(from), move || {
            let sock = std::net::UdpSocket::bind(if to.contains(':') {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            })
            .unwrap();
            sock.connect((to.as_str(), 9000)).unwrap();
            if from == "ga" {
                send_gso(&sock, &train);
            } else {
                // Bursts that queues on the way hold even on a busy machine; each burst still
                // reaches gateway B as one receive batch, to be joined.
                for burst in train.chunks(25) {
                    for d in burst {
                        sock.send(d).unwrap();
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
        .join()
        .unwrap();
    }
    let got = receiver.join().unwrap();
    for (k, &(from, to, count, size)) in TRAINS.iter().enumerate() {
        let train: Vec<&Vec<u8>> = got.iter().filter(|d| d[0] == k as u8).collect();
        if train.len() != count {
            // Where they went: both gateways' counters (SecY, link, PN state).
            let links = |side| ctl(lab, side, &["--json", "show", "links"]).1;
            panic!(
                "{from} to {to}: {} of {count} datagrams arrived\ngateway A: {}\ngateway B: {}",
                train.len(),
                links("a"),
                links("b")
            );
        }
        for (i, d) in train.iter().enumerate() {
            let mut want = datagram(i, size);
            want[0] = k as u8;
            assert_eq!(
                **d, want,
                "{from} to {to}: datagram {i} differs or is out of order"
            );
        }
    }
}

/// Every 802.1AE frame gateway A sent dissects in tshark as MACsec, without a malformed-packet
/// warning, with gateway A's SCI, its AN, confidentiality (E and C) and rising packet numbers.
fn dissects_as_macsec(pcap: &Path, an: u8) {
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-Y",
            "eth.src == 02:00:00:00:00:0a && eth.type == 0x88e5",
            "-T",
            "fields",
        ])
        .args([
            "-e",
            "macsec.SCI.system_identifier",
            "-e",
            "macsec.SCI.port_identifier",
        ])
        .args([
            "-e",
            "macsec.AN",
            "-e",
            "macsec.PN",
            "-e",
            "macsec.TCI.E",
            "-e",
            "macsec.TCI.C",
        ])
        .args(["-e", "_ws.malformed", "-E", "separator=,"])
        .output()
        .expect("tshark");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut last_pn = 0u64;
    let mut frames = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 7, "{line}");
        assert_eq!(f[0], MAC_A, "SCI system identifier in {line}");
        assert_eq!(f[1], "1", "SCI port in {line}");
        assert!(
            f[2] == an.to_string() || f[2] == format!("0x{an:02x}"),
            "AN in {line}"
        );
        let pn: u64 = f[3].parse().unwrap_or_else(|_| panic!("no PN in {line}"));
        assert!(pn > last_pn, "PN {pn} after {last_pn}");
        last_pn = pn;
        assert!(
            matches!((f[4], f[5]), ("1", "1") | ("True", "True")),
            "E and C in {line}"
        );
        assert_eq!(f[6], "", "malformed: {line}");
        frames += 1;
    }
    assert!(
        frames >= 12,
        "only {frames} MACsec frames from gateway A:\n{text}"
    );
}

/// `contrib/wireshark/interlink.lua` makes tshark decode a capture of the UDP underlay: the
/// protected frames as MACsec (SecTAG fields, nothing malformed), the MKPDUs as EAPOL and
/// MKA; without it nothing on interlink's default port is taken for VXLAN (as 4789 was).
fn dissects_with_the_lua_plugin(pcap: &Path) {
    let lua = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/wireshark/interlink.lua");
    let tshark = |lua: Option<&Path>, filter: &str, fields: &[&str]| {
        let mut c = std::process::Command::new("tshark");
        c.args(["-n", "-r"]).arg(pcap);
        if let Some(l) = lua {
            c.arg("-X").arg(format!("lua_script:{}", l.display()));
        }
        c.args(["-Y", filter, "-T", "fields", "-E", "separator=,"]);
        for f in fields {
            c.args(["-e", f]);
        }
        let out = c.output().expect("tshark");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(!err.contains("Lua: Error"), "{err}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let protected = tshark(
        Some(&lua),
        "udp.srcport == 61440 && macsec",
        &[
            "ilsec.kind",
            "macsec.SCI.port_identifier",
            "macsec.AN",
            "macsec.PN",
            "macsec.TCI.E",
            "_ws.malformed",
        ],
    );
    let mut frames = 0;
    for line in protected.lines() {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 6, "{line}");
        assert_eq!(f[0], "1", "{line}");
        assert_eq!(f[1], "1", "SCI port in {line}");
        assert!(f[3].parse::<u64>().is_ok_and(|pn| pn > 0), "PN in {line}");
        assert!(matches!(f[4], "1" | "True"), "E in {line}");
        assert_eq!(f[5], "", "malformed: {line}");
        frames += 1;
    }
    assert!(frames >= 4, "only {frames} MACsec frames:\n{protected}");
    let mkpdus = tshark(
        Some(&lua),
        "udp.port == 61440 && mka",
        &["ilsec.kind", "mka.version_id", "_ws.malformed"],
    );
    assert!(
        mkpdus.lines().count() >= 2
            && mkpdus
                .lines()
                .all(|l| l.starts_with("2,3,") && l.ends_with(',')),
        "MKPDUs:\n{mkpdus}"
    );
    let malformed = tshark(
        Some(&lua),
        "_ws.malformed || _ws.expert.severity == error",
        &["frame.number"],
    );
    assert_eq!(malformed, "", "malformed frames");
    assert_eq!(
        tshark(None, "vxlan", &["frame.number"]),
        "",
        "taken for VXLAN"
    );
    eprintln!(
        "lua dissector: {frames} MACsec frames and {} MKPDUs decoded",
        mkpdus.lines().count()
    );
}

/// A one-second iperf3 TCP transfer from host A to `server` on host B; the octets received.
fn tcp_transfer(lab: &mut Lab, tag: &str, server: &str) -> u64 {
    let name = format!("iperf-{tag}");
    lab.iperf3_server(&name, "hb", "5201");
    let out = lab.try_exec("ha", &["iperf3", "-c", server, "-t", "1", "-J"]);
    let _ = lab.stop(&name);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 to {server}: {e}\n{}\n--- ga.log\n{}",
            String::from_utf8_lossy(&out.stdout),
            lab.log("ga")
        )
    });
    report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
}

#[test]
fn udp_gcm_aes_256_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-256", Wire::Udp, (0, 0), 1, "udp256");
}

#[test]
fn udp_gcm_aes_xpn_256_carries_ipv4_and_ipv6() {
    // Each side on its own AN, as `ip macsec` allows; two transmit queues per link.
    hosts_reach_each_other("gcm-aes-xpn-256", Wire::Udp, (1, 3), 2, "udpxpn");
}

#[test]
fn ethernet_gcm_aes_128_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-128", Wire::Ethernet, (0, 0), 1, "eth128");
}

#[test]
fn ethernet_gcm_aes_xpn_256_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-xpn-256", Wire::Ethernet, (2, 1), 1, "ethxpn");
}

#[test]
fn a_bad_configuration_exits_2_with_its_place() {
    let dir = std::env::temp_dir().join(format!("il-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[[link]]\nname = \"x\"\ncolour = 1\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_interlinkd"))
        .args(["--check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:3:1: unknown field `colour`"),
        "{err}"
    );
}

/// Where the SecTAG starts in a captured frame: after the Ethernet header, or after
/// Ethernet, IPv4 and UDP headers.
fn sectag_at(frame: &[u8], wire: Wire) -> usize {
    match wire {
        Wire::Ethernet => 14,
        Wire::Udp => 14 + usize::from(frame[14] & 0x0f) * 4 + 8,
    }
}

/// After changing a UDP payload: fix the lengths and the IPv4 header checksum, and drop the
/// UDP checksum (0 means none over IPv4).
fn fix_udp(frame: &mut [u8]) {
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let ip_len = (frame.len() - 14) as u16;
    frame[16..18].copy_from_slice(&ip_len.to_be_bytes());
    let udp = 14 + ihl;
    frame[udp + 4..udp + 6].copy_from_slice(&(ip_len - ihl as u16).to_be_bytes());
    frame[udp + 6..udp + 8].fill(0);
    frame[24..26].fill(0);
    let sum: u32 = frame[14..14 + ihl]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    frame[24..26].copy_from_slice(&(!(folded as u16)).to_be_bytes());
}

/// The counter `name` in the shutdown line of a gateway's log.
fn counter(log: &str, name: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("stopped;"))
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| {
            w.strip_prefix(&format!("{name}="))
                .map(|n| n.parse().unwrap())
        })
        .unwrap_or(0)
}

/// Frames forged from a captured one are dropped, each counted under its reason, and the
/// hosts' traffic goes on.
fn forged_frames_are_dropped_and_counted(wire: Wire, test: &str) {
    if !netns::require_root() {
        return;
    }
    let suite = "gcm-aes-256";
    let mut lab = Lab::new(test);
    lab.two_sites();
    keys(&lab, suite);
    start_gateways(&mut lab, suite, wire, (0, 0), 1);
    let filter = match wire {
        Wire::Ethernet => "ether src 02:00:00:00:00:0a and ether proto 0x88e5",
        Wire::Udp => "src host 192.0.2.1 and udp port 61440",
    };
    lab.capture("cap-wan", "ga", "wan", filter);
    ping(&lab, "ha", "10.2.0.2");
    let captured = lab.stop_capture("cap-wan");
    let original = captured
        .iter()
        .find(|f| f.len() > 100)
        .unwrap_or_else(|| {
            panic!(
                "no protected frame from gateway A captured:\n{}",
                lab.log("cap-wan")
            )
        })
        .clone();
    let tag = sectag_at(&original, wire);

    let replayed = original.clone();
    // A PN the receiver has not seen yet, so the frame reaches the ICV check; one bit of the
    // ciphertext flipped.
    let mut flipped = original.clone();
    flipped[tag + 2..tag + 6].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
    flipped[tag + 30] ^= 0x01;
    let mut unknown_sci = original.clone();
    unknown_sci[tag + 2..tag + 6].copy_from_slice(&0x7fff_0001u32.to_be_bytes());
    unknown_sci[tag + 13] ^= 0xff;
    let mut truncated = original[..tag + 10].to_vec();
    let mut forged = [replayed, flipped, unknown_sci, truncated.clone()];
    if let Wire::Udp = wire {
        for f in forged.iter_mut() {
            fix_udp(f);
        }
        fix_udp(&mut truncated);
    }
    inject(&lab.ns("ga"), "wan", &forged);
    // The link carries on.
    ping(&lab, "ha", "10.2.0.2");
    ping(&lab, "ha", "fd02::2");

    let (status, log) = lab.stop("gb");
    assert_eq!(status, Some(0), "{log}");
    for (name, expected) in [
        ("InPktsLate", 1),
        ("InPktsNotValid", 1),
        ("InPktsNoSCI", 1),
        ("InPktsBadTag", 1),
    ] {
        assert_eq!(counter(&log, name), expected, "{name} in:\n{log}");
    }
    assert!(counter(&log, "InPktsOK") >= 6, "{log}");
}

#[test]
fn udp_forged_frames_are_dropped_and_counted() {
    forged_frames_are_dropped_and_counted(Wire::Udp, "udpforge");
}

#[test]
fn ethernet_forged_frames_are_dropped_and_counted() {
    forged_frames_are_dropped_and_counted(Wire::Ethernet, "ethforge");
}

/// Starts both gateways keyed by MKA from a CAK/CKN pair (gateway B's CAK is `cak_b`), with
/// the routes across the link.
fn start_mka(lab: &mut Lab, wire: Wire, cak_b: &str) {
    start_mka_with(lab, wire, cak_b, "");
}

fn start_mka_with(lab: &mut Lab, wire: Wire, cak_b: &str, extra: &str) {
    start_mka_suite(lab, wire, "gcm-aes-256", cak_b, extra);
}

const CAK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

/// Writes gateway `side`'s config: one MKA link with `keys` (its `ckn`/`cak_file` or
/// `keychain` lines) and `extra` lines in its [link.macsec].
fn mka_config(lab: &Lab, side: &str, wire: Wire, suite: &str, keys: &str, extra: &str) -> String {
    let (me, peer, tun4, tun6) = if side == "a" {
        ("192.0.2.1", "192.0.2.2", "169.254.0.1/30", "fd00::1/126")
    } else {
        ("192.0.2.2", "192.0.2.1", "169.254.0.2/30", "fd00::2/126")
    };
    let transport = transport(side, wire, me, peer);
    let cfg = lab.file(
        &format!("{side}.toml"),
        &format!(
            "[[link]]\nname = \"mka\"\ninterface = \"il0\"\naddresses = [\"{tun4}\", \"{tun6}\"]\n\
             {transport}\nprobe_interval = \"200ms\"\n\n[link.macsec]\n\
             cipher_suite = \"{suite}\"\nkeying = \"mka\"\n{keys}{extra}\n\
             [control]\nsocket = \"ctl-{side}.sock\"\n"
        ),
    );
    cfg.to_str().unwrap().to_owned()
}

/// interlinkctl against gateway `side`'s control socket: (exit status, stdout, stderr).
fn ctl(lab: &Lab, side: &str, args: &[&str]) -> (i32, String, String) {
    let sock = lab.dir.join(format!("ctl-{side}.sock"));
    netns::interlinkctl(env!("CARGO_BIN_EXE_interlinkctl"), &sock, args)
}

fn spawn_gateway(lab: &mut Lab, side: &str, cfg: &str) {
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn(&format!("g{side}"), bin, &["--config", cfg]);
}

fn start_mka_suite(lab: &mut Lab, wire: Wire, suite: &str, cak_b: &str, extra: &str) {
    lab.secret("a.cak", CAK);
    lab.secret("b.cak", cak_b);
    for side in ["a", "b"] {
        let keys = format!("ckn = \"696e7465726c696e6b\"\ncak_file = \"{side}.cak\"\n");
        let cfg = mka_config(lab, side, wire, suite, &keys, extra);
        spawn_gateway(lab, side, &cfg);
    }
    route_across(lab);
}

fn mka_keys_the_link(wire: Wire, suite: &str, test: &str) {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new(test);
    lab.two_sites();
    // The underlay from the start, MKPDUs and pings, for the Wireshark dissector.
    let udp = matches!(wire, Wire::Udp);
    if udp {
        lab.capture("cap-udp", "ga", "wan", "udp");
    }
    let started = std::time::Instant::now();
    start_mka_suite(&mut lab, wire, suite, CAK, "");
    // Nothing passes until MKA has agreed on a SAK; then traffic flows.
    lab.wait_for(
        "both gateways sending under a SAK",
        Duration::from_secs(15),
        || lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key"),
    );
    eprintln!(
        "{test}: {suite}: first SAK in use {:?} after the start",
        started.elapsed()
    );
    ping(&lab, "ha", "10.2.0.2");
    ping(&lab, "hb", "fd01::2");
    if udp {
        lab.stop_capture("cap-udp");
        dissects_with_the_lua_plugin(&lab.dir.join("cap-udp.pcap"));
    }
    let received = tcp_transfer(&mut lab, "mka", "10.2.0.2");
    assert!(received > 1_000_000, "only {received} octets");
    // interlinkctl: the link with its MKA state; a rekey asked of the key server's side.
    let mut key_server = None;
    for side in ["a", "b"] {
        let (code, out, err) = ctl(&lab, side, &["--json", "show", "links"]);
        assert_eq!(code, 0, "{err}");
        let l: serde_json::Value = serde_json::from_str(&out).unwrap();
        let l = &l[0];
        assert_eq!(l["name"], "mka");
        assert_eq!(l["cipher_suite"], suite);
        assert_eq!(l["keying"], "mka");
        assert_eq!(l["mka"]["live"], true, "{l}");
        assert_eq!(l["mka"]["ckn"], "696e7465726c696e6b");
        assert_eq!(l["mka"]["latest_key"]["transmitting"], true, "{l}");
        if l["mka"]["key_server"] == true {
            key_server = Some(side);
        }
    }
    let ks = key_server.expect("one side is key server");
    let other = if ks == "a" { "b" } else { "a" };
    let (code, _, err) = ctl(&lab, other, &["link", "mka", "rekey"]);
    assert_eq!(code, 1);
    assert!(err.contains("the peer is the key server"), "{err}");
    let (code, _, err) = ctl(&lab, ks, &["link", "mka", "rekey"]);
    assert_eq!(code, 0, "{err}");
    lab.wait_for("the new SAK in use", Duration::from_secs(5), || {
        lab.log(&format!("g{other}")).contains("sending with key 2")
    });
    let (_, table, _) = ctl(&lab, ks, &["show", "links"]);
    assert!(table.starts_with("NAME  INTERFACE  TRANSPORT"), "{table}");
    assert!(table.contains("live, key server, key 2 AN 1"), "{table}");
    ping(&lab, "ha", "10.2.0.2");
    for side in ["ga", "gb"] {
        let (status, log) = lab.stop(side);
        assert_eq!(status, Some(0), "{log}");
        assert!(log.contains("mka: link mka: peer live"), "{log}");
        // Every frame validated: with XPN, that needs the same salt and SSCIs on both sides.
        assert_eq!(counter(&log, "InPktsNotValid"), 0, "{log}");
        assert!(counter(&log, "InPktsOK") > 100, "{log}");
    }
}

#[test]
fn udp_mka_keys_the_link() {
    mka_keys_the_link(Wire::Udp, "gcm-aes-256", "udp-mka");
}

#[test]
fn ethernet_mka_keys_the_link() {
    mka_keys_the_link(Wire::Ethernet, "gcm-aes-256", "eth-mka");
}

#[test]
fn udp_mka_keys_an_xpn_256_link() {
    mka_keys_the_link(Wire::Udp, "gcm-aes-xpn-256", "udp-mka-xpn");
}

#[test]
fn ethernet_mka_keys_an_xpn_128_link() {
    mka_keys_the_link(Wire::Ethernet, "gcm-aes-xpn-128", "eth-mka-xpn");
}

#[test]
fn a_wrong_cak_gets_no_traffic_through_and_says_why() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mka-wrong-cak");
    lab.two_sites();
    start_mka(
        &mut lab,
        Wire::Udp,
        "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100\n",
    );
    lab.wait_for(
        "the ICV failures in the log",
        Duration::from_secs(10),
        || lab.log("ga").contains("failed their ICV"),
    );
    let out = lab.try_exec("ha", &["ping", "-c", "2", "-W", "1", "10.2.0.2"]);
    assert!(!out.status.success(), "traffic passed with different CAKs");
    assert!(!lab.log("ga").contains("sending with key"));
    // The counter an alert would watch.
    let (code, out, err) = ctl(&lab, "a", &["--json", "show", "links"]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        l[0]["mka"]["drops"]["icv"].as_u64().unwrap_or(0) >= 1,
        "{l}"
    );
    assert_eq!(l[0]["mka"]["live"], false);
}

#[test]
fn five_mka_rekeys_during_a_tcp_transfer_lose_nothing() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mka-rekeys");
    lab.two_sites();
    start_mka_with(
        &mut lab,
        Wire::Udp,
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        "rekey_interval = \"1s\"\n",
    );
    lab.wait_for("a SAK in use", Duration::from_secs(15), || {
        lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key")
    });
    let name = "iperf-rekeys";
    lab.iperf3_server(name, "hb", "5201");
    let out = lab.try_exec("ha", &["iperf3", "-c", "10.2.0.2", "-t", "7", "-J"]);
    let _ = lab.stop(name);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 10_000_000, "only {received} octets");
    let (_, la) = lab.stop("ga");
    let (_, lb) = lab.stop("gb");
    // The key server moved to a new SAK at least five times meanwhile...
    let server = if la.matches("sending with key").count() >= lb.matches("sending with key").count()
    {
        &la
    } else {
        &lb
    };
    assert!(server.matches("sending with key").count() >= 6, "{server}");
    // ...and no frame was refused for it: none late, none on an SA not yet installed, none
    // that failed validation.
    for log in [&la, &lb] {
        no_frame_lost_to_key_changes(log);
    }
    eprintln!("five rekeys: {received} octets, {retransmits} TCP retransmits");
}

/// No frame refused for a key change in a gateway's log: none late, none on an SA not yet
/// (or no longer) installed, none that failed validation.
fn no_frame_lost_to_key_changes(log: &str) {
    for c in [
        "InPktsLate",
        "InPktsNotUsingSA",
        "InPktsUnusedSA",
        "InPktsNotValid",
        "InPktsNoSA",
    ] {
        assert_eq!(counter(log, c), 0, "{c}:\n{log}");
    }
}

#[test]
fn a_restarted_peer_carries_traffic_again_within_10s_under_a_new_sak() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mka-restart");
    lab.two_sites();
    start_mka(&mut lab, Wire::Udp, CAK);
    let keys = "ckn = \"696e7465726c696e6b\"\ncak_file = \"b.cak\"\n";
    lab.wait_for("a SAK in use", Duration::from_secs(15), || {
        lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key")
    });
    ping(&lab, "ha", "10.2.0.2");
    let rx_before = lab.log("ga").matches("receiving with key").count();
    let (status, _) = lab.stop("gb");
    assert_eq!(status, Some(0));
    let restarted = std::time::Instant::now();
    let cfg = mka_config(&lab, "b", Wire::Udp, "gcm-aes-256", keys, "");
    spawn_gateway(&mut lab, "b", &cfg);
    // Its interface is new: the routes through it too.
    lab.wait_for("il0 up again", Duration::from_secs(10), || {
        interface_up(&lab, "gb")
    });
    lab.route("gb", &["10.1.0.0/24", "dev", "il0"]);
    lab.route("gb", &["fd01::/64", "dev", "il0"]);
    // Traffic resumes within 10 s: one ping a second until one answers.
    lab.wait_for(
        "a ping across after the restart",
        Duration::from_secs(10),
        || {
            lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.2"])
                .status
                .success()
        },
    );
    let took = restarted.elapsed();
    eprintln!("traffic resumed {took:?} after gateway B restarted");
    // Under a new SAK: gateway A installed another receive key.
    let la = lab.log("ga");
    assert!(la.matches("receiving with key").count() > rx_before, "{la}");
    ping(&lab, "hb", "fd01::2");
}

/// Gateway `side`'s keychain lines: `(ckn, cak file)` pairs, preferred first.
fn keychain(keys: &[(&str, &str)]) -> String {
    let entries: Vec<String> = keys
        .iter()
        .map(|(ckn, file)| format!("{{ ckn = \"{ckn}\", cak_file = \"{file}\" }}"))
        .collect();
    format!("keychain = [ {} ]\n", entries.join(", "))
}

#[test]
fn a_cak_rollover_on_reload_loses_no_packet() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mka-rollover");
    lab.two_sites();
    lab.secret("old.cak", CAK);
    lab.secret(
        "new.cak",
        "8899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677\n",
    );
    let old = ("6f6c64", "old.cak");
    let new = ("6e6577", "new.cak");
    for side in ["a", "b"] {
        let cfg = mka_config(
            &lab,
            side,
            Wire::Udp,
            "gcm-aes-xpn-256",
            &keychain(&[old]),
            "",
        );
        spawn_gateway(&mut lab, side, &cfg);
    }
    route_across(&lab);
    lab.wait_for("a SAK in use", Duration::from_secs(15), || {
        lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key")
    });
    // A transfer runs across the whole rollover.
    lab.iperf3_server("iperf-roll", "hb", "5201");
    lab.spawn_in(
        "client-roll",
        "ha",
        Path::new("iperf3"),
        &["-c", "10.2.0.2", "-t", "8", "-J"],
    );
    std::thread::sleep(Duration::from_secs(1));
    // Step 1: the new key on both sides, preferred.
    for side in ["a", "b"] {
        mka_config(
            &lab,
            side,
            Wire::Udp,
            "gcm-aes-xpn-256",
            &keychain(&[new, old]),
            "",
        );
        lab.signal(&format!("g{side}"), "HUP");
        std::thread::sleep(Duration::from_millis(500));
    }
    lab.wait_for(
        "the new CA protecting the link",
        Duration::from_secs(10),
        || {
            ["ga", "gb"].iter().all(|g| {
                lab.log(g)
                    .contains("the keys of CKN 6e6577 protect the link")
            })
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    // Step 2: the old key goes.
    for side in ["a", "b"] {
        mka_config(
            &lab,
            side,
            Wire::Udp,
            "gcm-aes-xpn-256",
            &keychain(&[new]),
            "",
        );
        lab.signal(&format!("g{side}"), "HUP");
    }
    let (status, client) = lab.wait_exit("client-roll", Duration::from_secs(20));
    let _ = lab.stop("iperf-roll");
    assert_eq!(status, Some(0), "{client}");
    let report: serde_json::Value = serde_json::from_str(&client).unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    assert!(received > 10_000_000, "only {received} octets");
    // Traffic still flows under the new key alone.
    ping(&lab, "ha", "10.2.0.2");
    let (_, la) = lab.stop("ga");
    let (_, lb) = lab.stop("gb");
    for log in [&la, &lb] {
        assert_eq!(
            log.matches("reload: link mka: keychain of").count(),
            2,
            "{log}"
        );
        assert!(!log.contains("restarting it"), "{log}");
        // The old CAK's key is no longer accepted once the old pair is gone.
        assert!(
            log.contains("no longer accepted (its CAK left the keychain)"),
            "{log}"
        );
        no_frame_lost_to_key_changes(log);
    }
    eprintln!("CAK rollover: {received} octets, {retransmits} TCP retransmits");
}

#[test]
fn the_key_server_rekeys_at_the_pn_threshold() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mka-pn");
    lab.two_sites();
    // A threshold of 5000 PNs and no interval: every rekey is the PN's doing.
    start_mka_with(&mut lab, Wire::Udp, CAK, "rekey_pn = 5000\n");
    lab.wait_for("a SAK in use", Duration::from_secs(15), || {
        lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key")
    });
    let received = tcp_transfer(&mut lab, "pn", "10.2.0.2");
    assert!(received > 10_000_000, "only {received} octets");
    let (_, la) = lab.stop("ga");
    let (_, lb) = lab.stop("gb");
    let switches = la
        .matches("sending with key")
        .count()
        .max(lb.matches("sending with key").count());
    // Over 10 MB in frames of at most 1440 octets is over 7000 frames from gateway A: the
    // SAK changes at least once past 5000 PNs (a second takes some 25000 here).
    assert!(switches >= 2, "{la}\n{lb}");
    // Each key carries thousands of frames: no key is burnt through on stale PN readings.
    let frames = counter(&la, "OutPktsEncrypted");
    eprintln!("mka-pn: {switches} keys for {frames} frames");
    assert!(
        (switches as u64) <= frames / 5000 + 2,
        "{switches} keys for {frames} frames:\n{la}"
    );
    for log in [&la, &lb] {
        no_frame_lost_to_key_changes(log);
    }
}

/// The interface index of `dev` in `ns`, if it exists.
fn ifindex(lab: &Lab, ns: &str, dev: &str) -> Option<u32> {
    let out = lab.try_exec(ns, &["cat", &format!("/sys/class/net/{dev}/ifindex")]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .flatten()
}

#[test]
fn a_reload_touches_only_the_links_that_changed() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("reload-links");
    lab.add_ns("g");
    lab.exec("g", &["ip", "link", "set", "lo", "up"]);
    keys(&lab, "gcm-aes-128");
    // Each link sends with a key of its own (one key on two links is refused).
    for n in 0..3 {
        lab.secret(&format!("l{n}.sak"), &format!("{n:032x}"));
    }
    // Links over loopback UDP (no peer needed to run); each named by its interface.
    let link = |n: u16, mtu: u32| {
        format!(
            "[[link]]\nname = \"l{n}\"\ninterface = \"il{n}\"\ntransport = \"udp\"\n\
             local = \"127.0.0.1:{}\"\nremote = \"127.0.0.2:{}\"\nmtu = {mtu}\n\
             [link.macsec]\ncipher_suite = \"gcm-aes-128\"\nkeying = \"static\"\n\
             tx_sak_file = \"l{n}.sak\"\nrx_sak_file = \"b.sak\"\n",
            5000 + n,
            6000 + n
        )
    };
    let daemon = lab.daemon_section("state");
    let cfg = lab.file(
        "g.toml",
        &(daemon.clone() + &link(0, 1400) + &link(1, 1400)),
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn("g", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("both links up", Duration::from_secs(10), || {
        ifindex(&lab, "g", "il0").is_some() && ifindex(&lab, "g", "il1").is_some()
    });
    let il0 = ifindex(&lab, "g", "il0");
    // l1 goes, l2 comes, l0 stays as it is.
    std::fs::write(&cfg, daemon.clone() + &link(0, 1400) + &link(2, 1400)).unwrap();
    lab.signal("g", "HUP");
    lab.wait_for("il2 up and il1 gone", Duration::from_secs(10), || {
        ifindex(&lab, "g", "il2").is_some() && ifindex(&lab, "g", "il1").is_none()
    });
    assert_eq!(ifindex(&lab, "g", "il0"), il0, "l0 was not touched");
    // A change to l0 restarts l0 alone.
    let il2 = ifindex(&lab, "g", "il2");
    std::fs::write(&cfg, link(0, 1300) + &link(2, 1400)).unwrap();
    lab.signal("g", "HUP");
    lab.wait_for("l0 restarted", Duration::from_secs(10), || {
        lab.log("g")
            .contains("reload: link l0: changed; restarting it")
            && ifindex(&lab, "g", "il0").is_some_and(|i| Some(i) != il0)
    });
    assert_eq!(ifindex(&lab, "g", "il2"), il2, "l2 was not touched");
    let mtu = lab.exec("g", &["cat", "/sys/class/net/il0/mtu"]);
    assert_eq!(String::from_utf8_lossy(&mtu.stdout).trim(), "1300");
    // A new busy poll goes to l2's running workers: nothing restarts.
    let polled = link(2, 1400).replace("mtu = 1400\n", "mtu = 1400\nbusy_poll = \"0us\"\n");
    std::fs::write(&cfg, link(0, 1300) + &polled).unwrap();
    lab.signal("g", "HUP");
    lab.wait_for("l2's busy poll changed", Duration::from_secs(10), || {
        lab.log("g").contains("reload: link l2: busy_poll 0ns")
    });
    assert_eq!(ifindex(&lab, "g", "il2"), il2, "l2 was not restarted");
    assert!(!lab.log("g").contains("reload: link l2: changed"));
    // An invalid file changes nothing.
    std::fs::write(&cfg, "[[link]]\nname = \"l0\"\n").unwrap();
    lab.signal("g", "HUP");
    lab.wait_for("the reload refused", Duration::from_secs(10), || {
        lab.log("g").contains("the running one stays")
    });
    assert!(ifindex(&lab, "g", "il0").is_some() && ifindex(&lab, "g", "il2").is_some());
    let (status, log) = lab.stop("g");
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("reload: link l1: removed"), "{log}");
}

#[test]
fn a_bandwidth_shapes_what_goes_into_the_link() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("shape");
    lab.two_sites();
    keys(&lab, "gcm-aes-128");
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    for side in ["a", "b"] {
        let cfg = config(&lab, side, "gcm-aes-128", Wire::Udp, (0, 0), 1);
        if side == "a" {
            let text = std::fs::read_to_string(&cfg).unwrap();
            let shaped = text.replace("queues = 1\n", "queues = 1\nbandwidth = \"20Mbps\"\n");
            assert_ne!(shaped, text);
            std::fs::write(&cfg, shaped).unwrap();
        }
        lab.spawn(
            &format!("g{side}"),
            bin,
            &["--config", cfg.to_str().unwrap()],
        );
    }
    route_across(&lab);
    ping(&lab, "ha", "10.2.0.2");
    // A to B is shaped to 20 Mb/s; B to A is not.
    lab.iperf3_server("iperf-shape", "hb", "5201");
    let out = lab.try_exec("ha", &["iperf3", "-c", "10.2.0.2", "-t", "3", "-J"]);
    let _ = lab.stop("iperf-shape");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let bps = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    eprintln!("shaped to 20 Mb/s: {:.1} Mb/s received", bps / 1e6);
    // The protected frames carry some 60 octets more than the packets: a little under 20.
    assert!((8e6..=21e6).contains(&bps), "{bps}");
    lab.iperf3_server("iperf-back", "ha", "5201");
    let out = lab.try_exec("hb", &["iperf3", "-c", "10.1.0.2", "-t", "1", "-J"]);
    let _ = lab.stop("iperf-back");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let back = report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap();
    assert!(back > 100e6, "the other direction is not shaped: {back}");
}

/// Brings gateway `side` (a or b) back with its config, after a restart, and routes across
/// the link again (after a SIGTERM the routes went with the TUN interface; after a kill -9
/// both stay, and the new run attaches to the interface).
fn respawn_gateway(lab: &mut Lab, side: &str) {
    let cfg = lab.dir.join(format!("{side}.toml"));
    spawn_gateway(lab, side, cfg.to_str().unwrap());
    reroute(lab, side);
}

/// Waits for gateway `side`'s il0 and routes the far site through it.
fn reroute(lab: &Lab, side: &str) {
    let ns = format!("g{side}");
    lab.wait_for("il0 up again", Duration::from_secs(10), || {
        interface_up(lab, &ns)
    });
    let (v4, v6) = if side == "a" {
        ("10.2.0.0/24", "fd02::/64")
    } else {
        ("10.1.0.0/24", "fd01::/64")
    };
    // A link restarted by a reload goes and comes back after the log says so: the old
    // interface may still be up for a moment, then gone.
    for prefix in [v4, v6] {
        lab.wait_for("a route through il0", Duration::from_secs(10), || {
            lab.try_exec(&ns, &["ip", "route", "replace", prefix, "dev", "il0"])
                .status
                .success()
                && interface_up(lab, &ns)
        });
    }
}

/// Pings until one answer comes, for at most `timeout`: after a receiver's crash, the
/// sender's first frames may fall below the PNs the receiver had reserved.
fn ping_until(lab: &Lab, from: &str, to: &str, timeout: Duration) {
    lab.wait_for(&format!("{to} to answer {from}"), timeout, || {
        lab.try_exec(from, &["ping", "-c", "1", "-W", "1", to])
            .status
            .success()
    });
}

/// (SCI, AN, PN) of each protected frame from gateway A in a capture of the UDP underlay.
fn sci_an_pn_from_a(frames: &[Vec<u8>]) -> Vec<([u8; 8], u8, u32)> {
    frames
        .iter()
        .filter(|f| f.len() > 34 && f[26..30] == [192, 0, 2, 1])
        .filter_map(|f| {
            let t = sectag_at(f, Wire::Udp);
            let tag = f.get(t..t + 14)?;
            let mut sci = [0; 8];
            sci.copy_from_slice(&tag[6..14]);
            Some((
                sci,
                tag[0] & 0x03,
                u32::from_be_bytes(tag[2..6].try_into().unwrap()),
            ))
        })
        .collect()
}

#[test]
fn a_static_key_never_repeats_a_pn_across_restarts() {
    // Gateway A restarted by SIGTERM, by kill -9 and by a reload that restarts its link:
    // across all of them no (SCI, AN, PN) repeats under the one static key. Then gateway B
    // is killed and restarted, and frames from A captured before are replayed to it: refused.
    if !netns::require_root() {
        return;
    }
    let suite = "gcm-aes-128";
    let mut lab = Lab::new("pnrestart");
    lab.two_sites();
    keys(&lab, suite);
    // Two queues and lanes: both lanes' receive workers reserve PNs.
    start_gateways(&mut lab, suite, Wire::Udp, (0, 0), 2);
    lab.capture("cap-wan", "ga", "wan", "udp portrange 61440-61441");
    ping(&lab, "ha", "10.2.0.2");

    let (status, log) = lab.stop("ga");
    assert_eq!(status, Some(0), "{log}");
    respawn_gateway(&mut lab, "a");
    ping(&lab, "ha", "10.2.0.2");
    assert!(
        lab.log("ga").contains("sending from PN"),
        "{}",
        lab.log("ga")
    );

    // interlinkctl shows where the PNs are kept and how far they are reserved.
    let (code, out, err) = ctl(&lab, "a", &["--json", "show", "links"]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (next, reserved) = (
        l[0]["tx_sa"]["next_pn"].as_u64().unwrap(),
        l[0]["pn_state"]["tx_reserved_to"].as_u64().unwrap(),
    );
    assert!(reserved >= next && reserved < next + (1 << 21), "{l}");
    assert!(l[0]["pn_state"]["file"]
        .as_str()
        .unwrap()
        .ends_with("state-a/to-b.pn"));
    assert_eq!(l[0]["pn_state"]["write_errors"], 0);

    lab.kill9("ga");
    respawn_gateway(&mut lab, "a");
    let t = std::time::Instant::now();
    ping_until(&lab, "ha", "10.2.0.2", Duration::from_secs(10));
    eprintln!(
        "pnrestart: traffic through {:?} after the restart that followed kill -9",
        t.elapsed()
    );
    ping(&lab, "ha", "10.2.0.2");
    let log = lab.log("ga");
    // A crash gives up the rest of the reserved block (2^20 PNs for a 32-bit PN space).
    let from: u64 = log
        .split("sending from PN ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{log}"));
    assert!(from > 1 << 20, "after kill -9, PN {from}:\n{log}");

    // A reload that changes the link restarts it in place.
    let cfg = lab.dir.join("a.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("probe_interval = \"200ms\"", "probe_interval = \"300ms\""),
    )
    .unwrap();
    lab.signal("ga", "HUP");
    lab.wait_for("the link restarted", Duration::from_secs(10), || {
        let log = lab.log("ga");
        log.contains("changed; restarting it") && log.matches(": il0 up").count() >= 2
    });
    reroute(&lab, "a");
    ping(&lab, "ha", "10.2.0.2");

    // Gateway B crashes; what A sent before cannot be replayed to the new B.
    lab.kill9("gb");
    respawn_gateway(&mut lab, "b");
    ping_until(&lab, "ha", "10.2.0.2", Duration::from_secs(20));
    let captured = lab.stop_capture("cap-wan");
    let old: Vec<Vec<u8>> = captured
        .iter()
        .filter(|f| f.len() > 100 && f[26..30] == [192, 0, 2, 1])
        .take(5)
        .cloned()
        .collect();
    assert_eq!(old.len(), 5, "frames from A to replay");
    // As captured, their UDP checksums may be left to offload: none, as the forgers' have.
    let old: Vec<Vec<u8>> = old
        .into_iter()
        .map(|mut f| {
            fix_udp(&mut f);
            f
        })
        .collect();
    inject(&lab.ns("ga"), "wan", &old);
    ping(&lab, "ha", "10.2.0.2");
    let (status, log_b) = lab.stop("gb");
    assert_eq!(status, Some(0), "{log_b}");
    assert!(
        counter(&log_b, "InPktsLate") >= 5,
        "replayed frames not refused:\n{log_b}"
    );

    // Both lanes carried A's frames (probe requests go on every lane).
    let lane1 = captured
        .iter()
        .filter(|f| {
            f.len() > 38 && f[26..30] == [192, 0, 2, 1] && f[36..38] == 61441u16.to_be_bytes()
        })
        .count();
    assert!(lane1 > 0, "nothing from A on lane 1");
    assert!(lab.log("ga").contains("2 lanes"), "{}", lab.log("ga"));
    let seen = sci_an_pn_from_a(&captured);
    assert!(seen.len() > 40, "only {} frames from A", seen.len());
    let mut sorted = seen.clone();
    sorted.sort();
    let repeats: Vec<_> = sorted.windows(2).filter(|w| w[0] == w[1]).collect();
    assert!(repeats.is_empty(), "repeated (SCI, AN, PN): {repeats:?}");
    // The state file names the keys by hash only.
    let state = std::fs::read_to_string(lab.dir.join("state-a").join("to-b.pn")).unwrap();
    assert!(state.starts_with("interlink-pn-state 1\n"), "{state}");
    assert!(!state.contains(&KEY_A[..32]) && !state.contains(&KEY_B[..32]));
}

#[test]
fn a_static_link_without_its_state_directory_does_not_start() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("pnnostate");
    lab.two_sites();
    keys(&lab, "gcm-aes-128");
    let cfg = config(&lab, "a", "gcm-aes-128", Wire::Udp, (0, 0), 1);
    std::fs::remove_dir_all(lab.dir.join("state-a")).unwrap();
    spawn_gateway(&mut lab, "a", cfg.to_str().unwrap());
    let (status, log) = lab.wait_exit("ga", Duration::from_secs(10));
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("state-a"), "the error names the place:\n{log}");
}

#[test]
fn equal_scis_are_refused_by_check() {
    let dir = std::env::temp_dir().join(format!("il-samesci-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.sak"), &KEY_A[..32]).unwrap();
    std::fs::set_permissions(
        dir.join("a.sak"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let link = |local: &str, remote: &str, extra: &str| {
        format!(
            "[[link]]\nname = \"x\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
             local = \"{local}\"\nremote = \"{remote}\"\n[link.macsec]\n\
             cipher_suite = \"gcm-aes-128\"\nkeying = \"static\"\n\
             tx_sak_file = \"a.sak\"\nrx_sak_file = \"a.sak\"\n{extra}"
        )
    };
    let check = |text: &str| {
        let cfg = dir.join("c.toml");
        std::fs::write(&cfg, text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_interlinkd"))
            .args(["--check", "--config", cfg.to_str().unwrap()])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Explicit, and derived from one address on both ends.
    let (code, err) = check(&link(
        "192.0.2.1:61440",
        "192.0.2.2:61440",
        "sci = \"0200c00002010001\"\npeer_sci = \"0200c00002010001\"\n",
    ));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("c.toml:12:") && err.contains("our SCI and the peer's are both"));
    let (code, err) = check(&link("127.0.0.1:5000", "127.0.0.1:6000", ""));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("our SCI and the peer's are both 0200"),
        "{err}"
    );
    // IPv6 addresses that differ only above their last five octets get SCIs of their own.
    let (code, err) = check(&link("[fd00:a::1]:61440", "[fd00:b::1]:61440", ""));
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP datagram from gateway A's underlay address to B's, carrying `payload`.
fn udp_frame_to_b(payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    let mac = |m: &str| -> Vec<u8> {
        m.split(':')
            .map(|p| u8::from_str_radix(p, 16).unwrap())
            .collect()
    };
    f.extend(mac(netns::MAC_B));
    f.extend(mac(netns::MAC_A));
    f.extend([0x08, 0x00]);
    f.extend([
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2,
    ]);
    f.extend(61440u16.to_be_bytes());
    f.extend(61440u16.to_be_bytes());
    f.extend([0, 0, 0, 0]);
    f.extend_from_slice(payload);
    fix_udp(&mut f);
    f
}

/// An ICMP echo request from host A to host B carrying the marker, as an IPv4 packet.
fn marked_ping_packet() -> Vec<u8> {
    let mut p = vec![
        0x45, 0, 0, 0, 0, 1, 0, 0, 64, 1, 0, 0, 10, 1, 0, 2, 10, 2, 0, 2, 8, 0, 0, 0, 0, 1, 0, 1,
    ];
    p.extend_from_slice(MARKER);
    let len = p.len() as u16;
    p[2..4].copy_from_slice(&len.to_be_bytes());
    let sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    p[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    p
}

#[test]
fn unauthenticated_frames_never_reach_the_site_under_validate_check() {
    // With validate = "check", 802.1AE would deliver frames from an unknown SCI, and with a
    // bad ICV, when C is clear. interlink counts them and delivers none.
    if !netns::require_root() {
        return;
    }
    let suite = "gcm-aes-128";
    let mut lab = Lab::new("valcheck");
    lab.two_sites();
    keys(&lab, suite);
    for side in ["a", "b"] {
        let cfg = config(&lab, side, suite, Wire::Udp, (0, 0), 1);
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace("replay_window = ", "validate = \"check\"\nreplay_window = ");
        std::fs::write(&cfg, text).unwrap();
        spawn_gateway(&mut lab, side, cfg.to_str().unwrap());
    }
    route_across(&lab);
    ping(&lab, "ha", "10.2.0.2");
    let path = lab.dir.join("cap-lan-b.pcap");
    lab.spawn_in(
        "cap-lan-b",
        "gb",
        Path::new("tcpdump"),
        &[
            "-i",
            "lan",
            "--immediate-mode",
            "-U",
            "-n",
            "-w",
            path.to_str().unwrap(),
        ],
    );
    lab.wait_for("tcpdump to listen", Duration::from_secs(5), || {
        lab.log("cap-lan-b").contains("listening on")
    });
    // SecTAG: TCI with SC set and E = C = 0 (integrity only), AN 0, SL 0, a PN, an SCI;
    // then the user data (EtherType and an IPv4 packet) and a made-up ICV.
    let forge = |sci: [u8; 8], pn: u32| {
        let mut p = vec![0x20, 0];
        p.extend(pn.to_be_bytes());
        p.extend(sci);
        p.extend([0x08, 0x00]);
        p.extend(marked_ping_packet());
        // Secure data of at least 48 octets, as a short length of 0 demands.
        p.extend([0; 16]);
        p.extend([0x5a; 16]);
        udp_frame_to_b(&p)
    };
    let frames = [
        // An SCI the receiver does not know.
        forge([2, 0, 0xc6, 0x33, 0x64, 9, 0, 1], 1),
        // Gateway A's SCI, a PN far ahead, and an ICV that cannot be right.
        forge([2, 0, 192, 0, 2, 1, 0, 1], 0x7000_0000),
    ];
    inject(&lab.ns("ga"), "wan", &frames);
    ping(&lab, "ha", "10.2.0.2");
    std::thread::sleep(Duration::from_millis(300));
    lab.stop("cap-lan-b");
    let lan = pcap_frames(&path);
    assert!(lan.len() >= 6, "the capture saw the pings");
    let marked = lan
        .iter()
        .filter(|f| {
            f.windows(MARKER.len()).any(|w| w == MARKER)
                && f.windows(4).any(|w| w == [10, 1, 0, 2])
                && f.len() < 80
        })
        .count();
    assert_eq!(marked, 0, "a forged packet reached site B");
    let (status, log) = lab.stop("gb");
    assert_eq!(status, Some(0), "{log}");
    assert_eq!(counter(&log, "InPktsUnknownSCI"), 1, "{log}");
    assert_eq!(counter(&log, "InPktsInvalid"), 1, "{log}");
}

#[test]
fn an_mkpdu_flood_is_bounded_and_leaves_the_daemon_answering() {
    // Anyone who can reach the underlay port can send MKPDUs (they are checked only once
    // read). A flood is dropped and counted past a small queue; MKA stays live, and the
    // main loop (interlinkctl, BGP, the watchdog) keeps answering.
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("mkaflood");
    lab.two_sites();
    lab.secret("a.cak", CAK);
    lab.secret("b.cak", CAK);
    // MKA keys the link; eBGP runs across it (with the hold time at its least, 3 s).
    for (side, asn, id, peer, peer_asn) in [
        ("a", 65001, "192.0.2.1", "169.254.0.2", 65002),
        ("b", 65002, "192.0.2.2", "169.254.0.1", 65001),
    ] {
        let keys = format!("ckn = \"696e7465726c696e6b\"\ncak_file = \"{side}.cak\"\n");
        let cfg = mka_config(&lab, side, Wire::Udp, "gcm-aes-256", &keys, "");
        let mut text = std::fs::read_to_string(&cfg).unwrap();
        text.push_str(&format!(
            "\n[router]\nasn = {asn}\nrouter_id = \"{id}\"\n\n[[neighbor]]\n\
             address = \"{peer}\"\nremote_asn = {peer_asn}\nhold_time = 3\n"
        ));
        std::fs::write(&cfg, text).unwrap();
        spawn_gateway(&mut lab, side, &cfg);
    }
    route_across(&lab);
    lab.wait_for("a SAK in use", Duration::from_secs(15), || {
        lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key")
    });
    lab.wait_for("the BGP session", Duration::from_secs(20), || {
        lab.log("gb").contains("established")
    });
    // EAPOL-MKA frames of junk, from gateway A's underlay address and port.
    let mut eapol = vec![0x88, 0x8e, 3, 5, 0, 96];
    eapol.extend((0..96u8).map(|i| i.wrapping_mul(37)));
    let frame = udp_frame_to_b(&eapol);
    let frames = vec![frame; 20_000];
    let ns = lab.ns("ga");
    let flood = std::thread::spawn(move || {
        for _ in 0..5 {
            inject(&ns, "wan", &frames);
        }
    });
    let mut slowest = Duration::ZERO;
    while !flood.is_finished() {
        let t = std::time::Instant::now();
        let (code, _, err) = ctl(&lab, "b", &["status"]);
        assert_eq!(code, 0, "{err}");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    flood.join().unwrap();
    // Longer than the hold time: a session starved of its keepalives would be down now.
    std::thread::sleep(Duration::from_secs(4));
    eprintln!("mkaflood: slowest interlinkctl status during the flood: {slowest:?}");
    for side in ["ga", "gb"] {
        let log = lab.log(side);
        assert_eq!(log.matches("established").count(), 1, "{log}");
        assert!(
            !log.contains(") down:") && !log.contains(" down: "),
            "a session went down:\n{log}"
        );
    }
    let (_, n, _) = ctl(&lab, "b", &["--json", "show", "neighbors"]);
    let n: serde_json::Value = serde_json::from_str(&n).unwrap();
    assert_eq!(n[0]["state"], "established", "{n}");
    ping(&lab, "ha", "10.2.0.2");
    let (code, out, err) = ctl(&lab, "b", &["--json", "show", "links"]);
    assert_eq!(code, 0, "{err}");
    let l: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mka = &l[0]["mka"];
    assert_eq!(mka["live"], true, "{l}");
    let full = mka["drops"]["queue_full"].as_u64().unwrap_or(0);
    let malformed = mka["drops"]["malformed"].as_u64().unwrap_or(0);
    eprintln!("mkaflood: 100000 sent, {malformed} read and refused, {full} dropped unread");
    assert!(full > 0 && malformed > 0, "{l}");
    assert!(
        lab.log("gb").contains("MKPDU(s) dropped"),
        "{}",
        lab.log("gb")
    );
}

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from the state field (3).
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn a_tun_deleted_under_the_daemon_takes_the_link_down_and_back() {
    // `ip link del` of a link's TUN interface: the workers stop (they used to spin on the
    // error), a line says why, and the link comes back with a new interface.
    if !netns::require_root() {
        return;
    }
    let suite = "gcm-aes-128";
    let mut lab = Lab::new("tundel");
    lab.two_sites();
    keys(&lab, suite);
    start_gateways(&mut lab, suite, Wire::Udp, (0, 0), 2);
    ping(&lab, "ha", "10.2.0.2");
    let pid: u32 = String::from_utf8_lossy(&lab.exec("ga", &["pgrep", "-n", "interlinkd"]).stdout)
        .trim()
        .parse()
        .unwrap();
    lab.exec("ga", &["ip", "link", "del", "il0"]);
    lab.wait_for("the restart", Duration::from_secs(5), || {
        lab.log("ga").contains("was deleted from outside")
    });
    reroute(&lab, "a");
    ping_until(&lab, "ha", "10.2.0.2", Duration::from_secs(10));
    assert!(
        lab.log("ga").matches("il0 up").count() >= 2,
        "{}",
        lab.log("ga")
    );
    // Quiet afterwards: no thread spinning on a dead descriptor (a spinning worker burns
    // 100 ticks a second).
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    assert!(used < 50, "{used} ticks of CPU in 2 s");
    // A TUN interface by the link's name that someone else made is not taken over.
    let (status, log) = lab.stop("ga");
    assert_eq!(status, Some(0), "{log}");
    lab.exec("ga", &["ip", "tuntap", "add", "dev", "il0", "mode", "tun"]);
    let cfg = lab.dir.join("a.toml");
    spawn_gateway(&mut lab, "a", cfg.to_str().unwrap());
    let (status, log) = lab.wait_exit("ga", Duration::from_secs(10));
    assert_eq!(status, Some(1), "{log}");
    assert!(log.contains("il0"), "{log}");
}

/// Both gateways with MKA (XPN-256) on `wire` and `queues` (A's, B's): several transmit
/// queues send PNs out of order, so both sides have a window (as the peer's must be).
fn start_mka_queues(lab: &mut Lab, wire: Wire, queues: (usize, usize)) {
    lab.secret("a.cak", CAK);
    lab.secret("b.cak", CAK);
    for (side, q) in [("a", queues.0), ("b", queues.1)] {
        let keys = format!("ckn = \"696e7465726c696e6b\"\ncak_file = \"{side}.cak\"\n");
        let cfg = mka_config(
            lab,
            side,
            wire,
            "gcm-aes-xpn-256",
            &keys,
            "replay_window = 1024\n",
        );
        let text = std::fs::read_to_string(&cfg).unwrap().replace(
            "probe_interval = \"200ms\"\n",
            &format!("probe_interval = \"200ms\"\nqueues = {q}\n"),
        );
        std::fs::write(&cfg, text).unwrap();
        spawn_gateway(lab, side, &cfg);
    }
}

/// MKA over UDP with `queues` on each side: gateway A's transmit queues go out on lanes
/// (UDP ports 61440, 61441, ...) as far as gateway B says in its probes it receives on them,
/// each read there by a receive worker of its own, all validating under one SA (its PN state
/// shared): a TCP transfer of eight streams crosses with nothing dropped.
fn mka_lanes(
    test: &str,
    queues: (usize, usize),
    block: Option<u16>,
) -> std::collections::BTreeSet<u16> {
    let mut lab = Lab::new(test);
    lab.two_sites();
    // A firewall on gateway B that passes the first port only.
    if let Some(port) = block {
        lab.exec("gb", &["nft", "add", "table", "inet", "fw"]);
        lab.exec(
            "gb",
            &[
                "nft",
                "add chain inet fw in { type filter hook input priority 0; }",
            ],
        );
        lab.exec(
            "gb",
            &["nft", &format!("add rule inet fw in udp dport {port} drop")],
        );
    }
    start_mka_queues(&mut lab, Wire::Udp, queues);
    route_across(&lab);
    ping_until(&lab, "ha", "10.2.0.2", Duration::from_secs(20));
    // Probes have gone both ways: each side knows the other's lanes.
    std::thread::sleep(Duration::from_millis(500));
    lab.capture("cap-lanes", "ga", "wan", "udp and src host 192.0.2.1");
    lab.iperf3_server("iperf-lanes", "hb", "5201");
    let out = lab.try_exec(
        "ha",
        &["iperf3", "-c", "10.2.0.2", "-t", "2", "-P", "8", "-J"],
    );
    let _ = lab.stop("iperf-lanes");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    assert!(received > 1_000_000, "{received} octets");
    let frames = lab.stop_capture("cap-lanes");
    // The lanes that carry data (probes, small, go on every lane).
    let ports: std::collections::BTreeSet<u16> = frames
        .iter()
        .filter(|f| f.len() > 200 && f[12..14] == [0x08, 0x00] && f[23] == 17)
        .map(|f| u16::from_be_bytes([f[34], f[35]]))
        .collect();
    let (_, out, _) = ctl(&lab, "b", &["--json", "show", "links"]);
    let l: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(l[0]["rx_dropped"], 0, "{l}");
    // MKA over UDP widens the replay window (1024 configured), lanes or not: a lagging
    // receive worker's frames, or those of the peer's queues, are not late.
    for (side, q) in [("ga", queues.0), ("gb", queues.1)] {
        let log = lab.log(side);
        assert!(log.contains("replay window 65536"), "{log}");
        if q > 1 {
            assert!(
                log.contains(&format!("{q} queues, {q} lanes, replay window")),
                "{log}"
            );
        } else {
            assert!(!log.contains(" lanes"), "{log}");
        }
    }
    eprintln!("{test}: queues {queues:?}, {received} octets, source ports seen {ports:?}");
    ports
}

#[test]
fn udp_mka_spreads_over_lanes() {
    if !netns::require_root() {
        return;
    }
    let ports = mka_lanes("lanes2", (2, 2), None);
    assert_eq!(ports, [61440, 61441].into_iter().collect());
}

/// A lane whose port a firewall on the peer drops is never used: the peer says in its
/// probes that only lane 0 passes our probes, and every queue sends there; nothing is lost.
#[test]
fn udp_mka_leaves_a_lane_a_firewall_blocks() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("nft") {
        eprintln!("skipped: nft is not installed");
        return;
    }
    let ports = mka_lanes("lanesfw", (2, 2), Some(61441));
    assert_eq!(ports, [61440].into_iter().collect());
}

#[test]
fn udp_mka_uses_only_the_lanes_the_peer_has() {
    if !netns::require_root() {
        return;
    }
    // Gateway B receives on one lane: A's two queues both send on it.
    let ports = mka_lanes("lanes21", (2, 1), None);
    assert_eq!(ports, [61440].into_iter().collect());
}

/// Ethernet with MKA and three queues on each side: frames carry nothing the kernel could
/// spread them by, so helpers validate the receive worker's batches side by side and the
/// worker delivers them in the order they came. Eight TCP streams cross with no frame
/// dropped or late, and TCP sees no more reordering than the path itself makes.
#[test]
fn ethernet_mka_validates_on_helpers() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("eth-helpers");
    lab.two_sites();
    start_mka_queues(&mut lab, Wire::Ethernet, (3, 3));
    route_across(&lab);
    ping_until(&lab, "ha", "10.2.0.2", Duration::from_secs(20));
    for side in ["ga", "gb"] {
        let log = lab.log(side);
        assert!(
            log.contains("3 queues, 3 validation helpers, replay window 65536"),
            "{log}"
        );
    }
    lab.iperf3_server("iperf-helpers", "hb", "5201");
    let out = lab.try_exec(
        "ha",
        &["iperf3", "-c", "10.2.0.2", "-t", "3", "-P", "8", "-J"],
    );
    let _ = lab.stop("iperf-helpers");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let received = report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    assert!(received > 1_000_000, "{received} octets");
    ping(&lab, "hb", "fd01::2");
    for side in ["a", "b"] {
        let (_, out, _) = ctl(&lab, side, &["--json", "show", "links"]);
        let l: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(l[0]["rx_dropped"], 0, "{l}");
    }
    for side in ["ga", "gb"] {
        let (status, log) = lab.stop(side);
        assert_eq!(status, Some(0), "{log}");
        assert_eq!(counter(&log, "InPktsLate"), 0, "{log}");
        assert_eq!(counter(&log, "InPktsNotValid"), 0, "{log}");
        assert!(counter(&log, "InPktsOK") > 1000, "{log}");
    }
    eprintln!("ethernet helpers: {received} octets, {retransmits} TCP retransmits");
}

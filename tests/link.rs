//! Two sites joined by an interlink link, in network namespaces:
//! host A - gateway A - underlay - gateway B - host B, with interlinkd on both gateways,
//! on both transports: UDP over IPv4, and 802.1AE frames on the Ethernet underlay.

mod netns;

use std::path::Path;
use std::time::Duration;

use netns::Lab;

const KEY_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
const KEY_B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfefff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n";

const MAC_A: &str = "02:00:00:00:00:0a";
const MAC_B: &str = "02:00:00:00:00:0b";

#[derive(Clone, Copy)]
enum Wire {
    Udp,
    Ethernet,
}

fn config(lab: &Lab, side: &str, suite: &str, wire: Wire) -> std::path::PathBuf {
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
    let transport = match wire {
        Wire::Udp => {
            format!("transport = \"udp\"\nlocal = \"{me}:4789\"\nremote = \"{peer}:4789\"")
        }
        Wire::Ethernet => format!(
            "transport = \"ethernet\"\nunderlay = \"wan\"\npeer_mac = \"{}\"",
            if side == "a" { MAC_B } else { MAC_A }
        ),
    };
    lab.file(
        &format!("{side}.toml"),
        &format!(
            r#"
[[link]]
name = "to-{peer_side}"
interface = "il0"
addresses = ["{tun4}", "{tun6}"]
{transport}
probe_interval = "200ms"

[link.macsec]
cipher_suite = "{suite}"
keying = "static"
tx_sak_file = "{tx}"
rx_sak_file = "{rx}"
{xpn}"#,
            peer_side = if side == "a" { "b" } else { "a" },
        ),
    )
}

/// Builds the five-node topology; interlinkd is not started yet.
fn topology(lab: &mut Lab) {
    for ns in ["ha", "ga", "gb", "hb"] {
        lab.add_ns(ns);
    }
    lab.veth("ha", "eth0", "ga", "lan");
    lab.veth("ga", "wan", "gb", "wan");
    lab.exec("ga", &["ip", "link", "set", "wan", "address", MAC_A]);
    lab.exec("gb", &["ip", "link", "set", "wan", "address", MAC_B]);
    lab.veth("gb", "lan", "hb", "eth0");
    lab.addr("ha", "eth0", "10.1.0.2/24");
    lab.addr("ha", "eth0", "fd01::2/64");
    lab.addr("ga", "lan", "10.1.0.1/24");
    lab.addr("ga", "lan", "fd01::1/64");
    lab.addr("ga", "wan", "192.0.2.1/24");
    lab.addr("gb", "wan", "192.0.2.2/24");
    lab.addr("gb", "lan", "10.2.0.1/24");
    lab.addr("gb", "lan", "fd02::1/64");
    lab.addr("hb", "eth0", "10.2.0.2/24");
    lab.addr("hb", "eth0", "fd02::2/64");
    lab.route("ha", &["default", "via", "10.1.0.1"]);
    lab.route("ha", &["default", "via", "fd01::1"]);
    lab.route("hb", &["default", "via", "10.2.0.1"]);
    lab.route("hb", &["default", "via", "fd02::1"]);
    lab.forwarding("ga");
    lab.forwarding("gb");
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

fn start_gateways(lab: &mut Lab, suite: &str, wire: Wire) {
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    for side in ["a", "b"] {
        let cfg = config(lab, side, suite, wire);
        let cfg = cfg.to_str().unwrap().to_owned();
        lab.spawn(&format!("g{side}"), bin, &["--config", &cfg]);
    }
    lab.wait_for("both il0 interfaces up", Duration::from_secs(10), || {
        interface_up(lab, "ga") && interface_up(lab, "gb")
    });
    lab.route("ga", &["10.2.0.0/24", "dev", "il0"]);
    lab.route("ga", &["fd02::/64", "dev", "il0"]);
    lab.route("gb", &["10.1.0.0/24", "dev", "il0"]);
    lab.route("gb", &["fd01::/64", "dev", "il0"]);
}

fn ping(lab: &Lab, from: &str, to: &str) {
    let out = lab.try_exec(from, &["ping", "-c", "3", "-i", "0.2", "-W", "2", to]);
    assert!(
        out.status.success(),
        "ping {to} from {from} failed:\n{}\n--- ga.log\n{}\n--- gb.log\n{}",
        String::from_utf8_lossy(&out.stdout),
        lab.log("ga"),
        lab.log("gb")
    );
}

fn hosts_reach_each_other(suite: &str, wire: Wire, test: &str) {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new(test);
    topology(&mut lab);
    keys(&lab, suite);
    start_gateways(&mut lab, suite, wire);
    ping(&lab, "ha", "10.2.0.2");
    ping(&lab, "hb", "10.1.0.2");
    ping(&lab, "ha", "fd02::2");
    ping(&lab, "hb", "fd01::2");
    // The tunnel addresses answer too: the gateways reach each other across the link.
    ping(&lab, "ga", "169.254.0.2");
    ping(&lab, "ga", "fd00::2");
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

#[test]
fn udp_gcm_aes_256_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-256", Wire::Udp, "udp256");
}

#[test]
fn udp_gcm_aes_xpn_256_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-xpn-256", Wire::Udp, "udpxpn");
}

#[test]
fn ethernet_gcm_aes_128_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-128", Wire::Ethernet, "eth128");
}

#[test]
fn ethernet_gcm_aes_xpn_256_carries_ipv4_and_ipv6() {
    hosts_reach_each_other("gcm-aes-xpn-256", Wire::Ethernet, "ethxpn");
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

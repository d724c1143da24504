//! The configuration parser on whole files: what parses, and what each mistake says.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use interlink_config::{Config, Keying, MacAddr, Transport};
use interlink_macsec::{CipherSuite, ValidateFrames};

/// A directory of key files for one test, removed when dropped.
struct KeyDir(PathBuf);

impl KeyDir {
    fn new(test: &str) -> KeyDir {
        let dir =
            std::env::temp_dir().join(format!("interlink-config-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        KeyDir(dir)
    }

    fn key(&self, name: &str, hex: &str, mode: u32) -> &Self {
        let path = self.0.join(name);
        std::fs::write(&path, hex).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        self
    }

    fn parse(&self, text: &str) -> Result<Config, Vec<String>> {
        Config::parse(Path::new("interlink.toml"), text, &self.0)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const K128_A: &str = "000102030405060708090a0b0c0d0e0f\n";
const K128_B: &str = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff\n";
const K256: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const UDP_LINK: &str = r#"
[[link]]
name = "site-b"
interface = "il-b"
addresses = ["169.254.10.1/30", "fd00:10::1/125"]
transport = "udp"
local = "192.0.2.1:61440"
remote = "192.0.2.2:61440"

[link.macsec]
cipher_suite = "gcm-aes-128"
keying = "static"
tx_sak_file = "tx.sak"
rx_sak_file = "rx.sak"
"#;

fn keys(test: &str) -> KeyDir {
    let d = KeyDir::new(test);
    d.key("tx.sak", K128_A, 0o600).key("rx.sak", K128_B, 0o400);
    d
}

#[test]
fn a_udp_link_parses_with_defaults() {
    let d = keys("udp");
    let c = d.parse(UDP_LINK).unwrap();
    assert_eq!(c.links.len(), 1);
    let l = &c.links[0];
    assert_eq!((l.name.as_str(), l.interface.as_str()), ("site-b", "il-b"));
    assert_eq!(l.addresses.len(), 2);
    assert_eq!(l.addresses[1].to_string(), "fd00:10::1/125");
    assert_eq!(
        l.transport,
        Transport::Udp {
            local: "192.0.2.1:61440".parse().unwrap(),
            remote: "192.0.2.2:61440".parse().unwrap()
        }
    );
    assert_eq!(l.mtu, None);
    assert_eq!(l.probe_interval, std::time::Duration::from_secs(1));
    assert_eq!(l.macsec.cipher_suite, CipherSuite::GcmAes128);
    assert_eq!(l.macsec.replay_window, 0);
    assert_eq!(l.macsec.validate, ValidateFrames::Strict);
    let Keying::Static(k) = &l.macsec.keying else {
        panic!("static keying")
    };
    assert_eq!(k.tx_sak.as_bytes()[15], 0x0f);
    assert_eq!(k.rx_sak.as_bytes()[0], 0xf0);
    assert_eq!(
        (k.an.value(), k.port, k.sci, k.xpn.is_some()),
        (0, 1, None, false)
    );
    // Keys never reach a debug print.
    assert!(!format!("{c:?}").contains("0f"));
    // An address without a port takes the default one, unregistered (not VXLAN's 4789).
    let c = d
        .parse(
            &UDP_LINK
                .replace("\"192.0.2.1:61440\"", "\"192.0.2.1\"")
                .replace("\"192.0.2.2:61440\"", "\"[2001:db8::2]\""),
        )
        .unwrap_err();
    assert!(c[0].contains("different address families"), "{c:?}");
    let c = d
        .parse(&UDP_LINK.replace("\"192.0.2.1:61440\"", "\"192.0.2.1\""))
        .unwrap();
    assert_eq!(
        c.links[0].transport,
        Transport::Udp {
            local: "192.0.2.1:61440".parse().unwrap(),
            remote: "192.0.2.2:61440".parse().unwrap()
        }
    );
    assert_eq!(interlink_config::DEFAULT_UDP_PORT, 61440);
}

#[test]
fn an_ethernet_xpn_link_parses() {
    let d = KeyDir::new("eth");
    d.key("tx", K256, 0o600).key("rx", K256, 0o600);
    let c = d
        .parse(
            r#"
[[link]]
name = "dc2"
interface = "il-dc2"
transport = "ethernet"
underlay = "eth1"
peer_mac = "02:00:00:00:00:02"
mtu = 1400
probe_interval = "250ms"
[link.macsec]
cipher_suite = "gcm-aes-xpn-256"
keying = "static"
tx_sak_file = "tx"
rx_sak_file = "rx"
an = 2
rx_an = 3
port = 7
tx_ssci = 1
rx_ssci = 2
salt = "000102030405060708090a0b"
replay_window = 64
validate = "check"
"#,
        )
        .unwrap();
    let l = &c.links[0];
    assert_eq!(
        l.transport,
        Transport::Ethernet {
            underlay: "eth1".into(),
            peer_mac: MacAddr([2, 0, 0, 0, 0, 2])
        }
    );
    assert_eq!(l.mtu, Some(1400));
    assert_eq!(l.probe_interval, std::time::Duration::from_millis(250));
    assert_eq!(l.macsec.validate, ValidateFrames::Check);
    let Keying::Static(k) = &l.macsec.keying else {
        panic!("static keying")
    };
    let x = k.xpn.as_ref().unwrap();
    assert_eq!(
        (k.an.value(), k.port, x.tx_ssci, x.rx_ssci, x.salt[11]),
        (2, 7, 1, 2, 0x0b)
    );
}

#[test]
fn unknown_fields_and_sections_are_refused_with_their_place() {
    let d = keys("unknown");
    let e = d
        .parse(&format!("{UDP_LINK}colour = \"blue\"\n"))
        .unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("interlink.toml:15:1: unknown field `colour`"),
        "{e:?}"
    );
    let e = d
        .parse("[telemetry]\nlisten = \"127.0.0.1:9477\"\n")
        .unwrap_err();
    assert!(
        e[0].starts_with("interlink.toml:1:2: unknown field `telemetry`"),
        "{e:?}"
    );
    let c = d.parse("[metrics]\nlisten = \"127.0.0.1:9477\"\n").unwrap();
    assert_eq!(c.metrics_listen, Some("127.0.0.1:9477".parse().unwrap()));
    let e = d.parse("[metrics]\nlisten = \"localhost\"\n").unwrap_err();
    assert!(
        e[0].contains("listen \"localhost\" is not an address and port"),
        "{e:?}"
    );
}

#[test]
fn toml_syntax_errors_have_their_place() {
    let d = keys("syntax");
    let e = d.parse("[[link]]\nname = \"x\n").unwrap_err();
    assert!(e[0].starts_with("interlink.toml:2:"), "{e:?}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let d = KeyDir::new("many");
    d.key("tx.sak", K128_A, 0o644).key("rx.sak", "0011", 0o600);
    let text = UDP_LINK
        .replace("il-b", "an-interface-name-too-long")
        .replace("192.0.2.2:61440", "[2001:db8::2]:61440")
        .replace("fd00:10::1/125", "fd00:10::1/130");
    let e = d.parse(&text).unwrap_err();
    assert_eq!(e.len(), 5, "{e:#?}");
    assert!(
        e[0].starts_with("interlink.toml:4:13: interface name"),
        "{}",
        e[0]
    );
    assert!(
        e[1].starts_with("interlink.toml:5:33: prefix length \"130\""),
        "{}",
        e[1]
    );
    assert!(
        e[2].contains(":8:10: local and remote are of different address families"),
        "{}",
        e[2]
    );
    assert!(
        e[3].contains("tx_sak_file")
            && e[3].contains("readable by group or others (mode 644) (chmod 600 "),
        "{}",
        e[3]
    );
    assert!(
        e[4].contains("rx_sak_file")
            && e[4].contains("holds 2 octets, the cipher suite takes 16 (32 hex digits)"),
        "{}",
        e[4]
    );
}

#[test]
fn transport_fields_must_match_the_transport() {
    let d = keys("transport");
    let e = d
        .parse(&UDP_LINK.replace(
            "transport = \"udp\"",
            "transport = \"udp\"\nunderlay = \"eth0\"",
        ))
        .unwrap_err();
    assert!(
        e[0].contains("underlay does not apply to the udp transport"),
        "{e:?}"
    );
    let e = d
        .parse(&UDP_LINK.replace("remote = \"192.0.2.2:61440\"\n", ""))
        .unwrap_err();
    assert!(
        e[0].contains(
            "a udp link needs remote (remote = \"ADDRESS:PORT\" (or ADDRESS alone for port 61440))"
        ),
        "{e:?}"
    );
    let e = d
        .parse(&UDP_LINK.replace("\"udp\"", "\"gre\""))
        .unwrap_err();
    assert!(
        e[0].contains("unknown transport \"gre\" (\"udp\" or \"ethernet\")"),
        "{e:?}"
    );
}

#[test]
fn keying_and_suite_mistakes() {
    let d = keys("keying");
    let e = d
        .parse(&UDP_LINK.replace("gcm-aes-128", "gcm-aes-xpn-128"))
        .unwrap_err();
    assert!(
        e[0].contains("gcm-aes-xpn-128 with static keys needs tx_ssci, rx_ssci and salt"),
        "{e:?}"
    );
    let e = d
        .parse(&UDP_LINK.replace("keying = \"static\"", "keying = \"static\"\nsalt = \"00\""))
        .unwrap_err();
    assert!(
        e[0].contains("salt only applies to the XPN cipher suites"),
        "{e:?}"
    );
    // Static keying with what only MKA takes.
    let e = d
        .parse(&UDP_LINK.replace(
            "keying = \"static\"",
            "keying = \"static\"\nckn = \"01\"\nrekey_interval = \"1h\"",
        ))
        .unwrap_err();
    assert!(e[0].contains("ckn is for keying \"mka\""), "{e:?}");
    assert!(
        e[1].contains("rekey_interval is for keying \"mka\""),
        "{e:?}"
    );
    // MKA keying without its CKN and CAK, and with static keying's files.
    let e = d
        .parse(&UDP_LINK.replace("keying = \"static\"", "keying = \"mka\""))
        .unwrap_err();
    assert!(
        e.iter()
            .any(|e| e.contains("tx_sak_file is for static keying")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("MKA keying needs ckn")),
        "{e:?}"
    );
    assert!(
        e.iter().any(|e| e.contains("MKA keying needs cak_file")),
        "{e:?}"
    );
    let e = d
        .parse(&UDP_LINK.replace("gcm-aes-128", "aes-ccm"))
        .unwrap_err();
    assert!(e[0].contains("unknown cipher suite \"aes-ccm\""), "{e:?}");
    let e = d
        .parse(&UDP_LINK.replace(
            "keying = \"static\"",
            "keying = \"static\"\nan = 4\nrx_an = -1\nport = 70000",
        ))
        .unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("an 4 is out of range (0 to 3)"), "{e:?}");
    assert!(e[1].contains("rx_an -1 is out of range (0 to 3)"), "{e:?}");
    assert!(
        e[2].contains("port 70000 is out of range (1 to 65535)"),
        "{e:?}"
    );
    let e = d
        .parse(&UDP_LINK.replace("tx_sak_file = \"tx.sak\"", "tx_sak_file = \"missing.sak\""))
        .unwrap_err();
    assert!(e[0].contains("missing.sak: No such file"), "{e:?}");
}

#[test]
fn links_must_be_unique() {
    let d = keys("unique");
    let e = d.parse(&format!("{UDP_LINK}{UDP_LINK}")).unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("link \"site-b\" is defined twice"), "{e:?}");
    assert!(
        e[1].contains("interface \"il-b\" is used by two links"),
        "{e:?}"
    );
    assert!(e[2].contains("sends with the same key"), "{e:?}");
}

#[test]
fn two_links_never_send_with_one_static_key() {
    // Each link counts its PNs in its own state: under one SAK, (key, IV) pairs would repeat.
    let d = keys("onekey");
    d.key("tx2.sak", K128_B, 0o600);
    let second = UDP_LINK
        .replace("\"site-b\"", "\"site-c\"")
        .replace("\"il-b\"", "\"il-c\"")
        .replace("192.0.2.2:61440", "192.0.2.3:61440");
    let e = d.parse(&format!("{UDP_LINK}{second}")).unwrap_err();
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("interlink.toml:27:15:")
            && e[0].contains("link \"site-c\" sends with the same key as link \"site-b\""),
        "{e:?}"
    );
    // Its own key (the file's content counts, not its name): fine.
    let second = second.replace("tx_sak_file = \"tx.sak\"", "tx_sak_file = \"tx2.sak\"");
    d.parse(&format!("{UDP_LINK}{second}")).unwrap();
}

#[test]
fn mtu_range_depends_on_ipv6() {
    let d = keys("mtu");
    let e = d
        .parse(&UDP_LINK.replace("transport = \"udp\"", "transport = \"udp\"\nmtu = 1000"))
        .unwrap_err();
    assert!(
        e[0].contains("mtu 1000 is out of range (1280 to 65535; IPv6 needs at least 1280)"),
        "{e:?}"
    );
}

#[test]
fn an_empty_file_has_no_links() {
    let d = KeyDir::new("empty");
    assert_eq!(d.parse("").unwrap().links.len(), 0);
}

#[test]
fn load_reports_a_missing_file() {
    let e = Config::load(Path::new("/nonexistent/interlink.toml")).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("/nonexistent/interlink.toml:0:0: cannot read the configuration"));
}

#[test]
fn the_example_config_parses() {
    let d = KeyDir::new("example");
    std::fs::create_dir_all(d.0.join("keys")).unwrap();
    d.key("keys/site-b.tx.sak", K256, 0o600)
        .key("keys/site-b.rx.sak", K256, 0o600);
    let text = include_str!("../../../config/interlink.toml");
    let c = d.parse(text).unwrap();
    assert_eq!(c.links.len(), 1);
    assert_eq!(c.links[0].macsec.cipher_suite, CipherSuite::GcmAesXpn256);
}

#[test]
fn queues_need_a_replay_window() {
    let d = keys("queues");
    let with = |extra: &str| {
        UDP_LINK.replace(
            "transport = \"udp\"",
            &format!("transport = \"udp\"\n{extra}"),
        )
    };
    let c = d.parse(UDP_LINK).unwrap();
    assert_eq!(c.links[0].queues, None);
    // Static keys without a window: one queue whatever the cores.
    assert_eq!(c.links[0].queues_for(16), 1);
    let e = d.parse(&with("queues = 2")).unwrap_err();
    assert!(
        e[0].contains("queues = 2 sends packet numbers out of order, and replay_window is 0 (set replay_window to at least 128 on both sides)"),
        "{e:?}"
    );
    let ok = with("queues = 2").replace(
        "keying = \"static\"",
        "keying = \"static\"\nreplay_window = 128",
    );
    assert_eq!(d.parse(&ok).unwrap().links[0].queues_for(1), 2);
    // A window set: a quarter of the cores, 1 to 8.
    let windowed = d
        .parse(&UDP_LINK.replace(
            "keying = \"static\"",
            "keying = \"static\"\nreplay_window = 128",
        ))
        .unwrap();
    let l = &windowed.links[0];
    assert_eq!(
        [2, 4, 8, 16, 64, 128].map(|c| l.queues_for(c)),
        [1, 1, 2, 4, 8, 8]
    );
    let e = d.parse(&with("queues = 0")).unwrap_err();
    assert!(e[0].contains("queues 0 is out of range (1 to 64)"), "{e:?}");
}

#[test]
fn port_zero_is_refused() {
    // The SCI port is 1 to 65535, as the hint has always said; 0 used to slip through.
    let d = keys("port0");
    let e = d
        .parse(&UDP_LINK.replace("keying = \"static\"", "keying = \"static\"\nport = 0"))
        .unwrap_err();
    assert!(
        e[0].contains("port 0 is out of range (1 to 65535)"),
        "{e:?}"
    );
}

#[test]
fn fib_defaults_and_settings() {
    use interlink_config::{Fib, OnShutdown};
    let d = keys("fib");
    let c = d.parse(UDP_LINK).unwrap();
    assert_eq!(c.fib, Fib::default());
    assert_eq!((c.fib.table, c.fib.metric, c.fib.protocol), (254, 20, 77));
    assert_eq!(c.fib.on_shutdown, OnShutdown::Withdraw);
    let c = d
        .parse(
            "[fib]\ntable = 100\nmetric = 50\nprotocol = 200\ngraceful_restart = \"30s\"\n\
             on_shutdown = \"keep\"\nnexthop_objects = false\n",
        )
        .unwrap();
    assert_eq!(
        c.fib,
        Fib {
            table: 100,
            metric: 50,
            protocol: 200,
            graceful_restart: std::time::Duration::from_secs(30),
            on_shutdown: OnShutdown::Keep,
            nexthop_objects: false,
        }
    );
    assert!(Fib::default().nexthop_objects, "on by default");
    assert_eq!(d.parse("[fib]\ntable = \"main\"\n").unwrap().fib.table, 254);
    let e = d
        .parse(
            "[fib]\ntable = \"local\"\nmetric = -1\nprotocol = 3\ngraceful_restart = \"soon\"\n\
             on_shutdown = \"flush\"\n",
        )
        .unwrap_err();
    assert_eq!(e.len(), 5, "{e:?}");
    assert!(
        e[0].starts_with("interlink.toml:2:9: table \"local\" is not known"),
        "{e:?}"
    );
    assert!(
        e[1].starts_with("interlink.toml:3:10: metric -1 is out of range"),
        "{e:?}"
    );
    assert!(
        e[2].contains("protocol 3 cannot mark interlink's routes"),
        "{e:?}"
    );
    assert!(e[2].contains("(5 to 255"), "{e:?}");
    assert!(e[3].starts_with("interlink.toml:5:20:"), "{e:?}");
    assert!(e[4].contains("on_shutdown \"flush\" is not known"), "{e:?}");
    for t in ["0", "255", "-5", "4294967296"] {
        let e = d.parse(&format!("[fib]\ntable = {t}\n")).unwrap_err();
        assert!(
            e[0].contains("cannot hold interlink's routes"),
            "{t}: {e:?}"
        );
    }
}

#[test]
fn static_routes_parse_and_their_mistakes_are_clear() {
    use interlink_config::StaticTarget;
    let d = keys("routes");
    let c = d
        .parse(
            r#"
[[route]]
prefix = "10.30.0.0/16"
via = ["192.0.2.1", "192.0.2.2"]

[[route]]
prefix = "2001:db8:30::/48"
via = ["fe80::1"]
dev = "ic-aws"

[[route]]
prefix = "10.31.0.0/16"
dev = "ic-aws"

[[route]]
prefix = "10.32.0.0/16"
type = "blackhole"

[[route]]
prefix = "0.0.0.0/0"
type = "unreachable"
"#,
        )
        .unwrap();
    let targets: Vec<(String, StaticTarget)> = c
        .routes
        .iter()
        .map(|r| (r.prefix.to_string(), r.target.clone()))
        .collect();
    assert_eq!(
        targets,
        [
            (
                "10.30.0.0/16".to_owned(),
                StaticTarget::Via {
                    gateways: vec!["192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap()],
                    dev: None
                }
            ),
            (
                "2001:db8:30::/48".to_owned(),
                StaticTarget::Via {
                    gateways: vec!["fe80::1".parse().unwrap()],
                    dev: Some("ic-aws".into())
                }
            ),
            (
                "10.31.0.0/16".to_owned(),
                StaticTarget::Dev("ic-aws".into())
            ),
            ("10.32.0.0/16".to_owned(), StaticTarget::Blackhole),
            ("0.0.0.0/0".to_owned(), StaticTarget::Unreachable),
        ]
    );

    let e = d
        .parse(
            r#"
[[route]]
prefix = "10.30.0.1/16"
via = ["192.0.2.1"]

[[route]]
prefix = "10.31.0.0/16"
via = ["2001:db8::1", "x"]

[[route]]
prefix = "2001:db8:30::/48"
via = ["fe80::1"]

[[route]]
prefix = "10.32.0.0/16"

[[route]]
prefix = "10.33.0.0/16"
type = "blackhole"
via = ["192.0.2.1"]

[[route]]
prefix = "10.34.0.0/16"
type = "prohibit"

[[route]]
prefix = "10.32.0.0/16"
type = "blackhole"
"#,
        )
        .unwrap_err();
    let want = [
        "interlink.toml:3:10: 10.30.0.1/16 has host bits set (did you mean 10.30.0.0/16?)",
        "interlink.toml:8:8: gateway 2001:db8::1 is not of the prefix's address family",
        "interlink.toml:8:23: \"x\" is not an IP address",
        "interlink.toml:12:8: link-local gateway fe80::1 needs its interface",
        "interlink.toml:14:1: a unicast route needs via or dev",
        "interlink.toml:19:8: a blackhole route takes neither via nor dev",
        "interlink.toml:24:8: route type \"prohibit\" is not known",
        "interlink.toml:27:10: a static route to 10.32.0.0/16 is defined twice",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  wanted {want}");
    }
}

#[test]
fn bgp_router_neighbors_and_networks() {
    let d = keys("bgp");
    d.key("md5", "s3cret\n", 0o600);
    let c = d
        .parse(
            r#"
[router]
asn = 4200000001
router_id = "192.0.2.1"

[[neighbor]]
address = "169.254.10.1"
remote_asn = 64512
password_file = "md5"
import = { prefixes = ["10.20.0.0/16 le 24", "10.30.0.0/16 ge 20 le 22"], max_prefixes = 100 }
export = { networks = true }

[[neighbor]]
address = "fd00:10::1"
remote_asn = 4200000001
hold_time = 0
passive = true

[bgp]
networks = ["10.10.0.0/16", "2001:db8:10::/48"]
multipath = true
"#,
        )
        .unwrap();
    let r = c.router.unwrap();
    assert_eq!(
        (r.asn, r.router_id.to_string()),
        (4_200_000_001, "192.0.2.1".into())
    );
    assert_eq!(c.neighbors.len(), 2);
    let n = &c.neighbors[0];
    assert_eq!(
        (n.remote_asn, n.hold_time, n.port, n.passive),
        (64512, 90, 179, false)
    );
    assert_eq!(
        n.password.as_ref().map(|p| p.as_bytes()),
        Some(&b"s3cret"[..])
    );
    // Keys never reach a log line through Debug.
    assert!(!format!("{n:?}").contains("s3cret"));
    let i = n.import.as_ref().unwrap();
    assert_eq!(i.max_prefixes, Some(100));
    let m = i.prefixes[0];
    assert!(m.matches("10.20.5.0".parse().unwrap(), 24));
    assert!(m.matches("10.20.0.0".parse().unwrap(), 16));
    assert!(!m.matches("10.20.5.128".parse().unwrap(), 25));
    assert!(!m.matches("10.21.0.0".parse().unwrap(), 24));
    let m = i.prefixes[1];
    assert!(!m.matches("10.30.0.0".parse().unwrap(), 16));
    assert!(m.matches("10.30.4.0".parse().unwrap(), 22));
    assert!(n.export.as_ref().unwrap().networks);
    assert_eq!(
        (c.neighbors[1].hold_time, c.neighbors[1].passive),
        (0, true)
    );
    assert!(c.neighbors[1].import.is_none());
    assert_eq!(c.bgp.networks.len(), 2);
    assert!(c.bgp.multipath);
}

#[test]
fn bgp_mistakes_are_clear() {
    let d = keys("bgp-bad");
    d.key("open", "x\n", 0o644);
    let e = d
        .parse(
            r#"
[router]
asn = 0
router_id = "0.0.0.0"

[[neighbor]]
address = "169.254.10.x"
remote_asn = 64512
hold_time = 2
password_file = "open"
import = { prefixes = ["10.20.0.0/16 le 8", "10.20.0.0/16 foo 3"], max_prefixes_action = "ignore" }

[[neighbor]]
address = "169.254.10.2"
remote_asn = 64512

[[neighbor]]
address = "169.254.10.2"
remote_asn = 64512
"#,
        )
        .unwrap_err();
    let want = [
        "interlink.toml:3:7: asn 0 is out of range",
        "interlink.toml:4:13: router_id \"0.0.0.0\" is not an IPv4 address",
        "interlink.toml:7:11: \"169.254.10.x\" is not an IP address",
        "interlink.toml:9:13: hold_time 2 is not allowed",
        "interlink.toml:10:17: password_file",
        "interlink.toml:11:24: the lengths must satisfy 16 <= ge <= le",
        "interlink.toml:11:45: \"foo\" is not",
        "interlink.toml:11:90: max_prefixes_action \"ignore\" is not known",
        "interlink.toml:18:11: neighbor 169.254.10.2 is defined twice",
    ];
    assert_eq!(e.len(), want.len(), "{e:#?}");
    for (got, want) in e.iter().zip(want) {
        assert!(got.starts_with(want), "{got}\n  wanted {want}");
    }
    // A neighbor without [router].
    let e = d
        .parse("[[neighbor]]\naddress = \"169.254.10.2\"\nremote_asn = 64512\n")
        .unwrap_err();
    assert!(
        e[0].contains("a neighbor needs the [router] section"),
        "{e:?}"
    );
}

#[test]
fn mka_keying() {
    let d = keys("mka");
    d.key("link.cak", "00112233445566778899aabbccddeeff\n", 0o600);
    d.key("open.cak", "00112233445566778899aabbccddeeff\n", 0o644);
    let link = |extra: &str| {
        format!(
            "[[link]]\nname = \"l\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
             local = \"192.0.2.1:61440\"\nremote = \"192.0.2.2:61440\"\n[link.macsec]\n\
             cipher_suite = \"gcm-aes-256\"\nkeying = \"mka\"\n{extra}"
        )
    };
    let c = d
        .parse(&link(
            "ckn = \"6162636465666768\"\ncak_file = \"link.cak\"\nrekey_interval = \"1h\"\n",
        ))
        .unwrap();
    let interlink_config::Keying::Mka(m) = &c.links[0].macsec.keying else {
        panic!("mka keying")
    };
    assert_eq!(m.keys.len(), 1);
    assert_eq!(m.keys[0].ckn, b"abcdefgh");
    assert_eq!(m.keys[0].cak.len(), 16);
    // The CAK never shows in Debug (a log line, a panic message).
    let debug = format!("{c:?}");
    assert!(debug.contains("16 octets, redacted"), "{debug}");
    assert!(!debug.contains(&format!("{:?}", m.keys[0].cak.as_bytes())));
    assert_eq!(m.rekey_pn, None);
    assert_eq!(m.key_server_priority, 16);
    assert_eq!(m.rekey_interval, Some(std::time::Duration::from_secs(3600)));
    // Over UDP with MKA the peer's window takes PNs out of order: queues by the cores, and
    // several queues need no replay_window.
    assert_eq!(c.links[0].queues_for(16), 4);
    let q = d
        .parse(
            &link("ckn = \"61\"\ncak_file = \"link.cak\"\n")
                .replace("transport = \"udp\"", "transport = \"udp\"\nqueues = 3"),
        )
        .unwrap();
    assert_eq!(q.links[0].queues_for(16), 3);
    let e = d
        .parse(&link(
            "ckn = \"zz\"\ncak_file = \"open.cak\"\nkey_server_priority = 300\n",
        ))
        .unwrap_err();
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].contains("ckn is not hex"), "{e:?}");
    assert!(e[1].contains("is readable by group or others"), "{e:?}");
    assert!(
        e[2].contains("key_server_priority 300 is out of range"),
        "{e:?}"
    );
    // XPN suites with MKA, and a PN threshold.
    let c = d
        .parse(
            &link("ckn = \"61\"\ncak_file = \"link.cak\"\nrekey_pn = 5000000000\n")
                .replace("gcm-aes-256", "gcm-aes-xpn-256"),
        )
        .unwrap();
    let interlink_config::Keying::Mka(m) = &c.links[0].macsec.keying else {
        panic!("mka keying")
    };
    assert_eq!(m.rekey_pn, Some(5_000_000_000));
    // Beyond a 32-bit PN without XPN.
    let e = d
        .parse(&link(
            "ckn = \"61\"\ncak_file = \"link.cak\"\nrekey_pn = 5000000000\n",
        ))
        .unwrap_err();
    assert!(
        e[0].contains("rekey_pn 5000000000 is out of range"),
        "{e:?}"
    );
}

#[test]
fn mka_keychain() {
    let d = keys("mka-chain");
    for f in ["a.cak", "b.cak", "c.cak", "d.cak"] {
        d.key(f, "00112233445566778899aabbccddeeff\n", 0o600);
    }
    let link = |extra: &str| {
        format!(
            "[[link]]\nname = \"l\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
             local = \"192.0.2.1:61440\"\nremote = \"192.0.2.2:61440\"\n[link.macsec]\n\
             cipher_suite = \"gcm-aes-256\"\nkeying = \"mka\"\n{extra}"
        )
    };
    let c = d
        .parse(&link(
            "keychain = [ { ckn = \"02\", cak_file = \"b.cak\" }, \
             { ckn = \"01\", cak_file = \"a.cak\" } ]\n",
        ))
        .unwrap();
    let interlink_config::Keying::Mka(m) = &c.links[0].macsec.keying else {
        panic!("mka keying")
    };
    let ckns: Vec<_> = m.keys.iter().map(|k| k.ckn.clone()).collect();
    assert_eq!(
        ckns,
        [vec![2], vec![1]],
        "in the order given: preferred first"
    );
    // Four keys, a repeated CKN, both forms at once.
    let four = "keychain = [ { ckn = \"01\", cak_file = \"a.cak\" }, \
                { ckn = \"02\", cak_file = \"b.cak\" }, { ckn = \"03\", cak_file = \"c.cak\" }, \
                { ckn = \"04\", cak_file = \"d.cak\" } ]\n";
    let e = d.parse(&link(four)).unwrap_err();
    assert!(e[0].contains("a keychain of 4 keys"), "{e:?}");
    let e = d
        .parse(&link(
            "keychain = [ { ckn = \"01\", cak_file = \"a.cak\" }, \
             { ckn = \"01\", cak_file = \"b.cak\" } ]\n",
        ))
        .unwrap_err();
    assert!(e[0].contains("this CKN is in the keychain twice"), "{e:?}");
    let e = d
        .parse(&link(
            "ckn = \"01\"\nkeychain = [ { ckn = \"01\", cak_file = \"a.cak\" } ]\n",
        ))
        .unwrap_err();
    assert!(
        e[0].contains("keychain and ckn/cak_file both given"),
        "{e:?}"
    );
    let e = d
        .parse(&link(
            "keychain = [ { ckn = \"01\", cak_file = \"a.cak\", priority = 1 } ]\n",
        ))
        .unwrap_err();
    assert!(e[0].contains("unknown field `priority`"), "{e:?}");
}

#[test]
fn replace_cak_takes_one_mka_key() {
    let d = keys("mka-replace");
    d.key("a.cak", "00112233445566778899aabbccddeeff\n", 0o600);
    d.key("b.cak", "00112233445566778899aabbccddeeff\n", 0o600);
    let link = |keying: &str, extra: &str| {
        format!(
            "[[link]]\nname = \"l\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
             local = \"192.0.2.1:61440\"\nremote = \"192.0.2.2:61440\"\n[link.macsec]\n\
             cipher_suite = \"gcm-aes-128\"\nkeying = \"{keying}\"\n{extra}"
        )
    };
    let mka = |c: &interlink_config::Config| match &c.links[0].macsec.keying {
        interlink_config::Keying::Mka(m) => m.replace_cak,
        _ => panic!("mka keying"),
    };
    let one = "ckn = \"01\"\ncak_file = \"a.cak\"\n";
    assert!(!mka(&d.parse(&link("mka", one)).unwrap()));
    assert!(mka(&d
        .parse(&link("mka", &format!("{one}replace_cak = true\n")))
        .unwrap()));
    let e = d
        .parse(&link(
            "mka",
            "keychain = [ { ckn = \"01\", cak_file = \"a.cak\" }, \
             { ckn = \"02\", cak_file = \"b.cak\" } ]\nreplace_cak = true\n",
        ))
        .unwrap_err();
    assert!(e[0].contains("replace_cak with a keychain"), "{e:?}");
    let e = d
        .parse(&link(
            "static",
            "tx_sak_file = \"a.cak\"\nrx_sak_file = \"b.cak\"\nreplace_cak = true\n",
        ))
        .unwrap_err();
    assert!(
        e.iter()
            .any(|e| e.contains("replace_cak is for keying \"mka\"")),
        "{e:?}"
    );
    // cak_lifetime: with replace_cak only, at least a minute, in days too.
    let lifetime = |c: &interlink_config::Config| match &c.links[0].macsec.keying {
        interlink_config::Keying::Mka(m) => m.cak_lifetime,
        _ => panic!("mka keying"),
    };
    let c = d
        .parse(&link(
            "mka",
            &format!("{one}replace_cak = true\ncak_lifetime = \"30d\"\n"),
        ))
        .unwrap();
    assert_eq!(
        lifetime(&c),
        Some(std::time::Duration::from_secs(30 * 86400))
    );
    let e = d
        .parse(&link("mka", &format!("{one}cak_lifetime = \"30d\"\n")))
        .unwrap_err();
    assert!(e[0].contains("cak_lifetime without replace_cak"), "{e:?}");
    let e = d
        .parse(&link(
            "mka",
            &format!("{one}replace_cak = true\ncak_lifetime = \"10s\"\n"),
        ))
        .unwrap_err();
    assert!(e[0].contains("cak_lifetime is too short"), "{e:?}");
}

#[test]
fn neighbors_are_checked_against_links_and_families() {
    let d = keys("bgp-links");
    d.key("a.sak", &"11".repeat(16), 0o600);
    d.key("b.sak", &"22".repeat(16), 0o600);
    let link = "[[link]]\nname = \"aws\"\ninterface = \"il0\"\n\
                addresses = [\"169.254.10.2/30\", \"fd00:10::2/125\"]\ntransport = \"udp\"\n\
                local = \"192.0.2.1:61440\"\nremote = \"192.0.2.2:61440\"\n[link.macsec]\n\
                cipher_suite = \"gcm-aes-128\"\nkeying = \"static\"\ntx_sak_file = \"a.sak\"\n\
                rx_sak_file = \"b.sak\"\n\n[router]\nasn = 65010\nrouter_id = \"192.0.2.1\"\n";
    let c = d
        .parse(&format!(
            "{link}\n[[neighbor]]\naddress = \"169.254.10.1\"\nremote_asn = 64512\nlink = \"aws\"\n\
             \n[[neighbor]]\naddress = \"fd00:10::1\"\nremote_asn = 64512\nlink = \"aws\"\n\
             families = [\"ipv6\", \"ipv4\"]\nimport = {{ prefixes = [\"10.0.0.0/8 le 24\"] }}\n"
        ))
        .unwrap();
    assert_eq!(c.neighbors[0].link.as_deref(), Some("aws"));
    assert_eq!(c.neighbors[0].families, [interlink_config::Afi::Ipv4]);
    assert_eq!(
        c.neighbors[1].families,
        [interlink_config::Afi::Ipv6, interlink_config::Afi::Ipv4]
    );
    let e = d
        .parse(&format!(
            "{link}\n[[neighbor]]\naddress = \"169.254.11.1\"\nremote_asn = 64512\nlink = \"aws\"\n\
             \n[[neighbor]]\naddress = \"169.254.10.1\"\nremote_asn = 64512\nlink = \"gcp\"\n\
             \n[[neighbor]]\naddress = \"169.254.10.2\"\nremote_asn = 64512\nlink = \"aws\"\n\
             \n[[neighbor]]\naddress = \"fd00:10::3\"\nremote_asn = 64512\nfamilies = [\"ipv6\", \"ipx\"]\n\
             export = {{ prefixes = [\"10.0.0.0/8\"] }}\n"
        ))
        .unwrap_err();
    let e = e.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    assert!(
        e[0].contains(
            "neighbor 169.254.11.1 is not on link aws (its addresses: 169.254.10.2/30, fd00:10::2/125)"
        ),
        "{e:?}"
    );
    assert!(e[1].contains("no link named \"gcp\" (links: aws)"), "{e:?}");
    assert!(
        e[2].contains("neighbor 169.254.10.2 is not on link aws"),
        "our own address: {e:?}"
    );
    assert!(
        e[3].contains("address family \"ipx\" is not known"),
        "{e:?}"
    );
    assert!(
        e[4].contains("an IPv4 prefix on a session that carries only IPv6"),
        "{e:?}"
    );
    assert_eq!(e.len(), 5, "{e:?}");
}

#[test]
fn policy_communities_and_settings() {
    let d = keys("bgp-policy");
    let base = "[router]\nasn = 65010\nrouter_id = \"192.0.2.1\"\n\n[[neighbor]]\n\
                address = \"169.254.10.1\"\nremote_asn = 64512\n";
    let c = d
        .parse(&format!(
            "{base}import = {{ prefixes = [\"10.0.0.0/8 le 24\"], match_communities = [\"7224:7300\"], \
             match_large_communities = [\"64512:1:2\"], local_pref = 200, med = 5, \
             communities = [\"no-export\"] }}\n\
             export = {{ networks = true, communities = [\"65010:1\"], large_communities = [\"65010:1:1\"], \
             med = 10, prepend = 3 }}\n"
        ))
        .unwrap();
    let n = &c.neighbors[0];
    let i = n.import.as_ref().unwrap();
    assert_eq!(i.max_prefixes_restart, std::time::Duration::from_secs(60));
    assert_eq!(i.match_communities, [7224 << 16 | 7300]);
    assert_eq!(i.match_large_communities, [[64512, 1, 2]]);
    assert_eq!((i.local_pref, i.med), (Some(200), Some(5)));
    assert_eq!(i.communities, [0xffff_ff01]);
    let e = n.export.as_ref().unwrap();
    assert_eq!(e.communities, [65010 << 16 | 1]);
    assert_eq!(e.large_communities, [[65010, 1, 1]]);
    assert_eq!((e.med, e.prepend), (Some(10), 3));
    let e = d
        .parse(&format!(
            "{base}import = {{ prefixes = [\"10.0.0.0/8\"], match_communities = [\"70000:1\"], \
             max_prefixes_restart = \"soon\" }}\n\
             export = {{ large_communities = [\"1:2\"], prepend = 11 }}\n"
        ))
        .unwrap_err();
    let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert!(
        e[0].contains("community \"70000:1\" is not ASN:VALUE"),
        "{e:?}"
    );
    assert!(e[1].contains("duration \"soon\""), "{e:?}");
    assert!(
        e[2].contains("large community \"1:2\" is not GLOBAL:LOCAL1:LOCAL2"),
        "{e:?}"
    );
    assert!(
        e[3].contains("prepend 11 is out of range (0 to 10)"),
        "{e:?}"
    );
}

#[test]
fn bandwidths() {
    use interlink_config::parse_bandwidth;
    assert_eq!(parse_bandwidth("1Gbps"), Ok(1_000_000_000));
    assert_eq!(parse_bandwidth("2.5Gbps"), Ok(2_500_000_000));
    assert_eq!(parse_bandwidth("500Mbps"), Ok(500_000_000));
    assert_eq!(parse_bandwidth("64kbps"), Ok(64_000));
    assert_eq!(parse_bandwidth("9600bps"), Ok(9600));
    for bad in ["1G", "fast", "Gbps", "1 Tbps", "-1Mbps"] {
        assert!(parse_bandwidth(bad).is_err(), "{bad}");
    }
    let d = keys("bandwidth");
    let e = d
        .parse(&UDP_LINK.replace("[link.macsec]", "bandwidth = \"10kbps\"\n[link.macsec]"))
        .unwrap_err();
    assert!(
        e[0].contains("bandwidth is too low (at least \"64kbps\")"),
        "{e:?}"
    );
}

#[test]
fn busy_poll() {
    use interlink_config::{parse_duration, DEFAULT_BUSY_POLL};
    assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
    assert_eq!(parse_duration("0us"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
    let d = keys("busy_poll");
    let link =
        |v: &str| UDP_LINK.replace("[link.macsec]", &format!("busy_poll = {v}\n[link.macsec]"));
    assert_eq!(
        d.parse(UDP_LINK).unwrap().links[0].busy_poll,
        DEFAULT_BUSY_POLL
    );
    let c = d.parse(&link("\"0us\"")).unwrap();
    assert_eq!(c.links[0].busy_poll, Duration::ZERO);
    let c = d.parse(&link("\"250us\"")).unwrap();
    assert_eq!(c.links[0].busy_poll, Duration::from_micros(250));
    let e = d.parse(&link("\"2ms\"")).unwrap_err();
    assert!(
        e[0].contains("busy_poll is too long (at most \"1ms\")"),
        "{e:?}"
    );
    let e = d.parse(&link("\"100ns\"")).unwrap_err();
    assert!(e[0].contains("has an unknown unit \"ns\""), "{e:?}");
}

/// `--check` reports every problem of a file in one run, in file order: an unknown key, a
/// wrong type, bad values and a key given in the wrong policy direction, and the parts that
/// are right are still checked.
#[test]
fn every_problem_in_a_file_is_reported_at_once() {
    let d = keys("every-problem");
    d.key("tx.sak", K128_A, 0o600).key("rx.sak", K128_B, 0o600);
    let text = UDP_LINK.replace(
        "remote = \"192.0.2.2:61440\"",
        "remote = \"192.0.2.2:x\"\ncolour = \"blue\"\nmtu = \"big\"",
    ) + r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "169.254.10.2"
remote_asn = 65002
import = { prefixes = ["10.0.0.0/33"] }
export = { networks = true, local_pref = 200 }
"#;
    let e = d.parse(&text).unwrap_err();
    let at = |needle: &str| {
        e.iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in {e:#?}"))
            .clone()
    };
    assert!(
        at("remote \"192.0.2.2:x\"").starts_with("interlink.toml:8:"),
        "{e:#?}"
    );
    assert!(
        at("unknown field `colour`").starts_with("interlink.toml:9:1:"),
        "{e:#?}"
    );
    assert!(
        at("invalid type: string \"big\"").starts_with("interlink.toml:10:7:"),
        "{e:#?}"
    );
    assert!(
        at("prefix length 33").starts_with("interlink.toml:25:"),
        "{e:#?}"
    );
    assert!(
        at("local_pref is not an export key").starts_with("interlink.toml:26:"),
        "{e:#?}"
    );
    assert_eq!(e.len(), 5, "{e:#?}");
    // In file order, as a compiler prints them.
    let lines: Vec<usize> = e
        .iter()
        .map(|l| l.split(':').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(lines.windows(2).all(|w| w[0] <= w[1]), "{e:#?}");
}

#[test]
fn max_received_and_soft_reconfiguration_are_import_keys_that_need_each_other() {
    let d = keys("max-received");
    let base = "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n[[neighbor]]\naddress = \"10.0.0.2\"\nremote_asn = 65002\n";
    let c = d
        .parse(&format!(
            "{base}import = {{ prefixes = [\"10.0.0.0/8 le 24\"], max_received = 500, soft_reconfiguration = true }}\n"
        ))
        .unwrap();
    let i = c.neighbors[0].import.as_ref().unwrap();
    assert_eq!((i.max_received, i.soft_reconfiguration), (Some(500), true));
    // Each needs the other.
    let e = d
        .parse(&format!("{base}import = {{ max_received = 500 }}\n"))
        .unwrap_err();
    assert!(
        e[0].contains("max_received counts the routes soft_reconfiguration keeps"),
        "{e:?}"
    );
    let e = d
        .parse(&format!(
            "{base}import = {{ soft_reconfiguration = true }}\n"
        ))
        .unwrap_err();
    assert!(e[0].contains("it needs max_received"), "{e:?}");
    let e = d
        .parse(&format!(
            "{base}export = {{ networks = true, max_received = 5 }}\n"
        ))
        .unwrap_err();
    assert!(e[0].contains("max_received is not an export key"), "{e:?}");
    let e = d
        .parse(&format!("{base}import = {{ max_received = 0 }}\n"))
        .unwrap_err();
    assert!(e[0].contains("max_received"), "{e:?}");
}

#[test]
fn local_address_and_ttl_security() {
    let d = keys("local-address");
    let base = "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n[[neighbor]]\naddress = \"10.0.0.2\"\nremote_asn = 65002\n";
    let c = d
        .parse(&format!(
            "{base}local_address = \"10.0.0.1\"\nttl_security = true\n"
        ))
        .unwrap();
    assert_eq!(
        c.neighbors[0].local_address,
        Some("10.0.0.1".parse().unwrap())
    );
    assert!(c.neighbors[0].ttl_security);
    let c = d.parse(base).unwrap();
    assert_eq!(c.neighbors[0].local_address, None);
    assert!(!c.neighbors[0].ttl_security);
    let e = d
        .parse(&format!("{base}local_address = \"fd00::1\"\n"))
        .unwrap_err();
    assert!(e[0].contains("is not of the neighbor's family"), "{e:?}");
    let e = d
        .parse(&format!("{base}local_address = \"here\"\n"))
        .unwrap_err();
    assert!(e[0].contains("\"here\" is not an IP address"), "{e:?}");
}

#[test]
fn bfd_on_a_neighbor() {
    use interlink_config::Bfd;
    use std::time::Duration;
    let d = keys("bfd");
    d.key("bfd.key", "s3cret\n", 0o600)
        .key("open.key", "s3cret", 0o644)
        .key("long.key", "twenty-one-octets-key", 0o600);
    let base = "[router]\nasn = 65001\nrouter_id = \"10.0.0.1\"\n\n[[neighbor]]\naddress = \"10.0.0.2\"\nremote_asn = 65002\n";
    assert_eq!(d.parse(base).unwrap().neighbors[0].bfd, None);
    let on = d.parse(&format!("{base}bfd = true\n")).unwrap();
    assert_eq!(on.neighbors[0].bfd, Some(Bfd::default()));
    assert_eq!(
        Bfd::default(),
        Bfd {
            interval: Duration::from_millis(300),
            multiplier: 3,
            auth: None,
        },
        "AWS Direct Connect's"
    );
    let off = d.parse(&format!("{base}bfd = false\n")).unwrap();
    assert_eq!(off.neighbors[0].bfd, None);
    let tuned = d
        .parse(&format!(
            "{base}bfd = {{ interval = \"50ms\", multiplier = 5 }}\n"
        ))
        .unwrap();
    assert_eq!(
        tuned.neighbors[0].bfd,
        Some(Bfd {
            interval: Duration::from_millis(50),
            multiplier: 5,
            auth: None,
        })
    );
    for (bad, says) in [
        ("bfd = { interval = \"1ms\" }", "bfd interval out of range"),
        ("bfd = { multiplier = 0 }", "multiplier"),
        ("bfd = { interval = \"soon\" }", "bfd"),
        ("bfd = { detect = 3 }", "detect"),
        ("bfd = { key_id = 2 }", "need a key_file"),
        (
            "bfd = { key_file = \"open.key\" }",
            "readable by group or others",
        ),
        ("bfd = { key_file = \"long.key\" }", "1 to 20 octets"),
        (
            "bfd = { key_file = \"bfd.key\", key_id = 300 }",
            "key_id out of range",
        ),
    ] {
        let e = d.parse(&format!("{base}{bad}\n")).unwrap_err();
        assert!(e[0].contains(says), "{bad}: {e:?}");
    }
    // Keyed SHA1: the key from its file (a trailing newline is not part of it).
    let c = d
        .parse(&format!(
            "{base}bfd = {{ key_file = \"bfd.key\", key_id = 4, meticulous = true }}\n"
        ))
        .unwrap();
    let auth = c.neighbors[0].bfd.as_ref().unwrap().auth.as_ref().unwrap();
    assert_eq!((auth.key_id, auth.meticulous), (4, true));
    assert_eq!(auth.key.as_bytes(), b"s3cret");
}

#[test]
fn flows_defaults_and_settings() {
    use interlink_config::Flows;
    let d = keys("flows");
    assert_eq!(
        d.parse(UDP_LINK).unwrap().flows,
        None,
        "off unless configured"
    );
    let c = d.parse("[flows]\n").unwrap();
    assert_eq!(c.flows, Some(Flows::default()));
    let f = Flows::default();
    assert_eq!(
        (
            f.sampling,
            f.active_timeout.as_secs(),
            f.idle_timeout.as_secs()
        ),
        (1, 60, 15)
    );
    let c = d
        .parse(
            "[flows]\ncollectors = [\"192.0.2.50:4739\", \"[2001:db8::50]:4739\"]\nsampling = 100\n\
             active_timeout = \"30s\"\nidle_timeout = \"5s\"\nmax_flows = 1000\nobservation_domain = 7\n",
        )
        .unwrap();
    let f = c.flows.unwrap();
    assert_eq!(f.collectors.len(), 2);
    assert_eq!(
        (f.sampling, f.max_flows, f.observation_domain),
        (100, 1000, 7)
    );
    assert_eq!(f.active_timeout.as_secs(), 30);
    let e = d
        .parse(
            "[flows]\ncollectors = [\"nowhere\", \"0.0.0.0:4739\", \"192.0.2.1:4739\", \"192.0.2.1:4739\"]\n\
             sampling = 0\nidle_timeout = \"10ms\"\nmax_flows = 0\ncolour = 1\n",
        )
        .unwrap_err();
    assert!(
        e.iter().any(|e| e.contains("unknown field `colour`")),
        "{e:?}"
    );
    let e = d
        .parse(
            "[flows]\ncollectors = [\"nowhere\", \"0.0.0.0:4739\", \"192.0.2.1:4739\", \"192.0.2.1:4739\"]\n\
             sampling = 0\nidle_timeout = \"10ms\"\nmax_flows = 0\n",
        )
        .unwrap_err();
    assert_eq!(e.len(), 6, "{e:?}");
    assert!(
        e[0].contains("collector \"nowhere\" is not an address and port"),
        "{e:?}"
    );
    assert!(e[1].contains("\"0.0.0.0:4739\""), "{e:?}");
    assert!(e[2].contains("listed twice"), "{e:?}");
    assert!(e[3].contains("sampling 0 is out of range"), "{e:?}");
    assert!(
        e.iter().any(|e| e.contains("max_flows 0 is out of range")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.contains("idle_timeout \"10ms\" is out of range")),
        "{e:?}"
    );
}

/// `interlink.d/*.toml` beside the main file follow it, in name order: links and neighbors
/// from there count as the main file's, key files relative to the main file's directory,
/// and a problem in one is reported at its own file, line and column.
#[test]
fn the_files_of_interlink_d_follow_the_main_file() {
    let d = keys("dropins");
    d.key("b.cak", "00112233445566778899aabbccddeeff\n", 0o600);
    let main = d.0.join("interlink.toml");
    std::fs::write(&main, UDP_LINK).unwrap();
    let dropins = d.0.join(interlink_config::DROPIN_DIR);
    std::fs::create_dir_all(&dropins).unwrap();
    let second = "# offered\n[[link]]\nname = \"paired\"\ninterface = \"il-p\"\ntransport = \"udp\"\n\
                  local = \"192.0.2.1:61450\"\nremote = \"192.0.2.3\"\noffer_expires = 1800000000\n\n\
                  [link.macsec]\ncipher_suite = \"gcm-aes-xpn-256\"\nkeying = \"mka\"\nckn = \"61\"\n\
                  cak_file = \"b.cak\"\n";
    std::fs::write(dropins.join("paired.toml"), second).unwrap();
    // Not .toml: ignored.
    std::fs::write(dropins.join("notes.txt"), "anything").unwrap();
    let c = Config::load(&main).unwrap();
    assert_eq!(c.links.len(), 2);
    assert_eq!(c.links[1].name, "paired");
    assert_eq!(c.links[1].offer_expires, Some(1_800_000_000));
    assert_eq!(c.links[0].offer_expires, None);
    // A mistake there is reported there.
    std::fs::write(
        dropins.join("paired.toml"),
        second.replace("keying = \"mka\"", "keying = \"mkb\""),
    )
    .unwrap();
    let e = Config::load(&main).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}:12:10:", dropins.join("paired.toml").display())),
        "{e}"
    );
    // A file that does not begin with a table would graft its keys onto the file before.
    std::fs::write(dropins.join("0-bad.toml"), "# x\nname = \"x\"\n[[link]]\n").unwrap();
    let e = Config::load(&main).unwrap_err().to_string();
    assert!(
        e.contains("0-bad.toml:2:1: a file of interlink.d must begin with a table"),
        "{e}"
    );
}

//! Flow logs read by a real collector: gateway A exports IPFIX to nfdump's nfcapd (Debian's
//! nfdump) in its namespace while known traffic crosses the link (MKA, GCM-AES-256): a ping
//! of 10 echoes of 128 octets, 20 UDP datagrams of 128 octets to port 5353 and an iperf3 TCP
//! transfer of 20 MiB. `nfdump -r` shows each with its 5-tuple, direction and interface, the
//! ping and the UDP to the octet, the TCP within 1 % of the payload host B received (a
//! capture) plus headers; tshark
//! dissects every exported datagram as IPFIX with no malformed field; interlinkctl `show
//! flows` and the metrics agree. Needs root, nfdump, tshark and iperf3.

use interlink_testkit as netns;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use netns::Lab;

const CAK: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

fn gateway(lab: &Lab, side: &str, flows: &str) -> String {
    let (me, peer, tun, far) = if side == "a" {
        ("192.0.2.1", "192.0.2.2", "169.254.0.1/30", "10.2.0.0/24")
    } else {
        ("192.0.2.2", "192.0.2.1", "169.254.0.2/30", "10.1.0.0/24")
    };
    let cfg = lab.file(
        &format!("{side}.toml"),
        &format!(
            r#"[[link]]
name = "to-peer"
interface = "il0"
addresses = ["{tun}"]
transport = "udp"
local = "{me}:61440"
remote = "{peer}:61440"

[link.macsec]
cipher_suite = "gcm-aes-256"
keying = "mka"
ckn = "696e7465726c696e6b"
cak_file = "link.cak"

[[route]]
prefix = "{far}"
dev = "il0"

[control]
socket = "ctl-{side}.sock"
{flows}"#
        ),
    );
    cfg.to_str().unwrap().to_owned()
}

fn ctl(lab: &Lab, args: &[&str]) -> String {
    let sock = lab.dir.join("ctl-a.sock");
    let (code, out, err) = netns::interlinkctl(env!("CARGO_BIN_EXE_interlinkctl"), &sock, args);
    assert_eq!(code, 0, "{err}");
    out
}

/// A flow as nfdump shows it.
#[derive(Debug)]
struct Flow {
    proto: u64,
    src: String,
    dst: String,
    sport: u64,
    dport: u64,
    packets: u64,
    octets: u64,
    input: u64,
    output: u64,
}

fn nfdump(dir: &Path) -> Vec<Flow> {
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "nfdump: {e}:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let n = |f: &serde_json::Value, k: &str| f[k].as_u64().unwrap_or(0);
    let s = |f: &serde_json::Value, a: &str, b: &str| {
        f[a].as_str().or(f[b].as_str()).unwrap_or("").to_owned()
    };
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| Flow {
            proto: n(f, "proto"),
            src: s(f, "src4_addr", "src6_addr"),
            dst: s(f, "dst4_addr", "dst6_addr"),
            sport: n(f, "src_port"),
            // ICMP: nfdump splits type and code out of the destination port.
            dport: if f["icmp_type"].is_u64() {
                n(f, "icmp_type") << 8 | n(f, "icmp_code")
            } else {
                n(f, "dst_port")
            },
            packets: n(f, "in_packets"),
            octets: n(f, "in_bytes"),
            input: n(f, "input_snmp"),
            output: n(f, "output_snmp"),
        })
        .collect()
}

#[test]
fn nfdump_reads_the_flows_of_known_traffic() {
    if !netns::require_root() {
        return;
    }
    for tool in ["nfcapd", "nfdump", "tshark", "iperf3"] {
        if !netns::have(tool) {
            eprintln!("skipped: {tool} is not installed (scripts/test.sh installs it)");
            return;
        }
    }
    let mut lab = Lab::new("flows");
    lab.two_sites();
    lab.secret("link.cak", CAK);
    let store = lab.dir.join("nfcapd");
    std::fs::create_dir_all(&store).unwrap();
    lab.capture("cap-ipfix", "ga", "lo", "udp port 4739");
    lab.spawn_in(
        "nfcapd",
        "ga",
        Path::new("nfcapd"),
        &[
            "-b",
            "127.0.0.1",
            "-p",
            "4739",
            "-w",
            store.to_str().unwrap(),
            "-t",
            "3600",
        ],
    );
    // Listening before interlinkd sends its templates (again only every 30 s).
    lab.wait_for("nfcapd to listen", Duration::from_secs(5), || {
        lab.log("nfcapd").contains("Startup")
    });
    let flows = "\n[flows]\ncollectors = [\"127.0.0.1:4739\"]\nidle_timeout = \"1s\"\n";
    let cfg_a = gateway(&lab, "a", flows);
    let cfg_b = gateway(&lab, "b", "");
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("ga", "ga", bin, &["--config", &cfg_a]);
    lab.spawn_in("gb", "gb", bin, &["--config", &cfg_b]);
    lab.wait_for("the link keyed", Duration::from_secs(20), || {
        lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.1"])
            .status
            .success()
    });
    // (Pings to gateway B: flows of their own, not counted below.)

    let ping = lab.exec(
        "ha",
        &["ping", "-c", "10", "-s", "100", "-i", "0.05", "10.2.0.2"],
    );
    assert!(ping.status.success());
    lab.exec(
        "ha",
        &[
            "bash",
            "-c",
            "exec 3>/dev/udp/10.2.0.99/5353; for i in $(seq 20); do printf '%0100d' 0 >&3; done",
        ],
    );
    lab.iperf3_server("iperf", "hb", "5201");
    // What the transfer carried, counted where it arrives: iperf3's own count is what it
    // wrote to its socket, some of which its abrupt close discards.
    lab.capture("cap-tcp", "hb", "eth0", "tcp and dst port 5201");
    let out = lab.exec(
        "ha",
        &["iperf3", "-c", "10.2.0.2", "-p", "5201", "-n", "20M", "-J"],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let payload = report["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let sport = report["start"]["connected"][0]["local_port"]
        .as_u64()
        .unwrap();
    // Live view first: the TCP flow may still be in the table, or just ended.
    let text = ctl(&lab, &["show", "flows"]);
    assert!(text.contains("collectors 127.0.0.1:4739"), "{text}");
    // Idle timeout (1 s) and the once-a-second expiry: every flow ended and exported.
    std::thread::sleep(Duration::from_millis(3000));
    let v: serde_json::Value =
        serde_json::from_str(&ctl(&lab, &["--json", "show", "flows"])).unwrap();
    assert_eq!(v["exporter"]["dropped"], 0, "{v}");
    assert_eq!(v["exporter"]["errors"], 0, "{v}");
    let exported = v["exporter"]["records"].as_u64().unwrap();
    assert!(exported >= 6, "{v}");
    lab.stop("nfcapd");
    let frames = lab.stop_capture("cap-ipfix");
    lab.stop_capture("cap-tcp");
    assert!(!frames.is_empty());

    let flows = nfdump(&store);
    let ifindex: u64 = String::from_utf8_lossy(
        &lab.exec("ga", &["cat", "/sys/class/net/il0/ifindex"])
            .stdout,
    )
    .trim()
    .parse()
    .unwrap();
    // Every record of a flow, summed: a flow may be in several (one per worker that carried
    // it: the kernel may move a TCP flow to another TUN queue after a retransmission).
    let find = |proto: u64, src: &str, dst: &str, port: Option<(u64, u64)>| -> Flow {
        let all: Vec<&Flow> = flows
            .iter()
            .filter(|f| {
                f.proto == proto
                    && f.src == src
                    && f.dst == dst
                    && port.is_none_or(|(s, d)| f.sport == s && f.dport == d)
            })
            .collect();
        let first = all
            .first()
            .unwrap_or_else(|| panic!("no {proto} {src} > {dst} {port:?} in {flows:#?}"));
        for f in &all {
            assert_eq!(
                (f.input, f.output, f.sport, f.dport),
                (first.input, first.output, first.sport, first.dport)
            );
        }
        Flow {
            packets: all.iter().map(|f| f.packets).sum(),
            octets: all.iter().map(|f| f.octets).sum(),
            src: first.src.clone(),
            dst: first.dst.clone(),
            ..**first
        }
    };
    // The ping: 10 echo requests out (type 8) and 10 replies in (type 0), 128 octets each.
    let out_icmp = find(1, "10.1.0.2", "10.2.0.2", Some((0, 0x0800)));
    assert_eq!(
        (out_icmp.packets, out_icmp.octets),
        (10, 1280),
        "{out_icmp:?}"
    );
    assert_eq!((out_icmp.input, out_icmp.output), (0, ifindex));
    let in_icmp = find(1, "10.2.0.2", "10.1.0.2", Some((0, 0)));
    assert_eq!((in_icmp.packets, in_icmp.octets), (10, 1280), "{in_icmp:?}");
    assert_eq!((in_icmp.input, in_icmp.output), (ifindex, 0));
    // The datagrams: 20 of 20 + 8 + 100 octets to port 5353, of an address on site B's
    // network that nobody holds (host B's port unreachable would fail the socket's next
    // send).
    let udp = find(17, "10.1.0.2", "10.2.0.99", None);
    assert_eq!(udp.dport, 5353, "{udp:?}");
    assert_eq!((udp.packets, udp.octets), (20, 2560), "{udp:?}");
    // The transfer: its payload plus an IPv4 and a TCP header with timestamps (52 octets) per
    // packet, within 1 %.
    let tcp = find(6, "10.1.0.2", "10.2.0.2", Some((sport, 5201)));
    let cap = Command::new("tshark")
        .arg("-r")
        .arg(lab.dir.join("cap-tcp.pcap"))
        .args([
            "-Y",
            &format!("tcp.srcport == {sport}"),
            "-T",
            "fields",
            "-e",
            "tcp.len",
        ])
        .output()
        .unwrap();
    let carried: u64 = String::from_utf8_lossy(&cap.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .sum();
    assert!(
        carried > payload * 8 / 10 && carried <= payload,
        "{carried} of {payload}"
    );
    let expected = carried + tcp.packets * 52;
    let off = (tcp.octets as f64 - expected as f64).abs() / expected as f64;
    eprintln!(
        "iperf3 flow: {} packets, {} octets; payload {carried} seen at host B ({payload} written), expected {expected} ({:.3} % off)",
        tcp.packets,
        tcp.octets,
        off * 100.0
    );
    assert!(off < 0.01, "{tcp:?}: {expected} expected");
    assert!(tcp.packets > payload / 9000, "{tcp:?}");
    // Its ACKs come back on the other side.
    let acks = find(6, "10.2.0.2", "10.1.0.2", Some((5201, sport)));
    assert!(acks.packets > 0);

    // tshark takes every exported datagram as IPFIX and finds nothing malformed.
    let pcap = lab.dir.join("cap-ipfix.pcap");
    let count = |filter: &str| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&pcap)
            .args(["-d", "udp.port==4739,cflow", "-Y", filter])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    let all = count("udp.port == 4739");
    assert!(all >= 2);
    assert_eq!(count("cflow.version == 10"), all);
    assert_eq!(count("_ws.malformed || _ws.expert.severity >= warning"), 0);
    assert!(count("cflow.template_id == 256") >= 1, "the template");
    let fields = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", "udp.port==4739,cflow", "-V"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fields.stdout);
    // The data records decoded with the templates: every field there, by tshark's names.
    for want in [
        "Octets: 1280",
        "Packets: 10",
        "StartTime:",
        "EndTime:",
        "TCP Flags:",
        "InputInt:",
        "OutputInt:",
        "Direction: Egress",
        "Direction: Ingress",
        "Flow End Reason: Idle timeout",
        "Sampling Packet Interval: 1",
    ] {
        assert!(text.contains(want), "{want:?} not dissected");
    }

    // A clean stop.
    let (status, log) = lab.stop("ga");
    assert_eq!(status, Some(0), "{log}");
    assert!(log.contains("flows: on, 1 collector(s)"), "{log}");
}

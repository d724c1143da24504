//! Link throughput, in one run, on the two-site namespace topology of the tests:
//! TCP one stream, TCP four streams and delivered 64-octet UDP packets per second (iperf3),
//! for three paths between host A and host B:
//! - the plain routed veth path, the ceiling;
//! - interlink over UDP with GCM-AES-XPN-256 keyed by MKA (one queue and lane, and more; and
//!   one with flow logs on, unsampled, exported as IPFIX to a port nobody reads, on both
//!   gateways), and the same over the Ethernet underlay (802.1AE frames on the veth);
//! - wireguard-go (the Debian package, configured with `wg`), the reference.
//!
//! The paths take turns for `INTERLINK_BENCH_ROUNDS` rounds (3 by default); the table gives
//! each figure's median with its lowest and highest, and the TCP senders' retransmissions.
//! interlink runs with 1, 2, 4 and 8 queues as far as the machine has cores for
//! (`INTERLINK_LINK_BENCH_QUEUES=1,2,4,8` to choose), over UDP and over the Ethernet
//! underlay (`INTERLINK_LINK_BENCH_ETHERNET=0` leaves Ethernet out). `INTERLINK_LINK_BENCH_ONLY=flows` runs
//! interlink with flow logs off and on alone.
//!
//! Needs root, iperf3, wireguard-go, wireguard-tools and a release interlinkd:
//! `./scripts/bench-link.sh` installs and builds them, then runs
//! `cargo bench -p interlink-benches --bench link`.

use interlink_testkit as netns;

use std::path::{Path, PathBuf};
use std::time::Duration;

use netns::Lab;

const SECONDS: &str = "5";

#[derive(Clone, Copy, Default)]
struct Figures {
    tcp1_gbps: f64,
    tcp4_gbps: f64,
    udp64_kpps: f64,
    /// TCP retransmissions the senders counted (1 stream, 4 streams): reordering a path
    /// brings into a flow shows here, beside the veth path's.
    tcp1_retrans: f64,
    tcp4_retrans: f64,
}

impl Figures {
    /// Each figure's median over the rounds (the upper one of an even count).
    fn median(runs: &[Figures]) -> Figures {
        let med = |get: fn(&Figures) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(get).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Figures {
            tcp1_gbps: med(|f| f.tcp1_gbps),
            tcp4_gbps: med(|f| f.tcp4_gbps),
            udp64_kpps: med(|f| f.udp64_kpps),
            tcp1_retrans: med(|f| f.tcp1_retrans),
            tcp4_retrans: med(|f| f.tcp4_retrans),
        }
    }
}

fn iperf(lab: &mut Lab, tag: &str, args: &[&str]) -> serde_json::Value {
    let server = format!("iperf-server-{tag}");
    lab.iperf3_server(&server, "hb", "5201");
    let mut full = vec!["iperf3", "-c", "10.2.0.2", "-J", "-t", SECONDS];
    full.extend_from_slice(args);
    let out = lab.try_exec("ha", &full);
    let _ = lab.stop(&server);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "iperf3 {args:?}: {e}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn measure(lab: &mut Lab, path: &str) -> Figures {
    let tcp1 = iperf(lab, &format!("{path}-tcp1"), &[]);
    let tcp4 = iperf(lab, &format!("{path}-tcp4"), &["-P", "4"]);
    // A 4 MiB socket buffer on both ends, as UDP-heavy receivers set: with the default
    // (208 KiB) the iperf3 server, short of CPU on this 2-core machine, drops bursts at its
    // own socket, and the figure measures its scheduling rather than the path.
    let udp = iperf(
        lab,
        &format!("{path}-udp"),
        &["-u", "-b", "0", "-l", "64", "-w", "4M"],
    );
    let gbps = |v: &serde_json::Value| {
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap_or(0.0)
            / 1e9
    };
    let sum = &udp["end"]["sum"];
    let sent = sum["packets"].as_f64().unwrap_or(0.0);
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let secs = sum["seconds"].as_f64().unwrap_or(1.0);
    let retrans =
        |v: &serde_json::Value| v["end"]["sum_sent"]["retransmits"].as_f64().unwrap_or(0.0);
    Figures {
        tcp1_gbps: gbps(&tcp1),
        tcp4_gbps: gbps(&tcp4),
        udp64_kpps: (sent - lost) / secs / 1e3,
        tcp1_retrans: retrans(&tcp1),
        tcp4_retrans: retrans(&tcp4),
    }
}

fn interlinkd() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let bin = target.join("release/interlinkd");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p interlinkd",
        bin.display()
    );
    bin
}

fn plain(lab: &mut Lab) -> Figures {
    lab.route("ga", &["10.2.0.0/24", "via", "192.0.2.2"]);
    lab.route("gb", &["10.1.0.0/24", "via", "192.0.2.1"]);
    let f = measure(lab, "veth");
    lab.exec("ga", &["ip", "route", "del", "10.2.0.0/24"]);
    lab.exec("gb", &["ip", "route", "del", "10.1.0.0/24"]);
    f
}

fn interlink(lab: &mut Lab, queues: usize, flows: bool, ethernet: bool) -> Figures {
    // MKA from one CAK, as the lab: over UDP with MKA, `queues` also opens as many lanes;
    // on Ethernet as many validation helpers.
    lab.secret(
        "link.cak",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
    );
    let bin = interlinkd();
    for (side, me, peer, peer_mac, tun) in [
        (
            "a",
            "192.0.2.1",
            "192.0.2.2",
            netns::MAC_B,
            "169.254.0.1/30",
        ),
        (
            "b",
            "192.0.2.2",
            "192.0.2.1",
            netns::MAC_A,
            "169.254.0.2/30",
        ),
    ] {
        let transport = if ethernet {
            format!("transport = \"ethernet\"\nunderlay = \"wan\"\npeer_mac = \"{peer_mac}\"")
        } else {
            format!("transport = \"udp\"\nlocal = \"{me}:61440\"\nremote = \"{peer}:61440\"")
        };
        let cfg = lab.file(
            &format!("{side}.toml"),
            &format!(
                "[[link]]\nname = \"bench\"\ninterface = \"il0\"\naddresses = [\"{tun}\"]\n\
                 {transport}\nqueues = {queues}\n\
                 [link.macsec]\ncipher_suite = \"gcm-aes-xpn-256\"\nkeying = \"mka\"\n\
                 ckn = \"62656e6368\"\ncak_file = \"link.cak\"\nreplay_window = {}\n{}",
                if queues > 1 { 1024 } else { 0 },
                if flows {
                    "[flows]\ncollectors = [\"127.0.0.1:4739\"]\n"
                } else {
                    ""
                }
            ),
        );
        let cfg = cfg.to_str().unwrap().to_owned();
        lab.spawn(&format!("g{side}"), &bin, &["--config", &cfg]);
    }
    lab.wait_for(
        "both gateways sending under a SAK",
        Duration::from_secs(20),
        || lab.log("ga").contains("sending with key") && lab.log("gb").contains("sending with key"),
    );
    // The probes have told each side the other's lanes.
    std::thread::sleep(Duration::from_millis(1500));
    lab.route("ga", &["10.2.0.0/24", "dev", "il0"]);
    lab.route("gb", &["10.1.0.0/24", "dev", "il0"]);
    let f = measure(
        lab,
        &format!(
            "interlink{}{queues}{}",
            if ethernet { "e" } else { "" },
            if flows { "f" } else { "" }
        ),
    );
    if flows {
        assert!(lab.log("ga").contains("flows: on"), "{}", lab.log("ga"));
    }
    lab.stop("ga");
    lab.stop("gb");
    f
}

fn wireguard_go(lab: &mut Lab) -> Figures {
    let genkey = || String::from_utf8(netns::sh(&["wg", "genkey"]).stdout).unwrap();
    let pubkey = |private: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("wg")
            .arg("pubkey")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(private.as_bytes())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let (ka, kb) = (genkey(), genkey());
    let (pa, pb) = (pubkey(&ka), pubkey(&kb));
    let ka_file = lab.secret("wg-a.key", &ka);
    let kb_file = lab.secret("wg-b.key", &kb);
    // Distinct interface names: wireguard-go's control socket, /var/run/wireguard/NAME.sock,
    // is not per namespace.
    for (side, dev, key, peer_pub, peer, tun, remote_net) in [
        (
            "ga",
            "wga",
            &ka_file,
            pb.trim(),
            "192.0.2.2",
            "169.254.1.1/30",
            "10.2.0.0/24",
        ),
        (
            "gb",
            "wgb",
            &kb_file,
            pa.trim(),
            "192.0.2.1",
            "169.254.1.2/30",
            "10.1.0.0/24",
        ),
    ] {
        // wireguard-go creates the TUN interface. It runs in the foreground so that the lab
        // owns it and stops it on every path, and it refuses to run where the kernel has
        // WireGuard unless told that userspace is what we want.
        lab.spawn_in(
            &format!("wireguard-go-{dev}"),
            side,
            Path::new("env"),
            &[
                "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1",
                "wireguard-go",
                "-f",
                dev,
            ],
        );
        lab.wait_for("wireguard-go's interface", Duration::from_secs(5), || {
            lab.try_exec(side, &["ip", "link", "show", dev])
                .status
                .success()
        });
        lab.exec(
            side,
            &[
                "wg",
                "set",
                dev,
                "private-key",
                key.to_str().unwrap(),
                "listen-port",
                "51820",
                "peer",
                peer_pub,
                "endpoint",
                &format!("{peer}:51820"),
                "allowed-ips",
                "0.0.0.0/0",
            ],
        );
        lab.addr(side, dev, tun);
        lab.exec(side, &["ip", "link", "set", dev, "up"]);
        lab.route(side, &[remote_net, "dev", dev]);
    }
    let f = measure(lab, "wireguard-go");
    for (side, dev) in [("ga", "wga"), ("gb", "wgb")] {
        lab.exec(side, &["ip", "link", "del", dev]);
    }
    f
}

fn main() {
    // `cargo bench` passes --bench; a filter that names another bench means not this one.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"link".contains(a.as_str()))
    {
        return;
    }
    if !netns::require_root() {
        return;
    }
    let rounds: usize = std::env::var("INTERLINK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(3);
    let mut lab = Lab::new("bench");
    lab.two_sites();
    // interlink with 1, 2, 4 and 8 queues (and lanes), as far as the machine has cores for
    // two gateways' workers: at most half of them, at least 2 (INTERLINK_LINK_BENCH_QUEUES
    // = "1,2,4" to choose).
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let queues: Vec<usize> = match std::env::var("INTERLINK_LINK_BENCH_QUEUES") {
        Ok(v) => v.split(',').filter_map(|q| q.trim().parse().ok()).collect(),
        Err(_) => [1, 2, 4, 8]
            .into_iter()
            .filter(|&q| q <= (cores / 2).max(2))
            .collect(),
    };
    let only_flows = std::env::var("INTERLINK_LINK_BENCH_ONLY").is_ok_and(|v| v == "flows");
    let no_ethernet = std::env::var("INTERLINK_LINK_BENCH_ETHERNET").is_ok_and(|v| v == "0");
    #[derive(Clone, Copy, PartialEq)]
    enum Path {
        Veth,
        Interlink {
            queues: usize,
            flows: bool,
            ethernet: bool,
        },
        WireguardGo,
    }
    let mut paths = Vec::new();
    if !only_flows {
        paths.push(Path::Veth);
    }
    for &q in &queues {
        if !only_flows || q == 1 {
            paths.push(Path::Interlink {
                queues: q,
                flows: false,
                ethernet: false,
            });
        }
    }
    paths.push(Path::Interlink {
        queues: 1,
        flows: true,
        ethernet: false,
    });
    // The Ethernet transport, whose receive side spreads validation over helpers.
    if !only_flows && !no_ethernet {
        for &q in &queues {
            paths.push(Path::Interlink {
                queues: q,
                flows: false,
                ethernet: true,
            });
        }
    }
    if !only_flows {
        paths.push(Path::WireguardGo);
    }
    // The paths take turns, round after round, so that a slow spell of this shared machine
    // falls on all of them; each figure is the median of its rounds.
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); paths.len()];
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for (path, r) in paths.iter().zip(runs.iter_mut()) {
            r.push(match *path {
                Path::Veth => plain(&mut lab),
                Path::Interlink {
                    queues,
                    flows,
                    ethernet,
                } => interlink(&mut lab, queues, flows, ethernet),
                Path::WireguardGo => wireguard_go(&mut lab),
            });
        }
    }
    let median = |want: Path| {
        paths
            .iter()
            .position(|p| *p == want)
            .map(|i| Figures::median(&runs[i]))
    };
    let il = median(Path::Interlink {
        queues: 1,
        flows: false,
        ethernet: false,
    })
    .unwrap_or_default();
    let flows = median(Path::Interlink {
        queues: 1,
        flows: true,
        ethernet: false,
    })
    .unwrap_or_default();

    println!(
        "\nLink throughput, host A to host B, iperf3 {SECONDS} s per figure, \
         median of {rounds} rounds [lowest-highest], {cores} cores:"
    );
    println!(
        "  {:<34} {:>24} {:>24} {:>24} {:>16}",
        "path",
        "TCP 1 stream, Gb/s",
        "TCP 4 streams, Gb/s",
        "UDP 64 B deliv., kpps",
        "TCP retransmits"
    );
    for (path, r) in paths.iter().zip(&runs) {
        let name = match *path {
            Path::Veth => "plain routed veth (ceiling)".to_owned(),
            Path::Interlink {
                queues: 1,
                flows: false,
                ethernet: false,
            } => "interlink, UDP, GCM-AES-XPN-256".to_owned(),
            Path::Interlink {
                queues,
                flows: false,
                ethernet: false,
            } => format!("  the same with {queues} queues and lanes"),
            Path::Interlink {
                queues: 1,
                ethernet: true,
                ..
            } => "interlink, Ethernet, XPN-256".to_owned(),
            Path::Interlink {
                queues,
                ethernet: true,
                ..
            } => format!("  the same with {queues} queues, helpers"),
            Path::Interlink { flows: true, .. } => "  the same with flow logs (1:1)".to_owned(),
            Path::WireguardGo => "wireguard-go (reference)".to_owned(),
        };
        let m = Figures::median(r);
        let cell = |median: f64, get: fn(&Figures) -> f64| {
            let lo = r.iter().map(get).fold(f64::INFINITY, f64::min);
            let hi = r.iter().map(get).fold(0.0, f64::max);
            format!("{median:.2} [{lo:.2}-{hi:.2}]")
        };
        println!(
            "  {:<34} {:>24} {:>24} {:>24} {:>16}",
            name,
            cell(m.tcp1_gbps, |f| f.tcp1_gbps),
            cell(m.tcp4_gbps, |f| f.tcp4_gbps),
            cell(m.udp64_kpps, |f| f.udp64_kpps),
            format!("{:.0} / {:.0}", m.tcp1_retrans, m.tcp4_retrans),
        );
    }
    println!(
        "  flow logs on / off:                {:>23.2}x {:>23.2}x {:>23.2}x",
        flows.tcp1_gbps / il.tcp1_gbps,
        flows.tcp4_gbps / il.tcp4_gbps,
        flows.udp64_kpps / il.udp64_kpps
    );
    if only_flows {
        return;
    }
    let veth = median(Path::Veth).unwrap_or_default();
    let wg = median(Path::WireguardGo).unwrap_or_default();
    for ethernet in [false, true] {
        let Some(one) = median(Path::Interlink {
            queues: 1,
            flows: false,
            ethernet,
        }) else {
            continue;
        };
        for &q in queues.iter().filter(|&&q| q > 1) {
            if let Some(m) = median(Path::Interlink {
                queues: q,
                flows: false,
                ethernet,
            }) {
                println!(
                    "  {:<35}{:>23.2}x {:>23.2}x {:>23.2}x",
                    format!(
                        "{} {q} queues / 1:",
                        if ethernet { "Ethernet" } else { "UDP" }
                    ),
                    m.tcp1_gbps / one.tcp1_gbps,
                    m.tcp4_gbps / one.tcp4_gbps,
                    m.udp64_kpps / one.udp64_kpps
                );
            }
        }
    }
    println!(
        "  interlink / wireguard-go:          {:>23.2}x {:>23.2}x {:>23.2}x",
        il.tcp1_gbps / wg.tcp1_gbps,
        il.tcp4_gbps / wg.tcp4_gbps,
        il.udp64_kpps / wg.udp64_kpps
    );
    println!(
        "  interlink / plain veth:            {:>23.2}x {:>23.2}x {:>23.2}x",
        il.tcp1_gbps / veth.tcp1_gbps,
        il.tcp4_gbps / veth.tcp4_gbps,
        il.udp64_kpps / veth.udp64_kpps
    );
}

//! BFD (RFC 5880, 5881) with BIRD 2's `bfd` protocol: interlinkd and BIRD bring the session
//! up next to their BGP session; when BIRD stops answering (SIGSTOP: its BFD and BGP fall
//! silent, the link stays up), interlinkd's BFD session goes down within the detection time
//! (300 ms x 3) plus 100 ms, and the BGP session with it (Cease, BFD Down), long before its
//! hold timer (90 s) would; when BIRD is back, BFD comes up again. interlinkctl `show bfd`
//! and the metrics show it. Needs root and bird2.

use interlink_testkit as netns;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use netns::Lab;

const BIRD: &str = r#"
router id 10.0.0.2;
protocol device {}
protocol static s4 { ipv4; route 10.60.0.0/16 blackhole; }
protocol bfd {
    interface "eth0" { interval 300 ms; multiplier 3; };
}
protocol bgp v4 {
    local 10.0.0.2 as 64512;
    neighbor 10.0.0.1 as 65001;
    connect retry time 1;
    bfd on;
    ipv4 { import all; export all; };
}
"#;

const INTERLINK: &str = r#"
[router]
asn = 65001
router_id = "10.0.0.1"

[[neighbor]]
address = "10.0.0.2"
remote_asn = 64512
bfd = true
import = { prefixes = ["10.60.0.0/16"] }

[control]
socket = "ctl.sock"
"#;

fn ctl(lab: &Lab, args: &[&str]) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkctl"));
    let out = Command::new(bin)
        .arg("--socket")
        .arg(lab.dir.join("ctl.sock"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn bfd_state(lab: &Lab) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ctl(lab, &["--json", "show", "bfd"])).unwrap_or_default();
    v["sessions"][0]["state"]
        .as_str()
        .unwrap_or("none")
        .to_owned()
}

#[test]
fn bfd_with_bird_takes_bgp_down_within_the_detection_time() {
    if !netns::require_root() || !netns::have("bird") {
        return;
    }
    let mut lab = Lab::new("bfd");
    lab.add_ns("gw");
    lab.add_ns("bird");
    lab.veth("gw", "eth0", "bird", "eth0");
    lab.addr("gw", "eth0", "10.0.0.1/24");
    lab.addr("bird", "eth0", "10.0.0.2/24");
    lab.spawn_bird("bird", "bird", BIRD);
    let cfg = lab.file("interlink.toml", INTERLINK);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);

    lab.wait_for("BFD and BGP up", Duration::from_secs(30), || {
        let log = lab.log("gw");
        log.contains("bfd: 10.0.0.2 up") && log.contains("bgp: 10.0.0.2 (AS 64512) established")
    });
    let birds = netns::birdc(&lab.dir.join("bird.ctl"), &["show", "bfd", "sessions"]);
    assert!(
        birds.contains("10.0.0.1") && birds.contains("Up"),
        "{birds}"
    );
    assert_eq!(bfd_state(&lab), "up");
    let text = ctl(&lab, &["show", "bfd"]);
    assert!(
        text.contains("10.0.0.2") && text.contains("up") && text.contains("300ms x3"),
        "{text}"
    );

    // BIRD stops answering.
    let cut = Instant::now();
    lab.signal("bird", "STOP");
    lab.wait_for("BFD down", Duration::from_secs(5), || {
        lab.log("gw")
            .contains("bfd: 10.0.0.2 down: control detection time expired")
    });
    let bfd_down = cut.elapsed();
    lab.wait_for("BGP down", Duration::from_secs(5), || {
        lab.log("gw").contains("bgp: 10.0.0.2 down")
    });
    let bgp_down = cut.elapsed();
    // 900 ms of detection, 100 ms of grace; the log is polled every 50 ms.
    assert!(
        bfd_down <= Duration::from_millis(1050),
        "BFD down after {bfd_down:?}"
    );
    assert!(
        bgp_down <= Duration::from_millis(1100),
        "BGP down after {bgp_down:?}"
    );
    let log = lab.log("gw");
    assert!(log.contains("cease: BFD down"), "{log}");
    eprintln!("BFD down {bfd_down:?} and BGP down {bgp_down:?} after the cut");
    assert_eq!(bfd_state(&lab), "down");

    // Back: BFD comes up again. (BGP follows at its own pace: a connection opened while BIRD
    // was frozen and the idle-hold back-off make that take from seconds to a minute.)
    lab.signal("bird", "CONT");
    lab.wait_for("BFD up again", Duration::from_secs(30), || {
        bfd_state(&lab) == "up"
    });
}

/// With FRR's bfdd (a configured peer, no BGP on its side): the session comes up, and goes
/// down within the detection time plus 100 ms when bfdd is frozen.
#[test]
fn bfd_with_frr_bfdd() {
    if !netns::require_root() || !Path::new("/usr/lib/frr/bfdd").exists() {
        return;
    }
    let mut lab = Lab::new("bfd-frr");
    lab.add_ns("gw");
    lab.add_ns("frr");
    lab.veth("gw", "eth0", "frr", "eth0");
    lab.addr("gw", "eth0", "10.0.0.1/24");
    lab.addr("frr", "eth0", "10.0.0.2/24");
    // Its control socket in the lab (bfdd runs as the frr user, in a directory it may write).
    let ctl_sock = lab.dir.join("bfdd").join("bfdd.sock");
    let vty = lab.spawn_frr_daemon(
        "bfdd",
        "frr",
        "bfdd",
        &[
            "-u",
            "frr",
            "-g",
            "frr",
            "--bfdctl",
            ctl_sock.to_str().unwrap(),
        ],
        "bfd\n peer 10.0.0.1 local-address 10.0.0.2\n  receive-interval 300\n  \
         transmit-interval 300\n  detect-multiplier 3\n !\n!\n",
    );
    let cfg = lab.file("interlink.toml", INTERLINK);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);
    lab.wait_for("BFD up with bfdd", Duration::from_secs(30), || {
        bfd_state(&lab) == "up"
    });
    let peers = lab.vtysh("frr", &vty, &["show bfd peers"]);
    assert!(
        peers.contains("10.0.0.1") && peers.contains("Status: up"),
        "{peers}"
    );
    let cut = Instant::now();
    lab.signal("bfdd", "STOP");
    lab.wait_for("BFD down", Duration::from_secs(5), || {
        lab.log("gw")
            .contains("bfd: 10.0.0.2 down: control detection time expired")
    });
    let down = cut.elapsed();
    eprintln!("BFD down {down:?} after bfdd was frozen");
    assert!(
        down <= Duration::from_millis(1050),
        "BFD down after {down:?}"
    );
    lab.signal("bfdd", "CONT");
    lab.wait_for("BFD up again", Duration::from_secs(30), || {
        bfd_state(&lab) == "up"
    });
}

/// Keyed SHA1 (meticulous) with BIRD: up with the same key; with another, BIRD's packets are
/// refused and counted, and the session stays down.
#[test]
fn bfd_keyed_sha1_with_bird() {
    if !netns::require_root() || !netns::have("bird") {
        return;
    }
    for (bird_key, comes_up) in [("s3cret", true), ("wrong", false)] {
        let mut lab = Lab::new("bfd-sha1");
        lab.add_ns("gw");
        lab.add_ns("bird");
        lab.veth("gw", "eth0", "bird", "eth0");
        lab.addr("gw", "eth0", "10.0.0.1/24");
        lab.addr("bird", "eth0", "10.0.0.2/24");
        let bird = BIRD.replace(
            "interface \"eth0\" { interval 300 ms; multiplier 3; };",
            &format!(
                "interface \"eth0\" {{ interval 300 ms; multiplier 3; \
                 authentication meticulous keyed sha1; password \"{bird_key}\" {{ id 4; }}; }};"
            ),
        );
        assert_ne!(bird, BIRD);
        lab.spawn_bird("bird", "bird", &bird);
        let key = lab.file("bfd.key", "s3cret\n");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = INTERLINK.replace(
            "bfd = true",
            "bfd = { key_file = \"bfd.key\", key_id = 4, meticulous = true }",
        );
        let cfg = lab.file("interlink.toml", &config);
        let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
        lab.spawn_in("gw", "gw", bin, &["--config", cfg.to_str().unwrap()]);
        let json = || -> serde_json::Value {
            serde_json::from_str(&ctl(&lab, &["--json", "show", "bfd"])).unwrap_or_default()
        };
        if comes_up {
            lab.wait_for("BFD up with keyed SHA1", Duration::from_secs(30), || {
                bfd_state(&lab) == "up"
            });
            let v = json();
            assert_eq!(v["sessions"][0]["authentication"], "keyed-sha1");
            assert_eq!(v["sessions"][0]["auth_failed"], 0);
        } else {
            lab.wait_for("BIRD's packets refused", Duration::from_secs(30), || {
                json()["sessions"][0]["auth_failed"].as_u64() >= Some(3)
            });
            assert_eq!(bfd_state(&lab), "down");
        }
    }
}

//! `systemd/interlinkd.service` passes `systemd-analyze verify` (with its binary paths
//! pointed at the interlinkd built here, since verify checks that they exist), without a
//! warning; its `systemd-analyze security` exposure is printed for the record. Skipped, with a
//! note, where systemd-analyze is missing (`scripts/test.sh` installs systemd). And the
//! control socket under the unit's capability set (root, as the unit's capabilities and group
//! are applied by setpriv).

use std::path::Path;
use std::process::Command;

#[test]
fn the_unit_verifies_cleanly() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/interlinkd.service"),
    )
    .unwrap();
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("Type=notify"));
    let dir = std::env::temp_dir().join(format!("il-systemd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("interlinkd.service");
    std::fs::write(
        &path,
        unit.replace("/usr/sbin/interlinkd", env!("CARGO_BIN_EXE_interlinkd")),
    )
    .unwrap();
    let verify = || {
        let out = Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        assert!(err.trim().is_empty(), "warnings:\n{err}");
        let security = Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(&path)
            .output()
            .unwrap();
        String::from_utf8_lossy(&security.stdout).into_owned()
    };
    let bare = verify();
    // The Ethernet drop-in, where systemd-analyze finds drop-ins of a unit it is given (its
    // directory): it verifies too, and opens packet sockets, which the unit alone does not.
    let dropin = dir.join("interlinkd.service.d");
    std::fs::create_dir_all(&dropin).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd/interlinkd-ethernet.conf"),
        dropin.join("ethernet.conf"),
    )
    .unwrap();
    let ethernet = verify();
    let _ = std::fs::remove_dir_all(&dir);
    let packet = |text: &str| {
        text.lines()
            .find(|l| l.contains("RestrictAddressFamilies=~AF_PACKET"))
            .map(|l| l.trim().to_owned())
    };
    let (a, b) = (packet(&bare), packet(&ethernet));
    assert!(a.as_deref().is_some_and(|l| l.starts_with('✓')), "{a:?}");
    assert!(b.as_deref().is_some_and(|l| l.starts_with('✗')), "{b:?}");
    for (what, text) in [("unit", &bare), ("with the Ethernet drop-in", &ethernet)] {
        if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
            eprintln!("{what}: {}", line.trim());
        }
    }
}

/// interlinkd with `--config cfg` in namespace "gw" as daemon `name`, under exactly the
/// capabilities `caps` (bounding, inheritable and ambient, as the unit's settings make them)
/// and `groups` (setpriv's --groups=GID or --clear-groups), with no new privileges.
fn spawn_with_caps(
    lab: &mut interlink_testkit::Lab,
    name: &str,
    caps: &str,
    groups: &str,
    cfg: &Path,
) {
    lab.spawn_in(
        name,
        "gw",
        Path::new("setpriv"),
        &[
            &format!("--bounding-set={caps}"),
            &format!("--inh-caps={caps}"),
            &format!("--ambient-caps={caps}"),
            groups,
            "--no-new-privs",
            "--",
            env!("CARGO_BIN_EXE_interlinkd"),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
}

/// The capabilities a unit file (or drop-in) grants: its AmbientCapabilities, as setpriv
/// takes them ("+net_admin,+net_bind_service").
fn ambient_caps(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    text.lines()
        .filter_map(|l| l.strip_prefix("AmbientCapabilities="))
        .flat_map(|l| l.split_whitespace())
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect()
}

/// interlinkd started with the unit's capability set (as its AmbientCapabilities say:
/// CAP_NET_ADMIN, CAP_NET_BIND_SERVICE, no CAP_CHOWN) by setpriv, in a namespace of its own:
/// with the unit's
/// `SupplementaryGroups=interlink` the control socket is root:interlink 0660 and interlinkctl
/// reaches it; without the group the socket is still there, root's alone, and the log says
/// why. Needs root; creates the group `interlink` for the test if the machine has none.
#[test]
fn the_control_socket_under_the_units_capabilities() {
    use interlink_testkit as netns;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !netns::require_root() {
        return;
    }
    if !netns::have("setpriv") {
        eprintln!("skipped: setpriv is not installed");
        return;
    }
    /// Removes the group at the end if the test made it.
    struct Group(bool);
    impl Drop for Group {
        fn drop(&mut self) {
            if self.0 {
                let _ = Command::new("groupdel").arg("interlink").output();
            }
        }
    }
    let exists = |g: &str| {
        Command::new("getent")
            .args(["group", g])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let made = !exists("interlink");
    if made {
        netns::sh(&["groupadd", "--system", "interlink"]);
    }
    let _group = Group(made);
    let gid: u32 = String::from_utf8_lossy(
        &Command::new("getent")
            .args(["group", "interlink"])
            .output()
            .unwrap()
            .stdout,
    )
    .split(':')
    .nth(2)
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    // The unit's own capabilities, read from it: no CAP_CHOWN, and no CAP_NET_RAW.
    let unit_caps = ambient_caps("../systemd/interlinkd.service");
    assert!(
        unit_caps.contains(&"+net_admin".to_owned()) && !unit_caps.contains(&"+net_raw".to_owned()),
        "{unit_caps:?}"
    );
    let caps = format!("-all,{}", unit_caps.join(","));
    for (with_group, name) in [(true, "member"), (false, "not-member")] {
        let mut lab = netns::Lab::new(&format!("unit-{name}"));
        lab.add_ns("gw");
        let state = lab.dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        let cfg = lab.file(
            "interlink.toml",
            &format!(
                "[control]\nsocket = \"ctl.sock\"\n\n[daemon]\nstate_dir = \"{}\"\n",
                state.display()
            ),
        );
        let groups = if with_group {
            format!("--groups={gid}")
        } else {
            "--clear-groups".to_owned()
        };
        spawn_with_caps(&mut lab, "gw", &caps, &groups, &cfg);
        let sock = lab.dir.join("ctl.sock");
        lab.wait_for(
            "the control socket",
            std::time::Duration::from_secs(10),
            || lab.log("gw").contains("control: socket"),
        );
        let meta = std::fs::metadata(&sock).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        let log = lab.log("gw");
        if with_group {
            assert_eq!(meta.gid(), gid, "{log}");
            assert!(!log.contains("cannot give it to group"), "{log}");
        } else {
            assert_eq!(meta.gid(), 0, "{log}");
            assert!(log.contains("cannot give it to group interlink"), "{log}");
        }
        let (code, out, err) =
            netns::interlinkctl(env!("CARGO_BIN_EXE_interlinkctl"), &sock, &["status"]);
        assert_eq!(code, 0, "{out}{err}\n{log}");
        let (status, log) = lab.stop("gw");
        assert_eq!(status, Some(0), "{log}");
    }
}

/// A link with transport = "ethernet" under the unit's capabilities alone does not start, and
/// the log says what it lacks; with those of the Ethernet drop-in added it comes up.
#[test]
fn an_ethernet_link_needs_the_drop_in() {
    use interlink_testkit as netns;
    if !netns::require_root() || !netns::have("setpriv") {
        return;
    }
    let mut lab = netns::Lab::new("unit-eth");
    lab.add_ns("gw");
    lab.exec(
        "gw",
        &[
            "ip", "link", "add", "wan", "type", "veth", "peer", "name", "wan-peer",
        ],
    );
    lab.exec("gw", &["ip", "link", "set", "wan", "up"]);
    let state = lab.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    lab.secret("tx.sak", "000102030405060708090a0b0c0d0e0f\n");
    lab.secret("rx.sak", "0f0e0d0c0b0a09080706050403020100\n");
    let cfg = lab.file(
        "interlink.toml",
        &format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[[link]]\nname = \"eth\"\ninterface = \"il0\"\n\
             transport = \"ethernet\"\nunderlay = \"wan\"\npeer_mac = \"02:00:00:00:00:0b\"\n\
             [link.macsec]\ncipher_suite = \"gcm-aes-128\"\nkeying = \"static\"\n\
             tx_sak_file = \"tx.sak\"\nrx_sak_file = \"rx.sak\"\nan = 0\n\
             [control]\nsocket = \"ctl.sock\"\n",
            state.display()
        ),
    );
    let unit = ambient_caps("../systemd/interlinkd.service");
    let dropin = ambient_caps("../systemd/interlinkd-ethernet.conf");
    assert_eq!(dropin, ["+net_raw"]);
    for (name, caps) in [("unit", unit.clone()), ("dropin", [unit, dropin].concat())] {
        let caps = format!("-all,{}", caps.join(","));
        spawn_with_caps(&mut lab, name, &caps, "--clear-groups", &cfg);
        if name == "unit" {
            lab.wait_for("the refusal", std::time::Duration::from_secs(10), || {
                lab.log(name).contains("packet socket on wan")
            });
            let log = lab.log(name);
            assert!(
                log.contains("the Ethernet transport needs CAP_NET_RAW and AF_PACKET"),
                "{log}"
            );
        } else {
            lab.wait_for("the link up", std::time::Duration::from_secs(10), || {
                lab.log(name).contains("link eth: il0 up")
            });
        }
        let _ = lab.stop(name);
    }
}

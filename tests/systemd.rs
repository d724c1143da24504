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
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.trim().is_empty(), "warnings:\n{err}");
    let text = String::from_utf8_lossy(&security.stdout);
    if let Some(line) = text.lines().find(|l| l.contains("Overall exposure level")) {
        eprintln!("{}", line.trim());
    }
}

/// interlinkd started with the unit's capability set (CAP_NET_ADMIN, CAP_NET_RAW,
/// CAP_NET_BIND_SERVICE, no CAP_CHOWN) by setpriv, in a namespace of its own: with the unit's
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
    let caps = "-all,+net_admin,+net_raw,+net_bind_service";
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
        lab.spawn_in(
            "gw",
            "gw",
            Path::new("setpriv"),
            &[
                &format!("--bounding-set={caps}"),
                &format!("--inh-caps={caps}"),
                &format!("--ambient-caps={caps}"),
                &groups,
                "--no-new-privs",
                "--",
                env!("CARGO_BIN_EXE_interlinkd"),
                "--config",
                cfg.to_str().unwrap(),
            ],
        );
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

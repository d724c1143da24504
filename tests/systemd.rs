//! `systemd/interlinkd.service` passes `systemd-analyze verify` (with its binary paths
//! pointed at the interlinkd built here, since verify checks that they exist), without a
//! warning; its `systemd-analyze security` exposure is printed for the record. Skipped, with a
//! note, where systemd-analyze is missing (`scripts/test.sh` installs systemd).

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

//! The Debian package: `scripts/package.sh` builds it (from the binaries of this build),
//! it holds exactly the files it should, lintian reports no error, `dpkg -i` installs it (the
//! group interlink and the state directory made), the installed unit passes `systemd-analyze
//! verify`, the installed interlinkd checks the installed example configuration, the
//! completion completes, and `dpkg --purge` removes every file. Needs root and dpkg; skipped
//! where the machine already has a package or an interlinkd of its own (an operator's
//! installation is never touched). lintian and systemd-analyze are in `scripts/test.sh`'s list.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use interlink_testkit as netns;

const FILES: &[&str] = &[
    "/etc/iproute2/rt_protos.d/interlink.conf",
    "/lib/systemd/system/interlinkd.service",
    "/usr/bin/interlinkctl",
    "/usr/lib/sysusers.d/interlink.conf",
    "/usr/lib/tmpfiles.d/interlink.conf",
    "/usr/sbin/interlinkd",
    "/usr/share/bash-completion/completions/interlinkctl",
    "/usr/share/doc/interlink/README.md.gz",
    "/usr/share/doc/interlink/changelog.gz",
    "/usr/share/doc/interlink/contrib/grafana/interlink.json",
    "/usr/share/doc/interlink/contrib/prometheus/interlink-alerts.test.yml",
    "/usr/share/doc/interlink/contrib/prometheus/interlink-alerts.yml",
    "/usr/share/doc/interlink/contrib/wireshark/interlink.lua",
    "/usr/share/doc/interlink/copyright",
    "/usr/share/doc/interlink/examples/interlink.toml",
    "/usr/share/doc/interlink/examples/interlinkd-ethernet.conf",
    "/usr/share/man/man5/interlink.toml.5.gz",
    "/usr/share/man/man8/interlinkctl.8.gz",
    "/usr/share/man/man8/interlinkd.8.gz",
];

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn group_exists() -> bool {
    run("getent", &["group", "interlink"]).status.success()
}

/// Purges the package on every path out of the test, and removes the group if the test
/// made it.
struct Installed {
    made_group: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", "interlink"]);
        if self.made_group {
            let _ = run("groupdel", &["interlink"]);
        }
    }
}

#[test]
fn the_debian_package_installs_checks_and_purges_cleanly() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("dpkg-deb") {
        eprintln!("skipped: dpkg-deb is not installed");
        return;
    }
    if run("dpkg-query", &["-W", "interlink"]).status.success()
        || Path::new("/usr/sbin/interlinkd").exists()
    {
        eprintln!("skipped: this machine has an interlink of its own");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"))
        .parent()
        .unwrap()
        .to_owned();
    let out: PathBuf = std::env::temp_dir().join(format!("il-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let built = Command::new(root.join("scripts/package.sh"))
        .env("INTERLINK_PACKAGE_BIN", &bin)
        .env("INTERLINK_PACKAGE_OUT", &out)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", text(&built));
    let deb = String::from_utf8_lossy(&built.stdout).trim().to_owned();
    assert!(
        deb.ends_with("_amd64.deb") || deb.ends_with(".deb"),
        "{deb}"
    );

    // Exactly the files it should hold.
    let listing = run("dpkg-deb", &["--fsys-tarfile", &deb]);
    assert!(listing.status.success());
    let tar = run_stdin("tar", &["-t"], &listing.stdout);
    let mut files: Vec<String> = String::from_utf8_lossy(&tar.stdout)
        .lines()
        .filter(|l| !l.ends_with('/'))
        .map(|l| l.trim_start_matches('.').to_owned())
        .collect();
    files.sort();
    assert_eq!(files, FILES, "the package's files");
    let control = text(&run("dpkg-deb", &["-f", &deb]));
    assert!(control.contains("Depends: libc6 (>= 2."), "{control}");

    // lintian: no error (warnings and notes are printed for the record).
    if netns::have("lintian") {
        let l = run("lintian", &["--tag-display-limit", "0", &deb]);
        let report = text(&l);
        eprintln!("lintian:\n{report}");
        assert!(
            !report.lines().any(|l| l.starts_with("E:")),
            "lintian errors:\n{report}"
        );
    } else {
        eprintln!("lintian is not installed: not run");
    }

    let _installed = Installed {
        made_group: !group_exists(),
    };
    let i = run("dpkg", &["-i", &deb]);
    assert!(i.status.success(), "{}", text(&i));
    for f in FILES {
        assert!(Path::new(f).exists(), "{f} is not installed");
    }
    assert!(group_exists(), "postinst made no group interlink");
    use std::os::unix::fs::PermissionsExt;
    let state = std::fs::metadata("/var/lib/interlink").expect("the state directory");
    assert_eq!(state.permissions().mode() & 0o777, 0o700);

    // The installed unit verifies, binary paths and all.
    if netns::have("systemd-analyze") {
        let v = run(
            "systemd-analyze",
            &[
                "verify",
                "--man=no",
                "/lib/systemd/system/interlinkd.service",
            ],
        );
        assert!(v.status.success(), "{}", text(&v));
        let err = String::from_utf8_lossy(&v.stderr);
        assert!(err.trim().is_empty(), "warnings:\n{err}");
    }

    // The installed interlinkd checks the installed example, with its key files made.
    let dir = out.join("etc");
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::copy(
        "/usr/share/doc/interlink/examples/interlink.toml",
        dir.join("interlink.toml"),
    )
    .unwrap();
    for k in ["site-b.tx.sak", "site-b.rx.sak"] {
        let p = dir.join("keys").join(k);
        std::fs::write(&p, format!("{}\n", "5a".repeat(32))).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cfg = dir.join("interlink.toml");
    let c = run(
        "/usr/sbin/interlinkd",
        &["--check", "--config", cfg.to_str().unwrap()],
    );
    assert!(c.status.success(), "{}", text(&c));
    let h = run("/usr/bin/interlinkctl", &["--help"]);
    assert!(text(&h).contains("show links"), "{}", text(&h));
    for page in ["interlinkd.8", "interlinkctl.8"] {
        let gz = format!("/usr/share/man/man8/{page}.gz");
        assert!(run("gzip", &["-t", &gz]).status.success(), "{gz}");
    }

    // The completion completes (with bash-completion's helper stood in).
    let script = "_init_completion() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; \
                  words=(\"${COMP_WORDS[@]}\"); cword=$COMP_CWORD; }; \
                  . /usr/share/bash-completion/completions/interlinkctl; \
                  COMP_WORDS=(interlinkctl show ''); COMP_CWORD=2; _interlinkctl; echo \"${COMPREPLY[*]}\"; \
                  COMP_WORDS=(interlinkctl --json neighbor 10.0.0.1 ''); COMP_CWORD=4; _interlinkctl; echo \"${COMPREPLY[*]}\"; \
                  COMP_WORDS=(interlinkctl link offer x --underlay 192.0.2.1 --p); COMP_CWORD=6; _interlinkctl; echo \"${COMPREPLY[*]}\"";
    let b = run("bash", &["-c", script]);
    let lines = String::from_utf8_lossy(&b.stdout).into_owned();
    let mut lines = lines.lines();
    assert_eq!(
        lines.next(),
        Some("links neighbors routes fib bfd flows"),
        "{}",
        text(&b)
    );
    assert_eq!(lines.next(), Some("reset shutdown enable"), "{}", text(&b));
    assert_eq!(lines.next(), Some("--peer --peer-asn"), "{}", text(&b));

    // Purged: every file gone, the state directory too.
    let p = run("dpkg", &["--purge", "interlink"]);
    assert!(p.status.success(), "{}", text(&p));
    for f in FILES {
        assert!(!Path::new(f).exists(), "{f} left after purge");
    }
    assert!(!Path::new("/var/lib/interlink").exists());
    assert!(!Path::new("/usr/share/doc/interlink").exists());
    let _ = std::fs::remove_dir_all(&out);
}

fn run_stdin(cmd: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

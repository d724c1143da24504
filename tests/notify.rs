//! interlinkd under systemd's notification protocol: READY=1 with a STATUS once running,
//! WATCHDOG=1 at half the interval systemd asks for, RELOADING=1 and READY=1 around a SIGHUP
//! reload (an invalid file included), STOPPING=1 on SIGTERM; and its log lines in the
//! journal's native protocol with their fields. Needs root (the daemon runs in a network
//! namespace of its own).

use interlink_testkit as netns;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use netns::Lab;

#[test]
fn ready_watchdog_and_stopping() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("notify");
    lab.add_ns("d");
    let sock_path = lab.dir.join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cfg = lab.file("interlink.toml", "# nothing to run but the FIB\n");
    let bin = env!("CARGO_BIN_EXE_interlinkd");
    let notify = format!("NOTIFY_SOCKET={}", sock_path.display());
    lab.spawn_in(
        "d",
        "d",
        Path::new("env"),
        &[
            &notify,
            "WATCHDOG_USEC=200000",
            bin,
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut buf = [0u8; 1024];
    let mut recv = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = recv();
    assert!(first.starts_with("READY=1\nSTATUS=running"), "{first:?}");
    // Watchdog keep-alives, every 100 ms for WATCHDOG_USEC of 200 ms.
    let start = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        assert_eq!(recv(), "WATCHDOG=1");
        pings += 1;
    }
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // A reload: RELOADING=1 with the monotonic time, then READY=1 again.
    let mut next = || loop {
        let m = recv();
        if m != "WATCHDOG=1" {
            return m;
        }
    };
    lab.signal("d", "HUP");
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading:?}"
    );
    assert!(next().starts_with("READY=1\nSTATUS=running"));
    // An invalid file: the running configuration stays, and the log says why.
    std::fs::write(&cfg, "[[link]]\nname = 1\n").unwrap();
    lab.signal("d", "HUP");
    assert!(next().starts_with("RELOADING=1"));
    assert!(next().starts_with("READY=1"));
    let log = lab.log("d");
    assert!(
        log.contains("reload: the new configuration has errors; the running one stays"),
        "{log}"
    );
    assert!(
        log.contains("interlink.toml:2:"),
        "the error's place: {log}"
    );
    let (status, log) = lab.stop("d");
    assert_eq!(status, Some(0), "{log}");
    let mut last = recv();
    while last == "WATCHDOG=1" {
        last = recv();
    }
    assert_eq!(last, "STOPPING=1");
}

/// One native-protocol journal entry (systemd.journal-fields(7)) as its fields.
fn journal_fields(datagram: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = datagram;
    while !rest.is_empty() {
        let line_end = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("a field ends in a newline");
        let line = &rest[..line_end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            rest = &rest[line_end + 1..];
        } else {
            // KEY, newline, 64-bit little-endian length, value, newline.
            let len_at = line_end + 1;
            let len = u64::from_le_bytes(rest[len_at..len_at + 8].try_into().unwrap()) as usize;
            let value = &rest[len_at + 8..len_at + 8 + len];
            out.push((
                String::from_utf8_lossy(line).into_owned(),
                String::from_utf8_lossy(value).into_owned(),
            ));
            rest = &rest[len_at + 8 + len + 1..];
        }
    }
    out
}

/// Under systemd, with stderr the journal's stream, every line goes to journald by its
/// native protocol: with a priority, interlinkd as its identifier, the structured fields, and
/// no timestamp of its own; nothing goes to stderr. journald is stood in for by a socket of
/// the test's, mounted at /run/systemd/journal in a mount namespace of the daemon's own, and
/// the stream by the log file (the daemon compares `$JOURNAL_STREAM` with stderr's device
/// and inode, as sd_journal_stream_fd(3) says to).
#[test]
fn logs_go_to_the_journal_with_fields() {
    use std::os::unix::fs::MetadataExt;
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("journal");
    lab.add_ns("d");
    let journal_dir = lab.dir.join("journal");
    std::fs::create_dir_all(&journal_dir).unwrap();
    let journal = UnixDatagram::bind(journal_dir.join("socket")).unwrap();
    journal
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    lab.secret("a.sak", "000102030405060708090a0b0c0d0e0f");
    lab.secret("b.sak", "0f0e0d0c0b0a09080706050403020100");
    let cfg = lab.file(
        "interlink.toml",
        &(lab.daemon_section("state")
            + "[[link]]\nname = \"l0\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
         local = \"127.0.0.1:5000\"\nremote = \"127.0.0.2:6000\"\n\
         [link.macsec]\ncipher_suite = \"gcm-aes-128\"\nkeying = \"static\"\n\
         tx_sak_file = \"a.sak\"\nrx_sak_file = \"b.sak\"\n"),
    );
    // The log file is stderr: its device and inode stand for the journal's stream.
    let log = lab.dir.join("d.log");
    std::fs::write(&log, "").unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let stream = format!("JOURNAL_STREAM={}:{}", meta.dev(), meta.ino());
    let mount = format!(
        "mount -t tmpfs none /run && mkdir -p /run/systemd/journal && \
         mount --bind {} /run/systemd/journal && exec \"$0\" \"$@\"",
        journal_dir.display()
    );
    lab.spawn_in(
        "d",
        "d",
        Path::new("env"),
        &[
            &stream,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &mount,
            env!("CARGO_BIN_EXE_interlinkd"),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut buf = vec![0u8; 64 * 1024];
    let mut next = |what: &str| loop {
        let n = journal
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for {what}: {e}"));
        let fields = journal_fields(&buf[..n]);
        let message = &fields.iter().find(|(k, _)| k == "MESSAGE").unwrap().1;
        if message.contains(what) {
            return fields;
        }
    };
    let up = next("il0 up");
    let get = |fields: &[(String, String)], key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get(&up, "PRIORITY").as_deref(), Some("6"), "{up:?}");
    assert_eq!(get(&up, "SYSLOG_IDENTIFIER").as_deref(), Some("interlinkd"));
    assert_eq!(get(&up, "INTERLINK_SUBSYSTEM").as_deref(), Some("link"));
    assert_eq!(get(&up, "INTERLINK_LINK").as_deref(), Some("l0"));
    // The message is the line itself: no timestamp, no program name before it.
    let message = get(&up, "MESSAGE").unwrap();
    assert!(message.starts_with("link l0: il0 up, mtu "), "{message:?}");
    // A warning: an invalid reload, at priority 4, in the reload subsystem.
    std::fs::write(&cfg, "[[link]]\nname = 1\n").unwrap();
    lab.signal("d", "HUP");
    let refused = next("the running one stays");
    assert_eq!(
        get(&refused, "PRIORITY").as_deref(),
        Some("4"),
        "{refused:?}"
    );
    assert_eq!(
        get(&refused, "INTERLINK_SUBSYSTEM").as_deref(),
        Some("reload")
    );
    let (status, stderr) = lab.stop("d");
    assert_eq!(status, Some(0), "{stderr}");
    assert_eq!(stderr, "", "every line went to the journal");
}

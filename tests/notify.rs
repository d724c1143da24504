//! interlinkd under systemd's notification protocol: READY=1 with a STATUS once running,
//! WATCHDOG=1 at half the interval systemd asks for, RELOADING=1 and READY=1 around a SIGHUP
//! reload (an invalid file included), STOPPING=1 on SIGTERM. Needs root (the
//! daemon runs in a network namespace of its own).

mod netns;

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

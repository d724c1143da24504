//! The systemd notification protocol (sd_notify(3)), without libsystemd: READY, STATUS,
//! RELOADING, WATCHDOG and STOPPING as datagrams to `$NOTIFY_SOCKET` (a path, or `@` for the abstract
//! namespace). Outside systemd the variable is unset and every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

pub struct Notifier {
    sock: Option<(UnixDatagram, String)>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let sock = std::env::var("NOTIFY_SOCKET").ok().and_then(|path| {
            let s = UnixDatagram::unbound().ok()?;
            Some((s, path))
        });
        Notifier { sock }
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments); errors are not fatal.
    pub fn notify(&self, state: &str) {
        let Some((sock, path)) = &self.sock else {
            return;
        };
        let _ = if let Some(name) = path.strip_prefix('@') {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                .and_then(|a| sock.send_to_addr(state.as_bytes(), &a))
        } else {
            sock.send_to(state.as_bytes(), path)
        };
    }

    /// RELOADING=1 with the monotonic time systemd wants beside it; READY=1 follows when the
    /// reload is done.
    pub fn reloading(&self) {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let usec = ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000;
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    /// How often to send WATCHDOG=1: half of `$WATCHDOG_USEC`, if systemd asks for it (and
    /// `$WATCHDOG_PID`, when set, is ours).
    pub fn watchdog_interval() -> Option<Duration> {
        let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
        if let Ok(pid) = std::env::var("WATCHDOG_PID") {
            if pid.parse::<u32>().ok()? != std::process::id() {
                return None;
            }
        }
        (usec > 0).then(|| Duration::from_micros(usec / 2))
    }
}

//! Log lines. Under systemd, when stderr is the journal's stream (`$JOURNAL_STREAM` names
//! it), each line goes to journald by its native protocol instead, with a priority and
//! structured fields: `INTERLINK_SUBSYSTEM` (mka, bgp, fib, link, reload, ...),
//! `INTERLINK_LINK` and `INTERLINK_NEIGHBOR` where the line is about one, so that
//! `journalctl INTERLINK_LINK=aws-use1` finds a link's story; journald stamps the time, so
//! the line carries none. Elsewhere each line goes to stderr as `interlinkd: MESSAGE`.

use std::net::IpAddr;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// syslog(3) priorities.
pub const WARNING: u8 = 4;
pub const INFO: u8 = 6;

/// The journal's socket, if stderr is the journal's stream.
fn journal() -> Option<&'static UnixDatagram> {
    static JOURNAL: OnceLock<Option<UnixDatagram>> = OnceLock::new();
    JOURNAL
        .get_or_init(|| {
            let stream = std::env::var("JOURNAL_STREAM").ok()?;
            let (dev, ino) = stream.split_once(':')?;
            let (dev, ino): (u64, u64) = (dev.parse().ok()?, ino.parse().ok()?);
            // SAFETY: fstat fills the stat buffer it is given for descriptor 2.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstat(2, &mut st) } != 0 {
                return None;
            }
            if st.st_dev != dev || st.st_ino != ino {
                return None;
            }
            let s = UnixDatagram::unbound().ok()?;
            s.connect(JOURNAL_SOCKET).ok()?;
            Some(s)
        })
        .as_ref()
}

/// Writes one log line at `priority`.
pub fn emit(priority: u8, message: &str) {
    if let Some(j) = journal() {
        if j.send(&entry(priority, message)).is_ok() {
            return;
        }
    }
    eprintln!("interlinkd: {message}");
}

/// The structured fields of a line, from the shape every line has: `SUBSYSTEM: ...`, with
/// `link NAME:` or a neighbor's address after it.
pub fn fields(message: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let mut rest = message;
    if let Some((first, tail)) = message.split_once(": ") {
        if let Some(name) = first.strip_prefix("link ") {
            out.push(("INTERLINK_SUBSYSTEM", "link".to_owned()));
            out.push(("INTERLINK_LINK", name.to_owned()));
            return out;
        }
        if first.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            out.push(("INTERLINK_SUBSYSTEM", first.to_owned()));
            rest = tail;
        }
    }
    if let Some(name) = rest.strip_prefix("link ").and_then(|r| r.split(':').next()) {
        out.push(("INTERLINK_LINK", name.to_owned()));
    } else if let Some(word) = rest.split(' ').next() {
        // The address, maybe followed by the colon that ends it (IPv6 has colons of its own).
        let a = word
            .parse::<IpAddr>()
            .or_else(|_| word.strip_suffix(':').unwrap_or(word).parse());
        if let Ok(a) = a {
            out.push(("INTERLINK_NEIGHBOR", a.to_string()));
        }
    }
    out
}

/// A journal entry in the native protocol (systemd.journal-fields(7), "Native Protocol"):
/// `KEY=value` lines, or for a value with a newline, `KEY`, its length as 64-bit little
/// endian, the value and a newline.
pub fn entry(priority: u8, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 128);
    let mut field = |key: &str, value: &str| {
        if value.contains('\n') {
            out.extend_from_slice(key.as_bytes());
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        } else {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    };
    field("MESSAGE", message);
    field("PRIORITY", &priority.to_string());
    field("SYSLOG_IDENTIFIER", "interlinkd");
    for (k, v) in fields(message) {
        field(k, &v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_from_the_shape_of_the_line() {
        let f = |m| fields(m);
        assert_eq!(
            f("mka: link aws-use1: receiving with key 2 on AN 1"),
            [
                ("INTERLINK_SUBSYSTEM", "mka".to_owned()),
                ("INTERLINK_LINK", "aws-use1".to_owned())
            ]
        );
        assert_eq!(
            f("link aws-use1: peer unreachable"),
            [
                ("INTERLINK_SUBSYSTEM", "link".to_owned()),
                ("INTERLINK_LINK", "aws-use1".to_owned())
            ]
        );
        assert_eq!(
            f("bgp: 169.254.10.1 (AS 64512) established"),
            [
                ("INTERLINK_SUBSYSTEM", "bgp".to_owned()),
                ("INTERLINK_NEIGHBOR", "169.254.10.1".to_owned())
            ]
        );
        assert_eq!(
            f("bgp: fd00::2: import policy changed; route refresh asked"),
            [
                ("INTERLINK_SUBSYSTEM", "bgp".to_owned()),
                ("INTERLINK_NEIGHBOR", "fd00::2".to_owned())
            ]
        );
        assert_eq!(
            f("fib: 10.0.0.0/8: deleted from outside; installing it again"),
            [("INTERLINK_SUBSYSTEM", "fib".to_owned())]
        );
        assert_eq!(f("stopping"), []);
    }

    #[test]
    fn entries_are_native_protocol() {
        let e = entry(WARNING, "link l0: peer unreachable");
        assert_eq!(
            String::from_utf8(e).unwrap(),
            "MESSAGE=link l0: peer unreachable\nPRIORITY=4\nSYSLOG_IDENTIFIER=interlinkd\n\
             INTERLINK_SUBSYSTEM=link\nINTERLINK_LINK=l0\n"
        );
        // A value with a newline goes length-prefixed.
        let e = entry(INFO, "reload: a\nb");
        assert!(e.starts_with(b"MESSAGE\n\x0b\0\0\0\0\0\0\0reload: a\nb\nPRIORITY=6\n"));
    }
}

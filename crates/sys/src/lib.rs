//! The few raw system calls that more than one part of interlink makes (the data path's
//! workers, the FIB's netlink thread), wrapped once: a negative return as the `errno` error,
//! `poll` for readability, an `eventfd` to wake a thread out of it, an interface's index,
//! and a file written so that a crash leaves the old contents or the new.
//! Each `unsafe` block here says why it is sound; callers stay in safe Rust.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A C return value: negative is the thread's `errno`.
pub fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A C size return value: negative is the thread's `errno`.
pub fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Waits until one of `fds` is readable (or in error, or hung up: a read then says what) or
/// `timeout_ms` passes; which ones are. A signal's interruption waits again.
pub fn poll_readable<const N: usize>(fds: [RawFd; N], timeout_ms: i32) -> io::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `pfds` is a valid array of N pollfd for the duration of the call.
        match cvt(unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) }) {
            Ok(_) => {
                return Ok(
                    pfds.map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
                )
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The index of interface `name`, or an error if there is none.
pub fn if_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid C string that lives across the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(io::Error::last_os_error()),
        i => Ok(i),
    }
}

/// An eventfd, non-blocking: one thread wakes another out of `poll`.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable. A counter already full only means already woken.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: an 8-octet write from a live buffer.
        unsafe { libc::write(self.0.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    /// Makes it unreadable again.
    pub fn drain(&self) {
        let mut b = [0u8; 8];
        // SAFETY: an 8-octet read into a live buffer; EAGAIN when not woken is fine.
        unsafe { libc::read(self.0.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Replaces the file at `path` with `contents`, durably: a temporary file of `mode` beside it,
/// fsync, rename over the old one, fsync of the directory. Either the old contents or the new
/// survive a crash at any point.
pub fn write_durably(path: &std::path::Path, contents: &[u8], mode: u32) -> io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    // One a crash left keeps its mode when opened again: made anew, it takes `mode`.
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_written_durably_replaces_the_old_with_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("il-sys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        // A temporary file a crash left, readable by all.
        std::fs::write(dir.join("state.tmp"), "stale").unwrap();
        std::fs::set_permissions(
            dir.join("state.tmp"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_durably(&path, b"one", 0o600).unwrap();
        write_durably(&path, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!dir.join("state.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_eventfd_wakes_poll_and_drains() {
        let e = EventFd::new().unwrap();
        assert_eq!(poll_readable([e.fd()], 0).unwrap(), [false]);
        e.wake();
        e.wake();
        assert_eq!(poll_readable([e.fd()], 1000).unwrap(), [true]);
        e.drain();
        assert_eq!(poll_readable([e.fd()], 0).unwrap(), [false]);
    }

    #[test]
    fn loopback_has_an_index_and_nonsense_has_none() {
        assert!(if_index("lo").unwrap() > 0);
        assert!(if_index("no-such-if-xyz").is_err());
        assert!(if_index("a\0b").is_err());
    }
}

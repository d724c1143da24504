//! The control socket interlinkctl talks to: a Unix stream socket, owner root, group
//! `interlink` (when that group exists), mode 0660. A client sends one command line (the
//! words after `interlinkctl`, such as `show links`) and gets one JSON document back, then
//! the connection closes: `{"ok": true, "data": ...}` or `{"ok": false, "error": "..."}`.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A command from a client, for the main loop, which answers on `reply`.
pub struct Request {
    pub line: String,
    pub reply: oneshot::Sender<serde_json::Value>,
}

/// The command line must have come whole within this.
const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest command line taken: commands are a few words.
const MAX_LINE: usize = 4096;

/// The group whose members may use interlinkctl without root.
const GROUP: &str = "interlink";

fn group_id(name: &str) -> Option<libc::gid_t> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: getgrnam takes a NUL-terminated name and returns a pointer to static storage
    // or null; the gid is read at once.
    let g = unsafe { libc::getgrnam(c.as_ptr()) };
    // SAFETY: non-null: a valid group entry.
    (!g.is_null()).then(|| unsafe { (*g).gr_gid })
}

/// Binds the socket at `path`. A socket file left by a daemon that is gone is replaced; one
/// that a running daemon answers on is not.
pub async fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another interlinkd answers on it",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(gid) = group_id(GROUP) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: chown on a NUL-terminated path; uid -1 leaves the owner (root) as it is.
        if unsafe { libc::chown(c.as_ptr(), u32::MAX, gid) } != 0 {
            // Without CAP_CHOWN (the unit does not grant it) a process may give its files
            // only to a group it is in: the unit's SupplementaryGroups=interlink. Otherwise
            // the socket stays root's alone, which is still a socket.
            let e = io::Error::last_os_error();
            warn!(
                "control socket {}: cannot give it to group {GROUP} ({e}): only root reaches \
                 it (run with SupplementaryGroups={GROUP}, as the shipped unit does)",
                path.display()
            );
        }
    }
    Ok(l)
}

/// At most this many interlinkctl clients at once.
const MAX_CLIENTS: usize = 32;

/// A whole exchange (the command, the main loop's answer, the reply) within this; a reload
/// answers in well under it.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Accepts clients for ever (see `listen`), each in a task of its own, and hands their
/// commands to the main loop through `requests`.
pub fn serve(listener: UnixListener, requests: mpsc::Sender<Request>) {
    let limits = crate::listen::Limits {
        max_connections: MAX_CLIENTS,
        deadline: DEADLINE,
    };
    crate::listen::serve(
        "control socket",
        listener,
        limits,
        &crate::listen::CONTROL,
        move |stream| {
            let requests = requests.clone();
            async move {
                let _ = client(stream, requests).await;
            }
        },
    );
}

async fn client(stream: UnixStream, requests: mpsc::Sender<Request>) -> io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r.take(MAX_LINE as u64));
    let mut line = String::new();
    let read = tokio::time::timeout(READ_DEADLINE, r.read_line(&mut line)).await;
    let answer = match read {
        Err(_) => error("no command line within 5 s"),
        Ok(Ok(_)) if !line.ends_with('\n') => error("a command is one line of at most 4096 octets"),
        Ok(Ok(_)) => {
            let (reply, rx) = oneshot::channel();
            let line = line.trim().to_owned();
            if requests.send(Request { line, reply }).await.is_err() {
                error("interlinkd is stopping")
            } else {
                rx.await.unwrap_or_else(|_| error("interlinkd is stopping"))
            }
        }
        Ok(Err(_)) => error("a command is one line of UTF-8 text"),
    };
    let mut text = answer.to_string();
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.shutdown().await
}

pub fn ok(data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "ok": true, "data": data })
}

pub fn error(message: impl Into<String>) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": message.into() })
}

/// Removes the socket file at exit.
pub struct Cleanup(pub PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

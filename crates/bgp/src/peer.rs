//! The I/O edge of one BGP peer, on tokio: TCP connections out and in, TTL 1 for a directly
//! connected eBGP peer, TCP-MD5 (RFC 2385), message framing and timers. What to do with the
//! connections, collision resolution between an outgoing and an incoming one (RFC 4271 §6.8)
//! included, is `collision::Connections`' to decide (and the session's, `fsm::Session`);
//! this only carries it out.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use interlink_secret::Secret;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::collision::{ConnId, Connections, In, Out};
use crate::fsm::{self, Down, Event, Negotiated, State};
use crate::wire::{code, frame, Family, Message, Notification};

/// How long a closing connection may take to write what waits (a NOTIFICATION).
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub fsm: fsm::Config,
    pub remote: SocketAddr,
    /// Our address for the session (the source of outgoing connections).
    pub local: Option<IpAddr>,
    /// The TTL the session's segments go with, and take.
    pub ttl: Ttl,
    /// The TCP-MD5 key (RFC 2385), at most 80 octets.
    pub md5: Option<Secret>,
    /// Counted here, read by whoever reports them.
    pub counts: Arc<MessageCounts>,
}

/// The TTL of a session's segments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The system's default: iBGP.
    Default,
    /// TTL 1: a directly connected eBGP peer (RFC 4271 does not require it, every cloud
    /// router expects it), on the connections we open and those we accept.
    One,
    /// GTSM (RFC 5082): sent with TTL 255; segments that arrive with less (from further than
    /// one hop away) are dropped by the kernel (IP_MINTTL, IPV6_MINHOPCOUNT).
    Gtsm,
}

/// Messages sent and received on the session, by type: OPEN, UPDATE, NOTIFICATION,
/// KEEPALIVE, ROUTE-REFRESH (index = type code - 1), and any other type last.
#[derive(Debug, Default)]
pub struct MessageCounts {
    sent: [AtomicU64; 6],
    received: [AtomicU64; 6],
}

/// The names of the message types, in [`MessageCounts`]' order.
pub const MESSAGE_TYPES: [&str; 6] = [
    "open",
    "update",
    "notification",
    "keepalive",
    "route_refresh",
    "other",
];

fn type_index(kind: u8) -> usize {
    match kind {
        1..=5 => usize::from(kind) - 1,
        _ => 5,
    }
}

impl MessageCounts {
    pub fn sent(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.sent[i].load(Ordering::Relaxed))
    }

    pub fn received(&self) -> [u64; 6] {
        std::array::from_fn(|i| self.received[i].load(Ordering::Relaxed))
    }

    fn count_sent(&self, kind: u8) {
        self.sent[type_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    fn count_received(&self, kind: u8) {
        self.received[type_index(kind)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the messages in `bytes`, whole encoded messages back to back.
    fn count_sent_stream(&self, bytes: &[u8]) {
        let mut at = 0;
        while let Some(h) = bytes.get(at..at + 19) {
            self.count_sent(h[18]);
            let len = usize::from(u16::from_be_bytes([h[16], h[17]]));
            at += len.max(19);
        }
    }
}

/// What the peer tells the rest of the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerEvent {
    /// Established, over a connection from `local`.
    Up(Box<Negotiated>, SocketAddr),
    Down(Down),
    Failed(Down),
    Update(Vec<u8>),
    RouteRefresh(Family),
    /// This many octets were written to the socket: the speaker may hand over more.
    Written(usize),
}

const TCP_MD5SIG: libc::c_int = 14;
const TCP_MD5SIG_MAXKEYLEN: usize = 80;

/// `struct tcp_md5sig` (linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: i32,
    key: [u8; TCP_MD5SIG_MAXKEYLEN],
}

/// Sets the TCP-MD5 key for `peer` on `fd` (a listening or a connecting socket).
pub fn set_md5(fd: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > TCP_MD5SIG_MAXKEYLEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "MD5 key over 80 octets",
        ));
    }
    // SAFETY: zero is a valid sockaddr_storage and tcp_md5sig.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    match peer {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage, which is aligned for it.
            let sin = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut sig.addr as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = a.octets();
        }
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: the option value is a tcp_md5sig that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_int(
    fd: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: a c_int option value that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets a connection's TTL as `ttl` says (before connecting, or on an accepted socket).
pub fn set_ttl(fd: &impl AsRawFd, v6: bool, ttl: Ttl) -> io::Result<()> {
    let (level, hops, min) = if v6 {
        (
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            libc::IPV6_MINHOPCOUNT,
        )
    } else {
        (libc::IPPROTO_IP, libc::IP_TTL, libc::IP_MINTTL)
    };
    match ttl {
        Ttl::Default => Ok(()),
        Ttl::One => set_int(fd, level, hops, 1),
        Ttl::Gtsm => {
            set_int(fd, level, hops, 255)?;
            set_int(fd, level, min, 255)
        }
    }
}

/// A listening socket for BGP on `addr`, with the MD5 keys of the peers that have one.
pub fn listen(addr: SocketAddr, md5: &[(IpAddr, Secret)]) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let s = TcpSocket::new_v6()?;
        // IPv4 peers come to the IPv4 socket, where their MD5 keys are.
        set_int(&s, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        s
    };
    sock.set_reuseaddr(true)?;
    for (peer, key) in md5.iter().filter(|(p, _)| p.is_ipv4() == addr.is_ipv4()) {
        set_md5(&sock, *peer, key.as_bytes())?;
    }
    sock.bind(addr)?;
    sock.listen(64)
}

async fn connect(cfg: &PeerConfig) -> io::Result<TcpStream> {
    let v6 = cfg.remote.is_ipv6();
    let sock = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(key) = &cfg.md5 {
        set_md5(&sock, cfg.remote.ip(), key.as_bytes())?;
    }
    set_ttl(&sock, v6, cfg.ttl)?;
    if let Some(local) = cfg.local {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    sock.connect(cfg.remote).await
}

/// One TCP connection: what has been read from it and not yet framed, and what is to be
/// written to it. Writes never hold up the session task: they wait here, written as the
/// socket takes them, while reads and timers go on.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Octets to write, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// When `out` last made progress (or began to wait): a write that makes none for the
    /// hold time ends the session.
    progress: Instant,
    counts: Arc<MessageCounts>,
}

impl Conn {
    fn new(stream: TcpStream, counts: &Arc<MessageCounts>) -> Conn {
        stream.set_nodelay(true).ok();
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            out: Vec::new(),
            written: 0,
            progress: Instant::now(),
            counts: counts.clone(),
        }
    }

    fn waiting(&self) -> bool {
        self.written < self.out.len()
    }

    /// Queues encoded messages for writing.
    fn queue(&mut self, bytes: &[u8]) {
        if !self.waiting() {
            self.out.clear();
            self.written = 0;
            self.progress = Instant::now();
        }
        self.out.extend_from_slice(bytes);
        self.counts.count_sent_stream(bytes);
    }

    fn send(&mut self, m: &Message) {
        let mut out = Vec::new();
        m.encode(&mut out);
        self.queue(&out);
    }

    /// Writes what waits, for at most `within` (a NOTIFICATION before a close).
    async fn flush(&mut self, within: Duration) {
        let rest = &self.out[self.written..];
        let _ = tokio::time::timeout(within, self.stream.write_all(rest)).await;
        self.out.clear();
        self.written = 0;
    }
}

/// What the rest of the daemon tells a peer.
#[derive(Debug)]
pub enum PeerCmd {
    /// Encoded messages (UPDATEs) to send while Established; dropped otherwise.
    Send(Vec<u8>),
    /// Reset the session with this NOTIFICATION (RFC 7606 session reset, max-prefix).
    Reset(Notification),
    /// ManualStop: Cease/Administrative Shutdown with this communication, then Idle until
    /// `Start`.
    Stop(String),
    /// ManualStart.
    Start,
}

/// The connections the I/O layer holds, by the numbers [`Connections`] knows them by.
#[derive(Default)]
struct Sockets {
    conns: Vec<(ConnId, Conn)>,
    next: ConnId,
}

impl Sockets {
    fn add(&mut self, s: TcpStream, counts: &Arc<MessageCounts>) -> ConnId {
        self.next += 1;
        self.conns.push((self.next, Conn::new(s, counts)));
        self.next
    }

    fn get(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .iter_mut()
            .find(|(i, _)| *i == id)
            .map(|(_, c)| c)
    }

    /// Closes `id`, after what waits to be written to it (a NOTIFICATION) if the socket
    /// takes it within a second.
    async fn close(&mut self, id: ConnId) {
        if let Some(at) = self.conns.iter().position(|(i, _)| *i == id) {
            let (_, mut c) = self.conns.swap_remove(at);
            c.flush(FLUSH_ON_CLOSE).await;
            let _ = c.stream.shutdown().await;
        }
    }

    async fn close_all(&mut self) {
        for (_, mut c) in self.conns.drain(..) {
            c.flush(FLUSH_ON_CLOSE).await;
            let _ = c.stream.shutdown().await;
        }
    }

    /// The two connections `a` and `b`, to read from both at once.
    fn pair(
        &mut self,
        a: Option<ConnId>,
        b: Option<ConnId>,
    ) -> (Option<&mut Conn>, Option<&mut Conn>) {
        let (mut ra, mut rb) = (None, None);
        for (id, c) in self.conns.iter_mut() {
            if Some(*id) == a {
                ra = Some(c);
            } else if Some(*id) == b {
                rb = Some(c);
            }
        }
        (ra, rb)
    }
}

/// Runs the peer until `stop` says so (with the shutdown communication to send). Incoming
/// connections from the peer's address arrive on `incoming`; commands on `cmds`. What to do
/// with the connections, collisions included, is [`Connections`]' to decide; this carries
/// it out.
pub async fn run(
    cfg: PeerConfig,
    mut incoming: mpsc::Receiver<TcpStream>,
    events: mpsc::Sender<PeerEvent>,
    mut stop: watch::Receiver<Option<String>>,
    mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
) {
    let mut conns = Connections::new(cfg.fsm.clone());
    let mut sockets = Sockets::default();
    let mut incoming_open = true;
    // Results of connection attempts, by the attempt's number: one given up may still
    // report, and is then told apart from a newer one.
    let (connected_tx, mut connected_rx) = mpsc::channel::<(u64, io::Result<TcpStream>)>(2);
    let mut attempt: Option<(u64, tokio::task::AbortHandle)> = None;
    let mut attempts = 0u64;
    let mut out = conns.handle(Instant::now(), In::Session(Event::Start));
    loop {
        // Carry out what was decided. Writes are queued on their connection: one that
        // fails shows as a closed connection at its next turn of I/O.
        for o in std::mem::take(&mut out) {
            match o {
                Out::Connect => {
                    let c = cfg.clone();
                    let tx = connected_tx.clone();
                    attempts += 1;
                    let n = attempts;
                    let task = tokio::spawn(async move {
                        let r = tokio::time::timeout(Duration::from_secs(10), connect(&c))
                            .await
                            .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                        let _ = tx.send((n, r)).await;
                    });
                    attempt = Some((n, task.abort_handle()));
                }
                Out::CancelConnect => {
                    // Aborting drops the socket: its SYNs stop, and a late SYN-ACK is reset.
                    if let Some((_, task)) = attempt.take() {
                        task.abort();
                    }
                }
                Out::Send(id, m) => {
                    if let Some(c) = sockets.get(id) {
                        c.send(&m);
                    }
                }
                Out::Close(id) => sockets.close(id).await,
                Out::Up(n, id) => {
                    let local = sockets
                        .get(id)
                        .and_then(|c| c.stream.local_addr().ok())
                        .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                    let _ = events.send(PeerEvent::Up(n, local)).await;
                }
                Out::Down(d) => {
                    let _ = events.send(PeerEvent::Down(d)).await;
                }
                Out::Failed(d) => {
                    let _ = events.send(PeerEvent::Failed(d)).await;
                }
                Out::Update(u) => {
                    let _ = events.send(PeerEvent::Update(u)).await;
                }
                Out::RouteRefresh(f) => {
                    let _ = events.send(PeerEvent::RouteRefresh(f)).await;
                }
            }
        }

        // A write that has made no progress for the hold time ends the session, as a peer
        // that sends nothing would (the peer may be sending KEEPALIVEs and reading nothing).
        let stall_limit = match conns
            .negotiated()
            .map_or(cfg.fsm.hold_time, |n| n.hold_time)
        {
            0 => Duration::from_secs(240),
            h => Duration::from_secs(h.into()),
        };
        let stalled = conns
            .primary()
            .and_then(|id| sockets.get(id))
            .filter(|c| c.waiting())
            .map(|c| c.progress + stall_limit);
        let deadline = conns
            .next_timer()
            .into_iter()
            .chain(stalled)
            .min()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let max = conns.max_len();
        let (primary, other) = (conns.primary(), conns.other());
        let (primary_conn, other_conn) = sockets.pair(primary, other);
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                let now = Instant::now();
                out = if stalled.is_some_and(|s| s <= now) {
                    // RFC 4271 §6.5 in spirit: the peer has stopped taking our messages.
                    let n = Notification::new(code::HOLD_TIMER_EXPIRED, 0, &[]);
                    conns.handle(now, In::Session(Event::Reset(n)))
                } else {
                    conns.on_timer(now)
                };
            }
            r = connected_rx.recv() => {
                out = match r {
                    // A given-up attempt's result: its socket closes here.
                    Some((n, _)) if attempt.as_ref().is_none_or(|(a, _)| *a != n) => Vec::new(),
                    Some((_, Ok(s))) => {
                        attempt = None;
                        let id = sockets.add(s, &cfg.counts);
                        conns.handle(Instant::now(), In::Connected(id))
                    }
                    _ => {
                        attempt = None;
                        conns.handle(Instant::now(), In::ConnectFailed)
                    }
                };
            }
            s = incoming.recv(), if incoming_open => {
                // Without a listener there is nothing more to accept; the peer runs on.
                match s {
                    None => incoming_open = false,
                    Some(s) => {
                        // The peer's connection goes with the TTL ours would (TTL 1 to a
                        // passive eBGP session too), and with GTSM takes nothing from
                        // further away from here on (the listener serves every neighbor).
                        // One whose TTL cannot be set is closed, not taken.
                        if set_ttl(&s, cfg.remote.is_ipv6(), cfg.ttl).is_ok() {
                            let id = sockets.add(s, &cfg.counts);
                            out = conns.handle(Instant::now(), In::Accepted(id));
                        }
                    }
                }
            }
            r = io_some(other_conn) => {
                let id = other.expect("read from the colliding connection");
                out = read_in(&mut sockets, id, r, max, &mut conns);
            }
            r = io_some(primary_conn) => {
                let id = primary.expect("read from a connection");
                if let Ok(Io { wrote, .. }) = &r {
                    if *wrote > 0 && conns.state() == State::Established {
                        let _ = events.send(PeerEvent::Written(*wrote)).await;
                    }
                }
                out = read_in(&mut sockets, id, r, max, &mut conns);
            }
            c = cmds.recv() => {
                match c {
                    // The speaker let go of this peer (a reload removed or replaced it, after
                    // a Stop): the task ends.
                    None => {
                        sockets.close_all().await;
                        break;
                    }
                    Some(PeerCmd::Send(bytes)) => {
                        let target = conns.primary().filter(|_| conns.state() == State::Established);
                        if let Some(c) = target.and_then(|id| sockets.get(id)) {
                            c.queue(&bytes);
                            conns.sent_update(Instant::now());
                        }
                    }
                    Some(PeerCmd::Reset(n)) => {
                        out = conns.handle(Instant::now(), In::Session(Event::Reset(n)));
                    }
                    Some(PeerCmd::Stop(text)) => {
                        out = conns.handle(Instant::now(), In::Session(Event::Stop(text)));
                    }
                    Some(PeerCmd::Start) => {
                        out = conns.handle(Instant::now(), In::Session(Event::Start));
                    }
                }
            }
            _ = stop.changed() => {
                let text = stop.borrow().clone().unwrap_or_default();
                for o in conns.handle(Instant::now(), In::Session(Event::Stop(text))) {
                    match o {
                        Out::Send(id, m) => {
                            if let Some(c) = sockets.get(id) {
                                c.send(&m);
                            }
                        }
                        Out::Down(d) => {
                            let _ = events.send(PeerEvent::Down(d)).await;
                        }
                        _ => {}
                    }
                }
                sockets.close_all().await;
                break;
            }
        }
    }
}

/// What a turn of I/O on connection `id` brought: its messages, or its end.
fn read_in(
    sockets: &mut Sockets,
    id: ConnId,
    r: io::Result<Io>,
    max: usize,
    conns: &mut Connections,
) -> Vec<Out> {
    match (r, sockets.get(id)) {
        (Ok(Io { read: None, .. }), Some(_)) => Vec::new(),
        (Ok(Io { read: Some(n), .. }), Some(c)) if n > 0 => {
            let events = drain_events(c, max);
            conns.handle(Instant::now(), In::Read(id, events))
        }
        _ => conns.handle(Instant::now(), In::Closed(id)),
    }
}

/// The whole messages in the connection's buffer, as state machine events, removed from it.
/// A malformed message is the last event: the session closes on it.
fn drain_events(c: &mut Conn, max: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let mut used = 0;
    loop {
        match frame(&c.buf[used..], max) {
            Ok(Some(f)) => {
                used += f.len;
                c.counts.count_received(f.kind);
                match Message::decode(f.kind, f.body) {
                    Ok(m) => out.push(Event::Received(m)),
                    Err(n) => {
                        out.push(Event::Malformed(n));
                        break;
                    }
                }
            }
            Ok(None) => break,
            Err(n) => {
                out.push(Event::Malformed(n));
                break;
            }
        }
    }
    c.buf.drain(..used.min(c.buf.len()));
    out
}

/// What one turn of I/O on a connection did: octets read (None: nothing to read yet; 0: the
/// peer closed) and written.
struct Io {
    read: Option<usize>,
    wrote: usize,
}

/// Waits until the connection can be read, or written while something waits to be; then
/// reads into its buffer and writes what it can. Pending forever without a connection.
async fn io_some(conn: Option<&mut Conn>) -> io::Result<Io> {
    let Some(c) = conn else {
        return std::future::pending().await;
    };
    loop {
        let interest = if c.waiting() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = c.stream.ready(interest).await?;
        let mut wrote = 0;
        if ready.is_writable() && c.waiting() {
            match c.stream.try_write(&c.out[c.written..]) {
                Ok(n) => {
                    wrote = n;
                    c.written += n;
                    c.progress = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if ready.is_readable() {
            if c.buf.capacity() - c.buf.len() < 4096 {
                c.buf.reserve(64 * 1024);
            }
            match c.stream.try_read_buf(&mut c.buf) {
                Ok(n) => {
                    return Ok(Io {
                        read: Some(n),
                        wrote,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if wrote > 0 {
            return Ok(Io { read: None, wrote });
        }
    }
}

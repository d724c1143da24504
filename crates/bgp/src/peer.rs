//! The I/O edge of one BGP peer, on tokio: TCP connections out and in, TTL 1 for a directly
//! connected eBGP peer, TCP-MD5 (RFC 2385), message framing, timers, and collision
//! resolution between an outgoing and an incoming connection (RFC 4271 §6.8). The state
//! machine itself is `fsm::Session`; this only carries out its actions.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use interlink_secret::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::fsm::{self, keep_ours_on_collision, Action, Down, Event, Negotiated, Session, State};
use crate::wire::{code, frame, Family, Message, Notification, MAX_EXTENDED_LEN, MAX_LEN};

#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub fsm: fsm::Config,
    pub remote: SocketAddr,
    /// Our address for the session (the source of outgoing connections).
    pub local: Option<IpAddr>,
    /// Send with TTL 1: a directly connected eBGP peer (RFC 4271 does not require it, every
    /// cloud router expects it).
    pub ttl1: bool,
    /// The TCP-MD5 key (RFC 2385), at most 80 octets.
    pub md5: Option<Secret>,
    /// Counted here, read by whoever reports them.
    pub counts: Arc<MessageCounts>,
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

fn set_ttl1(fd: &impl AsRawFd, v6: bool) -> io::Result<()> {
    let (level, name) = if v6 {
        (libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS)
    } else {
        (libc::IPPROTO_IP, libc::IP_TTL)
    };
    let one: libc::c_int = 1;
    // SAFETY: a c_int option value that lives across the call.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A listening socket for BGP on `addr`, with the MD5 keys of the peers that have one.
pub fn listen(addr: SocketAddr, md5: &[(IpAddr, Secret)]) -> io::Result<TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let s = TcpSocket::new_v6()?;
        // IPv4 peers come to the IPv4 socket, where their MD5 keys are.
        let one: libc::c_int = 1;
        // SAFETY: a c_int option value that lives across the call.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_V6ONLY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
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
    if cfg.ttl1 {
        set_ttl1(&sock, v6)?;
    }
    if let Some(local) = cfg.local {
        sock.bind(SocketAddr::new(local, 0))?;
    }
    sock.connect(cfg.remote).await
}

/// One TCP connection with what has been read from it and not yet framed.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    counts: Arc<MessageCounts>,
}

impl Conn {
    fn new(stream: TcpStream, counts: &Arc<MessageCounts>) -> Conn {
        stream.set_nodelay(true).ok();
        Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            counts: counts.clone(),
        }
    }

    async fn send(&mut self, m: &Message) -> io::Result<()> {
        let mut out = Vec::new();
        m.encode(&mut out);
        self.stream.write_all(&out).await?;
        self.counts.count_sent_stream(&out);
        Ok(())
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

/// A second connection with the peer while the first is opening (a collision, RFC 4271
/// §6.8): a state machine of its own, which sends our OPEN on it; `None` if that fails.
async fn colliding(s: TcpStream, cfg: &PeerConfig) -> Option<(Conn, Session)> {
    let mut c2 = Conn::new(s, &cfg.counts);
    let mut s2 = Session::new(cfg.fsm.clone());
    s2.handle(Instant::now(), Event::Start);
    for a in s2.handle(Instant::now(), Event::Connected) {
        if let Action::Send(m) = a {
            c2.send(&m).await.ok()?;
        }
    }
    Some((c2, s2))
}

/// Runs the peer until `stop` says so (with the shutdown communication to send). Incoming
/// connections from the peer's address arrive on `incoming`; commands on `cmds`.
pub async fn run(
    cfg: PeerConfig,
    mut incoming: mpsc::Receiver<TcpStream>,
    events: mpsc::UnboundedSender<PeerEvent>,
    mut stop: watch::Receiver<Option<String>>,
    mut cmds: mpsc::UnboundedReceiver<PeerCmd>,
) {
    let mut session = Session::new(cfg.fsm.clone());
    let mut conn: Option<Conn> = None;
    // An incoming connection that collided with ours, run by a state machine of its own until
    // one of the two knows the peer's identifier (RFC 4271 §6.8).
    let mut other: Option<(Conn, Session)> = None;
    // The colliding connection's session came up (its OPEN and KEEPALIVE came in one read)
    // before the collision was settled.
    let mut other_up: Option<Box<Negotiated>> = None;
    // Whether `conn` is the connection we opened (collision resolution keeps the one opened by
    // the speaker with the higher identifier).
    let mut primary_outgoing = false;
    let mut connecting = false;
    let mut incoming_open = true;
    let (connected_tx, mut connected_rx) = mpsc::channel::<io::Result<TcpStream>>(1);
    let mut actions = session.handle(Instant::now(), Event::Start);
    loop {
        // Carry out what the state machine asked for.
        for a in std::mem::take(&mut actions) {
            match a {
                Action::Connect => {
                    if !connecting {
                        connecting = true;
                        let c = cfg.clone();
                        let tx = connected_tx.clone();
                        tokio::spawn(async move {
                            let r = tokio::time::timeout(Duration::from_secs(10), connect(&c))
                                .await
                                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()));
                            let _ = tx.send(r).await;
                        });
                    }
                }
                Action::Send(m) => {
                    if let Some(c) = conn.as_mut() {
                        if c.send(&m).await.is_err() {
                            conn = None;
                            actions.extend(session.handle(Instant::now(), Event::ConnectionClosed));
                        }
                    }
                }
                Action::Close => {
                    if let Some(mut c) = conn.take() {
                        let _ = c.stream.shutdown().await;
                    }
                }
                Action::Up(n) => {
                    // The collision is settled: the connection that got here wins.
                    if let Some((mut c, _)) = other.take() {
                        let _ = c.stream.shutdown().await;
                    }
                    let local = conn
                        .as_ref()
                        .and_then(|c| c.stream.local_addr().ok())
                        .unwrap_or_else(|| SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0));
                    let _ = events.send(PeerEvent::Up(n, local));
                }
                Action::Down(d) => {
                    let _ = events.send(PeerEvent::Down(d));
                }
                Action::Failed(d) => {
                    let _ = events.send(PeerEvent::Failed(d));
                }
                Action::Update(u) => {
                    let _ = events.send(PeerEvent::Update(u));
                }
                Action::RouteRefresh(f) => {
                    let _ = events.send(PeerEvent::RouteRefresh(f));
                }
            }
        }
        if !actions.is_empty() {
            continue;
        }
        // Collision resolution once either connection knows the peer's identifier
        // (RFC 4271 §6.8): the connection opened by the speaker with the higher one stays.
        let remote_id = session
            .negotiated()
            .or_else(|| other.as_ref().and_then(|(_, s)| s.negotiated()))
            .map(|n| n.peer.router_id);
        if let (Some(remote_id), true) = (remote_id, other.is_some()) {
            let keep_outgoing = keep_ours_on_collision(cfg.fsm.router_id, remote_id);
            let cease =
                Message::Notification(Notification::new(code::CEASE, code::CEASE_COLLISION, &[]));
            let (mut c2, s2) = other.take().expect("a colliding connection");
            if keep_outgoing == primary_outgoing {
                let _ = c2.send(&cease).await;
                let _ = c2.stream.shutdown().await;
            } else {
                if let Some(mut c) = conn.take() {
                    let _ = c.send(&cease).await;
                    let _ = c.stream.shutdown().await;
                }
                conn = Some(c2);
                session = s2;
                primary_outgoing = !primary_outgoing;
                // The kept connection may have reached Established in the read that brought
                // its OPEN: it is up now.
                if let Some(n) = other_up.take() {
                    actions.push(Action::Up(n));
                }
            }
            other_up = None;
            continue;
        }

        let deadline = session
            .next_timer()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let max = if session.negotiated().is_some_and(|n| n.extended_message) {
            MAX_EXTENDED_LEN
        } else {
            MAX_LEN
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                actions = session.on_timer(Instant::now());
            }
            r = connected_rx.recv() => {
                connecting = false;
                match r {
                    Some(Ok(s)) if conn.is_none() && matches!(session.state(), State::Connect | State::Active) => {
                        conn = Some(Conn::new(s, &cfg.counts));
                        primary_outgoing = true;
                        actions = session.handle(Instant::now(), Event::Connected);
                    }
                    // The peer's connection came first and is opening: ours is a collision,
                    // run alongside until the identifiers decide (§6.8). Dropping it instead
                    // lost both when the peer had done the same with ours.
                    Some(Ok(s)) if other.is_none() && matches!(session.state(), State::OpenSent | State::OpenConfirm) => {
                        other = colliding(s, &cfg).await;
                    }
                    Some(Ok(_)) => {} // settled meanwhile
                    _ => actions = session.handle(Instant::now(), Event::ConnectionClosed),
                }
            }
            s = incoming.recv(), if incoming_open => {
                // Without a listener there is nothing more to accept; the peer runs on.
                let Some(s) = s else {
                    incoming_open = false;
                    continue;
                };
                match session.state() {
                    State::Idle | State::Established => drop(s),
                    State::Connect | State::Active => {
                        conn = Some(Conn::new(s, &cfg.counts));
                        primary_outgoing = false;
                        actions = session.handle(Instant::now(), Event::Connected);
                    }
                    // A collision: the new connection gets its own state machine, which
                    // sends our OPEN on it, until the identifiers decide (§6.8).
                    State::OpenSent | State::OpenConfirm if other.is_none() => {
                        other = colliding(s, &cfg).await;
                    }
                    State::OpenSent | State::OpenConfirm => drop(s),
                }
            }
            r = read_some(other.as_mut().map(|(c, _)| c)) => {
                let (c2, s2) = other.as_mut().expect("read from the colliding connection");
                let mut alive = matches!(r, Ok(n) if n > 0);
                if alive {
                    for ev in drain_events(c2, max) {
                        for a in s2.handle(Instant::now(), ev) {
                            match a {
                                Action::Send(m) => alive &= c2.send(&m).await.is_ok(),
                                Action::Close | Action::Failed(_) | Action::Down(_) => alive = false,
                                Action::Up(n) => other_up = Some(n),
                                _ => {}
                            }
                        }
                    }
                }
                if !alive {
                    other = None;
                    other_up = None;
                }
            }
            r = read_some(conn.as_mut()) => {
                // The peer settled a collision against this connection (closed it, or sent
                // Cease/collision) before we did: the other one carries the session on. It
                // cannot be Established: an Established session ends `other`.
                let mut lost = false;
                match r {
                    Ok(0) | Err(_) if other.is_some() => lost = true,
                    Ok(0) | Err(_) => {
                        conn = None;
                        actions = session.handle(Instant::now(), Event::ConnectionClosed);
                    }
                    Ok(_) => {
                        let c = conn.as_mut().expect("read from a connection");
                        for ev in drain_events(c, max) {
                            let collision = matches!(&ev, Event::Received(Message::Notification(n))
                                if n.code == code::CEASE && n.subcode == code::CEASE_COLLISION);
                            if collision && other.is_some() {
                                lost = true;
                                break;
                            }
                            actions.extend(session.handle(Instant::now(), ev));
                        }
                    }
                }
                if lost {
                    if let Some(mut c) = conn.take() {
                        let _ = c.stream.shutdown().await;
                    }
                    let (c2, s2) = other.take().expect("a colliding connection");
                    conn = Some(c2);
                    session = s2;
                    primary_outgoing = !primary_outgoing;
                    if let Some(n) = other_up.take() {
                        actions.push(Action::Up(n));
                    }
                }
            }
            c = cmds.recv() => {
                match c {
                    // The speaker let go of this peer (a reload removed or replaced it, after
                    // a Stop): the task ends.
                    None => {
                        if let Some(mut c) = conn.take() {
                            let _ = c.stream.shutdown().await;
                        }
                        break;
                    }
                    Some(PeerCmd::Send(bytes)) => {
                        if session.state() == State::Established {
                            if let Some(c) = conn.as_mut() {
                                if c.stream.write_all(&bytes).await.is_err() {
                                    conn = None;
                                    actions = session.handle(Instant::now(), Event::ConnectionClosed);
                                } else {
                                    c.counts.count_sent_stream(&bytes);
                                    session.sent_update(Instant::now());
                                }
                            }
                        }
                    }
                    Some(PeerCmd::Reset(n)) => {
                        actions = session.handle(Instant::now(), Event::Reset(n));
                    }
                    Some(PeerCmd::Stop(text)) => {
                        actions = session.handle(Instant::now(), Event::Stop(text));
                    }
                    Some(PeerCmd::Start) => {
                        actions = session.handle(Instant::now(), Event::Start);
                    }
                }
            }
            _ = stop.changed() => {
                let text = stop.borrow().clone().unwrap_or_default();
                let acts = session.handle(Instant::now(), Event::Stop(text));
                for a in acts {
                    match a {
                        Action::Send(m) => {
                            if let Some(c) = conn.as_mut() {
                                let _ = c.send(&m).await;
                            }
                        }
                        Action::Down(d) => { let _ = events.send(PeerEvent::Down(d)); }
                        _ => {}
                    }
                }
                if let Some(mut c) = conn.take() {
                    let _ = c.stream.shutdown().await;
                }
                break;
            }
        }
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

/// Reads into the connection's buffer; pending forever without a connection.
async fn read_some(conn: Option<&mut Conn>) -> io::Result<usize> {
    match conn {
        Some(c) => {
            if c.buf.capacity() - c.buf.len() < 4096 {
                c.buf.reserve(64 * 1024);
            }
            c.stream.read_buf(&mut c.buf).await
        }
        None => std::future::pending().await,
    }
}

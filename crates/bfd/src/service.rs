//! The sessions on a thread of their own (RFC 5881 single hop): one UDP socket per family
//! receives on port 3784 and reports each datagram's TTL (hop limit), which must be 255;
//! one per family sends, from a fixed port in 49152-65535, with TTL 255. The thread keeps its
//! own time, so that a busy control plane elsewhere in the daemon never delays a packet or a
//! detection. What is wanted comes in through a shared slot and an eventfd; state changes go
//! out through a callback; `views` is what `interlinkctl show bfd` and the metrics read.

use std::collections::HashMap;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interlink_sys::{cvt, EventFd};

use crate::packet::{ControlPacket, Diag, State};
use crate::session::{Session, SessionConfig, Transition};
use crate::{PORT, SOURCE_PORTS, TTL};

/// A session to run: with the neighbor at `peer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub peer: IpAddr,
    pub config: SessionConfig,
}

/// A session as `interlinkctl show bfd` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct View {
    pub peer: IpAddr,
    pub state: State,
    pub remote_state: State,
    pub diag: Diag,
    pub local_discr: u32,
    pub remote_discr: u32,
    pub interval: Duration,
    pub multiplier: u8,
    /// What packets go at now, and the detection time the peer's announce makes.
    pub tx_interval: Duration,
    pub detection_time: Duration,
    pub received: u64,
    pub sent: u64,
    pub discarded: u64,
    /// Refused by authentication.
    pub auth_failed: u64,
    /// Keyed SHA1 in use.
    pub authenticated: bool,
    /// Times it went up and down.
    pub ups: u64,
    pub downs: u64,
    pub up_since: Option<Instant>,
}

/// Packets refused before any session saw them, by reason (for metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    pub malformed: u64,
    /// Not sent with TTL 255: from beyond one hop (RFC 5881 §5).
    pub ttl: u64,
    /// For no session of ours.
    pub unknown: u64,
}

/// What the daemon wants of the thread: state, not a queue. A newer set of sessions replaces
/// one the thread has not taken yet, so that reloads, however many, hold one list at most.
#[derive(Default)]
struct Wanted {
    peers: Mutex<Option<Vec<Peer>>>,
    stop: AtomicBool,
}

/// What happened to a session, for the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub peer: IpAddr,
    pub transition: Transition,
}

pub struct BfdService {
    wanted: Arc<Wanted>,
    wake: Arc<EventFd>,
    views: Arc<Mutex<(Vec<View>, Dropped)>>,
    thread: Option<JoinHandle<()>>,
}

impl BfdService {
    /// Opens the sockets and starts the thread, in the caller's network namespace. `events`
    /// is called on the thread for every state change.
    pub fn start(events: impl Fn(Event) + Send + 'static) -> io::Result<BfdService> {
        let io = Io::open()?;
        let wake = Arc::new(EventFd::new()?);
        let wanted = Arc::new(Wanted::default());
        let views = Arc::new(Mutex::new((Vec::new(), Dropped::default())));
        let thread = {
            let (wanted, wake, views) = (wanted.clone(), wake.clone(), views.clone());
            std::thread::Builder::new()
                .name("il-bfd".into())
                .spawn(move || run(io, &wanted, &wake, &views, events))?
        };
        Ok(BfdService {
            wanted,
            wake,
            views,
            thread: Some(thread),
        })
    }

    /// The sessions wanted: new ones start, gone ones stop, changed ones start again.
    pub fn set(&self, peers: Vec<Peer>) {
        if let Ok(mut w) = self.wanted.peers.lock() {
            *w = Some(peers);
        }
        self.wake.wake();
    }

    pub fn views(&self) -> (Vec<View>, Dropped) {
        self.views.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Drop for BfdService {
    fn drop(&mut self) {
        self.wanted.stop.store(true, Ordering::Release);
        self.wake.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Io {
    rx: Vec<UdpSocket>,
    tx4: UdpSocket,
    tx6: Option<UdpSocket>,
}

fn set_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: an int option on a socket we own; the kernel copies it.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(drop)
}

impl Io {
    fn open() -> io::Result<Io> {
        let rx4 = UdpSocket::bind(("0.0.0.0", PORT))?;
        set_int(rx4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        let mut rx = vec![rx4];
        // IPv6 where the system has it: sockets of its own, IPv6 only.
        let rx6 = bind6(PORT).ok();
        let tx6 = rx6.as_ref().and_then(|_| bind_source(true).ok());
        if let Some(s) = rx6 {
            set_int(
                s.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_RECVHOPLIMIT,
                1,
            )?;
            rx.push(s);
        }
        if let Some(t) = &tx6 {
            set_int(
                t.as_raw_fd(),
                libc::IPPROTO_IPV6,
                libc::IPV6_UNICAST_HOPS,
                TTL.into(),
            )?;
        }
        let tx4 = bind_source(false)?;
        set_int(tx4.as_raw_fd(), libc::IPPROTO_IP, libc::IP_TTL, TTL.into())?;
        for s in rx.iter().chain([&tx4]).chain(tx6.as_ref()) {
            s.set_nonblocking(true)?;
        }
        Ok(Io { rx, tx4, tx6 })
    }

    fn send(&self, datagram: &[u8], to: IpAddr) -> io::Result<()> {
        let sock = match to {
            IpAddr::V4(_) => &self.tx4,
            IpAddr::V6(_) => self.tx6.as_ref().ok_or(io::ErrorKind::Unsupported)?,
        };
        sock.send_to(datagram, SocketAddr::new(to, PORT)).map(drop)
    }
}

/// A sending socket on a source port of the RFC's range (the same for every packet of a
/// session: here, of every session of the family).
fn bind_source(v6: bool) -> io::Result<UdpSocket> {
    let start = (std::process::id() % 16384) as u16;
    let mut last = io::Error::from(io::ErrorKind::AddrInUse);
    for i in 0..64u16 {
        let port = SOURCE_PORTS.start() + (start + i * 257) % 16384;
        let s = if v6 {
            bind6(port)
        } else {
            UdpSocket::bind(("0.0.0.0", port))
        };
        match s {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A UDP socket on `[::]:port` that takes IPv6 only (the IPv4 one has the IPv4 side).
fn bind6(port: u16) -> io::Result<UdpSocket> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain socket call; the result is checked and owned below.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: just opened, owned by nobody else.
    let sock = unsafe { UdpSocket::from_raw_fd(fd) };
    set_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
    // SAFETY: a zeroed sockaddr_in6 with family and port set; the length is its size.
    let mut a: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    a.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    a.sin6_port = port.to_be();
    // SAFETY: `a` is a valid sockaddr_in6 for the call.
    cvt(unsafe {
        libc::bind(
            fd,
            (&a as *const libc::sockaddr_in6).cast(),
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    Ok(sock)
}

/// One datagram from `s`, with its source and TTL (hop limit); None when none waits.
fn recv(s: &UdpSocket, buf: &mut [u8]) -> io::Result<Option<(usize, IpAddr, Option<u8>)>> {
    let mut addr = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut cbuf = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr with pointers to live buffers of the given lengths.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = addr.as_mut_ptr().cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: msg points at the buffers above, which outlive the call.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel filled in a sockaddr of the family it names.
    let from = unsafe {
        let a = addr.assume_init();
        match i32::from(a.ss_family) {
            libc::AF_INET => {
                let a: &libc::sockaddr_in = &*(&a as *const _ as *const libc::sockaddr_in);
                IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes())
            }
            libc::AF_INET6 => {
                let a: &libc::sockaddr_in6 = &*(&a as *const _ as *const libc::sockaddr_in6);
                let v6 = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                // An IPv4 peer seen through an IPv6 socket is the IPv4 peer.
                v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
            }
            _ => return Ok(None),
        }
    };
    let mut ttl = None;
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, kind) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && kind == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && kind == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Some((n as usize, from, ttl)))
}

struct Running {
    session: Session,
    ups: u64,
    downs: u64,
    up_since: Option<Instant>,
}

fn run(
    io: Io,
    wanted: &Wanted,
    wake: &EventFd,
    views: &Mutex<(Vec<View>, Dropped)>,
    events: impl Fn(Event),
) {
    let mut sessions: HashMap<IpAddr, Running> = HashMap::new();
    let mut next_discr: u32 = 1 + (std::process::id() << 8);
    let mut dropped = Dropped::default();
    let mut buf = [0u8; 512];
    loop {
        if wanted.stop.load(Ordering::Acquire) {
            // Tell the peers the sessions go down on purpose (AdminDown), so that they do not
            // take it for a failure.
            let now = Instant::now();
            for (peer, r) in sessions.iter_mut() {
                r.session.set_admin_down(true, now);
                if let Some(p) = r.session.poll_transmit(now) {
                    let _ = io.send(&r.session.encode(&p), *peer);
                }
            }
            return;
        }
        let peers = wanted.peers.lock().ok().and_then(|mut w| w.take());
        if let Some(peers) = peers {
            let now = Instant::now();
            sessions.retain(|a, r| {
                peers
                    .iter()
                    .any(|p| p.peer == *a && p.config == r.session.config())
            });
            for p in peers {
                sessions.entry(p.peer).or_insert_with(|| {
                    next_discr = next_discr.wrapping_add(1).max(1);
                    Running {
                        session: Session::new(p.config, next_discr, now),
                        ups: 0,
                        downs: 0,
                        up_since: None,
                    }
                });
            }
        }
        // What arrived.
        for s in &io.rx {
            while let Ok(Some((n, from, ttl))) = recv(s, &mut buf) {
                if ttl != Some(TTL) {
                    dropped.ttl += 1;
                    continue;
                }
                let Ok(p) = ControlPacket::parse(&buf[..n]) else {
                    dropped.malformed += 1;
                    continue;
                };
                // By our discriminator if it names one, else by the peer's address.
                let target = if p.your_discr != 0 {
                    sessions
                        .iter_mut()
                        .find(|(_, r)| r.session.local_discr() == p.your_discr)
                } else {
                    sessions.iter_mut().find(|(a, _)| **a == from)
                };
                match target {
                    Some((peer, r)) if *peer == from => {
                        if r.session.authentic(&buf[..n], &p) {
                            r.session.on_packet(&p, Instant::now());
                        }
                    }
                    _ => dropped.unknown += 1,
                }
            }
        }
        // Timers, packets due, state changes.
        let now = Instant::now();
        for (peer, r) in sessions.iter_mut() {
            r.session.on_timer(now);
            while let Some(p) = r.session.poll_transmit(now) {
                // A send that fails (no route yet) is the peer's loss to detect.
                let _ = io.send(&r.session.encode(&p), *peer);
            }
            for t in r.session.take_transitions() {
                if t.to == State::Up {
                    r.ups += 1;
                    r.up_since = Some(now);
                } else if t.from == State::Up {
                    r.downs += 1;
                    r.up_since = None;
                }
                events(Event {
                    peer: *peer,
                    transition: t,
                });
            }
        }
        if let Ok(mut v) = views.lock() {
            let mut list: Vec<View> = sessions
                .iter()
                .map(|(peer, r)| {
                    let s = &r.session;
                    View {
                        peer: *peer,
                        state: s.state(),
                        remote_state: s.remote_state(),
                        diag: s.diag(),
                        local_discr: s.local_discr(),
                        remote_discr: s.remote_discr(),
                        interval: s.config().interval,
                        multiplier: s.config().detect_mult,
                        tx_interval: s.tx_interval(),
                        detection_time: s.detection_time(),
                        received: s.received,
                        sent: s.sent,
                        discarded: s.discarded,
                        auth_failed: s.auth_failed,
                        authenticated: s.config().auth.is_some(),
                        ups: r.ups,
                        downs: r.downs,
                        up_since: r.up_since,
                    }
                })
                .collect();
            list.sort_by_key(|v| v.peer);
            *v = (list, dropped.clone());
        }
        // Sleep until the next deadline, a packet or a command.
        let next = sessions
            .values()
            .map(|r| r.session.next_deadline())
            .min()
            .unwrap_or(now + Duration::from_secs(1));
        let wait = next.saturating_duration_since(Instant::now());
        // Rounded up: waking a little late is within the jitter, waking early spins.
        let ms = (wait.as_micros().div_ceil(1000)).min(1000) as i32;
        let fds: Vec<libc::pollfd> = io
            .rx
            .iter()
            .map(|s| s.as_raw_fd())
            .chain([wake.fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut fds = fds;
        // SAFETY: a valid array of pollfds for the call's duration.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r > 0 && fds.last().is_some_and(|f| f.revents != 0) {
            wake.drain();
        }
    }
}

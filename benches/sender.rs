//! A fast BGP sender for the benches, written here: it opens an eBGP session from its own
//! namespace, writes pre-encoded UPDATEs (/24s from 16.0.0.0 on, one attribute set, packed
//! into 4096-octet messages) and End-of-RIB as fast as TCP takes them, then keeps the
//! session up with keepalives until it is told to close it, or to fall silent (a peer that
//! stops answering, for the failover bench).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_bgp::fuzzing::codec;
use interlink_bgp::update::{encode_announce, encode_end_of_rib, Attrs, Nlri, Origin, Segment};
use interlink_bgp::wire::{frame, Capabilities, Family, Message, Open, KEEPALIVE, MAX_LEN};
use interlink_testkit::in_ns;

use crate::prefix;

/// Who the sender is.
#[derive(Clone, Copy, Debug)]
pub struct Speaker {
    /// The router under test, port 179.
    pub peer: Ipv4Addr,
    /// The sender's own address: its router id and the next hop of what it announces.
    pub address: Ipv4Addr,
    pub asn: u32,
    /// Offered hold time, seconds; keepalives go every third of it.
    pub hold_time: u16,
}

/// N /24s from 16.0.0.0 on through `s.address`, and End-of-RIB.
pub fn updates(n: usize, s: &Speaker) -> Vec<u8> {
    let prefixes: Vec<Nlri> = (0..n)
        .map(|i| Nlri::new(IpAddr::V4(prefix(i)), 24).unwrap())
        .collect();
    let attrs = Attrs {
        origin: Some(Origin::Igp),
        as_path: vec![Segment::Sequence(vec![s.asn])],
        next_hop: Some(IpAddr::V4(s.address)),
        ..Attrs::default()
    };
    let mut out = Vec::with_capacity(n * 5);
    encode_announce(&mut out, &prefixes, &attrs, &codec(true, true));
    encode_end_of_rib(&mut out, Family::IPV4_UNICAST);
    out
}

/// Opens the session from the caller's namespace; returns the stream once both sides are
/// Established, and the instant that happened.
pub fn establish(s: &Speaker) -> (TcpStream, Instant) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let to = SocketAddr::from((s.peer, 179));
    let mut stream = loop {
        match TcpStream::connect(to) {
            Ok(c) => break c,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("connect to {to}: {e}"),
        }
    };
    stream.set_nodelay(true).unwrap();
    let mut out = Vec::new();
    Message::Open(Open {
        asn: s.asn,
        hold_time: s.hold_time,
        router_id: s.address,
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST],
            four_octet_as: Some(s.asn),
            ..Capabilities::default()
        },
    })
    .encode(&mut out);
    Message::Keepalive.encode(&mut out);
    stream.write_all(&out).unwrap();
    // Their OPEN, then their KEEPALIVE: Established.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut seen_open = false;
    loop {
        let n = stream.read(&mut chunk).unwrap();
        assert!(n > 0, "the peer closed the session");
        buf.extend_from_slice(&chunk[..n]);
        while let Some(f) = frame(&buf, MAX_LEN).unwrap() {
            let len = f.len;
            match f.kind {
                1 => seen_open = true,
                KEEPALIVE if seen_open => {
                    buf.drain(..len);
                    return (stream, Instant::now());
                }
                3 => panic!(
                    "NOTIFICATION from the peer: {:?}",
                    Message::decode(3, f.body)
                ),
                _ => {}
            }
            buf.drain(..len);
        }
    }
}

/// A session sending from a namespace.
pub struct Session {
    /// When it was Established.
    pub established: Instant,
    close: Arc<AtomicBool>,
    silent: Arc<AtomicBool>,
    notified: Arc<std::sync::Mutex<Option<Instant>>>,
}

impl Session {
    /// Closes the session at once (no graceful restart was offered: the peer withdraws
    /// everything).
    pub fn close(&self) {
        self.close.store(true, Ordering::Relaxed);
    }

    /// Stops sending anything, keepalives included, with the session left open: the peer
    /// finds out when its hold timer expires.
    pub fn fall_silent(&self) {
        self.silent.store(true, Ordering::Relaxed);
    }

    /// When a NOTIFICATION from the peer arrived (its hold timer expired, say): the moment
    /// it gave the session up, to within a veth's delay.
    pub fn notified(&self) -> Option<Instant> {
        *self.notified.lock().unwrap()
    }
}

/// Sends `wire` as `s` from namespace `ns`; returns when Established, and keeps the session
/// open (reading what comes) until it is closed.
pub fn send(ns: &str, s: Speaker, wire: Vec<u8>) -> Session {
    let close = Arc::new(AtomicBool::new(false));
    let silent = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let notified = Arc::new(std::sync::Mutex::new(None));
    let (c, q, nt) = (close.clone(), silent.clone(), notified.clone());
    in_ns(ns, move || {
        let (mut stream, t0) = establish(&s);
        tx.send(t0).unwrap();
        let mut r = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            // Read what comes; note when a NOTIFICATION does.
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                while let Ok(Some(f)) = frame(&buf, MAX_LEN) {
                    let len = f.len;
                    if f.kind == 3 {
                        nt.lock().unwrap().get_or_insert(now);
                    }
                    buf.drain(..len);
                }
            }
        });
        stream.write_all(&wire).unwrap();
        let every = Duration::from_secs((u64::from(s.hold_time) / 3).max(1));
        let mut last = Instant::now();
        while !c.load(Ordering::Relaxed) {
            if last.elapsed() >= every && !q.load(Ordering::Relaxed) {
                let mut k = Vec::new();
                Message::Keepalive.encode(&mut k);
                if stream.write_all(&k).is_err() {
                    break;
                }
                last = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = stream.shutdown(std::net::Shutdown::Both);
    });
    Session {
        established: rx.recv().unwrap(),
        close,
        silent,
        notified,
    }
}

//! What the kernel benchmarks share: the bare pipelined netlink writer that is their floor
//! (`benches/fib.rs` runs it beside interlink's FIB, `benches/bgp.rs` beside the daemon), and
//! the BGP sender that feeds the daemon ([`sender`]).

#[path = "sender.rs"]
pub mod sender;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use interlink_fib::sock::NlSocket;
use interlink_fib::{wire, Target};
use interlink_testkit::{in_ns, Lab};

pub const WINDOW: usize = 4096;
pub const T: Target = Target {
    table: 254,
    metric: 20,
    protocol: 77,
};

pub fn prefix(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(0x1000_0000u32 + ((i as u32) << 8))
}

/// A namespace with a veth whose near end has 192.0.2.1/24.
pub fn fresh(lab: &mut Lab, name: &str) -> String {
    let ns = lab.add_ns(name);
    lab.exec(
        name,
        &[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "p0",
        ],
    );
    lab.exec(name, &["ip", "link", "set", "v0", "up"]);
    lab.exec(name, &["ip", "link", "set", "p0", "up"]);
    lab.exec(name, &["ip", "addr", "add", "192.0.2.1/24", "dev", "v0"]);
    ns
}

pub fn count_routes(lab: &Lab, name: &str) -> usize {
    let out = lab.exec(name, &["ip", "-4", "route", "show", "proto", "77"]);
    out.stdout.iter().filter(|&&b| b == b'\n').count()
}

/// How a floor writer's routes reach their gateway, and how they go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Floor {
    /// `RTA_GATEWAY` in each route; deleted route by route.
    Gateway,
    /// A nexthop object (Linux 5.3: `RTM_NEWNEXTHOP`, id 1, via 192.0.2.2 dev v0) that each
    /// route names with `RTA_NH_ID`; deleted route by route.
    Nexthop,
    /// The same, deleted as one `RTM_DELNEXTHOP`: the kernel takes every route using the
    /// object with it.
    NexthopObject,
}

/// The floor: a pipelined writer with nothing but encoding, sending and counting acks.
pub fn raw_writer(lab: &mut Lab, n: usize, floor: Floor) -> (Duration, Duration) {
    let name = format!("raw{n}");
    let ns = fresh(lab, &name);
    let run = move |delete: bool| {
        in_ns(&ns, move || {
            let sock = NlSocket::open(&[], 32 << 20).unwrap();
            let mut out = Vec::with_capacity(140 * 1024);
            let mut inbuf = vec![0u8; 64 * 1024];
            let nh = floor != Floor::Gateway;
            if floor == Floor::NexthopObject && delete {
                // Every route goes with the object, in one request.
                let t = Instant::now();
                nexthop(&mut out, 0x7fff_0000, true);
                sock.send(&out).unwrap();
                wait_acks(&sock, &mut inbuf, 1);
                return t.elapsed();
            }
            if nh && !delete {
                // The object first: one request, not timed.
                nexthop(&mut out, 0x7fff_0000, false);
                sock.send(&out).unwrap();
                wait_acks(&sock, &mut inbuf, 1);
            }
            let total = n;
            let (mut next, mut acked) = (0usize, 0usize);
            let t = Instant::now();
            while acked < total {
                out.clear();
                while next < total && next - acked < WINDOW && out.len() < 128 * 1024 {
                    encode(&mut out, next as u32 + 1, delete, prefix(next), nh);
                    next += 1;
                }
                if !out.is_empty() {
                    sock.send(&out).unwrap();
                }
                loop {
                    match sock.recv(&mut inbuf).unwrap() {
                        Some(len) => {
                            for m in wire::messages(&inbuf[..len]) {
                                let (errno, _) = wire::parse_error(&m).unwrap();
                                assert_eq!(errno, 0);
                                acked += 1;
                            }
                        }
                        None if next - acked < WINDOW && next < total => break,
                        None if acked == total => break,
                        None => {
                            interlink_fib::sock::poll([sock.fd()], 1000).unwrap();
                        }
                    }
                }
            }
            t.elapsed()
        })
        .join()
        .unwrap()
    };
    let a = run(false);
    assert_eq!(count_routes(lab, &name), n);
    let d = run(true);
    assert_eq!(count_routes(lab, &name), 0);
    lab.del_ns(&name);
    (a, d)
}

/// Waits for `n` acks, each a success.
fn wait_acks(sock: &NlSocket, inbuf: &mut [u8], n: usize) {
    let mut acked = 0;
    while acked < n {
        match sock.recv(inbuf).unwrap() {
            Some(len) => {
                for m in wire::messages(&inbuf[..len]) {
                    let (errno, msg) = wire::parse_error(&m).unwrap();
                    assert_eq!(errno, 0, "{msg:?}");
                    acked += 1;
                }
            }
            None => {
                interlink_fib::sock::poll([sock.fd()], 10_000).unwrap();
            }
        }
    }
}

/// RTM_NEWNEXTHOP (id 1 via 192.0.2.2 dev v0, protocol 77) or RTM_DELNEXTHOP of id 1.
fn nexthop(out: &mut Vec<u8>, seq: u32, delete: bool) {
    let start = out.len();
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&(if delete { 105u16 } else { 104u16 }).to_ne_bytes());
    let flags: u16 = if delete { 0x5 } else { 0x5 | 0x400 | 0x200 };
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    // struct nhmsg: family, scope, protocol, reserved, flags (a delete names the id alone).
    let (family, protocol) = if delete {
        (0, 0)
    } else {
        (libc::AF_INET as u8, 77)
    };
    out.extend_from_slice(&[family, 0, protocol, 0, 0, 0, 0, 0]);
    let attr = |out: &mut Vec<u8>, t: u16, v: [u8; 4]| {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&t.to_ne_bytes());
        out.extend_from_slice(&v);
    };
    attr(out, 1, 1u32.to_ne_bytes()); // NHA_ID
    if !delete {
        // SAFETY: a NUL-terminated name; the index is looked up in this thread's namespace.
        let oif = unsafe { libc::if_nametoindex(c"v0".as_ptr()) };
        attr(out, 5, oif.to_ne_bytes()); // NHA_OIF
        attr(out, 6, [192, 0, 2, 2]); // NHA_GATEWAY
    }
    let len = (out.len() - start) as u32;
    out[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// RTM_NEWROUTE (create, exclusive) or RTM_DELROUTE for `p`/24, written out field by field;
/// through the gateway, or (`nh`) through nexthop object 1.
fn encode(out: &mut Vec<u8>, seq: u32, delete: bool, p: Ipv4Addr, nh: bool) {
    let len: u32 = if delete {
        16 + 12 + 8 + 8 + 8
    } else {
        16 + 12 + 8 + 8 + 8 + 8
    };
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&(if delete { 25u16 } else { 24u16 }).to_ne_bytes());
    let flags: u16 = if delete { 0x5 } else { 0x5 | 0x400 | 0x200 };
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    let (kind, scope) = if delete { (0, 255) } else { (1, 0) };
    out.extend_from_slice(&[2, 24, 0, 0, 254, 77, scope, kind, 0, 0, 0, 0]);
    let attr = |out: &mut Vec<u8>, t: u16, v: [u8; 4]| {
        out.extend_from_slice(&8u16.to_ne_bytes());
        out.extend_from_slice(&t.to_ne_bytes());
        out.extend_from_slice(&v);
    };
    attr(out, 1, p.octets());
    attr(out, 15, 254u32.to_ne_bytes());
    attr(out, 6, 20u32.to_ne_bytes());
    if !delete && nh {
        attr(out, 30, 1u32.to_ne_bytes()); // RTA_NH_ID
    } else if !delete {
        attr(out, 5, [192, 0, 2, 2]);
    }
}

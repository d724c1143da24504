//! rtnetlink messages. Requests are written by hand: they are few, fixed in shape and the hot
//! path of a million-route load, where building attribute vectors per route would cost more
//! than the kernel's own work. Acks are read by hand for the same reason, and so is everything
//! else the kernel sends (dumps, notifications of routes, links and addresses): netlink-packet-
//! route 0.30 panics on some short attributes (see the readers below). The tests read what is
//! written back with netlink-packet-route.

use std::net::IpAddr;

use crate::route::{NextHop, Prefix, Route};

pub const NLMSG_HDR: usize = 16;
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;
pub const RTM_NEWLINK: u16 = 16;
pub const RTM_GETLINK: u16 = 18;
pub const RTM_GETADDR: u16 = 22;
pub const RTM_NEWROUTE: u16 = 24;
pub const RTM_DELROUTE: u16 = 25;
pub const RTM_GETROUTE: u16 = 26;
/// Nexthop objects (Linux 5.3).
pub const RTM_NEWNEXTHOP: u16 = 104;
pub const RTM_DELNEXTHOP: u16 = 105;
pub const RTM_GETNEXTHOP: u16 = 106;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
/// The nexthop object a route uses (Linux 5.3).
const RTA_NH_ID: u16 = 30;
// Nexthop object attributes (linux/nexthop.h).
const NHA_ID: u16 = 1;
const NHA_GROUP: u16 = 2;
const NHA_BLACKHOLE: u16 = 4;
const NHA_OIF: u16 = 5;
const NHA_GATEWAY: u16 = 6;

const RTN_UNICAST: u8 = 1;
const RTN_BLACKHOLE: u8 = 6;
const RTN_UNREACHABLE: u8 = 7;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_LINK: u8 = 253;
const RT_TABLE_UNSPEC: u8 = 0;

/// Where interlink's routes live and how they are marked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// Routing table (254 = main).
    pub table: u32,
    /// Route metric (`RTA_PRIORITY`): part of a route's identity in the kernel.
    pub metric: u32,
    /// Route protocol id: how the kernel (and `ip route ... proto`) tells our routes apart.
    pub protocol: u8,
}

/// What a request asks of the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// A new route: `NLM_F_CREATE | NLM_F_EXCL`, so that a route already there (someone
    /// else's) is reported, never overwritten.
    Add,
    /// Our own route, changed: `NLM_F_CREATE | NLM_F_REPLACE`.
    Replace,
    Delete,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn put_attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let len = 4 + value.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(align4(buf.len()), 0);
}

fn ip_octets(ip: &IpAddr) -> ([u8; 16], usize) {
    let mut b = [0u8; 16];
    match ip {
        IpAddr::V4(a) => {
            b[..4].copy_from_slice(&a.octets());
            (b, 4)
        }
        IpAddr::V6(a) => (a.octets(), 16),
    }
}

/// Appends one route request to `buf`, acked (`NLM_F_ACK`) under `seq`. A delete ignores
/// `route`.
pub fn encode_route(
    buf: &mut Vec<u8>,
    seq: u32,
    op: Op,
    target: &Target,
    prefix: &Prefix,
    route: &Route,
) {
    let start = buf.len();
    let (kind, flags) = match op {
        Op::Add => (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL),
        Op::Replace => (RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE),
        Op::Delete => (RTM_DELROUTE, 0),
    };
    // nlmsghdr; the length is filled in at the end.
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    // rtmsg
    let family = if prefix.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    let (rtype, scope) = match route {
        // A delete names prefix, table, metric and protocol; any type, any scope
        // (RT_SCOPE_NOWHERE), as `ip route del` sends it.
        _ if op == Op::Delete => (0, 255),
        Route::Blackhole => (RTN_BLACKHOLE, RT_SCOPE_UNIVERSE),
        Route::Unreachable => (RTN_UNREACHABLE, RT_SCOPE_UNIVERSE),
        // A route out of an interface with no gateway reaches its hosts directly.
        Route::Unicast(hops) if hops.iter().all(|h| h.gateway.is_none()) => {
            (RTN_UNICAST, RT_SCOPE_LINK)
        }
        Route::Unicast(_) => (RTN_UNICAST, RT_SCOPE_UNIVERSE),
        Route::Protected(p) if p.primary.gateway.is_none() => (RTN_UNICAST, RT_SCOPE_LINK),
        Route::Protected(_) => (RTN_UNICAST, RT_SCOPE_UNIVERSE),
    };
    let table8 = u8::try_from(target.table).unwrap_or(RT_TABLE_UNSPEC);
    buf.extend_from_slice(&[
        family,
        prefix.prefix_len(),
        0, // src_len
        0, // tos
        table8,
        target.protocol,
        scope,
        rtype,
    ]);
    buf.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    let (dst, n) = ip_octets(&prefix.addr());
    put_attr(buf, RTA_DST, &dst[..n]);
    put_attr(buf, RTA_TABLE, &target.table.to_ne_bytes());
    put_attr(buf, RTA_PRIORITY, &target.metric.to_ne_bytes());
    if op != Op::Delete {
        if let Route::Unicast(_) | Route::Protected(_) = route {
            // Without an object, a protected route goes through its primary.
            match route.hops() {
                [h] if h.weight == 1 => {
                    if let Some(gw) = &h.gateway {
                        let (g, n) = ip_octets(gw);
                        put_attr(buf, RTA_GATEWAY, &g[..n]);
                    }
                    if let Some(i) = h.ifindex {
                        put_attr(buf, RTA_OIF, &i.to_ne_bytes());
                    }
                }
                hops => {
                    // RTA_MULTIPATH: a struct rtnexthop per hop, each followed by its own
                    // attributes.
                    let mp = buf.len();
                    buf.extend_from_slice(&[0; 4]);
                    for h in hops {
                        let at = buf.len();
                        buf.extend_from_slice(&0u16.to_ne_bytes()); // rtnh_len
                        buf.push(0); // rtnh_flags
                        buf.push((h.weight.clamp(1, 256) - 1) as u8); // rtnh_hops
                        buf.extend_from_slice(&h.ifindex.unwrap_or(0).to_ne_bytes());
                        if let Some(gw) = &h.gateway {
                            let (g, n) = ip_octets(gw);
                            put_attr(buf, RTA_GATEWAY, &g[..n]);
                        }
                        let len = (buf.len() - at) as u16;
                        buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
                    }
                    let len = (buf.len() - mp) as u16;
                    buf[mp..mp + 2].copy_from_slice(&len.to_ne_bytes());
                    buf[mp + 2..mp + 4].copy_from_slice(&RTA_MULTIPATH.to_ne_bytes());
                }
            }
        }
    }
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// The netlink header of a request, its length left to `finish`.
fn header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | flags).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    start
}

fn finish(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Appends a request for nexthop object `id` (Linux 5.3), acked under `seq`, going out of
/// `hop`'s interface to its gateway, tagged with `protocol`: `Add` creates it
/// (`NLM_F_CREATE | NLM_F_EXCL`: an id someone else holds is refused, never taken over),
/// `Replace` changes it in place, for every route using it at once; `Delete` (`hop` unused)
/// takes every route using it with it.
pub fn encode_nexthop(buf: &mut Vec<u8>, seq: u32, op: Op, protocol: u8, id: u32, hop: &NextHop) {
    let (kind, flags) = match op {
        Op::Add => (RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_EXCL),
        Op::Replace => (RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE),
        Op::Delete => (RTM_DELNEXTHOP, 0),
    };
    let hop = (op != Op::Delete).then_some(hop);
    let start = header(buf, kind, flags, seq);
    // struct nhmsg: family, scope, protocol, reserved, flags. A delete names the id alone.
    let family = match hop.and_then(|h| h.gateway) {
        Some(IpAddr::V4(_)) => libc::AF_INET as u8,
        Some(IpAddr::V6(_)) => libc::AF_INET6 as u8,
        None => libc::AF_UNSPEC as u8,
    };
    let protocol = if hop.is_some() { protocol } else { 0 };
    buf.extend_from_slice(&[family, 0, protocol, 0, 0, 0, 0, 0]);
    put_attr(buf, NHA_ID, &id.to_ne_bytes());
    if let Some(h) = hop {
        if let Some(i) = h.ifindex {
            put_attr(buf, NHA_OIF, &i.to_ne_bytes());
        }
        if let Some(gw) = &h.gateway {
            let (g, n) = ip_octets(gw);
            put_attr(buf, NHA_GATEWAY, &g[..n]);
        }
    }
    finish(buf, start);
}

/// Appends a request for nexthop group `id` (an ECMP set: `members`, each an object id
/// with its weight, 1 to 256), acked under `seq`, as `encode_nexthop` does for one next hop:
/// `Add`, `Replace` (a new member list, for every route using the group at once), `Delete`.
pub fn encode_group(
    buf: &mut Vec<u8>,
    seq: u32,
    op: Op,
    protocol: u8,
    id: u32,
    members: &[(u32, u16)],
) {
    let (kind, flags) = match op {
        Op::Add => (RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_EXCL),
        Op::Replace => (RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE),
        Op::Delete => (RTM_DELNEXTHOP, 0),
    };
    let start = header(buf, kind, flags, seq);
    let protocol = if op == Op::Delete { 0 } else { protocol };
    buf.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, protocol, 0, 0, 0, 0, 0]);
    put_attr(buf, NHA_ID, &id.to_ne_bytes());
    if op != Op::Delete {
        // struct nexthop_grp: id, weight - 1 (0 is weight 1), and three octets of zeros.
        let mut grp = Vec::with_capacity(members.len() * 8);
        for &(m, w) in members {
            grp.extend_from_slice(&m.to_ne_bytes());
            grp.push((w.clamp(1, 256) - 1) as u8);
            grp.extend_from_slice(&[0, 0, 0]);
        }
        put_attr(buf, NHA_GROUP, &grp);
    }
    finish(buf, start);
}

/// Appends a route request (add or replace) whose next hop is nexthop object `nh`.
pub fn encode_route_via(
    buf: &mut Vec<u8>,
    seq: u32,
    op: Op,
    target: &Target,
    prefix: &Prefix,
    nh: u32,
) {
    let flags = match op {
        Op::Add => NLM_F_CREATE | NLM_F_EXCL,
        Op::Replace | Op::Delete => NLM_F_CREATE | NLM_F_REPLACE,
    };
    let start = header(buf, RTM_NEWROUTE, flags, seq);
    let family = if prefix.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    } as u8;
    let table8 = u8::try_from(target.table).unwrap_or(RT_TABLE_UNSPEC);
    buf.extend_from_slice(&[
        family,
        prefix.prefix_len(),
        0,
        0,
        table8,
        target.protocol,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ]);
    buf.extend_from_slice(&0u32.to_ne_bytes());
    let (dst, n) = ip_octets(&prefix.addr());
    put_attr(buf, RTA_DST, &dst[..n]);
    put_attr(buf, RTA_TABLE, &target.table.to_ne_bytes());
    put_attr(buf, RTA_PRIORITY, &target.metric.to_ne_bytes());
    put_attr(buf, RTA_NH_ID, &nh.to_ne_bytes());
    finish(buf, start);
}

/// A nexthop object from a dump or a notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelNexthop {
    pub id: u32,
    pub protocol: u8,
    /// None for a group or a blackhole.
    pub hop: Option<NextHop>,
    /// A group's members: object ids with their weights (1 to 256).
    pub group: Option<Vec<(u32, u16)>>,
}

/// A `RTM_NEWNEXTHOP` or `RTM_DELNEXTHOP` message.
pub fn parse_nexthop(m: &Message<'_>) -> Option<KernelNexthop> {
    if m.kind != RTM_NEWNEXTHOP && m.kind != RTM_DELNEXTHOP {
        return None;
    }
    let body = m.bytes.get(NLMSG_HDR..)?;
    let h = body.get(..8)?;
    let (family, protocol) = (h[0], h[2]);
    let (mut id, mut oif, mut gateway, mut other) = (None, None, None, false);
    let mut group = None;
    for (kind, v) in attributes(&body[8..]) {
        match kind {
            NHA_ID => id = Some(u32_of(v)?),
            NHA_OIF => oif = Some(u32_of(v)?),
            NHA_GATEWAY => gateway = Some(ip_of(family, v)?),
            NHA_GROUP => {
                other = true;
                // struct nexthop_grp, 8 octets each; a short or empty list is no group.
                if v.is_empty() || v.len() % 8 != 0 {
                    return None;
                }
                group = Some(
                    v.chunks_exact(8)
                        .map(|g| (u32_of(g).unwrap_or(0), u16::from(g[4]) + 1))
                        .collect(),
                );
            }
            NHA_BLACKHOLE => other = true,
            _ => {}
        }
    }
    Some(KernelNexthop {
        id: id?,
        protocol,
        hop: (!other).then_some(NextHop {
            gateway,
            ifindex: oif,
            weight: 1,
        }),
        group,
    })
}

/// Appends a dump request: `RTM_GETROUTE`, `RTM_GETLINK`, `RTM_GETADDR` or
/// `RTM_GETNEXTHOP` for `family` (`AF_UNSPEC` for all).
pub fn encode_dump(buf: &mut Vec<u8>, seq: u32, kind: u16, family: u8) {
    // rtmsg for routes, ifinfomsg for links, ifaddrmsg for addresses, nhmsg for nexthops:
    // the family comes first in each, and zeros select everything.
    let body = match kind {
        RTM_GETLINK => 16,
        RTM_GETADDR | RTM_GETNEXTHOP => 8,
        _ => 12,
    };
    let len = (NLMSG_HDR + body) as u32;
    buf.extend_from_slice(&len.to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.push(family);
    buf.extend(std::iter::repeat_n(0, body - 1));
}

/// The attributes (`struct rtattr` / `struct nlattr`: length, type, value, padded to four
/// octets) in `buf`, as (type, value); stops at the first whose length does not fit.
fn attributes(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([buf[0], buf[1]]));
        let kind = u16::from_ne_bytes([buf[2], buf[3]]);
        if len < 4 || len > buf.len() {
            buf = &[];
            return None;
        }
        let value = &buf[4..len];
        buf = &buf[align4(len).min(buf.len())..];
        Some((kind, value))
    })
}

/// One netlink message of a received buffer: its header fields and whole bytes.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    pub kind: u16,
    pub flags: u16,
    pub seq: u32,
    /// The port id of the socket whose request caused the message (0: the kernel itself).
    pub pid: u32,
    /// The whole message, header included.
    pub bytes: &'a [u8],
}

/// The messages of a datagram from a netlink socket. Stops at the first malformed header:
/// lengths that run past the buffer or are shorter than a header.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Message<'_>> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDR {
            return None;
        }
        let u32_at =
            |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let len = u32_at(0) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            rest = &[];
            return None;
        }
        let m = Message {
            kind: u16::from_ne_bytes([rest[4], rest[5]]),
            flags: u16::from_ne_bytes([rest[6], rest[7]]),
            seq: u32_at(8),
            pid: u32_at(12),
            bytes: &rest[..len],
        };
        rest = &rest[align4(len).min(rest.len())..];
        Some(m)
    })
}

/// An `NLMSG_ERROR`: the errno (0 for an ack, else positive) and the extended-ack message
/// if the kernel gave one.
pub fn parse_error(m: &Message<'_>) -> Option<(i32, Option<String>)> {
    if m.kind != NLMSG_ERROR || m.bytes.len() < NLMSG_HDR + 4 {
        return None;
    }
    let b = &m.bytes[NLMSG_HDR..];
    // The kernel sends -errno; a hostile i32::MIN must not overflow the negation.
    let errno = i32::from_ne_bytes([b[0], b[1], b[2], b[3]]).saturating_neg();
    // NLM_F_CAPPED (0x100): the request's header only; NLM_F_ACK_TLVS (0x200): TLVs follow.
    let mut msg = None;
    if m.flags & 0x200 != 0 {
        let orig = if m.flags & 0x100 != 0 {
            NLMSG_HDR
        } else {
            b.get(4..8)
                .map(|l| u32::from_ne_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .unwrap_or(NLMSG_HDR)
        };
        let tlvs = b.get(4 + align4(orig)..).unwrap_or(&[]);
        // NLMSGERR_ATTR_MSG: a NUL-terminated string.
        if let Some((_, s)) = attributes(tlvs).find(|(kind, _)| *kind == 1) {
            let s = s.split(|&c| c == 0).next().unwrap_or(&[]);
            msg = Some(String::from_utf8_lossy(s).into_owned());
        }
    }
    Some((errno, msg))
}

/// A route the kernel reported (in a dump or a notification).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRoute {
    pub prefix: Prefix,
    pub table: u32,
    pub metric: u32,
    pub protocol: u8,
    /// None for a route this FIB does not make (multicast, local, with a source prefix...).
    pub route: Option<Route>,
    /// The nexthop object it uses, if any (the kernel also gives its gateway and interface,
    /// as `route`, unless `nexthop_compat_mode` is off).
    pub nh_id: Option<u32>,
}

/// What the kernel said in a message that matters to the FIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    NewRoute(KernelRoute),
    DelRoute(KernelRoute),
    /// A link appeared or changed: its index, name, whether it can forward (up and
    /// running), and whether it is a TUN interface (`IFLA_INFO_KIND` "tun").
    Link {
        ifindex: u32,
        name: String,
        up: bool,
        tun: bool,
    },
    LinkGone {
        ifindex: u32,
    },
    /// A nexthop object made or changed (`added`), or deleted.
    Nexthop {
        nh: KernelNexthop,
        added: bool,
    },
    /// An address on an interface, and the prefix it makes connected.
    Address {
        ifindex: u32,
        address: IpAddr,
        prefix: Prefix,
        added: bool,
    },
}

const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;

/// An address message, read here: netlink-packet-route 0.30 panics on an `IFA_CACHEINFO`
/// shorter than it expects (found by the fuzzer), and the FIB needs two attributes of it.
fn parse_address(m: &Message<'_>) -> Option<KernelEvent> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index.
    let body = m.bytes.get(NLMSG_HDR..)?;
    let h = body.get(..8)?;
    let (family, prefix_len) = (h[0], h[1]);
    let ifindex = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
    let (mut address, mut local) = (None, None);
    for (kind, value) in attributes(&body[8..]) {
        let ip = match (family as i32, value.len()) {
            (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(value).ok()?)),
            (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(value).ok()?)),
            _ => None,
        };
        match kind {
            1 => address = ip, // IFA_ADDRESS
            2 => local = ip,   // IFA_LOCAL
            _ => {}
        }
    }
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
    // elsewhere.
    let addr = local.or(address)?;
    Some(KernelEvent::Address {
        ifindex,
        address: addr,
        prefix: Prefix::new(addr, prefix_len).ok()?,
        added: m.kind == RTM_NEWADDR,
    })
}

const RTM_DELLINK: u16 = 17;

/// A link message, read here too: netlink-packet-route 0.30 panics on a short IPv6
/// `IFLA_INET6_CACHEINFO` inside `IFLA_AF_SPEC` (found by the fuzzer), and the FIB needs the
/// index, the flags and the name.
fn parse_link(m: &Message<'_>) -> Option<KernelEvent> {
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags (u32), change (u32).
    let body = m.bytes.get(NLMSG_HDR..)?;
    let h = body.get(..16)?;
    let ifindex = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
    if m.kind == RTM_DELLINK {
        return Some(KernelEvent::LinkGone { ifindex });
    }
    let flags = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
    // IFLA_IFNAME, NUL-terminated.
    let name = attributes(&body[16..])
        .find(|(kind, _)| *kind == 3)
        .map(|(_, v)| {
            let v = v.split(|&c| c == 0).next().unwrap_or(&[]);
            String::from_utf8_lossy(v).into_owned()
        })
        .unwrap_or_default();
    // IFLA_LINKINFO holding IFLA_INFO_KIND "tun" (NUL-terminated).
    let tun = attributes(&body[16..])
        .filter(|(kind, _)| *kind == 18)
        .flat_map(|(_, info)| attributes(info))
        .any(|(kind, v)| kind == 1 && v.split(|&c| c == 0).next() == Some(b"tun"));
    let up = (libc::IFF_UP | libc::IFF_RUNNING) as u32;
    Some(KernelEvent::Link {
        ifindex,
        name,
        up: flags & up == up,
        tun,
    })
}

/// Parses a route, link or address message from the kernel; None for anything else, or for
/// a message that cannot be read (counted by the caller, never a panic).
pub fn parse_event(m: &Message<'_>) -> Option<KernelEvent> {
    match m.kind {
        RTM_NEWADDR | RTM_DELADDR => parse_address(m),
        RTM_NEWLINK | RTM_DELLINK => parse_link(m),
        RTM_NEWROUTE => parse_route(m).map(KernelEvent::NewRoute),
        RTM_DELROUTE => parse_route(m).map(KernelEvent::DelRoute),
        RTM_NEWNEXTHOP | RTM_DELNEXTHOP => parse_nexthop(m).map(|nh| KernelEvent::Nexthop {
            nh,
            added: m.kind == RTM_NEWNEXTHOP,
        }),
        _ => None,
    }
}

const RTA_SRC: u16 = 2;
const RTA_VIA: u16 = 18;
const RTA_ENCAP: u16 = 22;

fn ip_of(family: u8, v: &[u8]) -> Option<IpAddr> {
    match (i32::from(family), v.len()) {
        (libc::AF_INET, 4) => Some(IpAddr::from(<[u8; 4]>::try_from(v).ok()?)),
        (libc::AF_INET6, 16) => Some(IpAddr::from(<[u8; 16]>::try_from(v).ok()?)),
        _ => None,
    }
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A route message, read here as well: netlink-packet-route 0.30 panics on a short
/// `RTA_FLOW` (found by the fuzzer). It stays the reference the tests check this against.
fn parse_route(m: &Message<'_>) -> Option<KernelRoute> {
    // struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags (u32).
    let body = m.bytes.get(NLMSG_HDR..)?;
    let h = body.get(..12)?;
    let (family, dst_len, src_len, tos, table8, protocol, rtype) =
        (h[0], h[1], h[2], h[3], h[4], h[5], h[7]);
    if i32::from(family) != libc::AF_INET && i32::from(family) != libc::AF_INET6 {
        return None;
    }
    let mut dst = None;
    let mut table = u32::from(table8);
    let mut metric = 0;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = None;
    let mut nh_id = None;
    let mut foreign_shape = src_len != 0 || tos != 0;
    for (kind, v) in attributes(&body[12..]) {
        match kind {
            RTA_DST => dst = Some(ip_of(family, v)?),
            RTA_TABLE => table = u32_of(v)?,
            RTA_PRIORITY => metric = u32_of(v)?,
            RTA_GATEWAY => gateway = Some(ip_of(family, v)?),
            RTA_OIF => oif = Some(u32_of(v)?),
            RTA_MULTIPATH => multipath = Some(v),
            RTA_NH_ID => nh_id = Some(u32_of(v)?),
            RTA_SRC | RTA_VIA | RTA_ENCAP => foreign_shape = true,
            _ => {}
        }
    }
    let addr = dst.unwrap_or(if i32::from(family) == libc::AF_INET {
        IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
    });
    let prefix = Prefix::new(addr, dst_len).ok()?;
    let route = if foreign_shape {
        None
    } else {
        match rtype {
            RTN_BLACKHOLE => Some(Route::Blackhole),
            RTN_UNREACHABLE => Some(Route::Unreachable),
            RTN_UNICAST => match multipath {
                Some(mp) => parse_multipath(family, mp).and_then(Route::unicast),
                None => Route::unicast(vec![NextHop {
                    gateway,
                    ifindex: oif,
                    weight: 1,
                }]),
            },
            _ => None,
        }
    };
    Some(KernelRoute {
        prefix,
        table,
        metric,
        protocol,
        route,
        nh_id,
    })
}

/// The next hops of `RTA_MULTIPATH`: `struct rtnexthop` (len, flags, hops, ifindex) each
/// followed by its attributes. None if one is of a shape the FIB does not make.
fn parse_multipath(family: u8, mut v: &[u8]) -> Option<Vec<NextHop>> {
    let mut hops = Vec::new();
    while v.len() >= 8 {
        let len = usize::from(u16::from_ne_bytes([v[0], v[1]]));
        if len < 8 || len > v.len() {
            return None;
        }
        let mut gateway = None;
        for (kind, a) in attributes(&v[8..len]) {
            match kind {
                RTA_GATEWAY => gateway = Some(ip_of(family, a)?),
                RTA_VIA | RTA_ENCAP => return None,
                _ => {}
            }
        }
        let ifindex = u32::from_ne_bytes([v[4], v[5], v[6], v[7]]);
        hops.push(NextHop {
            gateway,
            ifindex: (ifindex != 0).then_some(ifindex),
            weight: u16::from(v[3]) + 1,
        });
        v = &v[align4(len).min(v.len())..];
    }
    Some(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::route::{
        RouteAddress, RouteAttribute, RouteMessage, RouteNextHop, RouteProtocol, RouteScope,
        RouteType,
    };
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

    // netlink-packet-route's reading of a route, the reference ours is checked against.

    fn route_address(a: &RouteAddress) -> Option<IpAddr> {
        match a {
            RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
            RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
            _ => None,
        }
    }

    fn next_hop(h: &RouteNextHop) -> Option<NextHop> {
        let mut gateway = None;
        for a in &h.attributes {
            match a {
                RouteAttribute::Gateway(g) => gateway = Some(route_address(g)?),
                // A gateway of the other family (RTA_VIA) or an encapsulation: not ours to make.
                RouteAttribute::Via(_) | RouteAttribute::Encap(_) => return None,
                _ => {}
            }
        }
        Some(NextHop {
            gateway,
            ifindex: (h.interface_index != 0).then_some(h.interface_index),
            weight: u16::from(h.hops) + 1,
        })
    }

    fn kernel_route(m: &RouteMessage) -> Option<KernelRoute> {
        let h = &m.header;
        let is_v4 = match h.address_family {
            AddressFamily::Inet => true,
            AddressFamily::Inet6 => false,
            _ => return None,
        };
        let mut dst = None;
        let mut table = u32::from(h.table);
        let mut metric = 0;
        let mut gateway = None;
        let mut oif = None;
        let mut multipath = None;
        let mut foreign_shape = h.source_prefix_length != 0 || h.tos != 0;
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst = route_address(d),
                RouteAttribute::Table(t) => table = *t,
                RouteAttribute::Priority(p) => metric = *p,
                RouteAttribute::Gateway(g) => gateway = route_address(g),
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::MultiPath(hops) => multipath = Some(hops),
                RouteAttribute::Via(_) | RouteAttribute::Encap(_) | RouteAttribute::Source(_) => {
                    foreign_shape = true
                }
                _ => {}
            }
        }
        let addr = dst.unwrap_or(if is_v4 {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        });
        if addr.is_ipv4() != is_v4 {
            return None;
        }
        let prefix = Prefix::new(addr, h.destination_prefix_length).ok()?;
        let route = if foreign_shape {
            None
        } else {
            match h.kind {
                RouteType::BlackHole => Some(Route::Blackhole),
                RouteType::Unreachable => Some(Route::Unreachable),
                RouteType::Unicast => match multipath {
                    Some(hops) => hops
                        .iter()
                        .map(next_hop)
                        .collect::<Option<Vec<_>>>()
                        .and_then(Route::unicast),
                    None => Route::unicast(vec![NextHop {
                        gateway,
                        ifindex: oif,
                        weight: 1,
                    }]),
                },
                _ => None,
            }
        };
        Some(KernelRoute {
            prefix,
            table,
            metric,
            protocol: u8::from(h.protocol),
            route,
            nh_id: None,
        })
    }

    const T: Target = Target {
        table: 254,
        metric: 20,
        protocol: 77,
    };

    fn parse_back(buf: &[u8]) -> (u16, u16, u32, RouteMessage) {
        let ms: Vec<Message<'_>> = messages(buf).collect();
        assert_eq!(ms.len(), 1);
        let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(ms[0].bytes).unwrap();
        let r = match m.payload {
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r))
            | NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(r)) => r,
            other => panic!("{other:?}"),
        };
        // Our reading agrees with the reference's.
        assert_eq!(parse_route(&ms[0]), kernel_route(&r));
        (ms[0].kind, ms[0].flags, ms[0].seq, r)
    }

    #[test]
    fn requests_read_back_as_netlink_packet_route_sees_them() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        let route = Route::unicast(vec![NextHop::via(gw)]).unwrap();
        let mut buf = Vec::new();
        encode_route(&mut buf, 7, Op::Add, &T, &p, &route);
        let (kind, flags, seq, r) = parse_back(&buf);
        assert_eq!((kind, seq), (RTM_NEWROUTE, 7));
        assert_eq!(flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
        assert_eq!(r.header.destination_prefix_length, 16);
        assert_eq!(r.header.protocol, RouteProtocol::Other(77));
        assert_eq!(r.header.kind, RouteType::Unicast);
        assert_eq!(r.header.scope, RouteScope::Universe);
        let kr = kernel_route(&r).unwrap();
        assert_eq!(
            kr,
            KernelRoute {
                prefix: p,
                table: 254,
                metric: 20,
                protocol: 77,
                route: Some(route.clone()),
                nh_id: None,
            }
        );

        // IPv6, ECMP with weights, a table above 255.
        let p6: Prefix = "2001:db8:1::/48".parse().unwrap();
        let hops = vec![
            NextHop {
                gateway: Some("fe80::1".parse().unwrap()),
                ifindex: Some(3),
                weight: 1,
            },
            NextHop {
                gateway: Some("fe80::2".parse().unwrap()),
                ifindex: Some(4),
                weight: 256,
            },
        ];
        let ecmp = Route::unicast(hops).unwrap();
        let t = Target { table: 1000, ..T };
        buf.clear();
        encode_route(&mut buf, 8, Op::Replace, &t, &p6, &ecmp);
        let (_, flags, _, r) = parse_back(&buf);
        assert_eq!(
            flags,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
        );
        assert_eq!(r.header.table, 0);
        let kr = kernel_route(&r).unwrap();
        assert_eq!((kr.prefix, kr.table, kr.route), (p6, 1000, Some(ecmp)));

        // Blackhole and unreachable; a route out of an interface is link-scoped.
        for (route, kind) in [
            (Route::Blackhole, RouteType::BlackHole),
            (Route::Unreachable, RouteType::Unreachable),
        ] {
            buf.clear();
            encode_route(&mut buf, 9, Op::Add, &T, &p, &route);
            let (_, _, _, r) = parse_back(&buf);
            assert_eq!(r.header.kind, kind);
            assert_eq!(kernel_route(&r).unwrap().route, Some(route));
        }
        buf.clear();
        let dev = Route::unicast(vec![NextHop::dev(5)]).unwrap();
        encode_route(&mut buf, 10, Op::Add, &T, &p, &dev);
        let (_, _, _, r) = parse_back(&buf);
        assert_eq!(r.header.scope, RouteScope::Link);
        assert_eq!(kernel_route(&r).unwrap().route, Some(dev));

        // A delete: any type and scope, our protocol, no next hops.
        buf.clear();
        encode_route(&mut buf, 11, Op::Delete, &T, &p, &route);
        let (kind, flags, _, r) = parse_back(&buf);
        assert_eq!((kind, flags), (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK));
        assert_eq!(r.header.kind, RouteType::Unspec);
        assert_eq!(r.header.protocol, RouteProtocol::Other(77));
        assert!(!r
            .attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::MultiPath(_))));
    }

    #[test]
    fn many_requests_split_back_into_messages() {
        let mut buf = Vec::new();
        for i in 0..100u32 {
            let p = Prefix::new(IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24).unwrap();
            encode_route(&mut buf, i + 1, Op::Add, &T, &p, &Route::Blackhole);
        }
        let seqs: Vec<u32> = messages(&buf).map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    }

    fn error_message(seq: u32, errno: i32, flags: u16, text: Option<&str>) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&(-errno).to_ne_bytes());
        // The request's header (capped).
        b.extend_from_slice(&[0u8; 16]);
        if let Some(t) = text {
            let mut v = t.as_bytes().to_vec();
            v.push(0);
            put_attr(&mut b, 1, &v);
        }
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    #[test]
    fn acks_and_errors_with_their_text() {
        let ack = error_message(5, 0, 0x100, None);
        let m = messages(&ack).next().unwrap();
        assert_eq!((m.seq, parse_error(&m)), (5, Some((0, None))));
        let err = error_message(
            6,
            libc::ENETUNREACH,
            0x300,
            Some("Nexthop has invalid gateway"),
        );
        let m = messages(&err).next().unwrap();
        assert_eq!(
            parse_error(&m),
            Some((
                libc::ENETUNREACH,
                Some("Nexthop has invalid gateway".to_owned())
            ))
        );
    }

    #[test]
    fn address_messages_are_read_here_even_with_a_short_cacheinfo() {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&RTM_NEWADDR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[libc::AF_INET as u8, 24, 0, 0]);
        b.extend_from_slice(&7u32.to_ne_bytes());
        put_attr(&mut b, 1, &[192, 0, 2, 255]); // IFA_ADDRESS: the peer on a p2p link
        put_attr(&mut b, 2, &[192, 0, 2, 1]); // IFA_LOCAL
        put_attr(&mut b, 6, &[0; 4]); // IFA_CACHEINFO, shorter than its 16 octets
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let m = messages(&b).next().unwrap();
        assert_eq!(
            parse_event(&m),
            Some(KernelEvent::Address {
                ifindex: 7,
                address: "192.0.2.1".parse().unwrap(),
                prefix: "192.0.2.0/24".parse().unwrap(),
                added: true,
            })
        );
    }

    #[test]
    fn link_messages_are_read_here() {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&RTM_NEWLINK.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[0, 0, 1, 0]);
        b.extend_from_slice(&9u32.to_ne_bytes());
        b.extend_from_slice(&(libc::IFF_UP as u32 | libc::IFF_RUNNING as u32).to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        put_attr(&mut b, 3, b"ic-aws\0");
        put_attr(&mut b, 26, &[4, 0, 10, 0]); // IFLA_AF_SPEC, truncated
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let m = messages(&b).next().unwrap();
        assert_eq!(
            parse_event(&m),
            Some(KernelEvent::Link {
                ifindex: 9,
                name: "ic-aws".into(),
                up: true,
                tun: false,
            })
        );
        // A TUN says so in IFLA_LINKINFO (IFLA_INFO_KIND "tun").
        let mut info = Vec::new();
        put_attr(&mut info, 1, b"tun\0");
        let at = b.len();
        put_attr(&mut b, 18, &info);
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        let m = messages(&b).next().unwrap();
        assert!(matches!(
            parse_event(&m),
            Some(KernelEvent::Link { tun: true, .. })
        ));
        b.truncate(at);
        let len = b.len() as u32;
        b[..4].copy_from_slice(&len.to_ne_bytes());
        // Up but not running (no carrier) cannot forward.
        b[24..28].copy_from_slice(&(libc::IFF_UP as u32).to_ne_bytes());
        let m = messages(&b).next().unwrap();
        assert!(matches!(
            parse_event(&m),
            Some(KernelEvent::Link { up: false, .. })
        ));
    }

    #[test]
    fn garbage_is_never_a_panic() {
        use proptest::prelude::*;
        proptest!(|(data in proptest::collection::vec(any::<u8>(), 0..300))| {
            for m in messages(&data) {
                let _ = parse_error(&m);
                let _ = parse_event(&m);
            }
        });
        // Well-framed messages of every kind the FIB reads, with arbitrary bodies.
        let kinds = [
            NLMSG_ERROR,
            RTM_NEWLINK,
            17,
            20,
            21,
            RTM_NEWROUTE,
            RTM_DELROUTE,
        ];
        proptest!(|(k in 0..kinds.len(), flags in any::<u16>(),
                    body in proptest::collection::vec(any::<u8>(), 0..200))| {
            let mut b = Vec::new();
            b.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
            b.extend_from_slice(&kinds[k].to_ne_bytes());
            b.extend_from_slice(&flags.to_ne_bytes());
            b.extend_from_slice(&[0u8; 8]);
            b.extend_from_slice(&body);
            for m in messages(&b) {
                let _ = parse_error(&m);
                let _ = parse_event(&m);
            }
        });
        // A header whose length runs past the buffer ends the walk.
        let mut b = error_message(1, 0, 0, None);
        b[0] = 200;
        assert_eq!(messages(&b).count(), 0);
    }

    /// Without an object, a protected route is written as a route through its primary.
    #[test]
    fn a_protected_route_is_written_through_its_primary() {
        let t = Target {
            table: 254,
            metric: 20,
            protocol: 77,
        };
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        let primary = NextHop::via("192.0.2.1".parse().unwrap());
        let backup = NextHop::via("198.51.100.1".parse().unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        encode_route(
            &mut a,
            1,
            Op::Add,
            &t,
            &p,
            &Route::protected(primary.clone(), backup),
        );
        encode_route(&mut b, 1, Op::Add, &t, &p, &Route::Unicast(vec![primary]));
        assert_eq!(a, b);
    }
}

//! The flow key of an IP packet. The packet is whatever crossed the link (from the peer, or
//! from a host behind us): every length is checked, nothing is trusted; a packet too short
//! for its headers has no key (and is not counted as a flow).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
const SCTP: u8 = 132;
const UDPLITE: u8 = 136;

/// What identifies a flow: both addresses (IPv4 in the first four octets), the protocol and
/// the ports; for ICMP and ICMPv6 the destination port holds type x 256 + code, as NetFlow
/// and IPFIX exporters put it (nfdump shows it as type.code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    pub v6: bool,
}

impl Key {
    pub fn src_ip(&self) -> IpAddr {
        addr(&self.src, self.v6)
    }
    pub fn dst_ip(&self) -> IpAddr {
        addr(&self.dst, self.v6)
    }
}

fn addr(a: &[u8; 16], v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(*a))
    } else {
        IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))
    }
}

/// One packet as a flow counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    pub key: Key,
    /// IP-level octets: the IP header's length (total length, or payload length plus 40),
    /// when the packet holds that much; what there is otherwise.
    pub octets: u32,
    /// TCP flags (FIN 0x01 ... CWR 0x80), 0 for other protocols.
    pub tcp_flags: u8,
}

/// The key, length and TCP flags of the IP packet `ip`; None if it is not IPv4 or IPv6 or is
/// shorter than its own headers say.
pub fn parse(ip: &[u8]) -> Option<Packet> {
    match ip.first()? >> 4 {
        4 => parse_v4(ip),
        6 => parse_v6(ip),
        _ => None,
    }
}

fn parse_v4(ip: &[u8]) -> Option<Packet> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ihl < 20 || ip.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let octets = if (ihl..=ip.len()).contains(&total) {
        total
    } else {
        ip.len()
    };
    let proto = ip[9];
    let mut key = Key {
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        proto,
        v6: false,
    };
    key.src[..4].copy_from_slice(&ip[12..16]);
    key.dst[..4].copy_from_slice(&ip[16..20]);
    // Only the first fragment carries the ports.
    let first = u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff == 0;
    let tcp_flags = if first {
        transport(&mut key, proto, &ip[ihl..octets], ICMP)
    } else {
        0
    };
    Some(Packet {
        key,
        octets: octets as u32,
        tcp_flags,
    })
}

fn parse_v6(ip: &[u8]) -> Option<Packet> {
    if ip.len() < 40 {
        return None;
    }
    let total = 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]]));
    let end = total.min(ip.len());
    let mut key = Key {
        src: ip[8..24].try_into().ok()?,
        dst: ip[24..40].try_into().ok()?,
        sport: 0,
        dport: 0,
        proto: ip[6],
        v6: true,
    };
    // Extension headers (RFC 8200 §4), a few of them: the protocol is the first header that
    // is not one; past a non-first fragment there are no ports.
    let mut next = ip[6];
    let mut at = 40;
    let mut ports = true;
    for _ in 0..8 {
        let len = match next {
            0 | 43 | 60 => usize::from(*ip.get(at + 1)?) * 8 + 8,
            44 => {
                let off = u16::from_be_bytes([*ip.get(at + 2)?, *ip.get(at + 3)?]) >> 3;
                ports &= off == 0;
                8
            }
            51 => usize::from(*ip.get(at + 1)?) * 4 + 8,
            _ => break,
        };
        next = *ip.get(at)?;
        at += len;
    }
    key.proto = next;
    let tcp_flags = match (ports, ip.get(at..end)) {
        (true, Some(l4)) => transport(&mut key, next, l4, ICMPV6),
        _ => 0,
    };
    Some(Packet {
        key,
        octets: total.min(ip.len()) as u32,
        tcp_flags,
    })
}

/// Ports (or ICMP type and code) into `key`; returns the TCP flags.
fn transport(key: &mut Key, proto: u8, l4: &[u8], icmp: u8) -> u8 {
    match proto {
        TCP | UDP | SCTP | UDPLITE if l4.len() >= 4 => {
            key.sport = u16::from_be_bytes([l4[0], l4[1]]);
            key.dport = u16::from_be_bytes([l4[2], l4[3]]);
            if proto == TCP {
                l4.get(13).copied().unwrap_or(0)
            } else {
                0
            }
        }
        p if p == icmp && l4.len() >= 2 => {
            key.dport = u16::from_be_bytes([l4[0], l4[1]]);
            0
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn v4(proto: u8, l4: &[u8], total: usize) -> Vec<u8> {
        let mut p = vec![0u8; 20];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 1, 0, 2]);
        p[16..20].copy_from_slice(&[10, 2, 0, 2]);
        p.extend_from_slice(l4);
        p.resize(total.max(p.len()), 0);
        p
    }

    #[test]
    fn tcp_udp_and_icmp_over_ipv4() {
        let mut tcp = vec![0u8; 20];
        tcp[..4].copy_from_slice(&[0xc0, 0x00, 0x14, 0x51]);
        tcp[13] = 0x12; // SYN ACK
        let p = parse(&v4(TCP, &tcp, 60)).unwrap();
        assert_eq!(p.key.src_ip(), "10.1.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.key.dst_ip(), "10.2.0.2".parse::<IpAddr>().unwrap());
        assert_eq!((p.key.sport, p.key.dport, p.key.proto), (49152, 5201, 6));
        assert_eq!((p.octets, p.tcp_flags), (60, 0x12));
        let p = parse(&v4(UDP, &[0, 53, 0x13, 0x89, 0, 8, 0, 0], 28)).unwrap();
        assert_eq!((p.key.sport, p.key.dport, p.tcp_flags), (53, 5001, 0));
        // Echo request: type 8 code 0.
        let p = parse(&v4(ICMP, &[8, 0, 0, 0, 0, 1, 0, 1], 128)).unwrap();
        assert_eq!((p.key.sport, p.key.dport, p.octets), (0, 0x0800, 128));
    }

    #[test]
    fn fragments_after_the_first_have_no_ports() {
        let mut p = v4(UDP, &[0, 53, 0x13, 0x89, 0, 8, 0, 0], 28);
        p[6..8].copy_from_slice(&185u16.to_be_bytes());
        let k = parse(&p).unwrap().key;
        assert_eq!((k.sport, k.dport, k.proto), (0, 0, UDP));
    }

    #[test]
    fn ipv6_through_extension_headers() {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = 0; // hop-by-hop, then UDP
        p[8..24].copy_from_slice(&"fd01::2".parse::<Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd02::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[UDP, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 8, 0, 0]);
        let len = (p.len() - 40) as u16;
        p[4..6].copy_from_slice(&len.to_be_bytes());
        let k = parse(&p).unwrap();
        assert_eq!((k.key.proto, k.key.sport, k.key.dport), (UDP, 12345, 53));
        assert_eq!(k.octets as usize, p.len());
        assert_eq!(k.key.dst_ip(), "fd02::2".parse::<IpAddr>().unwrap());
        // Echo request, type 128.
        p[6] = ICMPV6;
        p.truncate(40);
        p.extend_from_slice(&[128, 0, 0, 0]);
        assert_eq!(parse(&p).unwrap().key.dport, 128 << 8);
    }

    #[test]
    fn short_or_lying_packets() {
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0x45; 10]), None);
        assert_eq!(parse(&[0x4f; 20]), None, "a header longer than the packet");
        assert_eq!(parse(&[0x60; 39]), None);
        // A total length past the end: what there is counts.
        let p = v4(UDP, &[0, 1, 0, 2], 24);
        let mut long = p.clone();
        long[2..4].copy_from_slice(&9000u16.to_be_bytes());
        assert_eq!(parse(&long).unwrap().octets, 24);
        // Ports cut short: none.
        assert_eq!(parse(&v4(TCP, &[1, 2], 22)).unwrap().key.sport, 0);
    }

    #[test]
    fn any_input_is_never_a_panic() {
        use proptest::prelude::*;
        proptest!(|(data in proptest::collection::vec(any::<u8>(), 0..200))| {
            let _ = parse(&data);
        });
    }
}

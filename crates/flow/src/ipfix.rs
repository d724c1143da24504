//! IPFIX (RFC 7011) as interlink exports it: messages of at most [`MAX_MESSAGE`] octets (one
//! datagram), an IPv4 template (256) and an IPv6 one (257) with the information elements of
//! RFC 7012 below, and data sets of records under them.

use crate::table::Record;
use crate::Direction;

pub const VERSION: u16 = 10;
pub const TEMPLATE_SET: u16 = 2;
pub const TEMPLATE_V4: u16 = 256;
pub const TEMPLATE_V6: u16 = 257;
/// A message fits one datagram on any path a collector is likely to be reached by.
pub const MAX_MESSAGE: usize = 1400;
const HEADER: usize = 16;
const SET_HEADER: usize = 4;

/// The fields of both templates, as (information element, length): the addresses first
/// (IPv4 or IPv6), then the rest in common.
const V4_ADDRS: [(u16, u16); 2] = [(8, 4), (12, 4)]; // source/destinationIPv4Address
const V6_ADDRS: [(u16, u16); 2] = [(27, 16), (28, 16)]; // source/destinationIPv6Address
const COMMON: [(u16, u16); 13] = [
    (4, 1),   // protocolIdentifier
    (7, 2),   // sourceTransportPort
    (11, 2),  // destinationTransportPort
    (1, 8),   // octetDeltaCount
    (2, 8),   // packetDeltaCount
    (152, 8), // flowStartMilliseconds
    (153, 8), // flowEndMilliseconds
    (6, 2),   // tcpControlBits (RFC 7125: two octets)
    (10, 4),  // ingressInterface
    (14, 4),  // egressInterface
    (61, 1),  // flowDirection
    (136, 1), // flowEndReason
    (305, 4), // samplingPacketInterval
];

fn record_len(v6: bool) -> usize {
    let addrs = if v6 { V6_ADDRS } else { V4_ADDRS };
    addrs
        .iter()
        .chain(COMMON.iter())
        .map(|&(_, l)| usize::from(l))
        .sum()
}

/// Where a record was seen: the link's interface, the direction and the sampling rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    pub ifindex: u32,
    pub direction: Direction,
    pub sampling: u32,
}

/// The template set holding both templates.
pub fn template_set(out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&TEMPLATE_SET.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    for (id, addrs) in [(TEMPLATE_V4, V4_ADDRS), (TEMPLATE_V6, V6_ADDRS)] {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&((addrs.len() + COMMON.len()) as u16).to_be_bytes());
        for (ie, len) in addrs.iter().chain(COMMON.iter()) {
            out.extend_from_slice(&ie.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    let len = (out.len() - start) as u16;
    out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn encode(out: &mut Vec<u8>, ctx: &Context, r: &Record) {
    let k = &r.key;
    let n = if k.v6 { 16 } else { 4 };
    out.extend_from_slice(&k.src[..n]);
    out.extend_from_slice(&k.dst[..n]);
    out.push(k.proto);
    out.extend_from_slice(&k.sport.to_be_bytes());
    out.extend_from_slice(&k.dport.to_be_bytes());
    out.extend_from_slice(&r.counts.octets.to_be_bytes());
    out.extend_from_slice(&r.counts.packets.to_be_bytes());
    out.extend_from_slice(&r.counts.first_ms.to_be_bytes());
    out.extend_from_slice(&r.counts.last_ms.to_be_bytes());
    out.extend_from_slice(&u16::from(r.counts.tcp_flags).to_be_bytes());
    let (ingress, egress) = match ctx.direction {
        Direction::Ingress => (ctx.ifindex, 0),
        Direction::Egress => (0, ctx.ifindex),
    };
    out.extend_from_slice(&ingress.to_be_bytes());
    out.extend_from_slice(&egress.to_be_bytes());
    out.push(ctx.direction as u8);
    out.push(r.reason as u8);
    out.extend_from_slice(&ctx.sampling.to_be_bytes());
}

/// Builds messages for one observation domain, numbering them as RFC 7011 §3.1 asks: each
/// message's sequence number is the count of data records sent before it, modulo 2^32.
pub struct Encoder {
    pub domain: u32,
    pub sequence: u32,
}

impl Encoder {
    pub fn new(domain: u32) -> Encoder {
        Encoder {
            domain,
            sequence: 0,
        }
    }

    fn start(&self, out: &mut Vec<u8>, export_secs: u32) {
        out.clear();
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&export_secs.to_be_bytes());
        out.extend_from_slice(&self.sequence.to_be_bytes());
        out.extend_from_slice(&self.domain.to_be_bytes());
        debug_assert_eq!(out.len(), HEADER);
    }

    fn finish(out: &mut [u8]) {
        let len = out.len() as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
    }

    /// A message holding the templates alone.
    pub fn templates(&self, export_secs: u32) -> Vec<u8> {
        let mut m = Vec::with_capacity(128);
        self.start(&mut m, export_secs);
        template_set(&mut m);
        Encoder::finish(&mut m);
        m
    }

    /// `records` packed into as few messages as fit [`MAX_MESSAGE`] each.
    pub fn messages(&mut self, export_secs: u32, records: &[(Context, Record)]) -> Vec<Vec<u8>> {
        let mut done = Vec::new();
        let mut m = Vec::with_capacity(MAX_MESSAGE);
        let mut in_msg = 0u32;
        // The open data set: its start and its template.
        let mut set: Option<(usize, u16)> = None;
        let close_set = |m: &mut Vec<u8>, set: &mut Option<(usize, u16)>| {
            if let Some((at, _)) = set.take() {
                let len = (m.len() - at) as u16;
                m[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
            }
        };
        self.start(&mut m, export_secs);
        for (ctx, r) in records {
            let template = if r.key.v6 { TEMPLATE_V6 } else { TEMPLATE_V4 };
            let need = record_len(r.key.v6)
                + if set.is_some_and(|(_, t)| t == template) {
                    0
                } else {
                    SET_HEADER
                };
            if m.len() + need > MAX_MESSAGE && in_msg > 0 {
                close_set(&mut m, &mut set);
                Encoder::finish(&mut m);
                done.push(std::mem::replace(&mut m, Vec::with_capacity(MAX_MESSAGE)));
                self.sequence = self.sequence.wrapping_add(in_msg);
                in_msg = 0;
                self.start(&mut m, export_secs);
            }
            if set.is_none_or(|(_, t)| t != template) {
                close_set(&mut m, &mut set);
                set = Some((m.len(), template));
                m.extend_from_slice(&template.to_be_bytes());
                m.extend_from_slice(&[0, 0]);
            }
            encode(&mut m, ctx, r);
            in_msg += 1;
        }
        if in_msg > 0 {
            close_set(&mut m, &mut set);
            Encoder::finish(&mut m);
            done.push(m);
            self.sequence = self.sequence.wrapping_add(in_msg);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Counts, EndReason};
    use crate::Key;

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn record(v6: bool, sport: u16) -> Record {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, 1, 0, 2]);
        if v6 {
            src = "fd01::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        }
        Record {
            key: Key {
                src,
                dst: [9; 16],
                sport,
                dport: 5201,
                proto: 6,
                v6,
            },
            counts: Counts {
                octets: 123_456,
                packets: 99,
                first_ms: 1_700_000_000_000,
                last_ms: 1_700_000_001_000,
                tcp_flags: 0x1b,
            },
            reason: EndReason::Idle,
        }
    }

    const CTX: Context = Context {
        ifindex: 7,
        direction: Direction::Egress,
        sampling: 1,
    };

    /// The sets of a message: (set id, body).
    fn sets(m: &[u8]) -> Vec<(u16, &[u8])> {
        assert_eq!(be16(m, 0), VERSION);
        assert_eq!(usize::from(be16(m, 2)), m.len());
        let mut at = HEADER;
        let mut out = Vec::new();
        while at < m.len() {
            let (id, len) = (be16(m, at), usize::from(be16(m, at + 2)));
            assert!(len >= SET_HEADER && at + len <= m.len());
            out.push((id, &m[at + SET_HEADER..at + len]));
            at += len;
        }
        out
    }

    #[test]
    fn the_templates_describe_the_records() {
        let e = Encoder::new(42);
        let m = e.templates(1_700_000_000);
        assert_eq!(be32(&m, 12), 42);
        let s = sets(&m);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, TEMPLATE_SET);
        let t = s[0].1;
        assert_eq!((be16(t, 0), be16(t, 2)), (TEMPLATE_V4, 15));
        let total: usize = (0..15).map(|i| usize::from(be16(t, 4 + 4 * i + 2))).sum();
        assert_eq!(total, record_len(false));
        let t6 = &t[4 + 15 * 4..];
        assert_eq!((be16(t6, 0), be16(t6, 2)), (TEMPLATE_V6, 15));
        assert_eq!((be16(t6, 4), be16(t6, 6)), (27, 16));
    }

    #[test]
    fn records_are_encoded_field_by_field() {
        let mut e = Encoder::new(1);
        let msgs = e.messages(5, &[(CTX, record(false, 40000))]);
        assert_eq!(msgs.len(), 1);
        let s = sets(&msgs[0]);
        assert_eq!(s[0].0, TEMPLATE_V4);
        let d = s[0].1;
        assert_eq!(d.len(), record_len(false));
        assert_eq!(&d[0..4], &[10, 1, 0, 2]);
        assert_eq!(d[8], 6);
        assert_eq!((be16(d, 9), be16(d, 11)), (40000, 5201));
        assert_eq!((be64(d, 13), be64(d, 21)), (123_456, 99));
        assert_eq!(be64(d, 29), 1_700_000_000_000);
        assert_eq!(be64(d, 37), 1_700_000_001_000);
        assert_eq!(be16(d, 45), 0x1b);
        assert_eq!((be32(d, 47), be32(d, 51)), (0, 7), "egress on interface 7");
        assert_eq!((d[55], d[56]), (1, 1), "egress, idle timeout");
        assert_eq!(be32(d, 57), 1);
    }

    #[test]
    fn messages_fit_a_datagram_and_count_records() {
        let mut e = Encoder::new(1);
        let recs: Vec<(Context, Record)> = (0..100)
            .map(|i| (CTX, record(i % 3 == 0, i as u16)))
            .collect();
        let msgs = e.messages(5, &recs);
        assert!(msgs.len() > 1);
        let mut seq = 0u32;
        let mut count = 0;
        for m in &msgs {
            assert!(m.len() <= MAX_MESSAGE);
            assert_eq!(be32(m, 8), seq, "records sent before this message");
            let mut here = 0;
            for (id, body) in sets(m) {
                let len = record_len(id == TEMPLATE_V6);
                assert_eq!(body.len() % len, 0);
                here += body.len() / len;
            }
            seq += here as u32;
            count += here;
        }
        assert_eq!(count, 100);
        assert_eq!(e.sequence, 100);
        assert!(e.messages(6, &[]).is_empty());
    }
}

//! Entry points for the fuzzer (`fuzz/`, cargo-fuzz target `offload`) and for the replay of
//! its corpus under `cargo test`.
//!
//! What the receive worker does with a frame's user data after the SecY has passed it is
//! parsing of network input: a peer's packets, and with `validate = "check"` or `"disabled"`
//! anyone's. So the probe parser and the TCP and UDP coalescers get arbitrary packets here,
//! in the receive worker's order of calls; and the transmit side's segmentation gets arbitrary
//! TUN reads. Beyond not panicking, a finished train must carry exactly the payloads it took,
//! in order, and segment back into them.

use crate::offload::{
    GsoShape, TcpCoalescer, TcpShape, UdpCoalescer, UdpShape, VirtioNetHdr, GSO_NONE, VNET_HDR_LEN,
};
use crate::probe::Probe;

/// The packets of a fuzz input: each a 2-octet big-endian length, then that many octets (or
/// what is left).
fn packets(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (pkt, tail) = rest[2..].split_at(len);
        rest = tail;
        Some(pkt)
    })
}

/// Encodes packets as [`rx`] and [`tx`] take them.
pub fn encode(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

/// The receive path's offload on a sequence of packets, as `Gro::push` drives it.
pub fn rx(data: &[u8]) {
    let mut tcp = TcpCoalescer::new();
    let mut udp = UdpCoalescer::new();
    // The payloads each train took, to check what it gives.
    let mut tcp_took: Vec<&[u8]> = Vec::new();
    let mut udp_took: Vec<&[u8]> = Vec::new();
    for pkt in packets(data) {
        let _ = Probe::parse(pkt);
        if tcp.append(pkt) {
            tcp_took.push(tcp_payload(pkt));
            continue;
        }
        if udp.append(pkt) {
            udp_took.push(udp_payload(pkt));
            continue;
        }
        check_tcp(&mut tcp, &mut tcp_took);
        check_udp(&mut udp, &mut udp_took);
        if tcp.start(pkt) {
            tcp_took.push(tcp_payload(pkt));
        } else if udp.start(pkt) {
            udp_took.push(udp_payload(pkt));
        }
    }
    check_tcp(&mut tcp, &mut tcp_took);
    check_udp(&mut udp, &mut udp_took);
}

fn tcp_payload(pkt: &[u8]) -> &[u8] {
    let shape = TcpShape::of(pkt).expect("a packet the coalescer took is TCP");
    &pkt[shape.hdr_len..]
}

fn udp_payload(pkt: &[u8]) -> &[u8] {
    let shape = UdpShape::eligible(pkt).expect("a packet the coalescer took is UDP");
    &pkt[shape.hdr_len()..]
}

/// Finishes the TCP train, if any, and checks it against the payloads it took.
fn check_tcp(tcp: &mut TcpCoalescer, took: &mut Vec<&[u8]>) {
    if tcp.is_empty() {
        assert!(took.is_empty());
        return;
    }
    assert_eq!(tcp.segments(), took.len());
    let out = tcp.finish();
    check_train(out, took);
    took.clear();
}

fn check_udp(udp: &mut UdpCoalescer, took: &mut Vec<&[u8]>) {
    if udp.is_empty() {
        assert!(took.is_empty());
        return;
    }
    assert_eq!(udp.segments(), took.len());
    let out = udp.finish();
    check_train(out, took);
    took.clear();
}

/// A finished train: its payload is the payloads taken, in order; a train of more than one
/// is a GSO packet whose segments carry those payloads one each.
fn check_train(out: &[u8], took: &[&[u8]]) {
    let vh = VirtioNetHdr::parse(&out[..VNET_HDR_LEN]).expect("a virtio header");
    let pkt = &out[VNET_HDR_LEN..];
    let joined: Vec<u8> = took.concat();
    assert!(
        pkt.ends_with(&joined),
        "the train's payload is what it took"
    );
    if took.len() == 1 {
        assert_eq!(vh.gso_type, GSO_NONE);
        return;
    }
    let shape = GsoShape::of(pkt, vh.gso_type).expect("a train is a GSO packet");
    assert_eq!(shape.hdr_len(), usize::from(vh.hdr_len));
    assert_eq!(pkt.len(), shape.hdr_len() + joined.len());
    let size = usize::from(vh.gso_size);
    assert_eq!(shape.segments(size), took.len());
    let mut seg = vec![0u8; shape.hdr_len() + size];
    for (i, payload) in took.iter().enumerate() {
        let len = shape
            .segment(pkt, size, i, &mut seg)
            .expect("a segment of a train");
        assert_eq!(&seg[shape.hdr_len()..len], *payload, "segment {i}");
    }
}

/// The transmit path's segmentation on arbitrary TUN reads (a virtio header, then the
/// packet): whatever parses segments without panicking, into segments no longer than the
/// packet's headers and a segment size.
pub fn tx(data: &[u8]) {
    for read in packets(data) {
        let Some(vh) = VirtioNetHdr::parse(read) else {
            continue;
        };
        let pkt = &read[VNET_HDR_LEN.min(read.len())..];
        let Ok(shape) = GsoShape::of(pkt, vh.gso_type) else {
            continue;
        };
        let size = usize::from(vh.gso_size);
        let count = shape.segments(size).min(64);
        let mut seg = vec![0u8; shape.hdr_len() + size];
        for i in 0..count {
            if let Ok(len) = shape.segment(pkt, size, i, &mut seg) {
                assert!(len <= shape.hdr_len() + size);
            }
        }
    }
}

/// Inputs that take the coalescers down their joining paths, to start the fuzzer from (and
/// replayed with the corpus): trains of TCP and UDP over IPv4 and IPv6, a PSH and a short
/// segment ending a train, a gap in the sequence, and two flows interleaved.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for ipv4 in [true, false] {
        let train: Vec<Vec<u8>> = (0..4).map(|i| tcp(ipv4, 1000 + 100 * i, 100, 0)).collect();
        out.push(encode(&train));
        let mut pushed = train.clone();
        pushed[2] = tcp(ipv4, 1200, 100, TCP_PSH);
        out.push(encode(&pushed));
        let mut short = train.clone();
        short[1] = tcp(ipv4, 1100, 40, 0);
        out.push(encode(&short));
        let mut gap = train.clone();
        gap[2] = tcp(ipv4, 1250, 100, 0);
        out.push(encode(&gap));
        let mut mixed = train.clone();
        mixed.insert(2, udp(ipv4, 80));
        mixed.push(udp(ipv4, 80));
        mixed.push(udp(ipv4, 80));
        mixed.push(udp(ipv4, 30));
        out.push(encode(&mixed));
        let mut reads = Vec::new();
        for (gso_type, mss) in [(crate::offload::GSO_TCPV4, 100u16), (GSO_NONE, 0)] {
            let mut read = vec![0u8; VNET_HDR_LEN];
            VirtioNetHdr {
                gso_type: if ipv4 {
                    gso_type
                } else {
                    crate::offload::GSO_TCPV6
                },
                gso_size: mss.max(1),
                hdr_len: if ipv4 { 40 } else { 60 },
                ..Default::default()
            }
            .emit(&mut read);
            read.extend(tcp(ipv4, 1000, 450, 0));
            reads.push(read);
        }
        out.push(encode(&reads));
    }
    out
}

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// A TCP segment with ACK (and `flags`) of `payload` octets at sequence number `seq`.
fn tcp(ipv4: bool, seq: u32, payload: usize, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&5201u16.to_be_bytes());
    t[4..8].copy_from_slice(&seq.to_be_bytes());
    t[8..12].copy_from_slice(&7u32.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = TCP_ACK | flags;
    t[14..16].copy_from_slice(&512u16.to_be_bytes());
    t.extend((0..payload).map(|i| (seq as usize + i) as u8));
    ip(ipv4, 6, t)
}

/// A UDP datagram of `payload` octets, with its checksum.
fn udp(ipv4: bool, payload: usize) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&40001u16.to_be_bytes());
    u[2..4].copy_from_slice(&5201u16.to_be_bytes());
    u[4..6].copy_from_slice(&((8 + payload) as u16).to_be_bytes());
    u.extend((0..payload).map(|i| i as u8));
    ip(ipv4, 17, u)
}

/// `l4` behind an IPv4 or IPv6 header, with the IPv4 header's and the transport's
/// checksums right.
fn ip(ipv4: bool, proto: u8, mut l4: Vec<u8>) -> Vec<u8> {
    use crate::offload::{fold, pseudo_header, sum16};
    let mut ip = if ipv4 {
        let mut h = vec![0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        h[6] = 0x40;
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&[10, 1, 0, 2]);
        h[16..20].copy_from_slice(&[10, 2, 0, 2]);
        let s = !fold(sum16(&h, 0));
        h[10..12].copy_from_slice(&s.to_be_bytes());
        h
    } else {
        let mut h = vec![0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
        h[6] = proto;
        h[7] = 64;
        h[8] = 0xfd;
        h[23] = 2;
        h[24] = 0xfd;
        h[25] = 2;
        h[39] = 2;
        h
    };
    let at = if proto == 6 { 16 } else { 6 };
    let pseudo = pseudo_header(&ip, l4.len(), proto).expect("a pseudo-header");
    let s = !fold(sum16(&l4, pseudo));
    l4[at..at + 2].copy_from_slice(&s.to_be_bytes());
    ip.extend(l4);
    ip
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds do reach the joining paths: each TCP train of four is joined (a seed the
    /// coalescer refused would start the fuzzer from nowhere).
    #[test]
    fn seeds_join_and_check() {
        for ipv4 in [true, false] {
            let mut c = TcpCoalescer::new();
            assert!(c.start(&tcp(ipv4, 1000, 100, 0)));
            for i in 1..4 {
                assert!(c.append(&tcp(ipv4, 1000 + 100 * i, 100, 0)), "{ipv4} {i}");
            }
            let mut u = UdpCoalescer::new();
            assert!(u.start(&udp(ipv4, 80)));
            assert!(u.append(&udp(ipv4, 80)));
        }
        for s in seeds() {
            rx(&s);
            tx(&s);
        }
    }

    /// The oracle notices a coalescer that loses data: a train whose payload is not what it
    /// took fails the check.
    #[test]
    #[should_panic(expected = "the train's payload is what it took")]
    fn a_wrong_train_is_caught() {
        let mut c = TcpCoalescer::new();
        let a = tcp(true, 1000, 100, 0);
        let b = tcp(true, 1100, 100, 0);
        assert!(c.start(&a) && c.append(&b));
        let out = c.finish().to_vec();
        // Claim a different second payload than the one joined.
        let other = tcp(true, 1100, 100, 0)
            .iter()
            .map(|x| x ^ 1)
            .collect::<Vec<_>>();
        check_train(&out, &[tcp_payload(&a), &other[40..]]);
    }
}

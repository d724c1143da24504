//! UDP receive offload towards TUN (USO): consecutive datagrams of one flow, all of one size
//! but the last, are joined into one UDP GSO packet (`VIRTIO_NET_HDR_GSO_UDP_L4`) that TUN
//! takes in one write. The kernel then routes and forwards one packet where it would have
//! handled up to 64, and splits it again (`__udp_gso_segment`) where it must: at the
//! receiving socket, or at a device without UDP segmentation offload.
//!
//! The rules follow the kernel's `udp_gro_receive` for forwarding: same addresses, ports,
//! TOS/traffic class, TTL/hop limit, DF; no IPv4 options or fragments, no IPv6 extension
//! headers; a valid checksum (a datagram whose checksum is wrong is written on its own, for
//! the receiver to drop, never silently repaired by the joined packet's new checksum).
//! What is lost, as with the kernel's own GRO, is the IPv4 identification of every datagram
//! but the first: the kernel numbers the segments on from it.

use super::{
    add_sums, copy_sum16, fix_ip_header, fold, pseudo_header, sum16, OffloadError, Train,
    VirtioNetHdr, F_NEEDS_CSUM,
};

/// `VIRTIO_NET_HDR_GSO_UDP_L4` (linux/virtio_net.h, Linux 6.2+ for TUN).
pub const GSO_UDP_L4: u8 = 5;
/// The UDP header.
const UDP_HDR: usize = 8;
/// Datagrams per joined packet: the kernel's limit for a UDP GSO send is 64 on older kernels.
const MAX_SEGMENTS: usize = 64;

/// Where a UDP datagram's parts lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpShape {
    pub ipv4: bool,
    /// IP header length: 20 for IPv4 (options are not taken), 40 for IPv6.
    pub ip_len: usize,
    pub payload_len: usize,
}

impl UdpShape {
    /// The shape of `pkt` if it may take part in UDP coalescing: a whole, unfragmented UDP
    /// datagram with payload, a valid checksum and lengths that agree with the packet's.
    pub fn eligible(pkt: &[u8]) -> Option<UdpShape> {
        let (ipv4, ip_len) = match pkt.first()? >> 4 {
            4 => {
                let total = usize::from(u16::from_be_bytes([*pkt.get(2)?, *pkt.get(3)?]));
                let frag = u16::from_be_bytes([*pkt.get(6)?, *pkt.get(7)?]);
                // IHL 5, protocol UDP, no MF and no offset, total length the packet's.
                if pkt[0] != 0x45 || *pkt.get(9)? != 17 || frag & 0x3fff != 0 || total != pkt.len()
                {
                    return None;
                }
                (true, 20)
            }
            6 => {
                let payload = usize::from(u16::from_be_bytes([*pkt.get(4)?, *pkt.get(5)?]));
                if *pkt.get(6)? != 17 || payload + 40 != pkt.len() {
                    return None;
                }
                (false, 40)
            }
            _ => return None,
        };
        let udp = pkt.get(ip_len..)?;
        if udp.len() <= UDP_HDR || usize::from(u16::from_be_bytes([udp[4], udp[5]])) != udp.len() {
            return None;
        }
        let check = u16::from_be_bytes([udp[6], udp[7]]);
        // IPv4 may leave the checksum out (0); IPv6 may not (RFC 8200 §8.1).
        let valid = if check == 0 {
            ipv4
        } else {
            fold(sum16(udp, pseudo_header(&pkt[..ip_len], udp.len(), 17)?)) == 0xffff
        };
        valid.then_some(UdpShape {
            ipv4,
            ip_len,
            payload_len: udp.len() - UDP_HDR,
        })
    }

    /// The shape of a UDP GSO packet from TUN, whose lengths and checksum cover the whole
    /// and are not checked: an IPv4 header without options or an IPv6 header, then UDP.
    pub fn of_gso(pkt: &[u8]) -> Result<UdpShape, OffloadError> {
        let (ipv4, ip_len) = match pkt.first().map(|b| b >> 4) {
            Some(4) if pkt[0] == 0x45 && pkt.get(9) == Some(&17) => (true, 20),
            Some(6) if pkt.get(6) == Some(&17) => (false, 40),
            _ => return Err(OffloadError::Malformed),
        };
        if pkt.len() < ip_len + UDP_HDR {
            return Err(OffloadError::Malformed);
        }
        Ok(UdpShape {
            ipv4,
            ip_len,
            payload_len: pkt.len() - ip_len - UDP_HDR,
        })
    }

    pub fn hdr_len(&self) -> usize {
        self.ip_len + UDP_HDR
    }

    /// How many datagrams of at most `size` octets of payload the packet makes.
    pub fn segments(&self, size: usize) -> usize {
        if size == 0 {
            return 1;
        }
        self.payload_len.div_ceil(size).max(1)
    }
}

/// Writes datagram `index` of the UDP GSO packet `pkt` (datagrams of `size` octets of
/// payload, the last may be shorter) into `out` and returns its length: the headers of `pkt`
/// with lengths, IPv4 identification (numbered on, as the kernel does) and checksums made for
/// the datagram, then its share of the payload. An IPv4 datagram whose checksum was left
/// out (0) keeps it out.
pub fn udp_segment(
    pkt: &[u8],
    shape: &UdpShape,
    size: usize,
    index: usize,
    out: &mut [u8],
) -> Result<usize, OffloadError> {
    let hdr = shape.hdr_len();
    if size == 0 || index >= shape.segments(size) || pkt.len() < hdr {
        return Err(OffloadError::Malformed);
    }
    let start = hdr + index * size;
    let end = (start + size).min(pkt.len());
    let len = hdr + (end - start);
    if out.len() < len {
        return Err(OffloadError::NoRoom);
    }
    out[..hdr].copy_from_slice(&pkt[..hdr]);
    // The payload starts 8 octets into the datagram: its sum adds to the header's as it is.
    let payload_sum = copy_sum16(&mut out[hdr..len], &pkt[start..end], 0);
    let (ip, udp) = out[..len].split_at_mut(shape.ip_len);
    fix_ip_header(ip, shape.ipv4, len, index as u16);
    let udp_len = udp.len() as u16;
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let no_checksum = shape.ipv4 && udp[6..8] == [0, 0];
    if !no_checksum {
        udp[6..8].fill(0);
        let pseudo = pseudo_header(ip, udp.len(), 17).ok_or(OffloadError::Malformed)?;
        // A computed 0 goes out as all ones (RFC 768).
        let sum = match !fold(sum16(&udp[..UDP_HDR], add_sums(pseudo, payload_sum))) {
            0 => 0xffff,
            s => s,
        };
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
    }
    Ok(len)
}

/// Joins consecutive datagrams of one UDP flow into one GSO packet for TUN.
pub struct UdpCoalescer {
    /// The joined packet so far. `closed`: a shorter datagram ended it.
    t: Train,
    shape: Option<UdpShape>,
    /// Payload size of the first datagram: the GSO size.
    size: usize,
}

impl Default for UdpCoalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl UdpCoalescer {
    pub fn new() -> UdpCoalescer {
        UdpCoalescer {
            t: Train::new(),
            shape: None,
            size: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shape.is_none()
    }

    /// How many datagrams the joined packet holds.
    pub fn segments(&self) -> usize {
        self.t.segments
    }

    /// Starts a train with `pkt`; false (and nothing kept) if `pkt` cannot take part.
    pub fn start(&mut self, pkt: &[u8]) -> bool {
        debug_assert!(self.is_empty());
        let Some(shape) = UdpShape::eligible(pkt) else {
            return false;
        };
        self.t.begin(pkt);
        self.size = shape.payload_len;
        self.shape = Some(shape);
        true
    }

    /// Appends `pkt` if it continues the train; false if it does not (the caller then
    /// finishes the train and starts another).
    pub fn append(&mut self, pkt: &[u8]) -> bool {
        let Some(first) = self.shape else {
            return false;
        };
        if self.t.closed || self.t.segments >= MAX_SEGMENTS {
            return false;
        }
        // Cheap refusals before the checksum: empty, larger than the first, or too much.
        let payload = pkt.len().saturating_sub(first.hdr_len());
        if payload == 0 || payload > self.size || !self.t.room_for(payload) {
            return false;
        }
        let head = self.t.head(first.hdr_len());
        if !self.t.same_ip(pkt, first.ipv4)
            || pkt[first.ip_len..first.ip_len + 4] != head[first.ip_len..first.ip_len + 4]
        {
            return false;
        }
        let Some(shape) = UdpShape::eligible(pkt) else {
            return false;
        };
        if shape.ipv4 != first.ipv4 {
            return false;
        }
        self.t.push(&pkt[shape.hdr_len()..]);
        self.t.closed = shape.payload_len < self.size;
        true
    }

    /// Ends the train: the virtio header and the packet, ready for one write to TUN. A train
    /// of one is the datagram as it came, with an empty virtio header; a longer one is a UDP
    /// GSO packet whose UDP length and partial checksum cover the whole, as a UDP GSO send
    /// leaves them (the kernel fixes both up per segment).
    pub fn finish(&mut self) -> &[u8] {
        let Some(shape) = self.shape.take() else {
            return &[];
        };
        if self.t.segments == 1 {
            return self.t.written(VirtioNetHdr::default());
        }
        let vh = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: shape.hdr_len() as u16,
            gso_size: self.size as u16,
            csum_start: shape.ip_len as u16,
            csum_offset: 6,
        };
        // The UDP length covers the whole, as a UDP GSO send leaves it.
        let set_len = |udp: &mut [u8]| {
            let udp_len = udp.len() as u16;
            udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
        };
        self.t.gso(shape.ip_len, shape.ipv4, 17, 6, set_len, vh)
    }
}

#[cfg(test)]
mod tests {
    use super::super::complete_checksum;
    use super::*;
    use crate::offload::VNET_HDR_LEN;

    /// A UDP packet whose lengths and checksum are right for `payload_len` octets.
    fn udp_packet(ipv4: bool, payload_len: usize) -> Vec<u8> {
        let mut udp = vec![0u8; UDP_HDR];
        udp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((UDP_HDR + payload_len) as u16).to_be_bytes());
        udp.extend((0..payload_len).map(|i| (i * 7 + 3) as u8));
        let mut ip = if ipv4 {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 17;
            ip[12..16].copy_from_slice(&[10, 1, 0, 2]);
            ip[16..20].copy_from_slice(&[10, 2, 0, 2]);
            let sum = !fold(sum16(&ip, 0));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            ip
        } else {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&(udp.len() as u16).to_be_bytes());
            ip[6] = 17;
            ip[7] = 64;
            ip[8] = 0xfd;
            ip[23] = 2;
            ip[24] = 0xfd;
            ip[25] = 2;
            ip[39] = 2;
            ip
        };
        let pseudo = pseudo_header(&ip, udp.len(), 17).unwrap();
        let sum = !fold(sum16(&udp, pseudo));
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        ip.extend_from_slice(&udp);
        ip
    }

    fn segments_of(pkt: &[u8], size: usize) -> Vec<Vec<u8>> {
        let shape = UdpShape::of_gso(pkt).unwrap();
        (0..shape.segments(size))
            .map(|i| {
                let mut out = vec![0u8; 2000];
                let n = udp_segment(pkt, &shape, size, i, &mut out).unwrap();
                out.truncate(n);
                out
            })
            .collect()
    }

    #[test]
    fn segments_are_valid_datagrams_carrying_the_payload() {
        for ipv4 in [true, false] {
            for (payload_len, size) in [(1200 * 5 + 7, 1200), (18 * 64, 18), (10, 100)] {
                let gso = udp_packet(ipv4, payload_len);
                let segs = segments_of(&gso, size);
                assert_eq!(segs.len(), payload_len.div_ceil(size));
                let mut joined = Vec::new();
                for (i, seg) in segs.iter().enumerate() {
                    let shape = UdpShape::eligible(seg).expect("a valid datagram");
                    assert!(shape.payload_len <= size);
                    if ipv4 {
                        assert_eq!(
                            u16::from_be_bytes([seg[4], seg[5]]),
                            0xfffeu16.wrapping_add(i as u16)
                        );
                    }
                    joined.extend_from_slice(&seg[shape.hdr_len()..]);
                }
                assert_eq!(joined, gso[if ipv4 { 28 } else { 48 }..]);
            }
        }
    }

    #[test]
    fn coalesced_datagrams_rebuild_the_gso_packet() {
        for ipv4 in [true, false] {
            for (payload_len, size) in [(1200 * 5 + 7, 1200), (18 * 64, 18), (50, 100)] {
                let orig = udp_packet(ipv4, payload_len);
                let segs = segments_of(&orig, size);
                let mut gro = UdpCoalescer::new();
                assert!(gro.start(&segs[0]));
                for s in &segs[1..] {
                    assert!(gro.append(s));
                }
                assert_eq!(gro.segments(), segs.len());
                let joined = gro.finish().to_vec();
                assert!(gro.is_empty());
                let vh = VirtioNetHdr::parse(&joined).unwrap();
                let mut pkt = joined[VNET_HDR_LEN..].to_vec();
                if segs.len() == 1 {
                    assert_eq!(vh, VirtioNetHdr::default());
                    assert_eq!(pkt, segs[0]);
                    continue;
                }
                let hdr = if ipv4 { 28 } else { 48 };
                assert_eq!(
                    vh,
                    VirtioNetHdr {
                        flags: F_NEEDS_CSUM,
                        gso_type: GSO_UDP_L4,
                        hdr_len: hdr as u16,
                        gso_size: size as u16,
                        csum_start: hdr as u16 - 8,
                        csum_offset: 6,
                    }
                );
                // What the kernel does with the partial checksum gives the original back.
                complete_checksum(&mut pkt, hdr - 8, 6).unwrap();
                assert_eq!(pkt, orig);
                // And the kernel's segmentation of it the same datagrams.
                assert_eq!(segments_of(&pkt, size), segs);
            }
        }
    }

    #[test]
    fn coalescing_stops_where_the_kernel_would() {
        let segs = segments_of(&udp_packet(true, 100 * 4 + 30), 100);
        let mut gro = UdpCoalescer::new();
        assert!(gro.start(&segs[0]));
        // Another flow: source port, then destination address (checksums made right).
        let mut other = segs[1].clone();
        other[21] ^= 1;
        let fix = |p: &mut Vec<u8>| {
            p[26..28].fill(0);
            let pseudo = pseudo_header(&p[..20], p.len() - 20, 17).unwrap();
            let sum = !fold(sum16(&p[20..], pseudo));
            p[26..28].copy_from_slice(&sum.to_be_bytes());
        };
        fix(&mut other);
        assert!(UdpShape::eligible(&other).is_some());
        assert!(!gro.append(&other));
        let mut moved = segs[1].clone();
        moved[19] ^= 1;
        fix(&mut moved);
        assert!(!gro.append(&moved));
        // Another TOS.
        let mut tos = segs[1].clone();
        tos[1] = 0x10;
        assert!(!gro.append(&tos));
        // A bad checksum takes no part at all.
        let mut bad = segs[1].clone();
        bad[30] ^= 0xff;
        assert!(UdpShape::eligible(&bad).is_none());
        assert!(!gro.append(&bad));
        assert!(gro.append(&segs[1]));
        assert!(gro.append(&segs[2]));
        // The shorter last one ends the train.
        let mut short = segs[4].clone();
        assert!(gro.append(&segs[4]));
        assert!(!gro.append(&segs[3]));
        assert_eq!(gro.segments(), 4);
        gro.finish();
        // A longer datagram than the first does not join.
        assert!(gro.start(&segs[4]));
        assert!(!gro.append(&segs[0]));
        gro.finish();
        // Fragments, options and a length that disagrees with the packet are refused.
        let mut frag = segs[0].clone();
        frag[6] |= 0x20;
        assert!(UdpShape::eligible(&frag).is_none());
        let mut opts = segs[0].clone();
        opts[0] = 0x46;
        assert!(UdpShape::eligible(&opts).is_none());
        short.push(0);
        assert!(UdpShape::eligible(&short).is_none());
        // IPv4 may omit the checksum; IPv6 may not.
        let mut none = segs[0].clone();
        none[26..28].fill(0);
        assert!(UdpShape::eligible(&none).is_some());
        let mut v6 = segments_of(&udp_packet(false, 300), 100)[0].clone();
        assert!(UdpShape::eligible(&v6).is_some());
        v6[46..48].fill(0);
        assert!(UdpShape::eligible(&v6).is_none());
        // IPv4 and IPv6 do not mix.
        let v6 = segments_of(&udp_packet(false, 300), 100)[0].clone();
        assert!(gro.start(&segs[0]));
        assert!(!gro.append(&v6));
    }

    #[test]
    fn an_ipv4_datagram_without_checksum_keeps_none() {
        let mut gso = udp_packet(true, 250);
        gso[26..28].fill(0);
        for seg in segments_of(&gso, 100) {
            assert_eq!(seg[26..28], [0, 0]);
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for pkt in [&[][..], &[0x45; 10], &[0x60; 30], &[0x45, 0, 0, 0]] {
            assert!(UdpShape::eligible(pkt).is_none());
            assert!(UdpShape::of_gso(pkt).is_err());
            assert!(!UdpCoalescer::new().start(pkt));
        }
        let gso = udp_packet(false, 3000);
        let shape = UdpShape::of_gso(&gso).unwrap();
        assert_eq!(
            udp_segment(&gso, &shape, 1400, 0, &mut [0u8; 100]),
            Err(OffloadError::NoRoom)
        );
        assert_eq!(
            udp_segment(&gso, &shape, 1400, 3, &mut [0u8; 2000]),
            Err(OffloadError::Malformed)
        );
        assert_eq!(
            udp_segment(&gso, &shape, 0, 0, &mut [0u8; 2000]),
            Err(OffloadError::Malformed)
        );
    }
}

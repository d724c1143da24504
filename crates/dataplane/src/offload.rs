//! TUN segmentation offload, done in userspace: the `virtio_net_hdr` that a TUN interface
//! opened with `IFF_VNET_HDR` puts before each packet, checksum completion, and the splitting
//! of a TCP super-packet (TSO) into segments of at most `gso_size` octets of payload.
//!
//! With TSO enabled on the TUN interface the kernel hands over up to 64 KiB of one TCP flow in
//! one read, so the transmit worker makes one system call where it made forty. Each segment
//! then gets its own IP and TCP header and checksum, exactly as the NIC would have made them.
//! All functions work on caller buffers and allocate nothing.

use core::fmt;

mod udp;
pub use udp::{udp_segment, UdpCoalescer, UdpShape, GSO_UDP_L4};

/// `sizeof(struct virtio_net_hdr)`: what TUN puts before each packet with `IFF_VNET_HDR`.
pub const VNET_HDR_LEN: usize = 10;

/// `virtio_net_hdr.flags`: the L4 checksum is partial, to be completed over
/// `csum_start..` and stored at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `virtio_net_hdr.flags`: the checksums are known to be good.
pub const F_DATA_VALID: u8 = 2;

pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_TCPV6: u8 = 4;
/// Set together with a TCP GSO type when the flow uses ECN (CWR on the first segment only).
pub const GSO_ECN: u8 = 0x80;

/// The header TUN exchanges with each packet (linux/virtio_net.h). Little-endian fields, as
/// TUN uses them on little-endian hosts and with `TUNSETVNETLE`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioNetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioNetHdr {
    pub fn parse(b: &[u8]) -> Option<VirtioNetHdr> {
        let b: &[u8; VNET_HDR_LEN] = b.get(..VNET_HDR_LEN)?.try_into().ok()?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VirtioNetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    pub fn emit(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

/// Why a packet from TUN could not be made into wire packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffloadError {
    /// Not IPv4 or IPv6, or headers cut short.
    Malformed,
    /// A GSO type other than TCP and UDP L4.
    UnsupportedGso(u8),
    /// The checksum position lies outside the packet.
    BadChecksumOffset,
    /// The output buffer cannot hold the segment.
    NoRoom,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Malformed => f.write_str("malformed packet from TUN"),
            OffloadError::UnsupportedGso(t) => write!(f, "unsupported GSO type {t:#x}"),
            OffloadError::BadChecksumOffset => f.write_str("checksum offset outside the packet"),
            OffloadError::NoRoom => f.write_str("segment does not fit the buffer"),
        }
    }
}

/// Adds `data` to a one's-complement sum as big-endian 16-bit words (RFC 1071); an odd last
/// octet is padded with zero.
pub fn sum16(data: &[u8], sum: u64) -> u64 {
    // Headers: eight octets at a time, without the vector set-up.
    if data.len() < 64 {
        return finish_sum(&[0; 8], data, sum);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just now.
        return unsafe { sum16_avx2(data, sum) };
    }
    sum16_body(data, sum)
}

/// Copies `src` into `dst` (of the same length) and adds `src` to a one's-complement sum as
/// [`sum16`] does: one pass over the octets where a copy and a sum would take two. A TSO
/// segment's payload is copied and summed so.
pub fn copy_sum16(dst: &mut [u8], src: &[u8], sum: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just now.
        return unsafe { copy_sum16_avx2(dst, src, sum) };
    }
    copy_sum16_body(dst, src, sum)
}

// The same code compiled for AVX2: there the compiler widens and adds eight 32-bit words an
// instruction, 2.2 times the rate of copy-then-sum with SSE2 on 1448-octet segments here.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum16_avx2(data: &[u8], sum: u64) -> u64 {
    sum16_body(data, sum)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn copy_sum16_avx2(dst: &mut [u8], src: &[u8], sum: u64) -> u64 {
    copy_sum16_body(dst, src, sum)
}

/// 32-bit words into 64-bit accumulators need no carry handling: 2^32 words would be needed
/// to overflow one. Eight independent accumulators over 32-octet blocks let the compiler keep
/// them in vector lanes. Words are summed in native order and swapped once at the end: the
/// one's-complement sum commutes with byte swapping (RFC 1071 §2(B)).
#[inline(always)]
fn add_block(acc: &mut [u64; 8], block: &[u8]) {
    for (a, w) in acc.iter_mut().zip(block.chunks_exact(4)) {
        *a += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
}

/// Adds the accumulators (native order) and the tail of fewer than 32 octets to `sum`, which
/// may be any 64-bit one's-complement sum (carries go back in).
#[inline(always)]
fn finish_sum(acc: &[u64; 8], rest: &[u8], sum: u64) -> u64 {
    let native = fold(acc.iter().fold(0u64, |s, &a| add_sums(s, a)));
    let mut sum = add_sums(sum, u64::from(u16::from_be(native)));
    let mut chunks = rest.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        sum = add_sums(sum, v);
    }
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(2);
    for w in &mut words {
        sum = add_sums(sum, u64::from(u16::from_be_bytes([w[0], w[1]])));
    }
    if let [last] = words.remainder() {
        sum = add_sums(sum, u64::from(*last) << 8);
    }
    sum
}

#[inline(always)]
fn sum16_body(data: &[u8], sum: u64) -> u64 {
    let mut acc = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        add_block(&mut acc, b);
    }
    finish_sum(&acc, blocks.remainder(), sum)
}

#[inline(always)]
fn copy_sum16_body(dst: &mut [u8], src: &[u8], sum: u64) -> u64 {
    assert_eq!(
        dst.len(),
        src.len(),
        "copy_sum16 takes slices of one length"
    );
    let mut acc = [0u64; 8];
    let mut out = dst.chunks_exact_mut(32);
    let mut blocks = src.chunks_exact(32);
    for (o, b) in (&mut out).zip(&mut blocks) {
        o.copy_from_slice(b);
        add_block(&mut acc, b);
    }
    out.into_remainder().copy_from_slice(blocks.remainder());
    finish_sum(&acc, blocks.remainder(), sum)
}

/// Adds two one's-complement sums of [`sum16`] (64-bit, with the carry added back in).
pub fn add_sums(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// Folds a sum to 16 bits, not yet complemented.
pub fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Rewrites the IP header of a packet of `len` octets: for IPv4 the total length, the
/// identification advanced by `id_step` (segments of one super-packet are numbered on, as the
/// kernel's GSO does) and the header checksum; for IPv6 the payload length.
pub(crate) fn fix_ip_header(ip: &mut [u8], ipv4: bool, len: usize, id_step: u16) {
    if ipv4 {
        ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        let id = u16::from_be_bytes([ip[4], ip[5]]).wrapping_add(id_step);
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[10..12].fill(0);
        let sum = !fold(sum16(ip, 0));
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
    } else {
        ip[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
    }
}

/// The pseudo-header sum of a TCP or UDP packet (RFC 793, RFC 8200 §8.1) for an L4 length.
pub(crate) fn pseudo_header(ip: &[u8], l4_len: usize, proto: u8) -> Option<u64> {
    match ip.first()? >> 4 {
        4 => Some(sum16(ip.get(12..20)?, u64::from(proto) + l4_len as u64)),
        6 => Some(sum16(ip.get(8..40)?, u64::from(proto) + l4_len as u64)),
        _ => None,
    }
}

/// Completes a partial checksum: sums `pkt[start..]` (which starts with the pseudo-header sum
/// the kernel stored in the checksum field) and stores the result at `start + offset`.
pub fn complete_checksum(pkt: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > pkt.len() {
        return Err(OffloadError::BadChecksumOffset);
    }
    let sum = !fold(sum16(&pkt[start..], 0));
    pkt[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    Ok(())
}

/// The shape of a TCP packet: where its headers end and how much payload it carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpShape {
    pub ipv4: bool,
    /// IP header length (IPv4 with options; IPv6 without extension headers).
    pub ip_len: usize,
    /// IP and TCP headers together.
    pub hdr_len: usize,
    pub payload_len: usize,
}

impl TcpShape {
    /// The shape of `pkt` if it is TCP over IPv4 or IPv6 (without extension headers).
    pub fn of(pkt: &[u8]) -> Result<TcpShape, OffloadError> {
        let (ipv4, ip_len, proto) = match pkt.first().map(|b| b >> 4) {
            Some(4) => {
                let ihl = usize::from(pkt[0] & 0x0f) * 4;
                (true, ihl, *pkt.get(9).ok_or(OffloadError::Malformed)?)
            }
            Some(6) => (false, 40, *pkt.get(6).ok_or(OffloadError::Malformed)?),
            _ => return Err(OffloadError::Malformed),
        };
        if proto != 6 || ip_len < 20 {
            return Err(OffloadError::Malformed);
        }
        let data_off = usize::from(*pkt.get(ip_len + 12).ok_or(OffloadError::Malformed)? >> 4) * 4;
        let hdr_len = ip_len + data_off;
        if data_off < 20 || hdr_len > pkt.len() {
            return Err(OffloadError::Malformed);
        }
        Ok(TcpShape {
            ipv4,
            ip_len,
            hdr_len,
            payload_len: pkt.len() - hdr_len,
        })
    }

    /// How many segments of at most `mss` octets of payload the packet makes.
    pub fn segments(&self, mss: usize) -> usize {
        if mss == 0 {
            return 1;
        }
        self.payload_len.div_ceil(mss).max(1)
    }
}

/// A super-packet from TUN, TCP (TSO) or UDP (USO), and how to cut it into packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GsoShape {
    Tcp(TcpShape),
    Udp(UdpShape),
}

impl GsoShape {
    /// The shape of `pkt`, which came with GSO type `gso_type`.
    pub fn of(pkt: &[u8], gso_type: u8) -> Result<GsoShape, OffloadError> {
        match gso_type & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 => TcpShape::of(pkt).map(GsoShape::Tcp),
            GSO_UDP_L4 => UdpShape::of_gso(pkt).map(GsoShape::Udp),
            t => Err(OffloadError::UnsupportedGso(t)),
        }
    }

    /// IP and L4 headers together: what every packet cut from it starts with.
    pub fn hdr_len(&self) -> usize {
        match self {
            GsoShape::Tcp(s) => s.hdr_len,
            GsoShape::Udp(s) => s.hdr_len(),
        }
    }

    /// How many packets of at most `size` octets of payload it makes.
    pub fn segments(&self, size: usize) -> usize {
        match self {
            GsoShape::Tcp(s) => s.segments(size),
            GsoShape::Udp(s) => s.segments(size),
        }
    }

    /// Writes packet `index` into `out`; its length.
    pub fn segment(
        &self,
        pkt: &[u8],
        size: usize,
        index: usize,
        out: &mut [u8],
    ) -> Result<usize, OffloadError> {
        match self {
            GsoShape::Tcp(s) => tcp_segment(pkt, s, size, index, out),
            GsoShape::Udp(s) => udp_segment(pkt, s, size, index, out),
        }
    }
}

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Writes segment `index` of the TCP super-packet `pkt` into `out` and returns its length:
/// the headers of `pkt` with lengths, IPv4 identification, sequence number, flags and
/// checksums fixed up for the segment, then its share of the payload. FIN and PSH stay on the
/// last segment only, CWR on the first only (as the kernel's own segmentation does).
pub fn tcp_segment(
    pkt: &[u8],
    shape: &TcpShape,
    mss: usize,
    index: usize,
    out: &mut [u8],
) -> Result<usize, OffloadError> {
    let count = shape.segments(mss);
    if index >= count {
        return Err(OffloadError::Malformed);
    }
    let start = shape.hdr_len + index * mss;
    let end = (start + mss).min(pkt.len());
    let payload = &pkt[start..end];
    let len = shape.hdr_len + payload.len();
    if out.len() < len {
        return Err(OffloadError::NoRoom);
    }
    out[..shape.hdr_len].copy_from_slice(&pkt[..shape.hdr_len]);
    // The payload starts at an even offset of the TCP segment (its header is whole 32-bit
    // words), so its sum adds to the header's as it is.
    let payload_sum = copy_sum16(&mut out[shape.hdr_len..len], payload, 0);
    let (ip, rest) = out[..len].split_at_mut(shape.ip_len);

    fix_ip_header(ip, shape.ipv4, len, index as u16);

    let tcp = rest;
    let seq =
        u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]).wrapping_add((index * mss) as u32);
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    if index + 1 < count {
        tcp[13] &= !(TCP_FIN | TCP_PSH);
    }
    if index > 0 {
        tcp[13] &= !TCP_CWR;
    }
    tcp[16..18].fill(0);
    let pseudo = pseudo_header(ip, tcp.len(), 6).ok_or(OffloadError::Malformed)?;
    let tcp_hdr = shape.hdr_len - shape.ip_len;
    let sum = !fold(sum16(&tcp[..tcp_hdr], add_sums(pseudo, payload_sum)));
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    Ok(len)
}

/// The largest super-packet handed to TUN: the IPv4 total length limit.
const MAX_SUPER: usize = 65_535;
const TCP_ACK: u8 = 0x10;

/// What a coalescer is joining: the virtio header, then the packet so far (the first
/// packet's headers and every payload), how many packets it holds, and whether one that
/// must end it has come. Shared by the TCP and the UDP coalescers.
pub(crate) struct Train {
    buf: Box<[u8]>,
    /// Length of the packet (after the virtio header).
    len: usize,
    segments: usize,
    closed: bool,
}

impl Train {
    pub(crate) fn new() -> Train {
        Train {
            buf: vec![0; VNET_HDR_LEN + MAX_SUPER].into_boxed_slice(),
            len: 0,
            segments: 0,
            closed: false,
        }
    }

    /// Starts over with `pkt` as the first packet.
    pub(crate) fn begin(&mut self, pkt: &[u8]) {
        self.buf[VNET_HDR_LEN..VNET_HDR_LEN + pkt.len()].copy_from_slice(pkt);
        self.len = pkt.len();
        self.segments = 1;
        self.closed = false;
    }

    /// Appends one more packet's payload.
    pub(crate) fn push(&mut self, payload: &[u8]) {
        let at = VNET_HDR_LEN + self.len;
        self.buf[at..at + payload.len()].copy_from_slice(payload);
        self.len += payload.len();
        self.segments += 1;
    }

    /// Whether `more` octets still fit.
    pub(crate) fn room_for(&self, more: usize) -> bool {
        self.len + more <= MAX_SUPER
    }

    /// The first packet's first `n` octets.
    pub(crate) fn head(&self, n: usize) -> &[u8] {
        &self.buf[VNET_HDR_LEN..VNET_HDR_LEN + n]
    }

    /// Whether `pkt`'s IP header is the first packet's but for its length, identification
    /// and checksum (IPv4) or payload length (IPv6): the same flow, as the kernel's GRO has it.
    pub(crate) fn same_ip(&self, pkt: &[u8], ipv4: bool) -> bool {
        if ipv4 {
            let head = self.head(20);
            // Version/IHL/TOS, DF, TTL/protocol, addresses.
            pkt[0..2] == head[0..2]
                && pkt[6..7] == head[6..7]
                && pkt[8..10] == head[8..10]
                && pkt[12..20] == head[12..20]
        } else {
            let head = self.head(40);
            // Version, traffic class, flow label; next header, hop limit, addresses.
            pkt[0..4] == head[0..4] && pkt[6..40] == head[6..40]
        }
    }

    /// The virtio header and the packet, split for the finishing touches.
    pub(crate) fn parts(&mut self) -> (&mut [u8], &mut [u8]) {
        let (vh, pkt) = self.buf.split_at_mut(VNET_HDR_LEN);
        (vh, &mut pkt[..self.len])
    }

    /// Ends a train of more than one packet as one GSO packet: the IP header fixed for the
    /// whole, `l4` adjusted by the caller (UDP's length), the L4 checksum at `csum_at` set to
    /// the folded pseudo-header sum (CHECKSUM_PARTIAL, for the kernel or the next NIC to
    /// complete), and `vh` written.
    pub(crate) fn gso(
        &mut self,
        ip_len: usize,
        ipv4: bool,
        proto: u8,
        csum_at: usize,
        l4: impl FnOnce(&mut [u8]),
        vh: VirtioNetHdr,
    ) -> &[u8] {
        let (_, pkt) = self.parts();
        let len = pkt.len();
        let (ip, l4b) = pkt.split_at_mut(ip_len);
        fix_ip_header(ip, ipv4, len, 0);
        l4(l4b);
        let pseudo = fold(pseudo_header(ip, l4b.len(), proto).unwrap_or(0));
        l4b[csum_at..csum_at + 2].copy_from_slice(&pseudo.to_be_bytes());
        self.written(vh)
    }

    /// The train ready for one write to TUN, its virtio header emitted.
    pub(crate) fn written(&mut self, vh: VirtioNetHdr) -> &[u8] {
        vh.emit(&mut self.buf[..VNET_HDR_LEN]);
        &self.buf[..VNET_HDR_LEN + self.len]
    }
}

/// Receive offload done in userspace: consecutive segments of one TCP flow are joined into a
/// super-packet that TUN takes in one write with a GSO `virtio_net_hdr`, so the kernel routes
/// and delivers one packet where it would have handled forty. The rules follow the kernel's
/// own `tcp_gro_receive`: same addresses, ports, ACK, options and window; sequence numbers
/// that follow on; every segment but the last exactly `gso_size` long; only ACK and PSH set,
/// and a PSH ends the train.
pub struct TcpCoalescer {
    /// The super-packet so far. `closed`: a short or PSH segment ended it.
    t: Train,
    shape: Option<TcpShape>,
    mss: usize,
    next_seq: u32,
}

impl Default for TcpCoalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpCoalescer {
    pub fn new() -> TcpCoalescer {
        TcpCoalescer {
            t: Train::new(),
            shape: None,
            mss: 0,
            next_seq: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.shape.is_none()
    }

    /// How many segments the current super-packet holds.
    pub fn segments(&self) -> usize {
        self.t.segments
    }

    /// The shape of `pkt` if it may start or join a train: TCP with payload, IPv4 without
    /// options or fragmentation, only ACK and PSH set.
    fn eligible(pkt: &[u8]) -> Option<TcpShape> {
        let shape = TcpShape::of(pkt).ok()?;
        if shape.payload_len == 0 {
            return None;
        }
        if shape.ipv4 {
            let frag = u16::from_be_bytes([pkt[6], pkt[7]]);
            if shape.ip_len != 20 || frag & 0x3fff != 0 {
                return None;
            }
        }
        let flags = pkt[shape.ip_len + 13];
        if flags & !(TCP_ACK | TCP_PSH) != 0 || flags & TCP_ACK == 0 {
            return None;
        }
        Some(shape)
    }

    /// Starts a train with `pkt`; false (and nothing kept) if `pkt` cannot take part.
    pub fn start(&mut self, pkt: &[u8]) -> bool {
        debug_assert!(self.is_empty());
        let Some(shape) = Self::eligible(pkt) else {
            return false;
        };
        if pkt.len() > MAX_SUPER {
            return false;
        }
        self.t.begin(pkt);
        self.mss = shape.payload_len;
        let tcp = &pkt[shape.ip_len..];
        self.next_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]])
            .wrapping_add(shape.payload_len as u32);
        self.t.closed = tcp[13] & TCP_PSH != 0;
        self.shape = Some(shape);
        true
    }

    /// Appends `pkt` if it continues the train; false if it does not (the caller then
    /// finishes the train and starts another).
    pub fn append(&mut self, pkt: &[u8]) -> bool {
        let Some(first) = self.shape else {
            return false;
        };
        if self.t.closed {
            return false;
        }
        let Some(shape) = Self::eligible(pkt) else {
            return false;
        };
        if shape.ipv4 != first.ipv4
            || shape.hdr_len != first.hdr_len
            || shape.payload_len > self.mss
            || !self.t.room_for(shape.payload_len)
        {
            return false;
        }
        let same_ip = self.t.same_ip(pkt, first.ipv4);
        let head = self.t.head(first.hdr_len);
        let (t, h) = (&pkt[shape.ip_len..shape.hdr_len], &head[first.ip_len..]);
        let seq = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
        // Ports; ACK number; data offset, window; options. Flags may differ only in PSH.
        let same_tcp = t[0..4] == h[0..4]
            && t[8..13] == h[8..13]
            && t[14..16] == h[14..16]
            && t[20..] == h[20..]
            && (t[13] ^ h[13]) & !TCP_PSH == 0;
        if !same_ip || !same_tcp || seq != self.next_seq {
            return false;
        }
        let psh = t[13] & TCP_PSH != 0;
        self.t.push(&pkt[shape.hdr_len..]);
        self.next_seq = seq.wrapping_add(shape.payload_len as u32);
        if psh {
            self.t.parts().1[first.ip_len + 13] |= TCP_PSH;
            self.t.closed = true;
        }
        if shape.payload_len < self.mss {
            self.t.closed = true;
        }
        true
    }

    /// Ends the train: the virtio header and the packet, ready for one write to TUN. A train
    /// of one is the packet as it came, with an empty virtio header; a longer one is a GSO
    /// packet with a partial TCP checksum for the kernel (or the next NIC) to complete.
    pub fn finish(&mut self) -> &[u8] {
        let Some(shape) = self.shape.take() else {
            return &[];
        };
        if self.t.segments == 1 {
            return self.t.written(VirtioNetHdr::default());
        }
        let vh = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if shape.ipv4 { GSO_TCPV4 } else { GSO_TCPV6 },
            hdr_len: shape.hdr_len as u16,
            gso_size: self.mss as u16,
            csum_start: shape.ip_len as u16,
            csum_offset: 16,
        };
        self.t.gso(shape.ip_len, shape.ipv4, 6, 16, |_| {}, vh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A straightforward RFC 1071 checksum, to check the fast one against.
    fn reference_sum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in data.chunks(2) {
            let w = if pair.len() == 2 {
                u16::from_be_bytes([pair[0], pair[1]])
            } else {
                u16::from(pair[0]) << 8
            };
            sum += u32::from(w);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    fn tcp_packet(ipv4: bool, payload_len: usize, flags: u8) -> Vec<u8> {
        let payload: Vec<u8> = (0..payload_len).map(|i| (i * 7 + 3) as u8).collect();
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_ff00u32.to_be_bytes()); // wraps while segmenting
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        let mut ip = if ipv4 {
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + 20 + payload_len) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&0xfffeu16.to_be_bytes());
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&[10, 1, 0, 2]);
            ip[16..20].copy_from_slice(&[10, 2, 0, 2]);
            ip
        } else {
            let mut ip = vec![0u8; 40];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
            ip[6] = 6;
            ip[7] = 64;
            ip[8] = 0xfd;
            ip[23] = 2;
            ip[24] = 0xfd;
            ip[25] = 2;
            ip[39] = 2;
            ip
        };
        ip.extend_from_slice(&tcp);
        ip.extend_from_slice(&payload);
        ip
    }

    /// Verifies the IPv4 header checksum and the TCP checksum the way a receiver would.
    fn checksums_ok(seg: &[u8]) -> bool {
        let shape = TcpShape::of(seg).unwrap();
        let ip = &seg[..shape.ip_len];
        if shape.ipv4 && reference_sum(ip) != 0xffff {
            return false;
        }
        let tcp = &seg[shape.ip_len..];
        let pseudo = pseudo_header(ip, tcp.len(), 6).unwrap();
        fold(sum16(tcp, pseudo)) == 0xffff
    }

    #[test]
    fn copy_and_sum_matches_a_copy_then_a_sum() {
        let data: Vec<u8> = (0..70_000u32)
            .map(|i| (i * 37 + 11 + i / 251) as u8)
            .collect();
        for len in (0..300).chain([1400, 1447, 1448, 9000, 65_535]) {
            for skew in [0, 1, 3] {
                let src = &data[skew..skew + len];
                let mut dst = vec![0u8; len];
                let sum = copy_sum16(&mut dst, src, 0x1234);
                assert_eq!(dst, src, "len {len} skew {skew}");
                assert_eq!(fold(sum), fold(sum16(src, 0x1234)), "len {len} skew {skew}");
                assert_eq!(
                    fold(copy_sum16_body(&mut dst, src, 7)),
                    fold(sum16_body(src, 7))
                );
                // A sum near the top of 64 bits carries back in rather than overflowing.
                let high = u64::MAX - 1;
                assert_eq!(fold(sum16(src, high)), fold(add_sums(sum16(src, 0), high)));
            }
        }
    }

    #[test]
    fn fast_sum_matches_rfc_1071() {
        for len in (0..200).chain([1400, 1401, 9000, 65_535]) {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11 + i / 251) as u8).collect();
            assert_eq!(fold(sum16(&data, 0)), reference_sum(&data), "len {len}");
            // A running sum carried in, as the pseudo-header's is.
            let pseudo = 0x1_2345u64;
            let with = fold(pseudo + u64::from(reference_sum(&data)));
            assert_eq!(fold(sum16(&data, pseudo)), with, "len {len} with a sum");
        }
        for len in [4096, 65_535] {
            let ones = vec![0xffu8; len];
            assert_eq!(fold(sum16(&ones, 0)), reference_sum(&ones), "len {len}");
        }
    }

    #[test]
    fn vnet_header_round_trips() {
        let h = VirtioNetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV6,
            hdr_len: 60,
            gso_size: 1388,
            csum_start: 40,
            csum_offset: 16,
        };
        let mut b = [0u8; VNET_HDR_LEN];
        h.emit(&mut b);
        assert_eq!(VirtioNetHdr::parse(&b), Some(h));
        assert_eq!(VirtioNetHdr::parse(&b[..9]), None);
    }

    #[test]
    fn partial_checksums_are_completed() {
        for ipv4 in [true, false] {
            let mut pkt = tcp_packet(ipv4, 333, 0x18);
            let shape = TcpShape::of(&pkt).unwrap();
            // What the kernel hands over with NEEDS_CSUM: the pseudo-header sum in the field.
            let pseudo =
                fold(pseudo_header(&pkt[..shape.ip_len], pkt.len() - shape.ip_len, 6).unwrap());
            pkt[shape.ip_len + 16..shape.ip_len + 18].copy_from_slice(&pseudo.to_be_bytes());
            complete_checksum(&mut pkt, shape.ip_len, 16).unwrap();
            if ipv4 {
                // The IPv4 header checksum is not the TUN's to fill; set it for the check.
                let s = !fold(sum16(&pkt[..20], 0));
                pkt[10..12].copy_from_slice(&s.to_be_bytes());
            }
            assert!(checksums_ok(&pkt), "ipv4 {ipv4}");
            let len = pkt.len();
            assert_eq!(
                complete_checksum(&mut pkt, len - 1, 0),
                Err(OffloadError::BadChecksumOffset)
            );
        }
    }

    #[test]
    fn tso_segments_carry_the_payload_with_valid_headers() {
        for ipv4 in [true, false] {
            for (payload_len, mss) in [(64_000, 1388), (1388 * 3, 1388), (100, 1388), (0, 1388)] {
                let pkt = tcp_packet(ipv4, payload_len, 0x18 | TCP_FIN | TCP_CWR);
                let shape = TcpShape::of(&pkt).unwrap();
                let count = shape.segments(mss);
                assert_eq!(count, payload_len.div_ceil(mss).max(1));
                let mut joined = Vec::new();
                let mut out = vec![0u8; 2000];
                for i in 0..count {
                    let n = tcp_segment(&pkt, &shape, mss, i, &mut out).unwrap();
                    let seg = &out[..n];
                    assert!(checksums_ok(seg), "ipv4 {ipv4} len {payload_len} seg {i}");
                    let s = TcpShape::of(seg).unwrap();
                    assert!(s.payload_len <= mss);
                    let flags = seg[s.ip_len + 13];
                    let last = i + 1 == count;
                    assert_eq!(flags & (TCP_FIN | TCP_PSH) != 0, last, "seg {i}");
                    assert_eq!(flags & TCP_CWR != 0, i == 0, "seg {i}");
                    let seq =
                        u32::from_be_bytes(seg[s.ip_len + 4..s.ip_len + 8].try_into().unwrap());
                    assert_eq!(seq, 0xffff_ff00u32.wrapping_add((i * mss) as u32));
                    if ipv4 {
                        assert_eq!(u16::from_be_bytes([seg[2], seg[3]]) as usize, n);
                        assert_eq!(
                            u16::from_be_bytes([seg[4], seg[5]]),
                            0xfffeu16.wrapping_add(i as u16)
                        );
                    } else {
                        assert_eq!(u16::from_be_bytes([seg[4], seg[5]]) as usize, n - 40);
                    }
                    joined.extend_from_slice(&seg[s.hdr_len..]);
                }
                assert_eq!(joined, pkt[shape.hdr_len..]);
                assert_eq!(
                    tcp_segment(&pkt, &shape, mss, count, &mut out),
                    Err(OffloadError::Malformed)
                );
            }
        }
    }

    /// Segments a super-packet, then joins the segments again.
    fn round_trip(
        ipv4: bool,
        payload_len: usize,
        mss: usize,
        flags: u8,
    ) -> (Vec<u8>, Vec<u8>, usize) {
        let pkt = tcp_packet(ipv4, payload_len, flags);
        let shape = TcpShape::of(&pkt).unwrap();
        let mut out = vec![0u8; 2000];
        let mut gro = TcpCoalescer::new();
        for i in 0..shape.segments(mss) {
            let n = tcp_segment(&pkt, &shape, mss, i, &mut out).unwrap();
            if i == 0 {
                assert!(gro.start(&out[..n]));
            } else {
                assert!(gro.append(&out[..n]), "segment {i} refused");
            }
        }
        let segments = gro.segments();
        (pkt, gro.finish().to_vec(), segments)
    }

    #[test]
    fn coalesced_segments_rebuild_the_super_packet() {
        for ipv4 in [true, false] {
            for (payload_len, mss) in [(1388 * 40 + 17, 1388), (1388 * 3, 1388), (1000, 1388)] {
                let (orig, joined, segments) =
                    round_trip(ipv4, payload_len, mss, TCP_ACK | TCP_PSH);
                assert_eq!(segments, payload_len.div_ceil(mss));
                let vh = VirtioNetHdr::parse(&joined).unwrap();
                let mut pkt = joined[VNET_HDR_LEN..].to_vec();
                assert_eq!(pkt.len(), orig.len());
                let shape = TcpShape::of(&pkt).unwrap();
                if segments == 1 {
                    assert_eq!(vh, VirtioNetHdr::default());
                    assert!(checksums_ok(&pkt));
                    continue;
                }
                assert_eq!(vh.gso_type, if ipv4 { GSO_TCPV4 } else { GSO_TCPV6 });
                assert_eq!(
                    (vh.flags, vh.gso_size as usize, vh.hdr_len as usize),
                    (F_NEEDS_CSUM, mss, shape.hdr_len)
                );
                // What the kernel will do with the partial checksum, then compare whole packets.
                complete_checksum(
                    &mut pkt,
                    usize::from(vh.csum_start),
                    usize::from(vh.csum_offset),
                )
                .unwrap();
                assert!(checksums_ok(&pkt), "ipv4 {ipv4}");
                assert_eq!(pkt[shape.hdr_len..], orig[shape.hdr_len..]);
                // Headers as the original's, but for the checksums the test packet never had.
                let mut a = pkt[..shape.hdr_len].to_vec();
                let mut b = orig[..shape.hdr_len].to_vec();
                for h in [&mut a, &mut b] {
                    h[shape.ip_len + 16..shape.ip_len + 18].fill(0);
                    if ipv4 {
                        h[10..12].fill(0);
                    }
                }
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn coalescing_stops_where_the_kernel_would() {
        let pkt = tcp_packet(true, 1388 * 4, TCP_ACK);
        let shape = TcpShape::of(&pkt).unwrap();
        let seg = |i: usize| {
            let mut out = vec![0u8; 2000];
            let n = tcp_segment(&pkt, &shape, 1388, i, &mut out).unwrap();
            out.truncate(n);
            out
        };
        let mut gro = TcpCoalescer::new();
        // Out of order.
        assert!(gro.start(&seg(0)));
        assert!(!gro.append(&seg(2)));
        assert!(gro.append(&seg(1)));
        // Another flow.
        let mut other = seg(2);
        other[20] ^= 1; // source port
        assert!(!gro.append(&other));
        // A different ACK number.
        let mut acked = seg(2);
        acked[28] ^= 1;
        assert!(!gro.append(&acked));
        assert!(gro.append(&seg(2)));
        assert_eq!(gro.segments(), 3);
        gro.finish();
        assert!(gro.is_empty());
        // SYN, FIN, pure ACKs and UDP do not take part.
        let mut syn = seg(0);
        syn[33] |= 0x02;
        assert!(!gro.start(&syn));
        let mut fin = seg(0);
        fin[33] |= TCP_FIN;
        assert!(!gro.start(&fin));
        let ack = tcp_packet(true, 0, TCP_ACK);
        assert!(!gro.start(&ack));
        let mut udp = seg(0);
        udp[9] = 17;
        assert!(!gro.start(&udp));
        // A short segment ends the train.
        assert!(gro.start(&seg(0)));
        let mut short = seg(1);
        short.truncate(short.len() - 1);
        let s = TcpShape::of(&short).unwrap();
        let l = short.len() as u16;
        short[2..4].copy_from_slice(&l.to_be_bytes());
        assert!(s.payload_len < 1388);
        assert!(gro.append(&short));
        assert!(!gro.append(&seg(2)));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(TcpShape::of(&[]), Err(OffloadError::Malformed));
        assert_eq!(TcpShape::of(&[0x45; 10]), Err(OffloadError::Malformed));
        let mut udp = tcp_packet(true, 10, 0);
        udp[9] = 17;
        assert_eq!(TcpShape::of(&udp), Err(OffloadError::Malformed));
        let mut short_doff = tcp_packet(true, 10, 0);
        short_doff[32] = 0xf0; // data offset 60 > packet
        assert_eq!(
            TcpShape::of(&short_doff[..50]),
            Err(OffloadError::Malformed)
        );
        let pkt = tcp_packet(false, 3000, 0);
        let shape = TcpShape::of(&pkt).unwrap();
        assert_eq!(
            tcp_segment(&pkt, &shape, 1400, 0, &mut [0u8; 100]),
            Err(OffloadError::NoRoom)
        );
    }
}

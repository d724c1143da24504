//! The BFD control packet (RFC 5880 §4.1): 24 octets, and an authentication section: Keyed
//! SHA1 and Meticulous Keyed SHA1 (§4.4, §6.7.4) are read and written; other kinds are
//! refused.

use std::fmt;

use thiserror::Error;

/// The mandatory section's length.
pub const LEN: usize = 24;
/// The length of a packet with a SHA1 authentication section (§4.4: 28 octets of it).
pub const AUTH_LEN: usize = 52;

/// A SHA1 authentication section (§4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Auth {
    /// Meticulous Keyed SHA1 (type 5): the sequence number grows with every packet; Keyed
    /// SHA1 (type 4) otherwise.
    pub meticulous: bool,
    pub key_id: u8,
    pub seq: u32,
    pub digest: [u8; 20],
}

const KEYED_SHA1: u8 = 4;
const METICULOUS_KEYED_SHA1: u8 = 5;

/// The digest of packet `b` (52 octets, its digest field whatever it holds) under `key`
/// (§6.7.4: the key, zero-padded to 20 octets, in the digest field, then SHA-1 of it all).
pub fn sha1_digest(b: &[u8; AUTH_LEN], key: &[u8]) -> [u8; 20] {
    let mut m = *b;
    m[32..52].fill(0);
    let n = key.len().min(20);
    m[32..32 + n].copy_from_slice(&key[..n]);
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &m);
    let mut out = [0u8; 20];
    out.copy_from_slice(d.as_ref());
    out
}

/// Session states (RFC 5880 §4.1, "Sta").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    fn from_bits(b: u8) -> State {
        match b & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Diagnostic codes (RFC 5880 §4.1, "Diag"): why the session last left Up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Diag {
    None,
    /// Control Detection Time Expired.
    TimeExpired,
    EchoFailed,
    /// Neighbor Signaled Session Down.
    NeighborDown,
    ForwardingReset,
    PathDown,
    ConcatenatedPathDown,
    AdminDown,
    ReverseConcatenatedPathDown,
    /// A code this implementation does not know (9 to 31).
    Other(u8),
}

impl Diag {
    pub fn code(self) -> u8 {
        match self {
            Diag::None => 0,
            Diag::TimeExpired => 1,
            Diag::EchoFailed => 2,
            Diag::NeighborDown => 3,
            Diag::ForwardingReset => 4,
            Diag::PathDown => 5,
            Diag::ConcatenatedPathDown => 6,
            Diag::AdminDown => 7,
            Diag::ReverseConcatenatedPathDown => 8,
            Diag::Other(c) => c & 31,
        }
    }

    pub fn from_code(c: u8) -> Diag {
        match c & 31 {
            0 => Diag::None,
            1 => Diag::TimeExpired,
            2 => Diag::EchoFailed,
            3 => Diag::NeighborDown,
            4 => Diag::ForwardingReset,
            5 => Diag::PathDown,
            6 => Diag::ConcatenatedPathDown,
            7 => Diag::AdminDown,
            8 => Diag::ReverseConcatenatedPathDown,
            c => Diag::Other(c),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Diag::None => f.write_str("none"),
            Diag::TimeExpired => f.write_str("control detection time expired"),
            Diag::EchoFailed => f.write_str("echo function failed"),
            Diag::NeighborDown => f.write_str("neighbor signaled session down"),
            Diag::ForwardingReset => f.write_str("forwarding plane reset"),
            Diag::PathDown => f.write_str("path down"),
            Diag::ConcatenatedPathDown => f.write_str("concatenated path down"),
            Diag::AdminDown => f.write_str("administratively down"),
            Diag::ReverseConcatenatedPathDown => f.write_str("reverse concatenated path down"),
            Diag::Other(c) => write!(f, "diagnostic {c}"),
        }
    }
}

/// A control packet, as it is on the wire (intervals in microseconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    /// Poll and Final (RFC 5880 §6.5).
    pub poll: bool,
    pub fin: bool,
    /// Control Plane Independent.
    pub cpi: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    pub desired_min_tx: u32,
    pub required_min_rx: u32,
    pub required_min_echo_rx: u32,
    pub auth: Option<Auth>,
}

/// Why a received packet is discarded (RFC 5880 §6.8.6, the checks before the session's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("shorter than 24 octets")]
    Short,
    #[error("version {0}, not 1")]
    Version(u8),
    #[error("length field {0} is below 24 or beyond the datagram")]
    Length(u8),
    #[error("detect multiplier zero")]
    DetectMult,
    #[error("multipoint bit set")]
    Multipoint,
    #[error("my discriminator zero")]
    MyDiscr,
    #[error("an authentication section of a kind not supported, or malformed")]
    Authentication,
}

impl PacketError {
    /// A label for counters.
    pub fn reason(self) -> &'static str {
        match self {
            PacketError::Short => "short",
            PacketError::Version(_) => "version",
            PacketError::Length(_) => "length",
            PacketError::DetectMult => "detect_mult",
            PacketError::Multipoint => "multipoint",
            PacketError::MyDiscr => "my_discriminator",
            PacketError::Authentication => "authentication",
        }
    }
}

const POLL: u8 = 0x20;
const FINAL: u8 = 0x10;
const CPI: u8 = 0x08;
const AUTH: u8 = 0x04;
const DEMAND: u8 = 0x02;
const MULTIPOINT: u8 = 0x01;

impl ControlPacket {
    /// Reads a control packet from a UDP payload.
    pub fn parse(b: &[u8]) -> Result<ControlPacket, PacketError> {
        if b.len() < LEN {
            return Err(PacketError::Short);
        }
        let version = b[0] >> 5;
        if version != 1 {
            return Err(PacketError::Version(version));
        }
        let flags = b[1];
        let len = b[3];
        if usize::from(len) < LEN || usize::from(len) > b.len() {
            return Err(PacketError::Length(len));
        }
        let auth = if flags & AUTH != 0 {
            // Only the SHA1 kinds: type, length 28, key id, reserved, sequence, digest.
            let a = b.get(LEN..AUTH_LEN).ok_or(PacketError::Authentication)?;
            if usize::from(len) != AUTH_LEN
                || !matches!(a[0], KEYED_SHA1 | METICULOUS_KEYED_SHA1)
                || a[1] != 28
            {
                return Err(PacketError::Authentication);
            }
            let mut digest = [0u8; 20];
            digest.copy_from_slice(&a[8..28]);
            Some(Auth {
                meticulous: a[0] == METICULOUS_KEYED_SHA1,
                key_id: a[2],
                seq: u32::from_be_bytes([a[4], a[5], a[6], a[7]]),
                digest,
            })
        } else {
            None
        };
        if b[2] == 0 {
            return Err(PacketError::DetectMult);
        }
        if flags & MULTIPOINT != 0 {
            return Err(PacketError::Multipoint);
        }
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let p = ControlPacket {
            diag: Diag::from_code(b[0]),
            state: State::from_bits(flags >> 6),
            poll: flags & POLL != 0,
            fin: flags & FINAL != 0,
            cpi: flags & CPI != 0,
            demand: flags & DEMAND != 0,
            detect_mult: b[2],
            my_discr: word(4),
            your_discr: word(8),
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
            auth,
        };
        if p.my_discr == 0 {
            return Err(PacketError::MyDiscr);
        }
        Ok(p)
    }

    /// The packet as sent: 24 octets, or 52 with an authentication section, whose digest is
    /// worked out with `key` (the section's own digest field is ignored).
    pub fn encode_with(&self, key: &[u8]) -> Vec<u8> {
        let Some(a) = &self.auth else {
            return self.encode().to_vec();
        };
        let mut b = [0u8; AUTH_LEN];
        b[..LEN].copy_from_slice(&self.encode());
        b[1] |= AUTH;
        b[3] = AUTH_LEN as u8;
        b[24] = if a.meticulous {
            METICULOUS_KEYED_SHA1
        } else {
            KEYED_SHA1
        };
        b[25] = 28;
        b[26] = a.key_id;
        b[28..32].copy_from_slice(&a.seq.to_be_bytes());
        let d = sha1_digest(&b, key);
        b[32..52].copy_from_slice(&d);
        b.to_vec()
    }

    /// The packet's mandatory 24 octets (no authentication section).
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = (1 << 5) | self.diag.code();
        b[1] = ((self.state as u8) << 6)
            | if self.poll { POLL } else { 0 }
            | if self.fin { FINAL } else { 0 }
            | if self.cpi { CPI } else { 0 }
            | if self.demand { DEMAND } else { 0 };
        b[2] = self.detect_mult;
        b[3] = LEN as u8;
        b[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet written by hand from RFC 5880 §4.1: version 1, diag 3, state Up with Poll,
    /// detect mult 3, discriminators 1 and 2, 300 ms intervals.
    #[test]
    fn a_packet_reads_and_writes_as_the_rfc_draws_it() {
        let wire: [u8; 24] = [
            0x23, 0xe0, 0x03, 0x18, 0, 0, 0, 1, 0, 0, 0, 2, 0x00, 0x04, 0x93, 0xe0, 0x00, 0x04,
            0x93, 0xe0, 0, 0, 0, 0,
        ];
        let p = ControlPacket::parse(&wire).unwrap();
        assert_eq!(p.diag, Diag::NeighborDown);
        assert_eq!(p.state, State::Up);
        assert!(p.poll && !p.fin && !p.cpi && !p.demand);
        assert_eq!((p.detect_mult, p.my_discr, p.your_discr), (3, 1, 2));
        assert_eq!((p.desired_min_tx, p.required_min_rx), (300_000, 300_000));
        assert_eq!(p.encode(), wire);
    }

    #[test]
    fn malformed_packets_are_refused_with_their_reason() {
        let good = ControlPacket {
            diag: Diag::None,
            state: State::Down,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 7,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: None,
        }
        .encode();
        assert!(ControlPacket::parse(&good).is_ok());
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            ControlPacket::parse(&b)
        };
        assert_eq!(ControlPacket::parse(&good[..23]), Err(PacketError::Short));
        assert_eq!(with(0, 0x40), Err(PacketError::Version(2)));
        assert_eq!(with(3, 23), Err(PacketError::Length(23)));
        assert_eq!(with(3, 25), Err(PacketError::Length(25)));
        assert_eq!(with(2, 0), Err(PacketError::DetectMult));
        assert_eq!(with(1, 0x41), Err(PacketError::Multipoint));
        assert_eq!(
            with(1, 0x44),
            Err(PacketError::Authentication),
            "A, but 24 octets"
        );
        assert_eq!(with(7, 0), Err(PacketError::MyDiscr));
        // A longer datagram with a length of 24 is read (trailing octets ignored).
        let mut long = good.to_vec();
        long.extend_from_slice(&[0; 8]);
        assert!(ControlPacket::parse(&long).is_ok());
    }

    proptest::proptest! {
        /// Whatever arrives, reading never panics, and what is read writes back to the same
        /// 24 octets (but for the bits this implementation does not keep).
        #[test]
        fn anything_reads_safely_and_round_trips(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(p) = ControlPacket::parse(&b) {
                let again = ControlPacket::parse(&p.encode_with(b"key")).unwrap();
                let digest = again.auth.map(|a| a.digest);
                proptest::prop_assert_eq!(
                    ControlPacket { auth: p.auth.map(|a| Auth { digest: digest.unwrap(), ..a }), ..p },
                    again
                );
            }
        }
    }

    /// A Meticulous Keyed SHA1 packet: written with its digest, read back, and the digest
    /// checks out under the key and fails under another or after a bit flip.
    #[test]
    fn sha1_authentication_writes_reads_and_verifies() {
        let p = ControlPacket {
            diag: Diag::None,
            state: State::Up,
            poll: false,
            fin: false,
            cpi: false,
            demand: false,
            detect_mult: 3,
            my_discr: 1,
            your_discr: 2,
            desired_min_tx: 300_000,
            required_min_rx: 300_000,
            required_min_echo_rx: 0,
            auth: Some(Auth {
                meticulous: true,
                key_id: 7,
                seq: 0xdead_beef,
                digest: [0; 20],
            }),
        };
        let b = p.encode_with(b"secret");
        assert_eq!(b.len(), AUTH_LEN);
        assert_eq!(
            (b[1] & AUTH, b[3], b[24], b[25], b[26]),
            (AUTH, 52, 5, 28, 7)
        );
        let q = ControlPacket::parse(&b).unwrap();
        let a = q.auth.unwrap();
        assert_eq!((a.meticulous, a.key_id, a.seq), (true, 7, 0xdead_beef));
        let raw: [u8; AUTH_LEN] = b.clone().try_into().unwrap();
        assert_eq!(sha1_digest(&raw, b"secret"), a.digest);
        assert_ne!(sha1_digest(&raw, b"secreT"), a.digest);
        let mut flipped = raw;
        flipped[13] ^= 1;
        assert_ne!(sha1_digest(&flipped, b"secret"), a.digest);
        // Other kinds (simple password, MD5) are refused.
        let mut md5 = b.clone();
        md5[24] = 2;
        assert_eq!(ControlPacket::parse(&md5), Err(PacketError::Authentication));
    }
}

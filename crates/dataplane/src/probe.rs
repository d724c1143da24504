//! Liveness probes. They travel inside the secure channel as user data with their own
//! EtherType, so they are authenticated like everything else: an attacker can neither fake a
//! live link nor measure a false RTT.
//!
//! ```text
//! EtherType 0x88B5 (IEEE 802 local experimental 1)
//! kind(1): 1 request, 2 reply | lanes(1) | reserved(2) | sequence(4) | sender's timestamp in ns(8)
//! ```
//! `lanes` is how many of the sender's underlay lanes (UDP socket pairs, see `link`), from
//! lane 0 on, the receiver's probe requests have come through lately: the lanes the receiver
//! may send on. Requests go on every lane (the reply on lane 0 alone); 0 from a version that
//! did not say, which means one.
//! A reply echoes the request's sequence and timestamp, so the RTT is measured on the clock of
//! the side that asked.

/// The EtherType of probe frames inside the secure channel.
pub const ETHERTYPE_PROBE: u16 = 0x88b5;
/// Probe body length after the EtherType.
pub const PROBE_LEN: usize = 16;

const REQUEST: u8 = 1;
const REPLY: u8 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Request { seq: u32, sent_ns: u64 },
    Reply { seq: u32, sent_ns: u64 },
}

impl Probe {
    /// Writes the body (after the EtherType) into `buf`, which must hold [`PROBE_LEN`] octets.
    pub fn emit(&self, buf: &mut [u8]) {
        let (kind, seq, sent_ns) = match *self {
            Probe::Request { seq, sent_ns } => (REQUEST, seq, sent_ns),
            Probe::Reply { seq, sent_ns } => (REPLY, seq, sent_ns),
        };
        buf[0] = kind;
        buf[1..4].fill(0);
        buf[4..8].copy_from_slice(&seq.to_be_bytes());
        buf[8..16].copy_from_slice(&sent_ns.to_be_bytes());
    }

    /// Writes the sender's lane count into an emitted body.
    pub fn set_lanes(buf: &mut [u8], lanes: u8) {
        if let Some(b) = buf.get_mut(1) {
            *b = lanes;
        }
    }

    /// The lane count a body carries (1 for 0: a sender that did not say).
    pub fn lanes(buf: &[u8]) -> u8 {
        buf.get(1).copied().unwrap_or(0).max(1)
    }

    /// Parses a body; `None` if it is not a probe this version knows.
    pub fn parse(buf: &[u8]) -> Option<Probe> {
        let body: &[u8; PROBE_LEN] = buf.get(..PROBE_LEN)?.try_into().ok()?;
        let seq = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
        let mut ns = [0; 8];
        ns.copy_from_slice(&body[8..16]);
        let sent_ns = u64::from_be_bytes(ns);
        match body[0] {
            REQUEST => Some(Probe::Request { seq, sent_ns }),
            REPLY => Some(Probe::Reply { seq, sent_ns }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        for p in [
            Probe::Request {
                seq: 7,
                sent_ns: 1 << 40,
            },
            Probe::Reply {
                seq: u32::MAX,
                sent_ns: 3,
            },
        ] {
            let mut buf = [0xff; PROBE_LEN];
            p.emit(&mut buf);
            assert_eq!(Probe::parse(&buf), Some(p));
        }
        let mut buf = [0; PROBE_LEN];
        Probe::Request { seq: 1, sent_ns: 2 }.emit(&mut buf);
        assert_eq!(
            Probe::lanes(&buf),
            1,
            "an older sender says nothing: one lane"
        );
        Probe::set_lanes(&mut buf, 4);
        assert_eq!(Probe::lanes(&buf), 4);
        assert_eq!(
            Probe::parse(&buf),
            Some(Probe::Request { seq: 1, sent_ns: 2 })
        );
        assert_eq!(Probe::parse(&[1; 15]), None);
        assert_eq!(Probe::parse(&[9; 16]), None);
    }
}

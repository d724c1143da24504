//! The MACsec cipher suites (§14, and IEEE 802.1AEbw for XPN).

use core::fmt;
use core::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    GcmAes128,
    GcmAes256,
    GcmAesXpn128,
    GcmAesXpn256,
}

impl CipherSuite {
    pub const ALL: [CipherSuite; 4] = [
        CipherSuite::GcmAes128,
        CipherSuite::GcmAes256,
        CipherSuite::GcmAesXpn128,
        CipherSuite::GcmAesXpn256,
    ];

    /// SAK length in octets.
    pub const fn key_len(self) -> usize {
        match self {
            CipherSuite::GcmAes128 | CipherSuite::GcmAesXpn128 => 16,
            CipherSuite::GcmAes256 | CipherSuite::GcmAesXpn256 => 32,
        }
    }

    /// The cipher suite's reference number (802.1AE Table 14-1), as MKA's Distributed SAK
    /// carries it: 00-80-C2-00-01-00-00-01 to -04.
    pub const fn reference_number(self) -> u64 {
        0x0080_c200_0001_0000
            | match self {
                CipherSuite::GcmAes128 => 1,
                CipherSuite::GcmAes256 => 2,
                CipherSuite::GcmAesXpn128 => 3,
                CipherSuite::GcmAesXpn256 => 4,
            }
    }

    /// Extended Packet Numbering: 64-bit PNs, SSCI and salt in the IV.
    pub const fn is_xpn(self) -> bool {
        matches!(self, CipherSuite::GcmAesXpn128 | CipherSuite::GcmAesXpn256)
    }

    /// The highest PN an SA of this suite may use.
    pub const fn max_pn(self) -> u64 {
        if self.is_xpn() {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    /// The PN at which MKA distributes a new SAK by default: three quarters of the PN space.
    pub const fn default_rekey_threshold(self) -> u64 {
        if self.is_xpn() {
            0xc000_0000_0000_0000
        } else {
            0xc000_0000
        }
    }

    /// The Cipher Suite Identifier (§14, Table 14-1), as MKA announces it.
    pub const fn id(self) -> u64 {
        match self {
            CipherSuite::GcmAes128 => 0x0080_c200_0100_0001,
            CipherSuite::GcmAes256 => 0x0080_c200_0100_0002,
            CipherSuite::GcmAesXpn128 => 0x0080_c200_0100_0003,
            CipherSuite::GcmAesXpn256 => 0x0080_c200_0100_0004,
        }
    }

    pub const fn from_id(id: u64) -> Option<CipherSuite> {
        match id {
            0x0080_c200_0100_0001 => Some(CipherSuite::GcmAes128),
            0x0080_c200_0100_0002 => Some(CipherSuite::GcmAes256),
            0x0080_c200_0100_0003 => Some(CipherSuite::GcmAesXpn128),
            0x0080_c200_0100_0004 => Some(CipherSuite::GcmAesXpn256),
            _ => None,
        }
    }

    /// The name used in configuration files and in `ip macsec` (`gcm-aes-xpn-256`).
    pub const fn name(self) -> &'static str {
        match self {
            CipherSuite::GcmAes128 => "gcm-aes-128",
            CipherSuite::GcmAes256 => "gcm-aes-256",
            CipherSuite::GcmAesXpn128 => "gcm-aes-xpn-128",
            CipherSuite::GcmAesXpn256 => "gcm-aes-xpn-256",
        }
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A cipher suite name that is not one of the four.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown cipher suite {0:?} (expected gcm-aes-128, gcm-aes-256, gcm-aes-xpn-128 or gcm-aes-xpn-256)"
)]
pub struct UnknownCipherSuite(pub String);

impl FromStr for CipherSuite {
    type Err = UnknownCipherSuite;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CipherSuite::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownCipherSuite(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_round_trip() {
        for suite in CipherSuite::ALL {
            assert_eq!(suite.name().parse::<CipherSuite>().unwrap(), suite);
            assert_eq!(CipherSuite::from_id(suite.id()), Some(suite));
        }
        assert!("gcm-aes-512".parse::<CipherSuite>().is_err());
        assert_eq!(CipherSuite::from_id(0), None);
    }

    #[test]
    fn pn_spaces() {
        assert_eq!(CipherSuite::GcmAes128.max_pn(), 0xffff_ffff);
        assert_eq!(CipherSuite::GcmAesXpn256.max_pn(), u64::MAX);
        assert_eq!(
            CipherSuite::GcmAes256.default_rekey_threshold(),
            0xc000_0000
        );
        assert_eq!(
            CipherSuite::GcmAesXpn128.default_rekey_threshold(),
            0xc000_0000_0000_0000
        );
    }
}

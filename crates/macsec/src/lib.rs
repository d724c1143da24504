//! A sans-IO IEEE 802.1AE (MACsec) SecY.
//!
//! No sockets, no threads, no allocation per frame: [`TxSecY::protect`] and
//! [`RxSecY::validate`] work in place on a frame in the caller's buffer, laid out as
//!
//! ```text
//! DA(6) SA(6) 88E5 SecTAG(6 | 14) secure data ICV(16)
//! |<------- header_len() ------->|
//! ```
//!
//! To protect, the caller writes DA and SA at offset 0 and the user data (EtherType and
//! payload) at [`TxSecY::header_len`], and leaves [`ICV_LEN`] octets of room after it: the SecY
//! fills in the EtherType and SecTAG, encrypts in place and appends the ICV. To validate, the
//! caller passes the whole frame and gets back where the user data is. A transport that does
//! not carry DA and SA (UDP) writes its stand-in for them into the first 12 octets, so the AAD
//! is always what a MACsec frame's AAD would be.
//!
//! Cipher suites: GCM-AES-128, GCM-AES-256, GCM-AES-XPN-128 and GCM-AES-XPN-256, with
//! confidentiality at offset 0 (TCI E=C=1) or integrity only (E=C=0). The AES-GCM backend is
//! aws-lc-rs by default or RustCrypto `aes-gcm` (see [`Backend`]).
//!
//! Clause numbers refer to IEEE 802.1AE-2018 unless stated otherwise.

mod crypto;
pub mod fuzzing;
mod rx;
mod sa;
pub mod sectag;
#[cfg(feature = "selftest")]
pub mod selftest;
mod stats;
mod suite;
mod tx;
pub mod window;

pub use crypto::{Aead, Backend, CryptoError, KeyError, UnknownBackend, IV_LEN};
pub use rx::{Accepted, Received, RxConfig, RxSc, RxSecY, UnknownValidateFrames, ValidateFrames};
pub use sa::{RxSa, SaKey, Sak, Salt, Ssci, TxSa};
pub use sectag::{An, BadAn, BadSci, Sci, SecTag, SecTagRepr, Tci};
pub use stats::{RxStats, TxStats};
pub use suite::{CipherSuite, UnknownCipherSuite};
pub use tx::{Protected, TxConfig, TxSecY};

/// The MACsec EtherType (§9.4).
pub const ETHERTYPE_MACSEC: u16 = 0x88e5;
/// Destination and source MAC addresses.
pub const ADDRS_LEN: usize = 12;
/// Integrity Check Value length of every GCM-AES suite (§14).
pub const ICV_LEN: usize = 16;
/// What protection adds to a frame at most: EtherType, SecTAG with SCI, ICV.
pub const MAX_OVERHEAD: usize = 2 + sectag::SECTAG_SCI_LEN + ICV_LEN;

/// Octets from the start of a frame to its secure data: DA, SA, EtherType, SecTAG.
pub const fn header_len(sci_present: bool) -> usize {
    ADDRS_LEN
        + 2
        + if sci_present {
            sectag::SECTAG_SCI_LEN
        } else {
            sectag::SECTAG_LEN
        }
}

/// Why a SecTAG or a frame's length is not valid (§9.12). Counted as InPktsBadTag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadTag {
    #[error("frame too short for its SecTAG and ICV")]
    Truncated,
    #[error("SecTAG version bit set")]
    Version,
    #[error("SC set together with ES or SCB")]
    ExplicitSciWithEsOrScb,
    #[error("reserved bits of the short length set")]
    SlReservedBits,
    #[error("short length {short_len} does not match {secure_data} octets of secure data")]
    ShortLength { short_len: u8, secure_data: usize },
    #[error("packet number 0 without XPN")]
    ZeroPn,
    #[error("E set with C clear: reserved for frames not delivered to the controlled port")]
    ReservedEncoding,
}

/// Why a received frame was discarded. Each variant has its own counter in [`RxStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RxError {
    #[error("untagged frame while validateFrames is Strict")]
    NoTag,
    #[error("bad SecTAG: {0}")]
    BadTag(#[from] BadTag),
    #[error("no receive SC for SCI {0}")]
    NoSci(Sci),
    #[error("no receive SA in use for SCI {sci} AN {an}")]
    NotUsingSa { sci: Sci, an: An },
    #[error("replayed or late frame: SCI {sci} AN {an} PN {pn:#x}")]
    Late { sci: Sci, an: An, pn: u64 },
    #[error("ICV check failed: SCI {sci} AN {an} PN {pn:#x}")]
    NotValid { sci: Sci, an: An, pn: u64 },
    #[error("valid frame above the reserved PNs: SCI {sci} AN {an} PN {pn:#x}")]
    Unreserved { sci: Sci, an: An, pn: u64 },
}

/// Why a frame could not be protected. Each variant has its own counter in [`TxStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    #[error("no transmit SA in use")]
    SaNotInUse,
    #[error("transmit SA {an} has used its last packet number; a new SAK is needed")]
    PnExhausted { an: An },
    #[error("transmit SA {an} has used the packet numbers reserved so far")]
    PnUnreserved { an: An },
    #[error("protected frame of {len} octets exceeds the limit of {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("frame needs {needed} octets of buffer, {available} available")]
    NoRoom { needed: usize, available: usize },
    #[error("user data of {0} octets has no EtherType")]
    Malformed(usize),
}

/// A secure channel or association could not be set up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SaError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0} needs an SSCI and a salt")]
    XpnParamsMissing(CipherSuite),
    #[error("{0} takes no SSCI or salt")]
    XpnParamsUnexpected(CipherSuite),
    #[error("packet number {pn:#x} is outside 1..={max:#x}")]
    PnOutOfRange { pn: u64, max: u64 },
    #[error("no SA with AN {0}")]
    NoSuchSa(An),
    #[error("SA {0} is the one in use; switch to another before replacing it")]
    SaInUse(An),
    #[error("ES and SCB only apply when the SCI is not sent")]
    EsOrScbWithSci,
    #[error("no receive SC for SCI {0}")]
    NoSuchSc(Sci),
    #[error("a receive SC for SCI {0} exists already")]
    ScExists(Sci),
}

//! The transmit half of a SecY: one transmit SC with up to four SAs (§10.5).

use std::sync::Arc;

use crate::sa::{NoPn, SaCrypto, SaKey, TxSa};
use crate::sectag::{SecTag, SecTagRepr};
use crate::stats::TxStats;
use crate::{
    header_len, An, Backend, CipherSuite, SaError, Sci, TxError, ADDRS_LEN, ETHERTYPE_MACSEC,
    ICV_LEN,
};

/// No transport carries a MACsec PDU larger than this (the largest UDP payload and then some).
pub const MAX_PDU_LEN: usize = 65_535;

/// How the transmit SC frames what it protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxConfig {
    /// This SecY's SCI: sent in the SecTAG when `include_sci`, and part of the non-XPN IV.
    pub sci: Sci,
    /// Send the SCI in every SecTAG (TCI.SC). Linux `macsec` does by default.
    pub include_sci: bool,
    /// TCI.ES: the SCI is the source address and port 1. Only without `include_sci`.
    pub end_station: bool,
    /// TCI.SCB: the SCI is the source address and port 0 (EPON). Only without `include_sci`.
    pub scb: bool,
    /// Encrypt the user data (E=C=1, offset 0); otherwise integrity only (E=C=0).
    pub confidentiality: bool,
    /// The largest protected PDU, counted from the SecTAG to the ICV: the underlay MTU on
    /// Ethernet, the largest UDP payload on UDP. Like Linux `OutPktsTooLong`.
    pub mtu: usize,
    /// Signal "rekey needed" once a PN at or above this is used; `None` for the suite default.
    pub rekey_threshold: Option<u64>,
}

impl TxConfig {
    /// SCI included, confidentiality on, no MTU limit beyond [`MAX_PDU_LEN`].
    pub fn new(sci: Sci) -> TxConfig {
        TxConfig {
            sci,
            include_sci: true,
            end_station: false,
            scb: false,
            confidentiality: true,
            mtu: MAX_PDU_LEN,
            rekey_threshold: None,
        }
    }
}

/// What [`TxSecY::protect`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    /// Length of the protected frame, from DA to ICV.
    pub len: usize,
    pub an: An,
    pub pn: u64,
    /// The PN reached the rekey threshold: the KaY should distribute a new SAK.
    pub rekey_needed: bool,
}

/// The transmit SC of a SecY. Cloning shares the SAs, packet numbers included, so transmit
/// workers can each hold a clone and never send the same PN twice.
#[derive(Clone, Debug)]
pub struct TxSecY {
    suite: CipherSuite,
    backend: Backend,
    cfg: TxConfig,
    header_len: usize,
    sas: [Option<Arc<TxSa>>; 4],
    encoding_sa: Option<An>,
}

impl TxSecY {
    pub fn new(suite: CipherSuite, backend: Backend, cfg: TxConfig) -> Result<TxSecY, SaError> {
        if cfg.include_sci && (cfg.end_station || cfg.scb) {
            return Err(SaError::EsOrScbWithSci);
        }
        Ok(TxSecY {
            suite,
            backend,
            cfg,
            header_len: header_len(cfg.include_sci),
            sas: Default::default(),
            encoding_sa: None,
        })
    }

    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    pub fn config(&self) -> &TxConfig {
        &self.cfg
    }

    /// Where the user data goes in a frame to protect: after DA, SA, EtherType and SecTAG.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Octets protection adds after DA and SA: EtherType, SecTAG and ICV.
    pub fn overhead(&self) -> usize {
        self.header_len - ADDRS_LEN + ICV_LEN
    }

    /// Creates the SA for `an` (802.1AE createTransmitSA). It replaces an SA that is not in
    /// use; the SA in use has to be switched away from first, so that no PN is ever repeated.
    pub fn install_sa(&mut self, an: An, key: &SaKey<'_>, next_pn: u64) -> Result<(), SaError> {
        if self.encoding_sa == Some(an) {
            return Err(SaError::SaInUse(an));
        }
        let threshold = self
            .cfg
            .rekey_threshold
            .unwrap_or(self.suite.default_rekey_threshold());
        let c = SaCrypto::new(self.suite, self.backend, self.cfg.sci, an, key, next_pn)?;
        let sa = TxSa::new(c, self.suite, next_pn, threshold);
        self.sas[an.index()] = Some(Arc::new(sa));
        Ok(())
    }

    /// Starts sending with the SA of `an` (802.1AE encodingSA).
    pub fn set_encoding_sa(&mut self, an: An) -> Result<(), SaError> {
        if self.sas[an.index()].is_none() {
            return Err(SaError::NoSuchSa(an));
        }
        self.encoding_sa = Some(an);
        Ok(())
    }

    /// Deletes the SA of `an`. Deleting the SA in use stops transmission.
    pub fn remove_sa(&mut self, an: An) -> Result<(), SaError> {
        self.sas[an.index()].take().ok_or(SaError::NoSuchSa(an))?;
        if self.encoding_sa == Some(an) {
            self.encoding_sa = None;
        }
        Ok(())
    }

    pub fn sa(&self, an: An) -> Option<&TxSa> {
        self.sas[an.index()].as_deref()
    }

    /// The SA frames are sent with, if any.
    pub fn encoding_sa(&self) -> Option<&TxSa> {
        self.encoding_sa.and_then(|an| self.sa(an))
    }

    /// Protects the frame in `frame` in place (§10.5).
    ///
    /// On entry `frame[..12]` holds DA and SA and `frame[header_len()..][..user_len]` the user
    /// data, EtherType first; at least [`ICV_LEN`] octets must follow it. On success
    /// `frame[..len]` is the protected frame. Every failure bumps its counter in `stats`.
    #[inline]
    pub fn protect(
        &self,
        stats: &mut TxStats,
        frame: &mut [u8],
        user_len: usize,
    ) -> Result<Protected, TxError> {
        let Some(sa) = self.encoding_sa() else {
            stats.out_pkts_sa_not_in_use += 1;
            return Err(TxError::SaNotInUse);
        };
        if user_len < 2 {
            stats.out_pkts_malformed += 1;
            return Err(TxError::Malformed(user_len));
        }
        let hdr = self.header_len;
        let len = hdr + user_len + ICV_LEN;
        let pdu = len - ADDRS_LEN - 2;
        let limit = self.cfg.mtu.min(MAX_PDU_LEN);
        if pdu > limit {
            stats.out_pkts_too_long += 1;
            return Err(TxError::TooLong { len: pdu, limit });
        }
        if len > frame.len() {
            stats.out_pkts_too_long += 1;
            return Err(TxError::NoRoom {
                needed: len,
                available: frame.len(),
            });
        }
        // §10.5.2: a PN is never reused; an exhausted SA refuses to send.
        let pn = match sa.take_pn() {
            Ok(pn) => pn,
            Err(NoPn::Exhausted) => {
                stats.out_pkts_pn_exhausted += 1;
                return Err(TxError::PnExhausted { an: sa.an() });
            }
            Err(NoPn::Unreserved) => {
                stats.out_pkts_pn_unreserved += 1;
                return Err(TxError::PnUnreserved { an: sa.an() });
            }
        };
        let frame = &mut frame[..len];
        frame[ADDRS_LEN..ADDRS_LEN + 2].copy_from_slice(&ETHERTYPE_MACSEC.to_be_bytes());
        let conf = self.cfg.confidentiality;
        let tag = SecTagRepr {
            es: self.cfg.end_station,
            scb: self.cfg.scb,
            e: conf,
            c: conf,
            an: sa.an(),
            short_len: SecTagRepr::short_len_for(user_len),
            // With XPN only the low 32 bits are sent (802.1AEbw §9.8).
            pn: pn as u32,
            sci: self.cfg.include_sci.then_some(self.cfg.sci),
        };
        tag.emit(&mut SecTag::new_unchecked(&mut frame[ADDRS_LEN + 2..hdr]));

        // §14.5: with confidentiality the AAD is DA..SecTAG and the user data is encrypted;
        // integrity only authenticates DA..user data and encrypts nothing.
        let aad_len = if conf { hdr } else { hdr + user_len };
        let (aad, rest) = frame.split_at_mut(aad_len);
        let (data, icv) = rest.split_at_mut(rest.len() - ICV_LEN);
        let c = sa.crypto();
        match c.key().seal(&c.iv(pn), aad, data) {
            Ok(tag) => icv.copy_from_slice(&tag),
            Err(_) => {
                // The backends only refuse inputs far larger than MAX_PDU_LEN.
                stats.out_pkts_too_long += 1;
                return Err(TxError::TooLong { len: pdu, limit });
            }
        }
        if conf {
            stats.out_pkts_encrypted += 1;
            stats.out_octets_encrypted += user_len as u64;
        } else {
            stats.out_pkts_protected += 1;
            stats.out_octets_protected += user_len as u64;
        }
        Ok(Protected {
            len,
            an: sa.an(),
            pn,
            rekey_needed: pn >= sa.rekey_threshold(),
        })
    }
}

//! The receive half of a SecY: receive SCs, each with up to four SAs, and the validation of
//! §10.6 in the order Linux `macsec_handle_frame` applies it.

use core::fmt;
use core::ops::Range;
use core::str::FromStr;

use std::sync::Arc;

use crate::sa::{RxSa, SaCrypto, SaKey};
use crate::sectag::{SecTag, SecTagRepr, MIN_NON_SHORT_LEN};
use crate::stats::RxStats;
use crate::{
    header_len, An, Backend, BadTag, CipherSuite, RxError, SaError, Sci, ADDRS_LEN,
    ETHERTYPE_MACSEC, ICV_LEN,
};

/// The shortest 802.3 frame without FCS; shorter frames arrive padded to it.
const ETH_MIN_FRAME_LEN: usize = 60;

/// The validateFrames control (§10.7.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ValidateFrames {
    /// Frames are not validated unless C is set; untagged frames are delivered.
    Disabled,
    /// Frames are validated, but those that fail and have C clear are still delivered.
    Check,
    /// Only valid frames are delivered.
    #[default]
    Strict,
}

impl ValidateFrames {
    pub const fn name(self) -> &'static str {
        match self {
            ValidateFrames::Disabled => "disabled",
            ValidateFrames::Check => "check",
            ValidateFrames::Strict => "strict",
        }
    }
}

impl fmt::Display for ValidateFrames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A validateFrames name that is not `disabled`, `check` or `strict`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown validate mode {0:?} (expected \"strict\", \"check\" or \"disabled\")")]
pub struct UnknownValidateFrames(pub String);

impl FromStr for ValidateFrames {
    type Err = UnknownValidateFrames;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            ValidateFrames::Disabled,
            ValidateFrames::Check,
            ValidateFrames::Strict,
        ]
        .into_iter()
        .find(|v| v.name() == s)
        .ok_or_else(|| UnknownValidateFrames(s.to_owned()))
    }
}

/// Receive controls of a SecY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxConfig {
    pub validate_frames: ValidateFrames,
    /// Discard frames below the lowest acceptable PN (replayProtect, §10.7.8).
    pub replay_protect: bool,
    /// How far below the highest PN seen a frame may still arrive (replayWindow). 0 demands
    /// strictly increasing PNs.
    pub replay_window: u32,
}

impl Default for RxConfig {
    /// Strict, replay protection on, window 0: what Linux `macsec` defaults to.
    fn default() -> RxConfig {
        RxConfig {
            validate_frames: ValidateFrames::Strict,
            replay_protect: true,
            replay_window: 0,
        }
    }
}

/// How a delivered frame fared. Only `Ok` frames are authenticated; the rest are delivered
/// because validateFrames is not Strict, as 802.1AE prescribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Validated (InPktsOK).
    Ok { sci: Sci, an: An, pn: u64 },
    /// Validated, but below the lowest acceptable PN with replay protection off (InPktsDelayed).
    Delayed { sci: Sci, an: An, pn: u64 },
    /// Failed validation, delivered because validateFrames is Check (InPktsInvalid).
    Invalid { sci: Sci, an: An, pn: u64 },
    /// Not validated: validateFrames is Disabled (InPktsUnchecked).
    Unchecked { sci: Sci, an: An, pn: u64 },
    /// No SA in use for this AN (InPktsUnusedSA).
    UnusedSa { sci: Sci, an: An },
    /// No receive SC for this SCI (InPktsUnknownSCI).
    UnknownSci(Sci),
    /// No SecTAG (InPktsUntagged).
    Untagged,
}

/// A frame that [`RxSecY::validate`] delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Where the user data (EtherType first) now is in the frame, in clear.
    pub user: Range<usize>,
    pub accepted: Accepted,
}

/// A receive SC: the SAs of one peer SecY (§10.7.10).
#[derive(Clone, Debug)]
pub struct RxSc {
    sci: Sci,
    /// Shared by the copies of the SecY (one per receive worker): each SA's PN state is one.
    sas: [Option<Arc<RxSa>>; 4],
}

impl RxSc {
    pub fn sci(&self) -> Sci {
        self.sci
    }

    pub fn sa(&self, an: An) -> Option<&RxSa> {
        self.sas[an.index()].as_deref()
    }
}

/// The receive half of a SecY. It is owned by one receive worker at a time: the replay state
/// changes with every frame.
/// A copy (`clone`) shares the SAs: receive workers validating frames of one SA on several
/// threads each hold one, and every PN is accepted once among them.
#[derive(Clone, Debug)]
pub struct RxSecY {
    suite: CipherSuite,
    backend: Backend,
    cfg: RxConfig,
    scs: Vec<RxSc>,
}

impl RxSecY {
    pub fn new(suite: CipherSuite, backend: Backend, cfg: RxConfig) -> RxSecY {
        RxSecY {
            suite,
            backend,
            cfg,
            scs: Vec::new(),
        }
    }

    pub fn suite(&self) -> CipherSuite {
        self.suite
    }

    pub fn config(&self) -> &RxConfig {
        &self.cfg
    }

    /// Changes validateFrames and the replay controls. A larger window only affects how far
    /// back the duplicate filter of SAs installed from now on reaches.
    pub fn set_config(&mut self, cfg: RxConfig) {
        self.cfg = cfg;
    }

    /// Creates the receive SC for a peer (802.1AE createReceiveSC).
    pub fn add_sc(&mut self, sci: Sci) -> Result<(), SaError> {
        if self.sc(sci).is_some() {
            return Err(SaError::ScExists(sci));
        }
        self.scs.push(RxSc {
            sci,
            sas: Default::default(),
        });
        Ok(())
    }

    pub fn remove_sc(&mut self, sci: Sci) -> Result<(), SaError> {
        let i = self.sc_index(sci).ok_or(SaError::NoSuchSc(sci))?;
        self.scs.swap_remove(i);
        Ok(())
    }

    pub fn sc(&self, sci: Sci) -> Option<&RxSc> {
        self.scs.iter().find(|sc| sc.sci == sci)
    }

    pub fn scs(&self) -> impl Iterator<Item = &RxSc> {
        self.scs.iter()
    }

    fn sc_index(&self, sci: Sci) -> Option<usize> {
        self.scs.iter().position(|sc| sc.sci == sci)
    }

    fn sa_ref(&self, sci: Sci, an: An) -> Result<&RxSa, SaError> {
        let i = self.sc_index(sci).ok_or(SaError::NoSuchSc(sci))?;
        self.scs[i].sas[an.index()]
            .as_deref()
            .ok_or(SaError::NoSuchSa(an))
    }

    /// Creates (or replaces) the receive SA `an` of the SC `sci` (802.1AE createReceiveSA).
    /// Frames below `lowest_pn` are late.
    pub fn install_sa(
        &mut self,
        sci: Sci,
        an: An,
        key: &SaKey<'_>,
        lowest_pn: u64,
    ) -> Result<(), SaError> {
        let i = self.sc_index(sci).ok_or(SaError::NoSuchSc(sci))?;
        let c = SaCrypto::new(self.suite, self.backend, sci, an, key, lowest_pn)?;
        let sa = RxSa::new(c, self.suite.is_xpn(), lowest_pn, self.cfg.replay_window);
        self.scs[i].sas[an.index()] = Some(Arc::new(sa));
        Ok(())
    }

    pub fn remove_sa(&mut self, sci: Sci, an: An) -> Result<(), SaError> {
        let i = self.sc_index(sci).ok_or(SaError::NoSuchSc(sci))?;
        self.scs[i].sas[an.index()]
            .take()
            .map(|_| ())
            .ok_or(SaError::NoSuchSa(an))
    }

    /// Raises the lowest acceptable PN of an SA (802.1AE updtRxSA), as MKA does.
    pub fn raise_lowest_pn(&mut self, sci: Sci, an: An, pn: u64) -> Result<(), SaError> {
        self.sa_ref(sci, an)?.raise_lowest_pn(pn);
        Ok(())
    }

    /// Checks a SecTAG and the frame length against it (§9.12). Returns the SecTAG, the offset
    /// of the secure data and its length.
    fn check_tag(&self, frame: &[u8]) -> Result<(SecTagRepr, usize, usize), BadTag> {
        let tag = SecTag::new_checked(&frame[ADDRS_LEN + 2..])?;
        let repr = SecTagRepr::parse(&tag)?;
        // §9.5, and Linux: E without C marks frames that are not for the controlled port.
        if repr.e && !repr.c {
            return Err(BadTag::ReservedEncoding);
        }
        let hdr = header_len(repr.sci.is_some());
        let available = frame
            .len()
            .checked_sub(hdr + ICV_LEN)
            .ok_or(BadTag::Truncated)?;
        let secure_data = if repr.short_len == 0 {
            // §9.7: SL 0 means at least 48 octets of secure data.
            if available < MIN_NON_SHORT_LEN {
                return Err(BadTag::ShortLength {
                    short_len: 0,
                    secure_data: available,
                });
            }
            available
        } else {
            // §9.7: SL gives the secure data length, so that padding up to the 802.3 minimum
            // frame (after the ICV) can be told apart; nothing else may follow the ICV.
            let sl = usize::from(repr.short_len);
            let padded = available > sl && frame.len() == ETH_MIN_FRAME_LEN;
            if sl >= MIN_NON_SHORT_LEN || (available != sl && !padded) {
                return Err(BadTag::ShortLength {
                    short_len: repr.short_len,
                    secure_data: available,
                });
            }
            sl
        };
        // 802.1AEbw §10.6: PN 0 is invalid without XPN, where it is just a low half.
        if repr.pn == 0 && !self.suite.is_xpn() {
            return Err(BadTag::ZeroPn);
        }
        Ok((repr, hdr, secure_data))
    }

    /// The SCI of a frame whose SecTAG does not carry one (§9.9).
    fn implicit_sci(&self, repr: &SecTagRepr, frame: &[u8]) -> Sci {
        let mut mac = [0; 6];
        mac.copy_from_slice(&frame[6..ADDRS_LEN]);
        if repr.scb {
            Sci::new(mac, Sci::PORT_SCB)
        } else if repr.es || self.scs.len() != 1 {
            Sci::new(mac, Sci::PORT_ES)
        } else {
            // Neither ES nor SCB nor SC: a point-to-point link with a single peer.
            self.scs[0].sci
        }
    }

    /// Sets the highest PN the SA `an` of `sci` accepts before it asks for more (see
    /// [`RxSecY::validate_reserving`]); SAs start without a limit.
    pub fn set_pn_limit(&mut self, sci: Sci, an: An, pn: u64) -> Result<(), SaError> {
        self.sa_ref(sci, an)?.set_limit(pn);
        Ok(())
    }

    /// Validates the frame in `frame` in place (§10.6). On success the user data, decrypted,
    /// is at `Received::user`. Every discard bumps its counter in `stats` and is an error.
    #[inline]
    pub fn validate(&mut self, stats: &mut RxStats, frame: &mut [u8]) -> Result<Received, RxError> {
        self.validate_reserving(stats, frame, |_, _, _| None)
    }

    /// [`RxSecY::validate`], for SAs whose replay state must survive a restart. A frame that
    /// validates with a PN above its SA's limit (see [`RxSecY::set_pn_limit`]) is accepted
    /// only if `reserve(sci, an, pn)` returns a new limit (the SA's from then on) at or above
    /// the PN, once that limit is durable; otherwise it is discarded and counted
    /// (InPktsUnreserved). Only authenticated PNs reach `reserve`: a forged frame cannot move
    /// what is stored.
    #[inline]
    pub fn validate_reserving(
        &mut self,
        stats: &mut RxStats,
        frame: &mut [u8],
        mut reserve: impl FnMut(Sci, An, u64) -> Option<u64>,
    ) -> Result<Received, RxError> {
        let strict = self.cfg.validate_frames == ValidateFrames::Strict;
        if frame.len() < ADDRS_LEN + 2 {
            stats.in_pkts_bad_tag += 1;
            return Err(BadTag::Truncated.into());
        }
        if frame[ADDRS_LEN..ADDRS_LEN + 2] != ETHERTYPE_MACSEC.to_be_bytes() {
            // §10.6: untagged frames reach the controlled port only when not Strict.
            if strict {
                stats.in_pkts_no_tag += 1;
                return Err(RxError::NoTag);
            }
            stats.in_pkts_untagged += 1;
            return Ok(Received {
                user: ADDRS_LEN..frame.len(),
                accepted: Accepted::Untagged,
            });
        }
        let (tag, hdr, secure_len) = match self.check_tag(frame) {
            Ok(checked) => checked,
            Err(bad) => {
                stats.in_pkts_bad_tag += 1;
                return Err(bad.into());
            }
        };
        let user = hdr..hdr + secure_len;
        let sci = match tag.sci {
            Some(sci) => sci,
            None => self.implicit_sci(&tag, frame),
        };

        // §10.6.1: an unknown SCI, or an SA not in use, is dropped if Strict or if the user
        // data was changed (C); otherwise delivered unverified.
        let Some(sc) = self.scs.iter_mut().find(|sc| sc.sci == sci) else {
            if tag.c || strict {
                stats.in_pkts_no_sci += 1;
                return Err(RxError::NoSci(sci));
            }
            stats.in_pkts_unknown_sci += 1;
            return Ok(Received {
                user,
                accepted: Accepted::UnknownSci(sci),
            });
        };
        let an = tag.an;
        let Some(sa) = sc.sas[an.index()].as_deref() else {
            if tag.c || strict {
                stats.in_pkts_not_using_sa += 1;
                return Err(RxError::NotUsingSa { sci, an });
            }
            stats.in_pkts_unused_sa += 1;
            return Ok(Received {
                user,
                accepted: Accepted::UnusedSa { sci, an },
            });
        };

        // §10.6.2: replay check before decryption, so obviously late frames cost no AES.
        let replay_protect = self.cfg.replay_protect;
        let Some(pn) = sa.recover_pn(tag.pn) else {
            stats.in_pkts_late += 1;
            return Err(RxError::Late {
                sci,
                an,
                pn: u64::from(tag.pn),
            });
        };
        if replay_protect && sa.is_late(pn) {
            stats.in_pkts_late += 1;
            return Err(RxError::Late { sci, an, pn });
        }

        // §10.6.3, §10.6.4: with validateFrames Disabled and C clear nothing is checked.
        let check = tag.c || self.cfg.validate_frames != ValidateFrames::Disabled;
        let valid = check && {
            let aad_len = if tag.e { hdr } else { user.end };
            let (aad, rest) = frame.split_at_mut(aad_len);
            let (data, rest) = rest.split_at_mut(user.end - aad_len);
            match rest.first_chunk::<ICV_LEN>() {
                Some(icv) => {
                    let c = sa.crypto();
                    c.key().open(&c.iv(pn), aad, data, icv).is_ok()
                }
                None => false,
            }
        };

        // §10.6.5: the replay check again, now that the PN is known to be authentic.
        if replay_protect && sa.is_late(pn) {
            stats.in_pkts_late += 1;
            return Err(RxError::Late { sci, an, pn });
        }
        if self.cfg.validate_frames != ValidateFrames::Disabled {
            if tag.e {
                stats.in_octets_decrypted += secure_len as u64;
            } else {
                stats.in_octets_validated += secure_len as u64;
            }
        }
        let accepted = if !valid {
            if tag.c || strict {
                stats.in_pkts_not_valid += 1;
                return Err(RxError::NotValid { sci, an, pn });
            }
            if self.cfg.validate_frames == ValidateFrames::Check {
                stats.in_pkts_invalid += 1;
                Accepted::Invalid { sci, an, pn }
            } else if pn < sa.lowest_pn() {
                stats.in_pkts_delayed += 1;
                Accepted::Delayed { sci, an, pn }
            } else {
                stats.in_pkts_unchecked += 1;
                Accepted::Unchecked { sci, an, pn }
            }
        } else {
            if pn > sa.limit() {
                if let Some(limit) = reserve(sci, an, pn) {
                    sa.set_limit(limit);
                }
                if pn > sa.limit() {
                    stats.in_pkts_unreserved += 1;
                    return Err(RxError::Unreserved { sci, an, pn });
                }
            }
            let delayed = pn < sa.lowest_pn();
            // The PN is claimed: with replay protection, one that another worker's copy of
            // the SecY claimed in the meantime (the same frame twice) is late after all.
            if !sa.accept(pn) && replay_protect {
                stats.in_pkts_late += 1;
                return Err(RxError::Late { sci, an, pn });
            }
            if delayed {
                stats.in_pkts_delayed += 1;
                Accepted::Delayed { sci, an, pn }
            } else {
                stats.in_pkts_ok += 1;
                Accepted::Ok { sci, an, pn }
            }
        };
        Ok(Received { user, accepted })
    }
}

//! Secure Associations: the key, the packet numbers and, on receive, the replay state.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::{Aead, Backend, IV_LEN};
use crate::window::SharedWindow;
use crate::{An, CipherSuite, SaError, Sci};

/// Short Secure Channel Identifier: stands in for the SCI in the XPN IV (§10.7.13, 802.1AEbw).
pub type Ssci = u32;

/// Salt of an XPN SA: 96 bits that are XORed into the IV (§14.7, 802.1AEbw).
pub type Salt = [u8; 12];

/// A Secure Association Key held in memory: never printed, wiped when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Sak(Vec<u8>);

impl Sak {
    pub fn new(bytes: Vec<u8>) -> Sak {
        Sak(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Sak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sak(<{} octets>)", self.0.len())
    }
}

impl Drop for Sak {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned u8. Volatile so the wipe is not optimised away.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// The keying material of one SA, as `ip macsec add ... sa` or MKA provide it.
#[derive(Clone, Copy)]
pub struct SaKey<'a> {
    /// The Secure Association Key: 16 octets (GCM-AES-128, -XPN-128) or 32 (the 256 suites).
    pub sak: &'a [u8],
    /// SSCI and salt, required by the XPN suites and refused by the others.
    pub xpn: Option<(Ssci, Salt)>,
}

impl fmt::Debug for SaKey<'_> {
    // The SAK never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaKey")
            .field("sak", &format_args!("<{} octets>", self.sak.len()))
            .field("ssci", &self.xpn.map(|(ssci, _)| ssci))
            .finish()
    }
}

/// What the GCM IV is built from, besides the PN.
#[derive(Clone, Copy)]
enum IvBase {
    /// IV = SCI (8) ‖ PN (4), §14.5.
    Sci([u8; 8]),
    /// IV = (SSCI (4) ‖ PN (8)) XOR salt, §14.7.
    Xpn { ssci: Ssci, salt: Salt },
}

impl IvBase {
    #[inline]
    fn iv(&self, pn: u64) -> [u8; IV_LEN] {
        let mut iv = [0; IV_LEN];
        match self {
            IvBase::Sci(sci) => {
                iv[..8].copy_from_slice(sci);
                iv[8..].copy_from_slice(&(pn as u32).to_be_bytes());
            }
            IvBase::Xpn { ssci, salt } => {
                iv[..4].copy_from_slice(&ssci.to_be_bytes());
                iv[4..].copy_from_slice(&pn.to_be_bytes());
                for (b, s) in iv.iter_mut().zip(salt) {
                    *b ^= s;
                }
            }
        }
        iv
    }
}

/// What every SA has: its AN, the backend's key and what the IV is built from.
pub(crate) struct SaCrypto {
    an: An,
    key: Box<dyn Aead>,
    iv: IvBase,
}

impl SaCrypto {
    #[inline]
    pub(crate) fn key(&self) -> &dyn Aead {
        &*self.key
    }

    #[inline]
    pub(crate) fn iv(&self, pn: u64) -> [u8; IV_LEN] {
        self.iv.iv(pn)
    }

    /// Checks the key and the starting PN against the suite, and makes the backend key and
    /// the IV base. An SA starts at a PN of at least 1, within the suite's PN space
    /// (§10.7.21).
    pub(crate) fn new(
        suite: CipherSuite,
        backend: Backend,
        sci: Sci,
        an: An,
        key: &SaKey<'_>,
        first_pn: u64,
    ) -> Result<SaCrypto, SaError> {
        if first_pn == 0 || first_pn > suite.max_pn() {
            return Err(SaError::PnOutOfRange {
                pn: first_pn,
                max: suite.max_pn(),
            });
        }
        let iv = match (suite.is_xpn(), key.xpn) {
            (true, Some((ssci, salt))) => IvBase::Xpn { ssci, salt },
            (false, None) => IvBase::Sci(*sci.as_bytes()),
            (true, None) => return Err(SaError::XpnParamsMissing(suite)),
            (false, Some(_)) => return Err(SaError::XpnParamsUnexpected(suite)),
        };
        Ok(SaCrypto {
            an,
            key: backend.key(suite, key.sak)?,
            iv,
        })
    }
}

/// A transmit SA. Its next PN is an atomic, so several transmit workers can share the SA and
/// still never reuse a PN.
pub struct TxSa {
    c: SaCrypto,
    /// The next PN to use. 0 means exhausted: PNs start at 1 and the XPN counter wraps to 0
    /// only after using 2^64 - 1.
    next_pn: AtomicU64,
    max_pn: u64,
    /// The highest PN this SA may use now: the end of the PNs reserved in durable storage,
    /// for keys that outlive the process (static keys), or `max_pn`.
    ceiling: AtomicU64,
    rekey_threshold: u64,
}

/// Why [`TxSa::take_pn`] gave no PN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NoPn {
    /// Every PN of the SA has been used.
    Exhausted,
    /// The next PN lies above the reserved ceiling: it may only be used once the reservation
    /// that covers it is durable.
    Unreserved,
}

impl TxSa {
    /// A transmit SA with `c`'s key (checked for `next_pn`), from `next_pn` on.
    pub(crate) fn new(c: SaCrypto, suite: CipherSuite, next_pn: u64, rekey_threshold: u64) -> TxSa {
        TxSa {
            c,
            next_pn: AtomicU64::new(next_pn),
            max_pn: suite.max_pn(),
            ceiling: AtomicU64::new(suite.max_pn()),
            rekey_threshold,
        }
    }

    pub fn an(&self) -> An {
        self.c.an
    }

    /// The PN the next frame will carry, or `None` once every PN has been used.
    pub fn next_pn(&self) -> Option<u64> {
        match self.next_pn.load(Ordering::Relaxed) {
            0 => None,
            pn if pn > self.max_pn => None,
            pn => Some(pn),
        }
    }

    /// True once a PN at or above the rekey threshold has been used: time for a new SAK.
    pub fn rekey_needed(&self) -> bool {
        self.next_pn().is_none_or(|pn| pn > self.rekey_threshold)
    }

    pub fn rekey_threshold(&self) -> u64 {
        self.rekey_threshold
    }

    /// The highest PN the SA may use before its ceiling is raised.
    pub fn ceiling(&self) -> u64 {
        self.ceiling.load(Ordering::Acquire)
    }

    /// Sets the highest PN the SA may use (at most the suite's last PN). Whoever persists
    /// PN reservations raises it once a reservation is durable; transmit workers sharing
    /// the SA see it at their next frame.
    pub fn set_ceiling(&self, pn: u64) {
        self.ceiling.store(pn.min(self.max_pn), Ordering::Release);
    }

    /// Takes the next PN: refused once the PN space is exhausted (the SA must not send again)
    /// or while the next PN is above the ceiling.
    #[inline]
    pub(crate) fn take_pn(&self) -> Result<u64, NoPn> {
        let max = self.max_pn;
        let ceiling = self.ceiling.load(Ordering::Acquire);
        self.next_pn
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pn| {
                (pn != 0 && pn <= ceiling && pn <= max).then(|| pn.wrapping_add(1))
            })
            .map_err(|pn| {
                if pn == 0 || pn > max {
                    NoPn::Exhausted
                } else {
                    NoPn::Unreserved
                }
            })
    }

    /// The key and the IV of a PN under it.
    #[inline]
    pub(crate) fn crypto(&self) -> &SaCrypto {
        &self.c
    }
}

impl fmt::Debug for TxSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxSa")
            .field("an", &self.c.an)
            .field("next_pn", &self.next_pn())
            .finish_non_exhaustive()
    }
}

/// A receive SA: key, next and lowest acceptable PN (§10.7.14) and the duplicate filter, in
/// a [`SharedWindow`]; all of it behind `&self`, so that the SA can be shared by receive
/// workers (an `Arc` in each worker's copy of the SecY), each claiming the PNs it validates.
pub struct RxSa {
    c: SaCrypto,
    xpn: bool,
    /// The highest PN this SA may accept before more is reserved: frames above it are only
    /// accepted once the reservation is durable, so that a restart resumes above every PN
    /// accepted before it (static keys); `u64::MAX` otherwise.
    limit: AtomicU64,
    window: SharedWindow,
}

impl RxSa {
    /// A receive SA with `c`'s key (checked for `lowest_pn`), accepting from `lowest_pn` on,
    /// with a duplicate filter as wide as `window`.
    pub(crate) fn new(c: SaCrypto, xpn: bool, lowest_pn: u64, window: u32) -> RxSa {
        RxSa {
            c,
            xpn,
            limit: AtomicU64::new(u64::MAX),
            window: SharedWindow::new(window, lowest_pn),
        }
    }

    pub fn an(&self) -> An {
        self.c.an
    }

    /// One above the highest PN received and validated.
    pub fn next_pn(&self) -> u64 {
        self.window.next_pn()
    }

    /// The lowest PN that replay protection still accepts.
    pub fn lowest_pn(&self) -> u64 {
        self.window.lowest_pn()
    }

    /// The highest PN the SA accepts before its limit is raised.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    pub(crate) fn set_limit(&self, pn: u64) {
        self.limit.store(pn, Ordering::Release);
    }

    /// Raises the lowest acceptable PN, as the KaY does from a peer's "lowest acceptable PN"
    /// (802.1X §9.10.1). It never lowers it.
    pub(crate) fn raise_lowest_pn(&self, pn: u64) {
        self.window.raise_lowest(pn);
    }

    /// The full PN of a frame from the PN field. With XPN only the low 32 bits are sent; the
    /// high 32 come from the lowest acceptable PN (802.1AE-2018 §10.6.2): the same, or one more
    /// if the low bits are below those of the lowest acceptable PN. `None` if that overflows.
    #[inline]
    pub(crate) fn recover_pn(&self, pn_field: u32) -> Option<u64> {
        if !self.xpn {
            return Some(u64::from(pn_field));
        }
        let lowest = self.lowest_pn();
        let high = lowest & 0xffff_ffff_0000_0000;
        let candidate = high | u64::from(pn_field);
        if pn_field < lowest as u32 {
            candidate.checked_add(1 << 32)
        } else {
            Some(candidate)
        }
    }

    /// Replay check (§10.6.2, done before and again after decryption): below the lowest
    /// acceptable PN, or already accepted inside the window.
    #[inline]
    pub(crate) fn is_late(&self, pn: u64) -> bool {
        self.window.is_late(pn)
    }

    /// Records a validated frame (§10.6.5): claims its PN, advancing the next PN and the
    /// window. False if another frame claimed it first (a duplicate that a receive worker on
    /// another thread validated at the same time) or it fell out of the window meanwhile.
    #[inline]
    pub(crate) fn accept(&self, pn: u64) -> bool {
        self.window.accept(pn)
    }

    /// The key and the IV of a PN under it.
    #[inline]
    pub(crate) fn crypto(&self) -> &SaCrypto {
        &self.c
    }
}

impl fmt::Debug for RxSa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxSa")
            .field("an", &self.c.an)
            .field("next_pn", &self.next_pn())
            .field("lowest_pn", &self.lowest_pn())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xpn_iv_matches_the_annex_c_construction() {
        // IV = (SSCI ‖ PN) XOR salt, with the values of the 802.1AEbw Annex C vectors.
        let salt: Salt = [
            0xe6, 0x30, 0xe8, 0x1a, 0x48, 0xde, 0x86, 0xa2, 0x1c, 0x66, 0xfa, 0x6d,
        ];
        let iv = IvBase::Xpn {
            ssci: 0x7a30_c118,
            salt,
        }
        .iv(0xb0df_459c_76d4_57ed);
        let mut expected = [
            0x7a, 0x30, 0xc1, 0x18, 0xb0, 0xdf, 0x45, 0x9c, 0x76, 0xd4, 0x57, 0xed,
        ];
        for (e, s) in expected.iter_mut().zip(salt) {
            *e ^= s;
        }
        assert_eq!(iv, expected);
    }
}

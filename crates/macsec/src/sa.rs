//! Secure Associations: the key, the packet numbers and, on receive, the replay state.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::crypto::{Aead, Backend, IV_LEN};
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

/// Remembers which PNs of the last few thousand were accepted, so that a replayed frame whose
/// PN is still inside the replay window is dropped too. 802.1AE itself only checks against the
/// lowest acceptable PN (§10.6.2) and would accept such a frame; this is stricter and costs one
/// bit per PN of window, allocated when the SA is installed.
struct SeenPns {
    words: Box<[u64]>,
    /// The highest PN marked so far.
    top: u64,
}

/// Duplicates are tracked over at most this many PNs below the highest one seen.
const MAX_TRACKED_PNS: u64 = 1 << 16;

impl SeenPns {
    fn new(window: u32, next_pn: u64) -> SeenPns {
        let tracked = u64::from(window).min(MAX_TRACKED_PNS);
        // One spare word: the word holding `top` is only partly in use (RFC 6479 §2).
        let words = tracked.div_ceil(64) as usize + 1;
        SeenPns {
            words: vec![0; words].into_boxed_slice(),
            top: next_pn.saturating_sub(1),
        }
    }

    /// The PNs below `top` whose bits are still meaningful.
    fn span(&self) -> u64 {
        (self.words.len() as u64 - 1) * 64
    }

    fn bit(&self, pn: u64) -> (usize, u64) {
        let n = self.words.len() as u64;
        (((pn / 64) % n) as usize, 1 << (pn % 64))
    }

    fn seen(&self, pn: u64) -> bool {
        if pn > self.top || self.top - pn >= self.span() {
            return false;
        }
        let (w, b) = self.bit(pn);
        self.words[w] & b != 0
    }

    fn mark(&mut self, pn: u64) {
        if pn > self.top {
            let n = self.words.len() as u64;
            let (old, new) = (self.top / 64, pn / 64);
            if new - old >= n {
                self.words.fill(0);
            } else {
                for w in old + 1..=new {
                    self.words[(w % n) as usize] = 0;
                }
            }
            self.top = pn;
        } else if self.top - pn >= self.span() {
            return;
        }
        let (w, b) = self.bit(pn);
        self.words[w] |= b;
    }
}

/// A receive SA: key, next and lowest acceptable PN (§10.7.14), and the duplicate filter.
pub struct RxSa {
    c: SaCrypto,
    xpn: bool,
    next_pn: u64,
    lowest_pn: u64,
    /// The highest PN this SA may accept before more is reserved: frames above it are only
    /// accepted once the reservation is durable, so that a restart resumes above every PN
    /// accepted before it (static keys); `u64::MAX` otherwise.
    limit: u64,
    seen: SeenPns,
}

impl RxSa {
    /// A receive SA with `c`'s key (checked for `lowest_pn`), accepting from `lowest_pn` on,
    /// with a duplicate filter as wide as `window`.
    pub(crate) fn new(c: SaCrypto, xpn: bool, lowest_pn: u64, window: u32) -> RxSa {
        RxSa {
            c,
            xpn,
            next_pn: lowest_pn,
            lowest_pn,
            limit: u64::MAX,
            seen: SeenPns::new(window, lowest_pn),
        }
    }

    pub fn an(&self) -> An {
        self.c.an
    }

    /// One above the highest PN received and validated.
    pub fn next_pn(&self) -> u64 {
        self.next_pn
    }

    /// The lowest PN that replay protection still accepts.
    pub fn lowest_pn(&self) -> u64 {
        self.lowest_pn
    }

    /// The highest PN the SA accepts before its limit is raised.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn set_limit(&mut self, pn: u64) {
        self.limit = pn;
    }

    /// Raises the lowest acceptable PN, as the KaY does from a peer's "lowest acceptable PN"
    /// (802.1X §9.10.1). It never lowers it.
    pub(crate) fn raise_lowest_pn(&mut self, pn: u64) {
        self.lowest_pn = self.lowest_pn.max(pn);
        self.next_pn = self.next_pn.max(self.lowest_pn);
    }

    /// The full PN of a frame from the PN field. With XPN only the low 32 bits are sent; the
    /// high 32 come from the lowest acceptable PN (802.1AE-2018 §10.6.2): the same, or one more
    /// if the low bits are below those of the lowest acceptable PN. `None` if that overflows.
    #[inline]
    pub(crate) fn recover_pn(&self, pn_field: u32) -> Option<u64> {
        if !self.xpn {
            return Some(u64::from(pn_field));
        }
        let high = self.lowest_pn & 0xffff_ffff_0000_0000;
        let candidate = high | u64::from(pn_field);
        if pn_field < self.lowest_pn as u32 {
            candidate.checked_add(1 << 32)
        } else {
            Some(candidate)
        }
    }

    /// Replay check (§10.6.2, done before and again after decryption): below the lowest
    /// acceptable PN, or already accepted inside the window.
    #[inline]
    pub(crate) fn is_late(&self, pn: u64) -> bool {
        pn < self.lowest_pn || self.seen.seen(pn)
    }

    /// Records a validated frame (§10.6.5): advances the next PN and the window.
    #[inline]
    pub(crate) fn accept(&mut self, pn: u64, window: u32) {
        if pn >= self.next_pn {
            self.next_pn = pn.saturating_add(1);
        }
        self.lowest_pn = self
            .lowest_pn
            .max(self.next_pn.saturating_sub(u64::from(window)));
        self.seen.mark(pn);
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
            .field("next_pn", &self.next_pn)
            .field("lowest_pn", &self.lowest_pn)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_pns_in_order_and_out_of_order() {
        let mut s = SeenPns::new(128, 1);
        assert!(!s.seen(1));
        s.mark(1);
        assert!(s.seen(1));
        s.mark(5);
        assert!(s.seen(5) && !s.seen(3) && !s.seen(4));
        s.mark(3);
        assert!(s.seen(3));
        // Jump far ahead: everything old is forgotten, the new PN is remembered.
        s.mark(10_000);
        assert!(s.seen(10_000));
        assert!(!s.seen(9_999));
        assert!(!s.seen(5), "beyond the tracked span");
    }

    #[test]
    fn seen_pns_across_word_boundaries() {
        let mut s = SeenPns::new(256, 1);
        for pn in (1..1000).step_by(3) {
            s.mark(pn);
        }
        for pn in 1000 - 256..1000 {
            assert_eq!(s.seen(pn), pn % 3 == 1, "pn {pn}");
        }
    }

    #[test]
    fn seen_pns_window_zero_tracks_nothing() {
        // With no window the lowest acceptable PN already rejects every PN seen before.
        let mut s = SeenPns::new(0, 7);
        s.mark(7);
        assert!(!s.seen(7));
        assert_eq!(s.span(), 0);
    }

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

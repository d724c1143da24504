//! A replay window that several receive workers share without a lock: the groundwork for
//! validating one SA's frames on several threads (a link whose datagrams a reuseport group
//! spreads over workers).
//!
//! 802.1AE's replay check (§10.6.2) is a comparison with the lowest acceptable PN; this one
//! also refuses a PN accepted before inside the window (as `SeenPns` does for one thread).
//! The window is a ring of 64-bit words, each holding 32 PNs' bits in its low half and, in its
//! high half, the tag of the 32-PN block it holds now (the PN divided by 32, its low 32 bits).
//! A PN claims its bit with one compare-and-swap: if the word holds an older block, the PN
//! takes the word over for its own (those older PNs are out of the window now); if a newer
//! one, the PN is too old; if its own, the bit says whether it was taken. Because a block's
//! word is only ever taken over by a newer block, a PN whose word moved on is at least the
//! ring's span minus one word behind the highest PN seen: every PN within `window` of the
//! highest is judged exactly, whatever the interleaving of the threads.
//!
//! The tags are 32 bits of a 59-bit block number: two blocks are compared by their wrapping
//! difference, exact while they are less than 2^31 blocks (2^36 PNs) apart, which the ring's
//! span (at most 2^16 PNs) keeps them.

use std::sync::atomic::{AtomicU64, Ordering};

/// PNs per word.
const BLOCK: u64 = 32;
/// Tracked at most: as `SeenPns`.
const MAX_WINDOW: u64 = 1 << 16;

pub struct SharedWindow {
    words: Box<[AtomicU64]>,
    /// One above the highest PN accepted.
    next: AtomicU64,
    /// The lowest acceptable PN as the KaY (or the SA's start) set it; the window raises it
    /// further to `next - window`, computed when read (one atomic write a frame fewer).
    lowest: AtomicU64,
    window: u64,
}

fn tag(pn: u64) -> u32 {
    (pn / BLOCK) as u32
}

impl SharedWindow {
    /// A window `window` PNs wide, accepting from `lowest` on.
    pub fn new(window: u32, lowest: u64) -> SharedWindow {
        let window = u64::from(window).min(MAX_WINDOW);
        // One word more than the window spans, and one for the partly used top word: a PN
        // `window` below the highest still has its own word.
        let n = window.div_ceil(BLOCK) as usize + 2;
        let first = tag(lowest);
        SharedWindow {
            // Every word starts as holding a block just below the lowest: taken over by the
            // first PN of its place.
            words: (0..n)
                .map(|_| AtomicU64::new(u64::from(first.wrapping_sub(1)) << 32))
                .collect(),
            next: AtomicU64::new(lowest),
            lowest: AtomicU64::new(lowest),
            window,
        }
    }

    pub fn next_pn(&self) -> u64 {
        self.next.load(Ordering::Acquire)
    }

    pub fn lowest_pn(&self) -> u64 {
        let next = self.next.load(Ordering::Acquire);
        self.lowest
            .load(Ordering::Acquire)
            .max(next.saturating_sub(self.window))
    }

    /// Raises the lowest acceptable PN (never lowers it), as the KaY does.
    pub fn raise_lowest(&self, pn: u64) {
        self.lowest.fetch_max(pn, Ordering::AcqRel);
        self.next.fetch_max(pn, Ordering::AcqRel);
    }

    fn slot(&self, pn: u64) -> (&AtomicU64, u64) {
        let n = self.words.len() as u64;
        (&self.words[((pn / BLOCK) % n) as usize], 1 << (pn % BLOCK))
    }

    /// The check before decryption: below the lowest acceptable PN, or taken already. (Only
    /// an early way out: [`SharedWindow::accept`] decides.)
    pub fn is_late(&self, pn: u64) -> bool {
        if pn < self.lowest_pn() {
            return true;
        }
        let (word, bit) = self.slot(pn);
        let w = word.load(Ordering::Acquire);
        let d = tag(pn).wrapping_sub((w >> 32) as u32) as i32;
        d < 0 || (d == 0 && w & bit != 0)
    }

    /// After decryption: claims `pn` for this frame. False if it is below the lowest
    /// acceptable PN, was claimed before, or its word has moved on to a newer block; true
    /// exactly once for every other PN, whichever thread asks.
    pub fn accept(&self, pn: u64) -> bool {
        if pn < self.lowest_pn() {
            return false;
        }
        let (word, bit) = self.slot(pn);
        let t = tag(pn);
        let mut w = word.load(Ordering::Acquire);
        loop {
            let d = t.wrapping_sub((w >> 32) as u32) as i32;
            let new = if d > 0 {
                (u64::from(t) << 32) | bit
            } else if d < 0 || w & bit != 0 {
                return false;
            } else {
                w | bit
            };
            match word.compare_exchange_weak(w, new, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        let next = pn.saturating_add(1);
        if next > self.next.load(Ordering::Acquire) {
            self.next.fetch_max(next, Ordering::AcqRel);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::Arc;

    #[test]
    fn one_thread_in_order_and_out() {
        let w = SharedWindow::new(64, 1);
        assert!(!w.accept(0), "below the lowest");
        for pn in [1, 5, 3, 2, 100, 70] {
            assert!(!w.is_late(pn));
            assert!(w.accept(pn), "{pn}");
            assert!(w.is_late(pn));
            assert!(!w.accept(pn), "{pn} twice");
        }
        assert_eq!(w.next_pn(), 101);
        assert_eq!(w.lowest_pn(), 101 - 64);
        assert!(!w.accept(30), "below the window");
        assert!(w.accept(40));
        w.raise_lowest(90);
        assert!(!w.accept(85));
        assert!(w.accept(95));
    }

    #[test]
    fn across_word_boundaries() {
        let w = SharedWindow::new(256, 1);
        for pn in (1..1000).step_by(3) {
            assert!(w.accept(pn));
        }
        for pn in 1000 - 256..1000 {
            assert_eq!(w.is_late(pn), pn % 3 == 1, "pn {pn}");
        }
        // Far ahead: everything old is late.
        assert!(w.accept(100_000));
        assert!(w.is_late(99_000) && !w.is_late(99_999));
    }

    #[test]
    fn window_zero_demands_rising_pns() {
        let w = SharedWindow::new(0, 7);
        assert!(w.accept(7));
        assert!(!w.accept(7));
        assert!(!w.accept(6));
        assert!(w.accept(9));
        assert!(!w.accept(8), "below the next PN");
        assert_eq!((w.next_pn(), w.lowest_pn()), (10, 10));
    }

    #[test]
    fn high_xpn_pns() {
        let base = (7u64 << 32) - 10;
        let w = SharedWindow::new(128, base);
        for pn in base..base + 300 {
            assert!(w.accept(pn), "{pn}");
        }
        assert!(!w.accept(base + 299));
        assert!(w.is_late(base));
    }

    proptest! {
        /// PNs shuffled within chunks of `reorder` (none more than two chunks behind the
        /// highest sent before it), some repeated, spread over threads: each PN accepted exactly once, and none
        /// refused (the window is wider than the reordering and the threads' skew).
        #[test]
        fn threads_accept_each_pn_exactly_once(
            seed in any::<u64>(),
            threads in 2usize..5,
            count in 100u64..3000,
            reorder in 1u64..200,
            dup_every in 2u64..20,
        ) {
            // A bounded reordering: swap within chunks of `reorder` PNs.
            let mut pns: Vec<u64> = (1..=count).collect();
            let mut s = seed | 1;
            for chunk in pns.chunks_mut(reorder as usize) {
                for i in (1..chunk.len()).rev() {
                    s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                    chunk.swap(i, (s % (i as u64 + 1)) as usize);
                }
            }
            let mut sent = Vec::new();
            for (i, pn) in pns.iter().enumerate() {
                sent.push(*pn);
                if i as u64 % dup_every == 0 {
                    sent.push(*pn);
                }
            }
            // Each thread takes every `threads`-th frame, as a reuseport group might, and the
            // threads meet every 16 frames: they race within a round, and no thread runs
            // more than two rounds ahead of the frames it could be held back by. The window
            // covers the reordering and that skew.
            const ROUND: usize = 16;
            let skew = 2 * ROUND * threads;
            // Shuffled within chunks of `reorder`, a PN comes after others up to two chunks
            // above it.
            let w = Arc::new(SharedWindow::new((2 * reorder as usize + skew + 64) as u32, 1));
            let rounds = sent.len().div_ceil(threads).div_ceil(ROUND);
            let barrier = Arc::new(std::sync::Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (w, barrier) = (w.clone(), barrier.clone());
                    let mine: Vec<u64> = sent.iter().copied().skip(t).step_by(threads).collect();
                    std::thread::spawn(move || {
                        let mut got = Vec::new();
                        for r in 0..rounds {
                            let end = ((r + 1) * ROUND).min(mine.len());
                            for &pn in mine.get(r * ROUND..end).unwrap_or(&[]) {
                                if w.accept(pn) {
                                    got.push(pn);
                                }
                            }
                            barrier.wait();
                        }
                        got
                    })
                })
                .collect();
            let mut accepted: Vec<u64> = handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect();
            accepted.sort_unstable();
            let before = accepted.len();
            accepted.dedup();
            prop_assert_eq!(accepted.len(), before, "a PN accepted twice");
            prop_assert_eq!(accepted.len() as u64, count, "a PN inside the window refused");
        }
    }
}

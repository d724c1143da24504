//! The fuzz entry point, shared by `crates/mka/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as an EAPOL frame, decoded, its ICV checked, and what decodes encoded again
//! to the same parameter sets. Nothing may panic.

use crate::keys::{icv, verify_icv, Secret};
use crate::mkpdu::{decode, encode};

pub fn mkpdu(data: &[u8]) {
    let Ok(ick) = Secret::new(vec![0x42; 16]) else {
        return;
    };
    let addrs = [1, 0x80, 0xc2, 0, 0, 3, 2, 0, 0, 0, 0, 1];
    let Ok(p) = decode(data) else {
        return;
    };
    let _ = verify_icv(&ick, &addrs, p.covered, p.icv);
    if let Ok(again) = encode(&p.mkpdu, |c| icv(&ick, &addrs, c).unwrap_or([0; 16])) {
        let q = decode(&again).expect("what we encode decodes");
        // Unknown parameter sets are skipped, not sent on.
        let mut want = p.mkpdu.clone();
        want.unknown.clear();
        assert_eq!(q.mkpdu, want);
    }
}

/// Two ports' KaYs driven by arbitrary bytes: which keychains they hold, which of their
/// MKPDUs arrive (dropped, delayed, duplicated, replayed: every one authentic, so that the
/// state machines behind the ICV are what is exercised), timer ticks, traffic, rekey requests
/// keychain reloads, and CAKs distributed by the first CA's key server (the member puts each
/// it takes first in its keychain, as a replaced CAK is). The data plane is modelled as the daemon drives it: PNs reported
/// before every input, SAs installed as asked. Two invariants are asserted:
///
/// - once the wire has been quiet and loss-free for ten seconds at the end (every MKPDU
///   delivered, hellos exchanged), a side with a live peer transmits on an AN under a key
///   the other side receives with there (MKPDUs lost or late may leave a side acting on
///   what the peer said before, for a while: that is what the protocol recovers from);
/// - no (SAK, PN) pair is ever used twice by one side (its SCI is the rest of the IV; both
///   sides share each SAK), whatever the principal CA and the ANs do.
pub fn kay_pair(data: &[u8]) {
    use crate::kay::{Action, CaKey, Kay};
    use crate::mkpdu::{Ki, MKA_GROUP};
    use crate::participant::{Config, NewSa, PnStatus};
    use std::collections::HashMap;
    use std::time::{Duration, Instant};

    let Some((&chains, mut ops)) = data.split_first() else {
        return;
    };
    let key = |n: u8| CaKey {
        ckn: vec![n; 8],
        cak: Secret::new(vec![n; 16]).expect("a 16-octet CAK"),
    };
    // A keychain from 3 bits: which of keys 1..3, in order; never empty.
    let chain = |bits: u8| -> Vec<CaKey> {
        let v: Vec<CaKey> = (1..=3u8)
            .filter(|n| bits & (1 << (n - 1)) != 0)
            .map(key)
            .collect();
        if v.is_empty() {
            vec![key(1)]
        } else {
            v
        }
    };
    let template = |sci: u8| Config {
        cak: Secret::new(vec![0; 16]).expect("a 16-octet CAK"),
        ckn: vec![0],
        sci: [2, 0, 0, 0, 0, sci, 0, 1],
        priority: 16,
        sak_len: 16,
        cipher_suite: None,
        xpn: false,
        rekey_interval: Some(Duration::from_secs(30)),
        pn_threshold: 1 << 20,
        take_cak: true,
    };

    /// One port as the daemon and its data plane see it.
    struct Side {
        kay: Kay,
        addrs: [u8; 12],
        rx: [Option<Ki>; 4],
        /// Per AN: the transmit SA's key, its SAK and next PN.
        tx_sa: [Option<(Ki, Vec<u8>, u64)>; 4],
        tx_an: Option<u8>,
        /// Keys whose CAK this side took out of its keychain.
        removed: Vec<Ki>,
        /// Its keychain, and the CAKs distributed to it, not yet put in.
        chain: Vec<CaKey>,
        took: Vec<CaKey>,
    }
    impl Side {
        fn pns(&self) -> PnStatus {
            PnStatus {
                tx: self
                    .tx_an
                    .and_then(|an| self.tx_sa[usize::from(an)].as_ref())
                    .map(|(ki, _, pn)| (*ki, *pn)),
                rx_lowest: [None; 4],
            }
        }
    }
    let now0 = Instant::now();
    let mut now = now0;
    let side = |sci: u8, bits: u8| {
        let mut addrs = [0u8; 12];
        addrs[..6].copy_from_slice(&MKA_GROUP);
        addrs[6..].copy_from_slice(&[2, 0, 0, 0, 0, sci]);
        Kay::new(template(sci), chain(bits), now0).map(|kay| Side {
            kay,
            addrs,
            rx: [None; 4],
            tx_sa: Default::default(),
            tx_an: None,
            removed: Vec::new(),
            chain: chain(bits),
            took: Vec::new(),
        })
    };
    let (Ok(a), Ok(b)) = (side(1, chains & 7), side(2, (chains >> 3) & 7)) else {
        return;
    };
    let mut s = [a, b];
    // MKPDUs in flight to each side, and every MKPDU ever sent to it (for replays).
    let mut wire: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    let mut sent: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    // Every PN used under each SAK by each side: ranges [from, to).
    type Used = HashMap<(Vec<u8>, usize), Vec<(u64, u64)>>;
    let mut used = Used::new();

    fn apply(
        s: &mut [Side; 2],
        i: usize,
        acts: Vec<Action>,
        wire: &mut [Vec<Vec<u8>>; 2],
        sent: &mut [Vec<Vec<u8>>; 2],
    ) {
        let to = 1 - i;
        for a in acts {
            match a {
                Action::Send(f) => {
                    if wire[to].len() < 64 {
                        wire[to].push(f.clone());
                    }
                    if sent[to].len() < 256 {
                        sent[to].push(f);
                    }
                }
                Action::InstallRx(NewSa { an, ki, .. }) => s[i].rx[usize::from(an & 3)] = Some(ki),
                Action::RemoveRx { an, .. } => s[i].rx[usize::from(an & 3)] = None,
                Action::InstallTx {
                    sa: NewSa { an, ki, sak, .. },
                    next_pn,
                } => {
                    s[i].tx_sa[usize::from(an & 3)] = Some((ki, sak.as_bytes().to_vec(), next_pn));
                    s[i].tx_an = Some(an & 3);
                }
                Action::UseTx { an, ki } => {
                    let held = s[i].tx_sa[usize::from(an & 3)].as_ref().map(|t| t.0);
                    assert_eq!(held, Some(ki), "UseTx of an AN that holds another key");
                    s[i].tx_an = Some(an & 3);
                }
                Action::Cak { key, .. } => s[i].took.push(key),
                Action::Live { .. } | Action::Principal(_) => {}
            }
        }
    }

    // A CAK a side took goes first in its keychain (at most three entries).
    fn put_in(
        s: &mut [Side; 2],
        now: Instant,
        wire: &mut [Vec<Vec<u8>>; 2],
        sent: &mut [Vec<Vec<u8>>; 2],
    ) {
        for i in 0..2 {
            for k in std::mem::take(&mut s[i].took) {
                if s[i].chain.iter().any(|c| c.ckn == k.ckn) {
                    continue;
                }
                s[i].chain.insert(0, k);
                s[i].chain.truncate(3);
                let before: Vec<Ki> = s[i].kay.keys();
                let chain = s[i].chain.clone();
                let Ok(acts) = s[i].kay.set_keys(chain, now) else {
                    continue;
                };
                let after = s[i].kay.keys();
                s[i].removed
                    .extend(before.into_iter().filter(|k| !after.contains(k)));
                apply(s, i, acts, wire, sent);
            }
        }
    }

    while let Some((&op, rest)) = ops.split_first() {
        ops = rest;
        let arg = ops.first().copied().unwrap_or(0);
        let i = usize::from(op & 1);
        put_in(&mut s, now, &mut wire, &mut sent);
        // The daemon reports the data plane's PNs before every input.
        for x in s.iter_mut() {
            let pns = x.pns();
            x.kay.set_pns(pns);
        }
        match (op >> 1) % 8 {
            // Time passes; due timers fire.
            0 => {
                now += Duration::from_millis(100 * u64::from(arg % 80 + 1));
                ops = ops.get(1..).unwrap_or(&[]);
                for j in 0..2 {
                    if s[j].kay.next_timer().is_some_and(|t| t <= now) {
                        let acts = s[j].kay.on_timer(now);
                        apply(&mut s, j, acts, &mut wire, &mut sent);
                    }
                }
            }
            // The oldest MKPDU in flight to side i arrives.
            1 | 2 => {
                if !wire[i].is_empty() {
                    let f = wire[i].remove(0);
                    let addrs = s[1 - i].addrs;
                    let acts = s[i].kay.on_mkpdu(now, &addrs, &f);
                    apply(&mut s, i, acts, &mut wire, &mut sent);
                }
            }
            // The oldest is lost.
            3 => {
                if !wire[i].is_empty() {
                    wire[i].remove(0);
                }
            }
            // An MKPDU sent to side i earlier arrives again (a replay).
            4 => {
                ops = ops.get(1..).unwrap_or(&[]);
                if !sent[i].is_empty() {
                    let f = sent[i][usize::from(arg) % sent[i].len()].clone();
                    let addrs = s[1 - i].addrs;
                    let acts = s[i].kay.on_mkpdu(now, &addrs, &f);
                    apply(&mut s, i, acts, &mut wire, &mut sent);
                }
            }
            // Side i sends frames: PNs used under its transmit SA.
            5 => {
                ops = ops.get(1..).unwrap_or(&[]);
                let n = 1u64 << (arg % 21);
                if let Some(an) = s[i].tx_an {
                    if let Some((_, sak, next)) = s[i].tx_sa[usize::from(an)].as_mut() {
                        let range = (*next, next.saturating_add(n));
                        let ranges = used.entry((sak.clone(), i)).or_default();
                        for r in ranges.iter() {
                            assert!(
                                range.1 <= r.0 || range.0 >= r.1,
                                "PNs {range:?} reused under one SAK (used before: {r:?})"
                            );
                        }
                        ranges.push(range);
                        *next = range.1;
                    }
                }
            }
            // Side i asks for a rekey.
            6 => {
                let _ = s[i].kay.request_rekey();
            }
            // Side i distributes a CAK in its first CA (if it is its key server).
            _ if arg & 8 != 0 => {
                ops = ops.get(1..).unwrap_or(&[]);
                let k = key(4 + (arg >> 4) % 4);
                if let Ok(acts) = s[i].kay.distribute_cak(0, now, &k) {
                    apply(&mut s, i, acts, &mut wire, &mut sent);
                }
            }
            // Side i reloads with another keychain.
            _ => {
                ops = ops.get(1..).unwrap_or(&[]);
                let before: Vec<Ki> = s[i].kay.keys();
                s[i].chain = chain(arg & 7);
                let Ok(acts) = s[i].kay.set_keys(s[i].chain.clone(), now) else {
                    return;
                };
                let after = s[i].kay.keys();
                s[i].removed
                    .extend(before.into_iter().filter(|k| !after.contains(k)));
                apply(&mut s, i, acts, &mut wire, &mut sent);
            }
        }
    }
    // The wire goes quiet and loses nothing for ten seconds: everything in flight arrives,
    // hellos go both ways.
    for _ in 0..20 {
        now += Duration::from_millis(500);
        put_in(&mut s, now, &mut wire, &mut sent);
        for j in 0..2 {
            let pns = s[j].pns();
            s[j].kay.set_pns(pns);
            if s[j].kay.next_timer().is_some_and(|t| t <= now) {
                let acts = s[j].kay.on_timer(now);
                apply(&mut s, j, acts, &mut wire, &mut sent);
            }
        }
        for _ in 0..200 {
            let Some(j) = (0..2).find(|j| !wire[*j].is_empty()) else {
                break;
            };
            let f = wire[j].remove(0);
            let pns = s[j].pns();
            s[j].kay.set_pns(pns);
            let addrs = s[1 - j].addrs;
            let acts = s[j].kay.on_mkpdu(now, &addrs, &f);
            apply(&mut s, j, acts, &mut wire, &mut sent);
        }
    }
    for i in 0..2 {
        let (Some(an), true) = (s[i].tx_an, s[i].kay.live()) else {
            continue;
        };
        let ki = s[i].tx_sa[usize::from(an)].as_ref().map(|t| t.0);
        assert_eq!(
            s[1 - i].rx[usize::from(an)],
            ki,
            "side {i}, with a live peer, transmits on AN {an} under a key the peer does not \
             receive with"
        );
    }
}

//! Two ports' KaYs with keychains, on a fake clock and an in-memory wire. After every action
//! the test checks the one thing a rollover must never break: a side transmits on an AN
//! only under the key the other side receives with on that AN.

use std::time::{Duration, Instant};

use interlink_mka::kay::{Action, CaKey, Kay};
use interlink_mka::keys::Secret;
use interlink_mka::mkpdu::{Ki, MKA_GROUP};
use interlink_mka::participant::{Config, NewSa};

fn template(sci_last: u8, take_cak: bool) -> Config {
    Config {
        cak: Secret::new(vec![0; 16]).unwrap(),
        ckn: vec![0],
        sci: [2, 0, 0, 0, 0, sci_last, 0, 1],
        priority: 16,
        sak_len: 32,
        cipher_suite: Some(0x0080_c200_0001_0002),
        xpn: false,
        rekey_interval: None,
        pn_threshold: 0xc000_0000,
        take_cak,
    }
}

fn key(n: u8) -> CaKey {
    CaKey {
        ckn: vec![n; 16],
        cak: Secret::new(vec![n; 32]).unwrap(),
    }
}

struct Side {
    kay: Kay,
    addrs: [u8; 12],
    /// The key on each receive AN.
    rx: [Option<Ki>; 4],
    /// The AN and key transmitted with.
    tx: Option<(u8, Ki)>,
    tx_switches: Vec<Ki>,
    principal: Vec<Option<usize>>,
    /// Receive keys removed.
    removed: Vec<Ki>,
    /// CAKs distributed to it, by keychain entry.
    caks: Vec<(usize, CaKey)>,
}

struct Pair {
    now: Instant,
    s: [Side; 2],
    /// A key in use is taken away on one side: its frames are refused until the other side
    /// falls back (the one test that does this says so).
    lossy: bool,
}

impl Pair {
    fn new(a: Vec<CaKey>, b: Vec<CaKey>) -> Pair {
        Pair::taking_caks(a, b, false)
    }

    fn taking_caks(a: Vec<CaKey>, b: Vec<CaKey>, take: bool) -> Pair {
        let now = Instant::now();
        let side = |sci: u8, keys| {
            let mut addrs = [0u8; 12];
            addrs[..6].copy_from_slice(&MKA_GROUP);
            addrs[6..].copy_from_slice(&[2, 0, 0, 0, 0, sci]);
            Side {
                kay: Kay::new(template(sci, take), keys, now).unwrap(),
                addrs,
                rx: [None; 4],
                tx: None,
                tx_switches: vec![],
                principal: vec![],
                removed: vec![],
                caks: vec![],
            }
        };
        Pair {
            now,
            s: [side(1, a), side(2, b)],
            lossy: false,
        }
    }

    fn apply(&mut self, i: usize, acts: Vec<Action>) {
        let mut queue = vec![(i, acts)];
        while let Some((from, acts)) = queue.pop() {
            let to = 1 - from;
            // One answer never switches the transmit SA twice: a non-principal CA's key is
            // not used even for a moment.
            let switches = acts
                .iter()
                .filter(|a| matches!(a, Action::InstallTx { .. } | Action::UseTx { .. }))
                .count();
            assert!(
                switches <= 1,
                "side {from}: {switches} transmit switches at once"
            );
            for a in acts {
                match a {
                    Action::Send(f) => {
                        let addrs = self.s[from].addrs;
                        let out = self.s[to].kay.on_mkpdu(self.now, &addrs, &f);
                        queue.push((to, out));
                    }
                    Action::InstallRx(NewSa { an, ki, .. }) => {
                        if let Some((tan, tki)) = self.s[to].tx {
                            assert!(
                                tan != an || tki == ki,
                                "side {from} replaced the receive SA on AN {an} that side {to} \
                                 transmits on"
                            );
                        }
                        self.s[from].rx[usize::from(an)] = Some(ki);
                    }
                    Action::InstallTx {
                        sa: NewSa { an, ki, .. },
                        ..
                    }
                    | Action::UseTx { an, ki } => {
                        assert_eq!(
                            self.s[to].rx[usize::from(an)],
                            Some(ki),
                            "side {from} transmits on AN {an} under a key side {to} does not \
                             receive with"
                        );
                        self.s[from].tx = Some((an, ki));
                        self.s[from].tx_switches.push(ki);
                    }
                    Action::RemoveRx { an, ki } => {
                        if let (Some((tan, tki)), false) = (self.s[to].tx, self.lossy) {
                            assert!(
                                tan != an || tki != ki,
                                "side {from} removed the receive SA side {to} transmits on"
                            );
                        }
                        assert_eq!(self.s[from].rx[usize::from(an)], Some(ki));
                        self.s[from].rx[usize::from(an)] = None;
                        self.s[from].removed.push(ki);
                    }
                    Action::Principal(p) => self.s[from].principal.push(p),
                    Action::Cak { ca, key } => self.s[from].caks.push((ca, key)),
                    Action::Live { .. } => {}
                }
            }
        }
    }

    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            for i in 0..2 {
                if self.s[i].kay.next_timer().is_some_and(|t| t <= self.now) {
                    let acts = self.s[i].kay.on_timer(self.now);
                    self.apply(i, acts);
                }
            }
        }
    }

    fn set_keys(&mut self, i: usize, keys: Vec<CaKey>) {
        let acts = self.s[i].kay.set_keys(keys, self.now).unwrap();
        self.apply(i, acts);
    }

    fn tx_key(&self, i: usize) -> Ki {
        self.s[i].tx.expect("transmitting").1
    }
}

#[test]
fn one_key_agrees() {
    let mut p = Pair::new(vec![key(1)], vec![key(1)]);
    p.run(Duration::from_secs(3));
    assert_eq!(p.tx_key(0), p.tx_key(1));
    assert_eq!(p.s[0].principal, [Some(0)]);
    assert!(p.s[0].kay.live());
}

#[test]
fn a_cak_rollover_moves_both_sides_to_the_new_key_without_a_gap() {
    let mut p = Pair::new(vec![key(1)], vec![key(1)]);
    p.run(Duration::from_secs(3));
    let k1 = p.tx_key(0);
    // Side 0 gets the new key first (preferred): nothing changes until side 1 has it too.
    p.set_keys(0, vec![key(2), key(1)]);
    p.run(Duration::from_secs(3));
    assert_eq!(p.tx_key(0), k1);
    assert_eq!(
        p.s[0].kay.principal(),
        Some(1),
        "the old CA is still the principal"
    );
    // Side 1 gets it: the new CA goes live, distributes its SAK, and both sides move to it.
    p.set_keys(1, vec![key(2), key(1)]);
    p.run(Duration::from_secs(3));
    let k2 = p.tx_key(0);
    assert_ne!(k2, k1);
    assert_eq!(p.tx_key(1), k2);
    assert_eq!(p.s[0].kay.principal(), Some(0));
    // The old key goes from both: no change to what is sent.
    p.set_keys(0, vec![key(2)]);
    p.set_keys(1, vec![key(2)]);
    p.run(Duration::from_secs(8));
    assert_eq!(p.tx_key(0), k2);
    assert_eq!(p.tx_key(1), k2);
    assert_eq!(p.s[0].kay.ckns().count(), 1);
    // The old CA's key is no longer accepted on either side.
    for i in 0..2 {
        assert!(p.s[i].removed.contains(&k1), "side {i}");
        assert!(!p.s[i].rx.contains(&Some(k1)), "side {i}");
        assert!(p.s[i].rx.contains(&Some(k2)), "side {i}");
    }
    // Every transmit switch was checked against the other side's receive SAs as it
    // happened (see `apply`): k1, then k2.
    assert_eq!(p.s[0].tx_switches, [k1, k2]);
    assert_eq!(p.s[1].tx_switches, [k1, k2]);
}

#[test]
fn sides_that_prefer_different_keys_still_carry_traffic() {
    let mut p = Pair::new(vec![key(1), key(2)], vec![key(2), key(1)]);
    p.run(Duration::from_secs(4));
    // Each transmits under its own preference; each receives with both.
    let (a, b) = (p.tx_key(0), p.tx_key(1));
    assert_ne!(a, b);
    assert_eq!(
        Some(a),
        p.s[0].kay.latest(0).map(|k| k.0),
        "side 0 prefers key 1"
    );
    assert_eq!(
        Some(b),
        p.s[1].kay.latest(0).map(|k| k.0),
        "side 1 prefers key 2"
    );
    assert_eq!(p.s[0].kay.latest(1).map(|k| k.0), Some(b));
    assert_eq!(p.s[0].kay.principal(), Some(0));
    assert_eq!(p.s[1].kay.principal(), Some(0));
    assert!(p.s[1].rx.contains(&Some(a)));
    assert!(p.s[0].rx.contains(&Some(b)));
}

#[test]
fn losing_the_preferred_ca_falls_back_to_the_other_sa_without_a_new_install() {
    let mut p = Pair::new(vec![key(1), key(2)], vec![key(1), key(2)]);
    p.run(Duration::from_secs(4));
    let k1 = p.tx_key(0);
    let switches = p.s[0].tx_switches.len();
    // Side 1 drops key 1, in use: it refuses it at once (a CAK taken away is no longer
    // trusted); side 0's CA 1 loses its peer after MKA Life Time, and side 0 falls back to
    // CA 2's key (already installed, so its PNs carry on).
    p.lossy = true;
    p.set_keys(1, vec![key(2)]);
    p.run(Duration::from_secs(8));
    let k2 = p.tx_key(0);
    assert_ne!(k2, k1);
    assert_eq!(p.s[0].kay.principal(), Some(1));
    assert!(p.s[0].tx_switches.len() > switches);
}

#[test]
fn a_ckn_outside_the_keychain_is_counted() {
    let mut p = Pair::new(vec![key(1)], vec![key(3)]);
    p.run(Duration::from_secs(3));
    assert!(!p.s[0].kay.live());
    assert!(p.s[0].kay.drops().get("other_ckn").copied().unwrap_or(0) >= 1);
    assert!(p.s[0].tx.is_none());
}

#[test]
fn keys_kept_across_a_reload_keep_their_state() {
    let mut p = Pair::new(vec![key(1)], vec![key(1)]);
    p.run(Duration::from_secs(3));
    let k1 = p.tx_key(0);
    // The same keychain again (a reload with nothing changed): no new SAK, no switch.
    p.set_keys(0, vec![key(1)]);
    p.set_keys(1, vec![key(1)]);
    p.run(Duration::from_secs(3));
    assert_eq!(p.tx_key(0), k1);
    assert_eq!(p.s[0].tx_switches, [k1]);
}

#[test]
fn a_distributed_cak_takes_over_from_the_configured_one_without_a_gap() {
    // Side 0 has the lower SCI at equal priority: it is the key server.
    let mut p = Pair::taking_caks(vec![key(1)], vec![key(1)], true);
    p.run(Duration::from_secs(3));
    let first = p.tx_key(0);
    assert!(p.s[0].kay.is_key_server_of(0) && p.s[0].kay.settled(0) && p.s[1].kay.settled(0));
    // The member cannot distribute one: it is not sent, now or with its hellos.
    let acts = p.s[1].kay.distribute_cak(0, p.now, &key(8)).unwrap();
    assert!(
        acts.iter().all(|a| !matches!(a, Action::Send(_))),
        "{acts:?}"
    );
    // A CAK of another length, or the CA's own CKN, is refused.
    for (ckn, len) in [(9, 16), (1, 32)] {
        let bad = CaKey {
            ckn: vec![ckn; 16],
            cak: Secret::new(vec![9; len]).unwrap(),
        };
        assert!(
            p.s[0].kay.distribute_cak(0, p.now, &bad).is_err(),
            "{ckn} {len}"
        );
    }
    // The key server's goes at once, and keeps going with its hellos: the member passes it
    // on once.
    let new = key(9);
    let acts = p.s[0].kay.distribute_cak(0, p.now, &new).unwrap();
    assert!(matches!(acts[..], [Action::Send(_)]), "{acts:?}");
    p.apply(0, acts);
    p.run(Duration::from_secs(5));
    assert_eq!(p.s[1].caks, vec![(0, new.clone())]);
    assert!(p.s[0].caks.is_empty());
    // Both put it first; the port moves to its CA, with no frame under a key the other side
    // lacks (the harness checks every step).
    for i in 0..2 {
        p.set_keys(i, vec![new.clone(), key(1)]);
    }
    p.run(Duration::from_secs(3));
    for i in 0..2 {
        assert!(p.s[i].kay.settled(0), "side {i}");
        assert!(!p.s[i].kay.settled(1), "side {i}");
        assert_eq!(p.s[i].principal.last(), Some(&Some(0)));
    }
    let second = p.tx_key(0);
    assert_ne!(first, second);
    // The configured CA goes on both sides; the link stays on the new one.
    for i in 0..2 {
        p.set_keys(i, vec![new.clone()]);
    }
    p.run(Duration::from_secs(10));
    for i in 0..2 {
        assert!(p.s[i].kay.settled(0), "side {i}");
        assert!(
            p.s[i].removed.contains(&first),
            "side {i}: {:?}",
            p.s[i].removed
        );
    }
    assert_eq!(p.tx_key(0), p.tx_key(1));
}

#[test]
fn a_member_that_takes_no_cak_ignores_one_and_counts_it_once() {
    let mut p = Pair::new(vec![key(1)], vec![key(1)]);
    p.run(Duration::from_secs(3));
    let acts = p.s[0].kay.distribute_cak(0, p.now, &key(9)).unwrap();
    p.apply(0, acts);
    p.run(Duration::from_secs(5));
    assert!(p.s[1].caks.is_empty());
    assert_eq!(p.s[1].kay.drops().get("unwanted_cak"), Some(&1));
}

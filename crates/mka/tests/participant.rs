//! Two (and three) MKA participants on a fake clock and an in-memory wire: they find each
//! other, elect a key server, distribute a SAK, install it for receive before transmit, rekey
//! with the next AN, notice a peer's loss; a wrong CAK gets nowhere.

use std::time::{Duration, Instant};

use interlink_mka::keys::Secret;
use interlink_mka::mkpdu::decode;
use interlink_mka::participant::{salt, Action, Config, NewSa, Participant, PnStatus, XpnParams};

fn cfg(sci_last: u8, priority: u8, cak: u8) -> Config {
    Config {
        cak: Secret::new(vec![cak; 32]).unwrap(),
        ckn: b"aws-use1-ckn".to_vec(),
        sci: [2, 0, 0, 0, 0, sci_last, 0, 1],
        priority,
        sak_len: 32,
        cipher_suite: Some(0x0080_c200_0001_0002),
        xpn: false,
        rekey_interval: None,
        pn_threshold: 0xc000_0000,
        take_cak: false,
    }
}

fn xpn_cfg(sci_last: u8) -> Config {
    Config {
        cipher_suite: Some(0x0080_c200_0001_0004),
        xpn: true,
        pn_threshold: 0xc000_0000_0000_0000,
        ..cfg(sci_last, 16, 0x11)
    }
}

/// Installs, as (AN, key number): for receive, and for transmit.
type Installs = (Vec<(u8, u32)>, Vec<(u8, u32)>);

/// Participants and what each has been told to install.
struct Net {
    now: Instant,
    members: Vec<Participant>,
    /// Per member: (rx installs, tx installs) as (an, key number).
    installs: Vec<Installs>,
    /// Per member: the live transitions.
    live: Vec<Vec<bool>>,
    /// Members that are cut off (neither send nor receive).
    down: Vec<bool>,
    /// Every install in the order it happened: (member, transmit?, key number).
    order: Vec<(usize, bool, u32)>,
    /// Per member: the XPN parameters of each install, as (transmit?, key number, params).
    xpn: Vec<Vec<(bool, u32, Option<XpnParams>)>>,
    /// Per member: the MKPDUs it sent.
    sent: Vec<Vec<Vec<u8>>>,
    /// Per member: the CAKs distributed to it, as (CKN, CAK).
    caks: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl Net {
    fn new(cfgs: Vec<Config>) -> Net {
        let now = Instant::now();
        let n = cfgs.len();
        Net {
            now,
            members: cfgs
                .into_iter()
                .map(|c| Participant::new(c, now).unwrap())
                .collect(),
            installs: vec![(vec![], vec![]); n],
            live: vec![vec![]; n],
            down: vec![false; n],
            order: vec![],
            xpn: vec![vec![]; n],
            sent: vec![vec![]; n],
            caks: vec![vec![]; n],
        }
    }

    /// Handles actions of member `i`: records installs, delivers sends to the others.
    fn actions(&mut self, i: usize, acts: Vec<Action>) {
        let mut queue = vec![(i, acts)];
        while let Some((from, acts)) = queue.pop() {
            for a in acts {
                match a {
                    Action::Send(frame) => {
                        if self.down[from] {
                            continue;
                        }
                        self.sent[from].push(frame.clone());
                        let addrs = self.members[from].addrs();
                        for j in 0..self.members.len() {
                            if j != from && !self.down[j] {
                                let out = self.members[j].on_mkpdu(self.now, &addrs, &frame);
                                queue.push((j, out));
                            }
                        }
                    }
                    Action::InstallRx(NewSa { an, ki, xpn, .. }) => {
                        self.installs[from].0.push((an, ki.kn));
                        self.order.push((from, false, ki.kn));
                        self.xpn[from].push((false, ki.kn, xpn));
                    }
                    Action::InstallTx(NewSa { an, ki, xpn, .. }) => {
                        self.installs[from].1.push((an, ki.kn));
                        self.order.push((from, true, ki.kn));
                        self.xpn[from].push((true, ki.kn, xpn));
                    }
                    Action::Live(l) => self.live[from].push(l),
                    Action::Cak { ckn, cak } => {
                        self.caks[from].push((ckn, cak.as_bytes().to_vec()))
                    }
                }
            }
        }
    }

    /// Runs the clock forward in 100 ms steps for `d`.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.now += Duration::from_millis(100);
            for i in 0..self.members.len() {
                if self.down[i] {
                    continue;
                }
                let acts = self.members[i].on_timer(self.now);
                self.actions(i, acts);
            }
        }
    }
}

#[test]
fn two_members_agree_on_a_sak_rx_before_tx() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    // Equal priorities: the lower SCI (member 0) is the key server.
    assert!(net.members[0].is_key_server());
    assert!(!net.members[1].is_key_server());
    for i in 0..2 {
        assert_eq!(net.live[i], [true], "member {i}");
        let (rx, tx) = &net.installs[i];
        assert_eq!(rx.len(), 1, "member {i}: {rx:?}");
        assert_eq!(tx, rx, "member {i} transmits with what it receives with");
        assert_eq!(
            net.members[i].latest().map(|k| (k.1, k.2)),
            Some((rx[0].0, true))
        );
    }
    // Both use the same key: the key server's KI.
    assert_eq!(
        net.members[0].latest().unwrap().0,
        net.members[1].latest().unwrap().0
    );
}

#[test]
fn a_rekey_moves_to_the_next_an_and_installs_rx_first() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let first = net.members[0].latest().unwrap();
    for round in 1..=5u8 {
        net.members[0].request_rekey();
        net.run(Duration::from_secs(3));
        let k = net.members[0].latest().unwrap();
        assert_eq!(k.1, (first.1 + round) % 4, "round {round}");
        assert!(k.2, "transmitting with the new key");
        assert_eq!(net.members[1].latest().unwrap().0, k.0);
    }
    for i in 0..2 {
        let (rx, tx) = &net.installs[i];
        assert_eq!(rx.len(), 6);
        assert_eq!(tx.len(), 6);
    }
    // No member transmits with a key before every member receives with it: no frame is
    // sent that a peer cannot validate.
    for (at, &(who, tx, kn)) in net.order.iter().enumerate() {
        if tx {
            for m in 0..2 {
                assert!(
                    net.order[..at].contains(&(m, false, kn)),
                    "member {who} transmits with key {kn} before member {m} receives with it"
                );
            }
        }
    }
}

#[test]
fn priority_decides_the_key_server() {
    let mut net = Net::new(vec![cfg(1, 200, 0x11), cfg(2, 10, 0x11)]);
    net.run(Duration::from_secs(3));
    assert!(net.members[1].is_key_server());
    assert!(!net.members[0].is_key_server());
}

#[test]
fn a_lost_peer_is_noticed_and_a_returning_one_gets_a_new_sak() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let before = net.members[0].latest().unwrap().0;
    net.down[1] = true;
    net.run(Duration::from_secs(7));
    assert_eq!(net.live[0], [true, false], "MKA Life Time is 6 s");
    assert!(!net.members[0].live());
    // It comes back (restarted: a new participant with a new MI).
    net.down[1] = false;
    net.members[1] = Participant::new(cfg(2, 16, 0x11), net.now).unwrap();
    net.installs[1] = (vec![], vec![]);
    net.run(Duration::from_secs(3));
    let after = net.members[0].latest().unwrap();
    assert_ne!(after.0, before, "a new SAK after the peer came back");
    assert!(after.2);
    assert_eq!(net.members[1].latest().unwrap().0, after.0);
}

#[test]
fn a_wrong_cak_gets_nowhere_and_is_counted() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x22)]);
    net.run(Duration::from_secs(5));
    for i in 0..2 {
        assert!(!net.members[i].live(), "member {i}");
        assert!(net.installs[i].0.is_empty());
        assert!(net.members[i].drops.get("icv").copied().unwrap_or(0) >= 2);
    }
}

#[test]
fn three_members_share_one_key() {
    let mut net = Net::new(vec![cfg(3, 16, 0x11), cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(5));
    assert!(net.members[1].is_key_server());
    let k = net.members[1].latest().unwrap();
    assert!(k.2);
    for i in [0, 2] {
        assert_eq!(net.members[i].latest().unwrap().0, k.0, "member {i}");
        assert!(net.members[i].latest().unwrap().2, "member {i} transmits");
    }
}

#[test]
fn the_key_server_rekeys_on_its_interval() {
    let mut a = cfg(1, 16, 0x11);
    a.rekey_interval = Some(Duration::from_secs(1));
    let mut net = Net::new(vec![a, cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(9));
    let k = net.members[0].latest().unwrap();
    assert!(k.0.kn >= 8, "only key {} after 9 s", k.0.kn);
    assert!(k.2);
    // The interval shows in when the participant wants to run next.
    assert!(net.members[0].next_timer() <= net.now + Duration::from_secs(1));
}

#[test]
fn the_xpn_salt_is_the_key_servers_mi_mixed_with_the_key_number() {
    // 802.1AE-2018 §10.7.8: the 64 least significant bits are the MI's; the next 16 are the
    // MI's XOR the KN's 16 most significant; the 16 most significant are the MI's XOR the
    // KN's 16 least significant.
    let mi: [u8; 12] = [
        0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xa0, 0xb0, 0xc0,
    ];
    let s = salt(&mi, 0x0102_0304);
    assert_eq!(
        s,
        [
            0x10 ^ 0x03,
            0x20 ^ 0x04,
            0x30 ^ 0x01,
            0x40 ^ 0x02,
            0x50,
            0x60,
            0x70,
            0x80,
            0x90,
            0xa0,
            0xb0,
            0xc0
        ]
    );
    assert_eq!(salt(&mi, 0), mi);
}

#[test]
fn xpn_members_agree_on_salt_and_sscis_in_sci_order() {
    // Member 0 has the higher SCI but the better priority: it is the key server, yet takes
    // SSCI 2, since SSCIs follow SCI order.
    let mut a = xpn_cfg(9);
    a.priority = 1;
    let mut net = Net::new(vec![a, xpn_cfg(2)]);
    net.run(Duration::from_secs(3));
    assert!(net.members[0].is_key_server());
    let ks_mi = net.members[0].mi();
    let kn = net.members[0].latest().unwrap().0.kn;
    let want = XpnParams {
        salt: salt(&ks_mi, kn),
        sscis: vec![([2, 0, 0, 0, 0, 2, 0, 1], 1), ([2, 0, 0, 0, 0, 9, 0, 1], 2)],
    };
    for i in 0..2 {
        let installs: Vec<_> = net.xpn[i].iter().filter(|(_, k, _)| *k == kn).collect();
        assert_eq!(installs.len(), 2, "member {i}: rx and tx");
        for (_, _, x) in installs {
            assert_eq!(x.as_ref(), Some(&want), "member {i}");
        }
    }
    // The key server's Live Peer List carries its own SSCI while it distributes the SAK,
    // and SAK Use's PNs are extended by the XPN parameter set.
    let frame = net.sent[0].last().unwrap();
    let m = decode(frame).unwrap().mkpdu;
    assert!(m.distributed_sak.is_some());
    assert_eq!(m.key_server_ssci, 2);
    assert_eq!(m.xpn, Some((0, 0)));
    let b = decode(net.sent[1].last().unwrap()).unwrap().mkpdu;
    assert_eq!(b.key_server_ssci, 0);
    assert!(b.xpn.is_some());
}

#[test]
fn without_xpn_no_salt_no_ssci() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    assert!(net.xpn.iter().flatten().all(|(_, _, x)| x.is_none()));
    let m = decode(net.sent[0].last().unwrap()).unwrap().mkpdu;
    assert_eq!(m.key_server_ssci, 0);
    assert_eq!(m.xpn, None);
}

#[test]
fn the_key_server_rekeys_when_its_transmit_pn_passes_the_threshold() {
    let mut a = cfg(1, 16, 0x11);
    a.pn_threshold = 1000;
    let mut net = Net::new(vec![a, cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let (k1, an, _) = net.members[0].latest().unwrap();
    // Below the threshold: nothing.
    let _ = an;
    net.members[0].set_pns(PnStatus {
        tx: Some((k1, 1000)),
        rx_lowest: [None; 4],
    });
    net.run(Duration::from_secs(3));
    assert_eq!(net.members[0].latest().unwrap().0, k1);
    net.members[0].set_pns(PnStatus {
        tx: Some((k1, 1001)),
        rx_lowest: [None; 4],
    });
    // Due at once, not at the next hello.
    assert!(net.members[0].next_timer() <= net.now);
    net.run(Duration::from_millis(100));
    assert_ne!(net.members[0].latest().unwrap().0, k1);
    net.run(Duration::from_secs(3));
    let (k2, an2, tx) = net.members[0].latest().unwrap();
    assert_ne!(k2, k1, "a new SAK at the PN threshold");
    assert_eq!(an2, (an + 1) % 4);
    assert!(tx);
    assert_eq!(net.members[1].latest().unwrap().0, k2);
    // The old key's PNs do not count against the new one: no further rekey.
    net.run(Duration::from_secs(5));
    assert_eq!(net.members[0].latest().unwrap().0, k2);
}

#[test]
fn the_key_server_rekeys_on_a_peers_reported_xpn_pn() {
    // The peer reports, in SAK Use and the XPN parameter set, the lowest PN it accepts
    // under the latest key: its 64 bits must arrive whole.
    let mut a = xpn_cfg(1);
    a.pn_threshold = 5 << 32;
    let mut net = Net::new(vec![a, xpn_cfg(2)]);
    net.run(Duration::from_secs(3));
    let (k1, an, _) = net.members[0].latest().unwrap();
    let mut rx = [None; 4];
    rx[usize::from(an)] = Some((k1, (5 << 32) + 1));
    net.members[1].set_pns(PnStatus {
        tx: None,
        rx_lowest: rx,
    });
    net.run(Duration::from_secs(5));
    let reported = net.sent[1].iter().any(|f| {
        let m = decode(f).unwrap().mkpdu;
        let keys = m.sak_use.and_then(|u| u.keys);
        m.xpn.map(|x| x.0) == Some(5)
            && keys.is_some_and(|k| k.latest == k1 && k.latest_lowest_pn == 1)
    });
    assert!(reported, "the peer reported PN 5 << 32 + 1 for the key");
    assert_ne!(net.members[0].latest().unwrap().0, k1, "a new SAK");
}

#[test]
fn sak_use_reports_the_old_key_after_a_rekey() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let (k1, an1, _) = net.members[1].latest().unwrap();
    net.members[0].request_rekey();
    net.run(Duration::from_secs(3));
    let (k2, an2, _) = net.members[1].latest().unwrap();
    let u = decode(net.sent[1].last().unwrap())
        .unwrap()
        .mkpdu
        .sak_use
        .unwrap();
    let keys = u.keys.unwrap();
    assert_eq!((keys.latest, u.latest_an), (k2, an2));
    assert_eq!((keys.old, u.old_an), (k1, an1));
    assert!(u.latest_tx && u.latest_rx && u.old_rx && !u.old_tx);
}

#[test]
fn a_restarted_peer_replaces_its_old_self_at_once() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let before = net.members[0].latest().unwrap().0;
    // Member 1 restarts: a new MI, the same SCI, well within MKA Life Time.
    net.members[1] = Participant::new(cfg(2, 16, 0x11), net.now).unwrap();
    net.run(Duration::from_secs(1));
    let after = net.members[0].latest().unwrap();
    assert_ne!(after.0, before, "a new SAK within a second, not after 6 s");
    assert!(after.2);
    assert_eq!(net.members[1].latest().unwrap().0, after.0);
    // The old MI is not listed any more.
    let m = decode(net.sent[0].last().unwrap()).unwrap().mkpdu;
    assert_eq!(m.live.len() + m.potential.len(), 1);
}

#[test]
fn a_restarted_key_server_distributes_on_an_an_the_ca_does_not_use() {
    // The key server restarts (interlinkd restarting with its links kept): it remembers no
    // AN, and the peer transmits on the old key's AN until the new key is in. A SAK on that
    // AN could not be installed for transmit there (the SA in use), and the CA would stay
    // without a key.
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let (old, old_an, tx) = net.members[1].latest().unwrap();
    assert!(tx);
    net.members[0] = Participant::new(cfg(1, 16, 0x11), net.now).unwrap();
    net.run(Duration::from_secs(1));
    let (new, an, tx) = net.members[1].latest().unwrap();
    assert!(new != old && tx, "a new key in use within a second");
    assert_ne!(an, old_an);
    assert_eq!(net.members[0].latest().unwrap().1, an);
}

#[test]
fn a_pn_reading_of_another_key_is_not_credited_to_the_latest() {
    // The data plane's reading of an AN taken before a new key was installed on it (or of
    // the old transmit key) says nothing of the new key: no rekey follows from it. With
    // readings identified by AN alone, each new key inherited the last one's PNs and MKA
    // driven by MKPDU arrival burned through keys.
    let mut a = cfg(1, 16, 0x11);
    a.pn_threshold = 1000;
    let mut net = Net::new(vec![a, cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let (k1, an1, _) = net.members[0].latest().unwrap();
    net.members[0].request_rekey();
    net.run(Duration::from_secs(3));
    let (k2, an2, tx) = net.members[0].latest().unwrap();
    assert!(k2 != k1 && tx);
    // Stale: the old key's PNs, on the new key's AN and as the transmit reading.
    let mut rx = [None; 4];
    rx[usize::from(an2)] = Some((k1, 5000));
    rx[usize::from(an1)] = Some((k1, 5000));
    net.members[0].set_pns(PnStatus {
        tx: Some((k1, 5000)),
        rx_lowest: rx,
    });
    net.run(Duration::from_secs(5));
    assert_eq!(
        net.members[0].latest().unwrap().0,
        k2,
        "no rekey for k1's PNs"
    );
    // SAK Use does not report k1's PN for k2 either.
    let u = decode(net.sent[0].last().unwrap()).unwrap().mkpdu.sak_use;
    assert_eq!(u.unwrap().keys.unwrap().latest_lowest_pn, 1);
    // The same PNs under k2 do count.
    net.members[0].set_pns(PnStatus {
        tx: Some((k2, 5000)),
        rx_lowest: [None; 4],
    });
    net.run(Duration::from_secs(3));
    assert_ne!(net.members[0].latest().unwrap().0, k2);
}

#[test]
fn a_replayed_mkpdu_of_an_old_mi_does_not_evict_the_live_peer() {
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(2, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    let old_frame = net.sent[1][0].clone();
    let addrs = net.members[1].addrs();
    // Member 1 restarts: its new MI proves live and replaces the old one.
    net.members[1] = Participant::new(cfg(2, 16, 0x11), net.now).unwrap();
    net.run(Duration::from_secs(3));
    let (key, _, tx) = net.members[0].latest().unwrap();
    assert!(tx);
    let installs = net.installs[0].0.len();
    // Someone replays an MKPDU of member 1's first MI (it verifies: the same CAK).
    let now = net.now;
    let out = net.members[0].on_mkpdu(now, &addrs, &old_frame);
    net.actions(0, out);
    net.run(Duration::from_secs(10));
    assert_eq!(net.members[0].drops.get("replay"), Some(&1));
    assert!(net.members[0].live(), "the live peer stays");
    assert_eq!(net.members[0].latest().unwrap().0, key, "no rekey");
    assert_eq!(net.installs[0].0.len(), installs, "no new SAK");
}

#[test]
fn mkpdus_with_our_own_sci_are_dropped_and_counted() {
    // A peer configured with our SCI (or our own MKPDUs from an earlier run, looped back).
    let mut net = Net::new(vec![cfg(1, 16, 0x11), cfg(1, 16, 0x11)]);
    net.run(Duration::from_secs(3));
    for m in &net.members {
        assert!(!m.live());
        assert!(
            m.drops.get("own_sci").copied().unwrap_or(0) >= 1,
            "{:?}",
            m.drops
        );
    }
    assert!(net
        .installs
        .iter()
        .all(|(rx, tx)| rx.is_empty() && tx.is_empty()));
}

#[test]
fn the_key_server_hands_a_cak_to_every_member_once_until_told_to_stop() {
    let taking = |sci| Config {
        take_cak: true,
        ..cfg(sci, 16, 0x11)
    };
    let mut net = Net::new(vec![taking(3), taking(1), taking(2)]);
    net.run(Duration::from_secs(5));
    assert!(net.members[1].is_key_server());
    assert!((0..3).all(|i| net.members[i].settled()));
    let now = net.now;
    let acts = net.members[1]
        .distribute_cak(now, b"the-next-ckn", &Secret::new(vec![0x5a; 32]).unwrap())
        .unwrap();
    net.actions(1, acts);
    // Hellos repeat it for a while: each member passes it on once, the key server never.
    net.run(Duration::from_secs(7));
    let want = vec![(b"the-next-ckn".to_vec(), vec![0x5a; 32])];
    assert_eq!(net.caks[0], want);
    assert_eq!(net.caks[2], want);
    assert!(net.caks[1].is_empty());
    // It rides in every MKPDU of the key server's until it stops.
    let carries = |f: &Vec<u8>| decode(f).unwrap().mkpdu.distributed_cak.is_some();
    assert!(net.sent[1].last().is_some_and(carries));
    net.members[1].stop_distributing_cak();
    net.run(Duration::from_secs(3));
    assert!(!net.sent[1].last().is_some_and(carries));
    assert!(net.sent[0].iter().chain(&net.sent[2]).all(|f| !carries(f)));
}

#[test]
fn a_restarted_xpn_member_takes_no_sak_that_gives_it_no_ssci() {
    // The key server keeps sending the CA's SAK; a member that restarted hears it before the
    // key server lists its new MI, and that SAK's SSCIs are for the members as they were:
    // none for this one. It waits for the SAK that follows once it is listed (a transmit SA
    // without an SSCI cannot be installed: the daemon logged exactly that).
    let mut net = Net::new(vec![xpn_cfg(1), xpn_cfg(2)]);
    net.run(Duration::from_secs(3));
    net.members[1] = Participant::new(xpn_cfg(2), net.now).unwrap();
    net.xpn[1].clear();
    net.run(Duration::from_secs(3));
    let me = [2, 0, 0, 0, 0, 2, 0, 1];
    assert!(!net.xpn[1].is_empty());
    for (tx, kn, x) in &net.xpn[1] {
        let x = x.as_ref().expect("XPN parameters");
        assert!(
            x.ssci(&me).is_some(),
            "key {kn} (transmit {tx}) without our SSCI"
        );
    }
    let (latest, _, tx) = net.members[1].latest().unwrap();
    assert!(tx);
    assert_eq!(net.members[0].latest().unwrap().0, latest);
}

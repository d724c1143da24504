//! Two (and three) MKA participants on a fake clock and an in-memory wire: they find each
//! other, elect a key server, distribute a SAK, install it for receive before transmit, rekey
//! with the next AN, notice a peer's loss; a wrong CAK gets nowhere.

use std::time::{Duration, Instant};

use interlink_mka::keys::Secret;
use interlink_mka::participant::{Action, Config, Participant};

fn cfg(sci_last: u8, priority: u8, cak: u8) -> Config {
    Config {
        cak: Secret::new(vec![cak; 32]).unwrap(),
        ckn: b"aws-use1-ckn".to_vec(),
        sci: [2, 0, 0, 0, 0, sci_last, 0, 1],
        priority,
        sak_len: 32,
        cipher_suite: Some(0x0080_c200_0001_0004),
        rekey_interval: None,
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
                        let addrs = self.members[from].addrs();
                        for j in 0..self.members.len() {
                            if j != from && !self.down[j] {
                                let out = self.members[j].on_mkpdu(self.now, &addrs, &frame);
                                queue.push((j, out));
                            }
                        }
                    }
                    Action::InstallRx { an, ki, .. } => {
                        self.installs[from].0.push((an, ki.kn));
                        self.order.push((from, false, ki.kn));
                    }
                    Action::InstallTx { an, ki, .. } => {
                        self.installs[from].1.push((an, ki.kn));
                        self.order.push((from, true, ki.kn));
                    }
                    Action::Live(l) => self.live[from].push(l),
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

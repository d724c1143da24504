//! An MKA participant (IEEE 802.1X-2020 §9.4-§9.8) for one CA, sans IO: it is told the time
//! and the MKPDUs that arrive, and answers with MKPDUs to send and SAs to install. A link is
//! a point-to-point CA, but nothing here assumes a single peer.
//!
//! - Every MKPDU carries our member identifier (MI) and a message number (MN) that rises by
//!   one each time; a peer's MKPDU whose MN does not rise is a replay and is dropped (§9.4.2).
//! - A peer is *potential* once heard, *live* once it lists our MI with a recent MN; it stops
//!   being either after MKA Life Time (6 s) without an MKPDU (§9.4.3). MKPDUs go every MKA
//!   Hello Time (2 s), and at once when something changes.
//! - The key server is the live participant with the highest priority (lowest value), then
//!   the lowest SCI (§9.5). It distributes a fresh SAK (random, wrapped under the KEK) when
//!   there is none, when the set of live peers changes, when asked (PN threshold, interval).
//! - Each member installs the new SA for receive first and says so in MACsec SAK Use; the
//!   key server starts transmitting with it once every live peer receives with it, and the
//!   others follow when its SAK Use says it transmits (§9.8): no frame is sent under a key a
//!   peer cannot yet validate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::keys::{ick, kek, random_sak, unwrap_sak, verify_icv, wrap_sak, KeyError, Secret};
use crate::mkpdu::{
    decode, encode, Basic, DistributedSak, Ki, Mi, Mkpdu, SakUse, SakUseKeys, ALGORITHM_AGILITY,
    ETHERTYPE_EAPOL, ICV_LEN, MKA_VERSION,
};

pub const HELLO: Duration = Duration::from_secs(2);
pub const LIFE: Duration = Duration::from_secs(6);

#[derive(Clone, Debug)]
pub struct Config {
    pub cak: Secret,
    pub ckn: Vec<u8>,
    pub sci: [u8; 8],
    /// Key server priority: lower wins (§9.5).
    pub priority: u8,
    /// SAK length: 16 or 32 octets.
    pub sak_len: usize,
    /// The 64-bit reference of the cipher suite, sent with the Distributed SAK unless it is
    /// the default GCM-AES-128.
    pub cipher_suite: Option<u64>,
    /// Distribute a new SAK this often, if set.
    pub rekey_interval: Option<Duration>,
}

/// What the participant asks of the data plane and the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this EAPOL frame (from the protocol version octet on) to the CA's peers.
    Send(Vec<u8>),
    /// Install `sak` under `an` for receiving from the peers.
    InstallRx { an: u8, ki: Ki, sak: Secret },
    /// Install `sak` under `an` for transmitting, and start transmitting with it.
    InstallTx { an: u8, ki: Ki, sak: Secret },
    /// A peer became live (true) or the last live peer went (false).
    Live(bool),
}

/// Why an MKPDU was dropped, for the counters and the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Drop {
    Malformed,
    /// Another CA's (another CKN).
    OtherCkn,
    /// The ICV does not verify: the wrong CAK, or an altered MKPDU.
    Icv,
    /// Its MN is not above the last one from that MI.
    Replay,
    /// Ours, looped back.
    Own,
    /// A Distributed SAK that does not unwrap under our KEK.
    BadSak,
}

#[derive(Clone, Debug)]
struct Peer {
    sci: [u8; 8],
    priority: u8,
    mn: u32,
    last_seen: Instant,
    /// It lists us: our MI with an MN we sent recently.
    live: bool,
    /// Its SAK Use: the latest key it receives with, and whether it transmits with it.
    rx_latest: Option<Ki>,
    tx_latest: Option<Ki>,
}

#[derive(Clone, Debug)]
struct Key {
    ki: Ki,
    an: u8,
    sak: Secret,
    tx: bool,
}

pub struct Participant {
    cfg: Config,
    ick: Secret,
    kek: Secret,
    mi: Mi,
    mn: u32,
    peers: HashMap<Mi, Peer>,
    latest: Option<Key>,
    /// The SAK distributed last, wrapped, re-sent in every MKPDU until all use it.
    distributing: Option<DistributedSak>,
    next_kn: u32,
    next_hello: Instant,
    last_rekey: Instant,
    rekey_wanted: bool,
    was_live: bool,
    /// Drops, by reason.
    pub drops: HashMap<&'static str, u64>,
}

fn random_mi() -> Result<Mi, KeyError> {
    let mut mi = [0u8; 12];
    aws_lc_rs::rand::fill(&mut mi).map_err(|_| KeyError::Backend)?;
    Ok(mi)
}

impl Participant {
    pub fn new(cfg: Config, now: Instant) -> Result<Participant, KeyError> {
        Ok(Participant {
            ick: ick(&cfg.cak, &cfg.ckn)?,
            kek: kek(&cfg.cak, &cfg.ckn)?,
            mi: random_mi()?,
            mn: 0,
            peers: HashMap::new(),
            latest: None,
            distributing: None,
            next_kn: 1,
            next_hello: now,
            last_rekey: now,
            rekey_wanted: false,
            was_live: false,
            drops: HashMap::new(),
            cfg,
        })
    }

    pub fn mi(&self) -> Mi {
        self.mi
    }

    /// Whether some peer is live.
    pub fn live(&self) -> bool {
        self.peers.values().any(|p| p.live)
    }

    /// Whether this participant is the key server now.
    pub fn is_key_server(&self) -> bool {
        self.live() && self.key_server().is_none()
    }

    /// The live peer that is the key server, or None if we are (or none is live).
    fn key_server(&self) -> Option<Mi> {
        let us = (self.cfg.priority, self.cfg.sci);
        self.peers
            .iter()
            .filter(|(_, p)| p.live)
            .map(|(mi, p)| ((p.priority, p.sci), *mi))
            .filter(|(rank, _)| *rank < us)
            .min()
            .map(|(_, mi)| mi)
    }

    /// The latest key, if any: its identifier, AN and whether we transmit with it.
    pub fn latest(&self) -> Option<(Ki, u8, bool)> {
        self.latest.as_ref().map(|k| (k.ki, k.an, k.tx))
    }

    /// Asks the key server (us, if we are) for a new SAK: the PN threshold was crossed.
    pub fn request_rekey(&mut self) {
        self.rekey_wanted = true;
    }

    /// When `on_timer` next has something to do.
    pub fn next_timer(&self) -> Instant {
        let expiry = self.peers.values().map(|p| p.last_seen + LIFE).min();
        let rekey = self
            .cfg
            .rekey_interval
            .filter(|_| self.is_key_server())
            .map(|i| self.last_rekey + i);
        [expiry, rekey]
            .into_iter()
            .flatten()
            .fold(self.next_hello, Instant::min)
    }

    fn drop(&mut self, why: Drop) {
        let key = match why {
            Drop::Malformed => "malformed",
            Drop::OtherCkn => "other_ckn",
            Drop::Icv => "icv",
            Drop::Replay => "replay",
            Drop::Own => "own",
            Drop::BadSak => "bad_sak",
        };
        *self.drops.entry(key).or_default() += 1;
    }

    /// Peers expire; hellos go; the key server rekeys when due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let before = self.peers.len();
        self.peers.retain(|_, p| now < p.last_seen + LIFE);
        let changed = self.peers.len() != before;
        if changed {
            // A peer left: a new SAK for those that remain (§9.8).
            self.rekey_wanted = true;
        }
        if let Some(i) = self.cfg.rekey_interval {
            if self.is_key_server() && now >= self.last_rekey + i {
                self.rekey_wanted = true;
            }
        }
        self.step(now, &mut out);
        if changed || now >= self.next_hello || !out.is_empty() {
            self.send(now, &mut out);
        }
        out
    }

    /// An EAPOL frame from `addrs` (DA and SA), from its protocol version octet on.
    pub fn on_mkpdu(&mut self, now: Instant, addrs: &[u8; 12], eapol: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        let Ok(p) = decode(eapol) else {
            self.drop(Drop::Malformed);
            return out;
        };
        let Some(b) = p.mkpdu.basic.clone() else {
            self.drop(Drop::Malformed);
            return out;
        };
        if b.ckn != self.cfg.ckn {
            self.drop(Drop::OtherCkn);
            return out;
        }
        let mut covered = ETHERTYPE_EAPOL.to_be_bytes().to_vec();
        covered.extend_from_slice(p.covered);
        // §9.4.1: nothing in an MKPDU is acted on before its ICV verifies.
        if !verify_icv(&self.ick, addrs, &covered, p.icv) {
            self.drop(Drop::Icv);
            return out;
        }
        if b.mi == self.mi {
            self.drop(Drop::Own);
            return out;
        }
        if let Some(peer) = self.peers.get(&b.mi) {
            if b.mn <= peer.mn {
                self.drop(Drop::Replay);
                return out;
            }
        }
        let m = p.mkpdu;
        // It lists us (live or potential) with an MN we have sent: it hears us.
        let hears_us = m
            .live
            .iter()
            .chain(&m.potential)
            .any(|(mi, mn)| *mi == self.mi && *mn <= self.mn && *mn + 10 >= self.mn);
        let is_new = !self.peers.contains_key(&b.mi);
        let peer = self.peers.entry(b.mi).or_insert(Peer {
            sci: b.sci,
            priority: b.key_server_priority,
            mn: b.mn,
            last_seen: now,
            live: false,
            rx_latest: None,
            tx_latest: None,
        });
        peer.mn = b.mn;
        peer.last_seen = now;
        peer.priority = b.key_server_priority;
        let became_live = hears_us && !peer.live;
        peer.live |= hears_us;
        if let Some(u) = &m.sak_use {
            let keys = u.keys.as_ref();
            peer.rx_latest = keys.filter(|_| u.latest_rx).map(|k| k.latest);
            peer.tx_latest = keys.filter(|_| u.latest_tx).map(|k| k.latest);
        }
        if became_live {
            // A peer joined: a new SAK for the CA (§9.8).
            self.rekey_wanted = true;
        }
        // A SAK from the key server.
        if let (Some(d), Some(ks)) = (&m.distributed_sak, self.key_server()) {
            if ks == b.mi {
                let ki = Ki {
                    mi: b.mi,
                    kn: d.key_number,
                };
                if self.latest.as_ref().map(|k| k.ki) != Some(ki) {
                    match unwrap_sak(&self.kek, &d.wrapped) {
                        Ok(sak) => {
                            out.push(Action::InstallRx {
                                an: d.an,
                                ki,
                                sak: sak.clone(),
                            });
                            self.latest = Some(Key {
                                ki,
                                an: d.an,
                                sak,
                                tx: false,
                            });
                        }
                        Err(_) => self.drop(Drop::BadSak),
                    }
                }
            }
        }
        self.step(now, &mut out);
        if is_new || became_live || !out.is_empty() {
            self.send(now, &mut out);
        }
        out
    }

    /// Distribution and the switch to transmitting under the latest key.
    fn step(&mut self, now: Instant, out: &mut Vec<Action>) {
        let live = self.live();
        if live != self.was_live {
            self.was_live = live;
            out.push(Action::Live(live));
        }
        if !live {
            return;
        }
        if self.is_key_server() {
            if self.rekey_wanted || self.latest.is_none() {
                self.rekey_wanted = false;
                if let Err(e) = self.distribute(now, out) {
                    let _ = e;
                    self.rekey_wanted = true;
                }
            }
            // Transmit once every live peer receives with the latest key.
            if let Some(k) = self.latest.as_mut() {
                let all = self
                    .peers
                    .values()
                    .filter(|p| p.live)
                    .all(|p| p.rx_latest == Some(k.ki));
                if all && !k.tx {
                    k.tx = true;
                    out.push(Action::InstallTx {
                        an: k.an,
                        ki: k.ki,
                        sak: k.sak.clone(),
                    });
                }
            }
        } else if let (Some(ks), Some(k)) = (self.key_server(), self.latest.as_mut()) {
            // Follow the key server once it transmits with the latest key.
            let ks_tx = self.peers.get(&ks).and_then(|p| p.tx_latest);
            if ks_tx == Some(k.ki) && !k.tx {
                k.tx = true;
                out.push(Action::InstallTx {
                    an: k.an,
                    ki: k.ki,
                    sak: k.sak.clone(),
                });
            }
        }
    }

    fn distribute(&mut self, now: Instant, out: &mut Vec<Action>) -> Result<(), KeyError> {
        let sak = random_sak(self.cfg.sak_len)?;
        let an = self.latest.as_ref().map_or(0, |k| (k.an + 1) % 4);
        let ki = Ki {
            mi: self.mi,
            kn: self.next_kn,
        };
        self.next_kn += 1;
        self.distributing = Some(DistributedSak {
            an,
            confidentiality_offset: 0,
            key_number: ki.kn,
            cipher_suite: self.cfg.cipher_suite,
            wrapped: wrap_sak(&self.kek, &sak)?,
        });
        out.push(Action::InstallRx {
            an,
            ki,
            sak: sak.clone(),
        });
        self.latest = Some(Key {
            ki,
            an,
            sak,
            tx: false,
        });
        self.last_rekey = now;
        Ok(())
    }

    fn send(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.mn += 1;
        self.next_hello = now + HELLO;
        let (live, potential): (Vec<_>, Vec<_>) = self.peers.iter().partition(|(_, p)| p.live);
        let m = Mkpdu {
            basic: Some(Basic {
                version: MKA_VERSION,
                key_server_priority: self.cfg.priority,
                key_server: self.is_key_server(),
                macsec_desired: true,
                capability: 2,
                sci: self.cfg.sci,
                mi: self.mi,
                mn: self.mn,
                algorithm_agility: ALGORITHM_AGILITY,
                ckn: self.cfg.ckn.clone(),
            }),
            live: live.iter().map(|(mi, p)| (**mi, p.mn)).collect(),
            potential: potential.iter().map(|(mi, p)| (**mi, p.mn)).collect(),
            key_server_ssci: 0,
            sak_use: self.latest.as_ref().map(|k| SakUse {
                latest_an: k.an,
                latest_tx: k.tx,
                latest_rx: true,
                old_an: 0,
                old_tx: false,
                old_rx: false,
                plain_tx: false,
                plain_rx: false,
                delay_protect: false,
                keys: Some(SakUseKeys {
                    latest: k.ki,
                    latest_lowest_pn: 1,
                    old: Ki { mi: [0; 12], kn: 0 },
                    old_lowest_pn: 0,
                }),
            }),
            distributed_sak: if self.is_key_server() {
                self.distributing.clone()
            } else {
                None
            },
            xpn: None,
            unknown: vec![],
        };
        let ick = &self.ick;
        // The ICV covers DA and SA too, which the transport knows: it is computed for the
        // group address and our SCI's MAC here, and the transport sends from that MAC.
        let addrs = self.addrs();
        if let Ok(frame) = encode(&m, |covered| {
            let mut c = ETHERTYPE_EAPOL.to_be_bytes().to_vec();
            c.extend_from_slice(covered);
            crate::keys::icv(ick, &addrs, &c).unwrap_or([0; ICV_LEN])
        }) {
            out.push(Action::Send(frame));
        }
    }

    /// DA and SA of our MKPDUs: the MKA group address, and our SCI's MAC part.
    pub fn addrs(&self) -> [u8; 12] {
        let mut a = [0u8; 12];
        a[..6].copy_from_slice(&crate::mkpdu::MKA_GROUP);
        a[6..].copy_from_slice(&self.cfg.sci[..6]);
        a
    }
}

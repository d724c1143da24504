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
//! - SAK Use reports the latest and the old key with their lowest acceptable PNs (the XPN
//!   parameter set carries their high 32 bits); the key server distributes a new SAK when a
//!   PN in use, its own or one a peer reports, passes the threshold (PN exhaustion, §9.8).
//! - XPN suites: each SAK gets a salt from the key server's MI and the key number
//!   (802.1AE-2018 §10.7.8) and each member an SSCI, 1, 2, ... in the order of the SCIs of
//!   the key server and the live peers it lists; the key server's Live Peer List goes in SCI
//!   order and carries its own SSCI.
//! - A peer that reappears with a new MI and the SCI of a known one has restarted: the old
//!   MI is forgotten at once rather than after MKA Life Time, so that a new SAK follows.
//! - CAK distribution (§9.8): the key server may be given a new CAK and CKN to hand the CA's
//!   members, wrapped under the KEK in a Distributed CAK parameter set in each MKPDU until
//!   told to stop; a member that takes distributed CAKs (`Config::take_cak`) passes each new
//!   one from its key server on once. What to do with it (a CA of its own, kept where) is the
//!   caller's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::keys::{ick, kek, random_sak, unwrap_sak, verify_icv, wrap_sak, KeyError, Secret};
use crate::mkpdu::{
    decode, encode, Basic, DistributedCak, DistributedSak, Ki, Mi, Mkpdu, SakUse, SakUseKeys,
    ALGORITHM_AGILITY, ETHERTYPE_EAPOL, ICV_LEN, MKA_VERSION,
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
    /// An XPN suite: SAKs carry a salt and SSCIs, SAK Use's PNs are 64-bit.
    pub xpn: bool,
    /// Distribute a new SAK this often, if set.
    pub rekey_interval: Option<Duration>,
    /// Distribute a new SAK once a PN in use under the latest key passes this.
    pub pn_threshold: u64,
    /// Take a CAK the key server distributes (passed on as [`Action::Cak`]); otherwise one
    /// is ignored, and counted once per CKN (`unwanted_cak`).
    pub take_cak: bool,
}

/// The XPN parameters of a SAK: its salt, and the SSCI of each member's SCI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XpnParams {
    pub salt: [u8; 12],
    pub sscis: Vec<([u8; 8], u32)>,
}

impl XpnParams {
    /// The members' SSCIs: 1, 2, ... in ascending order of their SCIs.
    fn new(ks_mi: &Mi, kn: u32, mut scis: Vec<[u8; 8]>) -> XpnParams {
        scis.sort_unstable();
        scis.dedup();
        XpnParams {
            salt: salt(ks_mi, kn),
            sscis: scis.into_iter().zip(1..).collect(),
        }
    }

    /// The SSCI of the member with this SCI.
    pub fn ssci(&self, sci: &[u8; 8]) -> Option<u32> {
        self.sscis.iter().find(|(s, _)| s == sci).map(|(_, n)| *n)
    }
}

/// The XPN salt of a SAK (802.1AE-2018 §10.7.8): the key server's MI, its 64 least
/// significant bits as they are, the next 16 bits XORed with the key number's 16 most
/// significant bits, the 16 most significant bits XORed with its 16 least significant.
pub fn salt(ks_mi: &Mi, kn: u32) -> [u8; 12] {
    let mut s = *ks_mi;
    let k = kn.to_be_bytes();
    s[0] ^= k[2];
    s[1] ^= k[3];
    s[2] ^= k[0];
    s[3] ^= k[1];
    s
}

/// What the data plane says of the PNs in use, for SAK Use and the PN threshold. Each
/// reading names the key it was taken under: a reading of an AN taken before a new key was
/// installed on it says nothing about the new key, and is ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PnStatus {
    /// The key we transmit with and its next PN.
    pub tx: Option<(Ki, u64)>,
    /// The key of the receive SA on each AN and its lowest acceptable PN.
    pub rx_lowest: [Option<(Ki, u64)>; 4],
}

impl PnStatus {
    /// The next transmit PN under `ki`, if we transmit with it.
    pub fn tx_pn(&self, ki: Ki) -> Option<u64> {
        self.tx.filter(|(k, _)| *k == ki).map(|(_, pn)| pn)
    }

    /// The lowest acceptable PN of the receive SA on `an`, if it holds `ki`.
    pub fn rx_lowest_pn(&self, an: u8, ki: Ki) -> Option<u64> {
        self.rx_lowest[usize::from(an & 3)]
            .filter(|(k, _)| *k == ki)
            .map(|(_, pn)| pn)
    }
}

/// An SA to install: the key (`sak`, identified by `ki`), its AN, and for XPN suites its
/// salt and the members' SSCIs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSa {
    pub an: u8,
    pub ki: Ki,
    pub sak: Secret,
    pub xpn: Option<XpnParams>,
}

/// What the participant asks of the data plane and the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this EAPOL frame (from the protocol version octet on) to the CA's peers.
    Send(Vec<u8>),
    /// Install the SA for receiving from the peers.
    InstallRx(NewSa),
    /// Install the SA for transmitting, and start transmitting with it.
    InstallTx(NewSa),
    /// A peer became live (true) or the last live peer went (false).
    Live(bool),
    /// The key server distributed a new CAK, named `ckn` (taken only with
    /// `Config::take_cak`; each CKN once).
    Cak { ckn: Vec<u8>, cak: Secret },
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
    /// Our SCI under another MI: looped back from an earlier run, or a peer with our SCI.
    OwnSci,
    /// A Distributed SAK that does not unwrap under our KEK.
    BadSak,
    /// A Distributed CAK that does not unwrap under our KEK, or whose CKN is malformed.
    BadCak,
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
    /// The lowest PN it accepts under its latest key: how far that key has been used.
    latest_lowest_pn: u64,
    /// The ANs its SAK Use says it has keys on (a bit per AN): a key server that restarted
    /// knows no AN of the keys the CA still uses, and must not distribute on one of them.
    ans_in_use: u8,
}

#[derive(Clone, Debug)]
struct Key {
    ki: Ki,
    an: u8,
    sak: Secret,
    tx: bool,
    /// Its receive SA is still installed: another CA's key on the port has not taken its AN.
    rx: bool,
    xpn: Option<XpnParams>,
}

impl Key {
    fn sa(&self) -> NewSa {
        NewSa {
            an: self.an,
            ki: self.ki,
            sak: self.sak.clone(),
            xpn: self.xpn.clone(),
        }
    }

    fn install_rx(&self) -> Action {
        Action::InstallRx(self.sa())
    }

    fn install_tx(&self) -> Action {
        Action::InstallTx(self.sa())
    }
}

pub struct Participant {
    cfg: Config,
    ick: Secret,
    kek: Secret,
    mi: Mi,
    mn: u32,
    /// Our MNs sent within MKA Life Time, oldest first, with when: a peer that lists us with
    /// one of them hears us now (§9.4.2), one that lists an older one is a replay.
    sent_mns: std::collections::VecDeque<(u32, Instant)>,
    peers: HashMap<Mi, Peer>,
    /// MIs of peers replaced by a restart: they never come back, so an MKPDU from one is a
    /// replay.
    gone: std::collections::VecDeque<Mi>,
    latest: Option<Key>,
    /// The key before the latest, still received with (and sent with until the latest is).
    old: Option<Key>,
    /// The AN installed last on this port, by us or another CA's participant: the next SAK
    /// takes the one after it.
    last_an: Option<u8>,
    pns: PnStatus,
    /// Interval and PN-threshold rekeys are for the principal CA of the port only.
    principal: bool,
    /// The SAK distributed last, wrapped, re-sent in every MKPDU until all use it.
    distributing: Option<DistributedSak>,
    /// A CAK to distribute while we are key server, wrapped, with its CKN: re-sent in every
    /// MKPDU (one may be lost) until `stop_distributing_cak`.
    cak_out: Option<DistributedCak>,
    /// The CKN of the last CAK taken from (or refused of) the key server: each is passed on
    /// once.
    cak_in: Option<Vec<u8>>,
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
            sent_mns: std::collections::VecDeque::new(),
            gone: std::collections::VecDeque::new(),
            latest: None,
            old: None,
            last_an: None,
            pns: PnStatus::default(),
            principal: true,
            distributing: None,
            cak_out: None,
            cak_in: None,
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

    /// The keys this participant had installed for receive: the latest and the old one.
    pub fn keys(&self) -> Vec<Ki> {
        self.latest
            .iter()
            .chain(self.old.iter())
            .map(|k| k.ki)
            .collect()
    }

    /// The CKN of this participant's CA.
    pub fn ckn(&self) -> &[u8] {
        &self.cfg.ckn
    }

    /// Whether the CAK is this one (a reload keeps a participant whose key is unchanged).
    pub fn has_cak(&self, cak: &Secret) -> bool {
        self.cfg.cak.as_bytes() == cak.as_bytes()
    }

    /// Whether the CA's latest key is in use all round: we transmit with it, and so does
    /// every live peer (its SAK Use says so).
    pub fn settled(&self) -> bool {
        self.live()
            && self.latest.as_ref().is_some_and(|k| {
                k.tx && self
                    .peers
                    .values()
                    .filter(|p| p.live)
                    .all(|p| p.tx_latest == Some(k.ki))
            })
    }

    /// Hands `cak`, named `ckn`, to the CA's members whenever we are its key server, from
    /// now until `stop_distributing_cak` (§9.8). It must be as long as the CA's own CAK (the
    /// parameter set does not carry its length) and have a CKN of its own. Sent at once if
    /// we are the key server now.
    pub fn distribute_cak(
        &mut self,
        now: Instant,
        ckn: &[u8],
        cak: &Secret,
    ) -> Result<Vec<Action>, KeyError> {
        if !(1..=32).contains(&ckn.len()) {
            return Err(KeyError::CknLength(ckn.len()));
        }
        if cak.len() != self.cfg.cak.len() || ckn == self.cfg.ckn {
            return Err(KeyError::DistributedCak(self.cfg.cak.len()));
        }
        self.cak_out = Some(DistributedCak::new(&wrap_sak(&self.kek, cak)?, ckn));
        let mut out = Vec::new();
        if self.is_key_server() {
            self.send(now, &mut out);
        }
        Ok(out)
    }

    /// Whether a CAK given to `distribute_cak` is being sent.
    pub fn distributes_cak(&self) -> bool {
        self.cak_out.is_some()
    }

    /// Stops sending the CAK given to `distribute_cak`.
    pub fn stop_distributing_cak(&mut self) {
        self.cak_out = None;
    }

    /// A Distributed CAK from the key server: passed on once per CKN, if we take them.
    fn take_cak(&mut self, d: &DistributedCak, out: &mut Vec<Action>) {
        let Some((wrapped, ckn)) = d.split(self.cfg.cak.len()) else {
            self.drop(Drop::BadCak);
            return;
        };
        if ckn == self.cfg.ckn || self.cak_in.as_deref() == Some(ckn) {
            return;
        }
        if !self.cfg.take_cak {
            self.cak_in = Some(ckn.to_vec());
            *self.drops.entry("unwanted_cak").or_default() += 1;
            return;
        }
        match unwrap_sak(&self.kek, wrapped) {
            Ok(cak) => {
                self.cak_in = Some(ckn.to_vec());
                out.push(Action::Cak {
                    ckn: ckn.to_vec(),
                    cak,
                });
            }
            Err(_) => self.drop(Drop::BadCak),
        }
    }

    /// Asks the key server (us, if we are) for a new SAK.
    pub fn request_rekey(&mut self) {
        self.rekey_wanted = true;
    }

    /// Another CA's key took the AN of our key `ki` on this port: its receive SA is gone.
    /// SAK Use says so from now on, so that the key server (us, or the peer) distributes a
    /// new SAK; until then this key is not transmitted with again.
    pub fn displaced(&mut self, ki: Ki) {
        if self.old.as_ref().is_some_and(|k| k.ki == ki) {
            self.old = None;
        }
        if let Some(k) = self.latest.as_mut().filter(|k| k.ki == ki) {
            k.rx = false;
            self.rekey_wanted = true;
        }
    }

    /// Whether every live peer, and we, receive with `ki`: only then may the port transmit
    /// with it.
    pub fn all_receive(&self, ki: Ki) -> bool {
        self.latest.as_ref().is_some_and(|k| k.ki == ki && k.rx)
            && self
                .peers
                .values()
                .filter(|p| p.live)
                .all(|p| p.rx_latest == Some(ki))
    }

    /// Another participant on the port installed a SAK on `an`: ours take the next ones.
    pub fn note_an(&mut self, an: u8) {
        self.last_an = Some(an & 3);
    }

    /// Whether this CA's keys are the ones the port transmits with; only then do interval
    /// and PN-threshold rekeys happen (another CA's would cycle through the ANs in use).
    pub fn set_principal(&mut self, principal: bool) {
        self.principal = principal;
    }

    /// The PNs in use, as the data plane reports them. Past the threshold, the key server
    /// wants a new SAK at once (`next_timer` says so).
    pub fn set_pns(&mut self, pns: PnStatus) {
        self.pns = pns;
        if self.threshold_crossed() {
            self.rekey_wanted = true;
        }
    }

    /// PN exhaustion (§9.8): we are the principal CA's key server and the latest key, in
    /// use by everyone, has been used past the threshold.
    fn threshold_crossed(&self) -> bool {
        self.principal
            && self.is_key_server()
            && self.latest.as_ref().is_some_and(|k| k.tx)
            && self.latest_pn() > self.cfg.pn_threshold
    }

    /// How far the latest key has been used: the highest of our next transmit PN under it,
    /// the lowest PN we accept under it, and what the live peers report.
    fn latest_pn(&self) -> u64 {
        let Some(k) = &self.latest else { return 0 };
        let tx = self.pns.tx_pn(k.ki).filter(|_| k.tx).unwrap_or(0);
        let rx = self.pns.rx_lowest_pn(k.an, k.ki).unwrap_or(0);
        tx.max(rx).max(self.peers_lowest_pn(k.ki))
    }

    /// The highest lowest acceptable PN the live peers report for `ki`: a transmit SA
    /// (re-)installed for it must start above, or their replay protection drops what it
    /// sends (802.1X §9.10.1).
    pub fn peers_lowest_pn(&self, ki: Ki) -> u64 {
        self.peers
            .values()
            .filter(|p| p.live && p.rx_latest == Some(ki))
            .map(|p| p.latest_lowest_pn)
            .max()
            .unwrap_or(0)
    }

    /// When `on_timer` next has something to do.
    pub fn next_timer(&self) -> Instant {
        let expiry = self.peers.values().map(|p| p.last_seen + LIFE).min();
        let rekey = self
            .cfg
            .rekey_interval
            .filter(|_| self.principal && self.is_key_server())
            .map(|i| self.last_rekey + i);
        // A rekey wanted by the key server (the PN threshold, a request) is due now.
        let now = (self.rekey_wanted && self.is_key_server()).then_some(self.last_rekey);
        [expiry, rekey, now]
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
            Drop::BadCak => "bad_cak",
            Drop::OwnSci => "own_sci",
        };
        *self.drops.entry(key).or_default() += 1;
    }

    /// Peers expire; hellos go; the key server rekeys when due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let before = self.peers.len();
        let live_before = self.peers.values().filter(|p| p.live).count();
        self.peers.retain(|_, p| now < p.last_seen + LIFE);
        let changed = self.peers.len() != before;
        if self.peers.values().filter(|p| p.live).count() != live_before {
            // A live peer left: a new SAK for those that remain (§9.8). A potential one
            // that never proved live (a replayed MKPDU) changes nothing.
            self.rekey_wanted = true;
        }
        if self.principal && self.is_key_server() {
            if let Some(i) = self.cfg.rekey_interval {
                if now >= self.last_rekey + i {
                    self.rekey_wanted = true;
                }
            }
        }
        if self.threshold_crossed() {
            self.rekey_wanted = true;
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
        // Our own SCI from another MI: a looped-back MKPDU, or a peer misconfigured with
        // our SCI. Either way not a peer: its SAKs would be installed for our own SC.
        if b.sci == self.cfg.sci {
            self.drop(Drop::OwnSci);
            return out;
        }
        if self.peers.get(&b.mi).is_some_and(|peer| b.mn <= peer.mn) || self.gone.contains(&b.mi) {
            self.drop(Drop::Replay);
            return out;
        }
        let m = p.mkpdu;
        // It lists us (live or potential) with an MN we sent within MKA Life Time (§9.4.2):
        // it hears us now. An older MN is a replay of something it heard before.
        let since = now.checked_sub(LIFE);
        let recent = self
            .sent_mns
            .iter()
            .find(|(_, at)| since.is_none_or(|s| *at >= s))
            .map_or(self.mn, |(mn, _)| *mn);
        let hears_us = m
            .live
            .iter()
            .chain(&m.potential)
            .any(|(mi, mn)| *mi == self.mi && *mn <= self.mn && *mn >= recent);
        let is_new = !self.peers.contains_key(&b.mi);
        let peer = self.peers.entry(b.mi).or_insert(Peer {
            sci: b.sci,
            priority: b.key_server_priority,
            mn: b.mn,
            last_seen: now,
            live: false,
            rx_latest: None,
            tx_latest: None,
            latest_lowest_pn: 0,
            ans_in_use: 0,
        });
        peer.mn = b.mn;
        peer.last_seen = now;
        peer.priority = b.key_server_priority;
        let became_live = hears_us && !peer.live;
        peer.live |= hears_us;
        if became_live {
            // The same SCI under another MI: that peer restarted, and the new MI has proven
            // live, so its old self is gone at once rather than after MKA Life Time. Not
            // before: an old MKPDU replayed from another MI must not evict a live peer.
            let gone: Vec<Mi> = self
                .peers
                .iter()
                .filter(|(mi, p)| **mi != b.mi && p.sci == b.sci)
                .map(|(mi, _)| *mi)
                .collect();
            for mi in gone {
                self.peers.remove(&mi);
                self.gone.push_back(mi);
                self.rekey_wanted = true;
            }
            while self.gone.len() > 16 {
                self.gone.pop_front();
            }
        }
        let Some(peer) = self.peers.get_mut(&b.mi) else {
            return out;
        };
        if let Some(u) = &m.sak_use {
            let keys = u.keys.as_ref();
            peer.rx_latest = keys.filter(|_| u.latest_rx).map(|k| k.latest);
            peer.tx_latest = keys.filter(|_| u.latest_tx).map(|k| k.latest);
            let high = m.xpn.map_or(0, |(latest, _)| u64::from(latest) << 32);
            peer.latest_lowest_pn = keys.map_or(0, |k| high | u64::from(k.latest_lowest_pn));
            peer.ans_in_use = 0;
            if keys.is_some() {
                if u.latest_rx || u.latest_tx {
                    peer.ans_in_use |= 1 << (u.latest_an & 3);
                }
                if u.old_rx || u.old_tx {
                    peer.ans_in_use |= 1 << (u.old_an & 3);
                }
            }
        }
        if became_live {
            // A peer joined: a new SAK for the CA (§9.8).
            self.rekey_wanted = true;
        }
        // A SAK from the key server, for the members it lists as live, us among them (a SAK
        // it distributed before it heard us, after our restart, was for the CA as it was:
        // with XPN it has no SSCI for us, and a new one follows once it lists us).
        let lists_us = m.live.iter().any(|(mi, _)| *mi == self.mi);
        if let (Some(d), Some(ks), true) = (&m.distributed_sak, self.key_server(), lists_us) {
            if ks == b.mi {
                let ki = Ki {
                    mi: b.mi,
                    kn: d.key_number,
                };
                if self.latest.as_ref().map(|k| k.ki) != Some(ki) {
                    match unwrap_sak(&self.kek, &d.wrapped) {
                        Ok(sak) => {
                            // The members the key server lists, by SCI, for the SSCIs.
                            let xpn = self.cfg.xpn.then(|| {
                                let mut scis = vec![b.sci];
                                for (mi, _) in &m.live {
                                    if *mi == self.mi {
                                        scis.push(self.cfg.sci);
                                    } else if let Some(p) = self.peers.get(mi) {
                                        scis.push(p.sci);
                                    }
                                }
                                XpnParams::new(&b.mi, d.key_number, scis)
                            });
                            let key = Key {
                                ki,
                                an: d.an,
                                sak,
                                tx: false,
                                rx: true,
                                xpn,
                            };
                            out.push(key.install_rx());
                            self.last_an = Some(key.an);
                            self.old = self.latest.replace(key);
                        }
                        Err(_) => self.drop(Drop::BadSak),
                    }
                }
            }
        }
        // A CAK from the key server (§9.8), under the KEK as a SAK is.
        if let (Some(d), Some(ks)) = (&m.distributed_cak, self.key_server()) {
            if ks == b.mi {
                self.take_cak(d, &mut out);
            }
        }
        self.step(now, &mut out);
        if is_new || became_live || out.iter().any(|a| !matches!(a, Action::Cak { .. })) {
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
            // A key in use that a live peer no longer receives with (another CA's key took
            // its AN there): a new SAK.
            let lost = self.latest.as_ref().is_some_and(|k| {
                k.tx && self
                    .peers
                    .values()
                    .any(|p| p.live && p.rx_latest != Some(k.ki))
            });
            if lost {
                self.rekey_wanted = false;
                if self.distribute(now, out).is_err() {
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
                    out.push(k.install_tx());
                }
            }
        } else if let (Some(ks), Some(k)) = (self.key_server(), self.latest.as_mut()) {
            // Follow the key server once it transmits with the latest key.
            let ks_tx = self.peers.get(&ks).and_then(|p| p.tx_latest);
            if ks_tx == Some(k.ki) && !k.tx {
                k.tx = true;
                out.push(k.install_tx());
            }
        }
    }

    fn distribute(&mut self, now: Instant, out: &mut Vec<Action>) -> Result<(), KeyError> {
        let sak = random_sak(self.cfg.sak_len)?;
        // The next AN after the last one, passing over those a live peer still has a key
        // on (§9.8: a new SAK never takes the AN of one in use): after a restart of ours the
        // peers keep transmitting under the CA's old key until the new one is in.
        let in_use = self
            .peers
            .values()
            .filter(|p| p.live)
            .fold(0u8, |m, p| m | p.ans_in_use);
        let first = self.last_an.map_or(0, |a| (a + 1) % 4);
        let an = (0..4)
            .map(|i| (first + i) % 4)
            .find(|a| in_use & (1 << a) == 0)
            .unwrap_or(first);
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
        let xpn = self.cfg.xpn.then(|| {
            let scis = std::iter::once(self.cfg.sci)
                .chain(self.peers.values().filter(|p| p.live).map(|p| p.sci))
                .collect();
            XpnParams::new(&self.mi, ki.kn, scis)
        });
        let key = Key {
            ki,
            an,
            sak,
            tx: false,
            rx: true,
            xpn,
        };
        out.push(key.install_rx());
        self.last_an = Some(an);
        self.old = self.latest.replace(key);
        self.last_rekey = now;
        Ok(())
    }

    /// SAK Use (§11.11.1): the latest and the old key, whether we receive and transmit with
    /// each, and the lowest PN we accept under each.
    fn sak_use(&self) -> (Option<SakUse>, Option<(u32, u32)>) {
        let Some(k) = &self.latest else {
            return (None, None);
        };
        let lowest = |key: &Key| self.pns.rx_lowest_pn(key.an, key.ki).unwrap_or(1).max(1);
        let latest_pn = lowest(k);
        let old_pn = self.old.as_ref().map_or(0, lowest);
        let u = SakUse {
            latest_an: k.an,
            latest_tx: k.tx,
            latest_rx: k.rx,
            old_an: self.old.as_ref().map_or(0, |o| o.an),
            old_tx: self.old.as_ref().is_some_and(|o| o.tx) && !k.tx,
            old_rx: self.old.is_some(),
            plain_tx: false,
            plain_rx: false,
            delay_protect: false,
            keys: Some(SakUseKeys {
                latest: k.ki,
                latest_lowest_pn: latest_pn as u32,
                old: self
                    .old
                    .as_ref()
                    .map_or(Ki { mi: [0; 12], kn: 0 }, |o| o.ki),
                old_lowest_pn: old_pn as u32,
            }),
        };
        let xpn = self
            .cfg
            .xpn
            .then_some(((latest_pn >> 32) as u32, (old_pn >> 32) as u32));
        (Some(u), xpn)
    }

    fn send(&mut self, now: Instant, out: &mut Vec<Action>) {
        // 2^32 MKPDUs are 272 years of hellos; the MN stays at its last value after that.
        self.mn = self.mn.saturating_add(1);
        self.sent_mns.push_back((self.mn, now));
        while self
            .sent_mns
            .front()
            .is_some_and(|(_, at)| *at + LIFE < now || self.sent_mns.len() > 256)
        {
            self.sent_mns.pop_front();
        }
        self.next_hello = now + HELLO;
        let (mut live, potential): (Vec<_>, Vec<_>) = self.peers.iter().partition(|(_, p)| p.live);
        // In SCI order: with XPN, members derive their SSCIs from it (802.1X-2020 §11.11.1).
        live.sort_unstable_by_key(|(_, p)| p.sci);
        let ks = self.is_key_server();
        let key_server_ssci = match (&self.distributing, &self.latest) {
            (Some(_), Some(k)) if ks => k
                .xpn
                .as_ref()
                .and_then(|x| x.ssci(&self.cfg.sci))
                .map_or(0, |s| s as u8),
            _ => 0,
        };
        let (sak_use, xpn) = self.sak_use();
        let m = Mkpdu {
            basic: Some(Basic {
                version: MKA_VERSION,
                key_server_priority: self.cfg.priority,
                key_server: ks,
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
            key_server_ssci,
            sak_use,
            distributed_sak: if ks { self.distributing.clone() } else { None },
            distributed_cak: if ks { self.cak_out.clone() } else { None },
            xpn,
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

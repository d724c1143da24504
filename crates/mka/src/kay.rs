//! The key agreement entity of one port (IEEE 802.1X-2020 §9.2, the KaY), sans IO: one
//! participant per CAK of the port's keychain (up to three, as AWS allows), all sharing the
//! port's SecY.
//!
//! - MKPDUs go to the participant of their CKN; one of an unknown CKN is dropped and counted.
//! - The *principal* CA is the first of the keychain, in its configured order, with a live
//!   peer. Only its transmit SAs are used, and only it rekeys on its interval or at the PN
//!   threshold. Every CA's receive SAs are installed, so each side may transmit under
//!   whichever CA it prefers while the other side catches up: this is what makes a CAK
//!   rollover (add the new key to both ends, then remove the old one) lose no frame.
//! - The CAs take their ANs in turn from the port's last one, so a new CA's first SAK does not
//!   land on the AN of a key in use.
//! - When the principal changes, transmission moves to the new principal's key: the SA
//!   installed for it before if there is one (its PNs carry on), else a fresh install.

use std::collections::HashMap;
use std::time::Instant;

use crate::keys::{KeyError, Secret};
use crate::mkpdu::{decode, Ki};
use crate::participant::{self, NewSa, Participant, PnStatus};

/// What the port's SecY and the network are asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this EAPOL frame to the peers.
    Send(Vec<u8>),
    /// Install the SA for receiving.
    InstallRx(NewSa),
    /// Install the SA for transmitting, from `next_pn`, and transmit with it. A key
    /// transmitted with before (the principal CA changed, and changed back) resumes above
    /// every PN it used and every PN a live peer has accepted under it: never at 1 again.
    InstallTx { sa: NewSa, next_pn: u64 },
    /// Transmit with the SA already installed on `an` again (its PNs carry on).
    UseTx { an: u8, ki: Ki },
    /// Remove the receive SA on `an`: its CA left the keychain, its key is no longer trusted.
    RemoveRx { an: u8, ki: Ki },
    /// The CA of keychain entry `ca` has a live peer (true) or lost its last one.
    Live { ca: usize, live: bool },
    /// The port now transmits under the CA of this keychain entry (None: no CA is live).
    Principal(Option<usize>),
    /// The key server of keychain entry `ca`'s CA distributed a new CAK (see
    /// `participant::Config::take_cak`).
    Cak { ca: usize, key: CaKey },
}

/// One keychain entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaKey {
    pub ckn: Vec<u8>,
    pub cak: Secret,
}

struct Ca {
    p: Participant,
    /// The key this CA would have the port transmit with: its last transmit install.
    tx: Option<NewSa>,
}

pub struct Kay {
    /// What every participant shares; the CAK and CKN vary.
    template: participant::Config,
    cas: Vec<Ca>,
    principal: Option<usize>,
    /// The key the port transmits with now.
    tx_on: Option<Ki>,
    /// Which key each transmit AN holds.
    tx_installed: [Option<Ki>; 4],
    /// Which key each receive AN holds.
    rx_installed: [Option<Ki>; 4],
    /// The AN of the port's last receive install: a new CA's first SAK takes the next.
    last_an: Option<u8>,
    pns: PnStatus,
    /// The highest next transmit PN seen under each key still in use by some CA.
    tx_used: HashMap<Ki, u64>,
    other_ckn: u64,
}

impl Kay {
    /// A KaY for the keychain `keys` (1 to 3 entries, preferred first). `template` gives
    /// everything but the CAK and CKN.
    pub fn new(
        template: participant::Config,
        keys: Vec<CaKey>,
        now: Instant,
    ) -> Result<Kay, KeyError> {
        let mut kay = Kay {
            template,
            cas: Vec::new(),
            principal: None,
            tx_on: None,
            tx_installed: [None; 4],
            rx_installed: [None; 4],
            last_an: None,
            pns: PnStatus::default(),
            tx_used: HashMap::new(),
            other_ckn: 0,
        };
        kay.set_keys(keys, now)?;
        Ok(kay)
    }

    /// Replaces the keychain (a reload): entries whose CKN and CAK are unchanged keep their
    /// participant and its state; new ones start; removed ones stop.
    pub fn set_keys(&mut self, keys: Vec<CaKey>, now: Instant) -> Result<Vec<Action>, KeyError> {
        let mut old: Vec<Ca> = std::mem::take(&mut self.cas);
        for k in keys {
            let kept = old
                .iter()
                .position(|c| c.p.ckn() == k.ckn.as_slice() && c.p.has_cak(&k.cak));
            let ca = match kept {
                Some(i) => old.swap_remove(i),
                None => {
                    let mut p = Participant::new(
                        participant::Config {
                            cak: k.cak,
                            ckn: k.ckn,
                            ..self.template.clone()
                        },
                        now,
                    )?;
                    if let Some(an) = self.last_an {
                        p.note_an(an);
                    }
                    p.set_pns(self.pns);
                    Ca { p, tx: None }
                }
            };
            self.cas.push(ca);
        }
        // The receive SAs of the CAs gone: their keys are no longer trusted.
        let mut out = Vec::new();
        let gone: Vec<Ki> = old.iter().flat_map(|c| c.p.keys()).collect();
        for (an, slot) in self.rx_installed.iter_mut().enumerate() {
            if let Some(ki) = slot.filter(|ki| gone.contains(ki)) {
                *slot = None;
                out.push(Action::RemoveRx { an: an as u8, ki });
            }
        }
        self.elect(&mut out);
        Ok(out)
    }

    /// The keychain's CKNs, in order.
    pub fn ckns(&self) -> impl Iterator<Item = &[u8]> {
        self.cas.iter().map(|c| c.p.ckn())
    }

    /// The latest key of keychain entry `ca`: its identifier, AN and whether it is
    /// transmitted with (by that CA; the port uses the principal's).
    pub fn latest(&self, ca: usize) -> Option<(Ki, u8, bool)> {
        self.cas.get(ca).and_then(|c| c.p.latest())
    }

    /// The keychain entry the port transmits under.
    pub fn principal(&self) -> Option<usize> {
        self.principal
    }

    /// Whether some CA has a live peer.
    pub fn live(&self) -> bool {
        self.cas.iter().any(|c| c.p.live())
    }

    /// Whether we are the key server of keychain entry `ca`'s CA.
    pub fn is_key_server_of(&self, ca: usize) -> bool {
        self.cas.get(ca).is_some_and(|c| c.p.is_key_server())
    }

    /// Whether keychain entry `ca`'s CA carries the port: it is the principal, the port
    /// transmits with its latest key, and so does every live peer.
    pub fn settled(&self, ca: usize) -> bool {
        self.principal == Some(ca)
            && self.cas.get(ca).is_some_and(|c| {
                c.p.settled() && self.tx_on.is_some() && self.tx_on == c.p.latest().map(|k| k.0)
            })
    }

    /// Has keychain entry `ca`'s CA hand `key` to its members while we are its key server
    /// (see `Participant::distribute_cak`).
    pub fn distribute_cak(
        &mut self,
        ca: usize,
        now: Instant,
        key: &CaKey,
    ) -> Result<Vec<Action>, KeyError> {
        let Some(c) = self.cas.get_mut(ca) else {
            return Ok(Vec::new());
        };
        let acts = c.p.distribute_cak(now, &key.ckn, &key.cak)?;
        let mut out = Vec::new();
        self.absorb(ca, acts, &mut out);
        Ok(out)
    }

    /// Whether keychain entry `ca`'s CA has a CAK to distribute (`distribute_cak`).
    pub fn distributes_cak(&self, ca: usize) -> bool {
        self.cas.get(ca).is_some_and(|c| c.p.distributes_cak())
    }

    /// Whether we are the key server of the principal CA.
    pub fn is_key_server(&self) -> bool {
        self.principal
            .is_some_and(|i| self.cas[i].p.is_key_server())
    }

    /// Asks for a new SAK now. Only the principal CA's key server distributes SAKs: when the
    /// peer is, this is refused with the reason.
    pub fn request_rekey(&mut self) -> Result<(), &'static str> {
        let Some(i) = self.principal else {
            return Err("no live peer");
        };
        if !self.cas[i].p.is_key_server() {
            return Err("the peer is the key server: it decides when to rekey");
        }
        self.cas[i].p.request_rekey();
        Ok(())
    }

    /// Drops by reason, over every participant, plus MKPDUs of a CKN not in the keychain.
    pub fn drops(&self) -> HashMap<&'static str, u64> {
        let mut d: HashMap<&'static str, u64> = HashMap::new();
        for c in &self.cas {
            for (k, n) in &c.p.drops {
                *d.entry(k).or_default() += n;
            }
        }
        if self.other_ckn > 0 {
            *d.entry("other_ckn").or_default() += self.other_ckn;
        }
        d
    }

    /// The PNs in use, as the data plane reports them.
    pub fn set_pns(&mut self, pns: PnStatus) {
        self.pns = pns;
        if let Some((ki, pn)) = pns.tx {
            let used = self.tx_used.entry(ki).or_default();
            *used = (*used).max(pn);
        }
        for c in &mut self.cas {
            c.p.set_pns(pns);
        }
        // Only keys some CA may still transmit with are worth remembering.
        let kept = self.keys();
        self.tx_used.retain(|ki, _| kept.contains(ki));
    }

    /// Every key some CA holds (latest, old, or to transmit with).
    pub fn keys(&self) -> Vec<Ki> {
        self.cas
            .iter()
            .flat_map(|c| c.p.keys().into_iter().chain(c.tx.as_ref().map(|t| t.ki)))
            .collect()
    }

    /// When `on_timer` next has something to do.
    pub fn next_timer(&self) -> Option<Instant> {
        self.cas.iter().map(|c| c.p.next_timer()).min()
    }

    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        for i in 0..self.cas.len() {
            if now >= self.cas[i].p.next_timer() {
                let acts = self.cas[i].p.on_timer(now);
                self.absorb(i, acts, &mut out);
            }
        }
        self.elect(&mut out);
        out
    }

    /// An EAPOL frame from `addrs` (DA and SA), from its protocol version octet on.
    pub fn on_mkpdu(&mut self, now: Instant, addrs: &[u8; 12], eapol: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        // The CKN picks the participant; that participant decodes and verifies it in full.
        let ca = decode(eapol).ok().and_then(|p| {
            let ckn = p.mkpdu.basic?.ckn;
            self.cas.iter().position(|c| c.p.ckn() == ckn.as_slice())
        });
        match ca {
            Some(i) => {
                let acts = self.cas[i].p.on_mkpdu(now, addrs, eapol);
                self.absorb(i, acts, &mut out);
            }
            None if decode(eapol).is_ok() => self.other_ckn += 1,
            // Malformed: the first participant counts it.
            None => {
                if let Some(c) = self.cas.first_mut() {
                    let acts = c.p.on_mkpdu(now, addrs, eapol);
                    self.absorb(0, acts, &mut out);
                }
            }
        }
        self.elect(&mut out);
        out
    }

    /// Passes on what participant `i` asked for, applying transmit changes only for the
    /// principal.
    fn absorb(&mut self, i: usize, acts: Vec<participant::Action>, out: &mut Vec<Action>) {
        for a in acts {
            match a {
                participant::Action::Send(f) => out.push(Action::Send(f)),
                participant::Action::InstallRx(sa) => {
                    let (an, ki) = (sa.an, sa.ki);
                    self.last_an = Some(an);
                    let gone = self.rx_installed[usize::from(an & 3)].replace(ki);
                    for (j, c) in self.cas.iter_mut().enumerate() {
                        if j != i {
                            c.p.note_an(an);
                            // Another CA's key had this AN: it is no longer received here,
                            // and never transmitted with again (a new SAK replaces it).
                            if let Some(old) = gone.filter(|o| *o != ki) {
                                c.p.displaced(old);
                                if c.tx.as_ref().is_some_and(|t| t.ki == old) {
                                    c.tx = None;
                                }
                            }
                        }
                    }
                    out.push(Action::InstallRx(sa));
                }
                participant::Action::InstallTx(key) => {
                    self.cas[i].tx = Some(key.clone());
                    if self.principal == Some(i) {
                        self.transmit(i, &key, out);
                    }
                }
                participant::Action::Live(live) => out.push(Action::Live { ca: i, live }),
                participant::Action::Cak { ckn, cak } => out.push(Action::Cak {
                    ca: i,
                    key: CaKey { ckn, cak },
                }),
            }
        }
    }

    fn transmit(&mut self, ca: usize, key: &NewSa, out: &mut Vec<Action>) {
        if self.tx_on == Some(key.ki) {
            return;
        }
        let an = usize::from(key.an & 3);
        if self.tx_installed[an] == Some(key.ki) {
            out.push(Action::UseTx {
                an: key.an,
                ki: key.ki,
            });
        } else {
            self.tx_installed[an] = Some(key.ki);
            let used = self.tx_used.get(&key.ki).copied().unwrap_or(0);
            let peers = self.cas[ca].p.peers_lowest_pn(key.ki);
            out.push(Action::InstallTx {
                sa: key.clone(),
                next_pn: used.max(peers).max(1),
            });
        }
        self.tx_on = Some(key.ki);
    }

    /// The principal is the first CA with a live peer; the port moves to its key.
    fn elect(&mut self, out: &mut Vec<Action>) {
        let principal = self.cas.iter().position(|c| c.p.live());
        for (j, c) in self.cas.iter_mut().enumerate() {
            c.p.set_principal(principal.is_none_or(|p| p == j));
        }
        if principal != self.principal {
            self.principal = principal;
            out.push(Action::Principal(principal));
        }
        // Only a key every live peer still receives with: after the principal changes, the
        // new principal's key may have lost its AN on either side since it was last used.
        if let Some((p, key)) = principal.and_then(|p| Some((p, self.cas[p].tx.clone()?))) {
            if self.cas[p].p.all_receive(key.ki) {
                self.transmit(p, &key, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_transmitted_with_before_is_installed_again_above_its_pns() {
        // The port moved to another CA, whose keys took this key's AN, and comes back: the
        // key is installed again, from above every PN it used, never from 1.
        let template = participant::Config {
            cak: Secret::new(vec![0; 16]).unwrap(),
            ckn: vec![0],
            sci: [2, 0, 0, 0, 0, 1, 0, 1],
            priority: 16,
            sak_len: 16,
            cipher_suite: None,
            xpn: false,
            rekey_interval: None,
            pn_threshold: 0xc000_0000,
            take_cak: false,
        };
        let keys = vec![CaKey {
            ckn: vec![1; 16],
            cak: Secret::new(vec![1; 16]).unwrap(),
        }];
        let now = Instant::now();
        let mut kay = Kay::new(template, keys, now).unwrap();
        let ki = Ki { mi: [7; 12], kn: 1 };
        let key = NewSa {
            an: 0,
            ki,
            sak: Secret::new(vec![9; 16]).unwrap(),
            xpn: None,
        };
        kay.cas[0].tx = Some(key.clone());
        let mut out = Vec::new();
        kay.transmit(0, &key, &mut out);
        assert!(matches!(out[..], [Action::InstallTx { next_pn: 1, .. }]));
        kay.set_pns(PnStatus {
            tx: Some((ki, 5000)),
            rx_lowest: [None; 4],
        });
        // Another CA's key on AN 0, then back.
        let other = Ki { mi: [8; 12], kn: 1 };
        kay.tx_installed[0] = Some(other);
        kay.tx_on = Some(other);
        out.clear();
        kay.transmit(0, &key, &mut out);
        assert!(
            matches!(out[..], [Action::InstallTx { next_pn: 5000, .. }]),
            "{out:?}"
        );
    }
}

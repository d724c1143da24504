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
use crate::participant::{self, Participant, PnStatus, XpnParams};

/// What the port's SecY and the network are asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this EAPOL frame to the peers.
    Send(Vec<u8>),
    /// Install `sak` under `an` for receiving.
    InstallRx {
        an: u8,
        ki: Ki,
        sak: Secret,
        xpn: Option<XpnParams>,
    },
    /// Install `sak` under `an` for transmitting, from PN 1, and transmit with it.
    InstallTx {
        an: u8,
        ki: Ki,
        sak: Secret,
        xpn: Option<XpnParams>,
    },
    /// Transmit with the SA already installed on `an` again (its PNs carry on).
    UseTx { an: u8, ki: Ki },
    /// Remove the receive SA on `an`: its CA left the keychain, its key is no longer trusted.
    RemoveRx { an: u8, ki: Ki },
    /// The CA of keychain entry `ca` has a live peer (true) or lost its last one.
    Live { ca: usize, live: bool },
    /// The port now transmits under the CA of this keychain entry (None: no CA is live).
    Principal(Option<usize>),
}

/// One keychain entry.
#[derive(Clone, Debug)]
pub struct CaKey {
    pub ckn: Vec<u8>,
    pub cak: Secret,
}

/// The port's transmit SA as last installed: which key, and its keys to re-install.
#[derive(Clone, Debug)]
struct TxKey {
    an: u8,
    ki: Ki,
    sak: Secret,
    xpn: Option<XpnParams>,
}

struct Ca {
    p: Participant,
    /// The key this CA would have the port transmit with: its last transmit install.
    tx: Option<TxKey>,
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
        for c in &mut self.cas {
            c.p.set_pns(pns);
        }
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
                participant::Action::InstallRx { an, ki, sak, xpn } => {
                    self.last_an = Some(an);
                    self.rx_installed[usize::from(an & 3)] = Some(ki);
                    for (j, c) in self.cas.iter_mut().enumerate() {
                        if j != i {
                            c.p.note_an(an);
                        }
                    }
                    out.push(Action::InstallRx { an, ki, sak, xpn });
                }
                participant::Action::InstallTx { an, ki, sak, xpn } => {
                    let key = TxKey { an, ki, sak, xpn };
                    self.cas[i].tx = Some(key.clone());
                    if self.principal == Some(i) {
                        self.transmit(&key, out);
                    }
                }
                participant::Action::Live(live) => out.push(Action::Live { ca: i, live }),
            }
        }
    }

    fn transmit(&mut self, key: &TxKey, out: &mut Vec<Action>) {
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
            out.push(Action::InstallTx {
                an: key.an,
                ki: key.ki,
                sak: key.sak.clone(),
                xpn: key.xpn.clone(),
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
        if let Some(key) = principal.and_then(|p| self.cas[p].tx.clone()) {
            self.transmit(&key, out);
        }
    }
}

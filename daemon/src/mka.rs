//! MKA for a link: the port's KaY fed with the link's MKPDUs, PNs and the clock, and its
//! answers applied to the link's SecY. The protocol is in `interlink_mka`; this is wiring.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::LazyLock;
use std::time::Instant;

use interlink_config::{Keying, Link as LinkConfig, MkaKeys};
use interlink_dataplane::{Link, SaKeys};
use interlink_macsec::{An, CipherSuite, Sak};
use interlink_mka::kay::{Action, CaKey, Kay};
use interlink_mka::keys::Secret;
use interlink_mka::mkpdu::Ki;
use interlink_mka::participant::{Config, NewSa, PnStatus, XpnParams};
use interlink_pairing::hex;

use crate::cak::Replacement;

/// Rung when an MKPDU arrives on any link: the main loop then runs MKA at once, and
/// otherwise only when a KaY's timer is due (no fixed polling).
pub static WAKE: LazyLock<tokio::sync::Notify> = LazyLock::new(tokio::sync::Notify::new);

/// MKPDUs one turn handles for one link, so that a flood cannot hold the main loop (BGP,
/// the watchdog) for long; what is left waits for the next turn.
const MKPDUS_PER_TURN: usize = 16;

/// MKA for one link: the KaY, where MKPDUs arrive, and what was last logged.
pub struct MkaRun {
    kay: Kay,
    rx: Receiver<Vec<u8>>,
    /// DA and SA the peer's MKPDUs are authenticated with: the group address and the MAC of
    /// the peer's SCI.
    peer_addrs: [u8; 12],
    icv_failures_logged: u64,
    flood_logged: u64,
    /// The key on each receive and transmit AN of the link, as installed: the PN readings
    /// are tagged with them, so that a reading is never credited to another key.
    rx_kis: [Option<Ki>; 4],
    tx_kis: [Option<Ki>; 4],
    /// The next PN of each key transmitted with, as last seen: a key installed again starts
    /// above it (an AN reused by another key loses the SA, not this).
    tx_next: HashMap<Ki, u64>,
    /// Transmit SAs switched to, and whether a peer is live: for the metrics.
    pub tx_switches: u64,
    pub live: bool,
    /// The configured keychain, and with `replace_cak` what replaces it (see `crate::cak`).
    configured: Vec<CaKey>,
    replace: Option<Replacement>,
    /// The CKN of the CA that protects the link, as last logged.
    principal: Option<String>,
}

fn keychain(m: &MkaKeys) -> Result<Vec<CaKey>, String> {
    m.keys
        .iter()
        .map(|k| {
            Ok(CaKey {
                ckn: k.ckn.clone(),
                cak: Secret::new(k.cak.as_bytes().to_vec()).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// Starts MKA on `link` if its config keys it so; a replaced CAK is read from `state_dir`.
pub fn start(link: &mut Link, l: &LinkConfig, state_dir: &Path) -> Option<Result<MkaRun, String>> {
    let Keying::Mka(m) = &l.macsec.keying else {
        return None;
    };
    let suite = l.macsec.cipher_suite;
    let configured = match keychain(m) {
        Ok(k) => k,
        Err(e) => return Some(Err(e)),
    };
    let first = configured.first()?.clone();
    let replace = match m
        .replace_cak
        .then(|| Replacement::load(state_dir, &l.name, &first, m.cak_lifetime))
        .transpose()
    {
        Ok(r) => r,
        Err(e) => return Some(Err(e)),
    };
    let keys = replace
        .as_ref()
        .map_or_else(|| configured.clone(), |r| r.keychain(&configured));
    let template = Config {
        cak: first.cak,
        ckn: first.ckn,
        sci: *link.sci().as_bytes(),
        priority: m.key_server_priority,
        sak_len: suite.key_len(),
        // GCM-AES-128 is the default, sent without its number (802.1X §11.11.1).
        cipher_suite: (suite != CipherSuite::GcmAes128).then(|| suite.reference_number()),
        xpn: suite.is_xpn(),
        rekey_interval: m.rekey_interval,
        pn_threshold: m.rekey_pn.unwrap_or(suite.default_rekey_threshold()),
        take_cak: m.replace_cak,
    };
    let rx = link.take_control_rx(|| WAKE.notify_one())?;
    link.set_pn_alarm(template.pn_threshold);
    let mut peer_addrs = [0u8; 12];
    peer_addrs[..6].copy_from_slice(&interlink_dataplane::EAPOL_GROUP);
    peer_addrs[6..].copy_from_slice(&link.peer_sci().mac());
    Some(
        Kay::new(template, keys, Instant::now())
            .map(|kay| MkaRun {
                kay,
                rx,
                peer_addrs,
                icv_failures_logged: 0,
                flood_logged: 0,
                rx_kis: [None; 4],
                tx_kis: [None; 4],
                tx_next: HashMap::new(),
                tx_switches: 0,
                live: false,
                configured,
                replace,
                principal: None,
            })
            .map_err(|e| e.to_string()),
    )
}

impl MkaRun {
    /// A reload: the new keychain; entries unchanged keep their state.
    pub fn set_keys(&mut self, link: &mut Link, m: &MkaKeys) -> Result<(), String> {
        self.configured = keychain(m)?;
        let keys = match (&mut self.replace, self.configured.first()) {
            (Some(r), Some(first)) => {
                r.reconfigure(first, m.cak_lifetime);
                r.keychain(&self.configured)
            }
            _ => self.configured.clone(),
        };
        let acts = self
            .kay
            .set_keys(keys, Instant::now())
            .map_err(|e| e.to_string())?;
        self.apply(link, acts);
        Ok(())
    }

    /// What the metrics show of MKA.
    pub fn metrics(&self, link: &Link) -> crate::metrics::MkaView {
        crate::metrics::MkaView {
            key_server: self.kay.is_key_server(),
            cak: self.cak_state(),
            drops: self.drops(link),
        }
    }

    /// MKPDUs dropped, by reason: the KaY's, and those the queue from the data plane had no
    /// room for (`queue_full`).
    fn drops(&self, link: &Link) -> HashMap<&'static str, u64> {
        let mut d = self.kay.drops();
        let full = link.control_dropped();
        if full > 0 {
            d.insert("queue_full", full);
        }
        d
    }

    /// Whether a peer is live (the CA holds).
    pub fn live(&self) -> bool {
        self.kay.live()
    }

    /// Asks for a new SAK now; refused when the peer is the key server.
    pub fn request_rekey(&mut self) -> Result<(), &'static str> {
        self.kay.request_rekey()
    }

    /// MKA as `interlinkctl show links` shows it.
    pub fn view(&self, link: &Link) -> serde_json::Value {
        let principal = self.kay.principal();
        let key = principal.and_then(|ca| self.kay.latest(ca));
        serde_json::json!({
            "live": self.kay.live(),
            "key_server": self.kay.is_key_server(),
            "ckn": principal.and_then(|ca| self.kay.ckns().nth(ca)).map(hex),
            "keychain": self.kay.ckns().map(hex).collect::<Vec<_>>(),
            "latest_key": key.map(|(ki, an, tx)| serde_json::json!({
                "key_number": ki.kn,
                "an": an,
                "transmitting": tx,
            })),
            "sak_changes": self.tx_switches,
            "cak": self.cak_state(),
            "drops": self.drops(link),
        })
    }

    /// When the KaY's next timer is due.
    pub fn next_timer(&self) -> Option<Instant> {
        self.kay.next_timer()
    }

    /// What the data plane's PNs are, each tagged with the key it is under; the transmit
    /// PN of the key in use is remembered for a later re-install.
    fn pns(&mut self, link: &Link) -> PnStatus {
        let tx = link.tx_pn().and_then(|(an, pn)| {
            let ki = self.tx_kis[an.index()]?;
            let seen = self.tx_next.entry(ki).or_default();
            *seen = (*seen).max(pn);
            Some((ki, pn))
        });
        let lowest = link.rx_lowest_pns();
        PnStatus {
            tx,
            rx_lowest: std::array::from_fn(|an| self.rx_kis[an].map(|ki| (ki, lowest[an]))),
        }
    }

    /// MKPDUs in (at most [`MKPDUS_PER_TURN`]), timers, PNs, and what the KaY asks for.
    /// Returns true if MKPDUs are left for another turn.
    pub fn turn(&mut self, link: &mut Link) -> bool {
        let now = Instant::now();
        let pns = self.pns(link);
        self.kay.set_pns(pns);
        let kept = self.kay.keys();
        self.tx_next.retain(|ki, _| kept.contains(ki));
        let mut actions = Vec::new();
        let mut more = true;
        for _ in 0..MKPDUS_PER_TURN {
            match self.rx.try_recv() {
                Ok(frame) => actions.extend(self.kay.on_mkpdu(now, &self.peer_addrs, &frame)),
                Err(_) => {
                    more = false;
                    break;
                }
            }
        }
        if self.kay.next_timer().is_some_and(|t| now >= t) {
            actions.extend(self.kay.on_timer(now));
        }
        let icv = self.kay.drops().get("icv").copied().unwrap_or(0);
        if icv > self.icv_failures_logged {
            let ckns: Vec<String> = self.kay.ckns().map(hex).collect();
            warn!(
                "mka: link {}: {icv} MKPDU(s) failed their ICV: the peer has another CAK for CKN {}",
                link.name(),
                ckns.join(" or ")
            );
            self.icv_failures_logged = icv + 4;
        }
        let flood = link.control_dropped();
        if flood > self.flood_logged {
            warn!(
                "mka: link {}: {flood} MKPDU(s) dropped: more arrived than MKA takes (a flood?)",
                link.name()
            );
            // Once per thousand more, not per MKPDU.
            self.flood_logged = flood + 1000;
        }
        self.apply(link, actions);
        more
    }

    fn apply(&mut self, link: &mut Link, actions: Vec<Action>) {
        let name = link.name().to_owned();
        // The SSCI of an SC under an XPN SAK (802.1AE-2018 §10.7.13), with the SAK's salt.
        let xpn_keys = |x: &Option<XpnParams>, sci: &interlink_macsec::Sci| match x {
            None => Ok(None),
            Some(x) => x
                .ssci(sci.as_bytes())
                .map(|ssci| Some((ssci, x.salt)))
                .ok_or_else(|| format!("the key server assigned no SSCI to SCI {sci}")),
        };
        let mut taken = Vec::new();
        for a in actions {
            match a {
                Action::Cak { ca, key } => taken.push((ca, key)),
                Action::Send(frame) => {
                    if let Err(e) = link.send_control(&frame) {
                        warn!("mka: link {name}: cannot send an MKPDU: {e}");
                    }
                }
                Action::InstallRx(NewSa { an, ki, sak, xpn }) => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    let r = xpn_keys(&xpn, &link.peer_sci()).and_then(|xpn| {
                        let keys = SaKeys {
                            sak: Sak::new(sak.as_bytes().to_vec()),
                            xpn,
                        };
                        link.install_rx_sa(an, keys, 1).map_err(|e| e.to_string())
                    });
                    match r {
                        Ok(()) => {
                            self.rx_kis[an.index()] = Some(ki);
                            log!("mka: link {name}: receiving with key {} on AN {an}", ki.kn)
                        }
                        Err(e) => warn!("mka: link {name}: cannot install the receive SA: {e}"),
                    }
                }
                Action::InstallTx {
                    sa: NewSa { an, ki, sak, xpn },
                    next_pn,
                } => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    // The SA this replaces took its PNs with it: note where its key was.
                    if let (Some(old), Some(sa)) = (self.tx_kis[an.index()], link.tx_secy().sa(an))
                    {
                        let seen = self.tx_next.entry(old).or_default();
                        *seen = (*seen).max(sa.next_pn().unwrap_or(u64::MAX));
                    }
                    // Above every PN this key used here, and every PN a peer accepted.
                    let from = next_pn.max(self.tx_next.get(&ki).copied().unwrap_or(1));
                    let r = xpn_keys(&xpn, &link.sci()).and_then(|xpn| {
                        let keys = SaKeys {
                            sak: Sak::new(sak.as_bytes().to_vec()),
                            xpn,
                        };
                        link.install_tx_sa(an, &keys, from)
                            .and_then(|()| link.use_tx_sa(an))
                            .map_err(|e| e.to_string())
                    });
                    match r {
                        Ok(()) => {
                            self.tx_kis[an.index()] = Some(ki);
                            self.tx_switches += 1;
                            if from > 1 {
                                log!(
                                    "mka: link {name}: sending with key {} on AN {an} again, from PN {from}",
                                    ki.kn
                                )
                            } else {
                                log!("mka: link {name}: sending with key {} on AN {an}", ki.kn)
                            }
                        }
                        Err(e) => warn!("mka: link {name}: cannot install the transmit SA: {e}"),
                    }
                }
                Action::UseTx { an, ki } => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    match link.use_tx_sa(an) {
                        Ok(()) => {
                            self.tx_switches += 1;
                            log!(
                                "mka: link {name}: sending with key {} on AN {an} again",
                                ki.kn
                            )
                        }
                        Err(e) => warn!("mka: link {name}: cannot switch the transmit SA: {e}"),
                    }
                }
                Action::RemoveRx { an, ki } => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    match link.remove_rx_sa(an) {
                        Ok(()) => {
                            self.rx_kis[an.index()] = None;
                            log!(
                                "mka: link {name}: key {} on AN {an} no longer accepted (its CAK left the keychain)",
                                ki.kn
                            )
                        }
                        Err(e) => warn!("mka: link {name}: cannot remove the receive SA: {e}"),
                    }
                }
                Action::Live { ca, live } => {
                    let ckn = self.kay.ckns().nth(ca).map(hex).unwrap_or_default();
                    if live {
                        log!("mka: link {name}: peer live (CKN {ckn})")
                    } else {
                        warn!("mka: link {name}: no live peer (CKN {ckn})")
                    }
                }
                Action::Principal(ca) => {
                    // The principal's index moves when the keychain changes around it: only
                    // another CA is news.
                    let ckn = ca.and_then(|ca| self.kay.ckns().nth(ca)).map(hex);
                    if ckn.is_some() && ckn != self.principal && self.kay.ckns().count() > 1 {
                        log!(
                            "mka: link {name}: the keys of CKN {} protect the link",
                            ckn.as_deref().unwrap_or_default()
                        )
                    }
                    self.principal = ckn;
                }
            }
        }
        self.live = self.kay.live();
        let more = self.replace_step(&name, taken);
        if !more.is_empty() {
            self.apply(link, more);
        }
    }

    /// `replace_cak` (see `crate::cak`): a CAK the configured CA's key server handed over is
    /// written down and run; as that key server, one is made, written down and handed over;
    /// once the new CA carries the link all round, that is written down and the configured CA
    /// dropped. Returns what the KaY asks for meanwhile.
    fn replace_step(&mut self, name: &str, taken: Vec<(usize, CaKey)>) -> Vec<Action> {
        match &mut self.replace {
            Some(r) => r.step(
                &mut self.kay,
                &self.configured,
                taken,
                Instant::now(),
                crate::offers::now(),
                name,
            ),
            None => Vec::new(),
        }
    }

    /// `interlinkctl link NAME replace-cak`: the next CAK now (see `Replacement::replace_now`);
    /// MKA runs at once.
    pub fn replace_cak_now(&mut self) -> Result<(), String> {
        let Some(r) = self.replace.as_mut() else {
            return Err("the link does not replace its CAK (replace_cak = true)".into());
        };
        r.replace_now(&self.kay, &self.configured)?;
        WAKE.notify_one();
        Ok(())
    }

    /// With `replace_cak`: configured, replacing, replaced or rotating (see
    /// `Replacement::state`).
    pub fn cak_state(&self) -> Option<&'static str> {
        self.replace.as_ref().map(Replacement::state)
    }
}

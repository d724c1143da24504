//! MKA for a link: the port's KaY fed with the link's MKPDUs, PNs and the clock, and its
//! answers applied to the link's SecY. The protocol is in `interlink_mka`; this is wiring.

use std::sync::mpsc::Receiver;
use std::time::Instant;

use interlink_config::{Keying, Link as LinkConfig, MkaKeys};
use interlink_dataplane::{Link, SaKeys};
use interlink_macsec::{An, CipherSuite, Sak};
use interlink_mka::kay::{Action, CaKey, Kay};
use interlink_mka::keys::Secret;
use interlink_mka::participant::{Config, PnStatus, XpnParams};

/// MKA for one link: the KaY, where MKPDUs arrive, and what was last logged.
pub struct MkaRun {
    kay: Kay,
    rx: Receiver<Vec<u8>>,
    /// DA and SA the peer's MKPDUs are authenticated with: the group address and the MAC of
    /// the peer's SCI.
    peer_addrs: [u8; 12],
    icv_failures_logged: u64,
    /// Transmit SAs switched to, and whether a peer is live: for the metrics.
    pub tx_switches: u64,
    pub live: bool,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn keychain(m: &MkaKeys) -> Result<Vec<CaKey>, String> {
    m.keys
        .iter()
        .map(|k| {
            Ok(CaKey {
                ckn: k.ckn.clone(),
                cak: Secret::new(k.cak.clone()).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

/// Starts MKA on `link` if its config keys it so.
pub fn start(link: &mut Link, l: &LinkConfig) -> Option<Result<MkaRun, String>> {
    let Keying::Mka(m) = &l.macsec.keying else {
        return None;
    };
    let suite = l.macsec.cipher_suite;
    let keys = match keychain(m) {
        Ok(k) => k,
        Err(e) => return Some(Err(e)),
    };
    let first = keys.first()?.clone();
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
    };
    let rx = link.take_control_rx()?;
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
                tx_switches: 0,
                live: false,
            })
            .map_err(|e| e.to_string()),
    )
}

impl MkaRun {
    /// A reload: the new keychain; entries unchanged keep their state.
    pub fn set_keys(&mut self, link: &mut Link, m: &MkaKeys) -> Result<(), String> {
        let keys = keychain(m)?;
        let acts = self
            .kay
            .set_keys(keys, Instant::now())
            .map_err(|e| e.to_string())?;
        self.apply(link, acts);
        Ok(())
    }

    /// What the metrics show of MKA.
    pub fn metrics(&self) -> crate::metrics::MkaView {
        crate::metrics::MkaView {
            key_server: self.kay.is_key_server(),
            drops: self.kay.drops(),
        }
    }

    /// Asks for a new SAK now; refused when the peer is the key server.
    pub fn request_rekey(&mut self) -> Result<(), &'static str> {
        self.kay.request_rekey()
    }

    /// MKA as `interlinkctl show links` shows it.
    pub fn view(&self) -> serde_json::Value {
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
            "drops": self.kay.drops(),
        })
    }

    /// MKPDUs in, timers, PNs, and what the KaY asks for.
    pub fn turn(&mut self, link: &mut Link) {
        let now = Instant::now();
        self.kay.set_pns(PnStatus {
            tx: link.tx_pn().map(|(an, pn)| (an.index() as u8, pn)),
            rx_lowest: link.rx_lowest_pns(),
        });
        let mut actions = Vec::new();
        while let Ok(frame) = self.rx.try_recv() {
            actions.extend(self.kay.on_mkpdu(now, &self.peer_addrs, &frame));
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
        self.apply(link, actions);
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
        for a in actions {
            match a {
                Action::Send(frame) => {
                    if let Err(e) = link.send_control(&frame) {
                        warn!("mka: link {name}: cannot send an MKPDU: {e}");
                    }
                }
                Action::InstallRx { an, ki, sak, xpn } => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    let r = xpn_keys(&xpn, &link.peer_sci()).and_then(|xpn| {
                        let keys = SaKeys {
                            sak: Sak::new(sak.as_bytes().to_vec()),
                            xpn,
                        };
                        link.install_rx_sa(an, keys, 1).map_err(|e| e.to_string())
                    });
                    match r {
                        Ok(()) => log!("mka: link {name}: receiving with key {} on AN {an}", ki.kn),
                        Err(e) => warn!("mka: link {name}: cannot install the receive SA: {e}"),
                    }
                }
                Action::InstallTx { an, ki, sak, xpn } => {
                    let an = An::new(an & 3).expect("an AN is 0 to 3");
                    let r = xpn_keys(&xpn, &link.sci()).and_then(|xpn| {
                        let keys = SaKeys {
                            sak: Sak::new(sak.as_bytes().to_vec()),
                            xpn,
                        };
                        link.install_tx_sa(an, &keys, 1)
                            .and_then(|()| link.use_tx_sa(an))
                            .map_err(|e| e.to_string())
                    });
                    match r {
                        Ok(()) => {
                            self.tx_switches += 1;
                            log!("mka: link {name}: sending with key {} on AN {an}", ki.kn)
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
                        Ok(()) => log!(
                            "mka: link {name}: key {} on AN {an} no longer accepted (its CAK left the keychain)",
                            ki.kn
                        ),
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
                Action::Principal(Some(ca)) if self.kay.ckns().count() > 1 => {
                    let ckn = self.kay.ckns().nth(ca).map(hex).unwrap_or_default();
                    log!("mka: link {name}: the keys of CKN {ckn} protect the link")
                }
                Action::Principal(_) => {}
            }
        }
        self.live = self.kay.live();
    }
}

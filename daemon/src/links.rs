//! A running link: its data plane, its MKA and what was last logged of it; started from
//! its `[[link]]` and stopped with a line of what it carried.

use std::path::Path;

use interlink_config::{Keying, Link as LinkConfig};
use interlink_dataplane::{netlink, FlowSpec, Link, LinkError, LinkSpec};
use interlink_macsec::Backend;

use crate::mka::MkaRun;
use crate::translate::{pn_state_file, spec};

/// Starts the data plane and configures its interface. An interface of the link's name that
/// a previous run left (a TUN with our alias) is attached to, its addresses and the routes
/// through it kept; any other interface of that name is refused. The bool says whether it
/// was attached to.
async fn bring_up(
    handle: &rtnetlink::Handle,
    link: &LinkConfig,
    state_dir: &Path,
    flows: Option<&FlowSpec>,
) -> Result<(Link, bool), String> {
    let alias = netlink::alias(&link.name);
    let found = netlink::existing(handle, &link.interface)
        .await
        .map_err(|e| format!("look for interface {}: {e}", link.interface))?;
    let reattach = match &found {
        None => false,
        Some(e) if e.tun && e.alias.as_deref() == Some(alias.as_str()) => true,
        Some(_) => {
            return Err(format!(
                "interface {} exists and is not one interlinkd left for this link (alias {alias:?}); remove it or name another interface",
                link.interface
            ))
        }
    };
    let start = |reattach| {
        Link::start(LinkSpec {
            reattach,
            flows: flows.cloned(),
            ..spec(link, state_dir)
        })
    };
    let (running, reattached) = match (start(reattach), &found) {
        (Ok(l), _) => (l, reattach),
        (Err(e @ LinkError::Reattach { .. }), Some(old)) => {
            // Of another shape (one queue against several): replaced, and the routes
            // through it go with it.
            warn!("link {}: {e}; replacing it", link.name);
            netlink::delete(handle, old.ifindex)
                .await
                .map_err(|e| format!("delete {}: {e}", link.interface))?;
            (start(false).map_err(|e| e.to_string())?, false)
        }
        (Err(e), _) => return Err(e.to_string()),
    };
    let addresses: Vec<_> = link
        .addresses
        .iter()
        .map(|a| (a.addr, a.prefix_len))
        .collect();
    netlink::configure(handle, running.ifindex(), running.mtu(), &alias, &addresses)
        .await
        .map_err(|e| format!("configure {}: {e}", link.interface))?;
    Ok((running, reattached))
}

/// A running link, its MKA and what was last logged of it.
pub(crate) struct LinkRun {
    pub cfg: LinkConfig,
    pub link: Link,
    pub mka: Option<MkaRun>,
    was_up: bool,
    /// The peer has answered probes at some time: from then on, the link's liveness says
    /// whether next hops across it can be reached (a peer that never answers, such as a
    /// kernel `ip macsec` one, is not taken as down).
    ever_up: bool,
    /// Failed writes of the PN state already logged.
    state_errors: u64,
    /// A link offered with `interlinkctl link offer`: pending or available.
    pub offer: Option<crate::offers::Offer>,
}

impl LinkRun {
    pub(crate) async fn start(
        handle: &rtnetlink::Handle,
        l: &LinkConfig,
        state_dir: &Path,
        flows: Option<&FlowSpec>,
    ) -> Result<LinkRun, String> {
        let (mut link, reattached) = bring_up(handle, l, state_dir, flows).await?;
        let mka = crate::mka::start(&mut link, l, state_dir)
            .transpose()
            .map_err(|e| format!("MKA: {e}"))?;
        let lanes = {
            let (lanes, window) = link.lanes();
            let mut s = String::new();
            if link.queues() > 1 {
                s += &format!(", {} queues", link.queues());
            }
            if lanes > 1 {
                s += &format!(", {lanes} lanes");
            }
            if link.validators() > 0 {
                s += &format!(", {} validation helpers", link.validators());
            }
            if window > 0 {
                s += &format!(", replay window {window}");
            }
            s
        };
        let resume = match (&l.macsec.keying, link.tx_pn()) {
            (Keying::Static(_), Some((_, pn))) => format!(
                ", sending from PN {pn} ({})",
                pn_state_file(state_dir, &l.name).display()
            ),
            _ => String::new(),
        };
        log!(
            "link {}: {} up{}, mtu {}, {} ({}), SCI {} to {}{lanes}{resume}",
            link.name(),
            link.ifname(),
            if reattached {
                " (the interface a previous run left, with its routes)"
            } else {
                ""
            },
            link.mtu(),
            l.macsec.cipher_suite,
            Backend::default(),
            link.sci(),
            link.peer_sci()
        );
        let offer = crate::offers::Offer::of(l, state_dir);
        if let Some(o) = offer.as_ref().filter(|o| !o.available) {
            log!(
                "link {}: offered, pending until the other site accepts the key (expires at Unix time {})",
                l.name,
                o.expires
            );
        }
        Ok(LinkRun {
            cfg: l.clone(),
            link,
            mka,
            was_up: false,
            ever_up: false,
            state_errors: 0,
            offer,
        })
    }

    /// Every half second: a line when the peer starts or stops answering, or when the PN
    /// state could not be written; an offered link turns available once the other site's
    /// MKA peer is live. False once an offer has expired with nobody come: the link is to
    /// be given up.
    pub(crate) fn tick(&mut self) -> bool {
        if let Some(o) = &mut self.offer {
            if !o.available && self.mka.as_ref().is_some_and(|m| m.live()) {
                match o.accepted() {
                    Ok(()) => log!(
                        "link {}: available: the other site accepted the offer (its MKA peer is live)",
                        self.cfg.name
                    ),
                    Err(e) => warn!(
                        "link {}: available, but cannot record it in the state directory: {e}",
                        self.cfg.name
                    ),
                }
            } else if o.expired() {
                return false;
            }
        }
        let (errors, last) = self.link.state_errors();
        if errors > self.state_errors {
            self.state_errors = errors;
            warn!(
                "link {}: cannot reserve packet numbers: {}; the link stops sending once the reserved ones are used",
                self.link.name(),
                last.unwrap_or_default()
            );
        }
        let l = self.link.liveness();
        if l.up != self.was_up {
            match l.last_rtt {
                Some(rtt) if l.up => {
                    log!("link {}: peer reachable, rtt {:?}", self.link.name(), rtt)
                }
                _ => warn!("link {}: peer unreachable", self.link.name()),
            }
            self.was_up = l.up;
            self.ever_up |= l.up;
        }
        true
    }

    /// The peer answered probes once and does not now: next hops across the link cannot be
    /// reached. (One that never answered, such as a kernel `ip macsec` peer, is not lost.)
    pub(crate) fn peer_lost(&self) -> bool {
        self.ever_up && !self.link.liveness().up
    }

    /// Stops the workers, with a line of what the link carried. The interface goes, unless
    /// `keep_interface` (a stop with `on_shutdown = "keep"`): then it stays with its
    /// addresses and the routes through it, for the next run to attach to.
    pub(crate) fn stop(self, keep_interface: bool) {
        let name = self.link.name().to_owned();
        let c = self.link.counters();
        self.link.stop(keep_interface);
        let secy: Vec<String> = c
            .secy_tx
            .entries()
            .chain(c.secy_rx.entries())
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        log!(
            "link {name}: stopped{}; sent {} packets, received {}, dropped {}; {}",
            if keep_interface {
                ", its interface kept"
            } else {
                ""
            },
            c.link.underlay_tx_packets,
            c.secy_rx.in_pkts_ok,
            c.secy_rx.dropped(),
            secy.join(" ")
        );
    }
}

/// A turn of MKA on every link that runs it; if MKPDUs are left (a flood), another turn is
/// asked for, after whatever else the main loop has waiting.
pub(crate) fn mka_turns(links: &mut [LinkRun]) {
    let mut more = false;
    for l in links.iter_mut() {
        if let Some(m) = &mut l.mka {
            more |= m.turn(&mut l.link);
        }
    }
    if more {
        crate::mka::WAKE.notify_one();
    }
}

/// What the links' workers need for flow logs, from `[flows]` and the running exporter.
pub(crate) fn flow_spec(
    flows: Option<&interlink_config::Flows>,
    exporter: Option<&interlink_flow::Exporter>,
) -> Option<FlowSpec> {
    let (f, e) = (flows?, exporter?);
    Some(FlowSpec {
        sink: e.sink(),
        table: interlink_flow::TableConfig {
            max_flows: f.max_flows,
            active_ms: f.active_timeout.as_millis() as u64,
            idle_ms: f.idle_timeout.as_millis() as u64,
            sampling: f.sampling,
        },
    })
}

/// A link's flow tables in one direction (out: its transmit workers', in: its receive
/// workers'), summed as they last showed themselves, with their largest flows.
pub(crate) struct FlowTables {
    pub direction: interlink_flow::Direction,
    pub active: u64,
    pub ended: u64,
    pub evicted: u64,
    pub top: Vec<interlink_flow::Record>,
}

pub(crate) fn flow_tables(link: &Link) -> Vec<FlowTables> {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out: Vec<FlowTables> = Vec::new();
    for v in link.flow_views() {
        let Some(direction) = v.direction.lock().ok().and_then(|d| *d) else {
            continue;
        };
        let i = match out.iter().position(|t| t.direction == direction) {
            Some(i) => i,
            None => {
                out.push(FlowTables {
                    direction,
                    active: 0,
                    ended: 0,
                    evicted: 0,
                    top: Vec::new(),
                });
                out.len() - 1
            }
        };
        let t = &mut out[i];
        t.active += v.active.load(Relaxed);
        t.ended += v.ended.load(Relaxed);
        t.evicted += v.evicted.load(Relaxed);
        if let Ok(top) = v.top.lock() {
            t.top.extend(top.iter().copied());
        }
    }
    out
}

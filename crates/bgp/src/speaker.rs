//! The BGP speaker's decisions, sans IO (the shape of holo-bgp's `events.rs`): neighbors,
//! the RIB, import and export policy (RFC 8212 defaults), max-prefix with its restart timer,
//! graceful restart as the receiving speaker (stale routes, End-of-RIB), convergence,
//! originated networks, reconfiguration by difference, and what each peer is sent, packed.
//! [`Speaker`] is fed the time and what happened (a session's event, a reload, a timer) and
//! answers with [`Output`]s: commands for the session tasks, listeners to set up, events for
//! the daemon. It opens no socket, reads no clock and sends on no channel; `tasks` runs it on
//! tokio against `peer::run`.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fsm::{self, Down, Negotiated};
use crate::peer::{MessageCounts, PeerCmd, PeerConfig, PeerEvent, Secret, Ttl};
use crate::policy::{self, Source};
pub use crate::policy::{ExportPolicy, ImportPolicy, PrefixFilter};
use crate::rib::{Best, Change, PeerId, PeerInfo, Rib, LOCAL};
pub use crate::tasks::{run, SpeakerCmd};
use crate::update::{self, Attrs, Codec, Decoded, Nlri, Origin};
use crate::wire::{code, Capabilities, Family, GracefulRestart, Message, Notification};
use interlink_table::{Afi, PerFamily};

#[derive(Clone, Debug)]
pub struct Neighbor {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub hold_time: u16,
    pub passive: bool,
    pub md5: Option<Secret>,
    /// None: RFC 8212, nothing from an eBGP peer (everything from an iBGP one).
    pub import: Option<ImportPolicy>,
    /// None: RFC 8212, nothing to an eBGP peer (everything to an iBGP one).
    pub export: Option<ExportPolicy>,
    /// The families offered in our OPEN (MP-BGP, RFC 4760): IPv4-only and IPv6-only sessions
    /// as the clouds run them, or both.
    pub families: Vec<Family>,
    /// Our address for the session: the source of our connections, and where the listener
    /// binds (every address when a neighbor of the family has none).
    pub local_address: Option<IpAddr>,
    /// GTSM (RFC 5082): TTL 255 out, and nothing taken that arrives with less.
    pub ttl_security: bool,
}

#[derive(Clone, Debug)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub neighbors: Vec<Neighbor>,
    pub networks: Vec<Nlri>,
    pub multipath: bool,
    /// The port to listen on (179).
    pub listen_port: u16,
    /// Advertised in our graceful restart capability: how long peers should keep our routes
    /// while we restart (the FIB keeps them in the kernel meanwhile).
    pub restart_time: u16,
    /// We have just restarted (the FIB found our routes in the kernel): the R bit of the
    /// capability (RFC 4724 §3), so peers keep what they learnt from us until our End-of-RIB.
    pub restarting: bool,
}

/// How much a log line from the speaker matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// What happened: sessions, policy changes, restarts.
    Info,
    /// Something went wrong: a peer sent what it should not, a limit was passed, a socket
    /// could not be set up.
    Warning,
}

/// What the speaker tells the daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeakerEvent {
    /// Best routes changed, in order: for the FIB. One event per UPDATE (or per other cause),
    /// not per prefix.
    Best(Vec<Change>),
    PeerUp {
        address: IpAddr,
        asn: u32,
    },
    PeerDown {
        address: IpAddr,
        why: String,
        /// Its routes stay, stale, while it restarts (graceful restart): it forwards still.
        routes_kept: bool,
    },
    /// Something worth a log line, and how much.
    Log {
        severity: Severity,
        text: String,
    },
    /// Every peer has come up and sent End-of-RIB for its families: the FIB may sweep what
    /// a previous run left.
    Converged,
}

/// The most best routes one `Routes` answer lists (the first, in prefix order).
pub const SHOW_ROUTES_MAX: usize = 10_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeighborOp {
    /// Cease/Administrative Reset, then up again.
    Reset,
    /// The neighbor's BFD session went down (RFC 5882): Cease/BFD Down (RFC 9384), then up
    /// again when it can.
    BfdDown,
    /// Cease/Administrative Shutdown with this communication; stays down until enabled.
    Shutdown(String),
    Enable,
}

/// A neighbor as `interlinkctl show neighbors` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NeighborView {
    pub address: IpAddr,
    pub remote_as: u32,
    /// "established", "down", or "shutdown" (administratively).
    pub state: &'static str,
    /// How long it has been established.
    pub uptime: Option<Duration>,
    /// Why it last went down.
    pub last_error: Option<String>,
    /// Prefixes per family (IPv4, IPv6): received (before import policy: only where soft
    /// reconfiguration keeps them), accepted, and advertised to it.
    pub received: Option<PerFamily<usize>>,
    /// Announcements import policy refused since the session came up.
    pub refused: PerFamily<u64>,
    pub accepted: PerFamily<usize>,
    pub advertised: PerFamily<usize>,
    /// Messages by type, in the order of [`crate::peer::MESSAGE_TYPES`].
    pub messages_sent: [u64; 6],
    pub messages_received: [u64; 6],
}

/// A route as `interlinkctl show routes` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub prefix: Nlri,
    pub best: bool,
    /// The neighbor it came from; None for our own networks.
    pub from: Option<IpAddr>,
    pub next_hops: Vec<IpAddr>,
    pub attrs: Arc<Attrs>,
}

struct PeerState {
    cfg: Neighbor,
    negotiated: Option<Negotiated>,
    local: Option<SocketAddr>,
    ebgp: bool,
    /// Stale routes of a restarting peer go at this time unless End-of-RIB comes first.
    stale_until: Option<Instant>,
    /// Families whose End-of-RIB is still awaited.
    awaiting_eor: Vec<Family>,
    /// The peer has been up and sent End-of-RIB for every family since we started.
    synced: bool,
    /// Adj-RIB-Out: the prefixes we have announced to the peer, so that only those are
    /// withdrawn from it.
    advertised: PrefixSet,
    /// What the peer is owed and how much its session task holds unwritten.
    owed: Owed,
    /// With soft reconfiguration only: what the peer has announced, before policy, with
    /// the attributes it came with (Adj-RIB-In), for `max_received` and for policy changes.
    /// Otherwise refused routes are counted, never stored, so a peer sending what we
    /// refuse costs no memory.
    adj_in: Option<AdjIn>,
    /// Announcements import policy refused since the session came up, per family.
    refused: PerFamily<u64>,
    /// Kept by the session task, read for the views.
    counts: Arc<MessageCounts>,
    up_since: Option<Instant>,
    last_error: Option<String>,
    /// Shut down by the operator: stays down until enabled.
    admin_down: bool,
    /// Torn down for max-prefix: started again at this time.
    restart_at: Option<Instant>,
    /// Its routes going, a chunk per turn.
    flush: Option<Flush>,
    /// Per family: over the max-prefix limit (warned once per crossing).
    over_limit: PerFamily<bool>,
}

impl PeerState {
    fn source(&self) -> Source {
        Source::Peer { ebgp: self.ebgp }
    }
}

/// What the speaker asks of its I/O edge.
#[derive(Debug)]
pub enum Output {
    /// Start the session task of neighbor `id` (its connections in and out, its timers).
    StartPeer { id: PeerId, config: Box<PeerConfig> },
    /// Neighbor `id` is gone (its task has been told to stop): its commands and the
    /// connections from its address are no longer taken.
    ForgetPeer { id: PeerId, address: IpAddr },
    /// A command for the session task of `id`.
    Peer(PeerId, PeerCmd),
    /// A listener for each family `neighbors` use, on `port`, with their TCP-MD5 keys; the
    /// keys of `gone` (neighbors removed) are deleted from listeners that exist.
    Listen {
        neighbors: Vec<Neighbor>,
        port: u16,
        gone: Vec<Neighbor>,
    },
    /// For the daemon.
    Event(SpeakerEvent),
}

/// What the speaker is told.
#[derive(Debug)]
pub enum Input {
    /// A session task's event.
    Peer(PeerId, PeerEvent),
    /// A reload (see [`SpeakerCmd::Reconfigure`]).
    Reconfigure(Box<SpeakerConfig>),
    /// The networks next hops cannot be reached through now.
    Unreachable(Vec<Nlri>),
}

/// The speaker: its configuration, its neighbors and the RIB.
pub struct Speaker {
    cfg: SpeakerConfig,
    peers: HashMap<PeerId, PeerState>,
    rib: Rib,
    next_id: PeerId,
    converged: bool,
    /// The time of the last input: when a withdrawal under way is due to go on.
    last_seen: Option<Instant>,
}

/// Collects what one input produces.
struct Out(Vec<Output>);

impl Out {
    fn log(&mut self, text: String) {
        self.event(SpeakerEvent::Log {
            severity: Severity::Info,
            text,
        });
    }

    fn warn(&mut self, text: String) {
        self.event(SpeakerEvent::Log {
            severity: Severity::Warning,
            text,
        });
    }

    fn peer(&mut self, id: PeerId, cmd: PeerCmd) {
        self.0.push(Output::Peer(id, cmd));
    }

    fn event(&mut self, e: SpeakerEvent) {
        self.0.push(Output::Event(e));
    }
}

impl Speaker {
    /// A speaker for `cfg`: its neighbors' session tasks to start, listeners to set up.
    pub fn new(cfg: SpeakerConfig) -> (Speaker, Vec<Output>) {
        let mut s = Speaker {
            rib: Rib::new(cfg.multipath),
            peers: HashMap::new(),
            next_id: 0,
            converged: false,
            last_seen: None,
            cfg,
        };
        let mut out = Out(Vec::new());
        for n in s.cfg.neighbors.clone() {
            s.add_peer(&n, &mut out);
        }
        out.0.push(Output::Listen {
            neighbors: s.cfg.neighbors.clone(),
            port: s.cfg.listen_port,
            gone: Vec::new(),
        });
        // Our networks, as routes of our own.
        let local = local_attrs();
        for p in &s.cfg.networks {
            s.rib.insert(LOCAL, *p, local.clone(), &mut Vec::new());
        }
        s.check_converged(&mut out);
        (s, out.0)
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.cfg
    }

    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The neighbor `id` is, by address.
    pub fn peer_id(&self, address: IpAddr) -> Option<PeerId> {
        self.peers
            .iter()
            .find(|(_, p)| p.cfg.address == address)
            .map(|(id, _)| *id)
    }

    fn add_peer(&mut self, n: &Neighbor, out: &mut Out) {
        self.next_id += 1;
        let id = self.next_id;
        let counts = Arc::new(MessageCounts::default());
        let ebgp = n.remote_as != self.cfg.local_as;
        out.0.push(Output::StartPeer {
            id,
            config: Box::new(PeerConfig {
                counts: counts.clone(),
                fsm: fsm_config(&self.cfg, n),
                remote: SocketAddr::new(n.address, n.port),
                local: n.local_address,
                ttl: if n.ttl_security {
                    Ttl::Gtsm
                } else if ebgp {
                    Ttl::One
                } else {
                    Ttl::Default
                },
                md5: n.md5.clone(),
            }),
        });
        self.peers.insert(
            id,
            PeerState {
                cfg: n.clone(),
                negotiated: None,
                local: None,
                ebgp,
                stale_until: None,
                flush: None,
                awaiting_eor: vec![],
                synced: false,
                advertised: PrefixSet::default(),
                owed: Owed::default(),
                adj_in: adj_in_for(n),
                refused: PerFamily::default(),
                counts,
                up_since: None,
                last_error: None,
                admin_down: false,
                restart_at: None,
                over_limit: PerFamily::default(),
            },
        );
    }

    /// When [`Speaker::on_timer`] next has something to do: a restarting peer's stale
    /// routes, or a max-prefix hold ending.
    pub fn next_timer(&self) -> Option<Instant> {
        // A withdrawal under way goes on at the next turn: due as soon as the time last seen.
        let flushing = self
            .peers
            .values()
            .any(|p| p.flush.is_some())
            .then_some(self.last_seen)
            .flatten();
        self.peers
            .values()
            .filter_map(|p| p.stale_until)
            .chain(self.peers.values().filter_map(|p| p.restart_at))
            .chain(flushing)
            .min()
    }

    /// Timers due at `now`: max-prefix holds end (the session starts again), stale routes
    /// of a peer that did not come back within its restart time go.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        self.last_seen = Some(now);
        let mut out = Out(Vec::new());
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        for id in &ids {
            let p = self.peers.get_mut(id).expect("known peer");
            if p.restart_at.is_some_and(|t| t <= now) {
                p.restart_at = None;
                p.over_limit = PerFamily::default();
                if !p.admin_down {
                    out.peer(*id, PeerCmd::Start);
                    out.log(format!(
                        "bgp: {}: max-prefix hold over; starting again",
                        p.cfg.address
                    ));
                }
            }
        }
        for id in ids {
            let p = self.peers.get_mut(&id).expect("known peer");
            if p.stale_until.is_some_and(|t| t <= now) {
                p.stale_until = None;
                p.flush = Some(Flush::new(FlushWhy::RestartOver));
            }
            self.flush_step(id, &mut out);
        }
        self.check_converged(&mut out);
        out.0
    }

    /// Something happened at `now`.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Output> {
        self.last_seen = Some(now);
        let mut out = Out(Vec::new());
        match input {
            Input::Peer(id, e) => self.peer_event(now, id, e, &mut out),
            Input::Reconfigure(new) => self.reconfigure(now, *new, &mut out),
            Input::Unreachable(nets) => {
                let changes = self.rib.set_unreachable(nets);
                if !changes.is_empty() {
                    out.log(format!(
                        "bgp: next hops changed reachability: {} best route(s) changed",
                        changes.len()
                    ));
                }
                self.publish(changes, &mut out);
            }
        }
        self.check_converged(&mut out);
        out.0
    }

    /// RFC 4724 §4.1: selection settles once every peer has sent End-of-RIB; a peer that
    /// does not come up is waited for no longer than the daemon's restart timer.
    fn check_converged(&mut self, out: &mut Out) {
        if !self.converged && self.peers.values().all(|p| p.synced) {
            self.converged = true;
            out.event(SpeakerEvent::Converged);
        }
    }

    /// An operator's reset, shutdown or enable of the neighbor at `address`.
    pub fn neighbor_op(&mut self, address: IpAddr, op: NeighborOp) -> Result<Vec<Output>, String> {
        let id = self
            .peer_id(address)
            .ok_or_else(|| format!("{address} is not a configured neighbor"))?;
        let p = self.peers.get_mut(&id).expect("known peer");
        let mut out = Out(Vec::new());
        match op {
            NeighborOp::Reset => {
                let n = Notification::new(code::CEASE, code::CEASE_ADMIN_RESET, &[]);
                out.peer(id, PeerCmd::Reset(n));
            }
            NeighborOp::BfdDown => {
                let n = Notification::new(code::CEASE, code::CEASE_BFD_DOWN, &[]);
                out.peer(id, PeerCmd::Reset(n));
            }
            NeighborOp::Shutdown(text) => {
                p.admin_down = true;
                out.peer(id, PeerCmd::Stop(text));
            }
            NeighborOp::Enable => {
                p.admin_down = false;
                p.restart_at = None;
                out.peer(id, PeerCmd::Start);
            }
        }
        Ok(out.0)
    }

    /// The neighbors as `interlinkctl show neighbors` shows them, by address.
    pub fn neighbors(&self, now: Instant) -> Vec<NeighborView> {
        let mut list: Vec<NeighborView> = self
            .peers
            .iter()
            .map(|(id, p)| {
                let accepted = self.rib.count_by_family(*id);

                NeighborView {
                    address: p.cfg.address,
                    remote_as: p.cfg.remote_as,
                    state: if p.negotiated.is_some() {
                        "established"
                    } else if p.admin_down {
                        "shutdown"
                    } else {
                        "down"
                    },
                    uptime: p.up_since.map(|t| now.saturating_duration_since(t)),
                    last_error: p.last_error.clone(),
                    received: p.adj_in.as_ref().map(AdjIn::counts),
                    refused: p.refused,
                    accepted,
                    advertised: p.advertised.counts(),
                    messages_sent: p.counts.sent(),
                    messages_received: p.counts.received(),
                }
            })
            .collect();
        list.sort_by_key(|n| n.address);
        list
    }

    /// The routes to `prefix` (every candidate, best first), or the first
    /// [`SHOW_ROUTES_MAX`] best routes in prefix order (a full table is a million).
    pub fn routes(&self, prefix: Option<Nlri>) -> Vec<RouteView> {
        let rib = &self.rib;
        let from = |id: PeerId| rib.peer(id).map(|p| p.address);
        match prefix {
            Some(p) => {
                let best = rib.best(&p);
                rib.routes(&p)
                    .into_iter()
                    .map(|(id, attrs)| {
                        let is_best = best.as_ref().is_some_and(|b| b.peer == id);
                        RouteView {
                            prefix: p,
                            best: is_best,
                            from: from(id),
                            next_hops: match (&best, is_best) {
                                (Some(b), true) => b.next_hops.clone(),
                                _ => attrs.next_hop.into_iter().collect(),
                            },
                            attrs,
                        }
                    })
                    .collect()
            }
            None => rib
                .iter()
                .take(SHOW_ROUTES_MAX)
                .map(|(p, b)| RouteView {
                    prefix: p,
                    best: true,
                    from: from(b.peer),
                    next_hops: b.next_hops.clone(),
                    attrs: b.attrs.clone(),
                })
                .collect(),
        }
    }

    fn peer_event(&mut self, now: Instant, id: PeerId, e: PeerEvent, out: &mut Out) {
        if matches!(e, PeerEvent::Up(..)) {
            // What is left of the old session's routes goes before the new one's come.
            while self.peers.get(&id).is_some_and(|p| p.flush.is_some()) {
                self.flush_step(id, out);
            }
        }
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let address = p.cfg.address;
        match e {
            PeerEvent::Up(n, local) => {
                self.rib.set_peer(
                    id,
                    PeerInfo {
                        address,
                        router_id: n.peer.router_id,
                        asn: n.peer.asn,
                        ebgp: p.ebgp,
                    },
                );
                p.awaiting_eor = n.families.clone();
                p.negotiated = Some(*n.clone());
                p.local = Some(local);
                p.up_since = Some(now);
                p.owed = Owed::default();
                out.event(SpeakerEvent::PeerUp {
                    address,
                    asn: n.peer.asn,
                });
                self.send_table(id, out);
            }
            PeerEvent::Update(body) => self.update(now, id, &body, out),
            PeerEvent::RouteRefresh(_) => self.send_table(id, out),
            PeerEvent::Written(n) => {
                p.owed.in_flight = p.owed.in_flight.saturating_sub(n);
                self.pump(id, out);
            }
            PeerEvent::Down(why) => {
                let gr = p
                    .negotiated
                    .as_ref()
                    .and_then(|n| n.peer_graceful_restart.clone());
                p.negotiated = None;
                p.local = None;
                p.awaiting_eor.clear();
                p.advertised.clear();
                p.owed = Owed::default();
                p.adj_in = adj_in_for(&p.cfg);
                p.refused = PerFamily::default();
                p.up_since = None;
                let text = describe(&why);
                p.last_error = Some(text.clone());
                // RFC 4724 §4.2: after a TCP failure the restarting peer's routes stay,
                // stale, for its restart time; after a NOTIFICATION they go (RFC 8538 aside).
                let kept = matches!(
                    (&gr, &why),
                    (Some(gr), Down::ConnectionClosed) if gr.restart_time > 0
                );
                out.event(SpeakerEvent::PeerDown {
                    address,
                    why: text,
                    routes_kept: kept,
                });
                match (gr, &why) {
                    (Some(gr), Down::ConnectionClosed) if gr.restart_time > 0 => {
                        self.rib.mark_stale(id);
                        p.stale_until = Some(now + Duration::from_secs(gr.restart_time.into()));
                        out.log(format!(
                            "bgp: {address}: keeping its routes for {} s (graceful restart)",
                            gr.restart_time
                        ));
                    }
                    _ => {
                        // Every route goes, a chunk per turn (as stale routes do), from the
                        // next turn on: the word that the peer is down goes out first, for
                        // the FIB to move the routes through it to their backups at once,
                        // not after a walk of the table and a chunk of withdrawals.
                        let mut f = Flush::new(FlushWhy::Down);
                        f.marked = false;
                        p.flush = Some(f);
                    }
                }
            }
            PeerEvent::Failed(why) => out.warn(format!(
                "bgp: {address}: session failed: {}",
                describe(&why)
            )),
        }
    }

    /// An UPDATE from an established peer: End-of-RIB, import policy, the RIB, max-prefix.
    fn update(&mut self, now: Instant, id: PeerId, body: &[u8], out: &mut Out) {
        let local_as = self.cfg.local_as;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let address = p.cfg.address;
        let Some(n) = p.negotiated.clone() else {
            return;
        };
        match update::decode(body, &Codec::for_session(&n, p.ebgp)) {
            Decoded::Update(u) => {
                if !u.discarded.is_empty() {
                    out.warn(format!(
                        "bgp: {address}: attributes {:?} discarded (RFC 7606)",
                        u.discarded
                    ));
                }
                for f in &u.end_of_rib {
                    p.awaiting_eor.retain(|x| x != f);
                }
                if !u.end_of_rib.is_empty() && p.awaiting_eor.is_empty() {
                    p.synced = true;
                }
                if !u.end_of_rib.is_empty() && p.stale_until.is_some() && p.awaiting_eor.is_empty()
                {
                    p.stale_until = None;
                    p.flush = Some(Flush::new(FlushWhy::EndOfRib));
                    self.flush_step(id, out);
                    return;
                }
                let raw = u;
                let u = policy::import(&raw, p.cfg.import.as_ref(), p.ebgp, local_as);
                for pr in &u.rejected {
                    p.refused[pr.afi()] += 1;
                }
                // The limits hold before the UPDATE is applied: one that would cross them
                // reaches neither the Loc-RIB, the kernel nor another peer.
                if let Some(l) = p.cfg.import.as_ref().and_then(Limits::of) {
                    let accepted = accepted_after(&self.rib, id, &u);
                    let received = p.adj_in.as_ref().map(|a| adj_in_after(a, &raw));
                    if !within_limits(p, id, l, accepted, received, now, out) {
                        // Not applied: the session is going down.
                        return;
                    }
                }
                if let Some(a) = p.adj_in.as_mut() {
                    for pr in &raw.withdrawn {
                        a.remove(pr);
                    }
                    if let Some(attrs) = &raw.attrs {
                        for pr in &raw.announced {
                            a.insert(pr, Some(attrs.clone()));
                        }
                    }
                }
                let changes = self.rib.apply(id, &u.update);
                self.publish(changes, out);
            }
            Decoded::TreatAsWithdraw(prefixes, why) => {
                out.warn(format!(
                    "bgp: {address}: {} prefix(es) treated as withdrawn: {why}",
                    prefixes.len()
                ));
                let mut changes = Vec::new();
                for pr in &prefixes {
                    self.rib.remove(id, pr, &mut changes);
                }
                self.publish(changes, out);
            }
            Decoded::Reset(n) => {
                out.warn(format!("bgp: {address}: malformed UPDATE, resetting: {n}"));
                out.peer(id, PeerCmd::Reset(n));
            }
        }
    }

    /// A reload: neighbors removed go (Cease/Peer De-configured), new ones start, changed
    /// sessions restart; a policy change alone is applied softly (route refresh for import,
    /// the Adj-RIB-Out re-sent for export); networks are added and withdrawn.
    fn reconfigure(&mut self, now: Instant, new: SpeakerConfig, out: &mut Out) {
        // Our AS, identifier or port: every session starts again.
        let all = new.local_as != self.cfg.local_as
            || new.router_id != self.cfg.router_id
            || new.listen_port != self.cfg.listen_port;
        let mut changes = Vec::new();
        let mut gone = Vec::new();
        let mut export_changed = Vec::new();
        let mut soft = Vec::new();
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let old = self.peers[&id].cfg.clone();
            match new.neighbors.iter().find(|n| n.address == old.address) {
                Some(n) if !all && same_session(&old, n) => {
                    let p = self.peers.get_mut(&id).expect("known peer");
                    let import = format!("{:?}", old.import) != format!("{:?}", n.import);
                    let export = format!("{:?}", old.export) != format!("{:?}", n.export);
                    p.cfg = n.clone();
                    // Soft reconfiguration turned on: the Adj-RIB-In is kept from now on
                    // (the route refresh below fills it); turned off: no longer.
                    let kept = p.adj_in.is_some();
                    if kept != adj_in_for(n).is_some() {
                        p.adj_in = adj_in_for(n);
                    }
                    if import && kept && p.adj_in.is_some() {
                        // The new policy applied to what the peer sent: no refresh, no reset.
                        soft.push(id);
                        out.log(format!(
                            "bgp: {}: import policy changed; applied to the routes kept \
                             (soft reconfiguration)",
                            old.address
                        ));
                    } else if import {
                        // RFC 2918: the peer sends its routes again, through the new policy.
                        match &p.negotiated {
                            Some(neg) if neg.route_refresh => {
                                let mut msg = Vec::new();
                                for f in &neg.families {
                                    Message::RouteRefresh {
                                        family: *f,
                                        subtype: 0,
                                    }
                                    .encode(&mut msg);
                                }
                                out.peer(id, PeerCmd::Send(msg));
                                out.log(format!(
                                    "bgp: {}: import policy changed; route refresh asked",
                                    old.address
                                ));
                            }
                            Some(_) => {
                                let n =
                                    Notification::new(code::CEASE, code::CEASE_CONFIG_CHANGE, &[]);
                                out.peer(id, PeerCmd::Reset(n));
                                out.warn(format!(
                                    "bgp: {}: import policy changed and the peer cannot refresh: \
                                     resetting the session",
                                    old.address
                                ));
                            }
                            None => {}
                        }
                    }
                    if export {
                        export_changed.push(id);
                    }
                }
                kept => {
                    self.peers.remove(&id);
                    let why = if kept.is_some() {
                        "session settings changed"
                    } else {
                        "neighbor removed from the configuration"
                    };
                    out.peer(id, PeerCmd::Stop(why.into()));
                    out.0.push(Output::ForgetPeer {
                        id,
                        address: old.address,
                    });
                    changes.extend(self.rib.flush(id));
                    out.log(format!("bgp: {}: {why}", old.address));
                    gone.push(old);
                }
            }
        }
        for id in soft {
            changes.extend(self.reimport(now, id, out));
        }
        let old_cfg = std::mem::replace(&mut self.cfg, new);
        for n in self.cfg.neighbors.clone() {
            if !self.peers.values().any(|p| p.cfg.address == n.address) {
                self.add_peer(&n, out);
                out.log(format!("bgp: {}: neighbor added", n.address));
            }
        }
        out.0.push(Output::Listen {
            neighbors: self.cfg.neighbors.clone(),
            port: self.cfg.listen_port,
            gone,
        });
        for p in &old_cfg.networks {
            if !self.cfg.networks.contains(p) {
                self.rib.remove(LOCAL, p, &mut changes);
            }
        }
        for p in &self.cfg.networks {
            if !old_cfg.networks.contains(p) {
                self.rib.insert(LOCAL, *p, local_attrs(), &mut changes);
            }
        }
        if self.cfg.multipath != old_cfg.multipath {
            let c = self.rib.set_multipath(self.cfg.multipath);
            out.log(format!(
                "bgp: multipath {}: {} best route(s) changed",
                if self.cfg.multipath { "on" } else { "off" },
                c.len()
            ));
            changes.extend(c);
        }
        self.publish(changes, out);
        for id in export_changed {
            self.resync_out(id, out);
            if let Some(p) = self.peers.get(&id) {
                out.log(format!(
                    "bgp: {}: export policy changed; routes sent again",
                    p.cfg.address
                ));
            }
        }
    }

    /// Whether the best route to `prefix` (from `from`, with `attrs`) may go to `to`, and
    /// with which attributes.
    fn export_to(&self, prefix: &Nlri, from: PeerId, attrs: &Attrs, to: &PeerState) -> bool {
        let source = if from == LOCAL {
            Source::Local
        } else {
            match self.peers.get(&from) {
                Some(p) => p.source(),
                // A peer gone (its routes are being flushed): as iBGP, the stricter.
                None => Source::Peer { ebgp: false },
            }
        };
        policy::exports(prefix, attrs, source, to.ebgp, to.cfg.export.as_ref())
    }

    fn outgoing(&self, best: &Attrs, to: &PeerState, v6: bool) -> Option<Attrs> {
        let local = to.local?.ip();
        policy::outgoing(
            best,
            local,
            to.ebgp,
            to.cfg.export.as_ref(),
            self.cfg.local_as,
            v6,
        )
    }

    /// One chunk of a withdrawal under way: up to `FLUSH_CHUNK` of the peer's stale routes
    /// leave the RIB, and their changes go out, so that neither this turn nor the FIB's
    /// queue holds a whole table's changes at once.
    fn flush_step(&mut self, id: PeerId, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(f) = p.flush.as_mut() else {
            return;
        };
        if !f.marked {
            self.rib.mark_stale(id);
            f.marked = true;
        }
        let (changes, next) = self.rib.sweep_stale_from(id, &f.from, FLUSH_CHUNK);
        f.removed += changes.len();
        match next {
            Some(n) => f.from = n,
            None => {
                let (why, removed) = (f.why, f.removed);
                p.flush = None;
                if why == FlushWhy::RestartOver {
                    out.log(format!(
                        "bgp: {}: restart time over, {removed} stale route(s) removed",
                        p.cfg.address
                    ));
                }
            }
        }
        self.publish(changes, out);
    }

    /// Soft reconfiguration: the peer's routes as import policy takes them now, from its
    /// Adj-RIB-In, into the RIB (what it no longer takes is withdrawn). A policy that lets
    /// more through than max_prefixes meets the limit as an UPDATE would: the session ends
    /// (or, with "warn", a warning), and nothing of the new policy is applied.
    fn reimport(&mut self, now: Instant, id: PeerId, out: &mut Out) -> Vec<Change> {
        let local_as = self.cfg.local_as;
        let Some(p) = self.peers.get(&id) else {
            return Vec::new();
        };
        let Some(a) = &p.adj_in else {
            return Vec::new();
        };
        // The routes grouped by the attributes they came with, as their UPDATEs carried them.
        let mut groups: Vec<(Arc<Attrs>, Vec<Nlri>)> = Vec::new();
        let mut index: HashMap<*const Attrs, usize> = HashMap::new();
        for (prefix, attrs) in a.iter() {
            let Some(attrs) = attrs else { continue };
            let at = *index.entry(Arc::as_ptr(attrs)).or_insert_with(|| {
                groups.push((attrs.clone(), Vec::new()));
                groups.len() - 1
            });
            groups[at].1.push(prefix);
        }
        let (policy, ebgp) = (p.cfg.import.clone(), p.ebgp);
        let imported: Vec<policy::Imported> = groups
            .into_iter()
            .map(|(attrs, announced)| {
                let u = update::Update {
                    announced,
                    attrs: Some(attrs),
                    ..update::Update::default()
                };
                policy::import(&u, policy.as_ref(), ebgp, local_as)
            })
            .collect();
        // Every route the peer has comes through here: what policy takes is its whole set.
        let mut accepted = PerFamily::<usize>::default();
        for i in &imported {
            for pr in &i.update.announced {
                accepted[pr.afi()] += 1;
            }
        }
        let limits = policy.as_ref().and_then(Limits::of);
        if let (Some(l), Some(p)) = (limits, self.peers.get_mut(&id)) {
            if !within_limits(p, id, l, accepted, None, now, out) {
                return Vec::new();
            }
        }
        let mut changes = Vec::new();
        for i in imported {
            changes.extend(self.rib.apply(id, &i.update));
        }
        changes
    }

    /// After an export policy change: what the peer has from us but may no longer have is
    /// withdrawn, and everything it may have is sent again.
    fn resync_out(&mut self, id: PeerId, out: &mut Out) {
        let Some(p) = self.peers.get(&id) else {
            return;
        };
        if p.negotiated.is_none() {
            return;
        }
        let stale: Vec<Nlri> = p
            .advertised
            .set
            .iter()
            .filter(|pfx| match self.rib.best(pfx) {
                Some(b) => {
                    b.peer == id
                        || !self.export_to(pfx, b.peer, &b.attrs, p)
                        || self.outgoing(&b.attrs, p, pfx.is_ipv6()).is_none()
                }
                None => true,
            })
            .copied()
            .collect();
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.owed.pending.extend(stale);
        p.owed.feed = Some(first_prefix());
        p.owed.eor = true;
        self.pump(id, out);
    }

    /// Sends everything `to` may have, packed by outgoing attribute set, then End-of-RIB for
    /// its families: a walk of the table, as the peer's socket takes it.
    fn send_table(&mut self, to: PeerId, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&to) else {
            return;
        };
        if p.negotiated.is_none() {
            return;
        }
        p.owed.feed = Some(first_prefix());
        p.owed.eor = true;
        self.pump(to, out);
    }

    /// Hands `to` what it is owed, a batch at a time, until its session task holds `WINDOW`
    /// octets unwritten (it reports what it writes): changed prefixes first, then the walk
    /// of the table, then End-of-RIB.
    fn pump(&mut self, to: PeerId, out: &mut Out) {
        loop {
            let Some(p) = self.peers.get_mut(&to) else {
                return;
            };
            let Some(n) = &p.negotiated else { return };
            if p.owed.in_flight >= WINDOW {
                return;
            }
            if !p.owed.pending.is_empty() {
                let batch: Vec<Nlri> = (0..BATCH)
                    .map_while(|_| p.owed.pending.pop_first())
                    .collect();
                let now: Vec<(Nlri, Option<Best>)> =
                    batch.into_iter().map(|x| (x, self.rib.best(&x))).collect();
                let e = self.encode_for(to, now.iter().map(|(x, b)| (*x, b.as_ref())));
                self.deliver(to, e, out);
            } else if let Some(from) = p.owed.feed {
                let mut walk: Vec<(Nlri, Best)> =
                    self.rib.iter_from(&from).take(BATCH + 1).collect();
                let next = (walk.len() > BATCH)
                    .then(|| walk.pop().map(|(x, _)| x))
                    .flatten();
                let e = self.encode_for(to, walk.iter().map(|(x, b)| (*x, Some(b))));
                if let Some(p) = self.peers.get_mut(&to) {
                    p.owed.feed = next;
                }
                self.deliver(to, e, out);
            } else if p.owed.eor {
                p.owed.eor = false;
                let mut msg = Vec::new();
                for f in &n.families {
                    update::encode_end_of_rib(&mut msg, *f);
                }
                p.owed.in_flight += msg.len();
                out.peer(to, PeerCmd::Send(msg));
            } else {
                return;
            }
        }
    }

    /// What `items` (prefixes with their best route now) mean for `to`: announcements,
    /// grouped by the attribute set they go out with and each group packed into as few
    /// UPDATEs as fit (a table passed on is not a message per prefix), and withdrawals of
    /// what it has from us but may no longer have.
    fn encode_for<'a>(
        &self,
        to: PeerId,
        items: impl Iterator<Item = (Nlri, Option<&'a Best>)>,
    ) -> Encoded {
        let mut e = Encoded::default();
        let Some(p) = self.peers.get(&to) else {
            return e;
        };
        let Some(n) = &p.negotiated else { return e };
        let codec = Codec::for_session(n, p.ebgp);
        // The outgoing set is worked out once per best-route set (the changes of one UPDATE
        // share one).
        let mut groups: Vec<OutGroup> = Vec::new();
        for (prefix, best) in items {
            let v6 = prefix.is_ipv6();
            if !n.families.contains(&family(v6)) {
                continue;
            }
            let group = match best {
                Some(b) if b.peer != to && self.export_to(&prefix, b.peer, &b.attrs, p) => {
                    let at = groups
                        .iter()
                        .position(|g| Arc::ptr_eq(&g.0, &b.attrs) && g.1 == v6);
                    let at = at.unwrap_or_else(|| {
                        let a = self.outgoing(&b.attrs, p, v6);
                        groups.push((b.attrs.clone(), v6, a, Vec::new()));
                        groups.len() - 1
                    });
                    groups[at].2.is_some().then_some(at)
                }
                _ => None,
            };
            match group {
                Some(at) => {
                    groups[at].3.push(prefix);
                    e.announced.push(prefix);
                }
                // Only what the peer has from us is withdrawn from it.
                None if p.advertised.contains(&prefix) => e.withdrawn.push(prefix),
                None => {}
            }
        }
        for (_, _, a, prefixes) in &groups {
            if let (Some(a), false) = (a, prefixes.is_empty()) {
                update::encode_announce(&mut e.msg, prefixes, a, &codec);
            }
        }
        encode_withdrawals(&mut e.msg, &e.withdrawn, &codec);
        e
    }

    /// Sends what `encode_for` made and records it in the Adj-RIB-Out.
    fn deliver(&mut self, to: PeerId, e: Encoded, out: &mut Out) {
        let Some(p) = self.peers.get_mut(&to) else {
            return;
        };
        p.advertised.extend(e.announced);
        for w in &e.withdrawn {
            p.advertised.remove(w);
        }
        if !e.msg.is_empty() {
            p.owed.in_flight += e.msg.len();
            out.peer(to, PeerCmd::Send(e.msg));
        }
    }

    /// Passes best-route changes to the daemon (for the FIB) and to the peers they go to:
    /// encoded at once while a peer's session task can take them, and otherwise noted, once
    /// per prefix, for when it can.
    fn publish(&mut self, changes: Vec<Change>, out: &mut Out) {
        let mut ids: Vec<PeerId> = self.peers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let mut rest: &[Change] = &changes;
            while !rest.is_empty() {
                let Some(p) = self.peers.get_mut(&id) else {
                    break;
                };
                if p.negotiated.is_none() {
                    break;
                }
                if p.owed.in_flight >= WINDOW {
                    p.owed
                        .pending
                        .extend(rest.iter().filter(|c| !c.backup_only).map(|c| c.prefix));
                    break;
                }
                let (now, later) = rest.split_at(rest.len().min(BATCH));
                // A change of backup alone is the FIB's business, not the peers'.
                let e = self.encode_for(
                    id,
                    now.iter()
                        .filter(|c| !c.backup_only)
                        .map(|c| (c.prefix, c.best.as_ref())),
                );
                self.deliver(id, e, out);
                rest = later;
            }
        }
        if !changes.is_empty() {
            out.event(SpeakerEvent::Best(changes));
        }
    }
}

/// Routes removed per turn when a peer's routes go (its session down, its stale routes
/// swept): the changes of one chunk, not of a whole table, are in memory at once.
pub const FLUSH_CHUNK: usize = 16 * 1024;

/// A peer's routes going, a chunk per turn.
struct Flush {
    /// Where the walk of the table is.
    from: Nlri,
    removed: usize,
    why: FlushWhy,
    /// The peer's routes are marked stale (the first step does it for a session down).
    marked: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum FlushWhy {
    /// The session went down without graceful restart.
    Down,
    /// Graceful restart: the peer's restart time ran out.
    RestartOver,
    /// Graceful restart: End-of-RIB came; what was not announced again goes.
    EndOfRib,
}

impl Flush {
    fn new(why: FlushWhy) -> Flush {
        Flush {
            from: first_prefix(),
            removed: 0,
            why,
            marked: true,
        }
    }
}

/// How many octets of UPDATEs a peer's session task may hold unwritten. Beyond it, what the
/// peer is owed waits here as at most one entry per prefix (the table walk, or the set of
/// changed prefixes), never as a queue of messages, and is encoded from the RIB when the
/// socket takes more (as BIRD and OpenBGPD do): a peer that reads slowly, or not at all,
/// costs memory bounded by the table, and gets the latest state of each prefix.
pub const WINDOW: usize = 256 * 1024;

/// Prefixes encoded in one go.
pub const BATCH: usize = 2048;

/// What a peer is owed.
#[derive(Default)]
struct Owed {
    /// A walk of the table (the initial export, a refresh): the next prefix to look at.
    feed: Option<Nlri>,
    /// Prefixes whose best route changed while the peer could take nothing more.
    pending: std::collections::BTreeSet<Nlri>,
    /// End-of-RIB, owed once the walk is done.
    eor: bool,
    /// Octets handed to the session task and not yet reported written.
    in_flight: usize,
}

/// UPDATEs for one peer and the prefixes they announce and withdraw.
#[derive(Default)]
struct Encoded {
    msg: Vec<u8>,
    announced: Vec<Nlri>,
    withdrawn: Vec<Nlri>,
}

/// The first prefix in the table's order: a walk from the start.
fn first_prefix() -> Nlri {
    Nlri::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).expect("0.0.0.0/0")
}

/// Announcements to one peer sharing a best-route attribute set (and family): the set they
/// go out with (None: they cannot go, e.g. no next hop of the family) and the prefixes.
type OutGroup = (Arc<Attrs>, bool, Option<Attrs>, Vec<Nlri>);

fn family(v6: bool) -> Family {
    if v6 {
        Family::IPV6_UNICAST
    } else {
        Family::IPV4_UNICAST
    }
}

/// Withdrawals, IPv4 and IPv6 apart, packed.
fn encode_withdrawals(msg: &mut Vec<u8>, prefixes: &[Nlri], codec: &Codec) {
    let (w4, w6): (Vec<Nlri>, Vec<Nlri>) = prefixes.iter().partition(|p| p.is_ipv4());
    for w in [w4, w6] {
        if !w.is_empty() {
            update::encode_withdraw(msg, &w, codec);
        }
    }
}

/// The attributes of our own networks.
fn local_attrs() -> Arc<Attrs> {
    Arc::new(Attrs {
        origin: Some(Origin::Igp),
        ..Attrs::default()
    })
}

/// A peer's Adj-RIB-In: each prefix it has announced, with the attributes it came with
/// (shared by every prefix of one UPDATE).
type AdjIn = interlink_table::PrefixMap<Option<Arc<Attrs>>>;

/// An Adj-RIB-In for a neighbor with soft reconfiguration; none otherwise.
fn adj_in_for(n: &Neighbor) -> Option<AdjIn> {
    n.import
        .as_ref()
        .filter(|i| i.soft_reconfiguration)
        .map(|_| AdjIn::default())
}

/// The Adj-RIB-In's counts once the UPDATE `u` (before policy) is applied to it.
/// A neighbor's import limits, copied out of its policy.
#[derive(Clone, Copy)]
struct Limits {
    max_prefixes: Option<u32>,
    max_received: Option<u32>,
    warn_only: bool,
    max_prefixes_restart: Duration,
}

impl Limits {
    /// None without a limit.
    fn of(i: &policy::ImportPolicy) -> Option<Limits> {
        (i.max_prefixes.is_some() || i.max_received.is_some()).then_some(Limits {
            max_prefixes: i.max_prefixes,
            max_received: i.max_received,
            warn_only: i.warn_only,
            max_prefixes_restart: i.max_prefixes_restart,
        })
    }
}

/// A peer's import limits (max_prefixes after policy, max_received before it) against the
/// counts it would have: a limit crossed is warned of once, and, unless the action is "warn",
/// ends the session (Cease, Maximum Number of Prefixes Reached, RFC 4486 §4, with AFI, SAFI
/// and the bound) and holds it down for `max_prefixes_restart`. False when what was counted
/// must not be applied (the session is going down).
fn within_limits(
    p: &mut PeerState,
    id: PeerId,
    i: Limits,
    accepted: PerFamily<usize>,
    received: Option<PerFamily<usize>>,
    now: Instant,
    out: &mut Out,
) -> bool {
    let address = p.cfg.address;
    let limits = [
        (i.max_prefixes, Some(accepted), "prefixes"),
        (
            i.max_received,
            received,
            "prefixes received (before import policy)",
        ),
    ];
    for afi in [Afi::Ipv4, Afi::Ipv6] {
        let over = limits.iter().find_map(|(max, counts, what)| {
            let (max, count) = ((*max)?, (*counts)?[afi]);
            (count as u64 > u64::from(max)).then_some((max, count, *what))
        });
        let crossed = over.is_some() && !p.over_limit[afi];
        p.over_limit[afi] = over.is_some();
        let Some((max, count, what)) = over else {
            continue;
        };
        let family = afi.name();
        if i.warn_only {
            if crossed {
                out.warn(format!(
                    "bgp: {address}: {count} {family} {what}, over the limit of {max}"
                ));
            }
            continue;
        }
        if crossed {
            out.warn(format!(
                "bgp: {address}: {count} {family} {what}, over the limit of {max}: \
                 tearing the session down for {} s",
                i.max_prefixes_restart.as_secs()
            ));
            // RFC 4486 §4: AFI, SAFI and the upper bound.
            let mut data = afi.number().to_be_bytes().to_vec();
            data.push(1);
            data.extend_from_slice(&max.to_be_bytes());
            out.peer(
                id,
                PeerCmd::Reset(Notification::new(
                    code::CEASE,
                    code::CEASE_MAX_PREFIXES,
                    &data,
                )),
            );
            // Held down, then started again by the restart timer.
            out.peer(id, PeerCmd::Stop(String::new()));
            p.restart_at = Some(now + i.max_prefixes_restart);
        }
        return false;
    }
    true
}

fn adj_in_after(a: &AdjIn, u: &update::Update) -> PerFamily<usize> {
    let mut counts = a.counts();
    let announced: HashSet<&Nlri> = u.announced.iter().collect();
    let mut seen = HashSet::new();
    for p in u.withdrawn.iter().chain(&u.announced) {
        if !seen.insert(p) {
            continue;
        }
        let before = a.get(p).is_some_and(Option::is_some);
        match (before, announced.contains(p) && u.attrs.is_some()) {
            (false, true) => counts[p.afi()] += 1,
            (true, false) => counts[p.afi()] -= 1,
            _ => {}
        }
    }
    counts
}

/// A peer's prefixes in the table, per family, as they will be once `u` is applied
/// (`Rib::apply` withdraws first, then announces).
fn accepted_after(rib: &Rib, id: PeerId, u: &policy::Imported) -> PerFamily<usize> {
    let mut counts = rib.count_by_family(id);
    let announced: HashSet<&Nlri> = u.update.announced.iter().collect();
    let mut seen = HashSet::new();
    for p in u.update.withdrawn.iter().chain(&u.update.announced) {
        if !seen.insert(p) {
            continue;
        }
        match (rib.holds(id, p), announced.contains(p)) {
            (false, true) => counts[p.afi()] += 1,
            (true, false) => counts[p.afi()] -= 1,
            _ => {}
        }
    }
    counts
}

/// A set of prefixes that keeps its count per family, for the counts shown and scraped.
#[derive(Default)]
struct PrefixSet {
    set: HashSet<Nlri>,
    v6: usize,
}

impl PrefixSet {
    fn insert(&mut self, p: Nlri) {
        if self.set.insert(p) && p.is_ipv6() {
            self.v6 += 1;
        }
    }

    fn remove(&mut self, p: &Nlri) {
        if self.set.remove(p) && p.is_ipv6() {
            self.v6 -= 1;
        }
    }

    fn contains(&self, p: &Nlri) -> bool {
        self.set.contains(p)
    }

    fn clear(&mut self) {
        self.set.clear();
        self.v6 = 0;
    }

    fn extend(&mut self, ps: impl IntoIterator<Item = Nlri>) {
        for p in ps {
            self.insert(p);
        }
    }

    /// IPv4, IPv6.
    fn counts(&self) -> PerFamily<usize> {
        PerFamily {
            ipv4: self.set.len() - self.v6,
            ipv6: self.v6,
        }
    }
}

fn fsm_config(cfg: &SpeakerConfig, n: &Neighbor) -> fsm::Config {
    let families = n.families.clone();
    fsm::Config {
        local_as: cfg.local_as,
        router_id: cfg.router_id,
        peer_as: n.remote_as,
        hold_time: n.hold_time,
        connect_retry: Duration::from_secs(5),
        passive: n.passive,
        caps: Capabilities {
            multiprotocol: families.clone(),
            route_refresh: true,
            four_octet_as: Some(cfg.local_as),
            graceful_restart: Some(GracefulRestart {
                restarting: cfg.restarting,
                restart_time: cfg.restart_time,
                // F (RFC 4724 §3): forwarding was kept across the restart, so the peer keeps
                // our routes until End-of-RIB; on a fresh start it drops what it kept.
                families: families.into_iter().map(|f| (f, cfg.restarting)).collect(),
            }),
            extended_message: true,
            unknown: vec![],
        },
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(120),
    }
}

/// Whether two configs of a neighbor need no new session: only policy differs.
fn same_session(a: &Neighbor, b: &Neighbor) -> bool {
    a.address == b.address
        && a.port == b.port
        && a.remote_as == b.remote_as
        && a.hold_time == b.hold_time
        && a.passive == b.passive
        && a.md5 == b.md5
        && a.families == b.families
        && a.local_address == b.local_address
        && a.ttl_security == b.ttl_security
}

fn describe(d: &Down) -> String {
    match d {
        Down::Sent(n) => format!("sent {n}"),
        Down::Received(n) => format!("received {n}"),
        Down::ConnectionClosed => "connection closed".into(),
    }
}

//! The BGP speaker on tokio: listeners, one task per neighbor (`peer::run`), and the RIB
//! between them, with import and export policy (RFC 8212 defaults), max-prefix, graceful
//! restart as the receiving speaker, originated networks, and the best-route changes for the
//! FIB. Protocol decisions stay in `fsm`, `update` and `rib`; this is their wiring.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::fsm::{self, Down, Negotiated};
use crate::peer::{self, MessageCounts, PeerCmd, PeerConfig, PeerEvent, Secret};
use crate::policy;
use crate::rib::{Change, PeerId, PeerInfo, Rib, LOCAL};
use crate::update::{self, Attrs, Decoded, Nlri, Origin, Segment, Update};
use crate::wire::{
    code, Capabilities, Family, GracefulRestart, Message, Notification, MAX_EXTENDED_LEN, MAX_LEN,
};

/// A prefix list entry: the prefix and the lengths it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixFilter {
    pub prefix: Nlri,
    pub ge: u8,
    pub le: u8,
}

impl PrefixFilter {
    pub fn matches(&self, p: &Nlri) -> bool {
        if p.addr.is_ipv4() != self.prefix.addr.is_ipv4()
            || p.len < self.ge
            || p.len > self.le
            || p.len < self.prefix.len
        {
            return false;
        }
        let bits = u32::from(self.prefix.len);
        match (p.addr, self.prefix.addr) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let m = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & m == u32::from(b) & m
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let m = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & m == u128::from(b) & m
            }
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImportPolicy {
    pub prefixes: Vec<PrefixFilter>,
    /// Only routes that also match these (communities) are taken.
    pub matching: policy::Match,
    /// Set on the routes taken (LOCAL_PREF, MED, communities).
    pub set: policy::Set,
    /// The most prefixes taken per family (IPv4 and IPv6 counted apart).
    pub max_prefixes: Option<u32>,
    pub warn_only: bool,
    /// After a max-prefix teardown, the session stays down this long, then starts again.
    pub max_prefixes_restart: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct ExportPolicy {
    pub networks: bool,
    pub prefixes: Vec<PrefixFilter>,
    /// Learnt routes go out only if they also match these (communities).
    pub matching: policy::Match,
    /// Set on everything that goes out (communities, MED, prepends).
    pub set: policy::Set,
}

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

/// What the daemon asks of a running speaker (for interlinkctl).
#[derive(Debug)]
pub enum SpeakerCmd {
    Neighbors(oneshot::Sender<Vec<NeighborView>>),
    /// The routes to `prefix` (every candidate, best first), or every best route.
    Routes {
        prefix: Option<Nlri>,
        reply: oneshot::Sender<Vec<RouteView>>,
    },
    Neighbor {
        address: IpAddr,
        op: NeighborOp,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A reload: neighbors removed go (Cease/Peer De-configured), new ones start, changed
    /// sessions restart; a policy change alone is applied softly (route refresh for import,
    /// the Adj-RIB-Out re-sent for export); networks are added and withdrawn.
    Reconfigure(Box<SpeakerConfig>),
    /// The networks whose next hops cannot be reached now (links down): routes through them
    /// stop being candidates, and come back when the list no longer has them.
    Unreachable(Vec<Nlri>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NeighborOp {
    /// Cease/Administrative Reset, then up again.
    Reset,
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
    /// Prefixes per family (IPv4, IPv6): received (before import policy), accepted, and
    /// advertised to it.
    pub received: [usize; 2],
    pub accepted: [usize; 2],
    pub advertised: [usize; 2],
    /// Messages by type, in the order of [`peer::MESSAGE_TYPES`].
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
    cmds: mpsc::UnboundedSender<PeerCmd>,
    negotiated: Option<Negotiated>,
    local: Option<SocketAddr>,
    ebgp: bool,
    /// Stale routes of a restarting peer go at this time unless End-of-RIB comes first.
    stale_until: Option<tokio::time::Instant>,
    /// Families whose End-of-RIB is still awaited.
    awaiting_eor: Vec<Family>,
    /// The peer has been up and sent End-of-RIB for every family since we started.
    synced: bool,
    /// Adj-RIB-Out: the prefixes we have announced to the peer, so that only those are
    /// withdrawn from it.
    advertised: PrefixSet,
    /// Prefixes the peer announced that import policy refused: with the accepted ones, what
    /// it sent (Adj-RIB-In before policy) for the counts.
    rejected: PrefixSet,
    counts: Arc<MessageCounts>,
    up_since: Option<std::time::Instant>,
    last_error: Option<String>,
    /// Shut down by the operator: stays down until enabled.
    admin_down: bool,
    /// Torn down for max-prefix: started again at this time.
    restart_at: Option<tokio::time::Instant>,
    /// Per family: over the max-prefix limit (warned once per crossing).
    over_limit: [bool; 2],
}

/// A set of prefixes that keeps its count per family, for the counts shown and scraped.
#[derive(Default)]
struct PrefixSet {
    set: HashSet<Nlri>,
    v6: usize,
}

impl PrefixSet {
    fn insert(&mut self, p: Nlri) {
        if self.set.insert(p) && p.addr.is_ipv6() {
            self.v6 += 1;
        }
    }

    fn remove(&mut self, p: &Nlri) {
        if self.set.remove(p) && p.addr.is_ipv6() {
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
    fn counts(&self) -> [usize; 2] {
        [self.set.len() - self.v6, self.v6]
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
                families: families.into_iter().map(|f| (f, true)).collect(),
            }),
            extended_message: true,
            unknown: vec![],
        },
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(120),
    }
}

/// Runs the speaker until `stop` carries a shutdown communication.
/// Where incoming connections go: the peer task of the neighbor at the source address.
type Incoming = Arc<std::sync::Mutex<HashMap<IpAddr, mpsc::Sender<tokio::net::TcpStream>>>>;

/// The speaker's I/O plumbing that outlives single peers: the event channel every peer task
/// reports on, the stop signal, the listeners and who their connections go to.
struct Plumbing {
    ev_tx: mpsc::UnboundedSender<(PeerId, PeerEvent)>,
    stop: watch::Receiver<Option<String>>,
    incoming: Incoming,
    /// One listener per family in use, kept for their MD5 keys.
    listeners: HashMap<bool, std::os::fd::RawFd>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    next_id: PeerId,
}

impl Plumbing {
    /// Starts a peer task for `n` and returns its state.
    fn add_peer(&mut self, cfg: &SpeakerConfig, n: &Neighbor) -> (PeerId, PeerState) {
        self.next_id += 1;
        let id = self.next_id;
        let (in_tx, in_rx) = mpsc::channel(4);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.incoming.lock() {
            m.insert(n.address, in_tx);
        }
        let counts = Arc::new(MessageCounts::default());
        let pc = PeerConfig {
            counts: counts.clone(),
            fsm: fsm_config(cfg, n),
            remote: SocketAddr::new(n.address, n.port),
            local: None,
            ttl1: n.remote_as != cfg.local_as,
            md5: n.md5.clone(),
        };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let fwd = self.ev_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if fwd.send((id, e)).is_err() {
                    break;
                }
            }
        });
        self.tasks.push(tokio::spawn(peer::run(
            pc,
            in_rx,
            tx,
            self.stop.clone(),
            cmd_rx,
        )));
        let state = PeerState {
            cfg: n.clone(),
            cmds: cmd_tx,
            negotiated: None,
            local: None,
            ebgp: n.remote_as != cfg.local_as,
            stale_until: None,
            awaiting_eor: vec![],
            synced: false,
            advertised: PrefixSet::default(),
            rejected: PrefixSet::default(),
            counts,
            up_since: None,
            last_error: None,
            admin_down: false,
            restart_at: None,
            over_limit: [false; 2],
        };
        (id, state)
    }

    /// Connections from `address` are no longer taken.
    fn forget(&mut self, address: IpAddr) {
        if let Ok(mut m) = self.incoming.lock() {
            m.remove(&address);
        }
    }

    /// A listener for each family the neighbors use, with their MD5 keys; a listener that
    /// exists gets the keys of new neighbors (and loses those of removed ones).
    fn listen(
        &mut self,
        neighbors: &[Neighbor],
        port: u16,
        gone: &[Neighbor],
        warn: &dyn Fn(String),
    ) {
        for v4 in [true, false] {
            let md5: Vec<(IpAddr, Secret)> = neighbors
                .iter()
                .filter(|n| n.address.is_ipv4() == v4)
                .filter_map(|n| n.md5.clone().map(|k| (n.address, k)))
                .collect();
            if let Some(fd) = self.listeners.get(&v4) {
                let fd = Fd(*fd);
                for (a, k) in &md5 {
                    if let Err(e) = peer::set_md5(&fd, *a, k.as_bytes()) {
                        warn(format!("bgp: the TCP-MD5 key for {a} on the listener: {e}"));
                    }
                }
                // Keys of neighbors gone (and not back under the same address) are deleted.
                for n in gone
                    .iter()
                    .filter(|n| n.address.is_ipv4() == v4 && n.md5.is_some())
                {
                    if !md5.iter().any(|(a, _)| *a == n.address) {
                        let _ = peer::set_md5(&fd, n.address, &[]);
                    }
                }
                continue;
            }
            if !neighbors.iter().any(|n| n.address.is_ipv4() == v4) {
                continue;
            }
            let addr: SocketAddr = if v4 {
                (Ipv4Addr::UNSPECIFIED, port).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, port).into()
            };
            match peer::listen(addr, &md5) {
                Ok(l) => {
                    use std::os::fd::AsRawFd;
                    self.listeners.insert(v4, l.as_raw_fd());
                    let incoming = self.incoming.clone();
                    // The listener lives as long as the speaker's runtime: its descriptor stays
                    // valid for the MD5 keys of neighbors added later.
                    tokio::spawn(async move {
                        loop {
                            let Ok((s, from)) = l.accept().await else {
                                // Out of descriptors and the like: try again shortly.
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            };
                            let ip = match from.ip() {
                                IpAddr::V6(a) => {
                                    a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a))
                                }
                                a => a,
                            };
                            // Connections from anyone else are closed at once.
                            let tx = incoming.lock().ok().and_then(|m| m.get(&ip).cloned());
                            if let Some(tx) = tx {
                                let _ = tx.send(s).await;
                            }
                        }
                    });
                }
                Err(e) => warn(format!(
                    "bgp: cannot listen on {addr}: {e}; passive peers will not connect"
                )),
            }
        }
    }
}

/// A raw descriptor, to set options on a listener owned by its accept task (which lives as
/// long as the speaker).
struct Fd(std::os::fd::RawFd);

impl std::os::fd::AsRawFd for Fd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0
    }
}

/// Runs the speaker until `stop` carries a shutdown communication.
pub async fn run(
    mut cfg: SpeakerConfig,
    events: mpsc::UnboundedSender<SpeakerEvent>,
    stop: watch::Receiver<Option<String>>,
    mut cmds: mpsc::UnboundedReceiver<SpeakerCmd>,
) {
    let log = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Info,
            text,
        });
    };
    let warn = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Warning,
            text,
        });
    };
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel::<(PeerId, PeerEvent)>();
    let mut plumbing = Plumbing {
        ev_tx,
        stop: stop.clone(),
        incoming: Arc::new(std::sync::Mutex::new(HashMap::new())),
        listeners: HashMap::new(),
        tasks: Vec::new(),
        next_id: 0,
    };
    let mut peers: HashMap<PeerId, PeerState> = HashMap::new();
    for n in &cfg.neighbors {
        let (id, state) = plumbing.add_peer(&cfg, n);
        peers.insert(id, state);
    }
    plumbing.listen(&cfg.neighbors, cfg.listen_port, &[], &warn);

    let mut rib = Rib::new(cfg.multipath);
    // Our networks, as routes of our own.
    let local = local_attrs();
    for p in &cfg.networks {
        rib.insert(LOCAL, *p, local.clone(), &mut Vec::new());
    }
    let mut converged = false;
    let mut stop = stop;
    loop {
        let next_stale = peers
            .values()
            .filter_map(|p| p.stale_until)
            .chain(peers.values().filter_map(|p| p.restart_at))
            .min();
        let sleep =
            next_stale.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(sleep) => {
                let now = tokio::time::Instant::now();
                let due: Vec<PeerId> = peers.iter().filter(|(_, p)| p.stale_until.is_some_and(|t| t <= now)).map(|(id, _)| *id).collect();
                for p in peers.values_mut().filter(|p| p.restart_at.is_some_and(|t| t <= now)) {
                    p.restart_at = None;
                    p.over_limit = [false; 2];
                    if !p.admin_down {
                        let _ = p.cmds.send(PeerCmd::Start);
                        log(format!("bgp: {}: max-prefix hold over; starting again", p.cfg.address));
                    }
                }
                for id in due {
                    peers.get_mut(&id).expect("known peer").stale_until = None;
                    let changes = rib.sweep_stale(id);
                    log(format!("bgp: {}: restart time over, {} stale route(s) removed", peers[&id].cfg.address, changes.len()));
                    publish(&events, &mut peers, &rib, changes, &cfg);
                }
            }
            e = ev_rx.recv() => {
                let Some((id, e)) = e else { break };
                handle(id, e, &cfg, &mut peers, &mut rib, &events);
            }
            Some(c) = cmds.recv() => match c {
                SpeakerCmd::Reconfigure(new) => {
                    reconfigure(*new, &mut cfg, &mut plumbing, &mut peers, &mut rib, &events);
                }
                SpeakerCmd::Unreachable(nets) => {
                    let changes = rib.set_unreachable(nets);
                    if !changes.is_empty() {
                        log(format!(
                            "bgp: next hops changed reachability: {} best route(s) changed",
                            changes.len()
                        ));
                    }
                    publish(&events, &mut peers, &rib, changes, &cfg);
                }
                c => command(c, &mut peers, &rib),
            },
        }
        // RFC 4724 §4.1: selection settles once every peer has sent End-of-RIB; a peer that
        // does not come up is waited for no longer than the daemon's restart timer.
        if !converged && peers.values().all(|p| p.synced) {
            converged = true;
            let _ = events.send(SpeakerEvent::Converged);
        }
    }
    for t in plumbing.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
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
}

/// The attributes of our own networks.
fn local_attrs() -> Arc<Attrs> {
    Arc::new(Attrs {
        origin: Some(Origin::Igp),
        ..Attrs::default()
    })
}

/// A reload (see [`SpeakerCmd::Reconfigure`]).
fn reconfigure(
    new: SpeakerConfig,
    cfg: &mut SpeakerConfig,
    plumbing: &mut Plumbing,
    peers: &mut HashMap<PeerId, PeerState>,
    rib: &mut Rib,
    events: &mpsc::UnboundedSender<SpeakerEvent>,
) {
    let log = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Info,
            text,
        });
    };
    let warn = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Warning,
            text,
        });
    };
    // Our AS, identifier or port: every session starts again.
    let all = new.local_as != cfg.local_as
        || new.router_id != cfg.router_id
        || new.listen_port != cfg.listen_port;
    let mut changes = Vec::new();
    let mut gone = Vec::new();
    let mut export_changed = Vec::new();
    let ids: Vec<PeerId> = peers.keys().copied().collect();
    for id in ids {
        let old = peers[&id].cfg.clone();
        match new.neighbors.iter().find(|n| n.address == old.address) {
            Some(n) if !all && same_session(&old, n) => {
                let p = peers.get_mut(&id).expect("known peer");
                let import = format!("{:?}", old.import) != format!("{:?}", n.import);
                let export = format!("{:?}", old.export) != format!("{:?}", n.export);
                p.cfg = n.clone();
                if import {
                    // RFC 2918: the peer sends its routes again, through the new policy.
                    match &p.negotiated {
                        Some(neg) if neg.route_refresh => {
                            let mut out = Vec::new();
                            for f in &neg.families {
                                Message::RouteRefresh {
                                    family: *f,
                                    subtype: 0,
                                }
                                .encode(&mut out);
                            }
                            let _ = p.cmds.send(PeerCmd::Send(out));
                            log(format!(
                                "bgp: {}: import policy changed; route refresh asked",
                                old.address
                            ));
                        }
                        Some(_) => {
                            let n = Notification::new(code::CEASE, code::CEASE_CONFIG_CHANGE, &[]);
                            let _ = p.cmds.send(PeerCmd::Reset(n));
                            warn(format!(
                                "bgp: {}: import policy changed and the peer cannot refresh:                                  resetting the session",
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
                let p = peers.remove(&id).expect("known peer");
                let why = if kept.is_some() {
                    "session settings changed"
                } else {
                    "neighbor removed from the configuration"
                };
                let _ = p.cmds.send(PeerCmd::Stop(why.into()));
                plumbing.forget(old.address);
                changes.extend(rib.flush(id));
                log(format!("bgp: {}: {why}", old.address));
                gone.push(old);
            }
        }
    }
    for n in &new.neighbors {
        if !peers.values().any(|p| p.cfg.address == n.address) {
            let (id, state) = plumbing.add_peer(&new, n);
            peers.insert(id, state);
            log(format!("bgp: {}: neighbor added", n.address));
        }
    }
    plumbing.listen(&new.neighbors, new.listen_port, &gone, &warn);
    for p in &cfg.networks {
        if !new.networks.contains(p) {
            rib.remove(LOCAL, p, &mut changes);
        }
    }
    for p in &new.networks {
        if !cfg.networks.contains(p) {
            rib.insert(LOCAL, *p, local_attrs(), &mut changes);
        }
    }
    if new.multipath != cfg.multipath {
        let c = rib.set_multipath(new.multipath);
        log(format!(
            "bgp: multipath {}: {} best route(s) changed",
            if new.multipath { "on" } else { "off" },
            c.len()
        ));
        changes.extend(c);
    }
    *cfg = new;
    publish(events, peers, rib, changes, cfg);
    for id in export_changed {
        resync_out(id, peers, rib, cfg);
        if let Some(p) = peers.get(&id) {
            log(format!(
                "bgp: {}: export policy changed; routes sent again",
                p.cfg.address
            ));
        }
    }
}

/// After an export policy change: what the peer has from us but may no longer have is
/// withdrawn, and everything it may have is sent again.
fn resync_out(id: PeerId, peers: &mut HashMap<PeerId, PeerState>, rib: &Rib, cfg: &SpeakerConfig) {
    let Some(p) = peers.get(&id) else { return };
    let Some(n) = &p.negotiated else { return };
    let max = if n.extended_message {
        MAX_EXTENDED_LEN
    } else {
        MAX_LEN
    };
    let stale: Vec<Nlri> = p
        .advertised
        .set
        .iter()
        .filter(|pfx| match rib.best(pfx) {
            Some(b) => {
                let v6 = pfx.addr.is_ipv6();
                b.peer == id
                    || !exports(pfx, b.peer, &b.attrs, p, peers)
                    || outgoing(&b.attrs, p, cfg.local_as, v6).is_none()
            }
            None => true,
        })
        .copied()
        .collect();
    let (w4, w6): (Vec<Nlri>, Vec<Nlri>) = stale.iter().partition(|p| p.addr.is_ipv4());
    let mut out = Vec::new();
    for w in [w4, w6] {
        if !w.is_empty() {
            update::encode_withdraw(&mut out, &w, max);
        }
    }
    if !out.is_empty() {
        let _ = p.cmds.send(PeerCmd::Send(out));
    }
    if let Some(p) = peers.get_mut(&id) {
        for w in &stale {
            p.advertised.remove(w);
        }
    }
    send_table(id, peers, rib, cfg);
}

/// An operator's command.
fn command(c: SpeakerCmd, peers: &mut HashMap<PeerId, PeerState>, rib: &Rib) {
    match c {
        SpeakerCmd::Neighbors(reply) => {
            let mut list: Vec<NeighborView> = peers
                .iter()
                .map(|(id, p)| {
                    let accepted = rib.count_by_family(*id);
                    let rejected = p.rejected.counts();
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
                        uptime: p.up_since.map(|t| t.elapsed()),
                        last_error: p.last_error.clone(),
                        received: [accepted[0] + rejected[0], accepted[1] + rejected[1]],
                        accepted,
                        advertised: p.advertised.counts(),
                        messages_sent: p.counts.sent(),
                        messages_received: p.counts.received(),
                    }
                })
                .collect();
            list.sort_by_key(|n| n.address);
            let _ = reply.send(list);
        }
        SpeakerCmd::Routes { prefix, reply } => {
            let from = |id: PeerId| rib.peer(id).map(|p| p.address);
            let list = match prefix {
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
                // In prefix order, the first SHOW_ROUTES_MAX only: a full table is a million.
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
            };
            let _ = reply.send(list);
        }
        SpeakerCmd::Reconfigure(_) | SpeakerCmd::Unreachable(_) => {}
        SpeakerCmd::Neighbor { address, op, reply } => {
            let Some(p) = peers.values_mut().find(|p| p.cfg.address == address) else {
                let _ = reply.send(Err(format!("{address} is not a configured neighbor")));
                return;
            };
            match op {
                NeighborOp::Reset => {
                    let n = Notification::new(code::CEASE, code::CEASE_ADMIN_RESET, &[]);
                    let _ = p.cmds.send(PeerCmd::Reset(n));
                }
                NeighborOp::Shutdown(text) => {
                    p.admin_down = true;
                    let _ = p.cmds.send(PeerCmd::Stop(text));
                }
                NeighborOp::Enable => {
                    p.admin_down = false;
                    p.restart_at = None;
                    let _ = p.cmds.send(PeerCmd::Start);
                }
            }
            let _ = reply.send(Ok(()));
        }
    }
}

fn handle(
    id: PeerId,
    e: PeerEvent,
    cfg: &SpeakerConfig,
    peers: &mut HashMap<PeerId, PeerState>,
    rib: &mut Rib,
    events: &mpsc::UnboundedSender<SpeakerEvent>,
) {
    let log = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Info,
            text,
        });
    };
    let warn = |text: String| {
        let _ = events.send(SpeakerEvent::Log {
            severity: Severity::Warning,
            text,
        });
    };
    let Some(p) = peers.get_mut(&id) else { return };
    let address = p.cfg.address;
    match e {
        PeerEvent::Up(n, local) => {
            rib.set_peer(
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
            p.up_since = Some(std::time::Instant::now());
            let _ = events.send(SpeakerEvent::PeerUp {
                address,
                asn: n.peer.asn,
            });
            send_table(id, peers, rib, cfg);
        }
        PeerEvent::Update(body) => {
            let Some(n) = p.negotiated.clone() else {
                return;
            };
            match update::decode(&body, n.four_octet_as, p.ebgp) {
                Decoded::Update(u) => {
                    if !u.discarded.is_empty() {
                        warn(format!(
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
                    if !u.end_of_rib.is_empty()
                        && p.stale_until.is_some()
                        && p.awaiting_eor.is_empty()
                    {
                        p.stale_until = None;
                        let changes = rib.sweep_stale(id);
                        publish(events, peers, rib, changes, cfg);
                        return;
                    }
                    let u = import(&u, &p.cfg, p.ebgp, cfg.local_as);
                    // What policy refused, for the received count; what it took or the
                    // peer withdrew is no longer refused.
                    for pr in &u.withdrawn {
                        p.rejected.remove(pr);
                    }
                    for pr in &u.rejected {
                        p.rejected.insert(*pr);
                    }
                    let changes = rib.apply(id, &u.update);
                    let counts = rib.count_by_family(id);
                    if let Some(i) = p.cfg.import.as_ref().filter(|i| i.max_prefixes.is_some()) {
                        let max = i.max_prefixes.unwrap_or(u32::MAX);
                        for (f, count) in counts.iter().enumerate() {
                            let over = *count as u64 > u64::from(max);
                            let crossed = over && !p.over_limit[f];
                            p.over_limit[f] = over;
                            let family = ["IPv4", "IPv6"][f];
                            if crossed && i.warn_only {
                                warn(format!(
                                    "bgp: {address}: {count} {family} prefixes, over the limit of {max}"
                                ));
                            } else if crossed {
                                warn(format!(
                                    "bgp: {address}: {count} {family} prefixes, over the limit of {max}: \
                                     tearing the session down for {} s",
                                    i.max_prefixes_restart.as_secs()
                                ));
                                // RFC 4486 §4: AFI, SAFI and the upper bound.
                                let mut data = vec![0, f as u8 + 1, 1];
                                data.extend_from_slice(&max.to_be_bytes());
                                let _ = p.cmds.send(PeerCmd::Reset(Notification::new(
                                    code::CEASE,
                                    code::CEASE_MAX_PREFIXES,
                                    &data,
                                )));
                                // Held down, then started again by the restart timer.
                                let _ = p.cmds.send(PeerCmd::Stop(String::new()));
                                p.restart_at =
                                    Some(tokio::time::Instant::now() + i.max_prefixes_restart);
                            }
                        }
                    }
                    publish(events, peers, rib, changes, cfg);
                }
                Decoded::TreatAsWithdraw(prefixes, why) => {
                    warn(format!(
                        "bgp: {address}: {} prefix(es) treated as withdrawn: {why}",
                        prefixes.len()
                    ));
                    let mut changes = Vec::new();
                    for pr in &prefixes {
                        rib.remove(id, pr, &mut changes);
                    }
                    publish(events, peers, rib, changes, cfg);
                }
                Decoded::Reset(n) => {
                    warn(format!("bgp: {address}: malformed UPDATE, resetting: {n}"));
                    let _ = p.cmds.send(PeerCmd::Reset(n));
                }
            }
        }
        PeerEvent::RouteRefresh(_) => send_table(id, peers, rib, cfg),
        PeerEvent::Down(why) => {
            let gr = p
                .negotiated
                .as_ref()
                .and_then(|n| n.peer_graceful_restart.clone());
            p.negotiated = None;
            p.local = None;
            p.awaiting_eor.clear();
            p.advertised.clear();
            p.rejected.clear();
            p.up_since = None;
            let text = describe(&why);
            p.last_error = Some(text.clone());
            let _ = events.send(SpeakerEvent::PeerDown { address, why: text });
            // RFC 4724 §4.2: after a TCP failure the restarting peer's routes stay, stale,
            // for its restart time; after a NOTIFICATION they go (RFC 8538 aside).
            match (gr, &why) {
                (Some(gr), Down::ConnectionClosed) if gr.restart_time > 0 => {
                    rib.mark_stale(id);
                    p.stale_until = Some(
                        tokio::time::Instant::now() + Duration::from_secs(gr.restart_time.into()),
                    );
                    log(format!(
                        "bgp: {address}: keeping its routes for {} s (graceful restart)",
                        gr.restart_time
                    ));
                }
                _ => {
                    let changes = rib.flush(id);
                    publish(events, peers, rib, changes, cfg);
                }
            }
        }
        PeerEvent::Failed(why) => warn(format!(
            "bgp: {address}: session failed: {}",
            describe(&why)
        )),
    }
}

fn describe(d: &Down) -> String {
    match d {
        Down::Sent(n) => format!("sent {n}"),
        Down::Received(n) => format!("received {n}"),
        Down::ConnectionClosed => "connection closed".into(),
    }
}

/// An UPDATE through import policy: what goes into the RIB, and the announced prefixes
/// policy refused (they are withdrawn in `update`, since they replace what we had).
struct Imported {
    update: Update,
    withdrawn: Vec<Nlri>,
    rejected: Vec<Nlri>,
}

/// Import policy: RFC 8212 for eBGP without a policy, the prefix list otherwise, and no
/// route whose AS_PATH holds our own AS (RFC 4271 §9.1.2).
fn import(u: &Update, n: &Neighbor, ebgp: bool, local_as: u32) -> Imported {
    let mut out = Update {
        withdrawn: u.withdrawn.clone(),
        ..Update::default()
    };
    let mut rejected = Vec::new();
    let Some(attrs) = &u.attrs else {
        return Imported {
            withdrawn: u.withdrawn.clone(),
            update: out,
            rejected,
        };
    };
    let looped = attrs.as_path.iter().any(|s| match s {
        Segment::Sequence(v) | Segment::Set(v) => v.contains(&local_as),
    });
    // The communities condition holds for the whole UPDATE: its prefixes share attributes.
    let attrs_match = n.import.as_ref().is_none_or(|i| i.matching.matches(attrs));
    let accepts = |p: &Nlri| match &n.import {
        None => !ebgp,
        Some(i) => attrs_match && i.prefixes.iter().any(|f| f.matches(p)),
    };
    for p in &u.announced {
        if !looped && accepts(p) {
            out.announced.push(*p);
        } else {
            // A route we do not take replaces one we had: it goes.
            out.withdrawn.push(*p);
            rejected.push(*p);
        }
    }
    if !out.announced.is_empty() {
        out.attrs = Some(match n.import.as_ref().filter(|i| !i.set.is_empty()) {
            None => attrs.clone(),
            Some(i) => {
                let mut a = (**attrs).clone();
                i.set.apply(&mut a, local_as);
                Arc::new(a)
            }
        });
    }
    Imported {
        withdrawn: u.withdrawn.iter().chain(&out.announced).copied().collect(),
        update: out,
        rejected,
    }
}

/// Whether `prefix` (best from `from`, with `attrs`) may go to peer `to`.
fn exports(
    prefix: &Nlri,
    from: PeerId,
    attrs: &Attrs,
    to: &PeerState,
    peers: &HashMap<PeerId, PeerState>,
) -> bool {
    if !policy::advertisable(attrs, to.ebgp) {
        return false;
    }
    if from == LOCAL {
        return match &to.cfg.export {
            None => !to.ebgp,
            Some(e) => e.networks,
        };
    }
    // Not back to where it came from; iBGP routes not to iBGP peers (no route reflection).
    let from_ebgp = peers.get(&from).is_some_and(|p| p.ebgp);
    match &to.cfg.export {
        None => !to.ebgp && from_ebgp,
        Some(e) => {
            (to.ebgp || from_ebgp)
                && e.matching.matches(attrs)
                && e.prefixes.iter().any(|f| f.matches(prefix))
        }
    }
}

/// The attributes a route goes to `to` with: our AS prepended and ourselves as next hop
/// towards eBGP, LOCAL_PREF towards iBGP.
fn outgoing(best: &Attrs, to: &PeerState, local_as: u32, v6: bool) -> Option<Attrs> {
    let local = to.local?.ip();
    let mut a = best.clone();
    if to.ebgp {
        match a.as_path.first_mut() {
            Some(Segment::Sequence(v)) if v.len() < 255 => v.insert(0, local_as),
            _ => a.as_path.insert(0, Segment::Sequence(vec![local_as])),
        }
        a.local_pref = None;
        a.med = None;
    } else {
        a.local_pref = Some(a.local_pref.unwrap_or(crate::rib::DEFAULT_LOCAL_PREF));
    }
    // Next hop self; an IPv6 route needs an IPv6 next hop (our session address, or none).
    a.next_hop = match (v6, local) {
        (false, IpAddr::V4(_)) | (true, IpAddr::V6(_)) => Some(local),
        (false, IpAddr::V6(l)) => l.to_ipv4_mapped().map(IpAddr::V4),
        (true, IpAddr::V4(_)) => None,
    };
    a.next_hop?;
    a.link_local = None;
    if let Some(e) = &to.cfg.export {
        e.set.apply(&mut a, local_as);
    }
    Some(a)
}

/// Sends everything `to` may have, then End-of-RIB for its families.
fn send_table(to: PeerId, peers: &mut HashMap<PeerId, PeerState>, rib: &Rib, cfg: &SpeakerConfig) {
    let mut sent = Vec::new();
    send_table_to(to, peers, rib, cfg, &mut sent);
    if let Some(p) = peers.get_mut(&to) {
        p.advertised.extend(sent);
    }
}

fn send_table_to(
    to: PeerId,
    peers: &HashMap<PeerId, PeerState>,
    rib: &Rib,
    cfg: &SpeakerConfig,
    sent: &mut Vec<Nlri>,
) {
    let Some(p) = peers.get(&to) else { return };
    let Some(n) = &p.negotiated else { return };
    let max = if n.extended_message {
        MAX_EXTENDED_LEN
    } else {
        MAX_LEN
    };
    // Group prefixes by outgoing attribute set: one packed run of UPDATEs each.
    let mut groups: HashMap<(bool, Attrs), Vec<Nlri>> = HashMap::new();
    for (prefix, best) in rib.iter() {
        if best.peer == to || !exports(&prefix, best.peer, &best.attrs, p, peers) {
            continue;
        }
        let v6 = prefix.addr.is_ipv6();
        let fam = if v6 {
            Family::IPV6_UNICAST
        } else {
            Family::IPV4_UNICAST
        };
        if !n.families.contains(&fam) {
            continue;
        }
        if let Some(a) = outgoing(&best.attrs, p, cfg.local_as, v6) {
            groups.entry((v6, a)).or_default().push(prefix);
        }
    }
    let mut out = Vec::new();
    for ((_, a), prefixes) in groups {
        update::encode_announce(&mut out, &prefixes, &a, n.four_octet_as, max);
        sent.extend(prefixes);
    }
    for f in &n.families {
        update::encode_end_of_rib(&mut out, *f);
    }
    let _ = p.cmds.send(PeerCmd::Send(out));
}

/// Announcements to one peer sharing a best-route attribute set (and family): the set they
/// go out with (None: they cannot go, e.g. no next hop of the family) and the prefixes.
type OutGroup = (Arc<Attrs>, bool, Option<Attrs>, Vec<Nlri>);

/// Passes best-route changes to the daemon (for the FIB) and to the peers they go to.
fn publish(
    events: &mpsc::UnboundedSender<SpeakerEvent>,
    peers: &mut HashMap<PeerId, PeerState>,
    _rib: &Rib,
    changes: Vec<Change>,
    cfg: &SpeakerConfig,
) {
    let ids: Vec<PeerId> = peers.keys().copied().collect();
    for id in &ids {
        let mut announced = Vec::new();
        let mut withdrawn = Vec::new();
        {
            let p = &peers[id];
            let Some(n) = &p.negotiated else { continue };
            let max = if n.extended_message {
                MAX_EXTENDED_LEN
            } else {
                MAX_LEN
            };
            let mut out = Vec::new();
            let mut withdraw = Vec::new();
            // Announcements grouped by the attribute set they go out with, each group packed
            // into as few UPDATEs as fit: a table passed on is not a message per prefix. The
            // outgoing set is worked out once per best-route set (the changes of one UPDATE
            // share one).
            let mut groups: Vec<OutGroup> = Vec::new();
            for c in &changes {
                let v6 = c.prefix.addr.is_ipv6();
                let fam = if v6 {
                    Family::IPV6_UNICAST
                } else {
                    Family::IPV4_UNICAST
                };
                if !n.families.contains(&fam) {
                    continue;
                }
                let group = match &c.best {
                    Some(b) if b.peer != *id && exports(&c.prefix, b.peer, &b.attrs, p, peers) => {
                        let at = groups
                            .iter()
                            .position(|g| Arc::ptr_eq(&g.0, &b.attrs) && g.1 == v6);
                        let at = at.unwrap_or_else(|| {
                            let a = outgoing(&b.attrs, p, cfg.local_as, v6);
                            groups.push((b.attrs.clone(), v6, a, Vec::new()));
                            groups.len() - 1
                        });
                        groups[at].2.is_some().then_some(at)
                    }
                    _ => None,
                };
                match group {
                    Some(at) => {
                        groups[at].3.push(c.prefix);
                        announced.push(c.prefix);
                    }
                    // Only what the peer has from us is withdrawn from it.
                    None if p.advertised.contains(&c.prefix) => {
                        withdraw.push(c.prefix);
                        withdrawn.push(c.prefix);
                    }
                    None => {}
                }
            }
            for (_, _, a, prefixes) in &groups {
                if let (Some(a), false) = (a, prefixes.is_empty()) {
                    update::encode_announce(&mut out, prefixes, a, n.four_octet_as, max);
                }
            }
            let (w4, w6): (Vec<Nlri>, Vec<Nlri>) =
                withdraw.into_iter().partition(|p| p.addr.is_ipv4());
            for w in [w4, w6] {
                if !w.is_empty() {
                    update::encode_withdraw(&mut out, &w, max);
                }
            }
            if !out.is_empty() {
                let _ = p.cmds.send(PeerCmd::Send(out));
            }
        }
        let p = peers.get_mut(id).expect("known peer");
        p.advertised.extend(announced);
        for w in &withdrawn {
            p.advertised.remove(w);
        }
    }
    if !changes.is_empty() {
        let _ = events.send(SpeakerEvent::Best(changes));
    }
}

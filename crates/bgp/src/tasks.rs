//! The speaker on tokio (holo-bgp's `tasks.rs`): a task per neighbor (`peer::run`), the
//! listeners, the timers and the channels, around the sans-IO [`Speaker`]. Everything it
//! decides is in `speaker`; this carries out its [`Output`]s and feeds it what happens.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use crate::peer::{self, PeerCmd, PeerConfig, PeerEvent, Secret};
use crate::rib::PeerId;
use crate::speaker::{
    Input, Neighbor, NeighborOp, NeighborView, Output, RouteView, Speaker, SpeakerConfig,
    SpeakerEvent,
};
use crate::update::Nlri;

/// Session events waiting for the speaker, per peer and in all.
const EVENTS_QUEUE: usize = 64;

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

/// Runs the speaker until `stop` carries a shutdown communication. `events` is unbounded so
/// that the speaker never waits on the daemon (which waits on the speaker for reloads); what
/// goes into it is bounded by the speaker's own pace: its input from peers waits in queues of
/// `EVENTS_QUEUE`, and a withdrawal goes `speaker::FLUSH_CHUNK` changes per turn.
pub async fn run(
    cfg: SpeakerConfig,
    events: mpsc::UnboundedSender<SpeakerEvent>,
    stop: watch::Receiver<Option<String>>,
    mut cmds: mpsc::Receiver<SpeakerCmd>,
) {
    // Bounded: a peer that sends faster than the speaker takes its UPDATEs waits, its TCP
    // window closing, instead of queueing without limit.
    let (ev_tx, mut ev_rx) = mpsc::channel::<(PeerId, PeerEvent)>(EVENTS_QUEUE);
    let mut plumbing = Plumbing {
        ev_tx,
        events,
        stop: stop.clone(),
        incoming: Arc::new(std::sync::Mutex::new(HashMap::new())),
        listeners: HashMap::new(),
        peers: HashMap::new(),
        tasks: Vec::new(),
    };
    let (mut speaker, out) = Speaker::new(cfg);
    plumbing.carry_out(out);
    let mut stop = stop;
    loop {
        let sleep = speaker
            .next_timer()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.changed() => break,
            _ = tokio::time::sleep_until(sleep) => {
                // A withdrawal goes on a chunk per turn, due at once: the daemon's loop and
                // the session tasks share this thread, and get it between chunks (the daemon
                // hears that a peer went down, and moves its routes to their backups, before
                // the table walk that withdraws them, not after).
                tokio::task::yield_now().await;
                let out = speaker.on_timer(std::time::Instant::now());
                plumbing.carry_out(out);
            }
            e = ev_rx.recv() => {
                let Some((id, e)) = e else { break };
                let out = speaker.handle(std::time::Instant::now(), Input::Peer(id, e));
                plumbing.carry_out(out);
            }
            Some(c) = cmds.recv() => match c {
                SpeakerCmd::Reconfigure(new) => {
                    let out = speaker.handle(std::time::Instant::now(), Input::Reconfigure(new));
                    plumbing.carry_out(out);
                }
                SpeakerCmd::Unreachable(nets) => {
                    let out = speaker.handle(std::time::Instant::now(), Input::Unreachable(nets));
                    plumbing.carry_out(out);
                }
                SpeakerCmd::Neighbors(reply) => {
                    let _ = reply.send(speaker.neighbors(std::time::Instant::now()));
                }
                SpeakerCmd::Routes { prefix, reply } => {
                    let _ = reply.send(speaker.routes(prefix));
                }
                SpeakerCmd::Neighbor { address, op, reply } => {
                    let r = speaker.neighbor_op(address, op).map(|out| plumbing.carry_out(out));
                    let _ = reply.send(r);
                }
            },
        }
    }
    for t in plumbing.tasks {
        let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
    }
}

/// Where incoming connections go: the peer task of the neighbor at the source address.
type Incoming = Arc<std::sync::Mutex<HashMap<IpAddr, mpsc::Sender<tokio::net::TcpStream>>>>;

/// The speaker's I/O plumbing that outlives single peers: the event channel every peer task
/// reports on, the stop signal, the listeners and who their connections go to.
struct Plumbing {
    ev_tx: mpsc::Sender<(PeerId, PeerEvent)>,
    stop: watch::Receiver<Option<String>>,
    incoming: Incoming,
    /// The listeners by the address they are bound to, kept for their MD5 keys.
    listeners: HashMap<IpAddr, RawFd>,
    /// Where each session task takes its commands.
    peers: HashMap<PeerId, mpsc::UnboundedSender<PeerCmd>>,
    /// Where the speaker's events go: the daemon.
    events: mpsc::UnboundedSender<SpeakerEvent>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Plumbing {
    /// Does what the speaker asked.
    fn carry_out(&mut self, out: Vec<Output>) {
        for o in out {
            match o {
                Output::StartPeer { id, config } => self.start_peer(id, *config),
                Output::ForgetPeer { id, address } => {
                    self.peers.remove(&id);
                    if let Ok(mut m) = self.incoming.lock() {
                        m.remove(&address);
                    }
                }
                Output::Peer(id, cmd) => {
                    if let Some(tx) = self.peers.get(&id) {
                        let _ = tx.send(cmd);
                    }
                }
                Output::Listen {
                    neighbors,
                    port,
                    gone,
                } => self.listen(&neighbors, port, &gone),
                Output::Event(e) => {
                    let _ = self.events.send(e);
                }
            }
        }
    }

    /// Starts the session task of neighbor `id`.
    fn start_peer(&mut self, id: PeerId, config: PeerConfig) {
        let (in_tx, in_rx) = mpsc::channel(4);
        // Unbounded in type, bounded by the speaker: UPDATEs go here only while fewer than
        // `speaker::WINDOW` octets are unwritten (the task reports what it writes), and the
        // other commands come one per event of the session's own.
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        if let Ok(mut m) = self.incoming.lock() {
            m.insert(config.remote.ip(), in_tx);
        }
        let (tx, mut rx) = mpsc::channel(EVENTS_QUEUE);
        let fwd = self.ev_tx.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                if fwd.send((id, e)).await.is_err() {
                    break;
                }
            }
        });
        self.peers.insert(id, cmd_tx);
        self.tasks.push(tokio::spawn(peer::run(
            config,
            in_rx,
            tx,
            self.stop.clone(),
            cmd_rx,
        )));
    }

    fn warn(&self, text: String) {
        let _ = self.events.send(SpeakerEvent::Log {
            severity: crate::speaker::Severity::Warning,
            text,
        });
    }

    /// Listeners for the neighbors, with their MD5 keys: per family, on every address, or
    /// only on the neighbors' local addresses when each neighbor of the family names one.
    /// Listeners that exist get the keys of new neighbors (and lose those of removed ones).
    fn listen(&mut self, neighbors: &[Neighbor], port: u16, gone: &[Neighbor]) {
        for v4 in [true, false] {
            let family: Vec<&Neighbor> = neighbors
                .iter()
                .filter(|n| n.address.is_ipv4() == v4)
                .collect();
            let md5: Vec<(IpAddr, Secret)> = family
                .iter()
                .filter_map(|n| n.md5.clone().map(|k| (n.address, k)))
                .collect();
            let any: IpAddr = if v4 {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            let mut wanted: Vec<IpAddr> = if family.iter().any(|n| n.local_address.is_none()) {
                vec![any]
            } else {
                family.iter().filter_map(|n| n.local_address).collect()
            };
            wanted.sort_unstable();
            wanted.dedup();
            if family.is_empty() {
                wanted.clear();
            }
            // Keys on the listeners that exist: the family's neighbors' set, those gone
            // deleted.
            let existing: Vec<RawFd> = self
                .listeners
                .iter()
                .filter(|(a, _)| a.is_ipv4() == v4)
                .map(|(_, fd)| *fd)
                .collect();
            for fd in existing {
                let fd = Fd(fd);
                for (a, k) in &md5 {
                    if let Err(e) = peer::set_md5(&fd, *a, k.as_bytes()) {
                        self.warn(format!("bgp: the TCP-MD5 key for {a} on the listener: {e}"));
                    }
                }
                for n in gone
                    .iter()
                    .filter(|n| n.address.is_ipv4() == v4 && n.md5.is_some())
                {
                    if !md5.iter().any(|(a, _)| *a == n.address) {
                        let _ = peer::set_md5(&fd, n.address, &[]);
                    }
                }
            }
            // A listener on every address of the family takes the connections to all of
            // them: no other is opened beside it.
            if self.listeners.contains_key(&any) {
                continue;
            }
            for a in wanted {
                if !self.listeners.contains_key(&a) {
                    self.open_listener(SocketAddr::new(a, port), &md5);
                }
            }
        }
    }

    /// Opens a listener on `addr` and hands its connections to the neighbors' session tasks.
    fn open_listener(&mut self, addr: SocketAddr, md5: &[(IpAddr, Secret)]) {
        match peer::listen(addr, md5) {
            Ok(l) => {
                use std::os::fd::AsRawFd;
                self.listeners.insert(addr.ip(), l.as_raw_fd());
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
                        // Connections from anyone else are closed at once, and so is one
                        // from a peer whose session task has not taken the last few: the
                        // listener never waits on one peer.
                        let tx = incoming.lock().ok().and_then(|m| m.get(&ip).cloned());
                        if let Some(tx) = tx {
                            let _ = tx.try_send(s);
                        }
                    }
                });
            }
            Err(e) => self.warn(format!(
                "bgp: cannot listen on {addr}: {e}; passive peers will not connect"
            )),
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

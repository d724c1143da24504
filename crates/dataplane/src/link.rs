//! One link: a TUN interface and an underlay socket (UDP, or `AF_PACKET` on an Ethernet
//! interface), joined by two worker threads.
//!
//! The transmit worker reads a batch of packets from TUN, protects each in place and sends
//! the batch with one `sendmmsg`; a TCP super-packet from TUN's segmentation offload is split
//! into segments that leave as one UDP GSO send (see [`crate::offload`]). The receive worker
//! takes a batch with one `recvmmsg` (UDP GRO messages hold many datagrams), validates each
//! in place, joins consecutive segments of a TCP flow into one super-packet and writes it to
//! TUN. Buffers are allocated when the link starts; the per-packet path allocates nothing and
//! takes no lock.
//!
//! ## UDP wire format
//! The UDP payload is the MACsec frame from the SecTAG on: SecTAG (always with the SCI),
//! secure data, ICV. The 802.1AE AAD still starts with DA and SA; over UDP they are the MAC
//! parts of the receiver's and the sender's SCIs, followed by the EtherType 88E5. The secure
//! data is the user data of an Ethernet frame: EtherType (0800 or 86DD) and the IP packet, or
//! 88B5 and a liveness probe.
//!
//! ## Ethernet wire format
//! Genuine 802.1AE frames: `DA SA 88E5 SecTAG(with SCI) {EtherType IP-packet}encrypted ICV`,
//! from the underlay interface's MAC address to the peer's, as Linux `macsec` or Wireshark
//! read them. The SCIs are the two MAC addresses and the port unless configured.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use interlink_macsec::{
    An, Backend, CipherSuite, RxConfig, RxSecY, SaError, SaKey, Sak, Salt, Sci, Ssci, TxConfig,
    TxSecY, ADDRS_LEN, ETHERTYPE_MACSEC, ICV_LEN,
};

mod idle;
mod rx;
mod tx;

// An eventfd wakes a worker out of poll when a command or the stop flag is set.
use interlink_sys::EventFd as Waker;

use crate::counters::{Counters, Liveness, Published};
use crate::pnstate::{self, Direction, Persister, PnFile, Reserve, StateError};
use crate::sys;
use rx::RxWorker;
use tx::TxWorker;

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// MKPDUs waiting for the control plane: a peer sends one every 2 s, a rekey a few more; a
/// flood beyond this is dropped and counted, never queued without bound.
pub const CONTROL_QUEUE: usize = 64;
/// One packet buffer: room for the headers, a 64 KiB packet and the ICV.
const SLOT: usize = 65_536 + 64;
/// Offset of the UDP payload (the SecTAG) in a frame buffer: after DA, SA and EtherType.
const PAYLOAD: usize = ADDRS_LEN + 2;
/// SecTAG with SCI, the inner EtherType and the ICV: what protection adds to an IP packet.
pub const OVERHEAD: usize = 14 + 2 + ICV_LEN;
const ETHERTYPE_IPV4: u16 = 0x0800;
/// EAPOL (IEEE 802.1X): MKA's MKPDUs.
pub const ETHERTYPE_EAPOL: u16 = 0x888e;
/// Where MKPDUs go on Ethernet: the nearest non-TPMR bridge group address (802.1X §11.1.1).
pub const EAPOL_GROUP: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x03];
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// The keys of one SA, owned.
#[derive(Clone, Debug)]
pub struct SaKeys {
    pub sak: Sak,
    /// SSCI and salt for the XPN suites.
    pub xpn: Option<(Ssci, Salt)>,
}

impl SaKeys {
    fn as_key(&self) -> SaKey<'_> {
        SaKey {
            sak: self.sak.as_bytes(),
            xpn: self.xpn,
        }
    }
}

/// Static keying: one SA per direction, as `ip macsec` configures them.
#[derive(Clone, Debug)]
pub struct StaticSas {
    /// The AN we send with, and the AN the peer sends with.
    pub tx_an: An,
    pub rx_an: An,
    pub tx: SaKeys,
    pub rx: SaKeys,
    /// The file that keeps the SAs' PNs across restarts (see [`crate::pnstate`]): the keys
    /// outlive the process, and no PN may be used twice under them.
    pub state: PathBuf,
}

/// How protected frames travel to the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Underlay {
    /// The MACsec frame from the SecTAG on, in UDP datagrams between two addresses.
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Whole 802.1AE frames on an Ethernet interface, to the peer's MAC address.
    Ethernet { ifname: String, peer_mac: [u8; 6] },
}

/// What a link needs to start.
#[derive(Clone, Debug)]
pub struct LinkSpec {
    pub name: String,
    pub ifname: String,
    pub underlay: Underlay,
    pub suite: CipherSuite,
    pub backend: Backend,
    /// Our SCI and the peer's; `None` derives them from the underlay addresses (MAC, or IP
    /// over UDP) and `port`.
    pub sci: Option<Sci>,
    pub peer_sci: Option<Sci>,
    pub port: u16,
    pub rx: RxConfig,
    /// The TUN MTU; `None` for the underlay's (path) MTU minus the overhead.
    pub mtu: Option<u32>,
    pub probe_interval: Duration,
    pub keys: Option<StaticSas>,
    /// TUN queues, each read by its own transmit worker. More than one puts PNs on the wire
    /// out of order, within a few batches: the peer then needs a replay window.
    pub queues: usize,
    /// Egress shaping, bits a second of protected frames, shared among the workers.
    pub bandwidth: Option<u64>,
    /// How long a worker that has just had work polls for more before it sleeps, while the
    /// gaps between pieces of work are that short (see `link/idle.rs`); zero never polls.
    pub busy_poll: Duration,
    /// The interface exists, left by a previous run of ours (the caller checked that it is
    /// ours): its queues are attached to, and its addresses and the routes through it stay.
    /// Otherwise it is created, and an interface of that name already there is refused.
    pub reattach: bool,
    /// Flow logs: every worker counts the IP packets it carries (see [`crate::flows`]).
    pub flows: Option<crate::flows::FlowSpec>,
}

impl LinkSpec {
    /// UDP lanes (socket pairs, each read by a receive worker): one per queue with MKA; with
    /// static keys one per queue where the configuration takes PNs out of order (a replay
    /// window), else one. Ethernet has one socket.
    fn lanes(&self) -> usize {
        match (&self.underlay, &self.keys) {
            (Underlay::Udp { .. }, None) => self.queues.max(1),
            (Underlay::Udp { .. }, Some(_)) if self.rx.replay_window > 0 => self.queues.max(1),
            _ => 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("mtu {mtu} does not fit: {path} carries at most {max} octets of IP packet inside the protection")]
    MtuTooLarge { mtu: u32, max: u32, path: String },
    #[error(transparent)]
    Sa(#[from] SaError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("the {which} key has used every packet number ({} records it); replace the key", path.display())]
    KeyExhausted { which: &'static str, path: PathBuf },
    #[error("our SCI {0} is the peer's too: frames and MKPDUs would be taken for our own; set sci or peer_sci")]
    SameSci(Sci),
    #[error("the link has stopped")]
    Stopped,
    /// The interface a previous run left cannot be attached to as it is (EINVAL: one queue
    /// against several); it can be replaced.
    #[error("cannot attach to the TUN interface {ifname}: {source}")]
    Reattach {
        ifname: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Io { what, source }
}

/// A MAC address for an underlay address, for the implicit SCI and the AAD over UDP (see
/// [`Sci::udp_mac`]).
pub fn udp_mac(addr: &SocketAddr) -> [u8; 6] {
    Sci::udp_mac(&addr.ip())
}

/// The least replay window of a link with several lanes (see `Link::start`): the most PNs the
/// receive SA tracks one by one.
pub const LANES_WINDOW: u32 = 1 << 16;

enum TxCmd {
    SecY(TxSecY),
    ProbeReply { seq: u32, sent_ns: u64 },
}

enum RxCmd {
    /// A new copy of the receive SecY (an SA installed or removed on the link's master
    /// copy); its SAs are shared with every other worker's copy.
    SecY {
        secy: RxSecY,
        done: mpsc::SyncSender<()>,
    },
}

struct Shared {
    stop: AtomicBool,
    /// One per transmit worker.
    tx: Vec<Published>,
    /// One per receive worker.
    rx: Vec<Published>,
    /// Our lanes the peer receives our probes on, from its probes: transmit queue q sends
    /// on lane q mod min(ours, that).
    peer_lanes: std::sync::atomic::AtomicUsize,
    /// When a probe request of the peer last came on each of our lanes (ns of the epoch; 0:
    /// never): the lanes we say work, in our probes.
    lane_seen: Vec<AtomicU64>,
    /// The lowest acceptable PN of the receive SA on each AN (0: none), published by the
    /// receive worker once per batch: MKA reports it and watches it for PN exhaustion.
    rx_lowest_pn: [AtomicU64; 4],
    liveness: Mutex<(Liveness, Option<Instant>)>,
    dead_interval: Duration,
    epoch: Instant,
    /// The link's busy poll, in microseconds; the workers read it at each wait.
    busy_poll_us: AtomicU64,
    /// Static keys: the PN reservations, shared with the persister thread.
    reserve: Option<Arc<Reserve>>,
    /// The receive SA's next PN as the receive worker left it (static keys, at stop).
    rx_next_pn: AtomicU64,
    /// MKPDUs dropped because the control plane's queue was full.
    control_dropped: AtomicU64,
    /// The TUN interface went away under the link (deleted from outside): the workers stop,
    /// and whoever runs the link restarts it.
    tun_gone: AtomicBool,
    /// Called after each MKPDU queued, so that the control plane runs MKA on arrival, and
    /// when a PN in use passes `pn_alarm`.
    control_wake: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// MKA's rekey threshold: once a transmit PN or a receive SA's lowest acceptable PN is
    /// past it, the workers wake the control plane (at most every 100 ms), so that MKA
    /// notices without polling. `u64::MAX`: none.
    pn_alarm: AtomicU64,
    /// When the alarm last rang, in ns of the link's epoch.
    pn_alarm_rung: AtomicU64,
}

impl Shared {
    /// Whether the workers should go on: not stopped, TUN still there.
    #[inline]
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && !self.tun_gone.load(Ordering::Relaxed)
    }

    /// For a worker after a batch: rings the control plane if `pn` is past the alarm.
    #[inline]
    fn check_pn_alarm(&self, pn: u64) {
        if pn <= self.pn_alarm.load(Ordering::Relaxed) {
            return;
        }
        let now = self.now_ns();
        let last = self.pn_alarm_rung.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 100_000_000
            && self
                .pn_alarm_rung
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Some(wake) = self.control_wake.get() {
                wake();
            }
        }
    }
}

/// Where the workers put the MKPDUs that arrive.
#[derive(Clone)]
pub(crate) struct ControlTx {
    tx: SyncSender<Vec<u8>>,
    shared: Arc<Shared>,
}

impl ControlTx {
    /// Queues an MKPDU for the control plane, or drops and counts it when the queue is
    /// full. False once nobody takes them any more.
    pub(crate) fn deliver(&self, mkpdu: &[u8]) -> bool {
        match self.tx.try_send(mkpdu.to_vec()) {
            Ok(()) => {
                if let Some(wake) = self.shared.control_wake.get() {
                    wake();
                }
                true
            }
            Err(TrySendError::Full(_)) => {
                self.shared.control_dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// How many of our lanes, from lane 0 on, the peer's probes came through within the dead
    /// interval: the lanes the peer may send on (lane 0 always, the link's own). A lane a
    /// firewall blocks is never used, and one that stops passing probes is left within the
    /// dead interval.
    fn working_lanes(&self) -> u8 {
        let (now, dead) = (self.now_ns(), self.dead_interval.as_nanos() as u64);
        let alive = |t: &AtomicU64| {
            let t = t.load(Ordering::Relaxed);
            t != 0 && now.saturating_sub(t) <= dead
        };
        let n = 1 + self
            .lane_seen
            .iter()
            .skip(1)
            .take_while(|t| alive(t))
            .count();
        n.min(usize::from(u8::MAX)) as u8
    }
}

/// A running link. Dropping it (or [`Link::stop`]) stops the workers and removes the TUN
/// interface.
pub struct Link {
    name: String,
    ifname: String,
    ifindex: u32,
    mtu: u32,
    sci: Sci,
    peer_sci: Sci,
    tx_secy: TxSecY,
    shared: Arc<Shared>,
    /// One per transmit worker.
    tx_cmds: Vec<Sender<TxCmd>>,
    /// One per receive worker (lane).
    /// Room for one each: `change_rx` waits for each copy to be taken before the next.
    rx_cmds: Vec<mpsc::SyncSender<RxCmd>>,
    /// The receive SecY the SAs are installed on; each worker gets a copy (SAs shared).
    rx_master: Mutex<RxSecY>,
    rx_window: u32,
    validators: usize,
    tx_wakes: Vec<Arc<Waker>>,
    rx_wakes: Vec<Arc<Waker>>,
    threads: Vec<JoinHandle<()>>,
    /// Where MKPDUs go out: the UDP socket, or the EAPOL packet socket and its interface.
    control: Control,
    /// MKPDUs that arrived (EAPOL frames from the protocol version octet on).
    control_rx: Option<Receiver<Vec<u8>>>,
    /// Static keys: the thread that writes PN reservations, stopped after the workers.
    persister: Option<JoinHandle<()>>,
    /// The first TUN queue: the interface is persistent, and stays after the process unless
    /// [`Link::stop`] is told otherwise.
    tun: Arc<OwnedFd>,
    keep_interface: bool,
    /// Each worker's flow table as it shows it, the transmit workers' first.
    flow_views: Vec<Arc<crate::flows::FlowView>>,
}

enum Control {
    Udp(Arc<OwnedFd>),
    Ethernet(Arc<OwnedFd>, u32),
}

impl Link {
    /// Opens the underlay socket and the TUN interface, installs the static SAs if any, and
    /// starts the workers. The interface is left down and unaddressed: see
    /// [`crate::netlink::configure`].
    pub fn start(spec: LinkSpec) -> Result<Link, LinkError> {
        let wire = Wire::open(&spec)?;
        let max_mtu = wire.max_pdu.saturating_sub(OVERHEAD) as u32;
        let mtu = spec.mtu.unwrap_or(max_mtu);
        if mtu > max_mtu || mtu < 68 {
            return Err(LinkError::MtuTooLarge {
                mtu,
                max: max_mtu,
                path: wire.path.clone(),
            });
        }
        let sci = spec.sci.unwrap_or(Sci::new(wire.local_mac, spec.port));
        let peer_sci = spec.peer_sci.unwrap_or(Sci::new(wire.peer_mac, spec.port));
        // With one SCI for both ends, the IVs of both directions would be the same under
        // one SAK (non-XPN), and MKA would take the peer's MKPDUs for our own.
        if sci == peer_sci {
            return Err(LinkError::SameSci(sci));
        }
        let tx_cfg = TxConfig {
            mtu: wire.max_pdu,
            ..TxConfig::new(sci)
        };
        let mut tx_secy = TxSecY::new(spec.suite, spec.backend, tx_cfg)?;
        // Frames of one SA are validated out of order by as much as one receive worker lags
        // another (a stall of a few milliseconds on a busy machine is thousands of PNs):
        // over UDP with MKA (our lanes, and the peer's queues, which may be more than its
        // lanes towards us), and on Ethernet with helpers validating batches side by side
        // (see `rx::Helpers`). The window is then at least LANES_WINDOW, all of it tracked
        // exactly (no PN is accepted twice inside it).
        let mut rx_cfg = spec.rx;
        let validators = match wire.framing {
            Framing::Ethernet if spec.keys.is_none() && spec.queues > 1 => spec.queues,
            _ => 0,
        };
        let mka_udp = wire.framing == Framing::Udp && spec.keys.is_none();
        if mka_udp || validators > 0 || spec.lanes() > 1 {
            rx_cfg.replay_window = rx_cfg.replay_window.max(LANES_WINDOW);
        }
        let mut rx_secy = RxSecY::new(spec.suite, spec.backend, rx_cfg);
        rx_secy.add_sc(peer_sci)?;
        // Static keys resume above every PN used or accepted before (see `pnstate`): the
        // first block of transmit PNs is reserved, durably, before the link starts.
        let mut persister = None;
        if let Some(keys) = &spec.keys {
            let mut file = PnFile::load(&keys.state)?;
            let tx_key = pnstate::key_id(spec.suite, &keys.tx);
            let rx_key = pnstate::key_id(spec.suite, &keys.rx);
            let max = spec.suite.max_pn();
            let tx_next = file.resume(Direction::Tx, &tx_key);
            let rx_lowest = file.resume(Direction::Rx, &rx_key);
            for (which, pn) in [("transmit", tx_next), ("receive", rx_lowest)] {
                if pn > max || pn == u64::MAX {
                    return Err(LinkError::KeyExhausted {
                        which,
                        path: keys.state.clone(),
                    });
                }
            }
            let block = pnstate::tx_block(spec.suite);
            let ceiling = (tx_next - 1).saturating_add(block).min(max);
            file.set(Direction::Tx, &tx_key, ceiling.saturating_add(1));
            file.set(Direction::Rx, &rx_key, rx_lowest);
            file.save()?;
            tx_secy.install_sa(keys.tx_an, &keys.tx.as_key(), tx_next)?;
            tx_secy.set_encoding_sa(keys.tx_an)?;
            if let Some(sa) = tx_secy.sa(keys.tx_an) {
                sa.set_ceiling(ceiling);
            }
            rx_secy.install_sa(peer_sci, keys.rx_an, &keys.rx.as_key(), rx_lowest)?;
            rx_secy.set_pn_limit(peer_sci, keys.rx_an, rx_lowest - 1)?;
            let reserve = Arc::new(Reserve::new(
                rx_lowest - 1,
                ceiling.saturating_sub(block / 2),
                spec.lanes(),
            ));
            persister = Some(Persister {
                file,
                tx_key,
                rx_key,
                tx: tx_secy.clone(),
                tx_an: keys.tx_an,
                block,
                reserve,
                rx: rx_secy.clone(),
                rx_sci: peer_sci,
                rx_an: keys.rx_an,
            });
        }

        let queues = spec.queues.max(1);
        let mut uso = true;
        let tuns = (0..queues)
            .map(|q| {
                let (fd, has_uso) =
                    sys::open_tun_queue(&spec.ifname, queues > 1, q == 0 && !spec.reattach)
                        .map_err(|source| match source.raw_os_error() {
                            Some(libc::EINVAL) if spec.reattach => LinkError::Reattach {
                                ifname: spec.ifname.clone(),
                                source,
                            },
                            _ => io_err(format!("create TUN interface {}", spec.ifname))(source),
                        })?;
                uso &= has_uso;
                Ok(Arc::new(fd))
            })
            .collect::<Result<Vec<_>, LinkError>>()?;
        // The interface, its addresses and the routes through it outlive this process: a
        // restart (or a crash) leaves forwarding in place, and the next run attaches to it.
        // While no queue is attached the kernel drops what is routed to it (the carrier is
        // off) and keeps the routes (linkdown).
        sys::set_persist(tuns[0].as_raw_fd(), true)
            .map_err(io_err(format!("make {} persistent", spec.ifname)))?;
        let ifindex =
            sys::if_index(&spec.ifname).map_err(io_err(format!("find {}", spec.ifname)))?;
        // Underlay lanes: over UDP with MKA, one socket pair per queue (see `Wire::udp`),
        // each read by a receive worker of its own; one otherwise.
        let socks: Vec<Arc<OwnedFd>> = std::iter::once(wire.fd)
            .chain(wire.lanes)
            .map(Arc::new)
            .collect();
        let lanes = socks.len();
        let sock = socks[0].clone();
        let (control_tx, control_rx) = mpsc::sync_channel(CONTROL_QUEUE);
        let control = match wire.eapol {
            Some((fd, index)) => Control::Ethernet(Arc::new(fd), index),
            None => Control::Udp(sock.clone()),
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            tx: (0..queues).map(|_| Published::default()).collect(),
            rx: (0..lanes).map(|_| Published::default()).collect(),
            peer_lanes: std::sync::atomic::AtomicUsize::new(1),
            lane_seen: (0..lanes).map(|_| AtomicU64::new(0)).collect(),
            rx_lowest_pn: Default::default(),
            liveness: Mutex::new((Liveness::default(), None)),
            dead_interval: spec.probe_interval * 3,
            epoch: Instant::now(),
            busy_poll_us: AtomicU64::new(spec.busy_poll.as_micros() as u64),
            reserve: persister.as_ref().map(|p| p.reserve.clone()),
            rx_next_pn: AtomicU64::new(0),
            control_dropped: AtomicU64::new(0),
            tun_gone: AtomicBool::new(false),
            control_wake: OnceLock::new(),
            pn_alarm: AtomicU64::new(u64::MAX),
            pn_alarm_rung: AtomicU64::new(0),
        });
        let control_tx = ControlTx {
            tx: control_tx,
            shared: shared.clone(),
        };

        // DA and SA as each direction's AAD has them (see the module documentation): on
        // Ethernet the real addresses, over UDP the SCIs' MAC parts, written in on receive.
        let (tx_addrs, rx_addrs) = match wire.framing {
            Framing::Ethernet => (addrs(wire.peer_mac, wire.local_mac), None),
            Framing::Udp => (
                addrs(peer_sci.mac(), sci.mac()),
                Some(addrs(sci.mac(), peer_sci.mac())),
            ),
        };
        let short = &spec.name[..spec.name.len().min(8)];
        let mut threads = Vec::new();
        // Flow logs: a table for each worker (the transmit workers' out, the receive
        // worker's in), sharing the link's bound, and the view of it the control plane reads.
        let mut flow_views = Vec::new();
        let flow_table = |direction, views: &mut Vec<Arc<crate::flows::FlowView>>| {
            let f = spec.flows.as_ref()?;
            let view = Arc::new(crate::flows::FlowView::default());
            views.push(view.clone());
            Some(crate::flows::Flows::new(
                f,
                queues + lanes,
                ifindex,
                direction,
                view,
            ))
        };
        let mut tx_cmds = Vec::new();
        let mut tx_wakes = Vec::new();
        for (q, tun) in tuns.iter().enumerate() {
            let (cmds, cmd_rx) = mpsc::channel();
            let wake = Arc::new(Waker::new().map_err(io_err("eventfd"))?);
            let worker = TxWorker {
                flows: flow_table(interlink_flow::Direction::Egress, &mut flow_views),
                queue: q,
                tun: tun.clone(),
                socks: socks.clone(),
                secy: tx_secy.clone(),
                cmds: cmd_rx,
                wake: wake.clone(),
                shared: shared.clone(),
                addrs: tx_addrs,
                wire: wire.framing,
                mtu,
                // One worker sends the probes and the replies.
                probe_interval: (q == 0).then_some(spec.probe_interval),
                shaper: spec
                    .bandwidth
                    .map(|b| tx::Shaper::new(b / spec.queues.max(1) as u64)),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("il-tx{q}-{short}"))
                    .spawn(move || worker.run())
                    .map_err(io_err("spawn a transmit worker"))?,
            );
            tx_cmds.push(cmds);
            tx_wakes.push(wake);
        }
        // The receive workers: one per lane, each with a copy of the SecY (the SAs shared);
        // the link keeps a master copy to install SAs on.
        let rx_master = Mutex::new(rx_secy.clone());
        let mut rx_cmds = Vec::new();
        let mut rx_wakes = Vec::new();
        for (lane, lane_sock) in socks.iter().enumerate() {
            let (cmds, cmd_rx) = mpsc::sync_channel(1);
            let wake = Arc::new(Waker::new().map_err(io_err("eventfd"))?);
            let helpers = match validators {
                0 => None,
                n => {
                    let (h, t) =
                        rx::Helpers::start(n, &rx_secy, rx_addrs, wire.framing, &wake, short)
                            .map_err(io_err("spawn a validation helper"))?;
                    threads.extend(t);
                    Some(h)
                }
            };
            let rx = RxWorker {
                helpers,
                lane,
                flows: flow_table(interlink_flow::Direction::Ingress, &mut flow_views),
                tun: tuns[lane % tuns.len()].clone(),
                sock: lane_sock.clone(),
                secy: rx_secy.clone(),
                cmds: cmd_rx,
                wake: wake.clone(),
                shared: shared.clone(),
                addrs: rx_addrs,
                wire: wire.framing,
                uso,
                tx_cmds: tx_cmds[0].clone(),
                tx_wake: tx_wakes[0].clone(),
                control: control_tx.clone(),
                // Static keys: every lane's worker reserves, from one shared request (see
                // `pnstate::Persister` for how a lower limit stays safe with several).
                reserve: spec
                    .keys
                    .as_ref()
                    .zip(shared.reserve.clone())
                    .map(|(k, r)| rx::RxReserve::new(r, k.rx_an, lane)),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("il-rx{lane}-{short}"))
                    .spawn(move || rx.run())
                    .map_err(io_err("spawn a receive worker"))?,
            );
            rx_cmds.push(cmds);
            rx_wakes.push(wake);
        }
        // On Ethernet, MKPDUs come on their own socket, read by a thread of their own.
        if let Control::Ethernet(fd, _) = &control {
            let (fd, shared, tx) = (fd.clone(), shared.clone(), control_tx);
            threads.push(
                std::thread::Builder::new()
                    .name(format!("il-ctl-{short}"))
                    .spawn(move || eapol_reader(&fd, &shared, &tx))
                    .map_err(io_err("spawn the EAPOL reader"))?,
            );
        }
        let persister = match persister {
            Some(p) => Some(
                std::thread::Builder::new()
                    .name(format!("il-pn-{short}"))
                    .spawn(move || p.run())
                    .map_err(io_err("spawn the PN persister"))?,
            ),
            None => None,
        };
        Ok(Link {
            flow_views,
            tun: tuns[0].clone(),
            keep_interface: false,
            persister,
            control,
            control_rx: Some(control_rx),
            name: spec.name,
            ifname: spec.ifname,
            ifindex,
            mtu,
            sci,
            peer_sci,
            tx_secy,
            shared,
            tx_cmds,
            rx_cmds,
            rx_master,
            rx_window: rx_cfg.replay_window,
            validators,
            tx_wakes,
            rx_wakes,
            threads,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    /// The underlay lanes this link receives on (one but over UDP with MKA and several
    /// queues), and the replay window its receive SA has.
    pub fn lanes(&self) -> (usize, u32) {
        (self.shared.rx.len(), self.rx_window)
    }

    /// The TUN queues, each with a transmit worker.
    pub fn queues(&self) -> usize {
        self.shared.tx.len()
    }

    /// The threads that validate for the receive worker (Ethernet with several queues).
    pub fn validators(&self) -> usize {
        self.validators
    }

    /// The workers' flow tables as they last showed them (none without flow logs).
    pub fn flow_views(&self) -> &[Arc<crate::flows::FlowView>] {
        &self.flow_views
    }
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
    /// The TUN MTU: configured, or derived from the path MTU.
    pub fn mtu(&self) -> u32 {
        self.mtu
    }
    pub fn sci(&self) -> Sci {
        self.sci
    }
    pub fn peer_sci(&self) -> Sci {
        self.peer_sci
    }

    /// The counters of both workers, summed.
    pub fn counters(&self) -> Counters {
        let mut c = Counters::default();
        for rx in &self.shared.rx {
            c.merge(&rx.read());
        }
        for tx in &self.shared.tx {
            c.merge(&tx.read());
        }
        c
    }

    /// Liveness and RTT from the probes.
    pub fn liveness(&self) -> Liveness {
        let (mut l, last) = self
            .shared
            .liveness
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default();
        l.up = last.is_some_and(|t| t.elapsed() <= self.shared.dead_interval);
        l
    }

    /// Installs the receive SA `an` for the peer, replacing any SA on that AN. Frames on it
    /// are accepted from `lowest_pn` on. Install the receive SA before the peer starts sending
    /// with it (802.1X §9.10.1), then the transmit SA.
    pub fn install_rx_sa(&self, an: An, keys: SaKeys, lowest_pn: u64) -> Result<(), LinkError> {
        self.change_rx(|secy, peer| secy.install_sa(peer, an, &keys.as_key(), lowest_pn))
    }

    /// Removes the receive SA `an`: frames under it are refused from now on (its key is no
    /// longer trusted, such as a CAK taken out of the keychain).
    pub fn remove_rx_sa(&self, an: An) -> Result<(), LinkError> {
        self.change_rx(|secy, peer| secy.remove_sa(peer, an))
    }

    /// Changes the master receive SecY and hands every receive worker a copy, waiting until
    /// each has taken it.
    fn change_rx(
        &self,
        change: impl FnOnce(&mut RxSecY, Sci) -> Result<(), SaError>,
    ) -> Result<(), LinkError> {
        let copy = {
            let mut master = self.rx_master.lock().map_err(|_| LinkError::Stopped)?;
            change(&mut master, self.peer_sci)?;
            master.clone()
        };
        let mut waits = Vec::new();
        for (cmds, wake) in self.rx_cmds.iter().zip(&self.rx_wakes) {
            let (done, wait) = mpsc::sync_channel(1);
            cmds.send(RxCmd::SecY {
                secy: copy.clone(),
                done,
            })
            .map_err(|_| LinkError::Stopped)?;
            wake.wake();
            waits.push(wait);
        }
        for w in waits {
            w.recv().map_err(|_| LinkError::Stopped)?;
        }
        Ok(())
    }

    /// Installs a transmit SA on an AN not in use, starting at `next_pn`.
    pub fn install_tx_sa(&mut self, an: An, keys: &SaKeys, next_pn: u64) -> Result<(), LinkError> {
        self.tx_secy.install_sa(an, &keys.as_key(), next_pn)?;
        self.push_tx_secy()
    }

    /// Switches transmission to the SA of `an`; the next packet uses it.
    pub fn use_tx_sa(&mut self, an: An) -> Result<(), LinkError> {
        self.tx_secy.set_encoding_sa(an)?;
        self.push_tx_secy()
    }

    /// Sends an MKPDU (an EAPOL frame from its protocol version octet on) to the peer: on
    /// Ethernet to the EAPOL group address from the SCI's MAC, over UDP as a datagram that
    /// starts with the EtherType 888E, which no SecTAG can (its first octet would have the
    /// reserved V bit set).
    pub fn send_control(&self, eapol: &[u8]) -> std::io::Result<()> {
        match &self.control {
            Control::Udp(fd) => {
                let mut d = Vec::with_capacity(eapol.len() + 2);
                d.extend_from_slice(&ETHERTYPE_EAPOL.to_be_bytes());
                d.extend_from_slice(eapol);
                sys::send(fd.as_raw_fd(), &d)
            }
            Control::Ethernet(fd, ifindex) => {
                let mut f = Vec::with_capacity(eapol.len() + 14);
                f.extend_from_slice(&EAPOL_GROUP);
                f.extend_from_slice(&self.sci.mac());
                f.extend_from_slice(&ETHERTYPE_EAPOL.to_be_bytes());
                f.extend_from_slice(eapol);
                sys::send_frame(fd.as_raw_fd(), *ifindex, &EAPOL_GROUP, &f)
            }
        }
    }

    /// The MKPDUs that arrive, once: whoever runs MKA for the link takes them. At most
    /// [`CONTROL_QUEUE`] wait; `wake` is called (from a worker thread) after each one queued.
    pub fn take_control_rx(
        &mut self,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> Option<Receiver<Vec<u8>>> {
        let _ = self.shared.control_wake.set(Box::new(wake));
        self.control_rx.take()
    }

    /// Wakes the control plane (the `take_control_rx` callback) once a PN in use passes
    /// `threshold`: MKA's rekey threshold is then acted on within a batch, not at the next
    /// MKPDU.
    pub fn set_pn_alarm(&self, threshold: u64) {
        self.shared.pn_alarm.store(threshold, Ordering::Relaxed);
    }

    /// Whether the TUN interface has gone (deleted from outside): the workers have stopped,
    /// and the link must be started again.
    pub fn tun_gone(&self) -> bool {
        self.shared.tun_gone.load(Ordering::Relaxed)
    }

    /// MKPDUs dropped because the queue to the control plane was full.
    pub fn control_dropped(&self) -> u64 {
        self.shared.control_dropped.load(Ordering::Relaxed)
    }

    /// Packets the kernel dropped because the TUN queue was full: the transmit workers did
    /// not keep up, which with a bandwidth set means the shaper held them back.
    pub fn tun_tx_dropped(&self) -> u64 {
        std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/tx_dropped",
            self.ifname
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    }

    /// The lowest acceptable PN of the receive SA on each AN, as of the receive worker's last
    /// batch (0 where none is installed).
    pub fn rx_lowest_pns(&self) -> [u64; 4] {
        std::array::from_fn(|i| self.shared.rx_lowest_pn[i].load(Ordering::Relaxed))
    }

    /// The AN transmitted with and the PN its next frame takes, if any.
    pub fn tx_pn(&self) -> Option<(An, u64)> {
        let sa = self.tx_secy.encoding_sa()?;
        Some((sa.an(), sa.next_pn().unwrap_or(u64::MAX)))
    }

    /// Changes the workers' busy poll in place (a reload): each takes it at its next wait.
    pub fn set_busy_poll(&self, busy_poll: Duration) {
        self.shared
            .busy_poll_us
            .store(busy_poll.as_micros() as u64, Ordering::Relaxed);
    }

    /// The transmit SC as the control plane sees it (SAs, PNs).
    pub fn tx_secy(&self) -> &TxSecY {
        &self.tx_secy
    }

    fn push_tx_secy(&self) -> Result<(), LinkError> {
        // The workers' copies share the SAs, so packet numbers carry on where they were.
        for (cmds, wake) in self.tx_cmds.iter().zip(&self.tx_wakes) {
            cmds.send(TxCmd::SecY(self.tx_secy.clone()))
                .map_err(|_| LinkError::Stopped)?;
            wake.wake();
        }
        Ok(())
    }

    /// Stops the workers and closes the TUN queues. With `keep_interface` the interface
    /// stays, with its addresses and the routes through it, for the next run to attach to
    /// (see [`LinkSpec::reattach`]); otherwise it goes, as it does when a `Link` is dropped.
    pub fn stop(mut self, keep_interface: bool) {
        self.keep_interface = keep_interface;
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for wake in &self.tx_wakes {
            wake.wake();
        }
        for wake in &self.rx_wakes {
            wake.wake();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // No worker runs now: the exact next PNs go to the state file.
        if let (Some(t), Some(r)) = (self.persister.take(), &self.shared.reserve) {
            r.stop(self.shared.rx_next_pn.load(Ordering::Acquire));
            let _ = t.join();
        }
        if !self.keep_interface {
            // The interface goes with the last queue, closed as the `Link` goes.
            let _ = sys::set_persist(self.tun.as_raw_fd(), false);
        }
    }

    /// Writes of the PN state that failed, and the last failure (static keys).
    pub fn state_errors(&self) -> (u64, Option<String>) {
        self.shared
            .reserve
            .as_ref()
            .map(|r| r.errors())
            .unwrap_or_default()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn addrs(da: [u8; 6], sa: [u8; 6]) -> [u8; ADDRS_LEN] {
    let mut a = [0; ADDRS_LEN];
    a[..6].copy_from_slice(&da);
    a[6..].copy_from_slice(&sa);
    a
}

/// How protected frames travel, as the workers handle them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The MACsec frame from the SecTAG on, as a UDP payload.
    Udp,
    /// Whole 802.1AE frames.
    Ethernet,
}

impl Framing {
    /// Where the bytes on the wire start in a frame buffer: after DA, SA and EtherType over
    /// UDP (they are only in the AAD), at 0 on Ethernet (the whole frame).
    #[inline]
    pub(crate) fn offset(self) -> usize {
        match self {
            Framing::Udp => PAYLOAD,
            Framing::Ethernet => 0,
        }
    }
}

/// The underlay socket and what the link needs to know about it.
struct Wire {
    fd: OwnedFd,
    framing: Framing,
    /// The largest PDU (SecTAG to ICV) one datagram or frame carries.
    max_pdu: usize,
    local_mac: [u8; 6],
    peer_mac: [u8; 6],
    /// For messages: what the MTU was derived from.
    path: String,
    /// Ethernet: a packet socket for EAPOL (MKPDUs) on the underlay, and its index.
    eapol: Option<(OwnedFd, u32)>,
    /// UDP: the sockets of lanes 1 and up (lane 0 is `fd`).
    lanes: Vec<OwnedFd>,
}

impl Wire {
    fn open(spec: &LinkSpec) -> Result<Wire, LinkError> {
        match &spec.underlay {
            Underlay::Udp { local, remote } => {
                let lanes = spec.lanes();
                let mut wire = Wire::udp(*local, *remote)?;
                for i in 1..lanes {
                    let port = |a: &SocketAddr| {
                        a.port()
                            .checked_add(i as u16)
                            .map(|p| SocketAddr::new(a.ip(), p))
                            .ok_or_else(|| LinkError::Io {
                                what: format!("lane {i} of {local}"),
                                source: io::Error::new(
                                    io::ErrorKind::InvalidInput,
                                    "the port plus the lane is past 65535",
                                ),
                            })
                    };
                    wire.lanes.push(Wire::udp(port(local)?, port(remote)?)?.fd);
                }
                Ok(wire)
            }
            Underlay::Ethernet { ifname, peer_mac } => {
                let ifindex = sys::if_index(ifname).map_err(io_err(format!("find {ifname}")))?;
                let (local_mac, if_mtu) =
                    sys::if_mac_mtu(ifname).map_err(io_err(format!("read {ifname}")))?;
                // Under the shipped unit this needs its Ethernet drop-in (CAP_NET_RAW and
                // AF_PACKET), which the error names.
                let fd =
                    sys::open_packet_socket(ifindex, ETHERTYPE_MACSEC).map_err(io_err(format!(
                        "open a packet socket on {ifname} (the Ethernet transport needs \
                         CAP_NET_RAW and AF_PACKET: see interlinkd.service)"
                    )))?;
                set_buffers(fd.as_raw_fd());
                let eapol = sys::open_packet_socket(ifindex, ETHERTYPE_EAPOL)
                    .map_err(io_err(format!("open an EAPOL socket on {ifname}")))?;
                Ok(Wire {
                    fd,
                    framing: Framing::Ethernet,
                    max_pdu: if_mtu as usize,
                    local_mac,
                    peer_mac: *peer_mac,
                    path: format!("{ifname} (mtu {if_mtu})"),
                    eapol: Some((eapol, ifindex)),
                    lanes: Vec::new(),
                })
            }
        }
    }

    fn udp(local: SocketAddr, remote: SocketAddr) -> Result<Wire, LinkError> {
        let sock = UdpSocket::bind(local).map_err(io_err(format!("bind {local}")))?;
        sock.connect(remote)
            .map_err(io_err(format!("connect to {remote}")))?;
        let fd = sock.as_raw_fd();
        // Never fragment outside the protection: the DF bit is set and oversized datagrams
        // fail instead of being split (the TUN MTU keeps packets under the path MTU).
        let (level, opt, val, mtu_opt, ip_header) = if local.is_ipv4() {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_DO,
                libc::IP_MTU,
                20,
            )
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_DO,
                libc::IPV6_MTU,
                40,
            )
        };
        sys::set_int_opt(fd, level, opt, val).map_err(io_err("set DF on the underlay socket"))?;
        // Receive coalesced datagrams where the kernel can (Linux 5.0 on); without it, one
        // datagram per message as before.
        let _ = sys::set_int_opt(fd, libc::SOL_UDP, sys::UDP_GRO, 1);
        set_buffers(fd);
        let path_mtu =
            sys::get_int_opt(fd, level, mtu_opt).map_err(io_err("read the path MTU"))? as usize;
        Ok(Wire {
            fd: OwnedFd::from(sock),
            framing: Framing::Udp,
            max_pdu: path_mtu.saturating_sub(ip_header + 8),
            local_mac: udp_mac(&local),
            peer_mac: udp_mac(&remote),
            path: format!("the path to {remote} (mtu {path_mtu})"),
            eapol: None,
            lanes: Vec::new(),
        })
    }
}

/// Large socket buffers absorb bursts between batches. Root may exceed
/// net.core.[rw]mem_max; others get what the sysctl allows.
fn set_buffers(fd: RawFd) {
    for (force, plain) in [
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF),
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF),
    ] {
        if sys::set_int_opt(fd, libc::SOL_SOCKET, force, 4 << 20).is_err() {
            let _ = sys::set_int_opt(fd, libc::SOL_SOCKET, plain, 4 << 20);
        }
    }
}

/// Reads EAPOL frames from the packet socket until the link stops; passes on the MKPDUs sent
/// to the group address (the EAPOL frame from its version octet on).
fn eapol_reader(fd: &OwnedFd, shared: &Shared, tx: &ControlTx) {
    let mut buf = vec![0u8; 2048];
    while shared.running() {
        match sys::poll_readable([fd.as_raw_fd(), fd.as_raw_fd()], 500) {
            Ok([true, _]) => {}
            Ok(_) => continue,
            Err(_) => break,
        }
        let Ok(Some(n)) = sys::read_nonblocking(fd.as_raw_fd(), &mut buf) else {
            continue;
        };
        let f = &buf[..n];
        let mkpdu = n > 14 && f[..6] == EAPOL_GROUP && f[12..14] == ETHERTYPE_EAPOL.to_be_bytes();
        if mkpdu && !tx.deliver(&f[14..]) {
            break;
        }
    }
}

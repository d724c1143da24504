//! The receive worker: the underlay to TUN. Takes a batch of datagrams or frames (a UDP GRO
//! message holds many), validates each where it lies, joins consecutive segments of a TCP or
//! UDP flow into one super-packet and writes the user data to TUN; probes go to the liveness
//! logic.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_macsec::{Accepted, An, RxSecY, Sci, ADDRS_LEN, ETHERTYPE_MACSEC};

use super::idle::Idle;
use super::{
    Framing, RxCmd, Shared, TxCmd, Waker, BATCH, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PAYLOAD, SLOT,
};
use crate::counters::Counters;
use crate::offload::{TcpCoalescer, UdpCoalescer, VirtioNetHdr, VNET_HDR_LEN};
use crate::pnstate::{self, Reserve};
use crate::probe::{Probe, ETHERTYPE_PROBE};
use crate::sys::{self, MmsgBatch};

/// Receive offload towards TUN: at most one train, of TCP segments or of UDP datagrams, is
/// being joined at a time; a packet that does not continue it ends it.
struct Gro {
    tcp: TcpCoalescer,
    udp: UdpCoalescer,
    /// The TUN takes UDP GSO packets (Linux 6.2+).
    uso: bool,
}

impl Gro {
    /// Joins `pkt` to the train or starts one with it; false if it must go on its own (the
    /// train that was, if any, has then been written).
    fn push(&mut self, pkt: &[u8], tun: RawFd, counters: &mut Counters) -> bool {
        if self.tcp.append(pkt) || self.udp.append(pkt) {
            return true;
        }
        self.flush(tun, counters);
        self.tcp.start(pkt) || (self.uso && self.udp.start(pkt))
    }

    /// Writes the train, if any, to TUN.
    fn flush(&mut self, tun: RawFd, counters: &mut Counters) {
        if !self.tcp.is_empty() {
            let segments = self.tcp.segments();
            write_tun(tun, self.tcp.finish(), segments, counters);
        }
        if !self.udp.is_empty() {
            let segments = self.udp.segments();
            write_tun(tun, self.udp.finish(), segments, counters);
        }
    }
}

/// Writes one packet, virtio header first, carrying `segments` IP packets, to TUN.
fn write_tun(tun: RawFd, packet: &[u8], segments: usize, counters: &mut Counters) {
    match sys::write(tun, packet) {
        Ok(_) => {
            counters.link.tun_tx_packets += segments as u64;
            counters.link.tun_tx_bytes += (packet.len() - VNET_HDR_LEN) as u64;
        }
        // TUN answers EIO while its interface is down.
        Err(e) if e.raw_os_error() == Some(libc::EIO) => counters.link.tun_down += segments as u64,
        Err(_) => counters.link.tun_tx_errors += segments as u64,
    }
}

pub(super) struct RxWorker {
    /// The underlay lane this worker reads.
    pub(super) lane: usize,
    pub(super) tun: Arc<OwnedFd>,
    pub(super) sock: Arc<OwnedFd>,
    pub(super) secy: RxSecY,
    pub(super) cmds: Receiver<RxCmd>,
    pub(super) wake: Arc<Waker>,
    pub(super) shared: Arc<Shared>,
    /// Over UDP, the stand-in DA and SA written before validation.
    pub(super) addrs: Option<[u8; ADDRS_LEN]>,
    pub(super) wire: Framing,
    /// The TUN takes UDP GSO packets: UDP datagrams are joined too.
    pub(super) uso: bool,
    pub(super) tx_cmds: Sender<TxCmd>,
    pub(super) tx_wake: Arc<Waker>,
    /// MKPDUs that arrive over UDP go here.
    pub(super) control: super::ControlTx,
    /// Static keys: the receive SA's limit, reserved in the PN state file.
    pub(super) reserve: Option<RxReserve>,
    /// Flow logs: the IP packets that validated, before they are joined for TUN.
    pub(super) flows: Option<crate::flows::Flows>,
    /// Ethernet with several queues: the threads that validate for this worker.
    pub(super) helpers: Option<Helpers>,
}

/// How far the static receive SA may accept, kept just ahead of the traffic: a margin of
/// about 200 ms at the rate seen (at least [`MIN_RX_MARGIN`]), so that the state file is
/// written a few times a second at most and a frame rarely waits for a write; when the
/// traffic slows, the limit comes back down to the margin, so that after a crash the peer's
/// frames are refused for no longer than about that margin. Each receive worker (one per
/// lane) has one; they share the SA, its limit and the request (`Reserve::rx_requested`),
/// so that a worker that has been idle does not set the limit from a request of its own
/// that the traffic on another lane has outgrown.
pub(super) struct RxReserve {
    reserve: Arc<Reserve>,
    an: An,
    lane: usize,
    margin: u64,
    /// The next PN and the time at the start of the rate's window.
    window: (u64, Instant),
}

/// The least the receive limit runs ahead: an idle link's probes write the state every few
/// seconds, not at each frame.
const MIN_RX_MARGIN: u64 = 4;

impl RxReserve {
    pub(super) fn new(reserve: Arc<Reserve>, an: An, lane: usize) -> RxReserve {
        RxReserve {
            reserve,
            an,
            lane,
            margin: MIN_RX_MARGIN,
            window: (0, Instant::now()),
        }
    }

    /// What the SA may accept now: the lower of the limit last asked for and what is
    /// durable (asking for a lower limit binds at once, a higher one once it is written).
    fn allowed(&self) -> u64 {
        self.reserve.rx_requested().min(self.reserve.rx_durable())
    }

    /// For a valid frame above the limit: asks for a limit above it (unless another lane
    /// asked for more already) and waits for it to be durable (a write of the state file).
    fn reserve_for(&mut self, pn: u64) -> u64 {
        let limit = pn
            .saturating_add(self.margin)
            .max(self.reserve.rx_requested());
        self.reserve.reserve_rx(limit, pn, Duration::from_secs(1));
        self.allowed()
    }

    /// After each turn of the worker, busy or not: measures the rate, applies what was
    /// written, and asks for the next limit ahead of the traffic, or a lower one once the
    /// traffic has slowed. Only the SA with a limit is the static key's: one installed over
    /// it since (a rotation) is not reserved here.
    fn tick(&mut self, secy: &mut RxSecY, peer: Sci) {
        // Past the batch it was validating: a lower limit may go to the file once every
        // worker has come here twice since (see `pnstate::Persister`).
        self.reserve.ticked(self.lane);
        let Some(sa) = secy.sc(peer).and_then(|sc| sc.sa(self.an)) else {
            return;
        };
        let (limit, next) = (sa.limit(), sa.next_pn());
        if limit == u64::MAX {
            return;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.window.1);
        if elapsed >= Duration::from_millis(100) {
            let pns = next.saturating_sub(self.window.0);
            let rate = pns.saturating_mul(200_000) / (elapsed.as_micros() as u64).max(1);
            self.margin = rate.clamp(MIN_RX_MARGIN, pnstate::MAX_RX_MARGIN);
            self.window = (next, now);
        }
        // Every PN below `next` was accepted: a limit of `next - 1 + margin` covers them.
        let target = (next - 1).saturating_add(self.margin);
        let allowed = self.allowed();
        let near = next.saturating_add(self.margin / 2) > allowed;
        let far = allowed > target.saturating_add(3 * self.margin);
        if (near && target > self.reserve.rx_requested()) || far {
            self.reserve.request_rx(target);
        }
        let allowed = self.allowed();
        if allowed != limit {
            let _ = secy.set_pn_limit(peer, self.an, allowed);
        }
    }

    /// The receive SA's next PN, for the state file at stop; 0 if it is not the static
    /// key's any more.
    fn next_pn(&self, secy: &RxSecY, peer: Sci) -> u64 {
        secy.sc(peer)
            .and_then(|sc| sc.sa(self.an))
            .filter(|sa| sa.limit() != u64::MAX)
            .map_or(0, |sa| sa.next_pn())
    }
}

impl RxWorker {
    pub(super) fn run(mut self) {
        let mut arena = vec![0u8; BATCH * SLOT];
        let mut lens = [0usize; BATCH];
        let mut mmsg = MmsgBatch::<BATCH>::new();
        let mut gro = Gro {
            tcp: TcpCoalescer::new(),
            udp: UdpCoalescer::new(),
            uso: self.uso,
        };
        let mut gro_sizes = [0usize; BATCH];
        let mut counters = Counters::default();
        let mut idle = Idle::new();
        let tun = self.tun.as_raw_fd();
        let sock = self.sock.as_raw_fd();
        let Some(peer) = self.secy.scs().next().map(|sc| sc.sci()) else {
            return;
        };
        let mut helpers = self.helpers.take();
        while self.shared.running() {
            self.take_cmds(peer, helpers.as_mut());
            // With helpers, the socket is waited on only while a batch may go out to them;
            // otherwise only for a helper's wake.
            let room = helpers.as_ref().is_none_or(Helpers::has_room);
            let first = if room { sock } else { self.wake.fd() };
            let Ok([ready, woken]) =
                idle.wait([first, self.wake.fd()], 1000, &self.shared.busy_poll_us)
            else {
                break;
            };
            let readable = room && ready;
            if woken {
                self.wake.drain();
            }
            if let Some(f) = &mut self.flows {
                f.tick();
            }
            if let Some(h) = &mut helpers {
                // Validated batches in the order they were read, then the next batch out.
                while let Some(mut batch) = h.take() {
                    self.deliver_batch(&mut batch, &mut gro, &mut counters);
                    h.recycle(batch);
                }
                gro.flush(tun, &mut counters);
                if readable {
                    h.read_and_send(sock, &mut mmsg);
                }
            } else if readable {
                let n = {
                    let mut slots = slots(&mut arena, self.wire.offset());
                    match mmsg.recv(sock, &mut slots, &mut lens, &mut gro_sizes) {
                        Ok(n) => n,
                        // ECONNREFUSED and the like, reported by ICMP for an earlier send.
                        Err(_) => continue,
                    }
                };
                for (start, end) in frames(&lens[..n], &gro_sizes, self.wire.offset()) {
                    let frame = &mut arena[start..end];
                    let v = validate(
                        &mut self.secy,
                        self.reserve.as_mut(),
                        self.addrs.as_ref(),
                        self.wire.offset(),
                        frame,
                        &mut counters,
                    );
                    self.deliver(frame, v, &mut gro, &mut counters);
                }
                gro.flush(tun, &mut counters);
            }
            if let Some(r) = &mut self.reserve {
                r.tick(&mut self.secy, peer);
            }
            if readable || woken {
                self.shared.rx[self.lane].publish(&counters);
                self.publish_pns(peer);
            }
        }
        self.shared.rx[self.lane].publish(&counters);
        if let Some(r) = &self.reserve {
            // Every lane's worker leaves the SA's next PN (shared): the highest stands.
            self.shared
                .rx_next_pn
                .fetch_max(r.next_pn(&self.secy, peer), Ordering::AcqRel);
        }
        if let Some(f) = &mut self.flows {
            f.stop();
        }
    }

    /// A new SecY from the link (an SA installed or removed): ours, and the helpers' for the
    /// batches sent from now on.
    fn take_cmds(&mut self, peer: Sci, mut helpers: Option<&mut Helpers>) {
        while let Ok(cmd) = self.cmds.try_recv() {
            match cmd {
                RxCmd::SecY { secy, done } => {
                    if let Some(h) = helpers.as_deref_mut() {
                        h.set_secy(&secy);
                    }
                    self.secy = secy;
                    self.publish_pns(peer);
                    let _ = done.send(());
                }
            }
        }
    }

    /// Delivers the frames of a batch a helper validated, in order.
    fn deliver_batch(&mut self, batch: &mut Batch, gro: &mut Gro, counters: &mut Counters) {
        counters.merge(&batch.counters);
        for &(start, end, v) in &batch.verdicts {
            self.deliver(&mut batch.arena[start..end], v, gro, counters);
        }
    }

    fn publish_pns(&self, peer: Sci) {
        let Some(sc) = self.secy.sc(peer) else { return };
        for (an, slot) in An::ALL.iter().zip(&self.shared.rx_lowest_pn) {
            let lowest = sc.sa(*an).map_or(0, |sa| sa.lowest_pn());
            // Only an SA in use moves: an old key's SA past the threshold rings nothing.
            if slot.swap(lowest, Ordering::Relaxed) != lowest {
                self.shared.check_pn_alarm(lowest);
            }
        }
    }

    /// Delivers a frame's user data as validation found it: IP to TUN (joined into TCP
    /// trains where it can be), probes to the liveness logic, MKPDUs to MKA.
    fn deliver(&mut self, frame: &mut [u8], v: Verdict, gro: &mut Gro, counters: &mut Counters) {
        let tun = self.tun.as_raw_fd();
        let (user, in_order) = match v {
            Verdict::Drop => return,
            Verdict::Mkpdu(at) => {
                self.control.deliver(&frame[at..]);
                return;
            }
            Verdict::Valid {
                start,
                end,
                in_order,
            } => (start..end, in_order),
        };
        if user.len() < 2 {
            counters.link.not_ip += 1;
            return;
        }
        let ip = user.start + 2;
        let ethertype = u16::from_be_bytes([frame[user.start], frame[ip - 1]]);
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                if let Some(f) = &mut self.flows {
                    f.account(&frame[ip..user.end]);
                }
                if gro.push(&frame[ip..user.end], tun, counters) {
                    return;
                }
                // Neither TCP data nor UDP: on its own. TUN takes a virtio header before each packet; it
                // goes over octets of the SecTAG that have served.
                let vh = ip - VNET_HDR_LEN;
                VirtioNetHdr::default().emit(&mut frame[vh..ip]);
                write_tun(tun, &frame[vh..user.end], 1, counters);
            }
            // Only an authenticated probe that replay protection passed (InPktsOK, not
            // InPktsDelayed) says anything about the link.
            ETHERTYPE_PROBE if in_order => {
                let body = &frame[ip..user.end];
                self.shared
                    .peer_lanes
                    .store(usize::from(Probe::lanes(body)), Ordering::Relaxed);
                let probe = Probe::parse(body);
                if let (Some(Probe::Request { .. }), Some(seen)) =
                    (probe, self.shared.lane_seen.get(self.lane))
                {
                    seen.store(self.shared.now_ns().max(1), Ordering::Relaxed);
                }
                // The requests on lanes other than 0 only say that the lane works: one
                // reply an interval, on lane 0, measures the RTT.
                if self.lane == 0 || !matches!(probe, Some(Probe::Request { .. })) {
                    self.probe(probe, counters)
                }
            }
            _ => counters.link.not_ip += 1,
        }
    }

    fn probe(&self, probe: Option<Probe>, counters: &mut Counters) {
        match probe {
            Some(Probe::Request { seq, sent_ns }) => {
                // The transmit worker sends the reply, so one thread sends in PN order.
                if self
                    .tx_cmds
                    .send(TxCmd::ProbeReply { seq, sent_ns })
                    .is_ok()
                {
                    self.tx_wake.wake();
                }
            }
            Some(Probe::Reply { sent_ns, .. }) => {
                counters.link.probe_replies_received += 1;
                let rtt = Duration::from_nanos(self.shared.now_ns().saturating_sub(sent_ns));
                if let Ok(mut l) = self.shared.liveness.lock() {
                    l.0.record(rtt);
                    l.1 = Some(Instant::now());
                }
            }
            None => counters.link.not_ip += 1,
        }
    }
}

/// What validation found of a frame, for its delivery.
#[derive(Clone, Copy, Debug)]
pub(super) enum Verdict {
    /// Discarded (counted by the SecY), or not to be delivered.
    Drop,
    /// An MKPDU over UDP, from this offset on.
    Mkpdu(usize),
    /// Validated: the user data (EtherType first) lies at `start..end`; `in_order` for
    /// InPktsOK (not InPktsDelayed).
    Valid {
        start: usize,
        end: usize,
        in_order: bool,
    },
}

/// Validates one frame where it lies. A discard is counted by the SecY; with `reserve` (static
/// keys) a valid frame above the reserved PNs waits for the reservation (a write of the state
/// file) before it is accepted.
pub(super) fn validate(
    secy: &mut RxSecY,
    reserve: Option<&mut RxReserve>,
    addrs: Option<&[u8; ADDRS_LEN]>,
    wire: usize,
    frame: &mut [u8],
    counters: &mut Counters,
) -> Verdict {
    counters.link.underlay_rx_packets += 1;
    counters.link.underlay_rx_bytes += (frame.len() - wire) as u64;
    if let Some(addrs) = addrs {
        // An MKPDU, marked by the EtherType 888E (no SecTAG starts so): to MKA.
        if frame[wire..].starts_with(&super::ETHERTYPE_EAPOL.to_be_bytes()) {
            return Verdict::Mkpdu(wire + 2);
        }
        frame[..ADDRS_LEN].copy_from_slice(addrs);
        frame[ADDRS_LEN..PAYLOAD].copy_from_slice(&ETHERTYPE_MACSEC.to_be_bytes());
    }
    let r = match reserve {
        None => secy.validate(&mut counters.secy_rx, frame),
        Some(res) => secy.validate_reserving(&mut counters.secy_rx, frame, |_, _, pn| {
            Some(res.reserve_for(pn))
        }),
    };
    // Only frames that validated reach TUN or the probes, whatever validateFrames says:
    // with "check" or "disabled" the SecY passes on frames it could not authenticate
    // (unknown SCI, unused SA, bad ICV, C clear), and anyone who can reach the underlay
    // could inject packets into the network behind the link. The SecY has counted them
    // (InPktsInvalid, InPktsUnchecked, ...); the metrics show them as drops.
    match r {
        Ok(r) if matches!(r.accepted, Accepted::Ok { .. } | Accepted::Delayed { .. }) => {
            Verdict::Valid {
                start: r.user.start,
                end: r.user.end,
                in_order: matches!(r.accepted, Accepted::Ok { .. }),
            }
        }
        _ => Verdict::Drop,
    }
}

/// The batch's slots as receive buffers, each from `offset` on (room for the stand-in
/// header over UDP).
fn slots(arena: &mut [u8], offset: usize) -> [&mut [u8]; BATCH] {
    let mut chunks = arena.chunks_exact_mut(SLOT);
    std::array::from_fn(|_| chunks.next().map_or(&mut [][..], |c| &mut c[offset..]))
}

/// Where each frame of a received batch lies in the arena (from the stand-in header over
/// UDP). A UDP GRO message holds datagrams of `size` octets back to back; each is validated
/// where it lies, the stand-in header going into the 14 octets before it: headroom for the
/// first, the spent ICV of the one before for the others.
fn frames<'a>(
    lens: &'a [usize],
    gro_sizes: &'a [usize],
    wire: usize,
) -> impl Iterator<Item = (usize, usize)> + 'a {
    lens.iter().enumerate().flat_map(move |(i, &len)| {
        let size = match gro_sizes[i] {
            0 => len,
            s => s,
        };
        (0..len)
            .step_by(size.max(1))
            .map(move |at| (i * SLOT + at, i * SLOT + wire + at + size.min(len - at)))
    })
}

/// A batch on its way through a helper: the frames as read, then the verdicts.
pub(super) struct Batch {
    arena: Vec<u8>,
    lens: [usize; BATCH],
    gro_sizes: [usize; BATCH],
    n: usize,
    verdicts: Vec<(usize, usize, Verdict)>,
    counters: Counters,
}

enum Job {
    Batch(Box<Batch>),
    SecY(RxSecY),
}

/// Ethernet with several queues: the receive worker reads, helpers validate, the worker
/// delivers. Frames on an Ethernet underlay carry nothing the kernel can spread them by
/// (its flow dissector does not look into 802.1AE: `PACKET_FANOUT_HASH` puts every frame of
/// a link on one socket, and RSS on one queue), so the parallel part is the validation
/// itself: batches go to the helpers in turn and come back in the same turn, which keeps
/// the order they arrived in, whatever order the helpers finish in. The SAs are shared, so
/// every PN is still accepted once; the receive window must cover the batches in flight.
pub(super) struct Helpers {
    jobs: Vec<mpsc::SyncSender<Job>>,
    done: Vec<Receiver<Box<Batch>>>,
    /// Boxed, as they travel through the channels: a move is a pointer's.
    #[allow(clippy::vec_box)]
    free: Vec<Box<Batch>>,
    offset: usize,
    /// Batches sent and taken back: the next to send goes to helper `sent % n`, the next to
    /// take comes from helper `taken % n`.
    sent: usize,
    taken: usize,
}

/// Batches in flight per helper: one validated while the next waits.
const PER_HELPER: usize = 2;

impl Helpers {
    /// Starts `n` helper threads validating with copies of `secy`; each wakes `wake` when a
    /// batch is done. The threads end when the `Helpers` goes.
    pub(super) fn start(
        n: usize,
        secy: &RxSecY,
        addrs: Option<[u8; ADDRS_LEN]>,
        wire: Framing,
        wake: &Arc<Waker>,
        name: &str,
    ) -> std::io::Result<(Helpers, Vec<std::thread::JoinHandle<()>>)> {
        let mut h = Helpers {
            jobs: Vec::new(),
            done: Vec::new(),
            free: Vec::new(),
            offset: wire.offset(),
            sent: 0,
            taken: 0,
        };
        let mut threads = Vec::new();
        for i in 0..n {
            let (jobs, job_rx) = mpsc::sync_channel::<Job>(PER_HELPER + 1);
            let (done_tx, done) = mpsc::sync_channel::<Box<Batch>>(PER_HELPER);
            let (mut secy, wake) = (secy.clone(), wake.clone());
            let offset = wire.offset();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("il-rxv{i}-{name}"))
                    .spawn(move || {
                        while let Ok(job) = job_rx.recv() {
                            let mut b = match job {
                                Job::SecY(s) => {
                                    secy = s;
                                    continue;
                                }
                                Job::Batch(b) => b,
                            };
                            b.verdicts.clear();
                            let Batch {
                                arena,
                                lens,
                                gro_sizes,
                                n,
                                verdicts,
                                counters,
                            } = &mut *b;
                            for (start, end) in frames(&lens[..*n], gro_sizes, offset) {
                                let v = validate(
                                    &mut secy,
                                    None,
                                    addrs.as_ref(),
                                    offset,
                                    &mut arena[start..end],
                                    counters,
                                );
                                verdicts.push((start, end, v));
                            }
                            if done_tx.send(b).is_err() {
                                break;
                            }
                            wake.wake();
                        }
                    })?,
            );
            h.jobs.push(jobs);
            h.done.push(done);
        }
        for _ in 0..n * PER_HELPER {
            h.free.push(Box::new(Batch {
                arena: vec![0u8; BATCH * SLOT],
                lens: [0; BATCH],
                gro_sizes: [0; BATCH],
                n: 0,
                verdicts: Vec::with_capacity(BATCH),
                counters: Counters::default(),
            }));
        }
        Ok((h, threads))
    }

    /// Whether a batch may be read and sent out now.
    fn has_room(&self) -> bool {
        !self.free.is_empty()
    }

    /// The next batch in the order they were read, once its helper is done with it.
    fn take(&mut self) -> Option<Box<Batch>> {
        if self.taken == self.sent {
            return None;
        }
        let b = self.done[self.taken % self.done.len()].try_recv().ok()?;
        self.taken += 1;
        Some(b)
    }

    fn recycle(&mut self, mut batch: Box<Batch>) {
        batch.counters = Counters::default();
        self.free.push(batch);
    }

    /// Reads a batch from `sock` and sends it to the next helper.
    fn read_and_send(&mut self, sock: RawFd, mmsg: &mut MmsgBatch<BATCH>) {
        let Some(mut b) = self.free.pop() else {
            return;
        };
        let n = {
            let Batch {
                arena,
                lens,
                gro_sizes,
                ..
            } = &mut *b;
            let mut slots = slots(arena, self.offset);
            mmsg.recv(sock, &mut slots, lens, gro_sizes)
        };
        match n {
            Ok(n) if n > 0 => {
                b.n = n;
                // Never waits: a helper holds at most PER_HELPER batches (only that many
                // are in flight per helper, sent and taken in turn) and a SecY.
                let i = self.sent % self.jobs.len();
                if self.jobs[i].send(Job::Batch(b)).is_ok() {
                    self.sent += 1;
                }
            }
            _ => self.free.push(b),
        }
    }

    /// Hands every helper a new SecY, for the batches sent after it.
    fn set_secy(&mut self, secy: &RxSecY) {
        for jobs in &self.jobs {
            // Room is kept for it: at most PER_HELPER batches wait in each channel.
            let _ = jobs.send(Job::SecY(secy.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlink_macsec::{
        Backend, CipherSuite, RxConfig, SaKey, TxConfig, TxSecY, TxStats, ValidateFrames, ICV_LEN,
    };
    use std::net::UdpSocket;
    use std::time::Duration;

    #[test]
    fn frames_split_gro_messages_and_keep_single_ones() {
        // Two messages: one of 3 datagrams of 100 octets (the last 50), one plain of 70.
        let lens = [250, 70];
        let gro = [100, 0];
        let f: Vec<_> = frames(&lens, &gro, PAYLOAD).collect();
        assert_eq!(
            f,
            [
                (0, PAYLOAD + 100),
                (100, PAYLOAD + 200),
                (200, PAYLOAD + 250),
                (SLOT, SLOT + PAYLOAD + 70)
            ]
        );
        assert_eq!(frames(&[0], &[0], 0).count(), 0);
    }

    /// The SCI the tests' frames are sent from.
    const SENDER: Sci = Sci::new([2, 0, 0, 0, 0, 1], 1);

    /// A sender and a receiver of [`SENDER`]'s frames under `key` on AN 0, the receiver
    /// with a replay window of `window`. The key is made for the test and has never sent,
    /// so its SAs start at PN 1 (a real key resumes above every PN it used).
    fn secy_pair(suite: CipherSuite, key: &SaKey<'_>, window: u32) -> (TxSecY, RxSecY) {
        let an = An::new(0).unwrap();
        let mut tx = TxSecY::new(suite, Backend::default(), TxConfig::new(SENDER)).unwrap();
        tx.install_sa(an, key, 1).unwrap();
        tx.set_encoding_sa(an).unwrap();
        let mut rx = RxSecY::new(
            suite,
            Backend::default(),
            RxConfig {
                validate_frames: ValidateFrames::Strict,
                replay_protect: true,
                replay_window: window,
            },
        );
        rx.add_sc(SENDER).unwrap();
        rx.install_sa(SENDER, an, key, 1).unwrap();
        (tx, rx)
    }

    /// The next frame `tx` protects: an IPv4 packet of 60 octets carrying `tag` first.
    fn protect(tx: &mut TxSecY, tag: u32) -> Vec<u8> {
        let hdr = tx.header_len();
        let mut f = vec![0u8; hdr + 2 + 60 + ICV_LEN];
        f[..ADDRS_LEN].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[hdr..hdr + 2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[hdr + 2..hdr + 6].copy_from_slice(&tag.to_be_bytes());
        let p = tx.protect(&mut TxStats::default(), &mut f, 2 + 60).unwrap();
        f.truncate(p.len);
        f
    }

    /// Ten batches of frames, validated by three helpers, come back in the order they were
    /// read, every frame valid and each once: whichever helper finishes first, delivery
    /// keeps the order of the wire.
    #[test]
    fn helpers_hand_back_batches_in_the_order_they_were_read() {
        let key = SaKey {
            sak: &[7; 16],
            xpn: Some((1, [9; 12])),
        };
        let (mut tx, rx) = secy_pair(CipherSuite::GcmAesXpn128, &key, 1024);

        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let source = UdpSocket::bind("127.0.0.1:0").unwrap();
        source.connect(sink.local_addr().unwrap()).unwrap();
        const FRAMES: u32 = 10 * BATCH as u32;
        let wire: Vec<Vec<u8>> = (0..FRAMES).map(|i| protect(&mut tx, i)).collect();
        // A batch's worth at a time, as the socket's buffer holds.
        let mut to_send = wire.chunks(BATCH);

        let wake = Arc::new(Waker::new().unwrap());
        let (mut helpers, threads) =
            Helpers::start(3, &rx, None, Framing::Ethernet, &wake, "test").unwrap();
        let mut mmsg = MmsgBatch::new();
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen.len() < FRAMES as usize && Instant::now() < deadline {
            for f in to_send.next().unwrap_or_default() {
                source.send(f).unwrap();
            }
            helpers.read_and_send(sink.as_raw_fd(), &mut mmsg);
            while let Some(batch) = helpers.take() {
                for &(start, _, v) in &batch.verdicts {
                    let Verdict::Valid { start: s, .. } = v else {
                        panic!("a frame did not validate: {v:?}");
                    };
                    let at = start + s + 2;
                    seen.push(u32::from_be_bytes(
                        batch.arena[at..at + 4].try_into().unwrap(),
                    ));
                }
                helpers.recycle(batch);
            }
            std::thread::yield_now();
        }
        assert_eq!(seen, (0..FRAMES).collect::<Vec<_>>());
        // The helpers end with the `Helpers`.
        drop(helpers);
        for t in threads {
            t.join().unwrap();
        }
    }

    /// A static key's receive side on two lanes, with its persister running: the frames'
    /// sender, the SecY, the reservation, the state file and the persister's thread.
    struct StaticRx {
        tx: TxSecY,
        rx: RxSecY,
        sci: Sci,
        an: An,
        reserve: Arc<crate::pnstate::Reserve>,
        dir: std::path::PathBuf,
        path: std::path::PathBuf,
        rx_key: crate::pnstate::KeyId,
        persister: std::thread::JoinHandle<()>,
    }

    impl StaticRx {
        fn new(name: &str) -> StaticRx {
            use crate::pnstate::{key_id, Direction, Persister, PnFile, Reserve};
            let suite = CipherSuite::GcmAes128;
            let sak = [5u8; 16];
            let key = SaKey {
                sak: &sak,
                xpn: None,
            };
            let (tx, mut rx) = secy_pair(suite, &key, 1 << 16);
            let (sci, an) = (SENDER, An::new(0).unwrap());
            rx.set_pn_limit(sci, an, 0).unwrap();
            let dir = std::env::temp_dir().join(format!("il-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("l.pn");
            let ids = crate::link::SaKeys {
                sak: interlink_macsec::Sak::new(sak.to_vec()),
                xpn: None,
            };
            let rx_key = key_id(suite, &ids);
            let mut file = PnFile::load(&path).unwrap();
            file.set(Direction::Rx, &rx_key, 1);
            file.save().unwrap();
            let reserve = Arc::new(Reserve::new(0, u64::MAX, 2));
            let persister = Persister {
                file,
                tx_key: [1; 32],
                rx_key,
                tx: tx.clone(),
                tx_an: an,
                block: 1 << 20,
                reserve: reserve.clone(),
                rx: rx.clone(),
                rx_sci: sci,
                rx_an: an,
            };
            let persister = std::thread::spawn(move || persister.run());
            StaticRx {
                tx,
                rx,
                sci,
                an,
                reserve,
                dir,
                path,
                rx_key,
                persister,
            }
        }

        /// The next `n` frames the sender protects.
        fn frames(&mut self, n: usize) -> Vec<Vec<u8>> {
            (0..n as u32).map(|i| protect(&mut self.tx, i)).collect()
        }

        /// Where the state file says the receive SA resumes.
        fn resume(&self) -> u64 {
            crate::pnstate::PnFile::load(&self.path)
                .unwrap()
                .resume(crate::pnstate::Direction::Rx, &self.rx_key)
        }

        /// Stops the persister with `next` the exact next PN; the file's resume then.
        fn stop(self, next: u64) -> u64 {
            self.reserve.stop(next);
            let (path, rx_key, dir) = (self.path.clone(), self.rx_key, self.dir.clone());
            self.persister.join().unwrap();
            let resume = crate::pnstate::PnFile::load(&path)
                .unwrap()
                .resume(crate::pnstate::Direction::Rx, &rx_key);
            let _ = std::fs::remove_dir_all(&dir);
            resume
        }
    }

    /// Validates `frames` on one lane; the highest PN accepted.
    fn accept(secy: &mut RxSecY, res: &mut RxReserve, frames: &mut [Vec<u8>]) -> u64 {
        let mut counters = Counters::default();
        let mut highest = 0;
        for f in frames {
            let v = validate(secy, Some(&mut *res), None, 0, f, &mut counters);
            assert!(matches!(v, Verdict::Valid { .. }), "{v:?}");
            highest = highest.max(u64::from(u32::from_be_bytes(f[16..20].try_into().unwrap())));
        }
        highest
    }

    /// The race a lower limit has with a second lane, forced: lane 0 asks for a lower limit
    /// (from the highest PN it saw), and lane 1, whose SA limit is still the higher one,
    /// accepts PNs above it before the lanes tick again. The file must not go below them.
    #[test]
    fn a_lower_limit_waits_for_every_lane_and_covers_what_they_accepted() {
        let mut s = StaticRx::new("lower");
        let mut lane1 = RxReserve::new(s.reserve.clone(), s.an, 1);
        let mut rx1 = s.rx.clone();
        // Lane 1 accepts PNs 1 to 100: the limit rises a margin past 100, is written, and
        // lane 1's SA takes it.
        let mut first = s.frames(100);
        assert_eq!(accept(&mut rx1, &mut lane1, &mut first), 100);
        lane1.tick(&mut rx1, s.sci);
        std::thread::sleep(Duration::from_millis(50));
        lane1.tick(&mut rx1, s.sci);
        let high = s.resume();
        assert!(high > 104, "{high}");
        // Lane 0 asks for 60, as a worker that last read PN 56 would; the persister has
        // had the time to act on it.
        s.reserve.request_rx(60);
        std::thread::sleep(Duration::from_millis(50));
        // Lane 1, not yet ticked, accepts 101 to 103 under its limit.
        let mut more = s.frames(3);
        assert_eq!(accept(&mut rx1, &mut lane1, &mut more), 103);
        std::thread::sleep(Duration::from_millis(50));
        // Nothing lower went to the file before every lane ticked twice...
        assert_eq!(
            s.resume(),
            high,
            "the file went below what lane 1 may accept"
        );
        for _ in 0..2 {
            s.reserve.ticked(0);
            s.reserve.ticked(1);
        }
        std::thread::sleep(Duration::from_millis(50));
        // ...and then no lower than what was accepted: 104, not 61.
        assert_eq!(s.resume(), 104);
        assert_eq!(s.stop(104), 104);
    }

    /// Two receive workers of one static key, each on a lane of its own, and the persister;
    /// the traffic comes in bursts and pauses, so the reservation rises and is lowered again
    /// and again. At every moment the state file says to resume above every PN either
    /// worker has accepted: a crash at any time would accept none twice.
    #[test]
    fn two_lanes_never_leave_an_accepted_pn_above_the_file() {
        use crate::pnstate::{Direction, PnFile};
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        let mut s = StaticRx::new("lanes-pn");
        // 12 bursts of 64 batches, each burst's batches dealt to the two lanes in turn.
        let mut lanes: [Vec<Vec<Vec<u8>>>; 2] = [Vec::new(), Vec::new()];
        for b in 0..12 * 64 {
            lanes[b % 2].push(s.frames(BATCH));
        }
        let accepted = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let checker = {
            let (accepted, done) = (accepted.clone(), done.clone());
            let (path, rx_key) = (s.path.clone(), s.rx_key);
            std::thread::spawn(move || {
                let (mut checks, mut lowered, mut last) = (0, 0, 0);
                while !done.load(Ordering::Acquire) {
                    let a = accepted.load(Ordering::SeqCst);
                    let resume = PnFile::load(&path).unwrap().resume(Direction::Rx, &rx_key);
                    assert!(
                        resume > a,
                        "the file resumes at {resume}, PN {a} was accepted"
                    );
                    if resume < last {
                        lowered += 1;
                    }
                    last = resume;
                    checks += 1;
                }
                (checks, lowered)
            })
        };
        let pause = Arc::new(std::sync::Barrier::new(2));
        let workers: Vec<_> = lanes
            .into_iter()
            .enumerate()
            .map(|(lane, batches)| {
                let (mut secy, accepted, pause) = (s.rx.clone(), accepted.clone(), pause.clone());
                let mut res = RxReserve::new(s.reserve.clone(), s.an, lane);
                let sci = s.sci;
                std::thread::spawn(move || {
                    let mut counters = Counters::default();
                    let mut valid = 0;
                    for (i, mut batch) in batches.into_iter().enumerate() {
                        for f in &mut batch {
                            let v = validate(&mut secy, Some(&mut res), None, 0, f, &mut counters);
                            if matches!(v, Verdict::Valid { .. }) {
                                let pn = u32::from_be_bytes(f[16..20].try_into().unwrap());
                                accepted.fetch_max(u64::from(pn), Ordering::SeqCst);
                                valid += 1;
                            }
                        }
                        res.tick(&mut secy, sci);
                        // A pause after each burst (32 batches a lane), both lanes idle
                        // and ticking as idle workers do: the rate drops, and the limit is
                        // lowered (the race of a lowering with a busy lane is forced in
                        // the test above).
                        if i % 32 == 31 {
                            pause.wait();
                            for _ in 0..8 {
                                std::thread::sleep(Duration::from_millis(40));
                                res.tick(&mut secy, sci);
                            }
                            pause.wait();
                        }
                    }
                    valid
                })
            })
            .collect();
        let valid: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        done.store(true, Ordering::Release);
        let (checks, lowered) = checker.join().unwrap();
        // Every frame got through, the limit went down between the bursts, and the file
        // was read all along.
        assert_eq!(valid, 12 * 64 * BATCH);
        eprintln!("{checks} checks of the file, the limit lowered {lowered} times");
        assert!(lowered >= 5, "the limit was lowered {lowered} times");
        assert!(checks > 100, "{checks} checks");
        // At the stop, the exact next PN.
        let next = accepted.load(Ordering::SeqCst) + 1;
        assert_eq!(s.stop(next), next);
    }
}

//! The receive worker: the underlay to TUN. Takes a batch of datagrams or frames (a UDP GRO
//! message holds many), validates each where it lies, joins consecutive segments of a TCP or
//! UDP flow into one super-packet and writes the user data to TUN; probes go to the liveness
//! logic.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
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
}

/// How far the static receive SA may accept, kept just ahead of the traffic: a margin of
/// about 200 ms at the rate seen (at least [`MIN_RX_MARGIN`]), so that the state file is
/// written a few times a second at most and a frame rarely waits for a write; when the
/// traffic slows, the limit comes back down to the margin, so that after a crash the peer's
/// frames are refused for no longer than about that margin.
pub(super) struct RxReserve {
    reserve: Arc<Reserve>,
    an: An,
    margin: u64,
    /// The limit last asked for. The SA accepts up to the lower of it and what is durable:
    /// asking for a lower limit binds at once, a higher one once it is written.
    requested: u64,
    /// The next PN and the time at the start of the rate's window.
    window: (u64, Instant),
}

/// The least the receive limit runs ahead: an idle link's probes write the state every few
/// seconds, not at each frame.
const MIN_RX_MARGIN: u64 = 4;

impl RxReserve {
    pub(super) fn new(reserve: Arc<Reserve>, an: An) -> RxReserve {
        let requested = reserve.rx_durable();
        RxReserve {
            reserve,
            an,
            margin: MIN_RX_MARGIN,
            requested,
            window: (0, Instant::now()),
        }
    }

    /// What the SA may accept now.
    fn allowed(&self) -> u64 {
        self.requested.min(self.reserve.rx_durable())
    }

    /// For a valid frame above the limit: asks for a limit above it and waits for it to be
    /// durable (a write of the state file).
    fn reserve_for(&mut self, pn: u64) -> u64 {
        self.requested = pn.saturating_add(self.margin);
        self.reserve
            .reserve_rx(self.requested, pn, Duration::from_secs(1));
        self.allowed()
    }

    /// After each turn of the worker, busy or not: measures the rate, applies what was
    /// written, and asks for the next limit ahead of the traffic, or a lower one once the
    /// traffic has slowed. Only the SA with a limit is the static key's: one installed over
    /// it since (a rotation) is not reserved here.
    fn tick(&mut self, secy: &mut RxSecY, peer: Sci) {
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
        if (near && target > self.requested) || far {
            self.requested = target;
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
        while self.shared.running() {
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    RxCmd::SecY { secy, done } => {
                        self.secy = secy;
                        self.publish_pns(peer);
                        let _ = done.send(());
                    }
                }
            }
            let Ok([readable, woken]) =
                idle.wait([sock, self.wake.fd()], 1000, &self.shared.busy_poll_us)
            else {
                break;
            };
            if woken {
                self.wake.drain();
            }
            if let Some(f) = &mut self.flows {
                f.tick();
            }
            if !readable {
                if let Some(r) = &mut self.reserve {
                    r.tick(&mut self.secy, peer);
                }
                continue;
            }
            let n = {
                let mut chunks = arena.chunks_exact_mut(SLOT);
                let mut slots: [&mut [u8]; BATCH] = std::array::from_fn(|_| {
                    chunks
                        .next()
                        .map_or(&mut [][..], |c| &mut c[self.wire.offset()..])
                });
                match mmsg.recv(sock, &mut slots, &mut lens, &mut gro_sizes) {
                    Ok(n) => n,
                    // ECONNREFUSED and the like, reported by ICMP for an earlier send.
                    Err(_) => continue,
                }
            };
            for (i, slot) in arena.chunks_exact_mut(SLOT).take(n).enumerate() {
                // A UDP GRO message holds datagrams of `size` octets back to back. Each is
                // validated where it lies; over UDP the stand-in header goes into the 14
                // octets before it: headroom for the first, the spent ICV of the one before
                // for the others.
                let len = lens[i];
                let size = if gro_sizes[i] == 0 { len } else { gro_sizes[i] };
                let mut at = 0;
                while at < len {
                    let dlen = size.min(len - at);
                    let frame = &mut slot[at..self.wire.offset() + at + dlen];
                    self.receive(frame, &mut gro, &mut counters);
                    at += dlen.max(1);
                }
            }
            gro.flush(tun, &mut counters);
            if let Some(r) = &mut self.reserve {
                r.tick(&mut self.secy, peer);
            }
            self.shared.rx[self.lane].publish(&counters);
            self.publish_pns(peer);
        }
        self.shared.rx[self.lane].publish(&counters);
        if let Some(r) = &self.reserve {
            self.shared
                .rx_next_pn
                .store(r.next_pn(&self.secy, peer), Ordering::Release);
        }
        if let Some(f) = &mut self.flows {
            f.stop();
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

    /// Validates one frame and delivers its user data: IP to TUN (joined into TCP trains
    /// where it can be), probes to the liveness logic.
    fn receive(&mut self, frame: &mut [u8], gro: &mut Gro, counters: &mut Counters) {
        let tun = self.tun.as_raw_fd();
        counters.link.underlay_rx_packets += 1;
        let wire = self.wire.offset();
        counters.link.underlay_rx_bytes += (frame.len() - wire) as u64;
        if let Some(addrs) = &self.addrs {
            // An MKPDU, marked by the EtherType 888E (no SecTAG starts so): to MKA.
            if frame[wire..].starts_with(&super::ETHERTYPE_EAPOL.to_be_bytes()) {
                self.control.deliver(&frame[wire + 2..]);
                return;
            }
            frame[..ADDRS_LEN].copy_from_slice(addrs);
            frame[ADDRS_LEN..PAYLOAD].copy_from_slice(&ETHERTYPE_MACSEC.to_be_bytes());
        }
        // A discard is counted by the SecY. A valid frame above the static key's reserved
        // PNs waits for the reservation (a write of the state file) before it is accepted.
        let r = match &mut self.reserve {
            None => self.secy.validate(&mut counters.secy_rx, frame),
            Some(res) => self
                .secy
                .validate_reserving(&mut counters.secy_rx, frame, |_, _, pn| {
                    Some(res.reserve_for(pn))
                }),
        };
        let Ok(r) = r else {
            return;
        };
        // Only frames that validated reach TUN or the probes, whatever validateFrames says:
        // with "check" or "disabled" the SecY passes on frames it could not authenticate
        // (unknown SCI, unused SA, bad ICV, C clear), and anyone who can reach the underlay
        // could inject packets into the network behind the link. The SecY has counted them
        // (InPktsInvalid, InPktsUnchecked, ...); the metrics show them as drops.
        if !matches!(r.accepted, Accepted::Ok { .. } | Accepted::Delayed { .. }) {
            return;
        }
        if r.user.len() < 2 {
            counters.link.not_ip += 1;
            return;
        }
        let ip = r.user.start + 2;
        let ethertype = u16::from_be_bytes([frame[r.user.start], frame[ip - 1]]);
        match ethertype {
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => {
                if let Some(f) = &mut self.flows {
                    f.account(&frame[ip..r.user.end]);
                }
                if gro.push(&frame[ip..r.user.end], tun, counters) {
                    return;
                }
                // Neither TCP data nor UDP: on its own. TUN takes a virtio header before each packet; it
                // goes over octets of the SecTAG that have served.
                let vh = ip - VNET_HDR_LEN;
                VirtioNetHdr::default().emit(&mut frame[vh..ip]);
                write_tun(tun, &frame[vh..r.user.end], 1, counters);
            }
            // Only an authenticated, in-order probe says anything about the link.
            ETHERTYPE_PROBE if matches!(r.accepted, Accepted::Ok { .. }) => {
                let body = &frame[ip..r.user.end];
                self.shared
                    .peer_lanes
                    .store(usize::from(Probe::lanes(body)), Ordering::Relaxed);
                self.probe(Probe::parse(body), counters)
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

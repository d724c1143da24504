//! The transmit worker: TUN to the underlay. Reads a batch from TUN, protects each packet in
//! place and sends the batch; TSO super-packets are split into segments that go out as one
//! UDP GSO send per chunk. Packets leave in the order they were protected, so PNs rise on the
//! wire.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlink_macsec::{TxSecY, ADDRS_LEN, ICV_LEN};

use super::idle::Idle;
use super::{Framing, Shared, TxCmd, Waker, BATCH, ETHERTYPE_IPV4, ETHERTYPE_IPV6, SLOT};
use crate::counters::Counters;
use crate::offload::{
    complete_checksum, GsoShape, VirtioNetHdr, F_NEEDS_CSUM, GSO_ECN, GSO_NONE, VNET_HDR_LEN,
};
use crate::probe::{Probe, ETHERTYPE_PROBE, PROBE_LEN};
use crate::sys::{self, MmsgBatch};

fn ip_ethertype(packet: &[u8]) -> Option<u16> {
    match packet.first().map(|b| b >> 4) {
        Some(4) => Some(ETHERTYPE_IPV4),
        Some(6) => Some(ETHERTYPE_IPV6),
        _ => None,
    }
}

pub(super) struct TxWorker {
    /// Which TUN queue this worker reads, and whose counters it publishes.
    pub(super) queue: usize,
    pub(super) tun: Arc<OwnedFd>,
    /// The underlay's lanes (one but over UDP with MKA and several queues).
    pub(super) socks: Vec<Arc<OwnedFd>>,
    pub(super) secy: TxSecY,
    pub(super) cmds: Receiver<TxCmd>,
    pub(super) wake: Arc<Waker>,
    pub(super) shared: Arc<Shared>,
    pub(super) addrs: [u8; ADDRS_LEN],
    pub(super) wire: Framing,
    pub(super) mtu: u32,
    /// Set on the one worker that sends the liveness probes (and the replies).
    pub(super) probe_interval: Option<Duration>,
    /// Egress shaping, when the link has a bandwidth.
    pub(super) shaper: Option<Shaper>,
    /// Flow logs: the IP packets this worker protects.
    pub(super) flows: Option<crate::flows::Flows>,
}

/// Egress shaping: a token bucket filled at the link's rate (this worker's share of it) and
/// holding a few milliseconds' worth. A send that overdraws it waits, in this worker, until
/// the bucket is back at zero: packets wait in the TUN queue meanwhile, and only when that is
/// full does the kernel drop them (the link's `shaped` drops).
pub(super) struct Shaper {
    /// Octets a second.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Shaper {
    pub(super) fn new(bits_per_second: u64) -> Shaper {
        let rate = bits_per_second as f64 / 8.0;
        // 5 ms at the rate, and at least one TSO super-packet.
        let burst = (rate * 0.005).max(65536.0);
        Shaper {
            rate,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    /// Takes `octets` from the bucket; how long to wait before they may go.
    fn take(&mut self, octets: usize, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst) - octets as f64;
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.rate))
    }
}

impl TxWorker {
    pub(super) fn run(mut self) {
        let mut arena = vec![0u8; BATCH * SLOT];
        let mut lens = [0usize; BATCH];
        let mut mmsg = MmsgBatch::<BATCH>::new();
        let mut segs = Segments::new(self.secy.header_len() + 2 + self.mtu as usize + ICV_LEN);
        let mut counters = Counters::default();
        let mut control = vec![0u8; 128];
        let mut probes = Vec::with_capacity(BATCH);
        let mut next_probe = Instant::now();
        let mut seq = 0u32;
        let mut idle = Idle::new();
        let tun = self.tun.as_raw_fd();
        while self.shared.running() {
            // Control messages and probes: between batches, never per packet.
            while let Ok(cmd) = self.cmds.try_recv() {
                match cmd {
                    TxCmd::SecY(secy) => self.secy = secy,
                    TxCmd::ProbeReply { seq, sent_ns } => {
                        probes.push(Probe::Reply { seq, sent_ns })
                    }
                }
            }
            // Workers that send no probes wake at least once a second for the stop flag.
            let interval = self.probe_interval.unwrap_or(Duration::from_secs(1));
            if Instant::now() >= next_probe {
                if self.probe_interval.is_some() {
                    seq = seq.wrapping_add(1);
                    probes.push(Probe::Request {
                        seq,
                        sent_ns: self.shared.now_ns(),
                    });
                }
                next_probe = Instant::now() + interval;
            }
            for p in probes.drain(..) {
                if self.send_probe(&mut control, p, 0, &mut counters) {
                    match p {
                        Probe::Request { .. } => counters.link.probes_sent += 1,
                        Probe::Reply { .. } => counters.link.probe_replies_sent += 1,
                    }
                }
                // A request goes on every lane too: the peer uses a lane only once our
                // probes come through it (a firewall may pass the first port alone, or the
                // peer have fewer lanes). What fails there is not counted: a lane the peer
                // does not take is not a link that drops.
                if matches!(p, Probe::Request { .. }) {
                    let mut quiet = Counters::default();
                    for lane in 1..self.socks.len() {
                        self.send_probe(&mut control, p, lane, &mut quiet);
                    }
                    counters.secy_tx.merge(&quiet.secy_tx);
                }
            }

            let timeout = next_probe
                .saturating_duration_since(Instant::now())
                .as_millis()
                .clamp(1, 1000) as i32;
            let Ok([readable, woken]) =
                idle.wait([tun, self.wake.fd()], timeout, &self.shared.busy_poll_us)
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
                self.shared.tx[self.queue].publish(&counters);
                continue;
            }

            let hdr = self.secy.header_len();
            // Each read lands with its virtio header just before the packet, so that the
            // packet starts where the user data goes (after the EtherType).
            let at = hdr + 2 - VNET_HDR_LEN;
            let mut n = 0;
            for slot in arena.chunks_exact_mut(SLOT) {
                match sys::read_nonblocking(tun, &mut slot[at..SLOT - ICV_LEN]) {
                    Ok(Some(len)) if len >= VNET_HDR_LEN => {
                        lens[n] = len - VNET_HDR_LEN;
                        n += 1;
                    }
                    Ok(Some(_)) => counters.link.not_ip += 1,
                    Ok(None) => break,
                    // EBADFD: the interface was deleted under us. Polling would report the
                    // error again at once, for ever: the workers stop instead.
                    Err(e) if e.raw_os_error() == Some(libc::EBADFD) => {
                        self.shared.tun_gone.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(_) => break,
                }
            }
            // Packets are protected in order and sent in order, so that PNs rise on the wire:
            // before the segments of a TSO packet go out, the packets protected before it do.
            let mut pending = 0;
            for i in 0..n {
                let slot = &mut arena[i * SLOT..(i + 1) * SLOT];
                let len = lens[i];
                lens[i] = 0;
                counters.link.tun_rx_packets += 1;
                counters.link.tun_rx_bytes += len as u64;
                let vh = VirtioNetHdr::parse(&slot[at..hdr + 2]).unwrap_or_default();
                let pkt = &mut slot[hdr + 2..hdr + 2 + len];
                if vh.gso_type & !GSO_ECN != GSO_NONE {
                    let (packets, m) =
                        wire_packets::<BATCH>(&arena, SLOT, &lens, pending, i, self.wire);
                    self.send(&mut mmsg, &packets[..m], &mut counters);
                    pending = i + 1;
                    let pkt = &arena[i * SLOT + hdr + 2..i * SLOT + hdr + 2 + len];
                    self.send_segments(pkt, &vh, &mut segs, &mut counters);
                    continue;
                }
                if vh.flags & F_NEEDS_CSUM != 0
                    && complete_checksum(
                        pkt,
                        usize::from(vh.csum_start),
                        usize::from(vh.csum_offset),
                    )
                    .is_err()
                {
                    counters.link.not_ip += 1;
                    continue;
                }
                lens[i] = self.protect(slot, len, &mut counters);
            }
            let (packets, m) = wire_packets::<BATCH>(&arena, SLOT, &lens, pending, n, self.wire);
            self.send(&mut mmsg, &packets[..m], &mut counters);
            // Static keys: the persister reserves the next block of PNs before this one runs
            // out.
            if let Some(sa) = self.secy.encoding_sa() {
                let next = sa.next_pn().unwrap_or(u64::MAX);
                if let Some(r) = &self.shared.reserve {
                    r.check_tx(next);
                }
                self.shared.check_pn_alarm(next);
            }
            self.shared.tx[self.queue].publish(&counters);
        }
        self.shared.tx[self.queue].publish(&counters);
        if let Some(f) = &mut self.flows {
            f.stop();
        }
    }

    /// Frames the IP packet at `hdr + 2` of `slot` and protects it; the frame length, or 0 if
    /// the packet is not IP or the SecY refused it (and counted why).
    fn protect(&mut self, slot: &mut [u8], len: usize, counters: &mut Counters) -> usize {
        let hdr = self.secy.header_len();
        let Some(ethertype) = ip_ethertype(&slot[hdr + 2..hdr + 2 + len]) else {
            counters.link.not_ip += 1;
            return 0;
        };
        if let Some(f) = &mut self.flows {
            f.account(&slot[hdr + 2..hdr + 2 + len]);
        }
        slot[..ADDRS_LEN].copy_from_slice(&self.addrs);
        slot[hdr..hdr + 2].copy_from_slice(&ethertype.to_be_bytes());
        match self.secy.protect(&mut counters.secy_tx, slot, len + 2) {
            Ok(p) => p.len,
            Err(_) => 0,
        }
    }

    /// Splits a TSO or USO packet into segments, protects and sends them, a batch at a time.
    fn send_segments(
        &mut self,
        pkt: &[u8],
        vh: &VirtioNetHdr,
        segs: &mut Segments,
        counters: &mut Counters,
    ) {
        let Ok(shape) = GsoShape::of(pkt, vh.gso_type) else {
            counters.link.not_ip += 1;
            return;
        };
        let hdr = self.secy.header_len();
        let mss = usize::from(vh.gso_size);
        let count = shape.segments(mss);
        // Over UDP the segments of a chunk leave as one GSO send, whose payload the kernel
        // limits to a UDP datagram's (64 KiB); Ethernet frames go out one by one.
        let udp = self.wire == Framing::Udp;
        let datagram = hdr - self.wire.offset() + 2 + shape.hdr_len() + mss + ICV_LEN;
        let per_send = if udp {
            (MAX_GSO_PAYLOAD / datagram).clamp(1, SEG_BATCH)
        } else {
            SEG_BATCH
        };
        let mut k = 0;
        while k < count {
            let chunk = (count - k).min(per_send);
            for j in 0..chunk {
                let slot = segs.slot(j);
                let end = slot.len() - ICV_LEN;
                segs.lens[j] = match shape.segment(pkt, mss, k + j, &mut slot[hdr + 2..end]) {
                    Ok(len) => self.protect(slot, len, counters),
                    Err(_) => {
                        counters.link.not_ip += 1;
                        0
                    }
                };
            }
            let (packets, m) = wire_packets::<SEG_BATCH>(
                &segs.arena,
                segs.slot_len,
                &segs.lens,
                0,
                chunk,
                self.wire,
            );
            self.send(&mut segs.mmsg, &packets[..m], counters);
            k += chunk;
        }
    }

    /// Sends protected frames in order. Over UDP, each run of equal-sized datagrams (the last
    /// may be shorter) goes out as one UDP GSO send, which the kernel carries as one packet
    /// through its stack and often all the way to the peer's UDP GRO socket: small packets of
    /// one size, the common case of a busy flow, cost one system call a batch, not one each.
    fn send<const N: usize>(
        &mut self,
        mmsg: &mut MmsgBatch<N>,
        packets: &[&[u8]],
        counters: &mut Counters,
    ) {
        if let Some(s) = self.shaper.as_mut() {
            let octets = packets.iter().map(|p| p.len()).sum();
            if let Some(wait) = s.take(octets, Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let sock = self.lane();
        if self.wire == Framing::Ethernet {
            send_all(mmsg, sock, packets, counters);
            return;
        }
        let mut start = 0;
        while start < packets.len() {
            let end = start + gso_run(&packets[start..]);
            let run = &packets[start..end];
            if run.len() > 1 && mmsg.send_gso(sock, run).is_ok() {
                counters.link.underlay_tx_packets += run.len() as u64;
                counters.link.underlay_tx_bytes += run.iter().map(|p| p.len() as u64).sum::<u64>();
            } else {
                send_all(mmsg, sock, run, counters);
            }
            start = end;
        }
    }

    /// The socket of this worker's lane: queue q on lane q mod the lanes usable (ours, as
    /// far as the peer says in its probes that ours come through; one until it has). A flow
    /// keeps its queue (the kernel picks it by flow hash) and so its lane: its packets stay
    /// in order.
    fn lane(&self) -> std::os::fd::RawFd {
        let usable = self
            .socks
            .len()
            .min(self.shared.peer_lanes.load(Ordering::Relaxed))
            .max(1);
        self.socks[self.queue % usable].as_raw_fd()
    }

    /// Protects and sends one probe on `lane`, saying which of the peer's lanes work; false
    /// if it could not go out.
    fn send_probe(
        &self,
        buf: &mut [u8],
        probe: Probe,
        lane: usize,
        counters: &mut Counters,
    ) -> bool {
        let hdr = self.secy.header_len();
        let user_len = 2 + PROBE_LEN;
        if buf.len() < hdr + user_len + ICV_LEN {
            return false;
        }
        buf[..ADDRS_LEN].copy_from_slice(&self.addrs);
        buf[hdr..hdr + 2].copy_from_slice(&ETHERTYPE_PROBE.to_be_bytes());
        probe.emit(&mut buf[hdr + 2..hdr + user_len]);
        Probe::set_lanes(
            &mut buf[hdr + 2..hdr + user_len],
            self.shared.working_lanes(),
        );
        let Ok(p) = self.secy.protect(&mut counters.secy_tx, buf, user_len) else {
            return false;
        };
        let mut mmsg = MmsgBatch::<1>::new();
        let before = counters.link.underlay_tx_packets;
        send_all(
            &mut mmsg,
            self.socks[lane].as_raw_fd(),
            &[&buf[self.wire.offset()..p.len]],
            counters,
        );
        counters.link.underlay_tx_packets > before
    }
}

/// How many datagrams from the start of `packets` one UDP GSO send can carry: all of the
/// first one's size, then at most one shorter, within the kernel's limits (64 segments, one
/// UDP datagram's payload in all). At least 1 when `packets` is not empty.
fn gso_run(packets: &[&[u8]]) -> usize {
    let Some(first) = packets.first() else {
        return 0;
    };
    let size = first.len();
    let mut n = 0;
    let mut total = 0;
    for p in packets.iter().take(SEG_BATCH) {
        if p.len() > size || total + p.len() > MAX_GSO_PAYLOAD {
            break;
        }
        total += p.len();
        n += 1;
        if p.len() < size {
            break;
        }
    }
    n.max(1)
}

/// Segments of one TSO packet protected per send (the kernel's UDP GSO limit is 64).
const SEG_BATCH: usize = 64;
/// What one UDP GSO send may carry: the largest UDP payload, with room to spare.
const MAX_GSO_PAYLOAD: usize = 65_000;

/// Buffers for the segments of a TSO packet, allocated once per worker.
struct Segments {
    arena: Vec<u8>,
    slot_len: usize,
    lens: [usize; SEG_BATCH],
    mmsg: MmsgBatch<SEG_BATCH>,
}

impl Segments {
    fn new(slot_len: usize) -> Segments {
        Segments {
            arena: vec![0; slot_len * SEG_BATCH],
            slot_len,
            lens: [0; SEG_BATCH],
            mmsg: MmsgBatch::new(),
        }
    }

    fn slot(&mut self, j: usize) -> &mut [u8] {
        &mut self.arena[j * self.slot_len..(j + 1) * self.slot_len]
    }
}

/// The protected frames of slots `from..to` (at most `N`) of an arena of `slot`-sized slots,
/// as they go on the wire, and how many there are.
fn wire_packets<'a, const N: usize>(
    arena: &'a [u8],
    slot: usize,
    lens: &[usize],
    from: usize,
    to: usize,
    wire: Framing,
) -> ([&'a [u8]; N], usize) {
    let wire = wire.offset();
    let mut packets: [&[u8]; N] = [&[]; N];
    let mut m = 0;
    for i in from..to.min(from + N) {
        if lens[i] > 0 {
            packets[m] = &arena[i * slot + wire..i * slot + lens[i]];
            m += 1;
        }
    }
    (packets, m)
}

/// Sends every packet, skipping one that the kernel refuses and going on with the rest.
fn send_all<const N: usize>(
    mmsg: &mut MmsgBatch<N>,
    sock: RawFd,
    packets: &[&[u8]],
    counters: &mut Counters,
) {
    let mut start = 0;
    while start < packets.len() {
        let (sent, err) = mmsg.send(sock, &packets[start..]);
        for p in &packets[start..start + sent] {
            counters.link.underlay_tx_packets += 1;
            counters.link.underlay_tx_bytes += p.len() as u64;
        }
        start += sent;
        if err.is_some() {
            counters.link.underlay_tx_errors += 1;
            start += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(sizes: &[usize]) -> Vec<usize> {
        let bufs: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0; n]).collect();
        let packets: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        let mut out = Vec::new();
        let mut at = 0;
        while at < packets.len() {
            let n = gso_run(&packets[at..]);
            out.push(n);
            at += n;
        }
        out
    }

    #[test]
    fn the_shaper_holds_the_rate() {
        // 8 Mb/s: a million octets a second, a burst of 65536 octets.
        let mut s = Shaper::new(8_000_000);
        let t0 = Instant::now();
        assert_eq!(s.take(65536, t0), None, "the burst goes at once");
        // One more 10 kB now: 10 ms to wait.
        let w = s.take(10_000, t0).unwrap();
        assert!((w.as_secs_f64() - 0.010).abs() < 1e-6, "{w:?}");
        // A second later the bucket is full again, not more.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(s.take(65536, t1), None);
        assert!(s.take(1, t1).is_some());
        // Over 10 simulated seconds, what passes without waiting stays near the rate.
        let mut t = t1;
        let mut sent = 0usize;
        for _ in 0..10_000 {
            t += Duration::from_millis(1);
            if s.take(1400, t).is_none() {
                sent += 1400;
            } else {
                s.tokens += 1400.0; // not sent: give the tokens back
            }
        }
        assert!((9_000_000..=10_100_000).contains(&sent), "{sent}");
    }

    #[test]
    fn gso_runs_take_equal_sizes_then_one_shorter() {
        assert_eq!(runs(&[]), Vec::<usize>::new());
        assert_eq!(runs(&[100]), [1]);
        assert_eq!(runs(&[100, 100, 100]), [3]);
        assert_eq!(runs(&[100, 100, 60, 100]), [3, 1]);
        // A longer datagram starts a run of its own.
        assert_eq!(runs(&[60, 100, 100]), [1, 2]);
        assert_eq!(runs(&[100, 60, 60]), [2, 1]);
    }

    #[test]
    fn gso_runs_stay_within_the_kernel_limits() {
        assert_eq!(runs(&[10; 130]), [64, 64, 2]);
        // 65 000 octets of payload at most: 43 of 1500.
        assert_eq!(runs(&[1500; 50]), [43, 7]);
        // A datagram larger than the limit still goes, alone.
        assert_eq!(runs(&[70_000, 70_000]), [1, 1]);
    }
}

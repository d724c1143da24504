//! The exporting process: one thread for the daemon, fed by the workers' tables through a
//! bounded queue. A worker never waits on it: a batch that does not fit is dropped and its
//! records counted. Every collector gets every message over UDP (RFC 7011 §10.3), the
//! templates first and again every `template_refresh` (§8.4: over UDP a collector that
//! started late, or lost them, learns them again).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::ipfix::{Context, Encoder};
use crate::table::Record;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterConfig {
    pub collectors: Vec<SocketAddr>,
    /// The observation domain (RFC 7011 §3.1) of every message.
    pub domain: u32,
    pub template_refresh: Duration,
    /// Batches waiting for the thread, at most.
    pub queue: usize,
}

/// What the exporting process did, for the metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Records sent (to every collector).
    pub records: AtomicU64,
    pub messages: AtomicU64,
    /// Records dropped because the queue was full (the exporter behind the workers).
    pub dropped: AtomicU64,
    /// Sends that failed (a collector unreachable, the socket buffer full).
    pub errors: AtomicU64,
}

/// Records of one worker, with where they were seen.
pub struct Batch {
    pub ctx: Context,
    pub records: Vec<Record>,
}

/// A worker's way to the exporter.
#[derive(Clone)]
pub struct FlowSink {
    tx: SyncSender<Batch>,
    stats: Arc<ExportStats>,
}

impl FlowSink {
    /// Queues `batch` if there is room; never waits.
    pub fn send(&self, batch: Batch) {
        let n = batch.records.len() as u64;
        if n > 0 && self.tx.try_send(batch).is_err() {
            self.stats.dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

pub struct Exporter {
    sink: FlowSink,
    thread: Option<JoinHandle<()>>,
}

fn now_secs() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

impl Exporter {
    /// Opens the sockets (one per address family the collectors use) and starts the thread.
    pub fn start(cfg: ExporterConfig) -> io::Result<Exporter> {
        let stats = Arc::new(ExportStats::default());
        let mut v4 = None;
        let mut v6 = None;
        for c in &cfg.collectors {
            let slot = if c.is_ipv4() { &mut v4 } else { &mut v6 };
            if slot.is_none() {
                let s = UdpSocket::bind(if c.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
                s.set_nonblocking(true)?;
                *slot = Some(s);
            }
        }
        let (tx, rx) = sync_channel(cfg.queue.max(1));
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("il-ipfix".into())
            .spawn(move || run(cfg, rx, v4, v6, &thread_stats))?;
        Ok(Exporter {
            sink: FlowSink { tx, stats },
            thread: Some(thread),
        })
    }

    pub fn sink(&self) -> FlowSink {
        self.sink.clone()
    }

    pub fn stats(&self) -> &ExportStats {
        &self.sink.stats
    }

    /// Sends what is queued and stops, once every worker's sink is gone (the links stopped),
    /// or after `timeout`.
    pub fn stop(mut self, timeout: Duration) {
        drop(self.sink);
        if let Some(t) = self.thread.take() {
            let end = Instant::now() + timeout;
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn run(
    cfg: ExporterConfig,
    rx: Receiver<Batch>,
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
    stats: &ExportStats,
) {
    let mut enc = Encoder::new(cfg.domain);
    let send = |m: &[u8]| {
        for c in &cfg.collectors {
            let sock = if c.is_ipv4() { &v4 } else { &v6 };
            let ok = sock.as_ref().is_some_and(|s| s.send_to(m, c).is_ok());
            if !ok {
                stats.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        stats.messages.fetch_add(1, Ordering::Relaxed);
    };
    send(&enc.templates(now_secs()));
    let mut next_templates = Instant::now() + cfg.template_refresh;
    let mut pending: Vec<(Context, Record)> = Vec::new();
    loop {
        let wait = next_templates.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if Instant::now() >= next_templates {
            send(&enc.templates(now_secs()));
            next_templates = Instant::now() + cfg.template_refresh;
        }
        // This batch and whatever else waits, in one go.
        for b in first.into_iter().chain(rx.try_iter()) {
            pending.extend(b.records.into_iter().map(|r| (b.ctx, r)));
        }
        if pending.is_empty() {
            continue;
        }
        for m in enc.messages(now_secs(), &pending) {
            send(&m);
        }
        stats
            .records
            .fetch_add(pending.len() as u64, Ordering::Relaxed);
        pending.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Counts, EndReason};
    use crate::{Direction, Key};

    #[test]
    fn batches_reach_a_collector_after_the_templates() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let exp = Exporter::start(ExporterConfig {
            collectors: vec![collector.local_addr().unwrap()],
            domain: 9,
            template_refresh: Duration::from_secs(60),
            queue: 4,
        })
        .unwrap();
        let sink = exp.sink();
        let rec = Record {
            key: Key {
                src: [10; 16],
                dst: [11; 16],
                sport: 1,
                dport: 2,
                proto: 17,
                v6: false,
            },
            counts: Counts {
                octets: 1000,
                packets: 10,
                first_ms: 1,
                last_ms: 2,
                tcp_flags: 0,
            },
            reason: EndReason::Idle,
        };
        let ctx = Context {
            ifindex: 3,
            direction: Direction::Ingress,
            sampling: 1,
        };
        sink.send(Batch {
            ctx,
            records: vec![rec; 3],
        });
        let mut buf = [0u8; 2048];
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), 2, "templates first");
        assert_eq!(u32::from_be_bytes(buf[12..16].try_into().unwrap()), 9);
        assert!(n > 20);
        let n = collector.recv(&mut buf).unwrap();
        assert_eq!(u16::from_be_bytes([buf[16], buf[17]]), 256);
        assert_eq!(n, 16 + 4 + 3 * 61);
        drop(sink);
        exp.stop(Duration::from_secs(2));
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        // A collector nobody reads, and a thread that is slow to start: the queue of one
        // fills, and the sender goes on.
        let (tx, _rx) = sync_channel(1);
        let stats = Arc::new(ExportStats::default());
        let sink = FlowSink {
            tx,
            stats: stats.clone(),
        };
        let batch = |n| Batch {
            ctx: Context {
                ifindex: 1,
                direction: Direction::Egress,
                sampling: 1,
            },
            records: vec![
                Record {
                    key: Key {
                        src: [0; 16],
                        dst: [0; 16],
                        sport: 0,
                        dport: 0,
                        proto: 1,
                        v6: false
                    },
                    counts: Counts::default(),
                    reason: EndReason::Idle
                };
                n
            ],
        };
        sink.send(batch(2));
        sink.send(batch(5));
        sink.send(batch(0));
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 5);
    }
}

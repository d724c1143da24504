//! Flow logs in the workers: each worker (every transmit queue, the receive worker) counts
//! the IP packets it carries in a flow table of its own, with no lock per packet, and hands
//! ended flows to the exporter in batches; once a second it ends what timed out and
//! publishes its largest flows and its count for `interlinkctl show flows` and the metrics.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use interlink_flow::ipfix::Context;
use interlink_flow::{Batch, Direction, FlowSink, Record, Table, TableConfig};

/// What a link's workers need for flow logs.
#[derive(Clone)]
pub struct FlowSpec {
    pub sink: FlowSink,
    /// The bound (`max_flows`) is the link's: each worker's table gets its share.
    pub table: TableConfig,
}

impl std::fmt::Debug for FlowSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowSpec")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// Flows a worker shows the control plane.
pub const TOP: usize = 20;

/// What one worker's table looks like, published once a second.
#[derive(Debug, Default)]
pub struct FlowView {
    pub active: AtomicU64,
    pub evicted: AtomicU64,
    /// Flows ended and handed to the exporter.
    pub ended: AtomicU64,
    pub top: Mutex<Vec<Record>>,
    pub direction: Mutex<Option<Direction>>,
}

/// Records handed over at once when this many have ended before the second is up (a flood
/// of new flows evicting old ones).
const FLUSH_AT: usize = 256;

pub(crate) struct Flows {
    table: Table,
    out: Vec<Record>,
    sink: FlowSink,
    ctx: Context,
    next_expiry_ms: u64,
    pub(crate) now_ms: u64,
    view: Arc<FlowView>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Flows {
    pub(crate) fn new(
        spec: &FlowSpec,
        workers: usize,
        ifindex: u32,
        direction: Direction,
        view: Arc<FlowView>,
    ) -> Flows {
        let table = TableConfig {
            max_flows: (spec.table.max_flows / workers.max(1)).max(1),
            ..spec.table
        };
        if let Ok(mut d) = view.direction.lock() {
            *d = Some(direction);
        }
        let now = now_ms();
        Flows {
            table: Table::new(table),
            out: Vec::new(),
            sink: spec.sink.clone(),
            ctx: Context {
                ifindex,
                direction,
                sampling: table.sampling,
            },
            next_expiry_ms: now + 1000,
            now_ms: now,
            view,
        }
    }

    /// Counts one IP packet, at the time of its batch.
    #[inline]
    pub(crate) fn account(&mut self, ip: &[u8]) {
        self.table.account(ip, self.now_ms, &mut self.out);
    }

    /// Between batches: the clock, the timeouts once a second, the records handed over.
    pub(crate) fn tick(&mut self) {
        self.table.commit(&mut self.out);
        self.now_ms = now_ms();
        if self.now_ms >= self.next_expiry_ms {
            self.next_expiry_ms = self.now_ms + 1000;
            self.table.expire(self.now_ms, &mut self.out);
            self.view
                .active
                .store(self.table.len() as u64, Ordering::Relaxed);
            self.view
                .evicted
                .store(self.table.evicted, Ordering::Relaxed);
            if let Ok(mut top) = self.view.top.lock() {
                *top = self.table.top(TOP);
            }
            self.flush();
        } else if self.out.len() >= FLUSH_AT {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.view
            .ended
            .fetch_add(self.out.len() as u64, Ordering::Relaxed);
        let records = std::mem::take(&mut self.out);
        self.sink.send(Batch {
            ctx: self.ctx,
            records,
        });
    }

    /// The link stops: every flow ends now.
    pub(crate) fn stop(&mut self) {
        self.table.drain(&mut self.out);
        self.view.active.store(0, Ordering::Relaxed);
        self.flush();
    }
}

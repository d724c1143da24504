//! Flow logs: what crossed a link, per flow, exported as IPFIX (RFC 7011) to collectors such
//! as nfdump's nfcapd, pmacct or GoFlow2.
//!
//! - [`key`]: the flow key of an IP packet (addresses, protocol, ports or ICMP type and
//!   code), read from the packet without trusting it.
//! - [`table`]: a bounded flow table, one per worker and direction, fed packet by packet
//!   without a lock; flows end at the idle or active timeout, at a TCP FIN or RST, or when
//!   the table is full (evicted), and their records come out in batches.
//! - [`ipfix`]: the IPFIX encoding: message header, the two templates (IPv4 and IPv6) and the
//!   data records, packed into messages that fit a datagram.
//! - [`exporter`]: the I/O edge: a thread that takes the workers' batches from a bounded
//!   queue (a worker never waits on it: what does not fit is counted as dropped) and sends
//!   IPFIX over UDP to every collector, templates first and again every refresh interval.

pub mod exporter;
#[doc(hidden)]
pub mod fuzzing;
pub mod ipfix;
pub mod key;
pub mod table;

pub use exporter::{Batch, ExportStats, Exporter, ExporterConfig, FlowSink};
pub use key::{parse, Key, Packet};
pub use table::{Counts, EndReason, Record, Table, TableConfig};

/// Which way a flow crossed the link: in from the peer (decrypted, to the local network) or
/// out to it; IPFIX flowDirection (IE 61): 0 ingress, 1 egress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "in",
            Direction::Egress => "out",
        }
    }
}

//! Counters: each worker counts in plain integers and publishes a copy once per batch, so the
//! packet path never takes a lock or touches a shared cache line; readers sum the copies.

use std::sync::Mutex;
use std::time::Duration;

use interlink_macsec::{RxStats, TxStats};

/// What a link counts besides the SecY's 802.1AE counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets and octets read from the TUN interface, to be protected.
    pub tun_rx_packets: u64,
    pub tun_rx_bytes: u64,
    /// Packets and octets written to the TUN interface after validation.
    pub tun_tx_packets: u64,
    pub tun_tx_bytes: u64,
    /// Protected datagrams sent and received on the underlay.
    pub underlay_tx_packets: u64,
    pub underlay_tx_bytes: u64,
    pub underlay_rx_packets: u64,
    pub underlay_rx_bytes: u64,
    /// Datagrams the underlay refused to send (no route, buffer full, ...).
    pub underlay_tx_errors: u64,
    /// Packets the TUN interface refused.
    pub tun_tx_errors: u64,
    /// Packets dropped because the TUN interface was down (as while a link starts).
    pub tun_down: u64,
    /// Packets read from TUN that are neither IPv4 nor IPv6, or validated user data that is
    /// neither IP nor a probe.
    pub not_ip: u64,
    pub probes_sent: u64,
    pub probe_replies_sent: u64,
    pub probe_replies_received: u64,
}

impl LinkCounters {
    pub fn merge(&mut self, o: &LinkCounters) {
        self.tun_rx_packets += o.tun_rx_packets;
        self.tun_rx_bytes += o.tun_rx_bytes;
        self.tun_tx_packets += o.tun_tx_packets;
        self.tun_tx_bytes += o.tun_tx_bytes;
        self.underlay_tx_packets += o.underlay_tx_packets;
        self.underlay_tx_bytes += o.underlay_tx_bytes;
        self.underlay_rx_packets += o.underlay_rx_packets;
        self.underlay_rx_bytes += o.underlay_rx_bytes;
        self.underlay_tx_errors += o.underlay_tx_errors;
        self.tun_tx_errors += o.tun_tx_errors;
        self.tun_down += o.tun_down;
        self.not_ip += o.not_ip;
        self.probes_sent += o.probes_sent;
        self.probe_replies_sent += o.probe_replies_sent;
        self.probe_replies_received += o.probe_replies_received;
    }
}

/// Everything one worker counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub secy_tx: TxStats,
    pub secy_rx: RxStats,
    pub link: LinkCounters,
}

impl Counters {
    pub fn merge(&mut self, o: &Counters) {
        self.secy_tx.merge(&o.secy_tx);
        self.secy_rx.merge(&o.secy_rx);
        self.link.merge(&o.link);
    }
}

/// A worker's last published copy.
#[derive(Default)]
pub(crate) struct Published(Mutex<Counters>);

impl Published {
    /// Called once per batch by the worker that owns `local`.
    pub(crate) fn publish(&self, local: &Counters) {
        if let Ok(mut p) = self.0.lock() {
            *p = *local;
        }
    }

    pub(crate) fn read(&self) -> Counters {
        self.0.lock().map(|p| *p).unwrap_or_default()
    }
}

/// RTT histogram bucket bounds, in seconds (Prometheus-style upper bounds).
pub const RTT_BUCKETS: [f64; 12] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Liveness of a link, from authenticated probe replies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Liveness {
    /// A reply arrived within the dead interval (three probe intervals).
    pub up: bool,
    /// The most recent RTT sample.
    pub last_rtt: Option<Duration>,
    /// Samples per bucket of [`RTT_BUCKETS`] (not cumulative), plus one for larger values.
    pub rtt_buckets: [u64; RTT_BUCKETS.len() + 1],
    pub rtt_sum: Duration,
    pub rtt_count: u64,
}

impl Liveness {
    pub(crate) fn record(&mut self, rtt: Duration) {
        let s = rtt.as_secs_f64();
        let i = RTT_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(RTT_BUCKETS.len());
        self.rtt_buckets[i] += 1;
        self.rtt_sum += rtt;
        self.rtt_count += 1;
        self.last_rtt = Some(rtt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_samples_land_in_their_bucket() {
        let mut l = Liveness::default();
        l.record(Duration::from_micros(50));
        l.record(Duration::from_micros(300));
        l.record(Duration::from_secs(3));
        assert_eq!(l.rtt_buckets[0], 1);
        assert_eq!(l.rtt_buckets[2], 1);
        assert_eq!(l.rtt_buckets[RTT_BUCKETS.len()], 1);
        assert_eq!(l.rtt_count, 3);
        assert_eq!(l.last_rtt, Some(Duration::from_secs(3)));
    }
}

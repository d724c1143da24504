//! Prometheus metrics, served on `GET /metrics` from a `prometheus` registry in the text
//! exposition format (version 0.0.4).
//!
//! Every value already lives as an absolute counter in the data plane, the FIB or the
//! speaker, so the registry holds one collector that hands out the families the main loop
//! renders for each scrape, rather than metrics that would mirror those counters by deltas.
//! Nothing is rendered between scrapes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use interlink_dataplane::{Counters, Liveness, RTT_BUCKETS};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The families of one rendering, built as `render` names them.
#[derive(Default)]
pub struct Exposition {
    families: Vec<MetricFamily>,
}

fn label_pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_owned());
            l.set_value((*v).to_owned());
            l
        })
        .collect()
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let mut f = MetricFamily::default();
        f.set_name(name.to_owned());
        f.set_help(help.to_owned());
        f.set_field_type(match kind {
            "counter" => MetricType::COUNTER,
            "histogram" => MetricType::HISTOGRAM,
            _ => MetricType::GAUGE,
        });
        self.families.push(f);
    }

    /// A sample of the family declared last: `name` is the family's, or for a histogram the
    /// family's with `_bucket` (with an `le` label), `_sum` or `_count`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let Some(f) = self.families.last_mut() else {
            return;
        };
        match f.get_field_type() {
            MetricType::HISTOGRAM => {
                let part = name.strip_prefix(f.name()).unwrap_or("").to_owned();
                let le = labels.iter().find(|(k, _)| *k == "le").map(|(_, v)| *v);
                let rest: Vec<(&str, &str)> =
                    labels.iter().copied().filter(|(k, _)| *k != "le").collect();
                let pairs = label_pairs(&rest);
                let same = |m: &Metric| {
                    m.get_label().len() == pairs.len()
                        && m.get_label()
                            .iter()
                            .zip(&pairs)
                            .all(|(a, b)| a.name() == b.name() && a.value() == b.value())
                };
                let metrics = f.mut_metric();
                let i = match metrics.iter().position(same) {
                    Some(i) => i,
                    None => {
                        let mut m = Metric::from_label(pairs);
                        m.set_histogram(Histogram::default());
                        metrics.push(m);
                        metrics.len() - 1
                    }
                };
                let mut h = metrics[i].get_histogram().clone();
                match (part.as_str(), le) {
                    // The encoder writes the +Inf bucket from the count.
                    ("_bucket", Some(le)) if le != "+Inf" => {
                        let mut b = Bucket::default();
                        b.set_upper_bound(le.parse().unwrap_or(f64::INFINITY));
                        b.set_cumulative_count(value as u64);
                        let mut buckets = h.get_bucket().to_vec();
                        buckets.push(b);
                        h.set_bucket(buckets);
                    }
                    ("_sum", _) => h.set_sample_sum(value),
                    ("_count", _) => h.set_sample_count(value as u64),
                    _ => {}
                }
                metrics[i].set_histogram(h);
            }
            MetricType::COUNTER => {
                let mut m = Metric::from_label(label_pairs(labels));
                let mut c = Counter::default();
                c.set_value(value);
                m.set_counter(c);
                f.mut_metric().push(m);
            }
            _ => {
                let mut m = Metric::from_label(label_pairs(labels));
                let mut g = Gauge::default();
                g.set_value(value);
                m.set_gauge(g);
                f.mut_metric().push(m);
            }
        }
    }

    pub fn finish(self) -> Vec<MetricFamily> {
        self.families
    }
}

/// The registry's one collector: the families of the last rendering.
#[derive(Clone, Default)]
pub struct Latest(Arc<Mutex<Vec<MetricFamily>>>);

impl Collector for Latest {
    fn desc(&self) -> Vec<&Desc> {
        Vec::new()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.0.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// interlinkd's registry and what it serves.
pub struct Metrics {
    registry: prometheus::Registry,
    latest: Latest,
}

/// How the HTTP side asks the main loop for a rendering: a scrape sends where to answer.
pub type Scrapes = tokio::sync::mpsc::Sender<ScrapeReply>;
/// Where the main loop puts one scrape's rendering.
pub type ScrapeReply = tokio::sync::oneshot::Sender<String>;

impl Metrics {
    pub fn new() -> Metrics {
        let registry = prometheus::Registry::new();
        let latest = Latest::default();
        let _ = registry.register(Box::new(latest.clone()));
        Metrics { registry, latest }
    }

    /// The text format of `families` and of the registry's own collectors (the process's).
    pub fn encode(&self, families: Vec<MetricFamily>) -> String {
        if let Ok(mut f) = self.latest.0.lock() {
            *f = families;
        }
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_default()
    }
}

/// What the main loop knows, rendered.
pub struct Snapshot<'a> {
    pub links: Vec<LinkView<'a>>,
    pub fib: &'a interlink_fib::Snapshot,
    pub fib_table: u32,
    /// BGP neighbors as the speaker reports them.
    pub neighbors: Vec<interlink_bgp::speaker::NeighborView>,
    /// BFD sessions, and the packets dropped before any session saw them.
    pub bfd: (Vec<interlink_bfd::View>, interlink_bfd::Dropped),
    /// Flow logs, when on.
    pub flows: Option<FlowMetrics>,
    /// The kernel holds what every source wants (nothing queued or in flight).
    pub fib_in_sync: bool,
    /// Each neighbor's max_prefixes, where it has one.
    pub prefix_limits: Vec<(std::net::IpAddr, u32)>,
}

/// Flow logs for the metrics: per link and direction, and the exporter's counts.
pub struct FlowMetrics {
    /// (link, direction, flows now, ended, evicted)
    pub tables: Vec<(String, &'static str, u64, u64, u64)>,
    pub records: u64,
    pub messages: u64,
    pub dropped: u64,
    pub errors: u64,
}

pub struct LinkView<'a> {
    pub name: &'a str,
    /// What the link is, for `interlink_link_info`: its TUN interface, transport ("udp" or
    /// "ethernet"), cipher suite and AES-GCM implementation.
    pub interface: &'a str,
    pub transport: &'static str,
    pub cipher_suite: &'static str,
    pub aes_gcm: &'static str,
    pub counters: Counters,
    pub liveness: Liveness,
    pub rekeys: u64,
    /// The TUN queue's drops (see `Link::tun_tx_dropped`).
    pub tun_tx_dropped: u64,
    /// For MKA links: whether a peer is live.
    pub mka_live: Option<bool>,
    /// How much of the transmit SA's PN space is used (next PN over the suite's last).
    pub tx_pn_used: Option<f64>,
    pub mka: Option<MkaView>,
    /// A link offered with `interlinkctl link offer`: pending, available or expired.
    pub pairing: Option<&'static str>,
}

/// MKA's state for the metrics.
pub struct MkaView {
    pub key_server: bool,
    /// With `replace_cak`: configured, replacing or replaced (see `crate::cak`).
    pub cak: Option<&'static str>,
    pub drops: std::collections::HashMap<&'static str, u64>,
}

/// Drop reasons of the SecY counters, named as the product's metrics name them.
const DROPS: [(&str, &str); 15] = [
    ("InPktsLate", "late"),
    ("InPktsInvalid", "invalid"),
    ("InPktsNotValid", "not_valid"),
    ("InPktsNotUsingSA", "no_sa"),
    ("InPktsUnusedSA", "unused_sa"),
    ("InPktsBadTag", "bad_tag"),
    ("InPktsNoTag", "no_tag"),
    ("InPktsUnknownSCI", "unknown_sci"),
    ("OutPktsTooLong", "too_long"),
    ("OutPktsSANotInUse", "no_tx_sa"),
    ("OutPktsPNExhausted", "pn_exhausted"),
    // Frames that did not validate are never delivered, whatever validateFrames says.
    ("InPktsUnchecked", "unchecked"),
    ("InPktsUntagged", "untagged"),
    // Static keys: PNs not yet reserved in the state file.
    ("OutPktsPNUnreserved", "pn_unreserved"),
    ("InPktsUnreserved", "rx_unreserved"),
];

pub fn render(s: &Snapshot<'_>) -> Vec<MetricFamily> {
    let mut e = Exposition::default();
    e.family(
        "interlink_link_up",
        "gauge",
        "1 while the peer answers the link's probes.",
    );
    for l in &s.links {
        e.sample(
            "interlink_link_up",
            &[("link", l.name)],
            f64::from(u8::from(l.liveness.up)),
        );
    }
    e.family(
        "interlink_macsec_tx_pn_used_ratio",
        "gauge",
        "The share of the transmit SA's packet numbers used: MKA rekeys before it nears 1 (static keys must be replaced).",
    );
    for l in &s.links {
        if let Some(r) = l.tx_pn_used {
            e.sample("interlink_macsec_tx_pn_used_ratio", &[("link", l.name)], r);
        }
    }
    e.family(
        "interlink_link_info",
        "gauge",
        "1 for each link, with what it is in its labels.",
    );
    for l in &s.links {
        e.sample(
            "interlink_link_info",
            &[
                ("link", l.name),
                ("interface", l.interface),
                ("transport", l.transport),
                ("cipher_suite", l.cipher_suite),
                ("aes_gcm", l.aes_gcm),
            ],
            1.0,
        );
    }
    // Per direction: (family, help, transmitted, received).
    type Pick = fn(&Counters) -> u64;
    let directional: [(&str, &str, Pick, Pick); 2] = [
        (
            "interlink_link_packets_total",
            "Protected packets, by direction.",
            |c| c.link.underlay_tx_packets,
            |c| c.secy_rx.in_pkts_ok,
        ),
        (
            "interlink_link_bytes_total",
            "Octets on the underlay, by direction.",
            |c| c.link.underlay_tx_bytes,
            |c| c.link.underlay_rx_bytes,
        ),
    ];
    for (name, help, tx, rx) in directional {
        e.family(name, "counter", help);
        for l in &s.links {
            for (direction, v) in [("tx", tx(&l.counters)), ("rx", rx(&l.counters))] {
                e.sample(
                    name,
                    &[("link", l.name), ("direction", direction)],
                    v as f64,
                );
            }
        }
    }
    e.family(
        "interlink_link_drops_total",
        "counter",
        "Frames dropped, by 802.1AE reason.",
    );
    for l in &s.links {
        let entries: Vec<(&str, u64)> = l
            .counters
            .secy_rx
            .entries()
            .chain(l.counters.secy_tx.entries())
            .collect();
        for (mib, reason) in DROPS {
            let v = entries
                .iter()
                .find(|(n, _)| *n == mib)
                .map_or(0, |(_, v)| *v);
            e.sample(
                "interlink_link_drops_total",
                &[("link", l.name), ("reason", reason)],
                v as f64,
            );
        }
        e.sample(
            "interlink_link_drops_total",
            &[("link", l.name), ("reason", "tun_down")],
            l.counters.link.tun_down as f64,
        );
        // Packets the kernel dropped at the TUN queue while the workers (held back by the
        // shaper, with a bandwidth set) did not take them.
        e.sample(
            "interlink_link_drops_total",
            &[("link", l.name), ("reason", "shaped")],
            l.tun_tx_dropped as f64,
        );
    }
    e.family(
        "interlink_link_rtt_seconds",
        "histogram",
        "Round-trip time of the link's probes.",
    );
    for l in &s.links {
        let mut cum = 0;
        for (i, b) in RTT_BUCKETS.iter().enumerate() {
            cum += l.liveness.rtt_buckets[i];
            let le = format!("{b}");
            e.sample(
                "interlink_link_rtt_seconds_bucket",
                &[("link", l.name), ("le", &le)],
                cum as f64,
            );
        }
        cum += l.liveness.rtt_buckets[RTT_BUCKETS.len()];
        e.sample(
            "interlink_link_rtt_seconds_bucket",
            &[("link", l.name), ("le", "+Inf")],
            cum as f64,
        );
        e.sample(
            "interlink_link_rtt_seconds_sum",
            &[("link", l.name)],
            l.liveness.rtt_sum.as_secs_f64(),
        );
        e.sample(
            "interlink_link_rtt_seconds_count",
            &[("link", l.name)],
            l.liveness.rtt_count as f64,
        );
    }
    e.family(
        "interlink_macsec_rekeys_total",
        "counter",
        "Transmit SAs switched to after the first.",
    );
    for l in &s.links {
        e.sample(
            "interlink_macsec_rekeys_total",
            &[("link", l.name)],
            l.rekeys as f64,
        );
    }
    e.family(
        "interlink_mka_peer_live",
        "gauge",
        "1 while an MKA peer is live.",
    );
    for l in &s.links {
        if let Some(live) = l.mka_live {
            e.sample(
                "interlink_mka_peer_live",
                &[("link", l.name)],
                f64::from(u8::from(live)),
            );
        }
    }
    e.family(
        "interlink_mka_key_server",
        "gauge",
        "1 while this side is the key server of the CA that protects the link.",
    );
    for l in &s.links {
        if let Some(m) = &l.mka {
            e.sample(
                "interlink_mka_key_server",
                &[("link", l.name)],
                f64::from(u8::from(m.key_server)),
            );
        }
    }
    e.family(
        "interlink_mka_mkpdus_dropped_total",
        "counter",
        "MKPDUs dropped, by reason: icv (another CAK: alert on it), malformed, replay, other_ckn, bad_sak, bad_cak, own, own_sci, queue_full; unwanted_cak counts CAKs distributed to a link without replace_cak (once per CKN).",
    );
    for l in &s.links {
        if let Some(m) = &l.mka {
            for reason in [
                "icv",
                "malformed",
                "replay",
                "other_ckn",
                "bad_sak",
                "bad_cak",
                "own",
                "own_sci",
                "queue_full",
                "unwanted_cak",
            ] {
                let n = m.drops.get(reason).copied().unwrap_or(0);
                e.sample(
                    "interlink_mka_mkpdus_dropped_total",
                    &[("link", l.name), ("reason", reason)],
                    n as f64,
                );
            }
        }
    }
    e.family(
        "interlink_mka_cak_replaced",
        "gauge",
        "Links with replace_cak: 1 once the configured CAK is replaced by one only the two gateways know (and no longer accepted).",
    );
    for l in &s.links {
        if let Some(c) = l.mka.as_ref().and_then(|m| m.cak) {
            e.sample(
                "interlink_mka_cak_replaced",
                &[("link", l.name)],
                f64::from(u8::from(matches!(c, "replaced" | "rotating"))),
            );
        }
    }
    e.family(
        "interlink_link_pairing",
        "gauge",
        "Links offered with interlinkctl link offer: 1 for the offer's status (pending, available, expired).",
    );
    for l in &s.links {
        if let Some(now) = l.pairing {
            for status in ["pending", "available", "expired"] {
                e.sample(
                    "interlink_link_pairing",
                    &[("link", l.name), ("status", status)],
                    f64::from(u8::from(now == status)),
                );
            }
        }
    }
    e.family(
        "interlink_bgp_session_established",
        "gauge",
        "1 while the session is Established.",
    );
    let addrs: Vec<String> = s.neighbors.iter().map(|n| n.address.to_string()).collect();
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        e.sample(
            "interlink_bgp_session_established",
            &[("neighbor", a)],
            f64::from(u8::from(n.state == "established")),
        );
    }
    e.family(
        "interlink_bgp_session_state",
        "gauge",
        "The session's state: 1 for the state it is in (established, down, or shutdown by the operator).",
    );
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        for state in ["established", "down", "shutdown"] {
            e.sample(
                "interlink_bgp_session_state",
                &[("neighbor", a), ("state", state)],
                f64::from(u8::from(n.state == state)),
            );
        }
    }
    e.family(
        "interlink_bgp_session_uptime_seconds",
        "gauge",
        "How long the session has been Established (0 when it is not).",
    );
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        e.sample(
            "interlink_bgp_session_uptime_seconds",
            &[("neighbor", a)],
            n.uptime.map_or(0.0, |d| d.as_secs_f64()),
        );
    }
    e.family(
        "interlink_bgp_prefixes",
        "gauge",
        "Prefixes per neighbor and family: received (before import policy; only where soft reconfiguration keeps them), accepted, advertised.",
    );
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        for (stage, counts) in [
            ("received", n.received),
            ("accepted", Some(n.accepted)),
            ("advertised", Some(n.advertised)),
        ] {
            for (afi, c) in counts.iter().flat_map(interlink_fib::PerFamily::iter) {
                e.sample(
                    "interlink_bgp_prefixes",
                    &[("neighbor", a), ("afi", afi.key()), ("stage", stage)],
                    *c as f64,
                );
            }
        }
    }
    e.family(
        "interlink_bgp_prefixes_limit",
        "gauge",
        "A neighbor's max_prefixes (per family), where it has one: compare with interlink_bgp_prefixes{stage=\"accepted\"}.",
    );
    for (addr, limit) in &s.prefix_limits {
        e.sample(
            "interlink_bgp_prefixes_limit",
            &[("neighbor", &addr.to_string())],
            f64::from(*limit),
        );
    }
    e.family(
        "interlink_bgp_prefixes_refused_total",
        "counter",
        "Announcements per neighbor and family that import policy refused since the session came up (counted, not stored).",
    );
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        for (afi, c) in n.refused.iter() {
            e.sample(
                "interlink_bgp_prefixes_refused_total",
                &[("neighbor", a), ("afi", afi.key())],
                *c as f64,
            );
        }
    }
    e.family(
        "interlink_bgp_messages_total",
        "counter",
        "BGP messages per neighbor, direction and type.",
    );
    for (n, a) in s.neighbors.iter().zip(&addrs) {
        for (direction, counts) in [("sent", n.messages_sent), ("received", n.messages_received)] {
            for (kind, c) in interlink_bgp::peer::MESSAGE_TYPES.iter().zip(counts) {
                e.sample(
                    "interlink_bgp_messages_total",
                    &[("neighbor", a), ("direction", direction), ("type", kind)],
                    c as f64,
                );
            }
        }
    }
    let table = s.fib_table.to_string();
    e.family(
        "interlink_fib_routes",
        "gauge",
        "interlink's routes in the kernel.",
    );
    for (family, n) in [
        ("ipv4", s.fib.stats.installed.ipv4),
        ("ipv6", s.fib.stats.installed.ipv6),
    ] {
        e.sample(
            "interlink_fib_routes",
            &[("table", &table), ("family", family)],
            n as f64,
        );
    }
    e.family(
        "interlink_fib_in_sync",
        "gauge",
        "1 while the kernel holds every route the sources want (nothing queued or in flight).",
    );
    e.sample(
        "interlink_fib_in_sync",
        &[("table", &table)],
        f64::from(u8::from(s.fib_in_sync)),
    );
    e.family(
        "interlink_fib_operations_total",
        "counter",
        "Route requests, by operation and result.",
    );
    let st = &s.fib.stats;
    operations(
        &mut e,
        "interlink_fib_operations_total",
        &["add", "replace", "delete"],
        &st.ok,
        &st.failed,
    );
    e.family(
        "interlink_fib_nexthop_objects",
        "gauge",
        "interlink's nexthop objects in the kernel (one per next hop its routes go through).",
    );
    e.sample(
        "interlink_fib_nexthop_objects",
        &[("table", &table)],
        s.fib.stats.nexthops as f64,
    );
    e.family(
        "interlink_fib_nexthop_operations_total",
        "counter",
        "Nexthop object requests, by operation and result (a delete takes the routes through the object with it).",
    );
    operations(
        &mut e,
        "interlink_fib_nexthop_operations_total",
        &["add", "delete"],
        &st.nexthop_ok,
        &st.nexthop_failed,
    );
    bfd(&mut e, &s.bfd);
    if let Some(f) = &s.flows {
        flows(&mut e, f);
    }
    listeners(&mut e);
    process(&mut e);
    e.finish()
}

/// Flow logs: flows in the tables, ended and evicted, and what the exporter did.
fn flows(e: &mut Exposition, f: &FlowMetrics) {
    type Pick = fn(&(String, &'static str, u64, u64, u64)) -> u64;
    let per: [(&str, &str, &str, Pick); 3] = [
        (
            "interlink_flows_active",
            "gauge",
            "Flows in a link's tables now, by direction.",
            |t| t.2,
        ),
        (
            "interlink_flows_ended_total",
            "counter",
            "Flows ended (timeouts, FIN/RST, eviction, stop) and handed to the exporter.",
            |t| t.3,
        ),
        (
            "interlink_flows_evicted_total",
            "counter",
            "Flows ended early because the link's table was full (max_flows).",
            |t| t.4,
        ),
    ];
    for (name, kind, help, pick) in per {
        e.family(name, kind, help);
        for t in &f.tables {
            e.sample(name, &[("link", &t.0), ("direction", t.1)], pick(t) as f64);
        }
    }
    for (name, help, v) in [
        (
            "interlink_flow_records_exported_total",
            "IPFIX data records sent to the collectors.",
            f.records,
        ),
        (
            "interlink_flow_messages_exported_total",
            "IPFIX messages sent (templates included).",
            f.messages,
        ),
        (
            "interlink_flow_records_dropped_total",
            "Flow records dropped because the exporter's queue was full.",
            f.dropped,
        ),
        (
            "interlink_flow_export_errors_total",
            "IPFIX messages a collector could not be sent.",
            f.errors,
        ),
    ] {
        e.family(name, "counter", help);
        e.sample(name, &[], v as f64);
    }
}

/// BFD: each session up or not, how often it went up and down, what was dropped unseen.
fn bfd(e: &mut Exposition, (views, dropped): &(Vec<interlink_bfd::View>, interlink_bfd::Dropped)) {
    e.family(
        "interlink_bfd_session_up",
        "gauge",
        "1 while the BFD session with the peer is up.",
    );
    for v in views {
        let peer = v.peer.to_string();
        let up = v.state == interlink_bfd::State::Up;
        e.sample(
            "interlink_bfd_session_up",
            &[("peer", &peer)],
            f64::from(u8::from(up)),
        );
    }
    e.family(
        "interlink_bfd_session_changes_total",
        "counter",
        "BFD session state changes, to up and to down.",
    );
    for v in views {
        let peer = v.peer.to_string();
        for (to, n) in [("up", v.ups), ("down", v.downs)] {
            e.sample(
                "interlink_bfd_session_changes_total",
                &[("peer", &peer), ("to", to)],
                n as f64,
            );
        }
    }
    e.family(
        "interlink_bfd_packets_dropped_total",
        "counter",
        "BFD packets dropped before a session saw them: malformed, not sent with TTL 255 (from beyond one hop), or for no session of ours.",
    );
    for (reason, n) in [
        ("malformed", dropped.malformed),
        ("ttl", dropped.ttl),
        ("unknown", dropped.unknown),
    ] {
        e.sample(
            "interlink_bfd_packets_dropped_total",
            &[("reason", reason)],
            n as f64,
        );
    }
    e.family(
        "interlink_bfd_events_dropped_total",
        "counter",
        "BFD state changes dropped on the main loop's full queue (a session flapping faster than it is handled); the loop catches up from the sessions' state.",
    );
    let n = crate::run::BFD_EVENTS_DROPPED.load(std::sync::atomic::Ordering::Relaxed);
    e.sample("interlink_bfd_events_dropped_total", &[], n as f64);
}

/// Samples of counter `name` per operation, done and refused.
fn operations(e: &mut Exposition, name: &str, ops: &[&str], ok: &[u64], failed: &[u64]) {
    for (i, op) in ops.iter().enumerate() {
        e.sample(name, &[("op", op), ("result", "ok")], ok[i] as f64);
        e.sample(name, &[("op", op), ("result", "error")], failed[i] as f64);
    }
}

/// The standard process metrics, from /proc/self.
/// What the control and metrics listeners turned away (see `listen`).
fn listeners(e: &mut Exposition) {
    use std::sync::atomic::Ordering::Relaxed;
    let all = [
        ("control", &crate::listen::CONTROL),
        ("metrics", &crate::listen::METRICS),
    ];
    e.family(
        "interlink_listener_connections_total",
        "counter",
        "Connections to the control socket and the metrics listener: accepted, refused (too many at once), timed_out (not done within the deadline).",
    );
    for (name, st) in all {
        for (result, n) in [
            ("accepted", &st.accepted),
            ("refused", &st.refused),
            ("timed_out", &st.timed_out),
        ] {
            e.sample(
                "interlink_listener_connections_total",
                &[("listener", name), ("result", result)],
                n.load(Relaxed) as f64,
            );
        }
    }
    e.family(
        "interlink_bgp_commands_busy_total",
        "counter",
        "interlinkctl questions refused because the BGP speaker's command queue was full.",
    );
    e.sample(
        "interlink_bgp_commands_busy_total",
        &[],
        crate::commands::SPEAKER_BUSY.load(Relaxed) as f64,
    );
    e.family(
        "interlink_listener_accept_errors_total",
        "counter",
        "accept(2) failures (EMFILE and the like), each retried after a pause.",
    );
    for (name, st) in all {
        e.sample(
            "interlink_listener_accept_errors_total",
            &[("listener", name)],
            st.errors.load(Relaxed) as f64,
        );
    }
}

fn process(e: &mut Exposition) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            * 1024.0
    };
    e.family(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    e.sample("process_resident_memory_bytes", &[], kib("VmRSS:"));
    e.family(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
    );
    e.sample("process_virtual_memory_bytes", &[], kib("VmSize:"));
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    e.family(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
    );
    e.sample("process_open_fds", &[], fds as f64);
    // utime and stime are fields 14 and 15 of /proc/self/stat, after the command in brackets.
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let ticks = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect::<Vec<_>>())
        .and_then(|f| Some(f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?))
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    e.family(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
    );
    e.sample("process_cpu_seconds_total", &[], ticks / hz);
}

/// Serves `/metrics` on `listen` until the returned task is aborted (a reload that moves it):
/// each scrape asks the main loop for a rendering of the moment, and gets 503 if the loop
/// does not answer within 5 s.
pub async fn serve(
    listen: SocketAddr,
    scrapes: Scrapes,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let l = tokio::net::TcpListener::bind(listen).await?;
    let limits = crate::listen::Limits {
        max_connections: MAX_SCRAPERS,
        deadline: SCRAPE_DEADLINE,
    };
    Ok(crate::listen::serve(
        "metrics",
        l,
        limits,
        &crate::listen::METRICS,
        move |s| scrape(s, scrapes.clone()),
    ))
}

/// At most this many scrapers at once (Prometheus keeps one per target).
const MAX_SCRAPERS: usize = 16;

/// The request within 5 s, the rendering within 5 s more, the answer written by then.
const SCRAPE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

/// One HTTP exchange: `GET /metrics` gets the rendering of the moment.
async fn scrape(mut s: tokio::net::TcpStream, scrapes: Scrapes) {
    let mut req = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let wait = std::time::Duration::from_secs(5);
    // The whole request within `wait`, not each read: a byte every few seconds does not
    // hold the connection.
    let read = tokio::time::timeout(wait, async {
        while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
            match s.read(&mut buf).await {
                Ok(n) if n > 0 => req.extend_from_slice(&buf[..n]),
                _ => return false,
            }
        }
        true
    });
    if !matches!(read.await, Ok(true)) {
        return;
    }
    let ok = req.starts_with(b"GET /metrics ") || req.starts_with(b"GET /metrics?");
    let (status, body) = if ok {
        let (reply, rendered) = tokio::sync::oneshot::channel();
        let text = match scrapes.send(reply).await {
            Ok(()) => tokio::time::timeout(wait, rendered)
                .await
                .ok()
                .and_then(Result::ok),
            Err(_) => None,
        };
        match text {
            Some(t) => ("200 OK", t),
            None => ("503 Service Unavailable", "the daemon is busy\n".to_owned()),
        }
    } else {
        ("404 Not Found", "try /metrics\n".to_owned())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body.as_bytes()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_encode_as_the_text_format() {
        let mut e = Exposition::default();
        e.family("x_total", "counter", "An example.");
        e.sample(
            "x_total",
            &[("link", "a\"b\\c\nd"), ("direction", "tx")],
            3.0,
        );
        e.sample("x_total", &[], 0.5);
        e.family("rtt_seconds", "histogram", "Round trips.");
        for (le, n) in [("0.001", 1.0), ("0.01", 3.0), ("+Inf", 4.0)] {
            e.sample("rtt_seconds_bucket", &[("link", "l"), ("le", le)], n);
        }
        e.sample("rtt_seconds_sum", &[("link", "l")], 0.5);
        e.sample("rtt_seconds_count", &[("link", "l")], 4.0);
        let m = Metrics::new();
        let text = m.encode(e.finish());
        assert!(text.contains("# TYPE x_total counter\n"), "{text}");
        assert!(
            text.contains("x_total{link=\"a\\\"b\\\\c\\nd\",direction=\"tx\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("x_total 0.5\n"), "{text}");
        assert!(
            text.contains("rtt_seconds_bucket{link=\"l\",le=\"0.01\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("rtt_seconds_bucket{link=\"l\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("rtt_seconds_sum{link=\"l\"} 0.5\n"), "{text}");
        assert!(text.contains("rtt_seconds_count{link=\"l\"} 4\n"), "{text}");
    }
}

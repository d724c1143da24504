//! interlinkctl's verbs, answered from the daemon's state as JSON (see `control`).

use std::net::IpAddr;

use interlink_bgp::speaker::{NeighborOp, SpeakerCmd};
use interlink_bgp::update::{Nlri, Segment};
use interlink_config::{Keying, Transport};
use interlink_fib::PrefixError;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::control::{error, ok};
use crate::mka::MkaRun;

/// Client questions the speaker was too far behind to take (its command queue full).
pub static SPEAKER_BUSY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Hands a client's question to the speaker without waiting: a full queue is answered
/// "busy" and counted, so that clients cannot pile questions up behind a busy speaker.
fn ask(speaker: &tokio::sync::mpsc::Sender<SpeakerCmd>, cmd: SpeakerCmd) -> Result<(), Value> {
    use tokio::sync::mpsc::error::TrySendError;
    match speaker.try_send(cmd) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => {
            SPEAKER_BUSY.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(error("the BGP speaker is busy; try again"))
        }
        Err(TrySendError::Closed(_)) => Err(error("the BGP speaker is not running")),
    }
}
use crate::ctl::Ctl;

pub const USAGE: &str = "status | show links | show neighbors | show routes [PREFIX] | show fib \
                         | show bfd | show flows [N] \
                         | reload | neighbor ADDRESS reset|shutdown|enable | link NAME rekey \
                         | link NAME replace-cak";

/// Answers one command line.
pub async fn answer(line: &str, ctl: &mut Ctl<'_>) -> Value {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => ok(status(ctl)),
        ["show", "links"] => ok(links(ctl)),
        ["show", "fib"] => ok(fib(ctl)),
        ["show", "bfd"] => ok(bfd(ctl)),
        ["show", "flows"] => ok(flows(ctl, 20)),
        ["show", "flows", n] => match n.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => ok(flows(ctl, n)),
            _ => error(format!("{n:?} is not a number of flows from 1 to 1000")),
        },
        ["show", "neighbors"] => neighbors(ctl).await,
        ["show", "routes"] => routes(ctl, None).await,
        ["show", "routes", prefix] => match parse_prefix(prefix) {
            Ok(p) => routes(ctl, Some(p)).await,
            Err(e) => error(e),
        },
        ["reload"] => match crate::reload::reload(ctl).await {
            Ok(notes) => ok(json!({ "applied": true, "notes": notes })),
            Err(e) => error(e),
        },
        ["neighbor", addr, op @ ("reset" | "shutdown" | "enable")] => neighbor(ctl, addr, op).await,
        ["link", name, "rekey"] => rekey(ctl, name),
        ["link", name, "replace-cak"] => replace_cak(ctl, name),
        [] => error(format!("no command; commands: {USAGE}")),
        _ => error(format!("unknown command {line:?}; commands: {USAGE}")),
    }
}

/// The project's one prefix parser (ADDRESS/LENGTH, host bits zero).
fn parse_prefix(s: &str) -> Result<Nlri, String> {
    s.parse::<Nlri>().map_err(|e| match e {
        PrefixError::Syntax(_) => format!("{e}, such as 10.0.0.0/8 or 2001:db8::/32"),
        e => format!("{s:?} is not a prefix: {e}"),
    })
}

fn status(ctl: &Ctl<'_>) -> Value {
    let up = ctl.links.iter().filter(|l| l.link.liveness().up).count();
    let s = ctl.fib.snapshot();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": ctl.started.elapsed().as_secs(),
        "config": ctl.path.display().to_string(),
        "links": ctl.links.len(),
        "links_up": up,
        "neighbors": ctl.config.neighbors.len(),
        "fib_routes": { "ipv4": s.stats.installed.ipv4, "ipv6": s.stats.installed.ipv6 },
        "fib_in_sync": !s.busy,
    })
}

fn links(ctl: &Ctl<'_>) -> Value {
    let mut list: Vec<Value> = ctl
        .links
        .iter()
        .map(|run| {
            let l = &run.link;
            let c = l.counters();
            let live = l.liveness();
            let transport = transport_text(&run.cfg.transport);
            let mka = run.mka.as_ref().map(|m| m.view(&run.link));
            // Static keys: where their PNs are kept, how far transmission is reserved.
            let pn_state = matches!(run.cfg.macsec.keying, Keying::Static(_)).then(|| {
                let (errors, last) = l.state_errors();
                json!({
                    "file": crate::translate::pn_state_file(&ctl.config.state_dir, l.name())
                        .display()
                        .to_string(),
                    "tx_reserved_to": l.tx_secy().encoding_sa().map(|sa| sa.ceiling()),
                    "write_errors": errors,
                    "last_error": last,
                })
            });
            json!({
                "name": l.name(),
                "interface": l.ifname(),
                "mtu": l.mtu(),
                "transport": transport,
                "cipher_suite": run.cfg.macsec.cipher_suite.to_string(),
                "aes_gcm": interlink_macsec::Backend::default().name(),
                "keying": match run.cfg.macsec.keying {
                    Keying::Static(_) => "static",
                    Keying::Mka(_) => "mka",
                },
                "up": live.up,
                "rtt_seconds": live.last_rtt.map(|d| d.as_secs_f64()),
                "tx_packets": c.secy_tx.out_pkts_encrypted + c.secy_tx.out_pkts_protected,
                "rx_packets": c.secy_rx.in_pkts_ok,
                "rx_dropped": c.secy_rx.dropped(),
                "tx_sa": l.tx_pn().map(|(an, pn)| json!({ "an": an.index(), "next_pn": pn })),
                "mka": mka,
                "pn_state": pn_state,
                "pairing": run.offer.as_ref().map(|o| json!({
                    "status": o.status(),
                    "expires": o.expires,
                })),
            })
        })
        .collect();
    // Offers given up: in the configuration, not running.
    for l in &ctl.config.links {
        if ctl.links.iter().any(|r| r.cfg.name == l.name) {
            continue;
        }
        if let Some(o) = crate::offers::Offer::of(l, &ctl.config.state_dir) {
            list.push(json!({
                "name": l.name,
                "interface": l.interface,
                "transport": transport_text(&l.transport),
                "cipher_suite": l.macsec.cipher_suite.to_string(),
                "keying": "mka",
                "up": false,
                "pairing": { "status": o.status(), "expires": o.expires },
            }));
        }
    }
    Value::Array(list)
}

/// A link's transport as `show links` says it: "udp REMOTE" or "ethernet UNDERLAY".
fn transport_text(t: &Transport) -> String {
    match t {
        Transport::Udp { remote, .. } => format!("udp {remote}"),
        Transport::Ethernet { underlay, .. } => format!("ethernet {underlay}"),
    }
}

/// The BFD sessions: state, the peer's, the last diagnostic, timers, counters.
fn bfd(ctl: &Ctl<'_>) -> Value {
    let Some(service) = ctl.bfd else {
        return json!({ "sessions": [], "dropped": {} });
    };
    let (views, dropped) = service.views();
    let sessions: Vec<Value> = views
        .iter()
        .map(|v| {
            json!({
                "peer": v.peer.to_string(),
                "state": v.state.name(),
                "remote_state": v.remote_state.name(),
                "diagnostic": v.diag.to_string(),
                "local_discriminator": v.local_discr,
                "remote_discriminator": v.remote_discr,
                "interval_ms": v.interval.as_secs_f64() * 1e3,
                "multiplier": v.multiplier,
                "tx_interval_ms": v.tx_interval.as_secs_f64() * 1e3,
                "detection_time_ms": v.detection_time.as_secs_f64() * 1e3,
                "up_for_s": v.up_since.map(|t| t.elapsed().as_secs()),
                "ups": v.ups,
                "downs": v.downs,
                "received": v.received,
                "sent": v.sent,
                "discarded": v.discarded,
                "authentication": if v.authenticated { "keyed-sha1" } else { "none" },
                "auth_failed": v.auth_failed,
            })
        })
        .collect();
    json!({
        "sessions": sessions,
        "dropped": { "malformed": dropped.malformed, "ttl": dropped.ttl, "unknown": dropped.unknown },
    })
}

/// Flow logs: each link's tables (flows now, evicted), the exporter's counts, and the `top`
/// largest flows now across every link and direction.
fn flows(ctl: &Ctl<'_>, top: usize) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(cfg) = &ctl.config.flows else {
        return json!({ "enabled": false });
    };
    let mut tables = Vec::new();
    let mut largest = Vec::new();
    for run in ctl.links.iter() {
        for t in crate::links::flow_tables(&run.link) {
            tables.push(json!({
                "link": run.link.name(),
                "direction": t.direction.name(),
                "active": t.active,
                "ended": t.ended,
                "evicted": t.evicted,
            }));
            largest.extend(
                t.top
                    .into_iter()
                    .map(|r| (run.link.name().to_owned(), t.direction, r)),
            );
        }
    }
    largest.sort_by_key(|(_, _, r)| std::cmp::Reverse(r.counts.octets));
    largest.truncate(top);
    let exporter = ctl.exporter.map(|e| {
        let s = e.stats();
        json!({
            "records": s.records.load(Relaxed),
            "messages": s.messages.load(Relaxed),
            "dropped": s.dropped.load(Relaxed),
            "errors": s.errors.load(Relaxed),
        })
    });
    json!({
        "enabled": true,
        "collectors": cfg.collectors.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        "sampling": cfg.sampling,
        "tables": tables,
        "exporter": exporter,
        "top": largest
            .iter()
            .map(|(link, direction, r)| {
                let k = &r.key;
                json!({
                    "link": link,
                    "direction": direction.name(),
                    "protocol": k.proto,
                    "source": k.src_ip().to_string(),
                    "destination": k.dst_ip().to_string(),
                    "source_port": k.sport,
                    "destination_port": k.dport,
                    "packets": r.counts.packets,
                    "octets": r.counts.octets,
                    "duration_s": r.counts.last_ms.saturating_sub(r.counts.first_ms) as f64 / 1e3,
                    "tcp_flags": r.counts.tcp_flags,
                })
            })
            .collect::<Vec<_>>(),
    })
}

fn fib(ctl: &Ctl<'_>) -> Value {
    let s = ctl.fib.snapshot();
    let st = &s.stats;
    json!({
        "table": ctl.target.table,
        "metric": ctl.target.metric,
        "protocol": ctl.target.protocol,
        "routes": { "ipv4": st.installed.ipv4, "ipv6": st.installed.ipv6 },
        "stale": s.stale,
        "in_sync": !s.busy,
        "operations": {
            "add": { "ok": st.ok[0], "failed": st.failed[0] },
            "replace": { "ok": st.ok[1], "failed": st.failed[1] },
            "delete": { "ok": st.ok[2], "failed": st.failed[2] },
        },
        "repaired": st.repaired,
        "conflicts": st.conflicts,
        "nexthop_objects": st.nexthops,
        "nexthop_operations": {
            "add": { "ok": st.nexthop_ok[0], "failed": st.nexthop_failed[0] },
            "delete": { "ok": st.nexthop_ok[1], "failed": st.nexthop_failed[1] },
        },
    })
}

async fn neighbors(ctl: &Ctl<'_>) -> Value {
    let Some(speaker) = ctl.speaker else {
        return ok(json!([]));
    };
    let (reply, rx) = oneshot::channel();
    if let Err(e) = ask(speaker, SpeakerCmd::Neighbors(reply)) {
        return e;
    }
    let Ok(list) = rx.await else {
        return error("the BGP speaker is not running");
    };
    let fam = |c: interlink_fib::PerFamily<usize>| json!({ "ipv4": c.ipv4, "ipv6": c.ipv6 });
    let counter = |c: interlink_fib::PerFamily<u64>| json!({ "ipv4": c.ipv4, "ipv6": c.ipv6 });
    let msgs = |c: [u64; 6]| {
        let m: serde_json::Map<String, Value> = interlink_bgp::peer::MESSAGE_TYPES
            .iter()
            .zip(c)
            .map(|(t, n)| ((*t).to_owned(), json!(n)))
            .collect();
        Value::Object(m)
    };
    ok(Value::Array(
        list.into_iter()
            .map(|n| {
                json!({
                    "address": n.address.to_string(),
                    "remote_as": n.remote_as,
                    "state": n.state,
                    "uptime_seconds": n.uptime.map(|d| d.as_secs()),
                    "last_error": n.last_error,
                    // Known only where soft reconfiguration keeps what the peer sent.
                    "received": n.received.map(fam),
                    "accepted": fam(n.accepted),
                    "refused": counter(n.refused),
                    "advertised": fam(n.advertised),
                    "messages": {
                        "sent": msgs(n.messages_sent),
                        "received": msgs(n.messages_received),
                    },
                })
            })
            .collect(),
    ))
}

fn as_path(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Sequence(v) => v.iter().map(u32::to_string).collect::<Vec<_>>().join(" "),
            Segment::Set(v) => format!(
                "{{{}}}",
                v.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            ),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

async fn routes(ctl: &Ctl<'_>, prefix: Option<Nlri>) -> Value {
    let Some(speaker) = ctl.speaker else {
        return ok(json!([]));
    };
    let (reply, rx) = oneshot::channel();
    if let Err(e) = ask(speaker, SpeakerCmd::Routes { prefix, reply }) {
        return e;
    }
    let Ok(list) = rx.await else {
        return error("the BGP speaker is not running");
    };
    // A full table is not listed whole: the first routes, and how many there are.
    if prefix.is_none() && list.len() == interlink_bgp::speaker::SHOW_ROUTES_MAX {
        let total = ctl.fib.snapshot().stats.installed.total();
        let mut v = routes_json(list);
        if let Value::Array(a) = &mut v {
            a.push(json!({ "truncated": true, "fib_routes": total }));
        }
        return ok(v);
    }
    ok(routes_json(list))
}

fn routes_json(list: Vec<interlink_bgp::speaker::RouteView>) -> Value {
    Value::Array(
        list.into_iter()
            .map(|r| {
                let a = &r.attrs;
                json!({
                    "prefix": r.prefix.to_string(),
                    "best": r.best,
                    "from": r.from.map_or("local".to_owned(), |a| a.to_string()),
                    "next_hops": r.next_hops.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    "as_path": as_path(&a.as_path),
                    "origin": a.origin.map(|o| format!("{o:?}").to_lowercase()),
                    "local_pref": a.local_pref,
                    "med": a.med,
                    "communities": a.communities.iter()
                        .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                        .collect::<Vec<_>>(),
                    "large_communities": a.large_communities.iter()
                        .map(|c| format!("{}:{}:{}", c[0], c[1], c[2]))
                        .collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

async fn neighbor(ctl: &Ctl<'_>, addr: &str, op: &str) -> Value {
    let Ok(address) = addr.parse::<IpAddr>() else {
        return error(format!("{addr:?} is not an IP address"));
    };
    let Some(speaker) = ctl.speaker else {
        return error("no BGP: the configuration has no [router]");
    };
    let op = match op {
        "reset" => NeighborOp::Reset,
        "shutdown" => NeighborOp::Shutdown("shut down by the operator (interlinkctl)".into()),
        _ => NeighborOp::Enable,
    };
    let (reply, rx) = oneshot::channel();
    if let Err(e) = ask(speaker, SpeakerCmd::Neighbor { address, op, reply }) {
        return e;
    }
    match rx.await {
        Ok(Ok(())) => ok(json!({ "neighbor": address.to_string() })),
        Ok(Err(e)) => error(e),
        Err(_) => error("the BGP speaker is not running"),
    }
}

fn replace_cak(ctl: &mut Ctl<'_>, name: &str) -> Value {
    on_mka(ctl, name, "it has no CAK", MkaRun::replace_cak_now)
}

fn rekey(ctl: &mut Ctl<'_>, name: &str) -> Value {
    on_mka(
        ctl,
        name,
        "a new SAK goes in its key files, then reload",
        |m| m.request_rekey().map_err(String::from),
    )
}

/// `act` on link `name`'s MKA; a statically keyed link is refused with `instead`.
fn on_mka(
    ctl: &mut Ctl<'_>,
    name: &str,
    instead: &str,
    act: impl FnOnce(&mut MkaRun) -> Result<(), String>,
) -> Value {
    let Some(run) = ctl.links.iter_mut().find(|l| l.cfg.name == name) else {
        return error(format!("no link named {name:?}"));
    };
    let Some(m) = run.mka.as_mut() else {
        return error(format!("link {name} is keyed statically: {instead}"));
    };
    match act(m) {
        Ok(()) => ok(json!({ "link": name })),
        Err(e) => error(format!("link {name}: {e}")),
    }
}

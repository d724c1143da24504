//! The configuration as the libraries take it: a `[[link]]` as a `LinkSpec`, `[router]`,
//! `[[neighbor]]` and `[bgp]` as the speaker's configuration, `[[route]]` and BGP's best
//! routes as FIB routes.

use std::path::Path;

use interlink_bgp::policy::{Match, Set};
use interlink_bgp::speaker;
use interlink_config::{Config, Keying, Link as LinkConfig, StaticRoute, StaticTarget, Transport};
use interlink_dataplane::{LinkSpec, SaKeys, StaticSas, Underlay};
use interlink_fib::{FibService, NextHop, Route, Target};
use interlink_macsec::{Backend, RxConfig};

/// Where a static-keyed link keeps its PNs across restarts.
pub(crate) fn pn_state_file(state_dir: &Path, link: &str) -> std::path::PathBuf {
    state_dir.join(format!("{link}.pn"))
}

/// Starts the FIB on `[fib]`'s table, metric and protocol (adopting what is ours there),
/// with or without nexthop objects as it says.
pub(crate) fn start_fib(
    config: &Config,
) -> Result<(FibService, Target), interlink_fib::DriverError> {
    let target = Target {
        table: config.fib.table,
        metric: config.fib.metric,
        protocol: config.fib.protocol,
    };
    let opts = interlink_fib::driver::Options {
        nexthop_objects: config.fib.nexthop_objects,
        ..Default::default()
    };
    Ok((FibService::start(target, 4096, opts)?, target))
}

/// What the data plane needs from a `[[link]]`.
pub(crate) fn spec(link: &LinkConfig, state_dir: &Path) -> LinkSpec {
    let underlay = match &link.transport {
        Transport::Udp { local, remote } => Underlay::Udp {
            local: *local,
            remote: *remote,
        },
        Transport::Ethernet { underlay, peer_mac } => Underlay::Ethernet {
            ifname: underlay.clone(),
            peer_mac: peer_mac.0,
        },
    };
    let (sci, peer_sci, port, keys) = match &link.macsec.keying {
        Keying::Static(k) => {
            let (tx_xpn, rx_xpn) = match &k.xpn {
                Some(x) => (Some((x.tx_ssci, x.salt)), Some((x.rx_ssci, x.salt))),
                None => (None, None),
            };
            let sas = StaticSas {
                tx_an: k.an,
                rx_an: k.rx_an,
                tx: SaKeys {
                    sak: k.tx_sak.clone(),
                    xpn: tx_xpn,
                },
                rx: SaKeys {
                    sak: k.rx_sak.clone(),
                    xpn: rx_xpn,
                },
                state: pn_state_file(state_dir, &link.name),
            };
            (k.sci, k.peer_sci, k.port, Some(sas))
        }
        // MKA installs the SAs: until then nothing is sent, and nothing in the clear.
        Keying::Mka(m) => (m.sci, m.peer_sci, m.port, None),
    };
    LinkSpec {
        name: link.name.clone(),
        ifname: link.interface.clone(),
        underlay,
        suite: link.macsec.cipher_suite,
        backend: Backend::default(),
        sci,
        peer_sci,
        port,
        rx: RxConfig {
            validate_frames: link.macsec.validate,
            replay_protect: true,
            replay_window: link.macsec.replay_window,
        },
        mtu: link.mtu,
        probe_interval: link.probe_interval,
        queues: link.queues_for(std::thread::available_parallelism().map_or(1, |n| n.get())),
        bandwidth: link.bandwidth,
        busy_poll: link.busy_poll,
        reattach: false,
        flows: None,
        keys,
    }
}

/// A best BGP route as the FIB takes it: through its next hops (our own networks are not
/// installed: they are reachable here already); one next hop with a backup is protected
/// (BGP PIC edge: the FIB moves it to the backup at once when the next hop fails).
pub(crate) fn fib_route(b: &interlink_bgp::rib::Best) -> Option<Route> {
    match (b.next_hops.as_slice(), b.backup) {
        ([nh], Some(backup)) => Some(Route::protected(NextHop::via(*nh), NextHop::via(backup))),
        _ => Route::unicast(b.next_hops.iter().map(|nh| NextHop::via(*nh)).collect()),
    }
}

pub(crate) fn filters(list: &[interlink_config::PrefixMatch]) -> Vec<speaker::PrefixFilter> {
    list.iter()
        .map(|m| speaker::PrefixFilter {
            prefix: m.prefix,
            ge: m.ge,
            le: m.le,
        })
        .collect()
}

/// What the BGP speaker takes from `[router]`, `[[neighbor]]` and `[bgp]`.
pub(crate) fn speaker_config(
    config: &Config,
    r: &interlink_config::Router,
) -> speaker::SpeakerConfig {
    speaker::SpeakerConfig {
        local_as: r.asn,
        router_id: r.router_id,
        neighbors: config
            .neighbors
            .iter()
            .map(|n| speaker::Neighbor {
                address: n.address,
                port: n.port,
                remote_as: n.remote_asn,
                hold_time: n.hold_time,
                passive: n.passive,
                md5: n.password.clone(),
                local_address: n.local_address,
                ttl_security: n.ttl_security,
                import: n.import.as_ref().map(|i| speaker::ImportPolicy {
                    prefixes: filters(&i.prefixes),
                    matching: Match {
                        communities: i.match_communities.clone(),
                        large_communities: i.match_large_communities.clone(),
                    },
                    set: Set {
                        communities: i.communities.clone(),
                        large_communities: i.large_communities.clone(),
                        local_pref: i.local_pref,
                        med: i.med,
                        prepend: 0,
                    },
                    max_prefixes: i.max_prefixes,
                    max_received: i.max_received,
                    soft_reconfiguration: i.soft_reconfiguration,
                    warn_only: i.max_prefixes_warn_only,
                    max_prefixes_restart: i.max_prefixes_restart,
                }),
                export: n.export.as_ref().map(|e| speaker::ExportPolicy {
                    networks: e.networks,
                    prefixes: filters(&e.prefixes),
                    matching: Match {
                        communities: e.match_communities.clone(),
                        large_communities: e.match_large_communities.clone(),
                    },
                    set: Set {
                        communities: e.communities.clone(),
                        large_communities: e.large_communities.clone(),
                        local_pref: None,
                        med: e.med,
                        prepend: e.prepend,
                    },
                }),
                families: n
                    .families
                    .iter()
                    .map(|f| match f {
                        interlink_config::Afi::Ipv4 => interlink_bgp::wire::Family::IPV4_UNICAST,
                        interlink_config::Afi::Ipv6 => interlink_bgp::wire::Family::IPV6_UNICAST,
                    })
                    .collect(),
            })
            .collect(),
        networks: config.bgp.networks.clone(),
        multipath: config.bgp.multipath,
        listen_port: 179,
        restart_time: config.fib.graceful_restart.as_secs().min(4095) as u16,
        restarting: false,
    }
}

/// A static route as the FIB takes it; interface names are looked up now, so the links'
/// interfaces exist.
pub(crate) fn static_route(r: &StaticRoute) -> Result<Route, String> {
    let index = |name: &str| {
        interlink_fib::sock::if_index(name).map_err(|e| format!("interface {name}: {e}"))
    };
    Ok(match &r.target {
        StaticTarget::Blackhole => Route::Blackhole,
        StaticTarget::Unreachable => Route::Unreachable,
        StaticTarget::Dev(dev) => Route::Unicast(vec![NextHop::dev(index(dev)?)]),
        StaticTarget::Via { gateways, dev } => {
            let ifindex = dev.as_deref().map(index).transpose()?;
            Route::Unicast(
                gateways
                    .iter()
                    .map(|g| NextHop {
                        ifindex,
                        ..NextHop::via(*g)
                    })
                    .collect(),
            )
        }
    })
}

/// The BFD sessions the configuration asks for: one per neighbor with `bfd`.
pub(crate) fn bfd_peers(config: &Config) -> Vec<interlink_bfd::Peer> {
    config
        .neighbors
        .iter()
        .filter_map(|n| {
            n.bfd.as_ref().map(|b| interlink_bfd::Peer {
                peer: n.address,
                config: interlink_bfd::SessionConfig {
                    interval: b.interval,
                    detect_mult: b.multiplier,
                    passive: false,
                    // The config checked the key's length.
                    auth: b.auth.as_ref().and_then(|a| {
                        interlink_bfd::AuthKey::new(a.key_id, a.key.as_bytes(), a.meticulous)
                    }),
                },
            })
        })
        .collect()
}

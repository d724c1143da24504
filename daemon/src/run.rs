//! The daemon proper: read the configuration, bring the links up, run until told to stop.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::mka::MkaRun;
use interlink_bgp::policy::{Match, Set};
use interlink_bgp::speaker::{self, Severity, SpeakerCmd, SpeakerEvent};
use interlink_bgp::update::Nlri;
use interlink_config::{
    Config, Keying, Link as LinkConfig, OnShutdown, StaticRoute, StaticTarget, Transport,
};
use interlink_dataplane::{netlink, Link, LinkSpec, SaKeys, StaticSas, Underlay};
use interlink_fib::{FibEvent, FibService, NextHop, Prefix, Route, Target};
use interlink_macsec::{Backend, RxConfig};
use tokio::signal::unix::{signal, SignalKind};

pub fn main(path: &Path, check: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    if check {
        println!(
            "{}: ok, {} link(s), {} static route(s)",
            path.display(),
            config.links.len(),
            config.routes.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            warn!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(serve(path, config))
}

/// Where a static-keyed link keeps its PNs across restarts.
pub fn pn_state_file(state_dir: &Path, link: &str) -> std::path::PathBuf {
    state_dir.join(format!("{link}.pn"))
}

/// What the data plane needs from a `[[link]]`.
fn spec(link: &LinkConfig, state_dir: &Path) -> LinkSpec {
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
        queues: link.queues,
        bandwidth: link.bandwidth,
        busy_poll: link.busy_poll,
        keys,
    }
}

async fn bring_up(
    handle: &rtnetlink::Handle,
    link: &LinkConfig,
    state_dir: &Path,
) -> Result<Link, String> {
    let running = Link::start(spec(link, state_dir)).map_err(|e| e.to_string())?;
    let addresses: Vec<_> = link
        .addresses
        .iter()
        .map(|a| (a.addr, a.prefix_len))
        .collect();
    netlink::configure(handle, running.ifindex(), running.mtu(), &addresses)
        .await
        .map_err(|e| format!("configure {}: {e}", link.interface))?;
    Ok(running)
}

/// A running link, its MKA and what was last logged of it.
pub struct LinkRun {
    pub cfg: LinkConfig,
    pub link: Link,
    pub mka: Option<MkaRun>,
    was_up: bool,
    /// The peer has answered probes at some time: from then on, the link's liveness says
    /// whether next hops across it can be reached (a peer that never answers, such as a
    /// kernel `ip macsec` one, is not taken as down).
    ever_up: bool,
    /// Failed writes of the PN state already logged.
    state_errors: u64,
}

impl LinkRun {
    async fn start(
        handle: &rtnetlink::Handle,
        l: &LinkConfig,
        state_dir: &Path,
    ) -> Result<LinkRun, String> {
        let mut link = bring_up(handle, l, state_dir).await?;
        let mka = crate::mka::start(&mut link, l)
            .transpose()
            .map_err(|e| format!("MKA: {e}"))?;
        let resume = match (&l.macsec.keying, link.tx_pn()) {
            (Keying::Static(_), Some((_, pn))) => format!(
                ", sending from PN {pn} ({})",
                pn_state_file(state_dir, &l.name).display()
            ),
            _ => String::new(),
        };
        log!(
            "link {}: {} up, mtu {}, {} ({}), SCI {} to {}{resume}",
            link.name(),
            link.ifname(),
            link.mtu(),
            l.macsec.cipher_suite,
            Backend::default(),
            link.sci(),
            link.peer_sci()
        );
        Ok(LinkRun {
            cfg: l.clone(),
            link,
            mka,
            was_up: false,
            ever_up: false,
            state_errors: 0,
        })
    }

    /// Stops the workers and removes the interface, with a line of what it carried.
    fn stop(self) {
        let name = self.link.name().to_owned();
        let c = self.link.counters();
        self.link.stop();
        let secy: Vec<String> = c
            .secy_tx
            .entries()
            .chain(c.secy_rx.entries())
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        log!(
            "link {name}: stopped; sent {} packets, received {}, dropped {}; {}",
            c.link.underlay_tx_packets,
            c.secy_rx.in_pkts_ok,
            c.secy_rx.dropped(),
            secy.join(" ")
        );
    }
}

/// A turn of MKA on every link that runs it; if MKPDUs are left (a flood), another turn is
/// asked for, after whatever else the main loop has waiting.
fn mka_turns(links: &mut [LinkRun]) {
    let mut more = false;
    for l in links.iter_mut() {
        if let Some(m) = &mut l.mka {
            more |= m.turn(&mut l.link);
        }
    }
    if more {
        crate::mka::WAKE.notify_one();
    }
}

/// Interfaces down and their networks, from the FIB's kernel events, and what BGP was told.
#[derive(Default)]
struct Reachability {
    nets: std::collections::HashMap<u32, Vec<Prefix>>,
    down: std::collections::HashSet<u32>,
    sent: Vec<Nlri>,
}

impl Reachability {
    fn track(&mut self, e: &FibEvent) {
        match e {
            FibEvent::AddressAdded {
                ifindex, prefix, ..
            } => {
                let v = self.nets.entry(*ifindex).or_default();
                if !v.contains(prefix) {
                    v.push(*prefix);
                }
            }
            FibEvent::AddressRemoved {
                ifindex, prefix, ..
            } => {
                if let Some(v) = self.nets.get_mut(ifindex) {
                    v.retain(|p| p != prefix);
                }
            }
            FibEvent::LinkDown { ifindex, .. } => {
                self.down.insert(*ifindex);
            }
            FibEvent::LinkUp { ifindex, .. } => {
                self.down.remove(ifindex);
            }
            _ => {}
        }
    }
}

/// The networks next hops cannot be reached through now, sorted.
fn unreachable_nets(links: &[LinkRun], reach: &Reachability) -> Vec<Nlri> {
    let mut nets: Vec<Nlri> = reach
        .down
        .iter()
        .flat_map(|i| reach.nets.get(i).into_iter().flatten())
        .map(nlri)
        .collect();
    for run in links {
        if run.ever_up && !run.link.liveness().up {
            for a in &run.cfg.addresses {
                if let Ok(p) = Prefix::new(a.addr, a.prefix_len) {
                    nets.push(nlri(&p));
                }
            }
        }
    }
    nets.sort_by_key(|n| (n.addr, n.len));
    nets.dedup();
    nets
}

/// Whether two configs of a link differ only in their MKA keychain, which MKA takes while
/// running.
/// What a reload can change on a running link: its MKA keychain and its busy poll. `None` if
/// anything else differs, and the link must restart.
fn in_place_changes(a: &LinkConfig, b: &LinkConfig) -> Option<InPlace> {
    let mut b2 = b.clone();
    b2.busy_poll = a.busy_poll;
    let keychain = match (&a.macsec.keying, &mut b2.macsec.keying) {
        (Keying::Mka(ka), Keying::Mka(kb)) if ka.keys != kb.keys => {
            kb.keys = ka.keys.clone();
            true
        }
        _ => false,
    };
    (*a == b2).then_some(InPlace {
        keychain,
        busy_poll: a.busy_poll != b.busy_poll,
    })
}

struct InPlace {
    keychain: bool,
    busy_poll: bool,
}

/// A reload of `[[link]]`: links gone are stopped, new ones started, changed ones restarted,
/// except that a new MKA keychain is handed to the running KaY (a CAK rollover loses
/// nothing) and a new busy poll to the running workers. Links not changed are not touched.
async fn reload_links(
    handle: &rtnetlink::Handle,
    links: &mut Vec<LinkRun>,
    new: &Config,
    state_dir: &Path,
) {
    let mut kept = Vec::new();
    for mut run in std::mem::take(links) {
        let Some(l) = new.links.iter().find(|l| l.name == run.cfg.name) else {
            log!("reload: link {}: removed", run.cfg.name);
            run.stop();
            continue;
        };
        let Some(change) = in_place_changes(&run.cfg, l) else {
            log!("reload: link {}: changed; restarting it", run.cfg.name);
            run.stop();
            continue;
        };
        if change.busy_poll {
            run.link.set_busy_poll(l.busy_poll);
            run.cfg.busy_poll = l.busy_poll;
            log!("reload: link {}: busy_poll {:?}", l.name, l.busy_poll);
        }
        if change.keychain {
            if let (Some(m), Keying::Mka(keys)) = (&mut run.mka, &l.macsec.keying) {
                match m.set_keys(&mut run.link, keys) {
                    Ok(()) => {
                        log!(
                            "reload: link {}: keychain of {} key(s)",
                            l.name,
                            keys.keys.len()
                        );
                        run.cfg = l.clone();
                    }
                    Err(e) => warn!("reload: link {}: keychain not taken: {e}", l.name),
                }
            }
        }
        kept.push(run);
    }
    // In the new config's order; the kept ones as they are, the others started.
    for l in &new.links {
        if let Some(i) = kept.iter().position(|r| r.cfg.name == l.name) {
            links.push(kept.swap_remove(i));
            continue;
        }
        match LinkRun::start(handle, l, state_dir).await {
            Ok(run) => links.push(run),
            Err(e) => warn!("reload: link {}: {e}", l.name),
        }
    }
}

/// A reload of `[[route]]`: routes gone are withdrawn, new and changed ones installed.
fn reload_routes(fib: &FibService, old: &Config, new: &Config) {
    for r in &old.routes {
        if !new.routes.iter().any(|n| n.prefix == r.prefix) {
            fib.set(r.prefix, None);
        }
    }
    for r in &new.routes {
        if old.routes.iter().any(|o| o == r) {
            continue;
        }
        match static_route(r) {
            Ok(route) => fib.set(r.prefix, Some(route)),
            Err(e) => warn!("reload: route {}: {e}; not installed", r.prefix),
        }
    }
}

/// Reads the configuration again and applies what changed. On errors the running
/// configuration stays and the errors come back, one per line; otherwise what could not be
/// applied comes back as notes.
pub async fn reload(ctl: &mut crate::commands::Ctl<'_>) -> Result<Vec<String>, String> {
    let new = match Config::load(ctl.path) {
        Err(errors) => {
            for e in &errors.0 {
                warn!("reload: {e}");
            }
            warn!("reload: the new configuration has errors; the running one stays");
            return Err(errors.to_string());
        }
        Ok(new) => new,
    };
    let old = &*ctl.config;
    reload_links(ctl.handle, ctl.links, &new, &old.state_dir).await;
    reload_routes(ctl.fib, old, &new);
    let mut notes = Vec::new();
    // BGP: the speaker takes the difference itself.
    let bgp_changed =
        old.router != new.router || old.neighbors != new.neighbors || old.bgp != new.bgp;
    match (&new.router, ctl.speaker) {
        (Some(r), Some(speaker)) if bgp_changed => {
            let cfg = speaker_config(&new, r);
            let _ = speaker.send(SpeakerCmd::Reconfigure(Box::new(cfg)));
        }
        (new_router, speaker) if new_router.is_some() != speaker.is_some() => notes
            .push("[router] added or removed; BGP starts or stops at the next restart".to_owned()),
        _ => {}
    }
    // [fib]: the slot of interlink's routes (table, metric, protocol) cannot move under
    // them; how long a restart waits and what shutdown does are read when they happen.
    if (old.fib.table, old.fib.metric, old.fib.protocol)
        != (new.fib.table, new.fib.metric, new.fib.protocol)
    {
        notes.push(
            "[fib] table, metric or protocol changed; that takes effect at the next restart".into(),
        );
    }
    if old.metrics_listen != new.metrics_listen {
        match new.metrics_listen {
            Some(listen) => match crate::metrics::serve(listen, ctl.scrapes.clone()).await {
                Ok(task) => {
                    if let Some((_, t)) = ctl.metrics.replace((listen, task)) {
                        t.abort();
                    }
                    log!("reload: metrics on http://{listen}/metrics");
                }
                Err(e) => notes.push(format!(
                    "[metrics] cannot listen on {listen}: {e}; the old address stays"
                )),
            },
            None => {
                if let Some((_, t)) = ctl.metrics.take() {
                    t.abort();
                }
                log!("reload: metrics no longer served");
            }
        }
    }
    if old.control_socket != new.control_socket {
        notes.push("[control] socket changed; that takes effect at the next restart".into());
    }
    if old.state_dir != new.state_dir {
        notes.push("[daemon] state_dir changed; that takes effect at the next restart".into());
    }
    for n in &notes {
        log!("reload: {n}");
    }
    // What was not applied stays as it was, so that the next reload compares with what runs.
    let mut applied = new;
    applied.metrics_listen = ctl.metrics.as_ref().map(|(a, _)| *a);
    let old = &*ctl.config;
    applied.fib.table = old.fib.table;
    applied.fib.metric = old.fib.metric;
    applied.fib.protocol = old.fib.protocol;
    applied.control_socket = old.control_socket.clone();
    applied.state_dir = old.state_dir.clone();
    if applied.router.is_some() != ctl.speaker.is_some() {
        applied.router = old.router.clone();
        applied.neighbors = old.neighbors.clone();
        applied.bgp = old.bgp.clone();
    }
    *ctl.config = applied;
    log!("reload: done");
    Ok(notes)
}

/// A best BGP route as the FIB takes it: through its next hops (our own networks are not
/// installed: they are reachable here already).
fn fib_route(b: &interlink_bgp::rib::Best) -> Option<Route> {
    Route::unicast(b.next_hops.iter().map(|nh| NextHop::via(*nh)).collect())
}

fn nlri(p: &Prefix) -> Nlri {
    Nlri {
        addr: p.addr(),
        len: p.prefix_len(),
    }
}

fn filters(list: &[interlink_config::PrefixMatch]) -> Vec<speaker::PrefixFilter> {
    list.iter()
        .map(|m| speaker::PrefixFilter {
            prefix: nlri(&m.prefix),
            ge: m.ge,
            le: m.le,
        })
        .collect()
}

/// What the BGP speaker takes from `[router]`, `[[neighbor]]` and `[bgp]`.
fn speaker_config(config: &Config, r: &interlink_config::Router) -> speaker::SpeakerConfig {
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
        networks: config.bgp.networks.iter().map(nlri).collect(),
        multipath: config.bgp.multipath,
        listen_port: 179,
        restart_time: config.fib.graceful_restart.as_secs().min(4095) as u16,
        restarting: false,
    }
}

/// A static route as the FIB takes it; interface names are looked up now, so the links'
/// interfaces exist.
fn static_route(r: &StaticRoute) -> Result<Route, String> {
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

fn log_fib_event(e: &FibEvent, target: &Target) {
    match e {
        FibEvent::Failed {
            prefix,
            op,
            errno,
            message,
        } => warn!(
            "fib: {prefix}: {op:?} refused by the kernel: {}{}",
            std::io::Error::from_raw_os_error(*errno),
            message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
        FibEvent::Conflict { prefix } => warn!(
            "fib: {prefix}: a route that interlink does not own holds table {} metric {}; \
             left alone, ours not installed",
            target.table, target.metric
        ),
        FibEvent::Repaired { prefix } => {
            warn!("fib: {prefix}: deleted from outside; installing it again")
        }
        FibEvent::LinkDown { ifindex, name } => {
            warn!("fib: interface {name} (#{ifindex}) down: next hops through it are gone")
        }
        FibEvent::LinkUp { ifindex, name } => log!("fib: interface {name} (#{ifindex}) up"),
        FibEvent::AddressAdded { .. } | FibEvent::AddressRemoved { .. } => {}
    }
}

async fn serve(path: &Path, mut config: Config) -> ExitCode {
    let (connection, handle, _) = match rtnetlink::new_connection() {
        Ok(c) => c,
        Err(e) => {
            warn!("cannot open rtnetlink: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::spawn(connection);
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            warn!("cannot install signal handlers");
            return ExitCode::from(1);
        }
    };

    let mut links: Vec<LinkRun> = Vec::new();
    for l in &config.links {
        match LinkRun::start(&handle, l, &config.state_dir).await {
            Ok(run) => links.push(run),
            Err(e) => {
                warn!("link {}: {e}", l.name);
                // Links already up are stopped (and their interfaces removed) on return.
                return ExitCode::from(1);
            }
        }
    }

    let target = Target {
        table: config.fib.table,
        metric: config.fib.metric,
        protocol: config.fib.protocol,
    };
    let fib = match FibService::start(target, 4096) {
        Ok(f) => f,
        Err(e) => {
            warn!("fib: cannot reach the kernel's routing tables: {e}");
            return ExitCode::from(1);
        }
    };
    let adopted = fib.snapshot().stale;
    log!(
        "fib: table {}, metric {}, protocol {}; {adopted} route(s) of a previous run adopted",
        target.table,
        target.metric,
        target.protocol
    );
    for r in &config.routes {
        match static_route(r) {
            Ok(route) => fib.set(r.prefix, Some(route)),
            Err(e) => warn!("route {}: {e}; not installed", r.prefix),
        }
    }
    // BGP, if configured. The routes adopted from a previous run go once the sources have
    // converged: at once for static routes alone, at BGP's End-of-RIB from every peer
    // otherwise, or when [fib] graceful_restart runs out.
    let (bgp_stop, bgp_stop_rx) = tokio::sync::watch::channel(None);
    let (speaker_cmds, speaker_cmds_rx) = tokio::sync::mpsc::unbounded_channel();
    let (bgp_tx, mut bgp_rx) = tokio::sync::mpsc::unbounded_channel();
    let bgp_task = config.router.as_ref().map(|r| {
        tokio::spawn(speaker::run(
            speaker::SpeakerConfig {
                restarting: adopted > 0,
                ..speaker_config(&config, r)
            },
            bgp_tx,
            bgp_stop_rx,
            speaker_cmds_rx,
        ))
    });
    let mut swept = false;
    if bgp_task.is_none() {
        fib.sweep();
        swept = true;
    }
    let sweep_at = tokio::time::Instant::now() + config.fib.graceful_restart;
    // Once BGP has converged, one line says when the kernel holds all it learnt.
    let mut synced_logged = bgp_task.is_none();
    let mut sync_check = tokio::time::interval(Duration::from_millis(20));
    log!(
        "running with {} link(s), {} static route(s) and {} BGP neighbor(s)",
        links.len(),
        config.routes.len(),
        config.neighbors.len()
    );
    // Prometheus metrics, rendered by this loop for each scrape.
    let registry = crate::metrics::Metrics::new();
    let (scrapes, mut scrape_rx) = tokio::sync::mpsc::channel(16);
    let mut metrics_server = None;
    if let Some(listen) = config.metrics_listen {
        match crate::metrics::serve(listen, scrapes.clone()).await {
            Ok(task) => {
                metrics_server = Some((listen, task));
                log!("metrics on http://{listen}/metrics")
            }
            Err(e) => {
                warn!("metrics: cannot listen on {listen}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    let notifier = crate::notify::Notifier::from_env();
    notifier.notify(&format!(
        "READY=1\nSTATUS=running with {} link(s) and {} BGP neighbor(s)",
        links.len(),
        config.neighbors.len()
    ));
    // Fed from this loop: if it stops turning, systemd restarts the daemon.
    let mut watchdog = tokio::time::interval(
        crate::notify::Notifier::watchdog_interval().unwrap_or(Duration::from_secs(3600)),
    );

    // The control socket, for interlinkctl. Not having one is worth a line, not a stop.
    let started = std::time::Instant::now();
    let (ctl_tx, mut ctl_rx) = tokio::sync::mpsc::channel::<crate::control::Request>(16);
    let _ctl_cleanup = match crate::control::bind(&config.control_socket).await {
        Ok(l) => {
            crate::control::serve(l, ctl_tx);
            log!("control: socket {}", config.control_socket.display());
            Some(crate::control::Cleanup(config.control_socket.clone()))
        }
        Err(e) => {
            warn!(
                "control socket {}: {e}; interlinkctl will not reach this daemon",
                config.control_socket.display()
            );
            None
        }
    };

    let mut reach = Reachability::default();
    // The main loop's state, borrowed for an interlinkctl command or a reload.
    macro_rules! ctl {
        () => {
            crate::commands::Ctl {
                path,
                handle: &handle,
                links: &mut links,
                fib: &fib,
                target,
                config: &mut config,
                speaker: bgp_task.as_ref().map(|_| &speaker_cmds),
                started,
                metrics: &mut metrics_server,
                scrapes: &scrapes,
            }
        };
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        // MKA runs when an MKPDU arrives (crate::mka::WAKE) and when a KaY's timer is due.
        let mka_due = links
            .iter()
            .filter_map(|l| l.mka.as_ref()?.next_timer())
            .min()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            Some(e) = bgp_rx.recv() => match e {
                SpeakerEvent::Best(changes) => {
                    fib.set_many(
                        changes
                            .into_iter()
                            .filter_map(|c| {
                                let p = Prefix::new(c.prefix.addr, c.prefix.len).ok()?;
                                Some((p, c.best.and_then(|b| fib_route(&b))))
                            })
                            .collect(),
                    );
                }
                SpeakerEvent::PeerUp { address, asn } => {
                    log!("bgp: {address} (AS {asn}) established")
                }
                SpeakerEvent::PeerDown { address, why } => {
                    warn!("bgp: {address} down: {why}")
                }
                SpeakerEvent::Log { severity: Severity::Warning, text } => warn!("{text}"),
                SpeakerEvent::Log { severity: Severity::Info, text } => log!("{text}"),
                SpeakerEvent::Converged => {
                    if !swept {
                        log!("bgp: converged (End-of-RIB from every peer)");
                        fib.sweep();
                        swept = true;
                    }
                }
            },
            _ = sync_check.tick(), if swept && !synced_logged => {
                if fib.in_sync() {
                    synced_logged = true;
                    let s = fib.snapshot().stats;
                    log!(
                        "fib: in sync with BGP: {} IPv4 and {} IPv6 route(s) in the kernel",
                        s.installed[0],
                        s.installed[1]
                    );
                }
            }
            _ = tokio::time::sleep_until(sweep_at), if !swept => {
                log!("fib: graceful restart time over; sweeping routes of the previous run");
                fib.sweep();
                swept = true;
            }
            _ = watchdog.tick() => notifier.notify("WATCHDOG=1"),
            _ = crate::mka::WAKE.notified() => mka_turns(&mut links),
            _ = tokio::time::sleep_until(mka_due.unwrap_or_else(tokio::time::Instant::now)), if mka_due.is_some() => {
                mka_turns(&mut links)
            }
            Some(req) = ctl_rx.recv() => {
                let mut ctl = ctl!();
                let answer = crate::commands::answer(&req.line, &mut ctl).await;
                let _ = req.reply.send(answer);
            }
            _ = hup.recv() => {
                notifier.reloading();
                let mut ctl = ctl!();
                let _ = reload(&mut ctl).await;
                notifier.notify(&format!(
                    "READY=1\nSTATUS=running with {} link(s) and {} BGP neighbor(s)",
                    links.len(),
                    config.neighbors.len()
                ));
            }
            Some(reply) = scrape_rx.recv() => {
                let snap = fib.snapshot();
                // The speaker answers from its own task; counts are kept as they change.
                let mut neighbors = Vec::new();
                if bgp_task.is_some() {
                    let (answer, rx) = tokio::sync::oneshot::channel();
                    if speaker_cmds.send(SpeakerCmd::Neighbors(answer)).is_ok() {
                        neighbors = rx.await.unwrap_or_default();
                    }
                }
                let families = crate::metrics::render(&crate::metrics::Snapshot {
                    links: links
                        .iter()
                        .map(|l| crate::metrics::LinkView {
                            name: l.link.name(),
                            interface: l.link.ifname(),
                            transport: match l.cfg.transport {
                                Transport::Udp { .. } => "udp",
                                Transport::Ethernet { .. } => "ethernet",
                            },
                            cipher_suite: l.cfg.macsec.cipher_suite.name(),
                            aes_gcm: Backend::default().name(),
                            counters: l.link.counters(),
                            liveness: l.link.liveness(),
                            rekeys: l.mka.as_ref().map_or(0, |m| m.tx_switches.saturating_sub(1)),
                            tun_tx_dropped: l.link.tun_tx_dropped(),
                            mka_live: l.mka.as_ref().map(|m| m.live),
                            mka: l.mka.as_ref().map(|m| m.metrics(&l.link)),
                        })
                        .collect(),
                    fib: &snap,
                    fib_table: target.table,
                    neighbors,
                });
                let _ = reply.send(registry.encode(families));
            }
            _ = tick.tick() => {
                // A link whose TUN interface was deleted from outside: its workers have
                // stopped; it starts again, with a new interface.
                let mut i = 0;
                while i < links.len() {
                    if !links[i].link.tun_gone() {
                        i += 1;
                        continue;
                    }
                    let run = links.remove(i);
                    let cfg = run.cfg.clone();
                    warn!(
                        "link {}: its interface {} was deleted from outside; the link is down, restarting it",
                        cfg.name, cfg.interface
                    );
                    run.stop();
                    match LinkRun::start(&handle, &cfg, &config.state_dir).await {
                        Ok(run) => {
                            links.insert(i, run);
                            i += 1;
                        }
                        Err(e) => warn!("link {}: cannot start it again: {e}; a reload tries again", cfg.name),
                    }
                }
                for e in fib.events() {
                    log_fib_event(&e, &target);
                    reach.track(&e);
                }
                for run in links.iter_mut() {
                    let (errors, last) = run.link.state_errors();
                    if errors > run.state_errors {
                        run.state_errors = errors;
                        warn!(
                            "link {}: cannot reserve packet numbers: {}; the link stops sending once the reserved ones are used",
                            run.link.name(),
                            last.unwrap_or_default()
                        );
                    }
                    let l = run.link.liveness();
                    if l.up != run.was_up {
                        match l.last_rtt {
                            Some(rtt) if l.up => log!("link {}: peer reachable, rtt {:?}", run.link.name(), rtt),
                            _ => warn!("link {}: peer unreachable", run.link.name()),
                        }
                        run.was_up = l.up;
                        run.ever_up |= l.up;
                    }
                }
                // Next hops that cannot be reached: across links whose peer stopped
                // answering, and on interfaces the kernel has down. BGP is told when that
                // changes (RFC 4271 §9.1.2.1).
                if bgp_task.is_some() {
                    let nets = unreachable_nets(&links, &reach);
                    if nets != reach.sent {
                        reach.sent = nets.clone();
                        let _ = speaker_cmds.send(SpeakerCmd::Unreachable(nets));
                    }
                }
            }
        }
    }
    log!("stopping");
    notifier.notify("STOPPING=1");
    if let Some(t) = bgp_task {
        let _ = bgp_stop.send(Some("interlinkd is stopping".into()));
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let withdraw = config.fib.on_shutdown == OnShutdown::Withdraw;
    match fib.stop(withdraw, Duration::from_secs(30)) {
        Ok(s) => log!(
            "fib: stopped; {} route(s) {}",
            s.stats.installed[0] + s.stats.installed[1],
            if withdraw {
                "left after the withdrawal"
            } else {
                "kept in the kernel"
            }
        ),
        Err(e) => warn!("fib: {e}"),
    }
    for run in links {
        run.stop();
    }
    ExitCode::SUCCESS
}

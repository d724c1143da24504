//! The daemon proper: read the configuration, bring the links up, run until told to stop.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use interlink_bgp::speaker::{self, Severity, SpeakerCmd, SpeakerEvent};
use interlink_bgp::update::Nlri;
use interlink_config::{Config, OnShutdown, Transport};
use interlink_fib::{FibEvent, FibService, Prefix, Reachability, Target};
use interlink_macsec::Backend;
use tokio::signal::unix::{signal, SignalKind};

use crate::links::{mka_turns, LinkRun};

/// IPFIX templates go again this often (RFC 7011 §8.4: over UDP a collector that started
/// late, or lost them, learns them again).
const FLOW_TEMPLATE_REFRESH: Duration = Duration::from_secs(30);
/// Batches of ended flows waiting for the exporter, at most; past it they are dropped and
/// counted (a worker never waits on it).
const FLOW_QUEUE: usize = 1024;

/// Commands waiting for the BGP speaker: more than the control socket's clients (32) and the
/// scrapers (16) can have outstanding at once.
const SPEAKER_CMDS: usize = 64;
use crate::reload::reload;
use crate::translate::{fib_route, speaker_config, static_route};

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

/// The networks next hops cannot be reached through now, sorted.
fn unreachable_nets(links: &[LinkRun], reach: &Reachability) -> Vec<Nlri> {
    let mut nets: Vec<Nlri> = reach.unreachable().copied().collect();
    for run in links {
        if run.peer_lost() {
            for a in &run.cfg.addresses {
                if let Ok(p) = Prefix::new(a.addr, a.prefix_len) {
                    nets.push(p);
                }
            }
        }
    }
    nets.sort();
    nets.dedup();
    nets
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
        FibEvent::NexthopFailed {
            id,
            route,
            errno,
            message,
        } => warn!(
            "fib: nexthop object {id} ({route}) refused by the kernel: {}{}; routes through it \
             carry their next hops themselves",
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

/// BFD state changes waiting for the main loop, at most.
const BFD_EVENTS: usize = 256;
/// BFD state changes dropped on a full queue (see `interlink_bfd_events_dropped_total`).
pub(crate) static BFD_EVENTS_DROPPED: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// The speaker's task and how to reach it.
struct Bgp {
    task: tokio::task::JoinHandle<()>,
    cmds: tokio::sync::mpsc::Sender<SpeakerCmd>,
    stop: tokio::sync::watch::Sender<Option<String>>,
}

/// Where the main loop's work comes from, apart from the daemon's state.
struct Sources {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    bgp: tokio::sync::mpsc::UnboundedReceiver<SpeakerEvent>,
    /// BFD sessions' state changes, from their thread.
    bfd: tokio::sync::mpsc::Receiver<interlink_bfd::Event>,
    ctl: tokio::sync::mpsc::Receiver<crate::control::Request>,
    scrapes: tokio::sync::mpsc::Receiver<crate::metrics::ScrapeReply>,
    watchdog: tokio::time::Interval,
    tick: tokio::time::Interval,
    reach: tokio::time::Interval,
    sync_check: tokio::time::Interval,
    /// Removes the control socket when the daemon ends.
    _ctl_cleanup: Option<crate::control::Cleanup>,
}

/// The running daemon: links, FIB, BGP speaker, configuration, and what the main loop keeps
/// between its turns. One handler per source of work; the loop in [`serve`] only picks the
/// next one.
struct Daemon<'p> {
    path: &'p Path,
    config: Config,
    handle: rtnetlink::Handle,
    links: Vec<LinkRun>,
    fib: FibService,
    target: Target,
    bgp: Option<Bgp>,
    /// The BFD sessions of the neighbors that have one, and those the loop knows up.
    bfd: Option<interlink_bfd::BfdService>,
    bfd_up: std::collections::HashSet<std::net::IpAddr>,
    /// Flow logs' exporting process, when `[flows]` is there.
    exporter: Option<interlink_flow::Exporter>,
    /// The routes of a previous run have been swept (the sources converged, or the
    /// graceful-restart time ran out).
    swept: bool,
    sweep_at: tokio::time::Instant,
    /// The line saying the kernel holds all BGP learnt has been written.
    synced_logged: bool,
    /// Networks of interfaces down (from the FIB), and what BGP was last told.
    reach: Reachability,
    unreachable_sent: Vec<Nlri>,
    registry: crate::metrics::Metrics,
    metrics_server: Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
    scrapes: crate::metrics::Scrapes,
    notifier: crate::notify::Notifier,
    started: std::time::Instant,
}

impl<'p> Daemon<'p> {
    /// Brings up the links, the FIB (adopting a previous run's routes), the speaker, the
    /// metrics and the control socket; says READY. Exit status 1 if something essential
    /// cannot start.
    async fn start(path: &'p Path, config: Config) -> Result<(Daemon<'p>, Sources), ExitCode> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| {
            warn!("cannot open rtnetlink: {e}");
            ExitCode::from(1)
        })?;
        tokio::spawn(connection);
        let (term, int, hup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(i), Ok(h)) => (t, i, h),
            _ => {
                warn!("cannot install signal handlers");
                return Err(ExitCode::from(1));
            }
        };
        // Flow logs: the exporter first, for the links' workers to hand their records to.
        let exporter = match &config.flows {
            None => None,
            Some(f) => match interlink_flow::Exporter::start(interlink_flow::ExporterConfig {
                collectors: f.collectors.clone(),
                domain: f.observation_domain,
                template_refresh: FLOW_TEMPLATE_REFRESH,
                queue: FLOW_QUEUE,
            }) {
                Ok(e) => {
                    log!(
                        "flows: on, {} collector(s), sampling 1:{}, timeouts {:?} active and {:?} idle, at most {} flows a link",
                        f.collectors.len(),
                        f.sampling,
                        f.active_timeout,
                        f.idle_timeout,
                        f.max_flows
                    );
                    Some(e)
                }
                Err(e) => {
                    warn!("flows: cannot start the IPFIX exporter: {e}");
                    return Err(ExitCode::from(1));
                }
            },
        };
        let flows = crate::links::flow_spec(config.flows.as_ref(), exporter.as_ref());
        let mut links: Vec<LinkRun> = Vec::new();
        for l in &config.links {
            if crate::offers::given_up(l, &config.state_dir) {
                warn!(
                    "link {}: the offer expired with nobody come; not started (remove it, or offer again)",
                    l.name
                );
                continue;
            }
            match LinkRun::start(&handle, l, &config.state_dir, flows.as_ref()).await {
                Ok(run) => links.push(run),
                Err(e) => {
                    warn!("link {}: {e}", l.name);
                    // Links already up are stopped (and their interfaces removed) on return.
                    return Err(ExitCode::from(1));
                }
            }
        }
        let (fib, target) = crate::translate::start_fib(&config).map_err(|e| {
            warn!("fib: cannot reach the kernel's routing tables: {e}");
            ExitCode::from(1)
        })?;
        let snap = fib.snapshot();
        let adopted = snap.stale;
        log!(
            "fib: table {}, metric {}, protocol {}, {}; {adopted} route(s) of a previous run adopted",
            target.table,
            target.metric,
            target.protocol,
            if snap.nexthop_objects {
                "routes through nexthop objects"
            } else {
                "next hops per route"
            }
        );
        for r in &config.routes {
            match static_route(r) {
                Ok(route) => fib.set(r.prefix, Some(route)),
                Err(e) => warn!("route {}: {e}; not installed", r.prefix),
            }
        }
        // BGP, if configured. The routes adopted from a previous run go once the sources
        // have converged: at once for static routes alone, at BGP's End-of-RIB from every
        // peer otherwise, or when [fib] graceful_restart runs out.
        let (bgp_tx, bgp_rx) = tokio::sync::mpsc::unbounded_channel();
        let bgp = config.router.as_ref().map(|r| {
            let (stop, stop_rx) = tokio::sync::watch::channel(None);
            // Bounded: what clients ask waits here at most SPEAKER_CMDS deep (see
            // `commands::ask`); reloads and reachability wait for room instead.
            let (cmds, cmds_rx) = tokio::sync::mpsc::channel(SPEAKER_CMDS);
            let task = tokio::spawn(speaker::run(
                speaker::SpeakerConfig {
                    restarting: adopted > 0,
                    ..speaker_config(&config, r)
                },
                bgp_tx,
                stop_rx,
                cmds_rx,
            ));
            Bgp { task, cmds, stop }
        });
        let swept = bgp.is_none();
        if swept {
            fib.sweep();
        }
        // BFD, on a thread of its own, for the neighbors that ask for it. A peer that flaps
        // its session as fast as it sends packets fills the queue: what does not fit is
        // dropped and counted, and the loop's tick catches up from the sessions' views.
        let (bfd_tx, bfd_rx) = tokio::sync::mpsc::channel(BFD_EVENTS);
        let bfd = match crate::translate::bfd_peers(&config) {
            peers if peers.is_empty() => None,
            peers => match interlink_bfd::BfdService::start(move |e| {
                if bfd_tx.try_send(e).is_err() {
                    BFD_EVENTS_DROPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }) {
                Ok(service) => {
                    service.set(peers);
                    Some(service)
                }
                Err(e) => {
                    warn!("bfd: cannot open its sockets (UDP 3784): {e}; no BFD sessions");
                    None
                }
            },
        };
        log!(
            "running with {} link(s), {} static route(s) and {} BGP neighbor(s)",
            links.len(),
            config.routes.len(),
            config.neighbors.len()
        );
        // Prometheus metrics, rendered by the main loop for each scrape.
        let (scrapes, scrape_rx) = tokio::sync::mpsc::channel(16);
        let mut metrics_server = None;
        if let Some(listen) = config.metrics_listen {
            match crate::metrics::serve(listen, scrapes.clone()).await {
                Ok(task) => {
                    metrics_server = Some((listen, task));
                    log!("metrics on http://{listen}/metrics")
                }
                Err(e) => {
                    warn!("metrics: cannot listen on {listen}: {e}");
                    return Err(ExitCode::from(1));
                }
            }
        }
        let notifier = crate::notify::Notifier::from_env();
        // The control socket, for interlinkctl. Not having one is worth a line, not a stop.
        let (ctl_tx, ctl_rx) = tokio::sync::mpsc::channel::<crate::control::Request>(16);
        let ctl_cleanup = match crate::control::bind(&config.control_socket).await {
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
        let d = Daemon {
            path,
            sweep_at: tokio::time::Instant::now() + config.fib.graceful_restart,
            synced_logged: swept,
            swept,
            config,
            handle,
            links,
            fib,
            target,
            bgp,
            bfd,
            exporter,
            bfd_up: std::collections::HashSet::new(),
            reach: Reachability::default(),
            unreachable_sent: Vec::new(),
            registry: crate::metrics::Metrics::new(),
            metrics_server,
            scrapes,
            notifier,
            started: std::time::Instant::now(),
        };
        d.say_ready();
        let sources = Sources {
            term,
            int,
            hup,
            bgp: bgp_rx,
            bfd: bfd_rx,
            ctl: ctl_rx,
            scrapes: scrape_rx,
            // Fed from the main loop: if it stops turning, systemd restarts the daemon.
            watchdog: tokio::time::interval(
                crate::notify::Notifier::watchdog_interval().unwrap_or(Duration::from_secs(3600)),
            ),
            tick: tokio::time::interval(Duration::from_millis(500)),
            reach: {
                let mut i = tokio::time::interval(Duration::from_millis(50));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                i
            },
            sync_check: tokio::time::interval(Duration::from_millis(20)),
            _ctl_cleanup: ctl_cleanup,
        };
        Ok((d, sources))
    }

    fn say_ready(&self) {
        self.notifier.notify(&format!(
            "READY=1\nSTATUS=running with {} link(s) and {} BGP neighbor(s)",
            self.links.len(),
            self.config.neighbors.len()
        ));
    }

    /// The main loop's state, borrowed for an interlinkctl command or a reload.
    fn ctl(&mut self) -> crate::ctl::Ctl<'_> {
        crate::ctl::Ctl {
            path: self.path,
            handle: &self.handle,
            links: &mut self.links,
            fib: &self.fib,
            bfd: self.bfd.as_ref(),
            exporter: self.exporter.as_ref(),
            target: self.target,
            config: &mut self.config,
            speaker: self.bgp.as_ref().map(|b| &b.cmds),
            started: self.started,
            metrics: &mut self.metrics_server,
            scrapes: &self.scrapes,
        }
    }

    /// When MKA next has a timer due on some link.
    fn mka_due(&self) -> Option<tokio::time::Instant> {
        self.links
            .iter()
            .filter_map(|l| l.mka.as_ref()?.next_timer())
            .min()
            .map(tokio::time::Instant::from_std)
    }

    fn sweep(&mut self) {
        self.fib.sweep();
        self.swept = true;
    }

    fn on_speaker(&mut self, e: SpeakerEvent) {
        match e {
            SpeakerEvent::Best(changes) => {
                self.fib.set_many(
                    changes
                        .into_iter()
                        .map(|c| (c.prefix, c.best.and_then(|b| fib_route(&b))))
                        .collect(),
                );
            }
            SpeakerEvent::PeerUp { address, asn } => {
                log!("bgp: {address} (AS {asn}) established")
            }
            SpeakerEvent::PeerDown {
                address,
                why,
                routes_kept,
            } => {
                warn!("bgp: {address} down: {why}");
                // Routes through it that have a backup move to it at once, all together,
                // ahead of the rewrite that BGP's new decisions bring (unless the peer
                // restarts gracefully and forwards meanwhile).
                if !routes_kept {
                    self.fib.fail_over(address);
                }
            }
            SpeakerEvent::Log {
                severity: Severity::Warning,
                text,
            } => warn!("{text}"),
            SpeakerEvent::Log {
                severity: Severity::Info,
                text,
            } => log!("{text}"),
            SpeakerEvent::Converged => {
                if !self.swept {
                    log!("bgp: converged (End-of-RIB from every peer)");
                    self.sweep();
                }
            }
        }
    }

    /// A BFD session changed state. Down from Up (RFC 5882): the routes through the neighbor
    /// move to their backups at once, and its BGP session goes down (Cease, BFD Down).
    async fn on_bfd(&mut self, e: interlink_bfd::Event) {
        let t = e.transition;
        self.bfd_changed(e.peer, t.to, t.diag).await;
    }

    /// What the loop does when it learns a BFD session's state (an event, or the tick's look
    /// at the sessions after events were dropped): acts on a session it knew up going down.
    async fn bfd_changed(
        &mut self,
        peer: std::net::IpAddr,
        to: interlink_bfd::State,
        diag: interlink_bfd::Diag,
    ) {
        use interlink_bfd::State;
        match to {
            State::Up if self.bfd_up.insert(peer) => log!("bfd: {peer} up"),
            State::Up => {}
            _ if self.bfd_up.remove(&peer) => {
                warn!("bfd: {peer} {to}: {diag}");
                self.fib.fail_over(peer);
                if let Some(b) = &self.bgp {
                    let (reply, _) = tokio::sync::oneshot::channel();
                    // State, not a question: never dropped (the speaker never waits on
                    // this loop, so room comes).
                    let _ = b
                        .cmds
                        .send(SpeakerCmd::Neighbor {
                            address: peer,
                            op: interlink_bgp::speaker::NeighborOp::BfdDown,
                            reply,
                        })
                        .await;
                }
            }
            _ => {}
        }
    }

    /// Once BGP has converged, one line says when the kernel holds all it learnt.
    fn on_sync_check(&mut self) {
        if self.fib.in_sync() {
            self.synced_logged = true;
            let s = self.fib.snapshot().stats;
            log!(
                "fib: in sync with BGP: {} IPv4 and {} IPv6 route(s) in the kernel",
                s.installed.ipv4,
                s.installed.ipv6
            );
        }
    }

    fn on_sweep_due(&mut self) {
        log!("fib: graceful restart time over; sweeping routes of the previous run");
        self.sweep();
    }

    async fn on_control(&mut self, req: crate::control::Request) {
        let answer = crate::commands::answer(&req.line, &mut self.ctl()).await;
        let _ = req.reply.send(answer);
    }

    async fn on_reload(&mut self) {
        self.notifier.reloading();
        let _ = reload(&mut self.ctl()).await;
        self.say_ready();
    }

    fn flow_metrics(&self, e: &interlink_flow::Exporter) -> crate::metrics::FlowMetrics {
        use std::sync::atomic::Ordering::Relaxed;
        let mut tables = Vec::new();
        for run in &self.links {
            for t in crate::links::flow_tables(&run.link) {
                tables.push((
                    run.link.name().to_owned(),
                    t.direction.name(),
                    t.active,
                    t.ended,
                    t.evicted,
                ));
            }
        }
        let s = e.stats();
        crate::metrics::FlowMetrics {
            tables,
            records: s.records.load(Relaxed),
            messages: s.messages.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            errors: s.errors.load(Relaxed),
        }
    }

    async fn on_scrape(&mut self, reply: crate::metrics::ScrapeReply) {
        let snap = self.fib.snapshot();
        // The speaker answers from its own task; counts are kept as they change.
        let mut neighbors = Vec::new();
        if let Some(b) = &self.bgp {
            let (answer, rx) = tokio::sync::oneshot::channel();
            // A busy speaker: the scrape goes without its neighbors rather than wait.
            if b.cmds.try_send(SpeakerCmd::Neighbors(answer)).is_ok() {
                neighbors = rx.await.unwrap_or_default();
            }
        }
        let families = crate::metrics::render(&crate::metrics::Snapshot {
            links: self
                .links
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
                    rekeys: l
                        .mka
                        .as_ref()
                        .map_or(0, |m| m.tx_switches.saturating_sub(1)),
                    tun_tx_dropped: l.link.tun_tx_dropped(),
                    mka_live: l.mka.as_ref().map(|m| m.live),
                    tx_pn_used: l
                        .link
                        .tx_pn()
                        .map(|(_, pn)| pn as f64 / l.cfg.macsec.cipher_suite.max_pn() as f64),
                    mka: l.mka.as_ref().map(|m| m.metrics(&l.link)),
                    pairing: l.offer.as_ref().map(|o| o.status()),
                })
                .collect(),
            fib: &snap,
            fib_table: self.target.table,
            neighbors,
            bfd: self.bfd.as_ref().map(|b| b.views()).unwrap_or_default(),
            flows: self.exporter.as_ref().map(|e| self.flow_metrics(e)),
            fib_in_sync: self.fib.in_sync(),
            prefix_limits: self
                .config
                .neighbors
                .iter()
                .filter_map(|n| n.import.as_ref()?.max_prefixes.map(|m| (n.address, m)))
                .collect(),
        });
        let _ = reply.send(self.registry.encode(families));
    }

    /// Every half second: links whose TUN went are started again, the FIB's events are
    /// logged and tracked, the links' liveness is logged, and BGP hears which next hops
    /// cannot be reached.
    async fn on_tick(&mut self) {
        // A link whose TUN interface was deleted from outside: its workers have stopped;
        // it starts again, with a new interface.
        let mut i = 0;
        while i < self.links.len() {
            if !self.links[i].link.tun_gone() {
                i += 1;
                continue;
            }
            let run = self.links.remove(i);
            let cfg = run.cfg.clone();
            warn!(
                "link {}: its interface {} was deleted from outside; the link is down, restarting it",
                cfg.name, cfg.interface
            );
            run.stop(false);
            let flows = crate::links::flow_spec(self.config.flows.as_ref(), self.exporter.as_ref());
            match LinkRun::start(&self.handle, &cfg, &self.config.state_dir, flows.as_ref()).await {
                Ok(run) => {
                    self.links.insert(i, run);
                    i += 1;
                }
                Err(e) => warn!(
                    "link {}: cannot start it again: {e}; a reload tries again",
                    cfg.name
                ),
            }
        }
        let mut i = 0;
        while i < self.links.len() {
            if self.links[i].tick() {
                i += 1;
                continue;
            }
            let run = self.links.remove(i);
            warn!(
                "link {}: the offer expired with nobody come; the link is given up (remove it, or offer again)",
                run.cfg.name
            );
            run.stop(false);
        }
        // BFD events dropped on a full queue: the sessions' own state says what was missed.
        if let Some(views) = self.bfd.as_ref().map(|b| b.views().0) {
            for v in views {
                if (v.state == interlink_bfd::State::Up) != self.bfd_up.contains(&v.peer) {
                    self.bfd_changed(v.peer, v.state, v.diag).await;
                }
            }
        }
    }

    /// Every 50 ms: what the FIB saw (links and addresses going down or up), and whether next
    /// hops became unreachable: across links whose peer stopped answering, and on interfaces
    /// the kernel has down. Often, so that traffic leaves a dead link (of two redundant
    /// ones) within its detection time, 3 probe intervals, and not a tick later.
    async fn on_reach_tick(&mut self) {
        for e in self.fib.events() {
            log_fib_event(&e, &self.target);
            self.reach.track(&e);
        }
        // BGP is told when that changes (RFC 4271 §9.1.2.1).
        if let Some(b) = &self.bgp {
            let nets = unreachable_nets(&self.links, &self.reach);
            if nets != self.unreachable_sent {
                // Routes through next hops there that have a backup move to it at once; and
                // back when the network is reachable again.
                for n in nets.iter().filter(|n| !self.unreachable_sent.contains(n)) {
                    self.fib.fail_over_net(*n, true);
                }
                for n in self.unreachable_sent.iter().filter(|n| !nets.contains(n)) {
                    self.fib.fail_over_net(*n, false);
                }
                self.unreachable_sent = nets.clone();
                // State, not a question: never dropped. The speaker never waits on this
                // loop, so room comes.
                let _ = b.cmds.send(SpeakerCmd::Unreachable(nets)).await;
            }
        }
    }

    /// SIGTERM or SIGINT. With `on_shutdown = "withdraw"`: BGP says goodbye (Cease), the FIB
    /// withdraws the routes, the links and their interfaces go. With "keep", a stop is a
    /// restart (RFC 4724 as the restarting speaker): the BGP sessions end without a
    /// NOTIFICATION, as they would in a crash, so that peers doing graceful restart keep our
    /// routes while we are away; the routes stay in the kernel, and the links' interfaces with
    /// them, for the next run to take over.
    async fn stop(self) {
        log!("stopping");
        self.notifier.notify("STOPPING=1");
        let withdraw = self.config.fib.on_shutdown == OnShutdown::Withdraw;
        if let Some(b) = self.bgp {
            if withdraw {
                let _ = b.stop.send(Some("interlinkd is stopping".into()));
                let _ = tokio::time::timeout(Duration::from_secs(5), b.task).await;
            } else {
                // The sockets close with the process: FIN, no NOTIFICATION.
                b.task.abort();
            }
        }
        match self.fib.stop(withdraw, Duration::from_secs(30)) {
            Ok(s) => log!(
                "fib: stopped; {} route(s) {}",
                s.stats.installed.total(),
                if withdraw {
                    "left after the withdrawal"
                } else {
                    "kept in the kernel"
                }
            ),
            Err(e) => warn!("fib: {e}"),
        }
        for run in self.links {
            run.stop(!withdraw);
        }
        // The links' workers have handed their last flows over: they go out, then the
        // exporter stops.
        if let Some(e) = self.exporter {
            e.stop(Duration::from_secs(2));
        }
    }
}

async fn serve(path: &Path, config: Config) -> ExitCode {
    let (mut d, mut s) = match Daemon::start(path, config).await {
        Ok(started) => started,
        Err(code) => return code,
    };
    loop {
        // MKA runs when an MKPDU arrives (crate::mka::WAKE) and when a KaY's timer is due.
        let mka_due = d.mka_due();
        tokio::select! {
            _ = s.term.recv() => break,
            _ = s.int.recv() => break,
            Some(e) = s.bgp.recv() => d.on_speaker(e),
            Some(e) = s.bfd.recv() => d.on_bfd(e).await,
            _ = s.sync_check.tick(), if d.swept && !d.synced_logged => d.on_sync_check(),
            _ = tokio::time::sleep_until(d.sweep_at), if !d.swept => d.on_sweep_due(),
            _ = s.watchdog.tick() => d.notifier.notify("WATCHDOG=1"),
            _ = crate::mka::WAKE.notified() => mka_turns(&mut d.links),
            _ = tokio::time::sleep_until(mka_due.unwrap_or_else(tokio::time::Instant::now)), if mka_due.is_some() => {
                mka_turns(&mut d.links)
            }
            Some(req) = s.ctl.recv() => d.on_control(req).await,
            _ = s.hup.recv() => d.on_reload().await,
            Some(reply) = s.scrapes.recv() => d.on_scrape(reply).await,
            _ = s.tick.tick() => d.on_tick().await,
            _ = s.reach.tick() => d.on_reach_tick().await,
        }
    }
    d.stop().await;
    ExitCode::SUCCESS
}

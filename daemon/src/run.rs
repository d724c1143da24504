//! The daemon proper: read the configuration, bring the links up, run until told to stop.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use interlink_bgp::speaker::{self, Severity, SpeakerCmd, SpeakerEvent};
use interlink_bgp::update::Nlri;
use interlink_config::{Config, OnShutdown, Transport};
use interlink_fib::{FibEvent, FibService, Prefix, Target};
use interlink_macsec::Backend;
use tokio::signal::unix::{signal, SignalKind};

use crate::links::{mka_turns, LinkRun};
use crate::reload::reload;
use crate::translate::{fib_route, nlri, speaker_config, static_route};

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
        if run.peer_lost() {
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
            crate::ctl::Ctl {
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
                    run.tick();
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

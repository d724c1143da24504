//! SIGHUP and `interlinkctl reload`: the configuration read again, and only what changed
//! applied; what cannot change under running routes is named.

use std::path::Path;

use interlink_bgp::speaker::SpeakerCmd;
use interlink_config::{Config, Keying, Link as LinkConfig};
use interlink_fib::FibService;

use crate::ctl::Ctl;
use crate::links::LinkRun;
use crate::translate::{speaker_config, static_route};

/// Whether two configs of a link differ only in their MKA keychain, which MKA takes while
/// running.
/// What a reload can change on a running link: its MKA keychain and its busy poll. `None` if
/// anything else differs, and the link must restart.
fn in_place_changes(a: &LinkConfig, b: &LinkConfig) -> Option<InPlace> {
    let mut b2 = b.clone();
    b2.busy_poll = a.busy_poll;
    // A new keychain, or a new cak_lifetime, goes to the running KaY.
    let keychain = match (&a.macsec.keying, &mut b2.macsec.keying) {
        (Keying::Mka(ka), Keying::Mka(kb))
            if ka.keys != kb.keys || ka.cak_lifetime != kb.cak_lifetime =>
        {
            kb.keys = ka.keys.clone();
            kb.cak_lifetime = ka.cak_lifetime;
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
    flows: Option<&interlink_dataplane::FlowSpec>,
) {
    let mut kept = Vec::new();
    for mut run in std::mem::take(links) {
        let Some(l) = new.links.iter().find(|l| l.name == run.cfg.name) else {
            log!("reload: link {}: removed", run.cfg.name);
            run.stop(false);
            continue;
        };
        let Some(change) = in_place_changes(&run.cfg, l) else {
            log!("reload: link {}: changed; restarting it", run.cfg.name);
            run.stop(false);
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
        if crate::offers::given_up(l, state_dir) {
            warn!(
                "reload: link {}: the offer expired with nobody come; not started",
                l.name
            );
            continue;
        }
        match LinkRun::start(handle, l, state_dir, flows).await {
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
pub async fn reload(ctl: &mut Ctl<'_>) -> Result<Vec<String>, String> {
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
    let flows = crate::links::flow_spec(old.flows.as_ref(), ctl.exporter);
    reload_links(ctl.handle, ctl.links, &new, &old.state_dir, flows.as_ref()).await;
    reload_routes(ctl.fib, old, &new);
    let mut notes = Vec::new();
    // BGP: the speaker takes the difference itself.
    let bgp_changed =
        old.router != new.router || old.neighbors != new.neighbors || old.bgp != new.bgp;
    match (&new.router, ctl.speaker) {
        (Some(r), Some(speaker)) if bgp_changed => {
            let cfg = speaker_config(&new, r);
            // Never dropped (see run.rs): waits for room if the speaker is behind.
            let _ = speaker.send(SpeakerCmd::Reconfigure(Box::new(cfg))).await;
        }
        (new_router, speaker) if new_router.is_some() != speaker.is_some() => notes
            .push("[router] added or removed; BGP starts or stops at the next restart".to_owned()),
        _ => {}
    }
    // BFD: sessions of neighbors added, changed or removed start and stop; the thread itself
    // starts with the daemon.
    let peers = crate::translate::bfd_peers(&new);
    match ctl.bfd {
        Some(b) => b.set(peers),
        None if !peers.is_empty() => notes.push(
            "bfd on a neighbor while none had it at start; BFD starts at the next restart"
                .to_owned(),
        ),
        None => {}
    }
    // [fib]: the slot of interlink's routes (table, metric, protocol) cannot move under
    // them; how long a restart waits and what shutdown does are read when they happen.
    if (
        old.fib.table,
        old.fib.metric,
        old.fib.protocol,
        old.fib.nexthop_objects,
    ) != (
        new.fib.table,
        new.fib.metric,
        new.fib.protocol,
        new.fib.nexthop_objects,
    ) {
        notes.push(
            "[fib] table, metric, protocol or nexthop_objects changed; that takes effect at \
             the next restart"
                .into(),
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
    if old.flows != new.flows {
        notes.push("[flows] changed; that takes effect at the next restart".into());
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
    applied.flows = old.flows.clone();
    if applied.router.is_some() != ctl.speaker.is_some() {
        applied.router = old.router.clone();
        applied.neighbors = old.neighbors.clone();
        applied.bgp = old.bgp.clone();
    }
    *ctl.config = applied;
    log!("reload: done");
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(extra: &str) -> LinkConfig {
        let dir = std::env::temp_dir().join(format!("il-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["a.cak", "b.cak"] {
            std::fs::write(dir.join(f), "00112233445566778899aabbccddeeff\n").unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let text = format!(
            "[[link]]\nname = \"l\"\ninterface = \"il0\"\ntransport = \"udp\"\n\
             local = \"192.0.2.1\"\nremote = \"192.0.2.2\"\n[link.macsec]\n\
             cipher_suite = \"gcm-aes-128\"\nkeying = \"mka\"\n{extra}"
        );
        let c =
            interlink_config::Config::parse(std::path::Path::new("t.toml"), &text, &dir).unwrap();
        c.links[0].clone()
    }

    #[test]
    fn keys_and_the_cak_lifetime_change_in_place_the_rest_restarts_the_link() {
        let base = "ckn = \"01\"\ncak_file = \"a.cak\"\nreplace_cak = true\n";
        let a = link(base);
        assert!(in_place_changes(&a, &a).is_some_and(|c| !c.keychain));
        let longer = link(&format!("{base}cak_lifetime = \"30d\"\n"));
        assert!(in_place_changes(&a, &longer).is_some_and(|c| c.keychain));
        let other_key = link("ckn = \"02\"\ncak_file = \"b.cak\"\nreplace_cak = true\n");
        assert!(in_place_changes(&a, &other_key).is_some_and(|c| c.keychain));
        // replace_cak itself changes what the KaY takes: the link restarts.
        let plain = link("ckn = \"01\"\ncak_file = \"a.cak\"\n");
        assert!(in_place_changes(&a, &plain).is_none());
    }
}

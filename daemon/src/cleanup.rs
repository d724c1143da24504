//! `interlinkd --cleanup`: removes what a run leaves behind when it does not withdraw (a
//! crash, a kill, `on_shutdown = "keep"`): the links' interfaces (TUNs with our alias) and,
//! with them and after them, interlink's routes and nexthop objects in its table.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use interlink_config::{Config, OnShutdown};
use interlink_dataplane::netlink;

/// When `--cleanup` has something to do. As the unit's `ExecStopPost=` (`after_stop`), only
/// after a real stop: systemd runs it after a crash too, before the restart that is to take
/// the kept forwarding over. `$SERVICE_RESULT` is "success" after the daemon stopped by
/// itself (its `on_shutdown` done: nothing is left to withdraw unless it was "keep", which
/// the operator chose) and "timeout" when it was killed in the middle of stopping; the
/// crash results (exit-code, signal, core-dump, watchdog) leave everything for the restart.
pub(crate) fn wanted(
    after_stop: bool,
    service_result: Option<&str>,
    on_shutdown: OnShutdown,
) -> bool {
    if !after_stop {
        return true;
    }
    on_shutdown == OnShutdown::Withdraw && matches!(service_result, Some("success" | "timeout"))
}

pub fn main(path: &Path, after_stop: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let result = std::env::var("SERVICE_RESULT").ok();
    if !wanted(after_stop, result.as_deref(), config.fib.on_shutdown) {
        log!(
            "cleanup: nothing to do after a stop with result {} (on_shutdown = \"{}\")",
            result.as_deref().unwrap_or("unknown"),
            match config.fib.on_shutdown {
                OnShutdown::Keep => "keep",
                OnShutdown::Withdraw => "withdraw",
            }
        );
        return ExitCode::SUCCESS;
    }
    // A running daemon answers on its control socket: its interfaces and routes are not left
    // over, and are not ours to take.
    if std::os::unix::net::UnixStream::connect(&config.control_socket).is_ok() {
        warn!(
            "cleanup: interlinkd is running (its control socket {} answers); stop it first",
            config.control_socket.display()
        );
        return ExitCode::from(1);
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
    runtime.block_on(clean(&config))
}

async fn clean(config: &Config) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    let handle = match rtnetlink::new_connection() {
        Ok((conn, handle, _)) => {
            tokio::spawn(conn);
            handle
        }
        Err(e) => {
            warn!("cleanup: cannot reach rtnetlink: {e}");
            return ExitCode::from(1);
        }
    };
    // The interfaces first: the kernel takes the routes through them along.
    for l in &config.links {
        let alias = netlink::alias(&l.name);
        match netlink::existing(&handle, &l.interface).await {
            Ok(None) => {}
            Ok(Some(e)) if e.tun && e.alias.as_deref() == Some(alias.as_str()) => {
                match netlink::delete(&handle, e.ifindex).await {
                    Ok(()) => log!(
                        "cleanup: link {}: interface {} removed",
                        l.name,
                        l.interface
                    ),
                    Err(err) => {
                        warn!(
                            "cleanup: link {}: cannot remove {}: {err}",
                            l.name, l.interface
                        );
                        code = ExitCode::from(1);
                    }
                }
            }
            Ok(Some(_)) => log!(
                "cleanup: link {}: interface {} is not one interlinkd left; not touched",
                l.name,
                l.interface
            ),
            Err(err) => {
                warn!(
                    "cleanup: link {}: cannot look for {}: {err}",
                    l.name, l.interface
                );
                code = ExitCode::from(1);
            }
        }
    }
    // The FIB adopts what is ours in the table and withdraws all of it.
    let (fib, target) = match crate::translate::start_fib(config) {
        Ok(f) => f,
        Err(e) => {
            warn!("cleanup: cannot reach the kernel's routing tables: {e}");
            return ExitCode::from(1);
        }
    };
    let found = fib.snapshot().stale;
    match fib.stop(true, Duration::from_secs(60)) {
        Ok(s) if s.stats.installed.total() == 0 => log!(
            "cleanup: {found} route(s) of protocol {} removed from table {}",
            target.protocol,
            target.table
        ),
        Ok(s) => {
            warn!(
                "cleanup: {} route(s) of protocol {} could not be removed from table {}",
                s.stats.installed.total(),
                target.protocol,
                target.table
            );
            code = ExitCode::from(1);
        }
        Err(e) => {
            warn!("cleanup: fib: {e}");
            code = ExitCode::from(1);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_a_stop_only_a_real_stop_of_a_withdrawing_daemon_is_cleaned() {
        use OnShutdown::{Keep, Withdraw};
        // Asked by hand: always.
        assert!(wanted(false, None, Keep));
        assert!(wanted(false, Some("signal"), Withdraw));
        // As ExecStopPost.
        assert!(wanted(true, Some("success"), Withdraw));
        assert!(wanted(true, Some("timeout"), Withdraw));
        for crash in ["exit-code", "signal", "core-dump", "watchdog"] {
            assert!(!wanted(true, Some(crash), Withdraw), "{crash}");
        }
        assert!(
            !wanted(true, Some("success"), Keep),
            "the operator chose keep"
        );
        assert!(!wanted(true, None, Withdraw), "not under systemd");
    }
}

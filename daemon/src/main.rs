//! interlinkd: wiring only. Protocol logic lives in the crates under `crates/`.

/// A log line (see `logging`): `log!` for what happens, `warn!` for what went wrong.
macro_rules! log {
    ($($arg:tt)*) => { $crate::logging::emit($crate::logging::INFO, &format!($($arg)*)) };
}

macro_rules! warn {
    ($($arg:tt)*) => { $crate::logging::emit($crate::logging::WARNING, &format!($($arg)*)) };
}

mod cak;
mod cleanup;
mod commands;
mod control;
mod ctl;
mod links;
mod listen;
mod logging;
mod metrics;
mod mka;
mod notify;
mod offers;
mod reload;
mod run;
mod selftest;
mod translate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use interlink_macsec::Backend;

use selftest::SelfTest;

const USAGE: &str = "\
usage: interlinkd [--config FILE] [--check | --cleanup | --cleanup=after-stop]
       interlinkd self-test [--backend aws-lc-rs|ring|rustcrypto] [--size OCTETS] [--quick]
       interlinkd --version | --help

  --config FILE   The configuration (default /etc/interlink/interlink.toml).
  --check         Check the configuration, print every problem as FILE:LINE:COL, and exit.

  --cleanup       Remove what a run left (after a crash, a kill, or a stop with
                  [fib] on_shutdown = \"keep\"): the links' interfaces and interlink's routes
                  and nexthop objects in its table. Refused while interlinkd runs.
  --cleanup=after-stop
                  The same as the unit's ExecStopPost: only after a real stop of a daemon
                  with on_shutdown = \"withdraw\" ($SERVICE_RESULT success or timeout), never
                  after a crash, whose restart takes the kept forwarding over.

Otherwise interlinkd brings up every [[link]] of the configuration (a TUN interface protected
with IEEE 802.1AE) and runs until SIGTERM or SIGINT. A restart keeps forwarding: the
interfaces outlive the process (a crash or kill -9 too) and the next run attaches to them,
with the routes through them. On SIGTERM, on_shutdown = \"withdraw\" (the default) removes
the interfaces and withdraws the routes; \"keep\" leaves both for the next run.

self-test       Runs the IEEE 802.1AE Annex C known-answer test (33 frames, all four cipher
                suites) through the SecY on each AES-GCM backend, then measures protect and
                validate on this machine.
  --backend NAME  Measure with this backend (default: the fastest for this CPU).
  --size OCTETS   User data per frame for the measurement (default 1420, 2..=65000).
  --quick         Measure for 50 ms per suite instead of 500 ms.

exit status: 0 success; 1 a link could not be brought up, the kernel's routing tables could
not be reached, or a known-answer test failed; 2 a bad command line or configuration.";

enum Command {
    Run { config: PathBuf, check: bool },
    Cleanup { config: PathBuf, after_stop: bool },
    SelfTest(SelfTest),
    Print(String),
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut it = args.iter().peekable();
    match it.peek().map(|s| s.as_str()) {
        Some("--version") | Some("-V") => {
            return Ok(Command::Print(format!(
                "interlinkd {}",
                env!("CARGO_PKG_VERSION")
            )))
        }
        Some("--help") | Some("-h") => return Ok(Command::Print(USAGE.to_owned())),
        Some("self-test") => {
            it.next();
            return parse_self_test(it);
        }
        _ => {}
    }
    let mut config = PathBuf::from(interlink_config::DEFAULT_PATH);
    let mut check = false;
    let mut cleanup = None;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" | "-c" => {
                config = it
                    .next()
                    .map(PathBuf::from)
                    .ok_or("--config needs a file")?;
            }
            "--check" => check = true,
            "--cleanup" => cleanup = Some(false),
            "--cleanup=after-stop" => cleanup = Some(true),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match cleanup {
        Some(_) if check => Err("--check and --cleanup do not go together".into()),
        Some(after_stop) => Ok(Command::Cleanup { config, after_stop }),
        None => Ok(Command::Run { config, check }),
    }
}

fn parse_self_test<'a>(mut it: impl Iterator<Item = &'a String>) -> Result<Command, String> {
    let mut cmd = SelfTest {
        backend: Backend::default(),
        size: 1420,
        time: Duration::from_millis(500),
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--backend" => {
                let name = value("--backend")?;
                cmd.backend = name.parse().map_err(|e| format!("--backend: {e}"))?;
                if !Backend::available().contains(&cmd.backend) {
                    return Err(format!("--backend: {} is not compiled in", cmd.backend));
                }
            }
            "--size" => {
                let v = value("--size")?;
                cmd.size = v
                    .parse()
                    .ok()
                    .filter(|s| (2..=65_000).contains(s))
                    .ok_or_else(|| format!("--size: {v:?} is not a number from 2 to 65000"))?;
            }
            "--quick" => cmd.time = Duration::from_millis(50),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Command::SelfTest(cmd))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::Run { config, check }) => run::main(&config, check),
        Ok(Command::Cleanup { config, after_stop }) => cleanup::main(&config, after_stop),
        Ok(Command::SelfTest(cmd)) => selftest::self_test(&cmd),
        Ok(Command::Print(text)) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("interlinkd: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn err(s: &str) -> String {
        match parse_args(&args(s)) {
            Err(e) => e,
            Ok(_) => panic!("{s:?} parsed"),
        }
    }

    #[test]
    fn command_line_errors_are_clear() {
        assert_eq!(err("run"), "unknown argument \"run\"");
        assert_eq!(err("--config"), "--config needs a file");
        assert_eq!(err("self-test --size"), "--size needs a value");
        assert!(err("self-test --size 1").contains("from 2 to 65000"));
        assert!(err("self-test --size lots").contains("from 2 to 65000"));
        assert!(err("self-test --backend openssl").contains("unknown AES-GCM backend"));
        assert_eq!(err("self-test --fast"), "unknown option \"--fast\"");
        assert!(err("--check --cleanup").contains("do not go together"));
        assert!(err("--cleanup=always").contains("unknown argument"));
    }

    #[test]
    fn cleanup_parses() {
        match parse_args(&args("--cleanup --config /tmp/x.toml")).unwrap() {
            Command::Cleanup { config, after_stop } => {
                assert_eq!(config, PathBuf::from("/tmp/x.toml"));
                assert!(!after_stop);
            }
            _ => panic!("not cleanup"),
        }
        assert!(matches!(
            parse_args(&args("--cleanup=after-stop")).unwrap(),
            Command::Cleanup {
                after_stop: true,
                ..
            }
        ));
    }

    #[test]
    fn run_and_self_test_options_parse() {
        match parse_args(&args("--config /tmp/x.toml --check")).unwrap() {
            Command::Run { config, check } => {
                assert_eq!(config, PathBuf::from("/tmp/x.toml"));
                assert!(check);
            }
            _ => panic!("not run"),
        }
        match parse_args(&args("")).unwrap() {
            Command::Run { config, check } => {
                assert_eq!(config, PathBuf::from("/etc/interlink/interlink.toml"));
                assert!(!check);
            }
            _ => panic!("not run"),
        }
        match parse_args(&args("self-test --backend rustcrypto --size 64 --quick")).unwrap() {
            Command::SelfTest(cmd) => {
                assert_eq!(cmd.backend, Backend::RustCrypto);
                assert_eq!(cmd.size, 64);
                assert_eq!(cmd.time, Duration::from_millis(50));
            }
            _ => panic!("not self-test"),
        }
    }
}

//! interlinkd: wiring only. Protocol logic lives in the crates under `crates/`.
//!
//! This first version carries the `self-test` command: the IEEE 802.1AE Annex C known-answer
//! test on every AES-GCM backend compiled in, and the protect/validate rate of this machine.

use std::process::ExitCode;
use std::time::Duration;

use interlink_macsec::{selftest, Backend, CipherSuite};

const USAGE: &str = "\
usage: interlinkd self-test [--backend aws-lc-rs|rustcrypto] [--size OCTETS] [--quick]
       interlinkd --version | --help

commands:
  self-test   Runs the IEEE 802.1AE Annex C known-answer test (33 frames, all four cipher
              suites) through the SecY on each AES-GCM backend, then measures protect and
              validate on this machine.

options:
  --backend NAME  Measure with this backend (default: aws-lc-rs, the fastest compiled in).
  --size OCTETS   User data per frame for the measurement (default 1420, 2..=65000).
  --quick         Measure for 50 ms per suite instead of 500 ms.

exit status: 0 all passed, 1 a known-answer test failed, 2 bad command line.";

struct SelfTest {
    backend: Backend,
    size: usize,
    time: Duration,
}

fn parse_args(args: &[String]) -> Result<Option<SelfTest>, String> {
    let mut it = args.iter();
    match it.next().map(String::as_str) {
        Some("self-test") => {}
        Some("--version") | Some("-V") => {
            println!("interlinkd {}", env!("CARGO_PKG_VERSION"));
            return Ok(None);
        }
        Some("--help") | Some("-h") => {
            println!("{USAGE}");
            return Ok(None);
        }
        Some(other) => return Err(format!("unknown command {other:?}")),
        None => return Err("a command is required".into()),
    }
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
    Ok(Some(cmd))
}

fn self_test(cmd: &SelfTest) -> ExitCode {
    let vectors = match selftest::annex_c() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("interlinkd: embedded vectors unreadable: {e}");
            return ExitCode::from(1);
        }
    };
    println!(
        "IEEE 802.1AE Annex C known-answer test: {} frames",
        vectors.len()
    );
    println!("  {:<12} {:>8}  result", "backend", "frames");
    let mut failed = false;
    for &backend in Backend::available() {
        let failures: Vec<_> = vectors
            .iter()
            .filter_map(|v| v.check(backend).err().map(|e| format!("{}: {e}", v.name)))
            .collect();
        let passed = vectors.len() - failures.len();
        let result = if failures.is_empty() { "pass" } else { "FAIL" };
        println!(
            "  {:<12} {:>8}  {result}",
            backend.name(),
            format!("{passed}/{}", vectors.len())
        );
        for f in &failures {
            println!("      {f}");
        }
        failed |= !failures.is_empty();
    }
    if failed {
        return ExitCode::from(1);
    }

    println!(
        "\nProtect and validate on this machine, one core, {} octets of user data, {}:",
        cmd.size, cmd.backend
    );
    println!(
        "  {:<16} {:>14} {:>14} {:>12}",
        "cipher suite", "protect", "validate", "frames/s"
    );
    for suite in CipherSuite::ALL {
        match selftest::throughput(suite, cmd.backend, cmd.size, cmd.time) {
            Ok(t) => println!(
                "  {:<16} {:>9.2} Gb/s {:>9.2} Gb/s {:>12.0}",
                suite.name(),
                t.protect_gbps(),
                t.validate_gbps(),
                t.protect_fps
            ),
            Err(e) => {
                eprintln!("interlinkd: measuring {suite}: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Some(cmd)) => self_test(&cmd),
        Ok(None) => ExitCode::SUCCESS,
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

    #[test]
    fn command_line_errors_are_clear() {
        let err = |s: &str| parse_args(&args(s)).err().unwrap();
        assert_eq!(err(""), "a command is required");
        assert_eq!(err("run"), "unknown command \"run\"");
        assert_eq!(err("self-test --size"), "--size needs a value");
        assert!(err("self-test --size 1").contains("from 2 to 65000"));
        assert!(err("self-test --size lots").contains("from 2 to 65000"));
        assert!(err("self-test --backend openssl").contains("unknown AES-GCM backend"));
        assert_eq!(err("self-test --fast"), "unknown option \"--fast\"");
    }

    #[test]
    fn self_test_options_parse() {
        let cmd = parse_args(&args("self-test --backend rustcrypto --size 64 --quick"))
            .unwrap()
            .unwrap();
        assert_eq!(cmd.backend, Backend::RustCrypto);
        assert_eq!(cmd.size, 64);
        assert_eq!(cmd.time, Duration::from_millis(50));
    }
}

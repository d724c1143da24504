//! `interlinkd self-test`: the IEEE 802.1AE Annex C known-answer test on every AES-GCM backend
//! compiled in, then the protect/validate rate of this machine.

use std::process::ExitCode;
use std::time::Duration;

use interlink_macsec::{selftest, Backend, CipherSuite};

pub struct SelfTest {
    pub backend: Backend,
    pub size: usize,
    pub time: Duration,
}

pub fn self_test(cmd: &SelfTest) -> ExitCode {
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

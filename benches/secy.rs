//! SecY protect and validate against the bare AEAD of the same backend.
//!
//! For every backend, cipher suite and user-data size (EtherType included) it times:
//! - `protect`: `TxSecY::protect` with confidentiality and the SCI in the SecTAG;
//! - `seal`: the backend's bare AES-GCM seal of the same number of octets with the same
//!   28-octet AAD (DA, SA, EtherType, SecTAG with SCI), i.e. the same cryptographic work;
//! - `validate` and `open`: the receive-side pair.
//!
//! protect/seal is then the framing overhead, read off one report:
//! `cargo bench -p interlink-benches --bench secy`. Narrow it with a filter, e.g.
//! `cargo bench -p interlink-benches --bench secy -- 'aws-lc-rs/gcm-aes-128/.*/1420'`.
//!
//! On a shared machine the clock rate drifts by tens of percent between benchmarks run
//! seconds apart, which can swamp a few nanoseconds of framing. The `overhead` group measures
//! it drift-free: protect and the bare seal run interleaved in blocks of 32, and the reported
//! time is protect's time minus seal's, per frame; likewise validate minus open
//! (`cargo bench ... -- overhead`).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use interlink_macsec::{
    header_len, An, Backend, CipherSuite, RxConfig, RxSecY, RxStats, SaKey, Sci, TxConfig, TxSecY,
    TxStats, ICV_LEN,
};

const SIZES: [usize; 4] = [64, 512, 1420, 9000];
const SAK: [u8; 32] = [0x42; 32];
const SALT: [u8; 12] = [0x24; 12];

fn key(suite: CipherSuite) -> SaKey<'static> {
    SaKey {
        sak: &SAK[..suite.key_len()],
        xpn: suite.is_xpn().then_some((1, SALT)),
    }
}

fn secy_pair(suite: CipherSuite, backend: Backend) -> (TxSecY, RxSecY, Sci) {
    let sci = Sci::new([2, 0, 0, 0, 0, 1], 1);
    let an = An::new(0).unwrap();
    let mut tx = TxSecY::new(suite, backend, TxConfig::new(sci)).unwrap();
    tx.install_sa(an, &key(suite), 1).unwrap();
    tx.set_encoding_sa(an).unwrap();
    // Replay protection off and the widest window: the same frame is validated over and
    // over, with the same work. The window keeps the lowest acceptable PN where it was, so
    // that XPN recovers the same full PN every time (802.1AEbw §10.6.2).
    let cfg = RxConfig {
        replay_protect: false,
        replay_window: u32::MAX,
        ..RxConfig::default()
    };
    let mut rx = RxSecY::new(suite, backend, cfg);
    rx.add_sc(sci).unwrap();
    rx.install_sa(sci, an, &key(suite), 1).unwrap();
    (tx, rx, sci)
}

fn frame(tx: &TxSecY, size: usize) -> Vec<u8> {
    let mut f = vec![0xab; tx.header_len() + size + ICV_LEN];
    f[tx.header_len()..tx.header_len() + 2].copy_from_slice(&[0x08, 0x00]);
    f
}

fn secy(c: &mut Criterion) {
    for &backend in Backend::available() {
        for suite in CipherSuite::ALL {
            let mut group = c.benchmark_group(format!("{backend}/{suite}"));
            group
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(2));
            let (tx, mut rx, _) = secy_pair(suite, backend);
            let aead = backend.key(suite, key(suite).sak).unwrap();
            let aad_len = header_len(true);
            for size in SIZES {
                group.throughput(Throughput::Bytes(size as u64));

                let mut f = frame(&tx, size);
                let mut stats = TxStats::default();
                group.bench_function(BenchmarkId::new("protect", size), |b| {
                    b.iter(|| tx.protect(&mut stats, &mut f, size).unwrap())
                });

                let mut buf = vec![0xab; aad_len + size];
                let iv = [7u8; 12];
                group.bench_function(BenchmarkId::new("seal", size), |b| {
                    b.iter(|| {
                        let (aad, data) = buf.split_at_mut(aad_len);
                        aead.seal(&iv, aad, data).unwrap()
                    })
                });

                let mut protected = frame(&tx, size);
                let p = tx.protect(&mut stats, &mut protected, size).unwrap();
                protected.truncate(p.len);
                let mut rx_stats = RxStats::default();
                group.bench_function(BenchmarkId::new("validate", size), |b| {
                    b.iter_batched_ref(
                        || protected.clone(),
                        |f| rx.validate(&mut rx_stats, f).unwrap(),
                        BatchSize::SmallInput,
                    )
                });

                let mut sealed = vec![0xab; aad_len + size];
                let tag = {
                    let (aad, data) = sealed.split_at_mut(aad_len);
                    aead.seal(&iv, aad, data).unwrap()
                };
                group.bench_function(BenchmarkId::new("open", size), |b| {
                    b.iter_batched_ref(
                        || sealed.clone(),
                        |s| {
                            let (aad, data) = s.split_at_mut(aad_len);
                            aead.open(&iv, aad, data, &tag).unwrap()
                        },
                        BatchSize::SmallInput,
                    )
                });
            }
            group.finish();
        }
    }
}

/// Framing overhead per frame, measured against the bare seal interleaved with it.
fn overhead(c: &mut Criterion) {
    for &backend in Backend::available() {
        for suite in [CipherSuite::GcmAes128, CipherSuite::GcmAesXpn256] {
            let mut group = c.benchmark_group(format!("overhead/{backend}/{suite}"));
            group.measurement_time(Duration::from_secs(3));
            let (tx, _, _) = secy_pair(suite, backend);
            let aead = backend.key(suite, key(suite).sak).unwrap();
            let aad_len = header_len(true);
            for size in [64, 1420] {
                let mut f = frame(&tx, size);
                let mut buf = vec![0xab; aad_len + size];
                let mut stats = TxStats::default();
                let iv = [7u8; 12];
                // The receive side: validate against the bare open of the same octets. Both
                // work on fresh copies (decryption is in place), copied outside the timing.
                let mut protected = frame(&tx, size);
                let p = tx.protect(&mut stats, &mut protected, size).unwrap();
                protected.truncate(p.len);
                let mut sealed = vec![0xab; aad_len + size];
                let tag = {
                    let (aad, data) = sealed.split_at_mut(aad_len);
                    aead.seal(&iv, aad, data).unwrap()
                };
                let (_, mut rx, _) = secy_pair(suite, backend);
                let mut rx_stats = RxStats::default();
                let mut frames = vec![protected.clone(); 32];
                let mut opened = vec![sealed.clone(); 32];
                group.bench_function(BenchmarkId::new("validate-minus-open", size), |b| {
                    b.iter_custom(|iters| {
                        let (mut validate, mut open) = (Duration::ZERO, Duration::ZERO);
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(32) as usize;
                            for (f, s) in frames.iter_mut().zip(opened.iter_mut()).take(n) {
                                f.copy_from_slice(&protected);
                                s.copy_from_slice(&sealed);
                            }
                            let t = Instant::now();
                            for f in frames.iter_mut().take(n) {
                                black_box(rx.validate(&mut rx_stats, f).unwrap());
                            }
                            validate += t.elapsed();
                            let t = Instant::now();
                            for s in opened.iter_mut().take(n) {
                                let (aad, data) = s.split_at_mut(aad_len);
                                aead.open(&iv, aad, data, &tag).unwrap();
                            }
                            open += t.elapsed();
                            left -= n as u64;
                        }
                        // A sample where noise made the difference negative reads as 1 ns over
                        // the whole sample (criterion refuses zero).
                        validate.saturating_sub(open).max(Duration::from_nanos(1))
                    })
                });
                group.bench_function(BenchmarkId::new("protect-minus-seal", size), |b| {
                    b.iter_custom(|iters| {
                        let (mut protect, mut seal) = (Duration::ZERO, Duration::ZERO);
                        let mut left = iters;
                        while left > 0 {
                            let n = left.min(32);
                            let t = Instant::now();
                            for _ in 0..n {
                                black_box(tx.protect(&mut stats, &mut f, size).unwrap());
                            }
                            protect += t.elapsed();
                            let t = Instant::now();
                            for _ in 0..n {
                                let (aad, data) = buf.split_at_mut(aad_len);
                                black_box(aead.seal(&iv, aad, data).unwrap());
                            }
                            seal += t.elapsed();
                            left -= n;
                        }
                        protect.saturating_sub(seal).max(Duration::from_nanos(1))
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group!(benches, secy, overhead);
criterion_main!(benches);

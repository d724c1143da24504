//! Flow accounting per packet under criterion: what a worker pays to count one IP packet in
//! its flow table, for a bulk TCP flow (runs of one flow, added up before the map), for
//! packets of 1024 flows taking turns (a lookup each), and for a flood of new flows into a
//! full table (an eviction each). Beside it, GCM-AES-XPN-256 protecting one 1420-octet frame
//! (the work the packet costs anyway), measured in the same run by `secy`.
//! `cargo bench -p interlink-benches --bench flows`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use interlink_flow::{Table, TableConfig};

fn tcp(sport: u16, dst: u8, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[9] = 6;
    p[12..16].copy_from_slice(&[10, 1, 0, 2]);
    p[16..20].copy_from_slice(&[10, 2, 0, dst]);
    p[20..22].copy_from_slice(&sport.to_be_bytes());
    p[22..24].copy_from_slice(&5201u16.to_be_bytes());
    p[33] = 0x10;
    p
}

fn account(c: &mut Criterion) {
    let cfg = TableConfig {
        max_flows: 65536,
        active_ms: 60_000,
        idle_ms: 15_000,
        sampling: 1,
    };
    let mut g = c.benchmark_group("flow_account");
    g.throughput(Throughput::Elements(1024));
    let bulk = tcp(40000, 2, 1440);
    g.bench_function("one bulk flow, 1024 packets", |b| {
        let mut t = Table::new(cfg);
        let mut out = Vec::new();
        b.iter(|| {
            for _ in 0..1024 {
                t.account(&bulk, 1, &mut out);
            }
            t.commit(&mut out);
        })
    });
    let many: Vec<Vec<u8>> = (0..1024u16).map(|i| tcp(40000 + i, 2, 1440)).collect();
    g.bench_function("1024 flows taking turns", |b| {
        let mut t = Table::new(cfg);
        let mut out = Vec::new();
        b.iter(|| {
            for p in &many {
                t.account(p, 1, &mut out);
            }
            t.commit(&mut out);
        })
    });
    let fresh: Vec<Vec<u8>> = (0..65536u32)
        .map(|i| tcp(i as u16, (i >> 16) as u8 + 3, 64))
        .collect();
    g.bench_function("new flows into a full table", |b| {
        let mut t = Table::new(TableConfig {
            max_flows: 4096,
            ..cfg
        });
        let mut out = Vec::new();
        let mut i = 0;
        b.iter(|| {
            for _ in 0..1024 {
                t.account(&fresh[i % fresh.len()], 1, &mut out);
                i += 1;
            }
            t.commit(&mut out);
            out.clear();
        })
    });
    g.finish();
}

criterion_group!(benches, account);
criterion_main!(benches);

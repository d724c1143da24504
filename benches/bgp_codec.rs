//! BGP hot paths under criterion: decoding a full 4096-octet UPDATE of /24s (the form a
//! table load arrives in) and inserting prefixes into the RIB, per prefix.
//! `cargo bench -p interlink-benches --bench bgp_codec`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use interlink_bgp::fuzzing::codec;
use interlink_bgp::rib::{PeerInfo, Rib};
use interlink_bgp::update::{
    decode, encode_announce, Attrs, Decoded, Nlri, Origin, Segment, Update,
};
use interlink_bgp::wire::{frame, MAX_LEN};

fn prefixes(n: usize) -> Vec<Nlri> {
    (0..n)
        .map(|i| {
            Nlri::new(
                IpAddr::V4(Ipv4Addr::from(0x1000_0000u32 + ((i as u32) << 8))),
                24,
            )
            .unwrap()
        })
        .collect()
}

fn attrs() -> Attrs {
    Attrs {
        origin: Some(Origin::Igp),
        as_path: vec![Segment::Sequence(vec![64512, 64513, 64514])],
        next_hop: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        med: Some(10),
        communities: vec![0xfc00_0001],
        ..Attrs::default()
    }
}

fn update_decode(c: &mut Criterion) {
    let mut wire = Vec::new();
    encode_announce(&mut wire, &prefixes(5000), &attrs(), &codec(true, true));
    let f = frame(&wire, MAX_LEN).unwrap().unwrap();
    let body = f.body.to_vec();
    let Decoded::Update(u) = decode(&body, &codec(true, true)) else {
        panic!("the bench UPDATE does not decode");
    };
    let n = u.announced.len();
    let mut g = c.benchmark_group("update");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("decode {} octets, {n} prefixes", body.len()), |b| {
        b.iter(|| black_box(decode(black_box(&body), &codec(true, true))))
    });
    g.finish();
}

fn rib_insert(c: &mut Criterion) {
    const N: usize = 100_000;
    let a = Arc::new(attrs());
    let updates: Vec<Update> = prefixes(N)
        .chunks(1000)
        .map(|chunk| Update {
            announced: chunk.to_vec(),
            attrs: Some(a.clone()),
            ..Update::default()
        })
        .collect();
    let mut g = c.benchmark_group("rib");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.bench_function(format!("insert {N} prefixes from one peer"), |b| {
        b.iter_batched(
            || {
                let mut rib = Rib::new(false);
                rib.set_peer(
                    1,
                    PeerInfo {
                        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                        router_id: Ipv4Addr::new(10, 0, 0, 2),
                        asn: 64512,
                        ebgp: true,
                    },
                );
                rib
            },
            |mut rib| {
                for u in &updates {
                    black_box(rib.apply(1, u));
                }
                rib
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, update_decode, rib_insert);
criterion_main!(benches);

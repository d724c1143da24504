//! The fuzz target's body, shared with the corpus replay under `cargo test`: arbitrary
//! packets into a small flow table on a fake clock, with expiries, and every record through
//! the IPFIX encoder. Checked: no panic; the table never holds more than its bound; every
//! packet counted is in exactly one record or flow (packets and octets); every message fits
//! a datagram and numbers its records.

use crate::ipfix::{Context, Encoder, MAX_MESSAGE};
use crate::table::{Record, Table, TableConfig};
use crate::{parse, Direction};

pub fn packets(data: &[u8]) {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let max_flows = usize::from(cfg & 0x1f) + 1;
    let sampling = u32::from(cfg >> 5) + 1;
    let mut t = Table::new(TableConfig {
        max_flows,
        active_ms: 5000,
        idle_ms: 2000,
        sampling,
    });
    let mut out: Vec<Record> = Vec::new();
    let (mut now, mut seen, mut counted, mut octets) = (0u64, 0u64, 0u64, 0u64);
    // Each packet: its length, a step of the clock (x 100 ms), then its octets.
    while let [len, step, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (pkt, more) = tail.split_at(len);
        rest = more;
        now += u64::from(*step) * 100;
        seen += 1;
        if seen % u64::from(sampling) == 0 {
            if let Some(p) = parse(pkt) {
                counted += 1;
                octets += u64::from(p.octets);
            }
        }
        t.account(pkt, now, &mut out);
        if step & 2 == 2 {
            t.commit(&mut out);
        }
        assert!(
            t.len() <= max_flows + 1,
            "the map and the run being added up"
        );
        if step & 1 == 1 {
            t.expire(now, &mut out);
        }
    }
    t.drain(&mut out);
    assert!(t.is_empty());
    assert_eq!(out.iter().map(|r| r.counts.packets).sum::<u64>(), counted);
    assert_eq!(out.iter().map(|r| r.counts.octets).sum::<u64>(), octets);
    let ctx = Context {
        ifindex: 1,
        direction: Direction::Ingress,
        sampling,
    };
    let recs: Vec<(Context, Record)> = out.into_iter().map(|r| (ctx, r)).collect();
    let mut enc = Encoder::new(0);
    let msgs = enc.messages(0, &recs);
    assert!(msgs.iter().all(|m| m.len() <= MAX_MESSAGE));
    assert_eq!(enc.sequence as usize, recs.len());
}

//! The fuzz entry point, shared by `crates/fib/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as a datagram from the kernel, through the message walk, the ack, event
//! and nexthop parsers, and into a FIB core as dump entries, notifications and acks. None of it may panic.

use crate::fib::Fib;
use crate::route::{Prefix, Route};
use crate::wire::{self, KernelEvent, Target};

pub fn netlink_rx(data: &[u8]) {
    let mut fib = Fib::new(
        Target {
            table: 254,
            metric: 20,
            protocol: 77,
        },
        8,
    );
    // Some state for the messages to act on: wanted routes, some in flight.
    for i in 0..4u8 {
        let p = Prefix::V4([10, i, 0, 0], 16);
        fib.set(p, Some(&Route::Blackhole));
    }
    let mut seqs = Vec::new();
    while let Some(r) = fib.next_request() {
        seqs.push(r.seq());
    }
    let startup = data.first().is_some_and(|b| b & 1 == 1);
    for m in wire::messages(data) {
        if let Some((errno, msg)) = wire::parse_error(&m) {
            fib.ack(m.seq, errno, msg);
            // And as an ack of something actually in flight.
            if let Some(&s) = seqs.get(m.seq as usize % seqs.len().max(1)) {
                fib.ack(s, errno, None);
            }
        }
        // Nexthop objects: read, and what is read written again reads the same.
        if let Some(nh) = wire::parse_nexthop(&m) {
            if let Some(hop) = &nh.hop {
                let mut again = Vec::new();
                wire::encode_nexthop(&mut again, 1, wire::Op::Add, nh.protocol, nh.id, hop);
                let back = wire::messages(&again)
                    .next()
                    .and_then(|m| wire::parse_nexthop(&m));
                assert_eq!(back.map(|b| b.id), Some(nh.id));
            }
        }
        match wire::parse_event(&m) {
            Some(KernelEvent::NewRoute(kr)) if startup => fib.adopt(&kr, true),
            Some(ev) => fib.observe(&ev),
            None => {}
        }
        while fib.next_request().is_some() {}
    }
    fib.sweep_stale();
    fib.withdraw_all();
    while let Some(r) = fib.next_request() {
        fib.ack(r.seq(), 0, None);
    }
    fib.drain_events().for_each(drop);
}

//! The fuzz entry point, shared by `crates/fib/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as a datagram from the kernel, through the message walk, the ack, event
//! and nexthop parsers, and into a FIB core (with and without nexthop objects, failed over
//! or not) as dump entries, notifications and acks. None of it may panic, and a kernel that
//! then does all it is asked must leave the FIB idle.

use crate::fib::Fib;
use crate::route::{NextHop, Prefix, Route};
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
    // Half the inputs run with nexthop objects, with a connected network for gateways.
    let objects = data.first().is_some_and(|b| b & 2 == 2);
    fib.use_nexthop_objects(objects);
    fib.observe(&KernelEvent::Address {
        ifindex: 3,
        address: [192, 0, 2, 9].into(),
        prefix: Prefix::V4([192, 0, 2, 0], 24),
        added: true,
    });
    // Some state for the messages to act on: wanted routes (through objects, protected,
    // through groups, blackholes), some in flight.
    let gw = |n: u8| NextHop::via([192, 0, 2, n].into());
    for i in 0..8u8 {
        let p = Prefix::V4([10, i, 0, 0], 16);
        let r = match i % 4 {
            0 => Route::Blackhole,
            1 => Route::Unicast(vec![gw(1)]),
            2 => Route::protected(gw(1), gw(2)),
            _ => Route::unicast(vec![gw(1), gw(3)]).expect("two hops"),
        };
        fib.set(p, Some(&r));
    }
    let mut seqs = Vec::new();
    while let Some(r) = fib.next_request() {
        seqs.push(r.seq());
    }
    // Every request sent, for the kernel that answers them all at the end.
    let mut sent = seqs.clone();
    if data.get(1).is_some_and(|b| b & 1 == 1) {
        fib.fail_over([192, 0, 2, 1].into());
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
            Some(KernelEvent::Nexthop { nh, .. }) if startup => fib.adopt_nexthop(&nh, true),
            Some(ev) => fib.observe(&ev),
            None => {}
        }
        while let Some(r) = fib.next_request() {
            sent.push(r.seq());
        }
    }
    // A dump of the objects after an interface went down, then the sweep and a withdrawal.
    fib.begin_nexthop_check();
    fib.finish_nexthop_check();
    fib.sweep_stale();
    fib.withdraw_all();
    for s in sent {
        fib.ack(s, 0, None);
    }
    while let Some(r) = fib.next_request() {
        fib.ack(r.seq(), 0, None);
    }
    // Whatever came before, a kernel that does all it is asked leaves nothing waiting: no
    // request, no object, no prefix parked for one.
    assert!(fib.is_idle(), "the FIB is stuck");
    fib.drain_events().for_each(drop);
}

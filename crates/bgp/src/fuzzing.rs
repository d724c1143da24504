//! The fuzz entry point, shared by `crates/bgp/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as what a peer sends on the TCP connection, framed and decoded message by
//! message (UPDATE bodies through the RFC 7606 decoder) and fed to a session state machine
//! that has just sent its OPEN. Nothing may
//! panic, and a decode error must be one the session can send.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::fsm::{Config, Event, Session};
use crate::wire::{frame, Capabilities, Family, Message, MAX_EXTENDED_LEN, MAX_LEN};

pub fn messages(data: &[u8]) {
    let now = Instant::now();
    let mut s = Session::new(Config {
        local_as: 65001,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        peer_as: 64512,
        hold_time: 90,
        connect_retry: Duration::from_secs(30),
        passive: false,
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            four_octet_as: Some(65001),
            extended_message: true,
            ..Capabilities::default()
        },
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(60),
    });
    s.handle(now, Event::Start);
    s.handle(now, Event::Connected);
    // The first octet picks the size limit, as negotiation would.
    let (max, mut rest) = match data.split_first() {
        Some((b, rest)) if b & 1 == 1 => (MAX_EXTENDED_LEN, rest),
        Some((_, rest)) => (MAX_LEN, rest),
        None => return,
    };
    loop {
        match frame(rest, max) {
            Ok(Some(f)) => {
                let ev = match Message::decode(f.kind, f.body) {
                    Ok(m) => {
                        // What decodes encodes to a message that decodes, and encoding is
                        // then stable (unknown capabilities are not sent on, by design).
                        let mut once = Vec::new();
                        m.encode(&mut once);
                        let g = frame(&once, MAX_EXTENDED_LEN).ok().flatten();
                        let again = g.map(|g| Message::decode(g.kind, g.body));
                        let Some(Ok(again)) = again else {
                            panic!("{m:?} encodes to something that does not decode");
                        };
                        let mut twice = Vec::new();
                        again.encode(&mut twice);
                        assert_eq!(once, twice);
                        // UPDATE bodies through the RFC 7606 decoder, both AS widths.
                        if let Message::Update(body) = &m {
                            let _ = crate::update::decode(body, &codec(true, true));
                            let _ = crate::update::decode(body, &codec(false, false));
                        }
                        Event::Received(m)
                    }
                    Err(n) => Event::Malformed(n),
                };
                s.handle(now, ev);
                rest = &rest[f.len..];
            }
            Ok(None) => break,
            Err(n) => {
                s.handle(now, Event::Malformed(n));
                break;
            }
        }
    }
    s.on_timer(now + Duration::from_secs(300));
}

/// A codec for the fuzz targets and tests: standard messages.
pub fn codec(four_octet_as: bool, ebgp: bool) -> crate::update::Codec {
    crate::update::Codec {
        four_octet_as,
        ebgp,
        max_len: crate::wire::MAX_LEN,
    }
}

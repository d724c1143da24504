//! The fuzz entry point, shared by `crates/bfd/fuzz` and the corpus replay under `cargo test`:
//! two sessions on a simulated wire, and arbitrary bytes that advance the clock, inject
//! datagrams (read like any that arrive), drop the wire's packets, and take a session
//! administratively down and up. Nothing may panic, and afterwards two sessions left to an
//! honest wire must come up within a few seconds, whatever was injected.

use std::time::{Duration, Instant};

use crate::packet::{ControlPacket, State};
use crate::session::{AuthKey, Session, SessionConfig};

pub fn control(data: &[u8]) {
    let start = Instant::now();
    let mut now = start;
    // Odd first octets: both sessions with meticulous keyed SHA1.
    let cfg = SessionConfig {
        auth: data
            .first()
            .is_some_and(|b| b & 1 == 1)
            .then(|| AuthKey::new(9, b"fuzz", true))
            .flatten(),
        ..SessionConfig::default()
    };
    let mut a = Session::new(cfg, 0x0a0a_0001, now);
    let mut b = Session::new(cfg, 0x0b0b_0002, now);
    let mut admin = false;
    let mut i = 0;
    // A datagram as the service takes it: read, authenticated, then the session's.
    fn take(raw: &[u8], to: &mut Session, now: Instant) {
        if let Ok(p) = ControlPacket::parse(raw) {
            if to.authentic(raw, &p) {
                to.on_packet(&p, now);
            }
        }
    }
    // Exchanges what is due, over a wire that may drop it.
    let exchange = |a: &mut Session, b: &mut Session, now: Instant, drop: bool| {
        a.on_timer(now);
        b.on_timer(now);
        while let Some(p) = a.poll_transmit(now) {
            if !drop {
                take(&a.encode(&p), b, now);
            }
        }
        while let Some(p) = b.poll_transmit(now) {
            if !drop {
                take(&b.encode(&p), a, now);
            }
        }
    };
    while i < data.len() {
        let op = data[i];
        i += 1;
        match op % 5 {
            0 => {
                let ms = data.get(i).copied().unwrap_or(1);
                i += 1;
                for _ in 0..ms {
                    now += Duration::from_millis(1);
                    exchange(&mut a, &mut b, now, false);
                }
            }
            1 | 2 => {
                // A datagram from anyone (with an authentication section, or not), to one
                // of them.
                let end = (i + 52).min(data.len());
                let to = if op % 5 == 1 { &mut a } else { &mut b };
                take(&data[i..end], to, now);
                i = end;
            }
            3 => {
                // A lossy stretch.
                let ms = data.get(i).copied().unwrap_or(1);
                i += 1;
                for _ in 0..ms {
                    now += Duration::from_millis(1);
                    exchange(&mut a, &mut b, now, true);
                }
            }
            _ => {
                admin = !admin;
                a.set_admin_down(admin, now);
            }
        }
    }
    a.set_admin_down(false, now);
    // An honest wire: both up within ten seconds (a session the noise left waiting for a
    // peer that went goes down first; a sequence number the peer has passed is forgotten
    // after 6 s; then they come up).
    for _ in 0..10_000 {
        now += Duration::from_millis(1);
        exchange(&mut a, &mut b, now, false);
    }
    assert_eq!(
        (a.state(), b.state()),
        (State::Up, State::Up),
        "not up on an honest wire"
    );
}

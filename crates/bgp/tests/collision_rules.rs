//! RFC 4271 §6.8 without sockets: `Connections` fed every order in which two connections
//! with one peer can come up, close and settle. (`collision.rs` runs the same against a real
//! peer over TCP, as root.)

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use interlink_bgp::collision::{Connections, In, Out};
use interlink_bgp::fsm::{self, Event, State};
use interlink_bgp::wire::{code, Capabilities, Family, Message, Notification, Open};

const LOCAL_AS: u32 = 65001;
const PEER_AS: u32 = 65002;

fn caps(asn: u32) -> Capabilities {
    Capabilities {
        multiprotocol: vec![Family::IPV4_UNICAST],
        route_refresh: true,
        four_octet_as: Some(asn),
        graceful_restart: None,
        extended_message: false,
        unknown: vec![],
    }
}

fn connections(local_id: [u8; 4]) -> Connections {
    Connections::new(fsm::Config {
        local_as: LOCAL_AS,
        router_id: Ipv4Addr::from(local_id),
        peer_as: PEER_AS,
        hold_time: 90,
        connect_retry: Duration::from_secs(5),
        passive: false,
        caps: caps(LOCAL_AS),
        idle_hold: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(120),
    })
}

/// The peer's OPEN, from identifier `id`.
fn open(id: [u8; 4]) -> Event {
    Event::Received(Message::Open(Open {
        asn: PEER_AS,
        hold_time: 90,
        router_id: Ipv4Addr::from(id),
        caps: caps(PEER_AS),
    }))
}

fn keepalive() -> Event {
    Event::Received(Message::Keepalive)
}

fn cease_collision() -> Event {
    Event::Received(Message::Notification(Notification::new(
        code::CEASE,
        code::CEASE_COLLISION,
        &[],
    )))
}

fn is_open(o: &Out, id: u64) -> bool {
    matches!(o, Out::Send(i, Message::Open(_)) if *i == id)
}

fn is_cease(o: &Out, id: u64) -> bool {
    matches!(o, Out::Send(i, Message::Notification(n))
        if *i == id && n.code == code::CEASE && n.subcode == code::CEASE_COLLISION)
}

fn closed(out: &[Out], id: u64) -> bool {
    out.contains(&Out::Close(id))
}

fn up_on(out: &[Out]) -> Option<u64> {
    out.iter().find_map(|o| match o {
        Out::Up(_, id) => Some(*id),
        _ => None,
    })
}

const LOW: [u8; 4] = [10, 0, 0, 1];
const HIGH: [u8; 4] = [10, 0, 0, 9];

/// We connect (connection 1, ours), then the peer's connection (2) arrives while ours is
/// opening: both run.
fn ours_then_theirs(local_id: [u8; 4]) -> (Connections, Instant) {
    let now = Instant::now();
    let mut c = connections(local_id);
    let out = c.handle(now, In::Session(Event::Start));
    assert!(out.contains(&Out::Connect), "{out:?}");
    let out = c.handle(now, In::Connected(1));
    assert!(out.iter().any(|o| is_open(o, 1)), "{out:?}");
    assert_eq!(c.state(), State::OpenSent);
    let out = c.handle(now, In::Accepted(2));
    assert!(
        out.iter().any(|o| is_open(o, 2)),
        "our OPEN on the collision: {out:?}"
    );
    assert_eq!((c.primary(), c.other()), (Some(1), Some(2)));
    (c, now)
}

#[test]
fn both_connect_and_the_higher_identifier_keeps_its_own_connection() {
    // We have the higher identifier: our connection (1) stays, theirs gets the Cease.
    let (mut c, now) = ours_then_theirs(HIGH);
    let out = c.handle(now, In::Read(1, vec![open(LOW)]));
    assert!(out.iter().any(|o| is_cease(o, 2)), "{out:?}");
    assert!(closed(&out, 2) && !closed(&out, 1));
    assert_eq!((c.primary(), c.other()), (Some(1), None));
    let out = c.handle(now, In::Read(1, vec![keepalive()]));
    assert_eq!(up_on(&out), Some(1));

    // The peer has the higher one: its connection (2) stays, ours gets the Cease.
    let (mut c, now) = ours_then_theirs(LOW);
    let out = c.handle(now, In::Read(1, vec![open(HIGH)]));
    assert!(out.iter().any(|o| is_cease(o, 1)), "{out:?}");
    assert!(closed(&out, 1) && !closed(&out, 2));
    assert_eq!((c.primary(), c.other()), (Some(2), None));
    // The kept connection's session goes on from where it was (our OPEN sent on it).
    let out = c.handle(now, In::Read(2, vec![open(HIGH), keepalive()]));
    assert_eq!(up_on(&out), Some(2), "{out:?}");
    assert_eq!(c.state(), State::Established);
}

#[test]
fn their_connection_first_then_ours_collides() {
    let now = Instant::now();
    let mut c = connections(HIGH);
    c.handle(now, In::Session(Event::Start));
    // The peer's connection (1) comes first.
    let out = c.handle(now, In::Accepted(1));
    assert!(out.iter().any(|o| is_open(o, 1)));
    // Ours (2) completes while theirs is opening: a collision, not dropped.
    let out = c.handle(now, In::Connected(2));
    assert!(out.iter().any(|o| is_open(o, 2)), "{out:?}");
    assert_eq!(c.other(), Some(2));
    // We have the higher identifier: ours (2) stays.
    let out = c.handle(now, In::Read(1, vec![open(LOW)]));
    assert!(
        out.iter().any(|o| is_cease(o, 1)) && closed(&out, 1),
        "{out:?}"
    );
    assert_eq!(c.primary(), Some(2));
}

#[test]
fn the_colliding_connection_may_come_up_in_the_read_that_settles() {
    // Its OPEN and KEEPALIVE in one read, before the primary knows the identifier: when the
    // collision keeps it, the session is up on it at once.
    let (mut c, now) = ours_then_theirs(LOW);
    let out = c.handle(now, In::Read(2, vec![open(HIGH), keepalive()]));
    assert!(
        out.iter().any(|o| is_cease(o, 1)) && closed(&out, 1),
        "{out:?}"
    );
    assert_eq!(up_on(&out), Some(2), "{out:?}");
    assert_eq!((c.primary(), c.other()), (Some(2), None));
}

#[test]
fn a_colliding_connection_that_closes_early_leaves_the_first() {
    let (mut c, now) = ours_then_theirs(LOW);
    let out = c.handle(now, In::Closed(2));
    assert!(closed(&out, 2));
    assert_eq!((c.primary(), c.other()), (Some(1), None));
    let out = c.handle(now, In::Read(1, vec![open(HIGH), keepalive()]));
    assert_eq!(up_on(&out), Some(1));
}

#[test]
fn a_first_connection_the_peer_closes_hands_over_to_the_other() {
    // The peer settled the collision against our connection by closing it.
    let (mut c, now) = ours_then_theirs(HIGH);
    let out = c.handle(now, In::Closed(1));
    assert!(closed(&out, 1));
    assert!(
        !out.iter().any(|o| matches!(o, Out::Down(_))),
        "the session goes on: {out:?}"
    );
    assert_eq!((c.primary(), c.other()), (Some(2), None));
    let out = c.handle(now, In::Read(2, vec![open(LOW), keepalive()]));
    assert_eq!(up_on(&out), Some(2));
}

#[test]
fn a_cease_for_collision_on_the_first_hands_over_to_the_other() {
    let (mut c, now) = ours_then_theirs(HIGH);
    let out = c.handle(now, In::Read(1, vec![cease_collision()]));
    assert!(closed(&out, 1), "{out:?}");
    assert!(!out.iter().any(|o| matches!(o, Out::Down(_))));
    assert_eq!(c.primary(), Some(2));
    // Without a collision in progress, the same Cease ends the session.
    let now = Instant::now();
    let mut c = connections(HIGH);
    c.handle(now, In::Session(Event::Start));
    c.handle(now, In::Connected(1));
    let out = c.handle(now, In::Read(1, vec![cease_collision()]));
    assert!(closed(&out, 1), "{out:?}");
    assert_eq!(c.primary(), None);
}

#[test]
fn connections_after_the_session_is_up_are_refused() {
    let now = Instant::now();
    let mut c = connections(HIGH);
    c.handle(now, In::Session(Event::Start));
    c.handle(now, In::Connected(1));
    let out = c.handle(now, In::Read(1, vec![open(LOW), keepalive()]));
    assert_eq!(up_on(&out), Some(1));
    let out = c.handle(now, In::Accepted(2));
    assert_eq!(out, [Out::Close(2)]);
    // A third while one collides is refused too.
    let (mut c, now) = ours_then_theirs(LOW);
    let out = c.handle(now, In::Accepted(3));
    assert_eq!(out, [Out::Close(3)]);
    // Settled for the peer's connection (2), still opening: a connection of ours that no
    // attempt of the session's asked for (4) is closed, and the session comes up on 2.
    let out = c.handle(now, In::Read(1, vec![open(HIGH)]));
    assert!(closed(&out, 1));
    let out = c.handle(now, In::Connected(4));
    assert_eq!(out, [Out::Close(4)]);
    let out = c.handle(now, In::Read(2, vec![open(HIGH), keepalive()]));
    assert_eq!(up_on(&out), Some(2));
    assert_eq!(c.other(), None);
}

/// The peer's connection comes up while ours is still opening (with TCP-MD5 a peer that is
/// not listening yet drops our SYNs without a reset). Once the session is up on theirs, our
/// attempt is given up; if it fails or completes anyway, the session stays. (OpenBGPD takes
/// a new connection while Established as a graceful restart and drops the session; and our
/// attempt timing out used to take the session down.)
#[test]
fn an_attempt_still_opening_when_the_peers_connection_comes_up_is_given_up() {
    let now = Instant::now();
    let mut c = connections(HIGH);
    let out = c.handle(now, In::Session(Event::Start));
    assert!(out.contains(&Out::Connect), "{out:?}");
    let out = c.handle(now, In::Accepted(2));
    assert!(out.iter().any(|o| is_open(o, 2)), "{out:?}");
    // While OpenSent, the attempt still runs (a collision would be settled by identifiers).
    assert!(!out.contains(&Out::CancelConnect));
    // A failed attempt now does not end the session being opened on theirs.
    let out = c.handle(now, In::ConnectFailed);
    assert_eq!(out, vec![]);
    assert_eq!(c.state(), State::OpenSent);
    // ...and a retry would be asked for by the session, not here. Up on theirs:
    let out = c.handle(now, In::Read(2, vec![open(LOW), keepalive()]));
    assert_eq!(up_on(&out), Some(2), "{out:?}");
    assert_eq!(c.state(), State::Established);

    // Again, with the attempt still running when the session comes up.
    let mut c = connections(HIGH);
    c.handle(now, In::Session(Event::Start));
    c.handle(now, In::Accepted(2));
    let out = c.handle(now, In::Read(2, vec![open(LOW), keepalive()]));
    assert_eq!(up_on(&out), Some(2), "{out:?}");
    assert!(out.contains(&Out::CancelConnect), "{out:?}");
    // It finishes anyway: closed, the session untouched.
    let out = c.handle(now, In::Connected(3));
    assert_eq!(out, vec![Out::Close(3)]);
    assert_eq!(c.state(), State::Established);
    // Or it fails: nothing happens.
    assert_eq!(c.handle(now, In::ConnectFailed), vec![]);
    assert_eq!(c.state(), State::Established);
    assert_eq!(c.primary(), Some(2));
}

/// The peer's OPEN and KEEPALIVE on our connection, then in the same read its Cease for a
/// collision on it: the session is not up on the other connection until that one is (it was
/// reported up twice, the first time too early; seen as "established" logged twice).
#[test]
fn a_connection_up_and_ceased_in_one_read_reports_nothing() {
    let (mut c, now) = ours_then_theirs(LOW);
    let out = c.handle(
        now,
        In::Read(1, vec![open(HIGH), keepalive(), cease_collision()]),
    );
    assert_eq!(up_on(&out), None, "{out:?}");
    assert!(closed(&out, 1));
    assert_eq!(c.primary(), Some(2));
    let out = c.handle(now, In::Read(2, vec![open(HIGH), keepalive()]));
    assert_eq!(up_on(&out), Some(2));
}

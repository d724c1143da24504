//! The session state machine, driven by events and a fake clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use interlink_bgp::fsm::{keep_ours_on_collision, Action, Config, Down, Event, Session, State};
use interlink_bgp::wire::{Capabilities, Family, Message, Notification, Open};

fn config(passive: bool) -> Config {
    Config {
        local_as: 65001,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        peer_as: 64512,
        hold_time: 90,
        connect_retry: Duration::from_secs(30),
        passive,
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            four_octet_as: Some(65001),
            ..Capabilities::default()
        },
        idle_hold: Duration::from_secs(5),
        max_idle_hold: Duration::from_secs(60),
    }
}

fn peer_open(hold: u16) -> Message {
    Message::Open(Open {
        asn: 64512,
        hold_time: hold,
        router_id: Ipv4Addr::new(192, 0, 2, 2),
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST],
            route_refresh: true,
            four_octet_as: Some(64512),
            ..Capabilities::default()
        },
    })
}

fn sent_notification(actions: &[Action]) -> Option<Notification> {
    actions.iter().find_map(|a| match a {
        Action::Send(Message::Notification(n)) => Some(n.clone()),
        _ => None,
    })
}

/// Brings a session to Established at `t0`; returns it.
fn established(t0: Instant, hold: u16) -> Session {
    let mut s = Session::new(config(false));
    assert_eq!(s.handle(t0, Event::Start), [Action::Connect]);
    assert_eq!(s.state(), State::Connect);
    let a = s.handle(t0, Event::Connected);
    assert!(matches!(a.as_slice(), [Action::Send(Message::Open(o))] if o.asn == 65001));
    assert_eq!(s.state(), State::OpenSent);
    let a = s.handle(t0, Event::Received(peer_open(hold)));
    assert_eq!(a, [Action::Send(Message::Keepalive)]);
    assert_eq!(s.state(), State::OpenConfirm);
    let a = s.handle(t0, Event::Received(Message::Keepalive));
    let [Action::Up(n)] = a.as_slice() else {
        panic!("{a:?}")
    };
    assert_eq!(n.hold_time, hold.min(90));
    assert_eq!(n.families, [Family::IPV4_UNICAST]);
    assert!(n.four_octet_as && n.route_refresh && !n.extended_message);
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn a_session_comes_up_and_keeps_alive() {
    let t0 = Instant::now();
    let mut s = established(t0, 30);
    // Hold time 30 negotiated (the smaller): keepalives every 10 s.
    assert_eq!(s.next_timer(), Some(t0 + Duration::from_secs(10)));
    assert_eq!(
        s.on_timer(t0 + Duration::from_secs(10)),
        [Action::Send(Message::Keepalive)]
    );
    // The peer's keepalives hold it up past its hold time.
    for i in 1..10 {
        let t = t0 + Duration::from_secs(20 * i);
        s.handle(t, Event::Received(Message::Keepalive));
        s.on_timer(t);
        assert_eq!(s.state(), State::Established);
    }
    // UPDATEs go to the RIB.
    let a = s.handle(
        t0 + Duration::from_secs(181),
        Event::Received(Message::Update(vec![0, 0, 0, 0])),
    );
    assert_eq!(a, [Action::Update(vec![0, 0, 0, 0])]);
}

#[test]
fn the_hold_timer_expires_with_a_notification_and_back_off() {
    let t0 = Instant::now();
    let mut s = established(t0, 9);
    let t = t0 + Duration::from_secs(9);
    let a = s.on_timer(t);
    assert_eq!(sent_notification(&a), Some(Notification::new(4, 0, &[])));
    assert!(a.contains(&Action::Close));
    assert!(matches!(a.last(), Some(Action::Down(Down::Sent(_)))));
    assert_eq!(s.state(), State::Idle);
    // It starts again after the idle hold time, doubling on each failure up to the limit.
    assert_eq!(s.next_timer(), Some(t + Duration::from_secs(5)));
    assert_eq!(s.on_timer(t + Duration::from_secs(5)), [Action::Connect]);
    let mut t = t + Duration::from_secs(5);
    for wait in [10, 20, 40, 60, 60] {
        s.handle(t, Event::Connected);
        s.handle(t, Event::Malformed(Notification::new(1, 1, &[])));
        assert_eq!(s.state(), State::Idle);
        assert_eq!(s.next_timer(), Some(t + Duration::from_secs(wait)));
        t += Duration::from_secs(wait);
        assert_eq!(s.on_timer(t), [Action::Connect]);
    }
}

#[test]
fn open_checks() {
    let t0 = Instant::now();
    // The wrong peer AS.
    let mut s = Session::new(config(false));
    s.handle(t0, Event::Start);
    s.handle(t0, Event::Connected);
    let mut wrong = peer_open(90);
    if let Message::Open(o) = &mut wrong {
        o.asn = 64513;
    }
    let a = s.handle(t0, Event::Received(wrong));
    assert_eq!(
        sent_notification(&a),
        Some(Notification::new(2, 2, &64513u16.to_be_bytes()))
    );
    assert_eq!(s.state(), State::Idle);
    // An iBGP peer with our identifier.
    let mut cfg = config(false);
    cfg.peer_as = 65001;
    let mut s = Session::new(cfg);
    s.handle(t0, Event::Start);
    s.handle(t0, Event::Connected);
    let a = s.handle(
        t0,
        Event::Received(Message::Open(Open {
            asn: 65001,
            hold_time: 90,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            caps: Capabilities::default(),
        })),
    );
    assert_eq!(
        sent_notification(&a).map(|n| (n.code, n.subcode)),
        Some((2, 3))
    );
    // Hold time 0 on either side: no keepalives and no hold timer.
    let s = established_zero();
    assert_eq!(s.next_timer(), None);
}

fn established_zero() -> Session {
    let t0 = Instant::now();
    let mut s = Session::new(config(false));
    s.handle(t0, Event::Start);
    s.handle(t0, Event::Connected);
    s.handle(t0, Event::Received(peer_open(0)));
    s.handle(t0, Event::Received(Message::Keepalive));
    assert_eq!(s.state(), State::Established);
    s
}

#[test]
fn unexpected_messages_are_fsm_errors_with_the_state_subcode() {
    let t0 = Instant::now();
    let mut s = Session::new(config(false));
    s.handle(t0, Event::Start);
    s.handle(t0, Event::Connected);
    let a = s.handle(t0, Event::Received(Message::Keepalive));
    assert_eq!(sent_notification(&a), Some(Notification::new(5, 1, &[])));
    let mut s = established(t0, 90);
    let a = s.handle(t0, Event::Received(peer_open(90)));
    assert_eq!(sent_notification(&a), Some(Notification::new(5, 3, &[])));
}

#[test]
fn stop_sends_a_shutdown_communication_and_stays_down() {
    let t0 = Instant::now();
    let mut s = established(t0, 90);
    let a = s.handle(t0, Event::Stop("maintenance".into()));
    let n = sent_notification(&a).unwrap();
    assert_eq!(n.communication().as_deref(), Some("maintenance"));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.next_timer(), None, "a stopped session does not restart");
    assert!(s.on_timer(t0 + Duration::from_secs(3600)).is_empty());
}

#[test]
fn the_peer_closing_or_notifying_brings_the_session_down() {
    let t0 = Instant::now();
    let mut s = established(t0, 90);
    let n = Notification::new(6, 2, &[0]);
    let a = s.handle(t0, Event::Received(Message::Notification(n.clone())));
    assert_eq!(a, [Action::Close, Action::Down(Down::Received(n))]);
    let mut s = established(t0, 90);
    let a = s.handle(t0, Event::ConnectionClosed);
    assert_eq!(a, [Action::Close, Action::Down(Down::ConnectionClosed)]);
}

#[test]
fn connect_retry_and_passive_peers() {
    let t0 = Instant::now();
    let mut s = Session::new(config(false));
    s.handle(t0, Event::Start);
    // The attempt fails: wait in Active for the ConnectRetry timer, then connect again.
    assert!(s.handle(t0, Event::ConnectionClosed).is_empty());
    assert_eq!(s.state(), State::Active);
    assert_eq!(s.on_timer(t0 + Duration::from_secs(30)), [Action::Connect]);
    assert_eq!(s.state(), State::Connect);
    // A passive peer never connects out; an incoming connection starts the exchange.
    let mut p = Session::new(config(true));
    assert!(p.handle(t0, Event::Start).is_empty());
    assert_eq!(p.state(), State::Active);
    assert!(p.on_timer(t0 + Duration::from_secs(300)).is_empty());
    assert!(matches!(
        p.handle(t0, Event::Connected).as_slice(),
        [Action::Send(Message::Open(_))]
    ));
}

#[test]
fn route_refresh_only_when_negotiated_for_the_family() {
    let t0 = Instant::now();
    let mut s = established(t0, 90);
    let rr = |f| {
        Event::Received(Message::RouteRefresh {
            family: f,
            subtype: 0,
        })
    };
    assert_eq!(
        s.handle(t0, rr(Family::IPV4_UNICAST)),
        [Action::RouteRefresh(Family::IPV4_UNICAST)]
    );
    assert!(s.handle(t0, rr(Family::IPV6_UNICAST)).is_empty());
}

#[test]
fn collisions_keep_the_connection_of_the_higher_identifier() {
    let a = Ipv4Addr::new(192, 0, 2, 1);
    let b = Ipv4Addr::new(192, 0, 2, 2);
    assert!(!keep_ours_on_collision(a, b));
    assert!(keep_ours_on_collision(b, a));
}

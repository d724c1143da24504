//! The session messages: round trips, known bytes, and every malformed case with the
//! NOTIFICATION it calls for.

use std::net::Ipv4Addr;

use interlink_bgp::wire::{
    code, frame, Capabilities, Family, GracefulRestart, Message, Notification, Open, MAX_LEN,
};
use proptest::prelude::*;

fn open() -> Open {
    Open {
        asn: 4_200_000_001,
        hold_time: 90,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            route_refresh: true,
            four_octet_as: Some(4_200_000_001),
            graceful_restart: Some(GracefulRestart {
                restarting: true,
                restart_time: 120,
                families: vec![(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, false)],
            }),
            extended_message: true,
            unknown: vec![],
        },
    }
}

fn round_trip(m: &Message) -> Message {
    let mut out = Vec::new();
    m.encode(&mut out);
    let f = frame(&out, MAX_LEN).unwrap().unwrap();
    assert_eq!(f.len, out.len());
    Message::decode(f.kind, f.body).unwrap()
}

#[test]
fn messages_round_trip() {
    for m in [
        Message::Open(open()),
        Message::Keepalive,
        Message::Notification(Notification::shutdown(
            code::CEASE_ADMIN_SHUTDOWN,
            "maintenance",
        )),
        Message::RouteRefresh {
            family: Family::IPV6_UNICAST,
            subtype: 0,
        },
        Message::Update(vec![0, 0, 0, 0]),
    ] {
        assert_eq!(round_trip(&m), m);
    }
}

#[test]
fn an_open_has_the_octets_rfc_4271_and_5492_give_it() {
    let o = Open {
        asn: 65001,
        hold_time: 180,
        router_id: Ipv4Addr::new(10, 0, 0, 1),
        caps: Capabilities {
            multiprotocol: vec![Family::IPV4_UNICAST],
            four_octet_as: Some(65001),
            ..Capabilities::default()
        },
    };
    let mut out = Vec::new();
    o.encode(&mut out);
    let mut want = vec![0xff; 16];
    want.extend_from_slice(&[0, 43, 1]); // length 43, OPEN
    want.extend_from_slice(&[4, 0xfd, 0xe9, 0, 180, 10, 0, 0, 1]); // version, AS, hold, id
    want.extend_from_slice(&[14, 2, 12]); // opt len, capabilities parameter of 12
    want.extend_from_slice(&[1, 4, 0, 1, 0, 1]); // MP: IPv4 unicast
    want.extend_from_slice(&[65, 4, 0, 0, 0xfd, 0xe9]); // 4-octet AS
    assert_eq!(out, want);
}

#[test]
fn a_4_octet_as_goes_as_as_trans_in_my_as() {
    let mut out = Vec::new();
    open().encode(&mut out);
    assert_eq!(&out[20..22], &23456u16.to_be_bytes());
    let f = frame(&out, MAX_LEN).unwrap().unwrap();
    assert_eq!(Open::decode(f.body).unwrap().asn, 4_200_000_001);
    // Without the capability, the AS is My AS.
    let mut plain = open();
    plain.asn = 64512;
    plain.caps.four_octet_as = None;
    assert_eq!(
        round_trip(&Message::Open(plain.clone())),
        Message::Open(plain)
    );
}

#[test]
fn framing_waits_for_whole_messages_and_finds_header_errors() {
    let mut out = Vec::new();
    Message::Keepalive.encode(&mut out);
    Message::Open(open()).encode(&mut out);
    for cut in 0..19 {
        assert_eq!(frame(&out[..cut], MAX_LEN), Ok(None));
    }
    let f = frame(&out, MAX_LEN).unwrap().unwrap();
    assert_eq!((f.kind, f.len), (4, 19));
    assert_eq!(
        frame(&out[19..40], MAX_LEN),
        Ok(None),
        "a partial OPEN waits"
    );

    let mut bad = out.clone();
    bad[3] = 0;
    assert_eq!(
        frame(&bad, MAX_LEN).unwrap_err(),
        Notification::new(1, 1, &[])
    );
    let mut bad = out.clone();
    bad[16..18].copy_from_slice(&18u16.to_be_bytes());
    assert_eq!(
        frame(&bad, MAX_LEN).unwrap_err(),
        Notification::new(1, 2, &[0, 18])
    );
    // A KEEPALIVE is exactly 19 octets.
    bad[16..18].copy_from_slice(&20u16.to_be_bytes());
    assert_eq!(
        frame(&bad, MAX_LEN).unwrap_err(),
        Notification::new(1, 2, &[0, 20])
    );
    let mut bad = out.clone();
    bad[18] = 9;
    assert_eq!(
        frame(&bad, MAX_LEN).unwrap_err(),
        Notification::new(1, 3, &[9])
    );
    // An UPDATE over 4096 octets needs the extended message capability.
    let mut big = Vec::new();
    Message::Update(vec![0; 5000]).encode(&mut big);
    assert_eq!(
        frame(&big, MAX_LEN).unwrap_err(),
        Notification::new(1, 2, &(5019u16).to_be_bytes())
    );
    assert!(frame(&big, 65535).unwrap().is_some());
}

fn open_body(f: impl FnOnce(&mut Vec<u8>)) -> Result<Open, Notification> {
    let mut out = Vec::new();
    open().encode(&mut out);
    let mut body = out[19..].to_vec();
    f(&mut body);
    Open::decode(&body)
}

#[test]
fn open_errors_carry_the_right_codes() {
    assert_eq!(
        open_body(|b| b[0] = 3).unwrap_err(),
        Notification::new(2, 1, &[0, 4])
    );
    for hold in [1u16, 2] {
        assert_eq!(
            open_body(|b| b[3..5].copy_from_slice(&hold.to_be_bytes())).unwrap_err(),
            Notification::new(2, 6, &[])
        );
    }
    assert_eq!(open_body(|b| b[3..5].fill(0)).unwrap().hold_time, 0);
    assert_eq!(
        open_body(|b| b[5..9].fill(0)).unwrap_err(),
        Notification::new(2, 3, &[0, 0, 0, 0])
    );
    // An optional parameter other than capabilities (type 1, authentication, is deprecated).
    assert_eq!(
        open_body(|b| b[10] = 1).unwrap_err(),
        Notification::new(2, 4, &[])
    );
    // Lengths that disagree.
    assert_eq!(open_body(|b| b[9] += 1).unwrap_err().code, 2);
    assert_eq!(open_body(|b| b[11] += 1).unwrap_err().code, 2);
    // A known capability with the wrong length.
    assert_eq!(open_body(|b| b[13] = 5).unwrap_err().code, 2);
}

#[test]
fn unknown_capabilities_are_ignored_and_extended_parameters_are_read() {
    // An unknown capability, and an MP capability for a family we do not speak.
    let caps = [0x80u8, 2, 1, 2, 1, 4, 0, 25, 0, 70];
    let mut body = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1];
    body.push((caps.len() + 2) as u8);
    body.extend_from_slice(&[2, caps.len() as u8]);
    body.extend_from_slice(&caps);
    let o = Open::decode(&body).unwrap();
    assert_eq!(o.caps.unknown, [0x80]);
    assert_eq!(o.caps.multiprotocol, [Family { afi: 25, safi: 70 }]);
    // RFC 9072: the same capabilities in the extended optional parameters format.
    let mut ext = vec![4, 0xfd, 0xe9, 0, 90, 10, 0, 0, 1, 255, 255];
    ext.extend_from_slice(&((caps.len() + 3) as u16).to_be_bytes());
    ext.push(2);
    ext.extend_from_slice(&(caps.len() as u16).to_be_bytes());
    ext.extend_from_slice(&caps);
    assert_eq!(Open::decode(&ext).unwrap(), o);
}

#[test]
fn many_capabilities_go_in_the_extended_parameter_format() {
    let mut o = open();
    o.caps.multiprotocol = (1..=60).map(|safi| Family { afi: 1, safi }).collect();
    let mut out = Vec::new();
    o.encode(&mut out);
    assert_eq!(&out[28..30], &[255, 255]);
    assert_eq!(round_trip(&Message::Open(o.clone())), Message::Open(o));
}

#[test]
fn shutdown_communications() {
    let n = Notification::shutdown(code::CEASE_ADMIN_SHUTDOWN, "moving to the new router");
    assert_eq!(
        n.communication().as_deref(),
        Some("moving to the new router")
    );
    assert!(n.to_string().contains("administrative shutdown"));
    // Cut at 255 octets, on a character boundary.
    let long = "é".repeat(200);
    let n = Notification::shutdown(code::CEASE_ADMIN_RESET, &long);
    assert_eq!(n.data[0], 254);
    assert_eq!(n.communication().unwrap().chars().count(), 127);
    // A length that runs past the data, or bad UTF-8, is no communication.
    assert_eq!(Notification::new(6, 2, &[10, b'a']).communication(), None);
    assert_eq!(Notification::new(6, 2, &[1, 0xff]).communication(), None);
    assert_eq!(Notification::new(6, 1, &[1, b'a']).communication(), None);
}

#[test]
fn route_refresh_of_a_wrong_length_is_its_own_error() {
    assert_eq!(
        Message::decode(5, &[0, 1, 0]).unwrap_err(),
        Notification::new(7, 1, &[0, 1, 0])
    );
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Some(f)) = frame(&data, MAX_LEN) {
            prop_assert!(f.len <= data.len() && f.len >= 19);
            let _ = Message::decode(f.kind, f.body);
        }
        let _ = Open::decode(&data);
        for kind in 1..=5 {
            let _ = Message::decode(kind, &data);
        }
    }

    #[test]
    fn opens_round_trip(asn in any::<u32>(), hold in prop_oneof![Just(0u16), 3u16..], id in 1u32..,
                        rr in any::<bool>(), ext in any::<bool>(), four in any::<bool>()) {
        let o = Open {
            asn: if four { asn } else { asn & 0xffff },
            hold_time: hold,
            router_id: Ipv4Addr::from(id),
            caps: Capabilities {
                multiprotocol: vec![Family::IPV6_UNICAST],
                route_refresh: rr,
                four_octet_as: four.then_some(asn),
                extended_message: ext,
                ..Capabilities::default()
            },
        };
        prop_assert_eq!(round_trip(&Message::Open(o.clone())), Message::Open(o));
    }
}

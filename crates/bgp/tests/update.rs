//! UPDATE decoding and encoding: round trips, packing, and the RFC 7606 outcome of each kind
//! of malformed attribute.

use std::net::{IpAddr, Ipv4Addr};

use interlink_bgp::fuzzing::codec;
use interlink_bgp::update::{
    decode, encode_announce, encode_end_of_rib, encode_withdraw, Attrs, Decoded, Nlri, Origin,
    Segment,
};
use interlink_bgp::wire::{frame, Family, MAX_LEN};

fn n(s: &str) -> Nlri {
    let (a, l) = s.split_once('/').unwrap();
    Nlri::new(a.parse().unwrap(), l.parse().unwrap()).unwrap()
}

fn attrs_v4() -> Attrs {
    Attrs {
        origin: Some(Origin::Igp),
        as_path: vec![Segment::Sequence(vec![64512, 4_200_000_001])],
        next_hop: Some("192.0.2.2".parse().unwrap()),
        med: Some(10),
        communities: vec![0xfde8_0001],
        large_communities: vec![[64512, 1, 2]],
        ..Attrs::default()
    }
}

/// Every message in `wire`, decoded.
fn decode_all(wire: &[u8], ebgp: bool) -> Vec<Decoded> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some(f) = frame(rest, MAX_LEN).unwrap() {
        assert!(f.len <= MAX_LEN);
        out.push(decode(f.body, &codec(true, ebgp)));
        rest = &rest[f.len..];
    }
    assert!(rest.is_empty());
    out
}

#[test]
fn announcements_round_trip_and_pack() {
    let prefixes: Vec<Nlri> = (0..2000u32)
        .map(|i| Nlri::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect();
    let a = attrs_v4();
    let mut wire = Vec::new();
    encode_announce(&mut wire, &prefixes, &a, &codec(true, true));
    let msgs = decode_all(&wire, false);
    assert!(msgs.len() <= 3, "{} messages for 2000 /24s", msgs.len());
    let mut got = Vec::new();
    for m in msgs {
        let Decoded::Update(u) = m else {
            panic!("{m:?}")
        };
        assert_eq!(*u.attrs.unwrap(), a);
        got.extend(u.announced);
    }
    assert_eq!(got, prefixes);

    // IPv6 through MP_REACH_NLRI, with a link-local next hop.
    let p6: Vec<Nlri> = (0..500u16)
        .map(|i| n(&format!("2001:db8:{i:x}::/48")))
        .collect();
    let a6 = Attrs {
        next_hop: Some("2001:db8::2".parse().unwrap()),
        link_local: Some("fe80::2".parse().unwrap()),
        med: None,
        ..attrs_v4()
    };
    let mut wire = Vec::new();
    encode_announce(&mut wire, &p6, &a6, &codec(true, true));
    let mut got = Vec::new();
    for m in decode_all(&wire, false) {
        let Decoded::Update(u) = m else {
            panic!("{m:?}")
        };
        assert_eq!(*u.attrs.unwrap(), a6);
        got.extend(u.announced);
    }
    assert_eq!(got, p6);
}

#[test]
fn withdrawals_and_end_of_rib() {
    for p in [
        vec![n("10.1.0.0/16"), n("10.2.3.0/24"), n("0.0.0.0/0")],
        vec![n("2001:db8::/32")],
    ] {
        let mut wire = Vec::new();
        encode_withdraw(&mut wire, &p, &codec(true, true));
        let msgs: [Decoded; 1] = decode_all(&wire, false).try_into().unwrap();
        let [Decoded::Update(u)] = msgs else { panic!() };
        assert_eq!(u.withdrawn, p);
        assert!(u.announced.is_empty() && u.end_of_rib.is_empty());
    }
    for f in [Family::IPV4_UNICAST, Family::IPV6_UNICAST] {
        let mut wire = Vec::new();
        encode_end_of_rib(&mut wire, f);
        let msgs: [Decoded; 1] = decode_all(&wire, false).try_into().unwrap();
        let [Decoded::Update(u)] = msgs else { panic!() };
        assert_eq!(u.end_of_rib, [f]);
    }
}

/// An IPv4 UPDATE announcing 10.9.0.0/16 with `attrs` (raw attribute octets).
fn raw(attrs: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0];
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(&[16, 10, 9]);
    b
}

const ORIGIN_IGP: [u8; 4] = [0x40, 1, 1, 0];
const PATH: [u8; 9] = [0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0];
const NH: [u8; 7] = [0x40, 3, 4, 192, 0, 2, 2];

fn with(parts: &[&[u8]]) -> Decoded {
    decode(&raw(&parts.concat()), &codec(true, true))
}

fn withdrawn_for(d: &Decoded, subcode: u8) -> bool {
    matches!(d, Decoded::TreatAsWithdraw(p, n) if p == &[n_prefix()] && n.code == 3 && n.subcode == subcode)
}

fn n_prefix() -> Nlri {
    n("10.9.0.0/16")
}

#[test]
fn rfc_7606_outcomes() {
    // Well formed.
    let Decoded::Update(u) = with(&[&ORIGIN_IGP, &PATH, &NH]) else {
        panic!()
    };
    assert_eq!(u.announced, [n_prefix()]);
    assert_eq!(u.attrs.unwrap().as_path, [Segment::Sequence(vec![64512])]);
    // §7.1: a bad ORIGIN value: treat-as-withdraw.
    assert!(withdrawn_for(&with(&[&[0x40, 1, 1, 7], &PATH, &NH]), 6));
    // §7.2: a malformed AS_PATH: treat-as-withdraw.
    assert!(withdrawn_for(
        &with(&[&ORIGIN_IGP, &[0x40, 2, 3, 2, 1, 0], &NH]),
        11
    ));
    // §7.3: NEXT_HOP of the wrong length, or unusable.
    assert!(withdrawn_for(
        &with(&[&ORIGIN_IGP, &PATH, &[0x40, 3, 3, 1, 2, 3]]),
        5
    ));
    assert!(withdrawn_for(
        &with(&[&ORIGIN_IGP, &PATH, &[0x40, 3, 4, 0, 0, 0, 0]]),
        8
    ));
    // §3 d: a missing mandatory attribute.
    assert!(withdrawn_for(&with(&[&ORIGIN_IGP, &NH]), 3));
    // §3 c: wrong flags on a known attribute.
    assert!(withdrawn_for(&with(&[&[0xc0, 1, 1, 0], &PATH, &NH]), 4));
    // §7.5: LOCAL_PREF from an external peer is discarded.
    let Decoded::Update(u) = with(&[&ORIGIN_IGP, &PATH, &NH, &[0x40, 5, 4, 0, 0, 0, 200]]) else {
        panic!()
    };
    assert_eq!((u.attrs.unwrap().local_pref, u.discarded), (None, vec![5]));
    // §7.7: a malformed AGGREGATOR is discarded; §3 g: a repeated attribute too.
    let Decoded::Update(u) = with(&[&ORIGIN_IGP, &PATH, &NH, &[0xc0, 7, 3, 1, 2, 3], &ORIGIN_IGP])
    else {
        panic!()
    };
    assert_eq!(u.discarded, [7, 1]);
    // §7.8: malformed COMMUNITIES: treat-as-withdraw.
    assert!(withdrawn_for(
        &with(&[&ORIGIN_IGP, &PATH, &NH, &[0xc0, 8, 3, 1, 2, 3]]),
        9
    ));
    // §4: an attribute that runs past the list: the IPv4 NLRI are withdrawn.
    assert!(withdrawn_for(
        &with(&[&ORIGIN_IGP, &PATH, &[0x40, 3, 9, 1, 2]]),
        1
    ));
    // §5.3: a malformed MP_REACH_NLRI resets the session.
    let d = with(&[&ORIGIN_IGP, &PATH, &[0x80, 14, 5, 0, 2, 1, 16, 0]]);
    assert!(matches!(d, Decoded::Reset(n) if n.code == 3));
    // An NLRI longer than 32 bits resets.
    let mut b = raw(&[&ORIGIN_IGP[..], &PATH, &NH].concat());
    b.extend_from_slice(&[33, 1, 2, 3, 4, 5]);
    assert!(matches!(decode(&b, &codec(true, true)), Decoded::Reset(n) if n.subcode == 10));
    // Unknown optional transitive: kept with the Partial bit.
    let Decoded::Update(u) = with(&[&ORIGIN_IGP, &PATH, &NH, &[0xc0, 99, 2, 7, 7]]) else {
        panic!()
    };
    assert_eq!(u.attrs.unwrap().unknown, [(0xe0, 99, vec![7, 7])]);
}

#[test]
fn as4_path_fills_in_a_2_octet_path() {
    // AS_PATH 64512 23456 23456 from a 2-octet speaker, AS4_PATH 4200000001 4200000002.
    let path2 = [0x40, 2, 8, 2, 3, 0xfc, 0, 0x5b, 0xa0, 0x5b, 0xa0];
    let mut as4 = vec![0xc0, 17, 10, 2, 2];
    as4.extend_from_slice(&4_200_000_001u32.to_be_bytes());
    as4.extend_from_slice(&4_200_000_002u32.to_be_bytes());
    let Decoded::Update(u) = decode(
        &raw(&[&ORIGIN_IGP[..], &path2, &NH, &as4].concat()),
        &codec(false, true),
    ) else {
        panic!()
    };
    let a = u.attrs.unwrap();
    assert_eq!(
        a.as_path,
        [
            Segment::Sequence(vec![64512]),
            Segment::Sequence(vec![4_200_000_001, 4_200_000_002])
        ]
    );
    assert_eq!(a.path_len(), 3);
    assert_eq!(a.neighbor_as(), Some(64512));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
                                    four in proptest::bool::ANY, ebgp in proptest::bool::ANY) {
        let _ = decode(&body, &codec(four, ebgp));
        // And well-framed attribute lists with arbitrary contents.
        let _ = decode(&raw(&body), &codec(four, ebgp));
    }
}

#[test]
fn nlri_trailing_bits_are_cleared() {
    // RFC 4271 §4.3: the bits after the prefix length are irrelevant. 10.31.0.0/12 and
    // 10.16.0.0/12 are one prefix, and one key in the RIB.
    let mut body = vec![0, 0];
    let attrs = [&ORIGIN_IGP[..], &PATH, &NH].concat();
    body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&[12, 10, 0x1f]);
    let Decoded::Update(u) = decode(&body, &codec(true, true)) else {
        panic!()
    };
    assert_eq!(u.announced, [n("10.16.0.0/12")]);
}

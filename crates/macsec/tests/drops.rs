//! One test per reason a frame is dropped or delivered unverified, each asserting its counter,
//! and the transmit-side refusals.

mod common;

use common::{Pair, LOCAL_MAC, PEER_MAC};
use interlink_macsec::{
    Accepted, An, Backend, BadTag, CipherSuite, RxConfig, RxError, RxStats, SaKey, Sci, Tci,
    TxConfig, TxError, ValidateFrames, ICV_LEN,
};

const PAYLOAD: &[u8] = b"interlink: a payload long enough for a non-short secure data field....";

fn pair() -> Pair {
    Pair::simple(Backend::default(), RxConfig::default())
}

fn only(stats: &RxStats) -> Vec<(&'static str, u64)> {
    stats
        .entries()
        .filter(|(name, n)| *n > 0 && name.starts_with("InPkts"))
        .collect()
}

#[test]
fn a_good_frame_is_ok() {
    let mut p = pair();
    let f = p.protect(PAYLOAD);
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    assert_eq!(only(&p.rx_stats), [("InPktsOK", 1)]);
}

#[test]
fn tampered_icv_is_not_valid() {
    for &backend in Backend::available() {
        let mut p = Pair::simple(backend, RxConfig::default());
        let mut f = p.protect(PAYLOAD);
        let last = f.len() - 1;
        f[last] ^= 0x01;
        assert!(matches!(
            p.validate(&f),
            Err(RxError::NotValid { pn: 1, .. })
        ));
        assert_eq!(only(&p.rx_stats), [("InPktsNotValid", 1)]);
    }
}

#[test]
fn tampered_ciphertext_is_not_valid() {
    let mut p = pair();
    let mut f = p.protect(PAYLOAD);
    f[40] ^= 0x20;
    assert!(matches!(p.validate(&f), Err(RxError::NotValid { .. })));
    assert_eq!(only(&p.rx_stats), [("InPktsNotValid", 1)]);
}

#[test]
fn tampered_addresses_are_not_valid() {
    // DA and SA are in the AAD (§14.5).
    for at in [0, 11] {
        let mut p = pair();
        let mut f = p.protect(PAYLOAD);
        f[at] ^= 0x04;
        assert!(matches!(p.validate(&f), Err(RxError::NotValid { .. })));
        assert_eq!(only(&p.rx_stats), [("InPktsNotValid", 1)]);
    }
}

#[test]
fn tampered_sectag_pn_is_not_valid() {
    // A PN moved forward passes the replay check but not the ICV; the state does not move.
    let mut p = pair();
    let mut f = p.protect(PAYLOAD);
    f[19] ^= 0x10;
    assert!(matches!(
        p.validate(&f),
        Err(RxError::NotValid { pn: 0x11, .. })
    ));
    assert_eq!(only(&p.rx_stats), [("InPktsNotValid", 1)]);
    let sa = p.rx.sc(p.sci).unwrap().sa(p.an).unwrap();
    assert_eq!(sa.next_pn(), 1, "a forged PN must not advance the window");
}

#[test]
fn tampered_sectag_sci_is_an_unknown_sci() {
    let mut p = pair();
    let mut f = p.protect(PAYLOAD);
    f[20] ^= 0x01; // first SCI octet
    assert!(matches!(p.validate(&f), Err(RxError::NoSci(_))));
    assert_eq!(only(&p.rx_stats), [("InPktsNoSCI", 1)]);
}

#[test]
fn wrong_an_is_not_using_sa() {
    let mut p = pair();
    let mut f = p.protect(PAYLOAD);
    f[14] = (f[14] & !0x03) | 0x01;
    assert_eq!(
        p.validate(&f),
        Err(RxError::NotUsingSa {
            sci: p.sci,
            an: An::new(1).unwrap()
        })
    );
    assert_eq!(only(&p.rx_stats), [("InPktsNotUsingSA", 1)]);
}

#[test]
fn unknown_sci_is_no_sci() {
    let mut p = pair();
    let other = Sci::new(LOCAL_MAC, 2);
    p.rx.remove_sc(p.sci).unwrap();
    p.rx.add_sc(other).unwrap();
    let f = p.protect(PAYLOAD);
    assert_eq!(p.validate(&f), Err(RxError::NoSci(p.sci)));
    assert_eq!(only(&p.rx_stats), [("InPktsNoSCI", 1)]);
}

#[test]
fn replayed_pn_is_late() {
    let mut p = pair();
    let f = p.protect(PAYLOAD);
    p.validate(&f).unwrap();
    assert_eq!(
        p.validate(&f),
        Err(RxError::Late {
            sci: p.sci,
            an: p.an,
            pn: 1
        })
    );
    assert_eq!(only(&p.rx_stats), [("InPktsLate", 1), ("InPktsOK", 1)]);
}

#[test]
fn replayed_pn_inside_the_window_is_late() {
    // 802.1AE alone would accept a duplicate above the lowest acceptable PN; the duplicate
    // filter does not.
    let mut p = Pair::simple(
        Backend::default(),
        RxConfig {
            replay_window: 32,
            ..RxConfig::default()
        },
    );
    let frames: Vec<_> = (0..5).map(|_| p.protect(PAYLOAD)).collect();
    for f in [&frames[0], &frames[2], &frames[4], &frames[1], &frames[3]] {
        p.validate(f).unwrap();
    }
    for f in &frames {
        assert!(matches!(p.validate(f), Err(RxError::Late { .. })));
    }
    assert_eq!(only(&p.rx_stats), [("InPktsLate", 5), ("InPktsOK", 5)]);
}

#[test]
fn pn_below_the_window_is_late() {
    let window = 4;
    let mut p = Pair::simple(
        Backend::default(),
        RxConfig {
            replay_window: window,
            ..RxConfig::default()
        },
    );
    let frames: Vec<_> = (0..10).map(|_| p.protect(PAYLOAD)).collect();
    // Deliver PN 10 first: PNs 6 to 9 are still inside the window, 5 and below are not.
    p.validate(&frames[9]).unwrap();
    let sa = p.rx.sc(p.sci).unwrap().sa(p.an).unwrap();
    assert_eq!((sa.next_pn(), sa.lowest_pn()), (11, 7));
    p.validate(&frames[6]).unwrap(); // PN 7
    assert_eq!(
        p.validate(&frames[4]),
        Err(RxError::Late {
            sci: p.sci,
            an: p.an,
            pn: 5
        })
    );
    assert_eq!(only(&p.rx_stats), [("InPktsLate", 1), ("InPktsOK", 2)]);
}

#[test]
fn bad_short_length_is_bad_tag() {
    let mut p = pair();
    let f = p.protect(b"short"); // 7 octets of user data: SL 7
    assert_eq!(f[15], 7);
    let mut wrong = f.clone();
    wrong[15] = 6;
    assert_eq!(
        p.validate(&wrong),
        Err(RxError::BadTag(BadTag::ShortLength {
            short_len: 6,
            secure_data: 7
        }))
    );
    // SL 0 promises at least 48 octets of secure data.
    let mut zero = f.clone();
    zero[15] = 0;
    assert!(matches!(
        p.validate(&zero),
        Err(RxError::BadTag(BadTag::ShortLength { short_len: 0, .. }))
    ));
    // A short length on a long frame.
    let long = p.protect(PAYLOAD);
    let mut sl = long.clone();
    sl[15] = 10;
    assert!(matches!(
        p.validate(&sl),
        Err(RxError::BadTag(BadTag::ShortLength { short_len: 10, .. }))
    ));
    assert_eq!(only(&p.rx_stats), [("InPktsBadTag", 3)]);
    // The genuine frames still validate.
    assert_eq!(p.validate(&f).unwrap(), b"short");
}

#[test]
fn short_frame_padded_to_the_ethernet_minimum_is_accepted() {
    // An 802.3 MAC pads to 60 octets after the ICV; SL tells where the ICV ends (§9.7).
    let mut p = pair();
    let f = p.protect(b"hi"); // 12 + 2 + 14 + 4 + 16 = 48 octets
    assert!(f.len() < 60);
    let mut padded = f.clone();
    padded.resize(60, 0);
    assert_eq!(p.validate(&padded).unwrap(), b"hi");
    // The same trailing octets on a frame that is not minimum size are refused.
    let mut p = pair();
    let f = p.protect(b"hi");
    let mut longer = f.clone();
    longer.resize(61, 0);
    assert!(matches!(
        p.validate(&longer),
        Err(RxError::BadTag(BadTag::ShortLength { .. }))
    ));
}

#[test]
fn truncated_frames_are_bad_tag() {
    let mut p = pair();
    let f = p.protect(PAYLOAD);
    // Too short for the addresses, the SecTAG, the ICV, or 48 octets of secure data (SL 0).
    let cuts = [0, 5, 13, 14, 19, 27, 28, 28 + ICV_LEN, 28 + ICV_LEN + 47];
    for cut in cuts {
        assert!(
            matches!(p.validate(&f[..cut]), Err(RxError::BadTag(_))),
            "cut at {cut}"
        );
    }
    assert_eq!(only(&p.rx_stats), [("InPktsBadTag", cuts.len() as u64)]);
    // Still long enough for SL 0: the ICV is then read from the wrong place and fails.
    assert!(matches!(
        p.validate(&f[..f.len() - 1]),
        Err(RxError::NotValid { .. })
    ));
}

#[test]
fn e_without_c_is_bad_tag() {
    let mut p = pair();
    let mut f = p.protect(PAYLOAD);
    f[14] &= !Tci::C;
    assert_eq!(
        p.validate(&f),
        Err(RxError::BadTag(BadTag::ReservedEncoding))
    );
    assert_eq!(only(&p.rx_stats), [("InPktsBadTag", 1)]);
}

#[test]
fn other_tag_rules_are_bad_tag() {
    let mut p = pair();
    let f = p.protect(PAYLOAD);
    let mut v = f.clone();
    v[14] |= Tci::V;
    assert_eq!(p.validate(&v), Err(RxError::BadTag(BadTag::Version)));
    let mut es = f.clone();
    es[14] |= Tci::ES;
    assert_eq!(
        p.validate(&es),
        Err(RxError::BadTag(BadTag::ExplicitSciWithEsOrScb))
    );
    let mut sl = f.clone();
    sl[15] |= 0x80;
    assert_eq!(
        p.validate(&sl),
        Err(RxError::BadTag(BadTag::SlReservedBits))
    );
    let mut zero = f.clone();
    zero[16..20].fill(0);
    assert_eq!(p.validate(&zero), Err(RxError::BadTag(BadTag::ZeroPn)));
    assert_eq!(only(&p.rx_stats), [("InPktsBadTag", 4)]);
}

#[test]
fn untagged_frames_depend_on_validate_frames() {
    let plain = [PEER_MAC, LOCAL_MAC].concat();
    let frame = [&plain[..], &[0x08, 0x00], PAYLOAD].concat();
    let mut strict = pair();
    assert_eq!(strict.validate(&frame), Err(RxError::NoTag));
    assert_eq!(only(&strict.rx_stats), [("InPktsNoTag", 1)]);
    let mut check = Pair::simple(
        Backend::default(),
        RxConfig {
            validate_frames: ValidateFrames::Check,
            ..RxConfig::default()
        },
    );
    assert_eq!(check.validate(&frame).unwrap(), PAYLOAD);
    assert_eq!(only(&check.rx_stats), [("InPktsUntagged", 1)]);
}

fn integrity_pair(validate_frames: ValidateFrames) -> Pair {
    Pair::new(
        CipherSuite::GcmAes256,
        Backend::default(),
        TxConfig {
            confidentiality: false,
            ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
        },
        RxConfig {
            validate_frames,
            ..RxConfig::default()
        },
        An::new(2).unwrap(),
        1,
    )
}

#[test]
fn check_mode_delivers_invalid_integrity_only_frames() {
    let mut p = integrity_pair(ValidateFrames::Check);
    let mut f = p.protect(PAYLOAD);
    let last = f.len() - 1;
    f[last] ^= 1;
    let mut copy = f.clone();
    let r = p.rx.validate(&mut p.rx_stats, &mut copy).unwrap();
    assert!(matches!(r.accepted, Accepted::Invalid { pn: 1, .. }));
    assert_eq!(only(&p.rx_stats), [("InPktsInvalid", 1)]);
    // An encrypted frame (C set) that fails is dropped even in Check mode.
    let mut enc = Pair::simple(
        Backend::default(),
        RxConfig {
            validate_frames: ValidateFrames::Check,
            ..RxConfig::default()
        },
    );
    let mut f = enc.protect(PAYLOAD);
    f[30] ^= 1;
    assert!(matches!(enc.validate(&f), Err(RxError::NotValid { .. })));
}

#[test]
fn disabled_mode_delivers_integrity_only_frames_unchecked() {
    let mut p = integrity_pair(ValidateFrames::Disabled);
    let mut f = p.protect(PAYLOAD);
    let last = f.len() - 1;
    f[last] ^= 1;
    let mut copy = f.clone();
    let r = p.rx.validate(&mut p.rx_stats, &mut copy).unwrap();
    assert!(matches!(r.accepted, Accepted::Unchecked { .. }));
    assert_eq!(&copy[r.user.start + 2..r.user.end], PAYLOAD);
    assert_eq!(only(&p.rx_stats), [("InPktsUnchecked", 1)]);
}

#[test]
fn check_mode_delivers_unknown_sci_and_unused_sa_for_integrity_only() {
    let mut p = integrity_pair(ValidateFrames::Check);
    let f = p.protect(PAYLOAD);
    p.rx.remove_sa(p.sci, p.an).unwrap();
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    p.rx.remove_sc(p.sci).unwrap();
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    assert_eq!(
        only(&p.rx_stats),
        [("InPktsUnknownSCI", 1), ("InPktsUnusedSA", 1)]
    );
}

#[test]
fn replay_protection_off_delivers_late_frames_as_delayed() {
    let mut p = Pair::simple(
        Backend::default(),
        RxConfig {
            replay_protect: false,
            ..RxConfig::default()
        },
    );
    let first = p.protect(PAYLOAD);
    let second = p.protect(PAYLOAD);
    p.validate(&second).unwrap();
    assert_eq!(p.validate(&first).unwrap(), PAYLOAD);
    assert_eq!(only(&p.rx_stats), [("InPktsDelayed", 1), ("InPktsOK", 1)]);
}

#[test]
fn implicit_sci_frames_find_their_channel() {
    // ES set, no SCI: the SCI is the source address and port 1 (§9.9).
    let mut p = Pair::new(
        CipherSuite::GcmAesXpn128,
        Backend::default(),
        TxConfig {
            include_sci: false,
            end_station: true,
            ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
        },
        RxConfig::default(),
        An::new(3).unwrap(),
        7,
    );
    let f = p.protect(PAYLOAD);
    assert_eq!(f[14] & (Tci::ES | Tci::SC), Tci::ES);
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    // A different source address means a different SCI.
    let mut other = f.clone();
    other[11] ^= 0xff;
    assert!(matches!(p.validate(&other), Err(RxError::NoSci(_))));
}

#[test]
fn transmit_refusals_are_counted() {
    let mut p = pair();
    let hdr = p.tx.header_len();
    // No room for the ICV.
    let mut small = vec![0; hdr + 10];
    assert_eq!(
        p.tx.protect(&mut p.tx_stats, &mut small, 10),
        Err(TxError::NoRoom {
            needed: hdr + 10 + ICV_LEN,
            available: hdr + 10
        })
    );
    // No EtherType.
    let mut buf = vec![0; 100];
    assert_eq!(
        p.tx.protect(&mut p.tx_stats, &mut buf, 1),
        Err(TxError::Malformed(1))
    );
    // No SA in use.
    p.tx.remove_sa(p.an).unwrap();
    assert_eq!(
        p.tx.protect(&mut p.tx_stats, &mut buf, 50),
        Err(TxError::SaNotInUse)
    );
    let s = p.tx_stats;
    assert_eq!(
        (
            s.out_pkts_too_long,
            s.out_pkts_malformed,
            s.out_pkts_sa_not_in_use
        ),
        (1, 1, 1)
    );
    assert_eq!(s.dropped(), 3);
}

#[test]
fn mtu_limits_the_protected_pdu() {
    let cfg = TxConfig {
        mtu: 100,
        ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
    };
    let mut p = Pair::new(
        CipherSuite::GcmAes128,
        Backend::default(),
        cfg,
        RxConfig::default(),
        An::new(0).unwrap(),
        1,
    );
    // SecTAG 14 + user data + ICV 16 <= 100: 70 octets of user data fit, 71 do not.
    let hdr = p.tx.header_len();
    let mut buf = vec![0; 200];
    assert!(p.tx.protect(&mut p.tx_stats, &mut buf, 70).is_ok());
    assert_eq!(
        p.tx.protect(&mut p.tx_stats, &mut buf, 71),
        Err(TxError::TooLong {
            len: 101,
            limit: 100
        })
    );
    assert_eq!(p.tx_stats.out_pkts_too_long, 1);
    assert_eq!(hdr + 70 + ICV_LEN - 14, 100);
}

#[test]
fn pn_exhaustion_refuses_to_send() {
    for suite in [CipherSuite::GcmAes128, CipherSuite::GcmAesXpn256] {
        let last = suite.max_pn();
        let mut p = Pair::new(
            suite,
            Backend::default(),
            TxConfig::new(Sci::new(LOCAL_MAC, 1)),
            RxConfig::default(),
            An::new(1).unwrap(),
            last - 1,
        );
        let f = p.protect(PAYLOAD);
        assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
        let f = p.protect(PAYLOAD);
        assert_eq!(f[16..20], (last as u32).to_be_bytes());
        assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
        assert!(p.tx.encoding_sa().unwrap().next_pn().is_none());
        let mut buf = vec![0; 200];
        for _ in 0..3 {
            assert_eq!(
                p.tx.protect(&mut p.tx_stats, &mut buf, 60),
                Err(TxError::PnExhausted { an: p.an })
            );
        }
        assert_eq!(p.tx_stats.out_pkts_pn_exhausted, 3, "{suite}");
        assert!(p.tx.encoding_sa().unwrap().rekey_needed());
    }
}

#[test]
fn rekey_is_signalled_at_the_threshold() {
    let cfg = TxConfig {
        rekey_threshold: Some(3),
        ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
    };
    let mut p = Pair::new(
        CipherSuite::GcmAes128,
        Backend::default(),
        cfg,
        RxConfig::default(),
        An::new(0).unwrap(),
        1,
    );
    let hdr = p.tx.header_len();
    let mut flags = vec![];
    for _ in 0..4 {
        let mut buf = vec![0; hdr + 64 + ICV_LEN];
        flags.push(
            p.tx.protect(&mut p.tx_stats, &mut buf, 64)
                .unwrap()
                .rekey_needed,
        );
    }
    assert_eq!(flags, [false, false, true, true]);
    assert!(p.tx.encoding_sa().unwrap().rekey_needed());
    // The default thresholds are the MKA ones.
    let sa = Pair::simple(Backend::default(), RxConfig::default()).tx;
    assert_eq!(sa.encoding_sa().unwrap().rekey_threshold(), 0xc000_0000);
}

#[test]
fn sa_rotation_keeps_both_keys_valid_on_receive() {
    // MKA installs the new receive SA before the peer switches (802.1X §9.10.1).
    let mut p = pair();
    let old = p.protect(PAYLOAD);
    let new_an = An::new(1).unwrap();
    let sak = common::sak(CipherSuite::GcmAes128, 0x99);
    let key = SaKey {
        sak: &sak,
        xpn: None,
    };
    p.rx.install_sa(p.sci, new_an, &key, 1).unwrap();
    p.tx.install_sa(new_an, &key, 1).unwrap();
    p.tx.set_encoding_sa(new_an).unwrap();
    let new = p.protect(PAYLOAD);
    assert_eq!(new[14] & 3, 1);
    // The new frame arrives before the last old one: both are accepted.
    assert_eq!(p.validate(&new).unwrap(), PAYLOAD);
    assert_eq!(p.validate(&old).unwrap(), PAYLOAD);
    assert_eq!(only(&p.rx_stats), [("InPktsOK", 2)]);
    // The SA in use cannot be replaced under the transmitter's feet.
    assert!(p.tx.install_sa(new_an, &key, 1).is_err());
}

#[test]
fn raised_lowest_pn_makes_older_frames_late() {
    let mut p = pair();
    let frames: Vec<_> = (0..3).map(|_| p.protect(PAYLOAD)).collect();
    p.rx.raise_lowest_pn(p.sci, p.an, 3).unwrap();
    assert!(matches!(
        p.validate(&frames[1]),
        Err(RxError::Late { pn: 2, .. })
    ));
    assert_eq!(p.validate(&frames[2]).unwrap(), PAYLOAD);
}

#[test]
fn key_and_parameter_errors_are_typed() {
    let mut p = pair();
    let xpn_key = SaKey {
        sak: &[0; 16],
        xpn: Some((1, [0; 12])),
    };
    assert!(p.tx.install_sa(An::new(2).unwrap(), &xpn_key, 1).is_err());
    let short = SaKey {
        sak: &[0; 15],
        xpn: None,
    };
    assert!(p.tx.install_sa(An::new(2).unwrap(), &short, 1).is_err());
    let good = SaKey {
        sak: &[0; 16],
        xpn: None,
    };
    assert!(p.tx.install_sa(An::new(2).unwrap(), &good, 0).is_err());
    assert!(p
        .tx
        .install_sa(An::new(2).unwrap(), &good, 1 << 32)
        .is_err());
    assert!(p.rx.add_sc(p.sci).is_err());
    assert!(p.tx.set_encoding_sa(An::new(3).unwrap()).is_err());
    assert!(interlink_macsec::TxSecY::new(
        CipherSuite::GcmAes128,
        Backend::default(),
        TxConfig {
            end_station: true,
            ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
        }
    )
    .is_err());
}

#[test]
fn a_transmit_sa_sends_nothing_above_its_ceiling() {
    // The PNs of a static key are reserved in durable storage before use: the SA refuses to
    // go past the reservation, and goes on from the same PN once it is raised.
    let mut p = pair();
    let sa = p.tx.encoding_sa().unwrap();
    sa.set_ceiling(2);
    assert_eq!(sa.ceiling(), 2);
    for _ in 0..2 {
        let f = p.protect(PAYLOAD);
        assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    }
    let mut buf = vec![0; 200];
    for _ in 0..2 {
        assert_eq!(
            p.tx.protect(&mut p.tx_stats, &mut buf, 60),
            Err(TxError::PnUnreserved { an: p.an })
        );
    }
    assert_eq!(p.tx_stats.out_pkts_pn_unreserved, 2);
    assert_eq!(p.tx_stats.out_pkts_pn_exhausted, 0);
    assert_eq!(p.tx.encoding_sa().unwrap().next_pn(), Some(3));
    p.tx.encoding_sa().unwrap().set_ceiling(u64::MAX);
    let f = p.protect(PAYLOAD);
    assert_eq!(f[16..20], 3u32.to_be_bytes(), "no PN skipped or repeated");
    // The ceiling never goes past the suite's last PN.
    assert_eq!(
        p.tx.encoding_sa().unwrap().ceiling(),
        CipherSuite::GcmAes128.max_pn()
    );
}

#[test]
fn a_receive_sa_accepts_above_its_limit_only_once_reserved() {
    let mut p = pair();
    let (sci, an) = (p.sci, p.an);
    p.rx.set_pn_limit(sci, an, 1).unwrap();
    let frames: Vec<Vec<u8>> = (0..3).map(|_| p.protect(PAYLOAD)).collect();
    let mut stats = RxStats::default();
    let mut asked = Vec::new();
    let mut f = frames[0].clone();
    p.rx.validate_reserving(&mut stats, &mut f, |_, _, pn| {
        asked.push(pn);
        None
    })
    .unwrap();
    assert!(asked.is_empty(), "PN 1 is within the limit");
    // PN 2: the reservation fails, the frame is dropped and the state does not move.
    let mut f = frames[1].clone();
    assert_eq!(
        p.rx.validate_reserving(&mut stats, &mut f, |_, _, pn| {
            asked.push(pn);
            None
        }),
        Err(RxError::Unreserved { sci, an, pn: 2 })
    );
    assert_eq!(stats.in_pkts_unreserved, 1);
    assert_eq!(p.rx.sc(sci).unwrap().sa(an).unwrap().next_pn(), 2);
    // A forged frame with a high PN never reaches the reservation.
    let mut forged = frames[2].clone();
    forged[19] ^= 0x40;
    assert!(matches!(
        p.rx.validate_reserving(&mut stats, &mut forged, |_, _, pn| {
            asked.push(pn);
            Some(pn)
        }),
        Err(RxError::NotValid { .. })
    ));
    assert_eq!(asked, [2]);
    // Reserved up to 10: accepted, and the next frame needs no reservation.
    for f in &frames[1..] {
        let mut f = f.clone();
        p.rx.validate_reserving(&mut stats, &mut f, |_, _, pn| {
            asked.push(pn);
            Some(10)
        })
        .unwrap();
    }
    assert_eq!(asked, [2, 2]);
    assert_eq!(p.rx.sc(sci).unwrap().sa(an).unwrap().limit(), 10);
    assert_eq!(stats.in_pkts_ok, 3);
}

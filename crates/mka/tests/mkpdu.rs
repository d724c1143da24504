//! MKPDUs: round trips with the ICV, the octets of a Basic Parameter Set, and malformed input.

use interlink_mka::keys::{ick, icv, verify_icv, Secret};
use interlink_mka::mkpdu::{
    decode, encode, Basic, DistributedCak, DistributedSak, Ki, Mkpdu, MkpduError, SakUse,
    SakUseKeys, ALGORITHM_AGILITY, ETHERTYPE_EAPOL, MKA_GROUP, MKA_VERSION,
};

fn basic() -> Basic {
    Basic {
        version: MKA_VERSION,
        key_server_priority: 16,
        key_server: true,
        macsec_desired: true,
        capability: 2,
        sci: [2, 0, 0, 0, 0, 1, 0, 1],
        mi: [0xa5; 12],
        mn: 7,
        algorithm_agility: ALGORITHM_AGILITY,
        ckn: b"interlink-ckn".to_vec(),
    }
}

fn full() -> Mkpdu {
    Mkpdu {
        basic: Some(basic()),
        live: vec![([1; 12], 3), ([2; 12], 9)],
        potential: vec![([3; 12], 1)],
        key_server_ssci: 1,
        sak_use: Some(SakUse {
            latest_an: 1,
            latest_tx: true,
            latest_rx: true,
            old_an: 0,
            old_tx: false,
            old_rx: true,
            plain_tx: false,
            plain_rx: false,
            delay_protect: false,
            keys: Some(SakUseKeys {
                latest: Ki {
                    mi: [0xa5; 12],
                    kn: 2,
                },
                latest_lowest_pn: 1,
                old: Ki {
                    mi: [0xa5; 12],
                    kn: 1,
                },
                old_lowest_pn: 77,
            }),
        }),
        distributed_sak: Some(DistributedSak {
            an: 1,
            confidentiality_offset: 0,
            key_number: 2,
            cipher_suite: Some(0x0080_c200_0001_0004),
            wrapped: vec![9; 40],
        }),
        // 47 octets: padded to 48.
        distributed_cak: Some(DistributedCak::new(&[7; 40], b"new-ckn")),
        xpn: Some((0, 1)),
        unknown: vec![],
    }
}

const SA: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn addrs() -> [u8; 12] {
    let mut a = [0u8; 12];
    a[..6].copy_from_slice(&MKA_GROUP);
    a[6..].copy_from_slice(&SA);
    a
}

/// The ICV covers DA, SA, the EtherType and the EAPOL frame up to the ICV.
fn with_ethertype(eapol: &[u8]) -> Vec<u8> {
    let mut v = ETHERTYPE_EAPOL.to_be_bytes().to_vec();
    v.extend_from_slice(eapol);
    v
}

#[test]
fn mkpdus_round_trip_under_their_icv() {
    let cak = Secret::new(vec![0x11; 32]).unwrap();
    let ick = ick(&cak, b"interlink-ckn").unwrap();
    for m in [
        full(),
        Mkpdu {
            basic: Some(basic()),
            ..Mkpdu::default()
        },
    ] {
        let frame = encode(&m, |covered| {
            icv(&ick, &addrs(), &with_ethertype(covered)).unwrap()
        })
        .unwrap();
        assert_eq!(frame.len() % 4, 0);
        let p = decode(&frame).unwrap();
        assert_eq!(p.mkpdu, m);
        assert!(verify_icv(
            &ick,
            &addrs(),
            &with_ethertype(p.covered),
            p.icv
        ));
        // Any changed octet fails the ICV.
        for i in [0, 5, 20, frame.len() - 17] {
            let mut bad = frame.clone();
            bad[i] ^= 0x40;
            if let Ok(q) = decode(&bad) {
                assert!(
                    !verify_icv(&ick, &addrs(), &with_ethertype(q.covered), q.icv),
                    "octet {i}"
                );
            }
        }
    }
}

#[test]
fn a_basic_parameter_set_has_its_octets() {
    let m = Mkpdu {
        basic: Some(basic()),
        ..Mkpdu::default()
    };
    let frame = encode(&m, |_| [0; 16]).unwrap();
    // EAPOL: version 3, type 5 (EAPOL-MKA), body length.
    assert_eq!(&frame[..2], &[3, 5]);
    let body_len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
    assert_eq!(body_len + 4, frame.len());
    // Basic Parameter Set: version, priority, KS/desired/capability and length 28 + CKN.
    assert_eq!(&frame[4..8], &[3, 16, 0x80 | 0x40 | 0x20, 28 + 13]);
    assert_eq!(&frame[8..16], &basic().sci);
    assert_eq!(&frame[28..32], &7u32.to_be_bytes());
    assert_eq!(&frame[32..36], &[0x00, 0x80, 0xc2, 0x01]);
    assert_eq!(&frame[36..49], b"interlink-ckn");
    // Padding to four octets, then the ICV Indicator (255, length 16) and the ICV.
    assert_eq!(&frame[49..52], &[0, 0, 0]);
    assert_eq!(&frame[52..56], &[255, 0, 0, 16]);
    assert_eq!(frame.len(), 56 + 16);
}

#[test]
fn malformed_mkpdus_are_errors() {
    let good = encode(&full(), |_| [0; 16]).unwrap();
    assert_eq!(decode(&good[..3]).err(), Some(MkpduError::Short));
    let mut not_mka = good.clone();
    not_mka[1] = 0;
    assert_eq!(decode(&not_mka).err(), Some(MkpduError::NotMka(0)));
    let mut long = good.clone();
    long[2] = 0xff;
    assert!(matches!(
        decode(&long).err(),
        Some(MkpduError::BodyLength(_))
    ));
    // A peer list length that is not a multiple of 16.
    let mut bad = good.clone();
    let at = 4 + 48; // after the Basic Parameter Set (4 + 28 + 13, padded to 48)
    assert_eq!(bad[at], 1);
    bad[at + 3] = 17;
    assert!(decode(&bad).is_err());
    // A CKN over 32 octets.
    let mut b = basic();
    b.ckn = vec![1; 33];
    let m = Mkpdu {
        basic: Some(b),
        ..Mkpdu::default()
    };
    assert_eq!(encode(&m, |_| [0; 16]).err(), Some(MkpduError::Ckn(33)));
}

#[test]
fn a_distributed_cak_has_its_octets_and_splits_by_the_cas_cak_length() {
    let d = DistributedCak::new(&[7; 24], b"abc");
    let m = Mkpdu {
        basic: Some(basic()),
        distributed_cak: Some(d.clone()),
        ..Mkpdu::default()
    };
    let frame = encode(&m, |_| [0; 16]).unwrap();
    // After the Basic Parameter Set (48 octets from offset 4): type 5, length 27, the
    // wrapped CAK, the CKN, one octet of padding.
    assert_eq!(&frame[52..56], &[5, 0, 0, 27]);
    assert_eq!(&frame[56..80], &[7; 24]);
    assert_eq!(&frame[80..84], b"abc\0");
    assert_eq!(&frame[84..88], &[255, 0, 0, 16]);
    assert_eq!(
        decode(&frame).unwrap().mkpdu.distributed_cak,
        Some(d.clone())
    );
    // A 128-bit CA's wrap is 24 octets; read as a 256-bit CA's, 3 octets are no CKN.
    assert_eq!(d.split(16), Some((&[7u8; 24][..], &b"abc"[..])));
    assert_eq!(d.split(32), None);
    // A body too short for a wrapped key and a CKN, or too long, is malformed.
    for len in [24, 73] {
        let bad = Mkpdu {
            basic: Some(basic()),
            distributed_cak: Some(DistributedCak { body: vec![1; len] }),
            ..Mkpdu::default()
        };
        assert_eq!(
            encode(&bad, |_| [0; 16]).err(),
            Some(MkpduError::Malformed(5))
        );
        let mut f = frame.clone();
        f[55] = len as u8;
        assert!(decode(&f).is_err(), "{len}");
    }
}

#[test]
fn arbitrary_input_never_panics() {
    // A deterministic sweep: every truncation and single-octet change of a full MKPDU, and
    // pseudo-random frames.
    let good = encode(&full(), |_| [0; 16]).unwrap();
    for cut in 0..good.len() {
        let _ = decode(&good[..cut]);
    }
    for i in 0..good.len() {
        for v in [0u8, 1, 0x0f, 0x10, 0x7f, 0xff] {
            let mut b = good.clone();
            b[i] = v;
            let _ = decode(&b);
        }
    }
    let mut x = 0x1234_5678u32;
    for len in 0..300 {
        let mut b = vec![3u8, 5, 0, 0];
        b[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b.push(x as u8);
        }
        let _ = decode(&b);
    }
}

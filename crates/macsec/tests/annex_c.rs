//! IEEE 802.1AE-2006 Annex C and 802.1AEbw-2013 Annex C: every frame, byte for byte, in both
//! directions, with every backend.

use interlink_macsec::selftest::{annex_c, Vector, ANNEX_C_JSON};
use interlink_macsec::{Accepted, Backend, RxStats, TxStats, ICV_LEN};

fn vectors() -> Vec<Vector> {
    annex_c().unwrap()
}

#[test]
fn the_file_holds_all_33_frames_and_matches_shared() {
    assert_eq!(vectors().len(), 33);
    // The crate carries a copy so that it builds and tests from a clean clone; where the
    // shared original is present, the copy must be identical to it.
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/macsec-annex-c.json"
    );
    if let Ok(original) = std::fs::read_to_string(shared) {
        assert_eq!(original, ANNEX_C_JSON);
    }
}

#[test]
fn plain_to_protected_is_byte_exact() {
    for &backend in Backend::available() {
        for v in vectors() {
            let tx = v.transmitter(backend).unwrap();
            let hdr = tx.header_len();
            let user_len = v.plain.len() - 12;
            let mut frame = vec![0u8; hdr + user_len + ICV_LEN];
            frame[..12].copy_from_slice(&v.plain[..12]);
            frame[hdr..hdr + user_len].copy_from_slice(&v.plain[12..]);
            let mut stats = TxStats::default();
            let p = tx.protect(&mut stats, &mut frame, user_len).unwrap();
            assert_eq!(p.pn, v.pn, "{} {backend}", v.name);
            assert_eq!(p.len, v.protected.len(), "{} {backend}", v.name);
            assert_eq!(
                &frame[..p.len],
                &v.protected[..],
                "{} {backend}: protected frame differs",
                v.name
            );
            // The SecTAG octets the vector names.
            assert_eq!(frame[14], v.tci_an, "{}", v.name);
            assert_eq!(frame[15], v.short_len, "{}", v.name);
            let (pkts, octets) = if v.confidentiality {
                (stats.out_pkts_encrypted, stats.out_octets_encrypted)
            } else {
                (stats.out_pkts_protected, stats.out_octets_protected)
            };
            assert_eq!((pkts, octets), (1, user_len as u64), "{}", v.name);
        }
    }
}

#[test]
fn protected_to_plain_is_byte_exact() {
    for &backend in Backend::available() {
        for v in vectors() {
            let mut rx = v.receiver(backend).unwrap();
            let mut frame = v.protected.clone();
            let mut stats = RxStats::default();
            let r = rx
                .validate(&mut stats, &mut frame)
                .unwrap_or_else(|e| panic!("{} {backend}: {e}", v.name));
            assert_eq!(
                r.accepted,
                Accepted::Ok {
                    sci: v.sci,
                    an: v.an(),
                    pn: v.pn
                },
                "{}",
                v.name
            );
            assert_eq!(&frame[..12], &v.plain[..12], "{}", v.name);
            assert_eq!(
                &frame[r.user.clone()],
                &v.plain[12..],
                "{} {backend}",
                v.name
            );
            assert_eq!(stats.in_pkts_ok, 1);
            let octets = if v.confidentiality {
                stats.in_octets_decrypted
            } else {
                stats.in_octets_validated
            };
            assert_eq!(octets, (v.plain.len() - 12) as u64);
            assert_eq!(
                rx.sc(v.sci).unwrap().sa(v.an()).unwrap().next_pn(),
                v.pn + 1
            );
        }
    }
}

#[test]
fn the_self_test_passes_every_vector() {
    for &backend in Backend::available() {
        for v in vectors() {
            v.check(backend)
                .unwrap_or_else(|e| panic!("{} {backend}: {e}", v.name));
        }
    }
}

#[test]
fn the_self_test_notices_a_wrong_key() {
    for &backend in Backend::available() {
        for v in vectors() {
            let mut wrong = v.clone();
            wrong.sak[0] ^= 0x80;
            assert!(wrong.check(backend).is_err(), "{}", v.name);
            let mut rx = wrong.receiver(backend).unwrap();
            let mut frame = v.protected.clone();
            let mut stats = RxStats::default();
            assert!(rx.validate(&mut stats, &mut frame).is_err(), "{}", v.name);
            assert_eq!(stats.in_pkts_not_valid, 1, "{}", v.name);
        }
    }
}

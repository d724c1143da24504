//! IEEE 802.1AE-2006 Annex C and 802.1AEbw-2013 Annex C: every frame, byte for byte, in both
//! directions, with every backend.

mod common;

use common::{annex_c, Vector};
use interlink_macsec::{
    Accepted, Backend, RxConfig, RxSecY, RxStats, Tci, TxConfig, TxSecY, TxStats, ICV_LEN,
};

fn transmitter(v: &Vector, backend: Backend) -> TxSecY {
    let tci = Tci::from_octet(v.tci_an);
    let cfg = TxConfig {
        include_sci: v.sci_in_frame,
        end_station: tci.es(),
        scb: tci.scb(),
        confidentiality: v.confidentiality,
        ..TxConfig::new(v.sci)
    };
    let mut tx = TxSecY::new(v.suite, backend, cfg).unwrap();
    tx.install_sa(v.an(), &v.key(), v.pn).unwrap();
    tx.set_encoding_sa(v.an()).unwrap();
    tx
}

fn receiver(v: &Vector, backend: Backend) -> RxSecY {
    let mut rx = RxSecY::new(v.suite, backend, RxConfig::default());
    rx.add_sc(v.sci).unwrap();
    rx.install_sa(v.sci, v.an(), &v.key(), v.pn).unwrap();
    rx
}

#[test]
fn the_file_holds_all_33_frames_and_matches_shared() {
    let vectors = annex_c();
    assert_eq!(vectors.len(), 33);
    // The crate carries a copy so that it builds and tests from a clean clone; where the
    // shared original is present, the copy must be identical to it.
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/macsec-annex-c.json"
    );
    if let Ok(original) = std::fs::read_to_string(shared) {
        assert_eq!(original, include_str!("vectors/macsec-annex-c.json"));
    }
}

#[test]
fn plain_to_protected_is_byte_exact() {
    for &backend in Backend::available() {
        for v in annex_c() {
            let tx = transmitter(&v, backend);
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
        for v in annex_c() {
            let mut rx = receiver(&v, backend);
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
fn each_vector_is_rejected_by_a_wrong_key() {
    for &backend in Backend::available() {
        for v in annex_c() {
            let mut wrong = v.clone();
            wrong.sak[0] ^= 0x80;
            let mut rx = receiver(&wrong, backend);
            let mut frame = v.protected.clone();
            let mut stats = RxStats::default();
            assert!(rx.validate(&mut stats, &mut frame).is_err(), "{}", v.name);
            assert_eq!(stats.in_pkts_not_valid, 1, "{}", v.name);
        }
    }
}

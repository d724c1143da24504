//! XPN packet numbers across the 2^32 boundary (IEEE 802.1AEbw): the transmitter sends only
//! the low 32 bits, the receiver recovers the high 32 from its lowest acceptable PN.

mod common;

use common::{Pair, LOCAL_MAC};
use interlink_macsec::{An, Backend, CipherSuite, RxConfig, RxError, Sci, TxConfig};

const PAYLOAD: &[u8] = b"across the boundary, across the boundary, across the boundary";

fn xpn_pair(suite: CipherSuite, backend: Backend, first_pn: u64, window: u32) -> Pair {
    Pair::new(
        suite,
        backend,
        TxConfig::new(Sci::new(LOCAL_MAC, 1)),
        RxConfig {
            replay_window: window,
            ..RxConfig::default()
        },
        An::new(0).unwrap(),
        first_pn,
    )
}

fn pn_field(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[16..20].try_into().unwrap())
}

#[test]
fn in_order_frames_cross_the_boundary() {
    for suite in [CipherSuite::GcmAesXpn128, CipherSuite::GcmAesXpn256] {
        for &backend in Backend::available() {
            let mut p = xpn_pair(suite, backend, 0xffff_fffe, 0);
            let expected = [0xffff_fffe, 0xffff_ffff, 0x1_0000_0000, 0x1_0000_0001];
            for pn in expected {
                let f = p.protect(PAYLOAD);
                // Transmit: the PN field carries the low half and wraps through 0.
                assert_eq!(pn_field(&f), pn as u32, "{suite} {backend}");
                assert_eq!(
                    p.validate(&f).unwrap(),
                    PAYLOAD,
                    "{suite} {backend} {pn:#x}"
                );
                // Receive: the full PN was recovered, so the state moved past it.
                let sa = p.rx.sc(p.sci).unwrap().sa(p.an).unwrap();
                assert_eq!(sa.next_pn(), pn + 1);
            }
            assert_eq!(p.rx_stats.in_pkts_ok, 4);
        }
    }
}

#[test]
fn reordered_frames_on_both_sides_of_the_boundary_recover() {
    // With a window, frames from just below 2^32 may arrive after frames from just above it,
    // and the other way round. Each must be recovered to its own full PN.
    let suite = CipherSuite::GcmAesXpn256;
    let first = 0xffff_ffe0u64;
    let mut p = xpn_pair(suite, Backend::default(), first, 32);
    let frames: Vec<_> = (0..48).map(|_| p.protect(PAYLOAD)).collect();
    let pn = |i: usize| first + i as u64;
    // Above the boundary (44: 0x1_0000_000c), below it (30: 0xffff_fffe), and so on.
    let order = [44, 30, 40, 20, 47, 25, 46, 33];
    for i in order {
        assert_eq!(
            p.validate(&frames[i]).unwrap(),
            PAYLOAD,
            "frame {i} pn {:#x}",
            pn(i)
        );
    }
    let sa = p.rx.sc(p.sci).unwrap().sa(p.an).unwrap();
    assert_eq!(sa.next_pn(), pn(47) + 1);
    assert_eq!(sa.lowest_pn(), pn(47) + 1 - 32);
    // Every one of them is now a duplicate.
    for i in order {
        assert!(
            matches!(p.validate(&frames[i]), Err(RxError::Late { .. })),
            "frame {i}"
        );
    }
    // Frame 10 (0xffff_ffea) is below the lowest acceptable PN (0xffff_fff0). Its low half is
    // below that of the lowest PN, so it reads as 0x1_ffff_ffea and fails the ICV: with XPN a
    // frame that old is indistinguishable from a forgery.
    assert!(matches!(
        p.validate(&frames[10]),
        Err(RxError::NotValid {
            pn: 0x1_ffff_ffea,
            ..
        })
    ));
    assert_eq!(p.rx_stats.in_pkts_ok, order.len() as u64);
    assert_eq!(p.rx_stats.in_pkts_late, order.len() as u64);
}

#[test]
fn recovery_follows_the_lowest_acceptable_pn() {
    // A receiver whose lowest acceptable PN is already above 2^32 reads a low PN field as the
    // next epoch; a frame really from the previous epoch then fails the ICV, since its IV was
    // built from the older PN.
    let suite = CipherSuite::GcmAesXpn128;
    let mut p = xpn_pair(suite, Backend::default(), 0x2_0000_0005, 0);
    let f = p.protect(PAYLOAD);
    assert_eq!(pn_field(&f), 5);
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);

    let mut old = xpn_pair(suite, Backend::default(), 0x1_0000_0010, 0);
    let stale = old.protect(PAYLOAD);
    // Same key, same SCI: only the epoch differs. Read as 0x2_0000_0010, it fails.
    assert!(matches!(
        p.validate(&stale),
        Err(RxError::NotValid {
            pn: 0x2_0000_0010,
            ..
        })
    ));
}

#[test]
fn non_xpn_pn_does_not_wrap() {
    let mut p = xpn_pair(CipherSuite::GcmAes256, Backend::default(), 0xffff_ffff, 0);
    let f = p.protect(PAYLOAD);
    assert_eq!(pn_field(&f), 0xffff_ffff);
    assert_eq!(p.validate(&f).unwrap(), PAYLOAD);
    assert!(p.tx.encoding_sa().unwrap().next_pn().is_none());
}

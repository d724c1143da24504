//! Property tests: round trips over random sizes, PNs, ANs, suites and framing; both backends
//! produce identical frames; arbitrary input never panics and is always counted once.

mod common;

use common::{Pair, LOCAL_MAC};
use interlink_macsec::{
    Accepted, An, Backend, CipherSuite, RxConfig, RxStats, Sci, TxConfig, ValidateFrames,
};
use proptest::prelude::*;

fn suite() -> impl Strategy<Value = CipherSuite> {
    prop::sample::select(CipherSuite::ALL.to_vec())
}

fn backend() -> impl Strategy<Value = Backend> {
    prop::sample::select(Backend::available().to_vec())
}

/// A first PN anywhere in the suite's space, with extra weight near the 2^32 boundary and the
/// end, where the arithmetic is delicate. Leaves room for the frame that follows.
fn first_pn(suite: CipherSuite) -> impl Strategy<Value = u64> {
    let max = suite.max_pn();
    prop_oneof![
        1..=max - 1,
        (1u64..64).prop_map(move |d| max - d),
        (0u64..64).prop_map(move |d| (0xffff_ffe0u64 + d).min(max - 1)),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    suite: CipherSuite,
    backend: Backend,
    an: u8,
    pn: u64,
    include_sci: bool,
    confidentiality: bool,
    payload: Vec<u8>,
}

fn case() -> impl Strategy<Value = Case> {
    (suite(), backend()).prop_flat_map(|(suite, backend)| {
        (
            0u8..4,
            first_pn(suite),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 0..2000),
        )
            .prop_map(
                move |(an, pn, include_sci, confidentiality, payload)| Case {
                    suite,
                    backend,
                    an,
                    pn,
                    include_sci,
                    confidentiality,
                    payload,
                },
            )
    })
}

fn pair_for(c: &Case, backend: Backend) -> Pair {
    let tx = TxConfig {
        include_sci: c.include_sci,
        end_station: !c.include_sci,
        confidentiality: c.confidentiality,
        ..TxConfig::new(Sci::new(LOCAL_MAC, 1))
    };
    Pair::new(
        c.suite,
        backend,
        tx,
        RxConfig::default(),
        An::new(c.an).unwrap(),
        c.pn,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn protect_then_validate_round_trips(c in case()) {
        let mut p = pair_for(&c, c.backend);
        for (i, pn) in [c.pn, c.pn + 1].into_iter().enumerate() {
            let f = p.protect(&c.payload);
            prop_assert_eq!(f.len(), p.tx.header_len() + 2 + c.payload.len() + 16);
            let mut copy = f.clone();
            let r = p.rx.validate(&mut p.rx_stats, &mut copy).unwrap();
            prop_assert_eq!(r.accepted, Accepted::Ok { sci: p.sci, an: p.an, pn });
            prop_assert_eq!(&copy[r.user.start + 2..r.user.end], &c.payload[..]);
            prop_assert_eq!(p.rx_stats.in_pkts_ok, i as u64 + 1);
        }
    }

    #[test]
    fn backends_produce_identical_frames(c in case()) {
        let mut frames = Backend::available()
            .iter()
            .map(|&b| pair_for(&c, b).protect(&c.payload));
        let first = frames.next().unwrap();
        for other in frames {
            prop_assert_eq!(&first, &other);
        }
        // And each backend opens what the other sealed.
        for &b in Backend::available() {
            let mut p = pair_for(&c, b);
            prop_assert_eq!(p.validate(&first).unwrap(), c.payload.clone());
        }
    }

    #[test]
    fn any_flipped_bit_is_refused(c in case(), bit in any::<prop::sample::Index>()) {
        let mut p = pair_for(&c, c.backend);
        let mut f = p.protect(&c.payload);
        let at = bit.index(f.len() * 8);
        f[at / 8] ^= 1 << (at % 8);
        prop_assert!(p.validate(&f).is_err());
        prop_assert_eq!(p.rx_stats.frames(), 1);
        prop_assert_eq!(p.rx_stats.dropped(), 1);
    }

    #[test]
    fn arbitrary_frames_never_panic_and_count_once(
        suite in suite(),
        mode in 0u8..3,
        frame in prop::collection::vec(any::<u8>(), 0..200),
        tag in any::<bool>(),
    ) {
        let validate_frames = [ValidateFrames::Disabled, ValidateFrames::Check, ValidateFrames::Strict][mode as usize];
        let mut p = Pair::new(
            suite,
            Backend::default(),
            TxConfig::new(Sci::new(LOCAL_MAC, 1)),
            RxConfig { validate_frames, ..RxConfig::default() },
            An::new(0).unwrap(),
            1,
        );
        let mut frame = frame;
        if tag && frame.len() >= 14 {
            frame[12..14].copy_from_slice(&[0x88, 0xe5]);
        }
        let mut stats = RxStats::default();
        if let Ok(r) = p.rx.validate(&mut stats, &mut frame) {
            prop_assert!(r.user.start <= r.user.end && r.user.end <= frame.len());
        }
        prop_assert_eq!(stats.frames(), 1);
    }
}

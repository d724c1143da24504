//! Fuzzing entry points, shared by the cargo-fuzz targets in `fuzz/` and by the corpus replay
//! test that runs under `cargo test`, so that CI exercises the same code the fuzzer does.

use crate::{
    Accepted, An, Backend, CipherSuite, RxConfig, RxSecY, RxStats, SaKey, Sci, TxConfig, TxSecY,
    TxStats, ValidateFrames, ICV_LEN,
};

const SAK: [u8; 32] = [0x5a; 32];
const SALT: [u8; 12] = [0xa5; 12];
const SSCI: u32 = 7;
const PEER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const PEER_SCI: Sci = Sci::new(PEER_MAC, 1);

fn key(suite: CipherSuite) -> SaKey<'static> {
    SaKey {
        sak: &SAK[..suite.key_len()],
        xpn: suite.is_xpn().then_some((SSCI, SALT)),
    }
}

/// A receive SecY with SAs on AN 0 and 2 for the peer's SCI, plus an SC for its implicit
/// end-station SCI (the same here: port 1), so both tag forms reach the crypto.
fn receiver(suite: CipherSuite, cfg: RxConfig) -> RxSecY {
    let mut rx = RxSecY::new(suite, Backend::default(), cfg);
    let _ = rx.add_sc(PEER_SCI);
    for an in [0, 2] {
        if let Some(an) = An::new(an) {
            let _ = rx.install_sa(PEER_SCI, an, &key(suite), 1);
        }
    }
    rx
}

/// Feeds `data` to the receive path. The first octet picks the cipher suite, validateFrames,
/// replay controls and the mode:
/// - raw: the rest is a frame, validated as received;
/// - mutate: the rest is user data, protected by a matching transmitter; the untouched frame
///   must validate, and once the rest is XORed over it, it must not validate as `Ok`.
///
/// Panics only when an invariant breaks, which is what the fuzzer looks for.
pub fn rx(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let suite = CipherSuite::ALL[usize::from(selector & 3)];
    let cfg = RxConfig {
        validate_frames: match (selector >> 2) & 3 {
            0 => ValidateFrames::Disabled,
            1 => ValidateFrames::Check,
            _ => ValidateFrames::Strict,
        },
        replay_window: if selector & 0x10 != 0 { 64 } else { 0 },
        replay_protect: selector & 0x20 == 0,
    };
    let mut stats = RxStats::default();
    if selector & 0x40 == 0 {
        let mut frame = rest.to_vec();
        if let Ok(r) = receiver(suite, cfg).validate(&mut stats, &mut frame) {
            assert!(r.user.start <= r.user.end && r.user.end <= frame.len());
        }
        // Every frame lands in exactly one packet counter.
        assert_eq!(stats.frames(), 1, "{stats:?}");
        return;
    }

    let mut tx_cfg = TxConfig::new(PEER_SCI);
    tx_cfg.confidentiality = selector & 0x80 == 0;
    let Ok(mut tx) = TxSecY::new(suite, Backend::default(), tx_cfg) else {
        return;
    };
    let an = An::ALL[0];
    if tx.install_sa(an, &key(suite), 1).is_err() || tx.set_encoding_sa(an).is_err() {
        return;
    }
    let hdr = tx.header_len();
    let mut frame = vec![0; hdr + 2 + rest.len() + ICV_LEN];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    frame[6..12].copy_from_slice(&PEER_MAC);
    frame[hdr..hdr + 2].copy_from_slice(&0x0800u16.to_be_bytes());
    frame[hdr + 2..hdr + 2 + rest.len()].copy_from_slice(rest);
    let Ok(p) = tx.protect(&mut TxStats::default(), &mut frame, rest.len() + 2) else {
        return;
    };
    frame.truncate(p.len);
    let original = frame.clone();

    let mut untouched = frame.clone();
    match receiver(suite, cfg).validate(&mut stats, &mut untouched) {
        Ok(r) => {
            // validateFrames Disabled skips integrity-only frames (§10.6.4); all else is checked.
            if tx_cfg.confidentiality || cfg.validate_frames != ValidateFrames::Disabled {
                assert!(matches!(r.accepted, Accepted::Ok { .. }), "{r:?}");
            } else {
                assert!(matches!(r.accepted, Accepted::Unchecked { .. }), "{r:?}");
            }
            assert_eq!(&untouched[r.user.start + 2..r.user.end], rest);
        }
        Err(e) => panic!("a frame fresh from protect failed to validate: {e}"),
    }

    for (i, b) in rest.iter().enumerate() {
        let at = i % frame.len();
        frame[at] ^= b;
    }
    if frame != original {
        if let Ok(r) = receiver(suite, cfg).validate(&mut stats, &mut frame) {
            assert!(
                !matches!(r.accepted, Accepted::Ok { .. }),
                "a modified frame validated: {r:?}"
            );
        }
    }
}

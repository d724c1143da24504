//! The fuzz entry point, shared by `crates/mka/fuzz` and the corpus replay under `cargo test`:
//! arbitrary bytes as an EAPOL frame, decoded, its ICV checked, and what decodes encoded again
//! to the same parameter sets. Nothing may panic.

use crate::keys::{icv, verify_icv, Secret};
use crate::mkpdu::{decode, encode};

pub fn mkpdu(data: &[u8]) {
    let Ok(ick) = Secret::new(vec![0x42; 16]) else {
        return;
    };
    let addrs = [1, 0x80, 0xc2, 0, 0, 3, 2, 0, 0, 0, 0, 1];
    let Ok(p) = decode(data) else {
        return;
    };
    let _ = verify_icv(&ick, &addrs, p.covered, p.icv);
    if let Ok(again) = encode(&p.mkpdu, |c| icv(&ick, &addrs, c).unwrap_or([0; 16])) {
        let q = decode(&again).expect("what we encode decodes");
        // Unknown parameter sets are skipped, not sent on.
        let mut want = p.mkpdu.clone();
        want.unknown.clear();
        assert_eq!(q.mkpdu, want);
    }
}

//! IEEE 802.1X-2020 Annex G: every key-derivation vector, byte for byte; RFC 3394's key wrap
//! vectors; the ICV.

use std::path::Path;

use interlink_mka::keys::{
    derive_sak, ick, icv, kdf, kek, unwrap_sak, verify_icv, wrap_sak, KeyError, Secret,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn vectors() -> serde_json::Value {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors/mka-kdf-annex-g.json");
    let text = std::fs::read_to_string(&here).unwrap();
    // The copy here is the project's shared, re-verified set, unchanged.
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors/mka-kdf-annex-g.json");
    if let Ok(original) = std::fs::read_to_string(shared) {
        assert_eq!(
            text, original,
            "crates/mka/vectors differs from ../shared/vectors"
        );
    }
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_annex_g_vector() {
    let v = vectors();
    let list = v["vectors"].as_array().unwrap();
    assert_eq!(list.len(), 8);
    for t in list {
        let name = t["name"].as_str().unwrap();
        let key = hex(t["key"].as_str().unwrap());
        let label = t["label"].as_str().unwrap();
        let context = hex(t["context"].as_str().unwrap());
        let bits = t["bits"].as_u64().unwrap() as u16;
        let want = hex(t["expected"].as_str().unwrap());
        assert_eq!(kdf(&key, label, &context, bits).unwrap(), want, "{name}");
        // And through the named derivations.
        let cak = Secret::new(key.clone()).unwrap();
        match label {
            "IEEE8021 KEK" => assert_eq!(kek(&cak, &context).unwrap().as_bytes(), want, "{name}"),
            "IEEE8021 ICK" => assert_eq!(ick(&cak, &context).unwrap().as_bytes(), want, "{name}"),
            "IEEE8021 SAK" => {
                // Context: KS-nonce (the key's length) || MIs (12 octets each) || KN (4).
                let nonce = &context[..key.len()];
                let mis: Vec<[u8; 12]> = context[key.len()..context.len() - 4]
                    .chunks_exact(12)
                    .map(|c| c.try_into().unwrap())
                    .collect();
                let kn = u32::from_be_bytes(context[context.len() - 4..].try_into().unwrap());
                let sak = derive_sak(&cak, nonce, &mis, kn, usize::from(bits / 8)).unwrap();
                assert_eq!(sak.as_bytes(), want, "{name}");
            }
            _ => {}
        }
    }
}

#[test]
fn rfc_3394_key_wrap_vectors() {
    // §4.1: 128 bits of key data under a 128-bit KEK; §4.6: 256 under 256.
    for (k, data, want) in [
        (
            "000102030405060708090a0b0c0d0e0f",
            "00112233445566778899aabbccddeeff",
            "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5",
        ),
        (
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
            "00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f",
            "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
        ),
    ] {
        let kek = Secret::new(hex(k)).unwrap();
        let sak = Secret::new(hex(data)).unwrap();
        let wrapped = wrap_sak(&kek, &sak).unwrap();
        assert_eq!(wrapped, hex(want));
        assert_eq!(unwrap_sak(&kek, &wrapped).unwrap(), sak);
        // Any altered octet, or another KEK, fails the integrity check.
        let mut bad = wrapped.clone();
        bad[5] ^= 1;
        assert_eq!(unwrap_sak(&kek, &bad), Err(KeyError::Unwrap));
        let other = Secret::new(vec![7; kek.len()]).unwrap();
        assert_eq!(unwrap_sak(&other, &wrapped), Err(KeyError::Unwrap));
    }
    let kek = Secret::new(vec![1; 16]).unwrap();
    assert!(unwrap_sak(&kek, &[0; 20]).is_err());
}

#[test]
fn the_icv_authenticates_addresses_and_body() {
    let cak = Secret::new(hex("135bd758b0ee5c11c55ff6ab19fdb199")).unwrap();
    let ick = ick(&cak, &hex("96437a93ccf10d9dfe347846cce52c7d")).unwrap();
    let addrs = [1, 0x80, 0xc2, 0, 0, 3, 2, 0, 0, 0, 0, 1];
    let body = b"an MKPDU up to its ICV";
    let tag = icv(&ick, &addrs, body).unwrap();
    assert!(verify_icv(&ick, &addrs, body, &tag));
    let mut other = addrs;
    other[11] = 2;
    assert!(!verify_icv(&ick, &other, body, &tag));
    assert!(!verify_icv(&ick, &addrs, b"an MKPDU up to its ICW", &tag));
    assert!(!verify_icv(&ick, &addrs, body, &tag[..15]));
}

#[test]
fn bad_lengths_are_errors() {
    assert_eq!(Secret::new(vec![0; 24]), Err(KeyError::KeyLength(24)));
    let cak = Secret::new(vec![0; 16]).unwrap();
    assert_eq!(kek(&cak, &[]), Err(KeyError::CknLength(0)));
    assert_eq!(ick(&cak, &[0; 33]), Err(KeyError::CknLength(33)));
    // A long CKN is truncated to its first 16 octets for the KDF context.
    assert_eq!(kek(&cak, &[9; 32]).unwrap(), kek(&cak, &[9; 16]).unwrap());
    assert!(format!("{cak:?}").contains("redacted"));
}

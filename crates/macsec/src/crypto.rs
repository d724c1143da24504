//! The AES-GCM backends behind one small trait.
//!
//! aws-lc-rs and ring are the fast ones, both assembly from the BoringSSL/OpenSSL lineage. They
//! differ by CPU: ring 0.17.14 has AES-GCM on VAES and VPCLMULQDQ with 256-bit AVX2 registers,
//! which AWS-LC 0.47 lacks (its VAES code needs AVX-512), so on a CPU with VAES and no AVX-512
//! (AMD Zen 3, Intel Alder Lake and later clients) ring seals 1420 octets 1.9 times as fast; on
//! the others aws-lc-rs is as fast or faster (AVX-512). [`Backend::default`] picks by the CPU it
//! runs on. RustCrypto's aes-gcm is pure Rust, for builds that must not compile C
//! (`--no-default-features --features rustcrypto`). All work in place, take the tag separately
//! and never allocate per call.

use core::fmt;
use core::str::FromStr;

use crate::{CipherSuite, ICV_LEN};

/// GCM initialisation vector length (§14.5, §14.6).
pub const IV_LEN: usize = 12;

/// The authentication tag did not verify, or the backend refused the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("AES-GCM operation failed")]
pub struct CryptoError;

/// One SAK, ready to seal and open. Implementations are stateless per call, so a key can be
/// shared by several threads.
pub trait Aead: Send + Sync {
    /// Encrypts `in_out` in place (it may be empty: integrity-only protection) and returns the
    /// 16-octet tag over `aad` and the ciphertext.
    fn seal(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<[u8; ICV_LEN], CryptoError>;

    /// Verifies `tag` over `aad` and `in_out`, then decrypts `in_out` in place. On error the
    /// contents of `in_out` are unspecified.
    fn open(
        &self,
        iv: &[u8; IV_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        tag: &[u8; ICV_LEN],
    ) -> Result<(), CryptoError>;
}

/// Which AES-GCM implementation keys are made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// aws-lc-rs (AWS-LC, assembly AES-GCM). Cargo feature `aws-lc`, on by default.
    AwsLc,
    /// ring (assembly AES-GCM, with a VAES + AVX2 path). Cargo feature `ring`, on by default.
    Ring,
    /// RustCrypto `aes-gcm`, pure Rust. Cargo feature `rustcrypto`.
    RustCrypto,
}

/// A key could not be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{suite} takes a {expected}-octet SAK, got {got} octets")]
    Length {
        suite: CipherSuite,
        expected: usize,
        got: usize,
    },
    #[error("the {0} backend is not compiled in (cargo feature `{feature}`)", feature = .0.feature())]
    Unavailable(Backend),
    #[error("the {0} backend rejected the key")]
    Rejected(Backend),
}

impl Backend {
    /// The backends compiled into this build.
    pub const fn available() -> &'static [Backend] {
        &[
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc,
            #[cfg(feature = "ring")]
            Backend::Ring,
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto,
        ]
    }

    /// The cargo feature that compiles this backend in.
    pub const fn feature(self) -> &'static str {
        match self {
            Backend::AwsLc => "aws-lc",
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Backend::AwsLc => "aws-lc-rs",
            Backend::Ring => "ring",
            Backend::RustCrypto => "rustcrypto",
        }
    }

    /// Makes a key for `suite` from a SAK of the suite's length.
    pub fn key(self, suite: CipherSuite, sak: &[u8]) -> Result<Box<dyn Aead>, KeyError> {
        if sak.len() != suite.key_len() {
            return Err(KeyError::Length {
                suite,
                expected: suite.key_len(),
                got: sak.len(),
            });
        }
        match self {
            #[cfg(feature = "aws-lc")]
            Backend::AwsLc => aws_lc::key(sak).map_err(|()| KeyError::Rejected(self)),
            #[cfg(feature = "ring")]
            Backend::Ring => ring::key(sak).map_err(|()| KeyError::Rejected(self)),
            #[cfg(feature = "rustcrypto")]
            Backend::RustCrypto => rustcrypto::key(sak).map_err(|()| KeyError::Rejected(self)),
            #[allow(unreachable_patterns)]
            _ => Err(KeyError::Unavailable(self)),
        }
    }
}

impl Default for Backend {
    /// The fastest backend compiled in, for the CPU this runs on: ring where it has its VAES +
    /// AVX2 code and AWS-LC has nothing better (no AVX-512), aws-lc-rs otherwise, RustCrypto
    /// when it is the only one. A build with none has only the types and cannot make keys:
    /// [`Backend::key`] then reports the backend unavailable.
    fn default() -> Backend {
        let compiled = Backend::available();
        let has = |b| compiled.contains(&b);
        if has(Backend::Ring) && (vaes_avx2_without_avx512() || !has(Backend::AwsLc)) {
            Backend::Ring
        } else if has(Backend::AwsLc) || !has(Backend::RustCrypto) {
            Backend::AwsLc
        } else {
            Backend::RustCrypto
        }
    }
}

/// The CPU has VAES and VPCLMULQDQ with AVX2 but not AVX-512: ring's VAES path runs, and
/// AWS-LC's (AVX-512 only) does not.
fn vaes_avx2_without_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("vaes")
            && std::arch::is_x86_feature_detected!("vpclmulqdq")
            && std::arch::is_x86_feature_detected!("avx2")
            && !std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend name that is not `aws-lc-rs`, `ring` or `rustcrypto`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown AES-GCM backend {0:?} (expected \"aws-lc-rs\", \"ring\" or \"rustcrypto\")")]
pub struct UnknownBackend(pub String);

impl FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aws-lc-rs" | "aws-lc" => Ok(Backend::AwsLc),
            "ring" => Ok(Backend::Ring),
            "rustcrypto" | "aes-gcm" => Ok(Backend::RustCrypto),
            _ => Err(UnknownBackend(s.to_owned())),
        }
    }
}

/// A backend over a ring-style `LessSafeKey` (ring, and aws-lc-rs, which follows ring's API):
/// the module `$name` around crate `$krate`; `$open` turns (key, nonce, aad, tag, in_out) into
/// the crate's open call, the one place where the two differ (how the tag is passed).
macro_rules! less_safe_key_backend {
    ($name:ident, $krate:ident, $feature:literal, |$k:ident, $n:ident, $a:ident, $t:ident, $io:ident| $open:expr) => {
        #[cfg(feature = $feature)]
        mod $name {
            use super::{Aead, CryptoError, IV_LEN};
            use crate::ICV_LEN;
            #[allow(unused_imports)]
            use $krate::aead::{
                Aad, LessSafeKey, Nonce, Tag, UnboundKey, AES_128_GCM, AES_256_GCM,
            };

            struct Key(LessSafeKey);

            pub(super) fn key(sak: &[u8]) -> Result<Box<dyn Aead>, ()> {
                let alg = if sak.len() == 16 {
                    &AES_128_GCM
                } else {
                    &AES_256_GCM
                };
                let key = UnboundKey::new(alg, sak).map_err(|_| ())?;
                Ok(Box::new(Key(LessSafeKey::new(key))))
            }

            impl Aead for Key {
                #[inline]
                fn seal(
                    &self,
                    iv: &[u8; IV_LEN],
                    aad: &[u8],
                    in_out: &mut [u8],
                ) -> Result<[u8; ICV_LEN], CryptoError> {
                    // The IV is unique per SA by construction: the PN is never reused
                    // (§10.5.2).
                    let tag = self
                        .0
                        .seal_in_place_separate_tag(
                            Nonce::assume_unique_for_key(*iv),
                            Aad::from(aad),
                            in_out,
                        )
                        .map_err(|_| CryptoError)?;
                    let mut out = [0; ICV_LEN];
                    out.copy_from_slice(tag.as_ref());
                    Ok(out)
                }

                #[inline]
                fn open(
                    &self,
                    iv: &[u8; IV_LEN],
                    aad: &[u8],
                    in_out: &mut [u8],
                    tag: &[u8; ICV_LEN],
                ) -> Result<(), CryptoError> {
                    let ($k, $n, $a, $t, $io) = (
                        &self.0,
                        Nonce::assume_unique_for_key(*iv),
                        Aad::from(aad),
                        tag,
                        in_out,
                    );
                    $open.map(|_| ()).map_err(|_| CryptoError)
                }
            }
        }
    };
}

less_safe_key_backend!(aws_lc, aws_lc_rs, "aws-lc", |k, n, a, t, io| k
    .open_in_place_separate_tag(n, a, t, io));
less_safe_key_backend!(ring, ring, "ring", |k, n, a, t, io| k
    .open_in_place_separate_tag(n, a, Tag::from(*t), io, 0..));

#[cfg(feature = "rustcrypto")]
mod rustcrypto {
    use super::{Aead, CryptoError, IV_LEN};
    use crate::ICV_LEN;
    use aes_gcm::aead::AeadInPlace;
    use aes_gcm::{Aes128Gcm, Aes256Gcm, KeyInit, Nonce, Tag};

    struct Key<C>(C);

    pub(super) fn key(sak: &[u8]) -> Result<Box<dyn Aead>, ()> {
        if sak.len() == 16 {
            Ok(Box::new(Key(
                Aes128Gcm::new_from_slice(sak).map_err(|_| ())?
            )))
        } else {
            Ok(Box::new(Key(
                Aes256Gcm::new_from_slice(sak).map_err(|_| ())?
            )))
        }
    }

    impl<C: AeadInPlace + Send + Sync> Aead for Key<C>
    where
        C: aes_gcm::AeadCore<
            NonceSize = aes_gcm::aead::consts::U12,
            TagSize = aes_gcm::aead::consts::U16,
        >,
    {
        #[inline]
        fn seal(
            &self,
            iv: &[u8; IV_LEN],
            aad: &[u8],
            in_out: &mut [u8],
        ) -> Result<[u8; ICV_LEN], CryptoError> {
            let tag = self
                .0
                .encrypt_in_place_detached(Nonce::from_slice(iv), aad, in_out)
                .map_err(|_| CryptoError)?;
            Ok(tag.into())
        }

        #[inline]
        fn open(
            &self,
            iv: &[u8; IV_LEN],
            aad: &[u8],
            in_out: &mut [u8],
            tag: &[u8; ICV_LEN],
        ) -> Result<(), CryptoError> {
            self.0
                .decrypt_in_place_detached(Nonce::from_slice(iv), aad, in_out, Tag::from_slice(tag))
                .map_err(|_| CryptoError)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // NIST GCM test case 4 (AES-128, 60-octet plaintext, 20-octet AAD) from the GCM spec
    // (McGrew & Viega, "The Galois/Counter Mode of Operation", Appendix B).
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn every_backend_passes_gcm_test_case_4() {
        let key = hex("feffe9928665731c6d6a8f9467308308");
        let iv: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let pt = hex(concat!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72",
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        ));
        let ct = hex(concat!(
            "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e",
            "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
        ));
        let tag = hex("5bc94fbc3221a5db94fae95ae7121a47");
        for &backend in Backend::available() {
            let k = backend.key(CipherSuite::GcmAes128, &key).unwrap();
            let mut buf = pt.clone();
            let t = k.seal(&iv, &aad, &mut buf).unwrap();
            assert_eq!(buf, ct, "{backend}");
            assert_eq!(&t[..], &tag[..], "{backend}");
            k.open(&iv, &aad, &mut buf, &t).unwrap();
            assert_eq!(buf, pt, "{backend}");
            let mut bad = t;
            bad[0] ^= 1;
            let mut buf = ct.clone();
            assert_eq!(k.open(&iv, &aad, &mut buf, &bad), Err(CryptoError));
        }
    }

    /// Every backend seals alike and opens the others' output, at every length up to past
    /// the bulk paths' block sizes (the VAES code works 128 and 512 octets at a time) and at
    /// jumbo-frame sizes, with AADs of the MACsec lengths and odd ones.
    #[test]
    fn backends_agree_at_every_length() {
        let data: Vec<u8> = (0..9100u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let lens = (0..=1100).chain([1420, 1500, 4096, 8999, 9000, 9100]);
        for suite in [CipherSuite::GcmAes128, CipherSuite::GcmAes256] {
            let sak: Vec<u8> = (0..suite.key_len() as u8).map(|i| i ^ 0x5a).collect();
            let keys: Vec<_> = Backend::available()
                .iter()
                .map(|&b| (b, b.key(suite, &sak).unwrap()))
                .collect();
            for len in lens.clone() {
                let aad = &data[100..100 + [0, 20, 28, 33][len % 4]];
                let iv: [u8; 12] = core::array::from_fn(|i| (len + i) as u8);
                let mut sealed = None;
                for (b, k) in &keys {
                    let mut buf = data[..len].to_vec();
                    let tag = k.seal(&iv, aad, &mut buf).unwrap();
                    match &sealed {
                        None => sealed = Some((buf, tag)),
                        Some(first) => assert_eq!(first, &(buf, tag), "{b} at {len}"),
                    }
                }
                let (ct, tag) = sealed.unwrap();
                for (b, k) in &keys {
                    let mut buf = ct.clone();
                    k.open(&iv, aad, &mut buf, &tag).unwrap();
                    assert_eq!(buf, &data[..len], "{b} at {len}");
                }
            }
        }
    }

    #[test]
    fn default_backend_is_compiled_in() {
        assert!(Backend::available().contains(&Backend::default()));
    }

    #[test]
    fn key_length_is_checked() {
        for &backend in Backend::available() {
            let err = backend.key(CipherSuite::GcmAes256, &[0; 16]).err().unwrap();
            assert_eq!(
                err,
                KeyError::Length {
                    suite: CipherSuite::GcmAes256,
                    expected: 32,
                    got: 16
                }
            );
        }
    }

    #[test]
    fn backend_names_parse() {
        for b in [Backend::AwsLc, Backend::Ring, Backend::RustCrypto] {
            assert_eq!(b.name().parse::<Backend>().unwrap(), b);
        }
        assert!("openssl".parse::<Backend>().is_err());
    }
}

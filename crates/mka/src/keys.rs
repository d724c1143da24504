//! The MKA key hierarchy (IEEE 802.1X-2020 §6.2 and §9.3): from the CAK (connectivity
//! association key) and its name, the CKN, an ICK that authenticates every MKPDU and a KEK
//! that wraps the SAK the key server distributes.
//!
//! KDF (§6.2.1, NIST SP 800-108 counter mode with AES-CMAC as the PRF):
//! `K(i) = AES-CMAC(key, i || label || 0x00 || context || L)`, `i` one octet from 1, `L` the
//! output length in bits on two octets; the output is the first `L` bits of `K(1) || K(2)..`.

use aws_lc_rs::cmac;
use aws_lc_rs::key_wrap::{AesKek, KeyWrap, AES_128, AES_256};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("a key of {0} octets: AES keys are 16 or 32")]
    KeyLength(usize),
    #[error("a CKN of {0} octets: 1 to 32")]
    CknLength(usize),
    #[error(
        "a distributed CAK must be as long as the CA's own ({0} octets) and have a CKN of its own"
    )]
    DistributedCak(usize),
    #[error("the wrapped SAK does not unwrap under this KEK (wrong CAK, or altered)")]
    Unwrap,
    #[error("the AES backend failed")]
    Backend,
}

/// An AES key of MKA's hierarchy (CAK, ICK, KEK, SAK): never printed, zeroed when dropped
/// (an [`interlink_secret::Secret`] of an AES key's length).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secret(interlink_secret::Secret);

impl Secret {
    /// 16 or 32 octets (AES-128 or AES-256).
    pub fn new(bytes: Vec<u8>) -> Result<Secret, KeyError> {
        match bytes.len() {
            16 | 32 => Ok(Secret(interlink_secret::Secret::new(bytes))),
            n => {
                drop(interlink_secret::Secret::new(bytes));
                Err(KeyError::KeyLength(n))
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn cmac_key(key: &[u8]) -> Result<cmac::Key, KeyError> {
    let alg = match key.len() {
        16 => cmac::AES_128,
        32 => cmac::AES_256,
        n => return Err(KeyError::KeyLength(n)),
    };
    cmac::Key::new(alg, key).map_err(|_| KeyError::Backend)
}

/// The KDF of §6.2.1: `bits` of output (a multiple of 8) under `key` for `label` and
/// `context`.
pub fn kdf(key: &[u8], label: &str, context: &[u8], bits: u16) -> Result<Vec<u8>, KeyError> {
    let k = cmac_key(key)?;
    let len = usize::from(bits / 8);
    let mut out = Vec::with_capacity(len + 16);
    let mut i = 1u8;
    while out.len() < len {
        let mut ctx = cmac::Context::with_key(&k);
        let mut update = |d: &[u8]| ctx.update(d).map_err(|_| KeyError::Backend);
        update(&[i])?;
        update(label.as_bytes())?;
        update(&[0])?;
        update(context)?;
        update(&bits.to_be_bytes())?;
        let tag = ctx.sign().map_err(|_| KeyError::Backend)?;
        out.extend_from_slice(tag.as_ref());
        i = i.checked_add(1).ok_or(KeyError::Backend)?;
    }
    out.truncate(len);
    Ok(out)
}

/// The KDF context for the ICK and KEK: the CKN's first 16 octets, zero-padded (§6.2.2).
fn ckn_context(ckn: &[u8]) -> Result<[u8; 16], KeyError> {
    if ckn.is_empty() || ckn.len() > 32 {
        return Err(KeyError::CknLength(ckn.len()));
    }
    let mut c = [0u8; 16];
    let n = ckn.len().min(16);
    c[..n].copy_from_slice(&ckn[..n]);
    Ok(c)
}

/// The key encrypting key: `KDF(CAK, "IEEE8021 KEK", CKN[0..15], len(CAK))`.
pub fn kek(cak: &Secret, ckn: &[u8]) -> Result<Secret, KeyError> {
    let bits = (cak.len() * 8) as u16;
    Secret::new(kdf(
        cak.as_bytes(),
        "IEEE8021 KEK",
        &ckn_context(ckn)?,
        bits,
    )?)
}

/// The ICV key: `KDF(CAK, "IEEE8021 ICK", CKN[0..15], len(CAK))`.
pub fn ick(cak: &Secret, ckn: &[u8]) -> Result<Secret, KeyError> {
    let bits = (cak.len() * 8) as u16;
    Secret::new(kdf(
        cak.as_bytes(),
        "IEEE8021 ICK",
        &ckn_context(ckn)?,
        bits,
    )?)
}

/// A SAK derived by the key server (§9.8.1):
/// `KDF(CAK, "IEEE8021 SAK", KS-nonce || MI of each live member || KN, SAK length)`.
pub fn derive_sak(
    cak: &Secret,
    ks_nonce: &[u8],
    member_ids: &[[u8; 12]],
    key_number: u32,
    sak_len: usize,
) -> Result<Secret, KeyError> {
    let mut ctx = Vec::with_capacity(ks_nonce.len() + 12 * member_ids.len() + 4);
    ctx.extend_from_slice(ks_nonce);
    for mi in member_ids {
        ctx.extend_from_slice(mi);
    }
    ctx.extend_from_slice(&key_number.to_be_bytes());
    Secret::new(kdf(
        cak.as_bytes(),
        "IEEE8021 SAK",
        &ctx,
        (sak_len * 8) as u16,
    )?)
}

/// A fresh random SAK of `len` octets, the other way a key server may make one.
pub fn random_sak(len: usize) -> Result<Secret, KeyError> {
    let mut b = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| KeyError::Backend)?;
    Secret::new(b)
}

fn kek_of(kek: &Secret) -> Result<AesKek, KeyError> {
    let cipher = match kek.len() {
        16 => &AES_128,
        32 => &AES_256,
        n => return Err(KeyError::KeyLength(n)),
    };
    AesKek::new(cipher, kek.as_bytes()).map_err(|_| KeyError::Backend)
}

/// The SAK wrapped under the KEK with AES Key Wrap (RFC 3394), as the Distributed SAK
/// parameter set carries it: 8 octets longer than the SAK.
pub fn wrap_sak(kek: &Secret, sak: &Secret) -> Result<Vec<u8>, KeyError> {
    let mut out = vec![0u8; sak.len() + 8];
    let n = kek_of(kek)?
        .wrap(sak.as_bytes(), &mut out)
        .map_err(|_| KeyError::Backend)?
        .len();
    out.truncate(n);
    Ok(out)
}

/// Unwraps a distributed SAK; an error if the integrity check of RFC 3394 fails.
pub fn unwrap_sak(kek: &Secret, wrapped: &[u8]) -> Result<Secret, KeyError> {
    if wrapped.len() != 24 && wrapped.len() != 40 {
        return Err(KeyError::KeyLength(wrapped.len().saturating_sub(8)));
    }
    let mut out = vec![0u8; wrapped.len()];
    let n = kek_of(kek)?
        .unwrap(wrapped, &mut out)
        .map_err(|_| KeyError::Unwrap)?
        .len();
    out.truncate(n);
    let s = Secret::new(out.clone());
    out.fill(0);
    s
}

/// The ICV of an MKPDU (§9.4.1): AES-CMAC under the ICK over the frame from its destination
/// address to the last octet before the ICV: `addrs` (DA and SA), then `mkpdu` (EtherType,
/// EAPOL header and parameter sets).
pub fn icv(ick: &Secret, addrs: &[u8; 12], mkpdu: &[u8]) -> Result<[u8; 16], KeyError> {
    let k = cmac_key(ick.as_bytes())?;
    let mut ctx = cmac::Context::with_key(&k);
    ctx.update(addrs).map_err(|_| KeyError::Backend)?;
    ctx.update(mkpdu).map_err(|_| KeyError::Backend)?;
    let tag = ctx.sign().map_err(|_| KeyError::Backend)?;
    let mut out = [0u8; 16];
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Checks an MKPDU's ICV in constant time.
pub fn verify_icv(ick: &Secret, addrs: &[u8; 12], mkpdu: &[u8], icv: &[u8]) -> bool {
    let Ok(k) = cmac_key(ick.as_bytes()) else {
        return false;
    };
    let mut ctx = cmac::Context::with_key(&k);
    ctx.update(addrs).is_ok() && ctx.update(mkpdu).is_ok() && ctx.verify(icv).is_ok()
}

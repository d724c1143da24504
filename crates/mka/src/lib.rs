//! MACsec Key Agreement (IEEE 802.1X-2020 clause 9), sans IO. So far: the key hierarchy
//! ([`keys`]): the KDF, the ICK and KEK from a pre-shared CAK and CKN, the SAK derived as the
//! key server may derive it, its AES Key Wrap under the KEK, and the MKPDU ICV; the MKPDU
//! codec ([`mkpdu`]).

pub mod fuzzing;
pub mod keys;
pub mod mkpdu;
pub mod participant;

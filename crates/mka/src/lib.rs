//! MACsec Key Agreement (IEEE 802.1X-2020 clause 9), sans IO: the key hierarchy ([`keys`]:
//! the KDF, the ICK and KEK from a pre-shared CAK and CKN, SAKs and their AES Key Wrap, the
//! MKPDU ICV), the MKPDU codec ([`mkpdu`]), one participant per CA ([`participant`]:
//! liveness, key server election, SAK distribution and use, XPN, rekeys), and the port's KaY
//! over a keychain of CAs ([`kay`]: which CA's keys the port transmits with, CAK rollover).

pub mod fuzzing;
pub mod kay;
pub mod keys;
pub mod mkpdu;
pub mod participant;

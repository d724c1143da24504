//! MKPDUs (IEEE 802.1X-2020 §11.11): EAPOL (version 3, packet type 5, EAPOL-MKA) carrying the
//! Basic Parameter Set, then Live and Potential Peer Lists, MACsec SAK Use, Distributed SAK,
//! Distributed CAK, XPN, and the ICV Indicator before the 16-octet ICV. Decoding never panics: anything
//! malformed is an error naming what, for the caller to drop the MKPDU and count it. Nothing
//! decoded here may be acted on before `keys::verify_icv` has accepted the ICV.

use thiserror::Error;

/// EtherType of EAPOL.
pub const ETHERTYPE_EAPOL: u16 = 0x888e;
/// The group address MKPDUs go to (the nearest non-TPMR bridge group address).
pub const MKA_GROUP: [u8; 6] = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x03];
pub const EAPOL_VERSION: u8 = 3;
pub const EAPOL_MKA: u8 = 5;
/// MKA version 3 (802.1X-2020).
pub const MKA_VERSION: u8 = 3;
/// Algorithm Agility: AES-CMAC-128/256 as 802.1X-2020 specifies (00-80-C2-01).
pub const ALGORITHM_AGILITY: u32 = 0x0080_c201;
pub const ICV_LEN: usize = 16;

const LIVE_PEERS: u8 = 1;
const POTENTIAL_PEERS: u8 = 2;
const SAK_USE: u8 = 3;
const DISTRIBUTED_SAK: u8 = 4;
const DISTRIBUTED_CAK: u8 = 5;
const XPN: u8 = 8;
const ICV_INDICATOR: u8 = 255;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MkpduError {
    #[error("not EAPOL-MKA (packet type {0})")]
    NotMka(u8),
    #[error("EAPOL body length {0} runs past the frame")]
    BodyLength(usize),
    #[error("shorter than a Basic Parameter Set and an ICV")]
    Short,
    #[error("parameter set type {0}: length {1} runs past the MKPDU")]
    ParameterLength(u8, usize),
    #[error("parameter set type {0} is malformed")]
    Malformed(u8),
    #[error("parameter set type {0} appears twice")]
    Repeated(u8),
    #[error("a CKN of {0} octets (1 to 32)")]
    Ckn(usize),
}

/// A member identifier (96 bits) and the message number it was last seen with.
pub type Mi = [u8; 12];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Basic {
    pub version: u8,
    pub key_server_priority: u8,
    pub key_server: bool,
    pub macsec_desired: bool,
    /// MACsec Capability, 0 to 3 (3: integrity with and without confidentiality offsets).
    pub capability: u8,
    pub sci: [u8; 8],
    pub mi: Mi,
    pub mn: u32,
    pub algorithm_agility: u32,
    pub ckn: Vec<u8>,
}

/// A key identifier: the key server's MI and the key number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ki {
    pub mi: Mi,
    pub kn: u32,
}

/// The MACsec SAK Use parameter set (§11.11.1, Figure 11-10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SakUse {
    pub latest_an: u8,
    pub latest_tx: bool,
    pub latest_rx: bool,
    pub old_an: u8,
    pub old_tx: bool,
    pub old_rx: bool,
    pub plain_tx: bool,
    pub plain_rx: bool,
    pub delay_protect: bool,
    /// The keys and their lowest acceptable PNs (low 32 bits; XPN carries the high ones).
    /// None when the set carries no keys (body length 0).
    pub keys: Option<SakUseKeys>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SakUseKeys {
    pub latest: Ki,
    pub latest_lowest_pn: u32,
    pub old: Ki,
    pub old_lowest_pn: u32,
}

/// The Distributed SAK parameter set (§11.11.1, Figure 11-11).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedSak {
    pub an: u8,
    pub confidentiality_offset: u8,
    pub key_number: u32,
    /// The cipher suite (its 64-bit reference number) when not the default GCM-AES-128.
    pub cipher_suite: Option<u64>,
    /// The SAK, AES-key-wrapped under the KEK (24 or 40 octets).
    pub wrapped: Vec<u8>,
}

/// The Distributed CAK parameter set (§11.11.1, Figure 11-12): a CAK, AES-key-wrapped under
/// the KEK of the CA it travels in, followed by the new CA's CKN. The set does not say where
/// the wrapped key ends: its CAK has the length of the CA's own (the same MKA algorithm), so
/// the participant, which knows that length, splits it (`split`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistributedCak {
    pub body: Vec<u8>,
}

/// The shortest and longest Distributed CAK bodies: a wrapped 128-bit CAK and a 1-octet CKN,
/// a wrapped 256-bit CAK and a 32-octet CKN.
const CAK_BODY: std::ops::RangeInclusive<usize> = 25..=72;

impl DistributedCak {
    pub fn new(wrapped: &[u8], ckn: &[u8]) -> DistributedCak {
        DistributedCak {
            body: [wrapped, ckn].concat(),
        }
    }

    /// The wrapped CAK and the CKN, for a CAK of `cak_len` octets; None if the rest is not a
    /// CKN of 1 to 32 octets.
    pub fn split(&self, cak_len: usize) -> Option<(&[u8], &[u8])> {
        let (wrapped, ckn) = self.body.split_at_checked(cak_len + 8)?;
        (1..=32).contains(&ckn.len()).then_some((wrapped, ckn))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mkpdu {
    pub basic: Option<Basic>,
    pub live: Vec<(Mi, u32)>,
    pub potential: Vec<(Mi, u32)>,
    /// Key Server SSCI (XPN), carried in the Live Peer List's second octet.
    pub key_server_ssci: u8,
    pub sak_use: Option<SakUse>,
    pub distributed_sak: Option<DistributedSak>,
    pub distributed_cak: Option<DistributedCak>,
    /// XPN: the high 32 bits of the latest and old keys' lowest acceptable PNs.
    pub xpn: Option<(u32, u32)>,
    /// Parameter set types not understood, skipped (§11.11.3).
    pub unknown: Vec<u8>,
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The EAPOL-MKA frame body of `frame` (starting after the EtherType): the MKPDU's parameter
/// sets and its ICV, and the octets the ICV covers after the addresses and EtherType.
pub struct Parsed<'a> {
    pub mkpdu: Mkpdu,
    pub icv: &'a [u8],
    /// EAPOL header and parameter sets: what the ICV covers after DA, SA and EtherType.
    pub covered: &'a [u8],
}

/// Decodes an EAPOL frame from its protocol version octet on.
pub fn decode(eapol: &[u8]) -> Result<Parsed<'_>, MkpduError> {
    let [_version, kind, l0, l1, ..] = *eapol else {
        return Err(MkpduError::Short);
    };
    if kind != EAPOL_MKA {
        return Err(MkpduError::NotMka(kind));
    }
    let len = usize::from(u16::from_be_bytes([l0, l1]));
    let body = eapol.get(4..4 + len).ok_or(MkpduError::BodyLength(len))?;
    if body.len() < 32 + ICV_LEN {
        return Err(MkpduError::Short);
    }
    let (sets, icv) = body.split_at(body.len() - ICV_LEN);
    let mut m = Mkpdu::default();
    let mut rest = sets;
    let mut seen = [false; 256];
    let mut first = true;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(MkpduError::Malformed(rest[0]));
        }
        let kind = if first { 0 } else { rest[0] };
        let blen = usize::from(rest[2] & 0x0f) << 8 | usize::from(rest[3]);
        if kind == ICV_INDICATOR {
            // Its body is the ICV, already split off: it must be the last set.
            if blen != ICV_LEN || rest.len() != 4 {
                return Err(MkpduError::Malformed(ICV_INDICATOR));
            }
            break;
        }
        let total = 4 + pad4(blen);
        let Some(set) = rest.get(..total) else {
            return Err(MkpduError::ParameterLength(kind, blen));
        };
        let v = &set[4..4 + blen];
        if seen[usize::from(kind)] {
            return Err(MkpduError::Repeated(kind));
        }
        seen[usize::from(kind)] = true;
        match kind {
            0 => {
                // The Basic Parameter Set: version, priority, flags, then 28 octets and the CKN.
                if blen < 29 {
                    return Err(MkpduError::Malformed(0));
                }
                let ckn = v[28..].to_vec();
                if ckn.is_empty() || ckn.len() > 32 {
                    return Err(MkpduError::Ckn(ckn.len()));
                }
                m.basic = Some(Basic {
                    version: set[0],
                    key_server_priority: set[1],
                    key_server: set[2] & 0x80 != 0,
                    macsec_desired: set[2] & 0x40 != 0,
                    capability: (set[2] >> 4) & 0x03,
                    sci: v[..8].try_into().map_err(|_| MkpduError::Malformed(0))?,
                    mi: v[8..20].try_into().map_err(|_| MkpduError::Malformed(0))?,
                    mn: be32(&v[20..24]),
                    algorithm_agility: be32(&v[24..28]),
                    ckn,
                });
                first = false;
            }
            LIVE_PEERS | POTENTIAL_PEERS => {
                if blen % 16 != 0 {
                    return Err(MkpduError::Malformed(kind));
                }
                let list: Vec<(Mi, u32)> = v
                    .chunks_exact(16)
                    .map(|c| (c[..12].try_into().expect("12 octets"), be32(&c[12..])))
                    .collect();
                if kind == LIVE_PEERS {
                    m.live = list;
                    m.key_server_ssci = set[1];
                } else {
                    m.potential = list;
                }
            }
            SAK_USE => {
                let keys = match blen {
                    0 => None,
                    40 => Some(SakUseKeys {
                        latest: Ki {
                            mi: v[..12].try_into().expect("12 octets"),
                            kn: be32(&v[12..16]),
                        },
                        latest_lowest_pn: be32(&v[16..20]),
                        old: Ki {
                            mi: v[20..32].try_into().expect("12 octets"),
                            kn: be32(&v[32..36]),
                        },
                        old_lowest_pn: be32(&v[36..40]),
                    }),
                    _ => return Err(MkpduError::Malformed(kind)),
                };
                m.sak_use = Some(SakUse {
                    latest_an: set[1] >> 6,
                    latest_tx: set[1] & 0x20 != 0,
                    latest_rx: set[1] & 0x10 != 0,
                    old_an: (set[1] >> 2) & 0x03,
                    old_tx: set[1] & 0x02 != 0,
                    old_rx: set[1] & 0x01 != 0,
                    plain_tx: set[2] & 0x80 != 0,
                    plain_rx: set[2] & 0x40 != 0,
                    delay_protect: set[2] & 0x10 != 0,
                    keys,
                });
            }
            DISTRIBUTED_SAK => {
                let (cipher_suite, wrapped) = match blen {
                    // Plain text: no SAK (body length 0) is not something we distribute or take.
                    28 => (None, &v[4..]),
                    36 | 52 => (
                        Some(u64::from_be_bytes(v[4..12].try_into().expect("8 octets"))),
                        &v[12..],
                    ),
                    _ => return Err(MkpduError::Malformed(kind)),
                };
                m.distributed_sak = Some(DistributedSak {
                    an: set[1] >> 6,
                    confidentiality_offset: (set[1] >> 4) & 0x03,
                    key_number: be32(&v[..4]),
                    cipher_suite,
                    wrapped: wrapped.to_vec(),
                });
            }
            DISTRIBUTED_CAK => {
                if !CAK_BODY.contains(&blen) {
                    return Err(MkpduError::Malformed(kind));
                }
                m.distributed_cak = Some(DistributedCak { body: v.to_vec() });
            }
            XPN => {
                if blen != 8 {
                    return Err(MkpduError::Malformed(kind));
                }
                m.xpn = Some((be32(&v[..4]), be32(&v[4..8])));
            }
            other => m.unknown.push(other),
        }
        rest = &rest[total..];
    }
    if m.basic.is_none() {
        return Err(MkpduError::Malformed(0));
    }
    Ok(Parsed {
        mkpdu: m,
        icv,
        covered: &eapol[..4 + len - ICV_LEN],
    })
}

fn set_header(out: &mut Vec<u8>, kind: u8, second: u8, flags: u8, blen: usize) {
    out.extend_from_slice(&[kind, second, flags | ((blen >> 8) as u8 & 0x0f), blen as u8]);
}

fn pad(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// Encodes `m` as an EAPOL-MKA body (from the EAPOL version octet), with the ICV Indicator,
/// and returns it with room for the ICV at the end, which `icv` computes over DA, SA, the
/// EtherType and everything before it.
pub fn encode(m: &Mkpdu, icv: impl FnOnce(&[u8]) -> [u8; ICV_LEN]) -> Result<Vec<u8>, MkpduError> {
    let b = m.basic.as_ref().ok_or(MkpduError::Malformed(0))?;
    if b.ckn.is_empty() || b.ckn.len() > 32 {
        return Err(MkpduError::Ckn(b.ckn.len()));
    }
    let mut out = vec![EAPOL_VERSION, EAPOL_MKA, 0, 0];
    let flags =
        u8::from(b.key_server) << 7 | u8::from(b.macsec_desired) << 6 | (b.capability & 3) << 4;
    set_header(
        &mut out,
        b.version,
        b.key_server_priority,
        flags,
        28 + b.ckn.len(),
    );
    out.extend_from_slice(&b.sci);
    out.extend_from_slice(&b.mi);
    out.extend_from_slice(&b.mn.to_be_bytes());
    out.extend_from_slice(&b.algorithm_agility.to_be_bytes());
    out.extend_from_slice(&b.ckn);
    pad(&mut out);
    for (kind, list, second) in [
        (LIVE_PEERS, &m.live, m.key_server_ssci),
        (POTENTIAL_PEERS, &m.potential, 0),
    ] {
        // An empty Live Peer List still carries the key server's SSCI, if it has one.
        if !list.is_empty() || second != 0 {
            set_header(&mut out, kind, second, 0, list.len() * 16);
            for (mi, mn) in list {
                out.extend_from_slice(mi);
                out.extend_from_slice(&mn.to_be_bytes());
            }
        }
    }
    if let Some(u) = &m.sak_use {
        let second = (u.latest_an & 3) << 6
            | u8::from(u.latest_tx) << 5
            | u8::from(u.latest_rx) << 4
            | (u.old_an & 3) << 2
            | u8::from(u.old_tx) << 1
            | u8::from(u.old_rx);
        let flags =
            u8::from(u.plain_tx) << 7 | u8::from(u.plain_rx) << 6 | u8::from(u.delay_protect) << 4;
        let blen = if u.keys.is_some() { 40 } else { 0 };
        set_header(&mut out, SAK_USE, second, flags, blen);
        if let Some(k) = &u.keys {
            out.extend_from_slice(&k.latest.mi);
            out.extend_from_slice(&k.latest.kn.to_be_bytes());
            out.extend_from_slice(&k.latest_lowest_pn.to_be_bytes());
            out.extend_from_slice(&k.old.mi);
            out.extend_from_slice(&k.old.kn.to_be_bytes());
            out.extend_from_slice(&k.old_lowest_pn.to_be_bytes());
        }
    }
    if let Some(d) = &m.distributed_sak {
        if d.wrapped.len() != 24 && d.wrapped.len() != 40 {
            return Err(MkpduError::Malformed(DISTRIBUTED_SAK));
        }
        let blen = 4 + d.cipher_suite.map_or(0, |_| 8) + d.wrapped.len();
        if d.cipher_suite.is_none() && d.wrapped.len() != 24 {
            return Err(MkpduError::Malformed(DISTRIBUTED_SAK));
        }
        let second = (d.an & 3) << 6 | (d.confidentiality_offset & 3) << 4;
        set_header(&mut out, DISTRIBUTED_SAK, second, 0, blen);
        out.extend_from_slice(&d.key_number.to_be_bytes());
        if let Some(cs) = d.cipher_suite {
            out.extend_from_slice(&cs.to_be_bytes());
        }
        out.extend_from_slice(&d.wrapped);
    }
    if let Some(d) = &m.distributed_cak {
        if !CAK_BODY.contains(&d.body.len()) {
            return Err(MkpduError::Malformed(DISTRIBUTED_CAK));
        }
        set_header(&mut out, DISTRIBUTED_CAK, 0, 0, d.body.len());
        out.extend_from_slice(&d.body);
        pad(&mut out);
    }
    if let Some((latest, old)) = m.xpn {
        set_header(&mut out, XPN, 0, 0, 8);
        out.extend_from_slice(&latest.to_be_bytes());
        out.extend_from_slice(&old.to_be_bytes());
    }
    set_header(&mut out, ICV_INDICATOR, 0, 0, ICV_LEN);
    let body_len = out.len() - 4 + ICV_LEN;
    out[2..4].copy_from_slice(&(body_len as u16).to_be_bytes());
    let tag = icv(&out);
    out.extend_from_slice(&tag);
    Ok(out)
}

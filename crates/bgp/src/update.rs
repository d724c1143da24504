//! UPDATE messages (RFC 4271 §4.3) with MP-BGP (RFC 4760), 4-octet AS paths (RFC 6793),
//! communities (RFC 1997) and large communities (RFC 8092), decoded with the revised error
//! handling of RFC 7606: a malformed attribute leads to the least drastic outcome the RFC
//! allows for it (attribute discard, treat-as-withdraw, or a session reset), never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::wire::{code, Family, Notification};

/// A prefix as BGP carries it: the project's one prefix type (host bits zero; trailing bits
/// of an NLRI are irrelevant, RFC 4271 §4.3, and are cleared when it is read).
pub type Nlri = interlink_table::Prefix;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Set(Vec<u32>),
    Sequence(Vec<u32>),
}

/// The path attributes of a route, shared by every prefix that carries them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Attrs {
    pub origin: Option<Origin>,
    pub as_path: Vec<Segment>,
    pub next_hop: Option<IpAddr>,
    /// An IPv6 link-local next hop (the second of MP_REACH's two, RFC 2545).
    pub link_local: Option<Ipv6Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    /// Optional transitive attributes we do not know, passed on with the Partial bit set:
    /// (flags, type, value).
    pub unknown: Vec<(u8, u8, Vec<u8>)>,
}

impl Attrs {
    /// AS_PATH length for the decision process (RFC 4271 §9.1.2.2: a set counts as one).
    pub fn path_len(&self) -> usize {
        self.as_path
            .iter()
            .map(|s| match s {
                Segment::Sequence(v) => v.len(),
                Segment::Set(_) => 1,
            })
            .sum()
    }

    /// The neighbouring AS: the first of the path (RFC 4271 §9.1.2.2 c).
    pub fn neighbor_as(&self) -> Option<u32> {
        match self.as_path.first() {
            Some(Segment::Sequence(v)) => v.first().copied(),
            _ => None,
        }
    }
}

/// A decoded UPDATE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Nlri>,
    /// Announced prefixes; `attrs` applies to all of them.
    pub announced: Vec<Nlri>,
    pub attrs: Option<Arc<Attrs>>,
    /// End-of-RIB markers (RFC 4724 §2) for these families.
    pub end_of_rib: Vec<Family>,
    /// Attributes discarded under RFC 7606, for the log: their type codes.
    pub discarded: Vec<u8>,
}

/// What an UPDATE comes to under RFC 7606.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Update(Update),
    /// Treat-as-withdraw (RFC 7606 §2): every prefix the UPDATE carried is withdrawn; why.
    TreatAsWithdraw(Vec<Nlri>, Notification),
    /// Reset the session with this NOTIFICATION.
    Reset(Notification),
}

const F_OPTIONAL: u8 = 0x80;
const F_TRANSITIVE: u8 = 0x40;
const F_PARTIAL: u8 = 0x20;
const F_EXTENDED: u8 = 0x10;

const ORIGIN: u8 = 1;
const AS_PATH: u8 = 2;
const NEXT_HOP: u8 = 3;
const MED: u8 = 4;
const LOCAL_PREF: u8 = 5;
const ATOMIC_AGGREGATE: u8 = 6;
const AGGREGATOR: u8 = 7;
const COMMUNITIES: u8 = 8;
const MP_REACH: u8 = 14;
const MP_UNREACH: u8 = 15;
const AS4_PATH: u8 = 17;
const AS4_AGGREGATOR: u8 = 18;
const LARGE_COMMUNITIES: u8 = 32;

fn update_error(subcode: u8, data: &[u8]) -> Notification {
    Notification::new(code::UPDATE, subcode, data)
}

/// UPDATE Message Error subcodes (RFC 4271 §6.3).
mod sub {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const MISSING_WELL_KNOWN: u8 = 3;
    pub const ATTRIBUTE_FLAGS: u8 = 4;
    pub const ATTRIBUTE_LENGTH: u8 = 5;
    pub const INVALID_ORIGIN: u8 = 6;
    pub const INVALID_NEXT_HOP: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE: u8 = 9;
    pub const INVALID_NETWORK: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// Reads prefixes of `family` in the RFC 4271 §4.3 encoding (length in bits, then the
/// significant octets). An error is a malformed NLRI, which RFC 7606 §5.3 answers with a
/// session reset (or AFI/SAFI disable).
fn read_nlri(mut b: &[u8], v6: bool, out: &mut Vec<Nlri>) -> Result<(), ()> {
    let max = if v6 { 128 } else { 32 };
    while let Some((&len, rest)) = b.split_first() {
        if len > max {
            return Err(());
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n).ok_or(())?;
        let addr = if v6 {
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(bytes);
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(bytes);
            IpAddr::V4(Ipv4Addr::from(a))
        };
        out.push(Nlri::new(addr, len).map_err(|_| ())?);
        b = &rest[n..];
    }
    Ok(())
}

fn write_nlri(out: &mut Vec<u8>, p: &Nlri) {
    out.push(p.prefix_len());
    let n = usize::from(p.prefix_len()).div_ceil(8);
    match p {
        Nlri::V4(a, _) => out.extend_from_slice(&a[..n]),
        Nlri::V6(a, _) => out.extend_from_slice(&a[..n]),
    }
}

fn read_path(v: &[u8], four: bool) -> Option<Vec<Segment>> {
    let w = if four { 4 } else { 2 };
    let mut segs = Vec::new();
    let mut b = v;
    while !b.is_empty() {
        let (kind, count) = (*b.first()?, usize::from(*b.get(1)?));
        let body = b.get(2..2 + count * w)?;
        if count == 0 {
            return None;
        }
        let asns: Vec<u32> = body
            .chunks_exact(w)
            .map(|c| {
                if four {
                    u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                } else {
                    u32::from(u16::from_be_bytes([c[0], c[1]]))
                }
            })
            .collect();
        segs.push(match kind {
            1 => Segment::Set(asns),
            2 => Segment::Sequence(asns),
            _ => return None,
        });
        b = &b[2 + count * w..];
    }
    Some(segs)
}

/// Merges AS4_PATH into a 2-octet AS_PATH (RFC 6793 §4.2.3): the AS4_PATH replaces the
/// rightmost ASes of AS_PATH when it is not longer.
fn merge_as4(as_path: Vec<Segment>, as4: Vec<Segment>) -> Vec<Segment> {
    let count = |p: &[Segment]| -> usize {
        p.iter()
            .map(|s| match s {
                Segment::Sequence(v) => v.len(),
                Segment::Set(_) => 1,
            })
            .sum()
    };
    let (n, n4) = (count(&as_path), count(&as4));
    if n4 > n {
        return as_path;
    }
    // Keep the first n - n4 ASes of AS_PATH (as a leading sequence), then AS4_PATH.
    let mut keep = n - n4;
    let mut merged = Vec::new();
    for s in as_path {
        if keep == 0 {
            break;
        }
        match s {
            Segment::Sequence(v) => {
                let take = v.len().min(keep);
                merged.push(Segment::Sequence(v[..take].to_vec()));
                keep -= take;
            }
            set @ Segment::Set(_) => {
                merged.push(set);
                keep -= 1;
            }
        }
    }
    merged.extend(as4);
    merged
}

/// How UPDATEs are read and written on one session: what the OPEN exchange agreed and who
/// the peer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Codec {
    /// AS numbers in AS_PATH and AGGREGATOR are 4 octets (RFC 6793, negotiated).
    pub four_octet_as: bool,
    /// The peer is external: LOCAL_PREF from it is ignored (RFC 7606 §7.5).
    pub ebgp: bool,
    /// The longest message: 4096 octets, or 65535 with extended messages (RFC 8654).
    pub max_len: usize,
}

impl Codec {
    /// The codec of a session as negotiated.
    pub fn for_session(n: &crate::fsm::Negotiated, ebgp: bool) -> Codec {
        Codec {
            four_octet_as: n.four_octet_as,
            ebgp,
            max_len: if n.extended_message {
                crate::wire::MAX_EXTENDED_LEN
            } else {
                crate::wire::MAX_LEN
            },
        }
    }
}

/// Decodes an UPDATE body as `codec` reads it.
pub fn decode(body: &[u8], codec: &Codec) -> Decoded {
    let (four_octet, ebgp) = (codec.four_octet_as, codec.ebgp);
    let reset = |s, d: &[u8]| Decoded::Reset(update_error(s, d));
    // Withdrawn routes, path attributes, NLRI: lengths must add up (RFC 7606 §5.1 is about
    // attribute lengths; these framing lengths still reset).
    let Some(wlen) = body
        .get(..2)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
    };
    let Some(withdrawn_b) = body.get(2..2 + wlen) else {
        return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
    };
    let Some(alen) = body
        .get(2 + wlen..4 + wlen)
        .map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))
    else {
        return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
    };
    let Some(attrs_b) = body.get(4 + wlen..4 + wlen + alen) else {
        return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
    };
    let nlri_b = &body[4 + wlen + alen..];
    let mut u = Update::default();
    if read_nlri(withdrawn_b, false, &mut u.withdrawn).is_err()
        || read_nlri(nlri_b, false, &mut u.announced).is_err()
    {
        return reset(sub::INVALID_NETWORK, &[]);
    }
    if attrs_b.is_empty() {
        if u.withdrawn.is_empty() && u.announced.is_empty() {
            u.end_of_rib.push(Family::IPV4_UNICAST);
        }
        if !u.announced.is_empty() {
            // NLRI without any attribute: the mandatory ones are missing.
            return Decoded::TreatAsWithdraw(
                u.announced,
                update_error(sub::MISSING_WELL_KNOWN, &[ORIGIN]),
            );
        }
        return Decoded::Update(u);
    }

    let mut a = Attrs::default();
    let mut seen = [false; 256];
    let mut as4_path = None;
    let mut mp_reach: Option<(Family, Vec<Nlri>)> = None;
    let mut mp_unreach_seen = false;
    // The least drastic outcome so far: treat-as-withdraw, with the reason.
    let mut withdraw: Option<Notification> = None;
    let mut b = attrs_b;
    while !b.is_empty() {
        // Attribute header: flags, type, length (one or two octets).
        let (flags, kind) = match b {
            [f, t, ..] => (*f, *t),
            _ => return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]),
        };
        let (hlen, len) = if flags & F_EXTENDED != 0 {
            match b.get(2..4) {
                Some(l) => (4, usize::from(u16::from_be_bytes([l[0], l[1]]))),
                None => return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]),
            }
        } else {
            match b.get(2) {
                Some(l) => (3, usize::from(*l)),
                None => return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]),
            }
        };
        // RFC 7606 §4: an attribute running past the list makes the list unparseable.
        let Some(v) = b.get(hlen..hlen + len) else {
            return treat_or_reset(&u, sub::MALFORMED_ATTRIBUTE_LIST);
        };
        let whole = &b[..hlen + len];
        b = &b[hlen + len..];
        // RFC 7606 §3 g: a repeated attribute (but MP_REACH/MP_UNREACH) is discarded.
        if seen[usize::from(kind)] {
            if kind == MP_REACH || kind == MP_UNREACH {
                return reset(sub::MALFORMED_ATTRIBUTE_LIST, &[]);
            }
            u.discarded.push(kind);
            continue;
        }
        seen[usize::from(kind)] = true;
        let well_known = matches!(
            kind,
            ORIGIN | AS_PATH | NEXT_HOP | LOCAL_PREF | ATOMIC_AGGREGATE
        );
        let known = well_known
            || matches!(
                kind,
                MED | AGGREGATOR
                    | COMMUNITIES
                    | MP_REACH
                    | MP_UNREACH
                    | AS4_PATH
                    | AS4_AGGREGATOR
                    | LARGE_COMMUNITIES
            );
        // Flags of known attributes (RFC 7606 §3 c: a flags error is a length-style error:
        // treat-as-withdraw).
        if known {
            let want = if well_known {
                F_TRANSITIVE
            } else if matches!(kind, MED | MP_REACH | MP_UNREACH) {
                F_OPTIONAL
            } else {
                F_OPTIONAL | F_TRANSITIVE
            };
            if flags & (F_OPTIONAL | F_TRANSITIVE) != want {
                withdraw.get_or_insert(update_error(sub::ATTRIBUTE_FLAGS, whole));
                continue;
            }
        }
        let bad_len = |w: &mut Option<Notification>| {
            w.get_or_insert(update_error(sub::ATTRIBUTE_LENGTH, whole));
        };
        match kind {
            ORIGIN => match v {
                [0] => a.origin = Some(Origin::Igp),
                [1] => a.origin = Some(Origin::Egp),
                [2] => a.origin = Some(Origin::Incomplete),
                [_] => {
                    withdraw.get_or_insert(update_error(sub::INVALID_ORIGIN, whole));
                }
                _ => bad_len(&mut withdraw),
            },
            AS_PATH => match read_path(v, four_octet) {
                Some(p) => a.as_path = p,
                None => {
                    withdraw.get_or_insert(update_error(sub::MALFORMED_AS_PATH, &[]));
                }
            },
            NEXT_HOP => match v {
                [a0, a1, a2, a3] => {
                    let nh = Ipv4Addr::new(*a0, *a1, *a2, *a3);
                    // RFC 7606 §7.3: a syntactically wrong next hop is treat-as-withdraw.
                    if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                        withdraw.get_or_insert(update_error(sub::INVALID_NEXT_HOP, whole));
                    } else {
                        a.next_hop = Some(IpAddr::V4(nh));
                    }
                }
                _ => bad_len(&mut withdraw),
            },
            MED => match v {
                [a0, a1, a2, a3] => a.med = Some(u32::from_be_bytes([*a0, *a1, *a2, *a3])),
                _ => bad_len(&mut withdraw),
            },
            LOCAL_PREF => match v {
                // From an external peer, LOCAL_PREF is discarded (RFC 7606 §7.5).
                [..] if ebgp => u.discarded.push(kind),
                [a0, a1, a2, a3] => a.local_pref = Some(u32::from_be_bytes([*a0, *a1, *a2, *a3])),
                _ => bad_len(&mut withdraw),
            },
            // RFC 7606 §7.6, 7.7, 7.8, 7.14: these are discarded when malformed.
            ATOMIC_AGGREGATE => {
                if v.is_empty() {
                    a.atomic_aggregate = true;
                } else {
                    u.discarded.push(kind);
                }
            }
            AGGREGATOR => match (v.len(), four_octet) {
                (8, true) => {
                    a.aggregator = Some((
                        u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                        Ipv4Addr::new(v[4], v[5], v[6], v[7]),
                    ))
                }
                (6, false) => {
                    a.aggregator = Some((
                        u32::from(u16::from_be_bytes([v[0], v[1]])),
                        Ipv4Addr::new(v[2], v[3], v[4], v[5]),
                    ))
                }
                _ => u.discarded.push(kind),
            },
            AS4_AGGREGATOR if four_octet => u.discarded.push(kind),
            AS4_AGGREGATOR => {
                if v.len() == 8 {
                    a.aggregator = Some((
                        u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
                        Ipv4Addr::new(v[4], v[5], v[6], v[7]),
                    ));
                } else {
                    u.discarded.push(kind);
                }
            }
            COMMUNITIES => {
                if v.is_empty() || v.len() % 4 != 0 {
                    withdraw.get_or_insert(update_error(sub::OPTIONAL_ATTRIBUTE, whole));
                } else {
                    a.communities = v
                        .chunks_exact(4)
                        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                        .collect();
                }
            }
            LARGE_COMMUNITIES => {
                if v.is_empty() || v.len() % 12 != 0 {
                    withdraw.get_or_insert(update_error(sub::OPTIONAL_ATTRIBUTE, whole));
                } else {
                    a.large_communities = v
                        .chunks_exact(12)
                        .map(|c| {
                            let w =
                                |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                            [w(0), w(4), w(8)]
                        })
                        .collect();
                }
            }
            // AS4_PATH between 4-octet speakers is discarded (RFC 6793 §4.1); malformed, too
            // (RFC 7606 §7.10... it is treated as in RFC 6793 §6: discard).
            AS4_PATH if four_octet => u.discarded.push(kind),
            AS4_PATH => match read_path(v, true) {
                Some(p) => as4_path = Some(p),
                None => u.discarded.push(kind),
            },
            MP_REACH => match parse_mp_reach(v) {
                Ok((family, nh, ll, nlri)) => {
                    a.next_hop = nh.or(a.next_hop);
                    a.link_local = ll;
                    mp_reach = Some((family, nlri));
                }
                // RFC 7606 §5.3/§7.11: a malformed MP_REACH resets (no AFI/SAFI disable).
                Err(()) => return reset(sub::OPTIONAL_ATTRIBUTE, whole),
            },
            MP_UNREACH => {
                mp_unreach_seen = true;
                let (Some(f), rest) = (v.get(..3), v.get(3..).unwrap_or(&[])) else {
                    return reset(sub::OPTIONAL_ATTRIBUTE, whole);
                };
                let family = Family {
                    afi: u16::from_be_bytes([f[0], f[1]]),
                    safi: f[2],
                };
                if rest.is_empty() {
                    u.end_of_rib.push(family);
                } else if family.safi == 1
                    && (family.afi == 1 || family.afi == 2)
                    && read_nlri(rest, family.afi == 2, &mut u.withdrawn).is_err()
                {
                    return reset(sub::OPTIONAL_ATTRIBUTE, whole);
                }
            }
            _ => {
                // Unknown: optional transitive ones are passed on marked Partial; the rest
                // are dropped (RFC 4271 §5); unknown well-known (not optional) is an error.
                if flags & F_OPTIONAL == 0 {
                    withdraw.get_or_insert(update_error(2, whole));
                } else if flags & F_TRANSITIVE != 0 {
                    a.unknown.push((flags | F_PARTIAL, kind, v.to_vec()));
                }
            }
        }
    }
    if let Some(as4) = as4_path {
        a.as_path = merge_as4(std::mem::take(&mut a.as_path), as4);
    }
    let mut announced = std::mem::take(&mut u.announced);
    if let Some((family, nlri)) = mp_reach {
        if family.safi == 1 && (family.afi == 1 || family.afi == 2) {
            announced.extend(nlri);
        }
    }
    if !announced.is_empty() {
        // RFC 7606 §3 d: missing mandatory attributes are treat-as-withdraw.
        let missing = if a.origin.is_none() && !seen[usize::from(ORIGIN)] {
            Some(ORIGIN)
        } else if !seen[usize::from(AS_PATH)] {
            Some(AS_PATH)
        } else if a.next_hop.is_none() && !seen[usize::from(NEXT_HOP)] {
            Some(NEXT_HOP)
        } else {
            None
        };
        if let Some(m) = missing {
            withdraw.get_or_insert(update_error(sub::MISSING_WELL_KNOWN, &[m]));
        }
    }
    if let Some(n) = withdraw {
        let mut all = u.withdrawn;
        all.extend(announced);
        return Decoded::TreatAsWithdraw(all, n);
    }
    if announced.is_empty() && u.withdrawn.is_empty() && !mp_unreach_seen && seen.iter().any(|&s| s)
    {
        // Attributes with nothing to apply them to: nothing to do.
        return Decoded::Update(u);
    }
    u.announced = announced;
    if !u.announced.is_empty() {
        u.attrs = Some(Arc::new(a));
    }
    Decoded::Update(u)
}

/// An attribute list that cannot be parsed to its end (RFC 7606 §4): the IPv4 NLRI are known
/// (they lie outside the list) and are withdrawn; with none, MP_REACH may have been lost, and
/// the session resets.
fn treat_or_reset(u: &Update, subcode: u8) -> Decoded {
    let mut all = u.withdrawn.clone();
    all.extend(u.announced.iter().copied());
    if all.is_empty() {
        Decoded::Reset(update_error(subcode, &[]))
    } else {
        Decoded::TreatAsWithdraw(all, update_error(subcode, &[]))
    }
}

/// What MP_REACH_NLRI carries: family, next hop, link-local next hop, NLRI.
type MpReach = (Family, Option<IpAddr>, Option<Ipv6Addr>, Vec<Nlri>);

/// MP_REACH_NLRI: family, next hop(s), reserved octet, NLRI.
fn parse_mp_reach(v: &[u8]) -> Result<MpReach, ()> {
    let f = v.get(..4).ok_or(())?;
    let family = Family {
        afi: u16::from_be_bytes([f[0], f[1]]),
        safi: f[2],
    };
    let nh_len = usize::from(f[3]);
    let nh = v.get(4..4 + nh_len).ok_or(())?;
    let rest = v.get(5 + nh_len..).ok_or(())?;
    let mut nlri = Vec::new();
    if family.safi != 1 || !(family.afi == 1 || family.afi == 2) {
        // A family we did not negotiate: ignored (RFC 4760 §7).
        return Ok((family, None, None, nlri));
    }
    let (next_hop, link_local) = match (family.afi, nh.len()) {
        (1, 4) => (
            Some(IpAddr::from(<[u8; 4]>::try_from(nh).map_err(|_| ())?)),
            None,
        ),
        (2, 16) => (
            Some(IpAddr::from(<[u8; 16]>::try_from(nh).map_err(|_| ())?)),
            None,
        ),
        (2, 32) => (
            Some(IpAddr::from(
                <[u8; 16]>::try_from(&nh[..16]).map_err(|_| ())?,
            )),
            Some(Ipv6Addr::from(
                <[u8; 16]>::try_from(&nh[16..]).map_err(|_| ())?,
            )),
        ),
        _ => return Err(()),
    };
    read_nlri(rest, family.afi == 2, &mut nlri)?;
    Ok((family, next_hop, link_local, nlri))
}

/// Encodes UPDATE bodies announcing `prefixes` (all of one family) with `attrs`, as many
/// per message as fit in the codec's longest message (UPDATE packing), appended to `out` as
/// whole messages.
pub fn encode_announce(out: &mut Vec<u8>, prefixes: &[Nlri], attrs: &Attrs, codec: &Codec) {
    let (four_octet, max) = (codec.four_octet_as, codec.max_len);
    let v6 = prefixes.first().is_some_and(|p| p.is_ipv6());
    let mut common = Vec::new();
    let attr = |out: &mut Vec<u8>, flags: u8, kind: u8, v: &[u8]| {
        if v.len() > 255 {
            out.extend_from_slice(&[flags | F_EXTENDED, kind]);
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        } else {
            out.extend_from_slice(&[flags, kind, v.len() as u8]);
        }
        out.extend_from_slice(v);
    };
    attr(
        &mut common,
        F_TRANSITIVE,
        ORIGIN,
        &[attrs.origin.unwrap_or(Origin::Igp) as u8],
    );
    let mut path = Vec::new();
    for s in &attrs.as_path {
        let (t, v) = match s {
            Segment::Set(v) => (1, v),
            Segment::Sequence(v) => (2, v),
        };
        for chunk in v.chunks(255) {
            path.extend_from_slice(&[t, chunk.len() as u8]);
            for asn in chunk {
                if four_octet {
                    path.extend_from_slice(&asn.to_be_bytes());
                } else {
                    let a = u16::try_from(*asn).unwrap_or(crate::wire::AS_TRANS);
                    path.extend_from_slice(&a.to_be_bytes());
                }
            }
        }
    }
    attr(&mut common, F_TRANSITIVE, AS_PATH, &path);
    if let (false, Some(IpAddr::V4(nh))) = (v6, attrs.next_hop) {
        attr(&mut common, F_TRANSITIVE, NEXT_HOP, &nh.octets());
    }
    if let Some(m) = attrs.med {
        attr(&mut common, F_OPTIONAL, MED, &m.to_be_bytes());
    }
    if let Some(lp) = attrs.local_pref {
        attr(&mut common, F_TRANSITIVE, LOCAL_PREF, &lp.to_be_bytes());
    }
    if !attrs.communities.is_empty() {
        let v: Vec<u8> = attrs
            .communities
            .iter()
            .flat_map(|c| c.to_be_bytes())
            .collect();
        attr(&mut common, F_OPTIONAL | F_TRANSITIVE, COMMUNITIES, &v);
    }
    if !attrs.large_communities.is_empty() {
        let v: Vec<u8> = attrs
            .large_communities
            .iter()
            .flat_map(|c| c.iter().flat_map(|w| w.to_be_bytes()))
            .collect();
        attr(
            &mut common,
            F_OPTIONAL | F_TRANSITIVE,
            LARGE_COMMUNITIES,
            &v,
        );
    }
    for (flags, kind, v) in &attrs.unknown {
        attr(&mut common, *flags, *kind, v);
    }
    let mut rest = prefixes;
    while !rest.is_empty() {
        let start = out.len();
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&[0, 0, crate::wire::UPDATE]);
        out.extend_from_slice(&[0, 0]); // no withdrawn routes
        let alen_at = out.len();
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&common);
        let room = |out: &Vec<u8>| max - (out.len() - start);
        if v6 {
            // MP_REACH_NLRI with as many prefixes as fit, extended length.
            let nh = match attrs.next_hop {
                Some(IpAddr::V6(a)) => a.octets(),
                _ => [0; 16],
            };
            let hdr_at = out.len();
            out.extend_from_slice(&[F_OPTIONAL | F_EXTENDED, MP_REACH, 0, 0, 0, 2, 1]);
            match attrs.link_local {
                Some(ll) => {
                    out.push(32);
                    out.extend_from_slice(&nh);
                    out.extend_from_slice(&ll.octets());
                }
                None => {
                    out.push(16);
                    out.extend_from_slice(&nh);
                }
            }
            out.push(0);
            let mut n = 0;
            for p in rest {
                if room(out) < 17 {
                    break;
                }
                write_nlri(out, p);
                n += 1;
            }
            let vlen = (out.len() - hdr_at - 4) as u16;
            out[hdr_at + 2..hdr_at + 4].copy_from_slice(&vlen.to_be_bytes());
            rest = &rest[n..];
            let alen = (out.len() - alen_at - 2) as u16;
            out[alen_at..alen_at + 2].copy_from_slice(&alen.to_be_bytes());
        } else {
            let alen = (out.len() - alen_at - 2) as u16;
            out[alen_at..alen_at + 2].copy_from_slice(&alen.to_be_bytes());
            let mut n = 0;
            for p in rest {
                if room(out) < 5 {
                    break;
                }
                write_nlri(out, p);
                n += 1;
            }
            rest = &rest[n..];
        }
        let len = (out.len() - start) as u16;
        out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
    }
}

/// Encodes UPDATEs withdrawing `prefixes` (one family), packed.
pub fn encode_withdraw(out: &mut Vec<u8>, prefixes: &[Nlri], codec: &Codec) {
    let max = codec.max_len;
    let v6 = prefixes.first().is_some_and(|p| p.is_ipv6());
    for chunk in prefixes.chunks(((max - 40) / 17).max(1)) {
        let start = out.len();
        out.extend_from_slice(&[0xff; 16]);
        out.extend_from_slice(&[0, 0, crate::wire::UPDATE]);
        if v6 {
            out.extend_from_slice(&[0, 0]);
            let alen_at = out.len();
            out.extend_from_slice(&[0, 0, F_OPTIONAL | F_EXTENDED, MP_UNREACH, 0, 0, 0, 2, 1]);
            for p in chunk {
                write_nlri(out, p);
            }
            let vlen = (out.len() - alen_at - 6) as u16;
            out[alen_at + 4..alen_at + 6].copy_from_slice(&vlen.to_be_bytes());
            let alen = (out.len() - alen_at - 2) as u16;
            out[alen_at..alen_at + 2].copy_from_slice(&alen.to_be_bytes());
        } else {
            let wlen_at = out.len();
            out.extend_from_slice(&[0, 0]);
            for p in chunk {
                write_nlri(out, p);
            }
            let wlen = (out.len() - wlen_at - 2) as u16;
            out[wlen_at..wlen_at + 2].copy_from_slice(&wlen.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        let len = (out.len() - start) as u16;
        out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
    }
}

/// The End-of-RIB marker of a family (RFC 4724 §2).
pub fn encode_end_of_rib(out: &mut Vec<u8>, family: Family) {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, crate::wire::UPDATE]);
    if family == Family::IPV4_UNICAST {
        out.extend_from_slice(&[0, 0, 0, 0]);
    } else {
        out.extend_from_slice(&[0, 0, 0, 6, F_OPTIONAL, MP_UNREACH, 3]);
        out.extend_from_slice(&family.afi.to_be_bytes());
        out.push(family.safi);
    }
    let len = (out.len() - start) as u16;
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

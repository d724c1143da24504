//! Activation keys: one copy-pasteable string with which one site offers a link and the other
//! accepts it, as a cloud interconnect is onboarded (one side creates the connection and gets
//! a key, the other accepts it, the connection turns available).
//!
//! A key carries what the accepting site needs and cannot guess: both underlay endpoints, the
//! link's two tunnel addresses, both ASNs, the offering site's networks (the accepting side's
//! import filter), the cipher suite, the link's name, the time the offer expires, and a
//! one-time secret of 32 random octets. Both sides derive the link's MKA CAK and CKN from the
//! secret (HKDF-SHA256, RFC 5869), so the CAK itself is never printed or sent. A check value
//! (HMAC-SHA256 under a third key derived from the secret, truncated to 16 octets) covers the
//! rest: a key altered or damaged anywhere is refused, and whoever changes a field cannot
//! make a check value that matches without the secret. The key is a bearer credential, as
//! the clouds' are: whoever holds it can accept the link, once, until it expires. Once the
//! link is up, its derived CAK is replaced by one only the two gateways know (`replace_cak`,
//! MKA CAK distribution), so a copy of the key kept somewhere no longer opens the link.
//!
//! Encoding: `ilk1-` and the key's octets in base64url without padding (RFC 4648 §5).
//! Octets: version (1) | suite | expires (u64, Unix seconds) | secret (32) | offering ASN
//! (u32, 0: no BGP) | accepting ASN (u32) | tunnel prefix length | offering tunnel address (4)
//! | accepting tunnel address (4) | offering endpoint | accepting endpoint | name (length and
//! octets) | networks (count, then family, length and address each) | [version 2: IPv6
//! tunnel prefix length | offering IPv6 tunnel address (16) | accepting one (16)] | check
//! value (16). An endpoint is the family (4 or 6), the address and the port (u16). Integers
//! are big endian. A key without an IPv6 tunnel is of version 1, so that an interlink that
//! knows only version 1 still takes it.
//!
//! Sans IO but for the random secret: the caller writes the files and reloads.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ring::{hkdf, hmac};

/// What every activation key starts with.
pub const PREFIX: &str = "ilk1-";
/// The most networks an offer carries.
pub const MAX_NETWORKS: usize = 32;
/// The longest link name.
pub const MAX_NAME: usize = 32;
/// The longest key accepted, in characters (longer is refused before it is decoded).
pub const MAX_KEY_LEN: usize = 2048;
/// Keys without an IPv6 tunnel, and with one.
const VERSION: u8 = 1;
const VERSION_IPV6: u8 = 2;
const CHECK_LEN: usize = 16;
const SALT: &[u8] = b"interlink pairing v1";

/// The cipher suites, by the octet a key carries.
pub const SUITES: [&str; 4] = [
    "gcm-aes-128",
    "gcm-aes-256",
    "gcm-aes-xpn-128",
    "gcm-aes-xpn-256",
];

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not an interlink activation key (it starts with {PREFIX})")]
    NotAKey,
    #[error("the key is malformed: {0} (copy it whole, as `interlinkctl link offer` printed it)")]
    Malformed(&'static str),
    #[error("the key is of version {0}, which this interlink does not know")]
    UnknownVersion(u8),
    #[error(
        "the key was altered or damaged: its check value does not match (copy it again from the offering site)"
    )]
    Altered,
    #[error("the key expired at {at} (Unix time; now {now}): ask the offering site for a new one")]
    Expired { at: u64, now: u64 },
}

/// The one-time secret; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(32 octets, redacted)")
    }
}

impl Secret {
    /// 32 octets from the operating system's random number generator.
    pub fn random() -> Result<Secret, ring::error::Unspecified> {
        use ring::rand::SecureRandom;
        let mut s = [0u8; 32];
        ring::rand::SystemRandom::new().fill(&mut s)?;
        Ok(Secret(s))
    }

    /// For tests and vectors.
    pub fn from_bytes(b: [u8; 32]) -> Secret {
        Secret(b)
    }

    fn derive<const N: usize>(&self, info: &[u8]) -> [u8; N] {
        struct Len(usize);
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                self.0
            }
        }
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&self.0);
        let mut out = [0u8; N];
        // N is 16 or 32, well within HKDF-SHA256's 8160 octets: expand cannot fail.
        if let Ok(okm) = prk.expand(&[info], Len(N)) {
            let _ = okm.fill(&mut out);
        }
        out
    }

    /// A link's tunnel subnet, a /30 of 169.254.0.0/16 (as the clouds use for BGP peering)
    /// drawn from the secret; `attempt` draws another where that one is taken. Never the
    /// first /30 nor 169.254.169.252/30 (beside the clouds' metadata address).
    pub fn tunnel(&self, attempt: u32) -> (Ipv4Addr, Ipv4Addr) {
        let d: [u8; 2] = self.derive(format!("tunnel {attempt}").as_bytes());
        let mut block = u16::from_be_bytes(d) % (1 << 14);
        if block == 0 || block == (169 << 6 | 63) {
            block = 1;
        }
        let base = u32::from_be_bytes([169, 254, 0, 0]) | u32::from(block) << 2;
        (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
    }

    /// A link's IPv6 tunnel subnet, a /125 of a unique local /64 (RFC 4193: fd00::/8 and a
    /// 40-bit global ID, here drawn from the secret, subnet 0), as AWS gives IPv6 BGP peering
    /// a /125; `attempt` draws another. The two ends are its first two addresses.
    pub fn tunnel6(&self, attempt: u32) -> (Ipv6Addr, Ipv6Addr) {
        let id: [u8; 5] = self.derive(format!("tunnel6 {attempt}").as_bytes());
        let mut o = [0u8; 16];
        o[0] = 0xfd;
        o[1..6].copy_from_slice(&id);
        o[15] = 1;
        let a = Ipv6Addr::from(o);
        o[15] = 2;
        (a, Ipv6Addr::from(o))
    }

    fn check_key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, &self.derive::<32>(b"key check"))
    }
}

/// A link offered by one site to another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// The link's name on both sides.
    pub name: String,
    /// An index into [`SUITES`].
    pub suite: u8,
    /// Unix seconds after which the key is refused and the pending link given up.
    pub expires: u64,
    pub secret: Secret,
    /// The offering site's ASN; 0: no BGP session over the link.
    pub offerer_asn: u32,
    /// The accepting site's ASN, as the offering site expects it; 0: no BGP session.
    pub accepter_asn: u32,
    /// The link's tunnel subnet length and each side's address in it.
    pub prefix_len: u8,
    pub offerer_tunnel: Ipv4Addr,
    pub accepter_tunnel: Ipv4Addr,
    /// The underlay endpoints.
    pub offerer: SocketAddr,
    pub accepter: SocketAddr,
    /// The offering site's networks: what the accepting site takes from it over BGP.
    pub networks: Vec<(IpAddr, u8)>,
    /// An IPv6 tunnel too (and a second BGP session, for IPv6, across it), if offered.
    pub tunnel6: Option<Tunnel6>,
}

/// A link's IPv6 tunnel subnet: its prefix length and each side's address in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel6 {
    pub prefix_len: u8,
    pub offerer: Ipv6Addr,
    pub accepter: Ipv6Addr,
}

/// What MKA runs on, derived from the secret on both sides.
#[derive(Clone, PartialEq, Eq)]
pub struct CaKeys {
    pub cak: [u8; 32],
    pub ckn: [u8; 16],
}

impl fmt::Debug for CaKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaKeys")
            .field("cak", &"redacted")
            .field("ckn", &hex(&self.ckn))
            .finish()
    }
}

/// Lower-case hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `name` can name a link: 1 to [`MAX_NAME`] letters, digits, '-', '_' and '.'.
pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl Offer {
    /// The CAK (32 octets) and CKN (16 octets) of the link.
    pub fn keys(&self) -> CaKeys {
        CaKeys {
            cak: self.secret.derive(b"cak"),
            ckn: self.secret.derive(b"ckn"),
        }
    }

    /// The offer's identity (the CKN in hex): names it in state files and logs.
    pub fn id(&self) -> String {
        hex(&self.keys().ckn)
    }

    /// The suite's name.
    pub fn suite_name(&self) -> &'static str {
        SUITES[usize::from(self.suite) % SUITES.len()]
    }

    /// The key: `ilk1-` and base64url. Fails only for an offer no key can carry (a name or a
    /// network list out of bounds, an unknown suite).
    pub fn encode(&self) -> Result<String, KeyError> {
        if !valid_name(&self.name) {
            return Err(KeyError::Malformed("the link name"));
        }
        if self.networks.len() > MAX_NETWORKS {
            return Err(KeyError::Malformed("too many networks"));
        }
        if usize::from(self.suite) >= SUITES.len() {
            return Err(KeyError::Malformed("the cipher suite"));
        }
        let mut b = Vec::with_capacity(200);
        b.push(if self.tunnel6.is_some() {
            VERSION_IPV6
        } else {
            VERSION
        });
        b.push(self.suite);
        b.extend_from_slice(&self.expires.to_be_bytes());
        b.extend_from_slice(&self.secret.0);
        b.extend_from_slice(&self.offerer_asn.to_be_bytes());
        b.extend_from_slice(&self.accepter_asn.to_be_bytes());
        b.push(self.prefix_len);
        b.extend_from_slice(&self.offerer_tunnel.octets());
        b.extend_from_slice(&self.accepter_tunnel.octets());
        for e in [self.offerer, self.accepter] {
            put_ip(&mut b, e.ip());
            b.extend_from_slice(&e.port().to_be_bytes());
        }
        b.push(self.name.len() as u8);
        b.extend_from_slice(self.name.as_bytes());
        b.push(self.networks.len() as u8);
        for (ip, len) in &self.networks {
            put_ip(&mut b, *ip);
            b.push(*len);
        }
        if let Some(t) = &self.tunnel6 {
            if !(64..=127).contains(&t.prefix_len) {
                return Err(KeyError::Malformed("the IPv6 tunnel prefix length"));
            }
            b.push(t.prefix_len);
            b.extend_from_slice(&t.offerer.octets());
            b.extend_from_slice(&t.accepter.octets());
        }
        let tag = hmac::sign(&self.secret.check_key(), &b);
        b.extend_from_slice(&tag.as_ref()[..CHECK_LEN]);
        Ok(format!("{PREFIX}{}", base64url(&b)))
    }

    /// Reads a key (whitespace anywhere is ignored: a key pasted across lines), checks its
    /// check value, then that it has not expired at `now` (Unix seconds).
    pub fn decode(key: &str, now: u64) -> Result<Offer, KeyError> {
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::Malformed("too long"));
        }
        let key: String = key.chars().filter(|c| !c.is_whitespace()).collect();
        let body = key.strip_prefix(PREFIX).ok_or(KeyError::NotAKey)?;
        let b = unbase64url(body).ok_or(KeyError::Malformed("not base64url"))?;
        // Version, suite, expiry and secret come first; the check value last.
        if b.len() < 42 + CHECK_LEN {
            return Err(KeyError::Malformed("too short"));
        }
        if b[0] != VERSION && b[0] != VERSION_IPV6 {
            return Err(KeyError::UnknownVersion(b[0]));
        }
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&b[10..42]);
        let secret = Secret(secret);
        let (signed, check) = b.split_at(b.len() - CHECK_LEN);
        let tag = hmac::sign(&secret.check_key(), signed);
        if !constant_eq(&tag.as_ref()[..CHECK_LEN], check) {
            return Err(KeyError::Altered);
        }
        let mut r = Reader { b: signed, at: 1 };
        let suite = r.u8()?;
        if usize::from(suite) >= SUITES.len() {
            return Err(KeyError::Malformed("an unknown cipher suite"));
        }
        let expires = u64::from_be_bytes(r.array()?);
        r.at += 32;
        let offerer_asn = u32::from_be_bytes(r.array()?);
        let accepter_asn = u32::from_be_bytes(r.array()?);
        let prefix_len = r.u8()?;
        if !(1..=30).contains(&prefix_len) {
            return Err(KeyError::Malformed("the tunnel prefix length"));
        }
        let offerer_tunnel = Ipv4Addr::from(r.array::<4>()?);
        let accepter_tunnel = Ipv4Addr::from(r.array::<4>()?);
        let offerer = SocketAddr::new(r.ip()?, u16::from_be_bytes(r.array()?));
        let accepter = SocketAddr::new(r.ip()?, u16::from_be_bytes(r.array()?));
        let n = usize::from(r.u8()?);
        let name = std::str::from_utf8(r.take(n)?)
            .ok()
            .filter(|s| valid_name(s))
            .ok_or(KeyError::Malformed("the link name"))?
            .to_owned();
        let count = usize::from(r.u8()?);
        if count > MAX_NETWORKS {
            return Err(KeyError::Malformed("too many networks"));
        }
        let mut networks = Vec::with_capacity(count);
        for _ in 0..count {
            let ip = r.ip()?;
            let len = r.u8()?;
            if len > if ip.is_ipv4() { 32 } else { 128 } {
                return Err(KeyError::Malformed("a network's prefix length"));
            }
            networks.push((ip, len));
        }
        let tunnel6 = if b[0] == VERSION_IPV6 {
            let prefix_len = r.u8()?;
            if !(64..=127).contains(&prefix_len) {
                return Err(KeyError::Malformed("the IPv6 tunnel prefix length"));
            }
            let offerer = Ipv6Addr::from(r.array::<16>()?);
            let accepter = Ipv6Addr::from(r.array::<16>()?);
            Some(Tunnel6 {
                prefix_len,
                offerer,
                accepter,
            })
        } else {
            None
        };
        if r.at != signed.len() {
            return Err(KeyError::Malformed("octets after the networks"));
        }
        if now > expires {
            return Err(KeyError::Expired { at: expires, now });
        }
        Ok(Offer {
            name,
            suite,
            expires,
            secret,
            offerer_asn,
            accepter_asn,
            prefix_len,
            offerer_tunnel,
            accepter_tunnel,
            offerer,
            accepter,
            networks,
            tunnel6,
        })
    }
}

/// Which end of the link a configuration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Offerer,
    Accepter,
}

/// What a site adds to an offer to write its configuration of the link.
#[derive(Clone, Debug)]
pub struct Local<'a> {
    pub interface: &'a str,
    /// The CAK file, as the configuration names it.
    pub cak_file: &'a str,
    /// Whether this site runs BGP ([router]): then a neighbor across the link, if the offer
    /// has both ASNs.
    pub bgp: bool,
    /// What this site takes from the other over BGP ("PREFIX [le N]"); the offering site's
    /// networks on the accepting side when empty, anything on the offering side.
    pub import: &'a [String],
}

/// The most prefixes a paired neighbor may send (per family), as AWS allows on a private
/// virtual interface; past it the session is reset (max_prefixes_action "teardown").
pub const MAX_PREFIXES: u32 = 100;

impl Offer {
    /// The `interlink.d/NAME.toml` of `side`: the link, keyed by MKA from the derived CAK and
    /// CKN, and a BGP neighbor across it where both sites run BGP.
    pub fn config(&self, side: Side, local: &Local<'_>) -> String {
        let (me6, peer6) = match (side, self.tunnel6) {
            (_, None) => (None, None),
            (Side::Offerer, Some(t)) => (Some((t.offerer, t.prefix_len)), Some(t.accepter)),
            (Side::Accepter, Some(t)) => (Some((t.accepter, t.prefix_len)), Some(t.offerer)),
        };
        let (me, peer, tunnel, peer_tunnel, peer_asn) = match side {
            Side::Offerer => (
                self.offerer,
                self.accepter,
                self.offerer_tunnel,
                self.accepter_tunnel,
                self.accepter_asn,
            ),
            Side::Accepter => (
                self.accepter,
                self.offerer,
                self.accepter_tunnel,
                self.offerer_tunnel,
                self.offerer_asn,
            ),
        };
        let mut t = match side {
            Side::Offerer => format!(
                "# Link {name}, offered with `interlinkctl link offer` (offer {id}): pending until\n\
                 # the other site accepts the key and its MKA peer is live, then available. Not\n\
                 # accepted by {expires} (Unix time), it is given up. To withdraw it:\n\
                 # interlinkctl link remove {name} (this file and {cak} go).\n",
                name = self.name,
                id = self.id(),
                expires = self.expires,
                cak = local.cak_file,
            ),
            Side::Accepter => format!(
                "# Link {name}, accepted with `interlinkctl link accept` (offer {id}).\n\
                 # To remove it: interlinkctl link remove {name} (this file and {cak} go).\n",
                name = self.name,
                id = self.id(),
                cak = local.cak_file,
            ),
        };
        let v6 = me6.map_or(String::new(), |(a, l)| format!(", \"{a}/{l}\""));
        t += &format!(
            "[[link]]\nname = \"{}\"\ninterface = \"{}\"\naddresses = [\"{tunnel}/{}\"{v6}]\n\
             transport = \"udp\"\nlocal = \"{me}\"\nremote = \"{peer}\"\n",
            self.name, local.interface, self.prefix_len
        );
        if side == Side::Offerer {
            t += &format!("offer_expires = {}\n", self.expires);
        }
        // The CAK derives from the key, which was copied around: once the link is up it is
        // replaced by one only the two gateways know (kept in the state directory).
        t += &format!(
            "\n[link.macsec]\ncipher_suite = \"{}\"\nkeying = \"mka\"\nckn = \"{}\"\n\
             cak_file = \"{}\"\nreplace_cak = true\n",
            self.suite_name(),
            self.id(),
            local.cak_file
        );
        if local.bgp && self.offerer_asn != 0 && self.accepter_asn != 0 {
            // One session per family, across that family's tunnel address, as the clouds
            // peer; each takes its own family of the import list.
            let sessions = std::iter::once(IpAddr::V4(peer_tunnel)).chain(peer6.map(IpAddr::V6));
            for neighbor in sessions {
                t += &self.neighbor(side, local, neighbor, peer_asn);
            }
        }
        t
    }

    /// The `[[neighbor]]` across the link at `address`, importing that family: what the
    /// operator gave, else anything on the offering side and the offering site's networks
    /// on the accepting side.
    fn neighbor(&self, side: Side, local: &Local<'_>, address: IpAddr, asn: u32) -> String {
        let v4 = address.is_ipv4();
        let import: Vec<String> = match (side, local.import.is_empty()) {
            (_, false) => local
                .import
                .iter()
                .filter(|p| {
                    let addr = p.split(['/', ' ']).next().unwrap_or_default();
                    addr.parse::<IpAddr>().is_ok_and(|a| a.is_ipv4() == v4)
                })
                .cloned()
                .collect(),
            (Side::Offerer, true) if v4 => vec!["0.0.0.0/0 le 32".into()],
            (Side::Offerer, true) => vec!["::/0 le 128".into()],
            (Side::Accepter, true) => self
                .networks
                .iter()
                .filter(|(ip, _)| ip.is_ipv4() == v4)
                .map(|(ip, len)| format!("{ip}/{len}"))
                .collect(),
        };
        let import: Vec<String> = import.iter().map(|p| format!("\"{p}\"")).collect();
        format!(
            "\n[[neighbor]]\naddress = \"{address}\"\nremote_asn = {asn}\nlink = \"{}\"\n\
             import = {{ prefixes = [{}], max_prefixes = {MAX_PREFIXES} }}\n\
             export = {{ networks = true }}\n",
            self.name,
            import.join(", ")
        )
    }
}

/// The fuzz target's body, shared with the corpus replay under `cargo test`.
pub mod fuzzing {
    use super::*;

    /// Arbitrary input as a pasted key, then as a key's octets with a check value that
    /// matches (so that the parser behind the check is reached: the fuzzer cannot forge
    /// HMACs); an offer that decodes must encode to a key that decodes to the same offer.
    pub fn keys(data: &[u8]) {
        let _ = Offer::decode(&String::from_utf8_lossy(data), 0);
        if data.len() < 42 {
            return;
        }
        let mut signed = data.to_vec();
        signed[0] = if data[0] & 1 == 0 {
            VERSION
        } else {
            VERSION_IPV6
        };
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&signed[10..42]);
        let tag = hmac::sign(&Secret(secret).check_key(), &signed);
        signed.extend_from_slice(&tag.as_ref()[..CHECK_LEN]);
        let key = format!("{PREFIX}{}", base64url(&signed));
        if let Ok(o) = Offer::decode(&key, 0) {
            let again = o.encode().expect("a decoded offer encodes");
            assert_eq!(Offer::decode(&again, 0).as_ref(), Ok(&o), "round trip");
            let _ = o.config(
                Side::Accepter,
                &Local {
                    interface: "il0",
                    cak_file: "k.cak",
                    bgp: true,
                    import: &[],
                },
            );
        }
    }
}

fn put_ip(b: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KeyError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or(KeyError::Malformed("it ends too soon"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, KeyError> {
        Ok(self.take(1)?[0])
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], KeyError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn ip(&mut self) -> Result<IpAddr, KeyError> {
        match self.u8()? {
            4 => Ok(IpAddr::V4(Ipv4Addr::from(self.array::<4>()?))),
            6 => Ok(IpAddr::V6(Ipv6Addr::from(self.array::<16>()?))),
            _ => Err(KeyError::Malformed("an address family")),
        }
    }
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding (RFC 4648 §5).
fn base64url(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            s.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    s
}

/// The inverse of [`base64url`]; `None` for a character outside the alphabet, a length no
/// encoding has, or bits set past the last octet (each key has one spelling).
fn unbase64url(s: &str) -> Option<Vec<u8>> {
    let digits: Vec<u32> = s
        .bytes()
        .map(|c| ALPHABET.iter().position(|&a| a == c).map(|v| v as u32))
        .collect::<Option<_>>()?;
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | d << (18 - 6 * i));
        let octets = chunk.len() - 1;
        for i in 0..octets {
            out.push((n >> (16 - 8 * i)) as u8);
        }
        // Bits below the last octet must be zero.
        if octets < 3 && n & ((1 << (24 - 8 * octets)) - 1) != 0 {
            return None;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn offer() -> Offer {
        Offer {
            name: "site-b".into(),
            suite: 3,
            expires: 1_800_000_000,
            secret: Secret::from_bytes([7; 32]),
            offerer_asn: 65010,
            accepter_asn: 65020,
            prefix_len: 30,
            offerer_tunnel: "169.254.12.1".parse().unwrap(),
            accepter_tunnel: "169.254.12.2".parse().unwrap(),
            offerer: "192.0.2.1:61440".parse().unwrap(),
            accepter: "[2001:db8::2]:61441".parse().unwrap(),
            networks: vec![
                ("10.10.0.0".parse().unwrap(), 16),
                ("2001:db8:10::".parse().unwrap(), 48),
            ],
            tunnel6: None,
        }
    }

    fn offer6() -> Offer {
        let (offerer, accepter) = Secret::from_bytes([7; 32]).tunnel6(0);
        Offer {
            tunnel6: Some(Tunnel6 {
                prefix_len: 125,
                offerer,
                accepter,
            }),
            ..offer()
        }
    }

    #[test]
    fn a_key_with_an_ipv6_tunnel_is_of_version_2_and_round_trips() {
        let o = offer6();
        let k = o.encode().unwrap();
        let raw = unbase64url(&k[PREFIX.len()..]).unwrap();
        assert_eq!(raw[0], 2);
        assert_eq!(
            unbase64url(&offer().encode().unwrap()[PREFIX.len()..]).unwrap()[0],
            1
        );
        assert_eq!(Offer::decode(&k, 0).unwrap(), o);
        // A prefix length outside 64 to 127 is refused both ways.
        let mut bad = o.clone();
        bad.tunnel6 = bad.tunnel6.map(|t| Tunnel6 {
            prefix_len: 128,
            ..t
        });
        assert!(bad.encode().is_err());
    }

    #[test]
    fn ipv6_tunnels_are_unique_local_slash_125s() {
        let s = Secret::from_bytes([1; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 0..50 {
            let (a, b) = s.tunnel6(attempt);
            let (ao, bo) = (a.octets(), b.octets());
            assert_eq!(ao[0], 0xfd, "{a}");
            assert_eq!(ao[6..15], [0; 9], "{a}");
            assert_eq!((ao[15], bo[15]), (1, 2));
            assert_eq!(ao[..15], bo[..15]);
            seen.insert(a);
        }
        assert_eq!(seen.len(), 50);
    }

    #[test]
    fn an_ipv6_tunnel_gets_an_address_and_a_session_of_its_own() {
        let o = offer6();
        let t = o.tunnel6.unwrap();
        let local = Local {
            interface: "il-site-b",
            cak_file: "keys/site-b.cak",
            bgp: true,
            import: &[],
        };
        let a = o.config(Side::Offerer, &local);
        assert!(
            a.contains(&format!(
                "addresses = [\"169.254.12.1/30\", \"{}/125\"]",
                t.offerer
            )),
            "{a}"
        );
        assert!(
            a.contains(&format!("address = \"{}\"\nremote_asn = 65020", t.accepter)),
            "{a}"
        );
        assert!(a.contains("prefixes = [\"::/0 le 128\"]"), "{a}");
        assert!(a.contains("prefixes = [\"0.0.0.0/0 le 32\"]"), "{a}");
        let b = o.config(Side::Accepter, &local);
        assert!(
            b.contains(&format!("address = \"{}\"\nremote_asn = 65010", t.offerer)),
            "{b}"
        );
        // Each session imports its own family of the offering site's networks.
        assert!(b.contains("prefixes = [\"10.10.0.0/16\"]"), "{b}");
        assert!(b.contains("prefixes = [\"2001:db8:10::/48\"]"), "{b}");
        // An operator's import list is split by family too.
        let import = [
            "10.0.0.0/8 le 24".to_owned(),
            "2001:db8::/32 le 64".to_owned(),
        ];
        let c = o.config(
            Side::Offerer,
            &Local {
                import: &import,
                ..local
            },
        );
        assert!(c.contains("prefixes = [\"10.0.0.0/8 le 24\"]"), "{c}");
        assert!(c.contains("prefixes = [\"2001:db8::/32 le 64\"]"), "{c}");
    }

    #[test]
    fn a_key_decodes_to_the_offer_it_encodes() {
        let o = offer();
        let k = o.encode().unwrap();
        assert!(k.starts_with("ilk1-"), "{k}");
        assert!(k.len() < 250, "{} characters", k.len());
        assert_eq!(Offer::decode(&k, 1_700_000_000).unwrap(), o);
        // Pasted across lines, with spaces: the same key.
        let (a, b) = k.split_at(40);
        assert_eq!(
            Offer::decode(&format!("  {a}\n {b}\n"), 1_700_000_000).unwrap(),
            o
        );
    }

    #[test]
    fn both_sides_derive_the_same_keys_and_the_key_shows_neither() {
        let o = offer();
        let k = o.encode().unwrap();
        let back = Offer::decode(&k, 0).unwrap();
        assert_eq!(back.keys(), o.keys());
        let keys = o.keys();
        assert_ne!(keys.cak[..16], keys.ckn[..]);
        // The derived CAK is nowhere in the key, nor in a debug print.
        let raw = unbase64url(&k[PREFIX.len()..]).unwrap();
        assert!(!raw.windows(8).any(|w| w == &keys.cak[..8]));
        assert!(!format!("{o:?} {keys:?}").contains(&hex(&keys.cak)));
        // Another secret, other keys.
        let mut other = o.clone();
        other.secret = Secret::from_bytes([8; 32]);
        assert_ne!(other.keys(), keys);
        assert_eq!(o.id(), hex(&keys.ckn));
    }

    #[test]
    fn an_altered_character_anywhere_is_refused() {
        let k = offer().encode().unwrap();
        for at in PREFIX.len()..k.len() {
            let mut b = k.clone().into_bytes();
            b[at] = if b[at] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(b).unwrap();
            let e = Offer::decode(&altered, 0).unwrap_err();
            assert!(
                matches!(
                    e,
                    KeyError::Altered | KeyError::Malformed(_) | KeyError::UnknownVersion(_)
                ),
                "position {at}: {e:?}"
            );
        }
        // A changed field with the check value left: refused as altered.
        let mut o = offer();
        let good = o.encode().unwrap();
        o.offerer_asn = 64999;
        let forged = o.encode().unwrap();
        let spliced = format!(
            "{}{}",
            &forged[..forged.len() - 22],
            &good[good.len() - 22..]
        );
        assert_eq!(Offer::decode(&spliced, 0), Err(KeyError::Altered));
    }

    #[test]
    fn expired_malformed_and_foreign_keys_are_refused() {
        let k = offer().encode().unwrap();
        assert_eq!(
            Offer::decode(&k, 1_800_000_001),
            Err(KeyError::Expired {
                at: 1_800_000_000,
                now: 1_800_000_001
            })
        );
        assert_eq!(Offer::decode("hello", 0), Err(KeyError::NotAKey));
        assert_eq!(Offer::decode("", 0), Err(KeyError::NotAKey));
        assert_eq!(
            Offer::decode("ilk1-!!!", 0),
            Err(KeyError::Malformed("not base64url"))
        );
        assert_eq!(
            Offer::decode("ilk1-AAAA", 0),
            Err(KeyError::Malformed("too short"))
        );
        assert_eq!(
            Offer::decode(&k[..k.len() - 10], 0).unwrap_err(),
            KeyError::Altered
        );
        assert!(matches!(
            Offer::decode(&"ilk1-A".repeat(500), 0),
            Err(KeyError::Malformed(_))
        ));
        let mut raw = unbase64url(&k[PREFIX.len()..]).unwrap();
        raw[0] = 3;
        assert_eq!(
            Offer::decode(&format!("{PREFIX}{}", base64url(&raw)), 0),
            Err(KeyError::UnknownVersion(3))
        );
        // The messages say what to do.
        assert!(KeyError::Altered.to_string().contains("copy it again"));
    }

    #[test]
    fn offers_no_key_can_carry_are_refused() {
        let mut o = offer();
        o.name = "has space".into();
        assert!(o.encode().is_err());
        let mut o = offer();
        o.networks = vec![("10.0.0.0".parse().unwrap(), 8); MAX_NETWORKS + 1];
        assert!(o.encode().is_err());
        assert!(valid_name("a.b_c-1") && !valid_name("") && !valid_name(&"a".repeat(33)));
    }

    #[test]
    fn each_side_gets_its_end_of_the_link() {
        let o = offer();
        let a = o.config(
            Side::Offerer,
            &Local {
                interface: "il-site-b",
                cak_file: "keys/site-b.cak",
                bgp: true,
                import: &[],
            },
        );
        assert!(
            a.contains("local = \"192.0.2.1:61440\"\nremote = \"[2001:db8::2]:61441\""),
            "{a}"
        );
        assert!(a.contains("addresses = [\"169.254.12.1/30\"]"), "{a}");
        assert!(a.contains("offer_expires = 1800000000"), "{a}");
        assert!(a.contains(&format!("ckn = \"{}\"", o.id())), "{a}");
        assert!(
            a.contains("address = \"169.254.12.2\"\nremote_asn = 65020"),
            "{a}"
        );
        assert!(
            a.contains("prefixes = [\"0.0.0.0/0 le 32\"], max_prefixes = 100"),
            "{a}"
        );
        let b = o.config(
            Side::Accepter,
            &Local {
                interface: "il-site-b",
                cak_file: "keys/site-b.cak",
                bgp: true,
                import: &[],
            },
        );
        assert!(
            b.contains("local = \"[2001:db8::2]:61441\"\nremote = \"192.0.2.1:61440\""),
            "{b}"
        );
        assert!(!b.contains("offer_expires"), "{b}");
        assert!(
            b.contains("address = \"169.254.12.1\"\nremote_asn = 65010"),
            "{b}"
        );
        assert!(b.contains("prefixes = [\"10.10.0.0/16\"]"), "{b}");
        // No BGP here: the link alone.
        let c = o.config(
            Side::Accepter,
            &Local {
                interface: "il0",
                cak_file: "k.cak",
                bgp: false,
                import: &[],
            },
        );
        assert!(!c.contains("[[neighbor]]"), "{c}");
        // The CAK never appears.
        assert!(!a.contains(&hex(&o.keys().cak)) && !b.contains(&hex(&o.keys().cak)));
    }

    #[test]
    fn tunnels_are_link_local_slash_30s() {
        let s = Secret::from_bytes([1; 32]);
        let mut seen = std::collections::BTreeSet::new();
        for attempt in 0..50 {
            let (a, b) = s.tunnel(attempt);
            let (ao, bo) = (a.octets(), b.octets());
            assert_eq!(&ao[..2], &[169, 254]);
            assert_eq!(ao[3] % 4, 1, "{a}");
            assert_eq!(u32::from(b), u32::from(a) + 1);
            assert_ne!(ao[2..], [169, 253], "{a}");
            assert_ne!(bo[2..], [0, 2], "{b}");
            seen.insert(a);
        }
        assert!(seen.len() > 45, "{}", seen.len());
    }

    #[test]
    fn random_secrets_differ() {
        assert_ne!(Secret::random().unwrap(), Secret::random().unwrap());
    }

    proptest! {
        #[test]
        fn base64url_round_trips(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = base64url(&b);
            prop_assert!(s.bytes().all(|c| ALPHABET.contains(&c)));
            prop_assert_eq!(unbase64url(&s), Some(b));
        }

        /// Whatever is pasted, decoding answers (never panics), and only a key that
        /// carries a valid check value is accepted.
        #[test]
        fn any_input_is_answered(s in ".{0,300}", b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Offer::decode(&s, 0);
            let _ = Offer::decode(&format!("{PREFIX}{s}"), 0);
            let key = format!("{PREFIX}{}", base64url(&b));
            prop_assert!(Offer::decode(&key, 0).is_err());
        }
    }
}

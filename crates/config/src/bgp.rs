//! `[router]`, `[[neighbor]]` and `[bgp]`: the BGP speaker.

use core::ops::Range;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use interlink_fib::Prefix;
use serde::Deserialize;
use toml::Spanned;

use crate::{Checker, Secret};

/// The BGP speaker's identity; present when BGP runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    pub asn: u32,
    pub router_id: Ipv4Addr,
}

/// A prefix list entry: `PREFIX`, `PREFIX le N`, `PREFIX ge N`, `PREFIX ge N le M`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixMatch {
    pub prefix: Prefix,
    pub ge: u8,
    pub le: u8,
}

impl PrefixMatch {
    /// Whether `p` (an address and length) falls under the entry.
    pub fn matches(&self, addr: IpAddr, len: u8) -> bool {
        len >= self.ge
            && len <= self.le
            && len >= self.prefix.prefix_len()
            && self.prefix.contains(addr)
            && addr.is_ipv4() == self.prefix.is_ipv4()
    }

    fn parse(s: &str) -> Result<PrefixMatch, String> {
        let mut words = s.split_whitespace();
        let prefix: Prefix = words
            .next()
            .ok_or("an empty prefix list entry")?
            .parse()
            .map_err(|e: interlink_fib::PrefixError| e.to_string())?;
        let max = if prefix.is_ipv4() { 32 } else { 128 };
        let (mut ge, mut le) = (prefix.prefix_len(), prefix.prefix_len());
        let mut saw_ge = false;
        let mut saw_le = false;
        while let Some(w) = words.next() {
            let n: u8 = words
                .next()
                .and_then(|v| v.parse().ok())
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("{w} needs a length up to {max}"))?;
            match w {
                "ge" if !saw_ge && !saw_le => {
                    ge = n;
                    saw_ge = true;
                    if !saw_le {
                        le = max;
                    }
                }
                "le" if !saw_le => {
                    le = n;
                    saw_le = true;
                }
                _ => return Err(format!("{w:?} is not \"ge N\" or \"le N\" in order")),
            }
        }
        if ge < prefix.prefix_len() || le < ge {
            return Err(format!(
                "the lengths must satisfy {} <= ge <= le",
                prefix.prefix_len()
            ));
        }
        Ok(PrefixMatch { prefix, ge, le })
    }
}

/// Import policy of a neighbor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Import {
    pub prefixes: Vec<PrefixMatch>,
    pub max_prefixes: Option<u32>,
    /// The most prefixes per family the peer may have announced, before import policy: what
    /// `soft_reconfiguration` keeps. Checked, like `max_prefixes`, before an UPDATE is
    /// applied.
    pub max_received: Option<u32>,
    /// Keep what the peer sends, before policy (its Adj-RIB-In), so that a policy change
    /// applies without a route refresh or a reset; bounded by `max_received`, which it needs.
    pub soft_reconfiguration: bool,
    /// Warn only, instead of tearing the session down (Cease subcode 1).
    pub max_prefixes_warn_only: bool,
    /// After a teardown, how long the session stays down before it starts again.
    pub max_prefixes_restart: std::time::Duration,
    /// Only routes carrying one of these (if any are given).
    pub match_communities: Vec<u32>,
    pub match_large_communities: Vec<[u32; 3]>,
    /// Added to the routes taken.
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

/// Export policy of a neighbor.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Export {
    /// Announce the `[bgp] networks`.
    pub networks: bool,
    /// Learnt routes that may go out.
    pub prefixes: Vec<PrefixMatch>,
    /// Learnt routes go out only if they carry one of these (if any are given).
    pub match_communities: Vec<u32>,
    pub match_large_communities: Vec<[u32; 3]>,
    /// Added to what goes out.
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub med: Option<u32>,
    /// Our AS this many more times in the AS_PATH.
    pub prepend: u8,
}

/// RFC 1997 well-known communities, by the names configs use.
const WELL_KNOWN: [(&str, u32); 5] = [
    ("no-export", 0xffff_ff01),
    ("no-advertise", 0xffff_ff02),
    ("no-export-subconfed", 0xffff_ff03),
    ("graceful-shutdown", 0xffff_0000),
    ("blackhole", 0xffff_029a),
];

/// A community: `ASN:VALUE` (each 0 to 65535) or a well-known name.
pub fn parse_community(s: &str) -> Result<u32, String> {
    if let Some((_, c)) = WELL_KNOWN.iter().find(|(n, _)| *n == s) {
        return Ok(*c);
    }
    let bad = || format!("community {s:?} is not ASN:VALUE (each 0 to 65535) or a known name");
    let (a, v) = s.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.parse().map_err(|_| bad())?;
    let v: u16 = v.parse().map_err(|_| bad())?;
    Ok(u32::from(a) << 16 | u32::from(v))
}

/// A large community (RFC 8092): `GLOBAL:LOCAL1:LOCAL2`, each 0 to 2^32-1.
pub fn parse_large_community(s: &str) -> Result<[u32; 3], String> {
    let bad = || format!("large community {s:?} is not GLOBAL:LOCAL1:LOCAL2 (32-bit numbers)");
    let parts: Vec<&str> = s.split(':').collect();
    let [g, l1, l2] = parts.as_slice() else {
        return Err(bad());
    };
    let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
    Ok([n(g)?, n(l1)?, n(l2)?])
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbor {
    pub address: IpAddr,
    pub remote_asn: u32,
    pub password_file: Option<PathBuf>,
    /// The TCP-MD5 key, read from `password_file`.
    pub password: Option<Secret>,
    pub hold_time: u16,
    pub passive: bool,
    /// None: RFC 8212 for eBGP, nothing is accepted (iBGP: everything).
    pub import: Option<Import>,
    /// None: RFC 8212 for eBGP, nothing is sent (iBGP: everything).
    pub export: Option<Export>,
    pub port: u16,
    /// The link the session runs across, if named: the address is on it.
    pub link: Option<String>,
    /// The address families the session carries: by default, the neighbor address's.
    pub families: Vec<Afi>,
    /// Our address for the session: the source of our connections, and the address the
    /// BGP listener binds to instead of every address.
    pub local_address: Option<IpAddr>,
    /// GTSM (RFC 5082): sent with TTL 255, and only segments that arrive with TTL 255 (one
    /// hop at most) are taken.
    pub ttl_security: bool,
    /// BFD (RFC 5880, 5881) with the neighbor: its session going down takes the BGP session
    /// down (RFC 5882) and moves the routes through the neighbor to their backups at once.
    pub bfd: Option<Bfd>,
}

/// A neighbor's BFD session: `bfd = true` (AWS Direct Connect's 300 ms x 3) or
/// `bfd = { interval = "300ms", multiplier = 3 }`, with keyed SHA1 authentication if
/// `key_file` is set (`key_id`, `meticulous`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bfd {
    /// Desired transmit and required receive interval once up.
    pub interval: std::time::Duration,
    pub multiplier: u8,
    pub auth: Option<BfdAuth>,
}

/// Keyed SHA1 (RFC 5880 §6.7.4): the key (1 to 20 octets, from `key_file`), its id, and
/// whether sequence numbers are meticulous (type 5) or not (type 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdAuth {
    pub key_id: u8,
    pub key: Secret,
    pub meticulous: bool,
}

impl Default for Bfd {
    fn default() -> Bfd {
        Bfd {
            interval: std::time::Duration::from_millis(300),
            multiplier: 3,
            auth: None,
        }
    }
}

/// `bfd = true | false | { interval, multiplier }`, read by hand: serde's untagged enums
/// lose toml's spans and say only that nothing matched. Problems are placed at `bfd`.
pub(crate) enum RawBfd {
    On(bool),
    Tuned(RawBfdTable),
}

#[derive(Default)]
pub(crate) struct RawBfdTable {
    interval: Option<String>,
    multiplier: Option<i64>,
    key_file: Option<String>,
    key_id: Option<i64>,
    meticulous: Option<bool>,
}

impl<'de> Deserialize<'de> for RawBfd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RawBfd, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawBfd;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false, or { interval = \"300ms\", multiplier = 3 }")
            }

            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<RawBfd, E> {
                Ok(RawBfd::On(v))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<RawBfd, A::Error> {
                let mut t = RawBfdTable::default();
                while let Some(k) = m.next_key::<String>()? {
                    match k.as_str() {
                        "interval" => t.interval = Some(m.next_value()?),
                        "multiplier" => t.multiplier = Some(m.next_value()?),
                        "key_file" => t.key_file = Some(m.next_value()?),
                        "key_id" => t.key_id = Some(m.next_value()?),
                        "meticulous" => t.meticulous = Some(m.next_value()?),
                        other => {
                            return Err(serde::de::Error::unknown_field(
                                other,
                                &["interval", "multiplier", "key_file", "key_id", "meticulous"],
                            ))
                        }
                    }
                }
                Ok(RawBfd::Tuned(t))
            }
        }
        d.deserialize_any(V)
    }
}

/// An address family a session carries (unicast).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    fn of(a: &IpAddr) -> Afi {
        if a.is_ipv4() {
            Afi::Ipv4
        } else {
            Afi::Ipv6
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bgp {
    /// Originated prefixes.
    pub networks: Vec<Prefix>,
    /// ECMP over equal routes.
    pub multipath: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouter {
    asn: Spanned<i64>,
    router_id: Spanned<String>,
}

/// A neighbor's `import` or `export` table. The two share most keys, so one struct reads
/// both; the keys of one direction given in the other are refused by `Checker::direction`
/// with their place (serde's `flatten` cannot be combined with `deny_unknown_fields`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    prefixes: Vec<Spanned<String>>,
    #[serde(default)]
    match_communities: Vec<Spanned<String>>,
    #[serde(default)]
    match_large_communities: Vec<Spanned<String>>,
    #[serde(default)]
    communities: Vec<Spanned<String>>,
    #[serde(default)]
    large_communities: Vec<Spanned<String>>,
    med: Option<Spanned<i64>>,
    // Import only.
    max_prefixes: Option<Spanned<i64>>,
    max_received: Option<Spanned<i64>>,
    soft_reconfiguration: Option<Spanned<bool>>,
    max_prefixes_action: Option<Spanned<String>>,
    max_prefixes_restart: Option<Spanned<String>>,
    local_pref: Option<Spanned<i64>>,
    // Export only.
    networks: Option<Spanned<bool>>,
    prepend: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbor {
    address: Spanned<String>,
    remote_asn: Spanned<i64>,
    password_file: Option<Spanned<String>>,
    hold_time: Option<Spanned<i64>>,
    #[serde(default)]
    passive: bool,
    import: Option<RawPolicy>,
    export: Option<RawPolicy>,
    port: Option<Spanned<i64>>,
    link: Option<Spanned<String>>,
    families: Option<Vec<Spanned<String>>>,
    local_address: Option<Spanned<String>>,
    #[serde(default)]
    ttl_security: bool,
    bfd: Option<Spanned<RawBfd>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBgp {
    #[serde(default)]
    networks: Vec<Spanned<String>>,
    #[serde(default)]
    multipath: bool,
}

/// What import and export policies share, as `Checker::policy_common` reads it.
struct PolicyCommon {
    prefixes: Vec<PrefixMatch>,
    match_communities: Vec<u32>,
    match_large_communities: Vec<[u32; 3]>,
    communities: Vec<u32>,
    large_communities: Vec<[u32; 3]>,
    med: Option<u32>,
}

impl Checker<'_, '_> {
    pub(crate) fn router(&mut self, raw: Option<&RawRouter>) -> Option<Router> {
        let raw = raw?;
        let asn = self
            .ranged(&Some(raw.asn.clone()), "asn", 1, u32::MAX.into())
            .flatten();
        let router_id = match raw.router_id.get_ref().parse::<Ipv4Addr>() {
            Ok(id) if !id.is_unspecified() => Some(id),
            _ => {
                self.hint(
                    raw.router_id.span(),
                    format!(
                        "router_id {:?} is not an IPv4 address",
                        raw.router_id.get_ref()
                    ),
                    "a non-zero dotted quad, often a loopback address: \"192.0.2.1\"",
                );
                None
            }
        };
        Some(Router {
            asn: asn? as u32,
            router_id: router_id?,
        })
    }

    /// Each entry of `raw` through `parse`; the ones that fail are reported with `example`.
    fn list_of<T>(
        &mut self,
        raw: &[Spanned<String>],
        parse: fn(&str) -> Result<T, String>,
        example: &str,
    ) -> Vec<T> {
        raw.iter()
            .filter_map(|c| match parse(c.get_ref()) {
                Ok(v) => Some(v),
                Err(e) => {
                    self.hint(c.span(), e, example);
                    None
                }
            })
            .collect()
    }

    fn communities(&mut self, raw: &[Spanned<String>]) -> Vec<u32> {
        self.list_of(raw, parse_community, "\"7224:7300\", \"no-export\"")
    }

    fn large_communities(&mut self, raw: &[Spanned<String>]) -> Vec<[u32; 3]> {
        self.list_of(raw, parse_large_community, "\"65010:1:2\"")
    }

    fn prefix_list(&mut self, raw: &[Spanned<String>]) -> Vec<PrefixMatch> {
        raw.iter()
            .filter_map(|p| match PrefixMatch::parse(p.get_ref()) {
                Ok(m) => Some(m),
                Err(e) => {
                    self.hint(p.span(), e, "\"10.20.0.0/16\", \"10.20.0.0/16 le 24\"");
                    None
                }
            })
            .collect()
    }

    /// A password or key read from `path` (owner-only), a trailing newline not part of it,
    /// 1 to `max` octets; None when it cannot be had (said, at `span`, as `key`'s `what`).
    fn password(
        &mut self,
        path: &std::path::Path,
        span: Range<usize>,
        key: &str,
        max: usize,
        what: &str,
        why: &str,
    ) -> Option<Secret> {
        match crate::text::read_secret(path) {
            Ok(bytes) => {
                let b = bytes.as_bytes();
                let secret = Secret::new(b.strip_suffix(b"\n").unwrap_or(b).to_vec());
                if secret.is_empty() || secret.len() > max {
                    self.hint(span, format!("the {what} must be 1 to {max} octets"), why);
                    return None;
                }
                Some(secret)
            }
            Err((message, hint)) => {
                self.diag
                    .error(span, format!("{key} {}: {message}", path.display()), hint);
                None
            }
        }
    }

    /// A neighbor's `bfd`: Some(None) when off, None when it is wrong (said).
    fn bfd(&mut self, raw: Option<&Spanned<RawBfd>>) -> Option<Option<Bfd>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let t = match raw.get_ref() {
            RawBfd::On(false) => return Some(None),
            RawBfd::On(true) => return Some(Some(Bfd::default())),
            RawBfd::Tuned(t) => t,
        };
        let mut bfd = Bfd::default();
        let mut ok = true;
        if let Some(i) = &t.interval {
            match crate::parse_duration(i) {
                // RFC 5880 counts in microseconds in 32 bits; under 10 ms is beyond what a
                // control plane (ours, or the peer's) keeps to.
                Ok(d)
                    if d >= std::time::Duration::from_millis(10)
                        && d <= std::time::Duration::from_secs(60) =>
                {
                    bfd.interval = d
                }
                Ok(_) => {
                    self.hint(raw.span(), "bfd interval out of range", "10ms to 60s");
                    ok = false;
                }
                Err(e) => {
                    self.hint(raw.span(), format!("bfd interval: {e}"), "\"300ms\"");
                    ok = false;
                }
            }
        }
        if let Some(m) = t.multiplier {
            match u8::try_from(m) {
                Ok(m) if m > 0 => bfd.multiplier = m,
                _ => {
                    self.hint(raw.span(), format!("bfd multiplier {m}"), "1 to 255 (3)");
                    ok = false;
                }
            }
        }
        let key_id = match t.key_id.map(u8::try_from) {
            None => 1,
            Some(Ok(id)) => id,
            Some(Err(_)) => {
                self.hint(raw.span(), "bfd key_id out of range", "0 to 255");
                ok = false;
                1
            }
        };
        match &t.key_file {
            Some(f) => {
                let path = self.dir.join(f);
                let key = self.password(
                    &path,
                    raw.span(),
                    "bfd key_file",
                    20,
                    "BFD key",
                    "RFC 5880 SHA1 keys are at most 20 octets",
                );
                match key {
                    Some(key) => {
                        bfd.auth = Some(BfdAuth {
                            key_id,
                            key,
                            meticulous: t.meticulous.unwrap_or(false),
                        })
                    }
                    None => ok = false,
                }
            }
            None if t.key_id.is_some() || t.meticulous.is_some() => {
                self.hint(
                    raw.span(),
                    "bfd key_id and meticulous need a key_file",
                    "key_file = \"keys/bfd.key\" (1 to 20 octets, chmod 600)",
                );
                ok = false;
            }
            None => {}
        }
        ok.then_some(Some(bfd))
    }

    pub(crate) fn neighbors(
        &mut self,
        raw: &[Spanned<RawNeighbor>],
        router: Option<&Router>,
        router_span: Option<Range<usize>>,
        links: &[crate::Link],
    ) -> Vec<Neighbor> {
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        if router.is_none() && router_span.is_none() {
            if let Some(first) = raw.first() {
                self.hint(
                    first.span(),
                    "a neighbor needs the [router] section",
                    "[router] with asn and router_id",
                );
            }
        }
        for n in raw {
            let n = n.get_ref();
            let address = match n.address.get_ref().parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.hint(
                        n.address.span(),
                        format!("{:?} is not an IP address", n.address.get_ref()),
                        "\"169.254.10.1\" or \"fd00:10::1\"",
                    );
                    None
                }
            };
            if let Some(a) = address {
                if !seen.insert(a) {
                    self.error(n.address.span(), format!("neighbor {a} is defined twice"));
                }
            }
            let remote_asn = self
                .ranged(
                    &Some(n.remote_asn.clone()),
                    "remote_asn",
                    1,
                    u32::MAX.into(),
                )
                .flatten();
            let hold_time = match &n.hold_time {
                None => Some(90),
                Some(h) if *h.get_ref() == 0 || (3..=65535).contains(h.get_ref()) => {
                    Some(*h.get_ref() as u16)
                }
                Some(h) => {
                    self.hint(
                        h.span(),
                        format!("hold_time {} is not allowed", h.get_ref()),
                        "0 (no keepalives) or 3 to 65535 seconds (RFC 4271 §4.2)",
                    );
                    None
                }
            };
            let port = self
                .ranged(&n.port, "port", 1, 65535)
                .map(|p| p.unwrap_or(179) as u16);
            let (password_file, password) = match &n.password_file {
                None => (None, None),
                Some(f) => {
                    let path = self.dir.join(f.get_ref());
                    let key = self.password(
                        &path,
                        f.span(),
                        "password_file",
                        80,
                        "TCP-MD5 password",
                        "RFC 2385 keys are at most 80 octets",
                    );
                    match key {
                        Some(k) => (Some(path), Some(k)),
                        None => (None, None),
                    }
                }
            };
            let import = n.import.as_ref().map(|i| self.import(i));
            let export = n.export.as_ref().map(|e| self.export(e));
            // The families the session carries, and the link it runs across.
            let families = match &n.families {
                None => address.map(|a| vec![Afi::of(&a)]),
                Some(list) => {
                    let mut fams = Vec::new();
                    for f in list {
                        match f.get_ref().as_str() {
                            "ipv4" if !fams.contains(&Afi::Ipv4) => fams.push(Afi::Ipv4),
                            "ipv6" if !fams.contains(&Afi::Ipv6) => fams.push(Afi::Ipv6),
                            "ipv4" | "ipv6" => {
                                self.error(f.span(), format!("{:?} is listed twice", f.get_ref()))
                            }
                            other => self.hint(
                                f.span(),
                                format!("address family {other:?} is not known"),
                                "\"ipv4\" and/or \"ipv6\" (unicast)",
                            ),
                        }
                    }
                    if fams.is_empty() && list.is_empty() {
                        self.hint(
                            n.address.span(),
                            "families is empty",
                            "families = [\"ipv4\"], [\"ipv6\"] or both",
                        );
                    }
                    (!fams.is_empty()).then_some(fams)
                }
            };
            // Prefix lists of a family the session does not carry are a mistake.
            if let Some(fams) = &families {
                let lists = n
                    .import
                    .iter()
                    .flat_map(|i| &i.prefixes)
                    .chain(n.export.iter().flat_map(|e| &e.prefixes));
                for p in lists {
                    if let Ok(m) = PrefixMatch::parse(p.get_ref()) {
                        let afi = Afi::of(&m.prefix.addr());
                        if !fams.contains(&afi) {
                            self.hint(
                                p.span(),
                                format!(
                                    "an {} prefix on a session that carries only {}",
                                    if afi == Afi::Ipv4 { "IPv4" } else { "IPv6" },
                                    if afi == Afi::Ipv4 { "IPv6" } else { "IPv4" },
                                ),
                                "add the family: families = [\"ipv4\", \"ipv6\"]",
                            );
                        }
                    }
                }
            }
            let link = match (&n.link, address) {
                (None, _) => Some(None),
                (Some(l), address) => match links.iter().find(|k| k.name == *l.get_ref()) {
                    None => {
                        let names: Vec<&str> = links.iter().map(|k| k.name.as_str()).collect();
                        self.hint(
                            l.span(),
                            format!("no link named {:?}", l.get_ref()),
                            if names.is_empty() {
                                "no [[link]] is configured".to_owned()
                            } else {
                                format!("links: {}", names.join(", "))
                            },
                        );
                        None
                    }
                    Some(k) => {
                        let on_link = address.is_none_or(|a| {
                            k.addresses.iter().any(|ia| {
                                interlink_fib::Prefix::new(ia.addr, ia.prefix_len)
                                    .is_ok_and(|net| net.contains(a))
                                    && ia.addr != a
                            })
                        });
                        if on_link {
                            Some(Some(k.name.clone()))
                        } else {
                            let addrs: Vec<String> = k
                                .addresses
                                .iter()
                                .map(|ia| format!("{}/{}", ia.addr, ia.prefix_len))
                                .collect();
                            self.hint(
                                n.address.span(),
                                format!(
                                    "neighbor {} is not on link {} (its addresses: {})",
                                    n.address.get_ref(),
                                    k.name,
                                    if addrs.is_empty() {
                                        "none".to_owned()
                                    } else {
                                        addrs.join(", ")
                                    }
                                ),
                                "the peer's address in one of the link's subnets",
                            );
                            None
                        }
                    }
                },
            };
            // Our address for the session: of the neighbor's family.
            let local_address = match &n.local_address {
                None => Some(None),
                Some(l) => match l.get_ref().parse::<IpAddr>() {
                    Ok(a) if address.is_none_or(|n| n.is_ipv4() == a.is_ipv4()) => Some(Some(a)),
                    Ok(a) => {
                        self.hint(
                            l.span(),
                            format!("local_address {a} is not of the neighbor's family"),
                            "an address of ours of the neighbor's family",
                        );
                        None
                    }
                    Err(_) => {
                        self.hint(
                            l.span(),
                            format!("{:?} is not an IP address", l.get_ref()),
                            "\"169.254.10.1\" or \"fd00:10::1\"",
                        );
                        None
                    }
                },
            };
            let bfd = self.bfd(n.bfd.as_ref());
            if let (
                Some(address),
                Some(remote_asn),
                Some(hold_time),
                Some(port),
                Some(families),
                Some(link),
                Some(local_address),
                Some(bfd),
            ) = (
                address,
                remote_asn,
                hold_time,
                port,
                families,
                link,
                local_address,
                bfd,
            ) {
                out.push(Neighbor {
                    link,
                    families,
                    address,
                    remote_asn: remote_asn as u32,
                    password_file,
                    password,
                    hold_time,
                    passive: n.passive,
                    import,
                    export,
                    port,
                    local_address,
                    ttl_security: n.ttl_security,
                    bfd,
                });
            }
        }
        out
    }

    /// The keys import and export share, read once for both directions.
    fn policy_common(&mut self, p: &RawPolicy) -> PolicyCommon {
        PolicyCommon {
            prefixes: self.prefix_list(&p.prefixes),
            match_communities: self.communities(&p.match_communities),
            match_large_communities: self.large_communities(&p.match_large_communities),
            communities: self.communities(&p.communities),
            large_communities: self.large_communities(&p.large_communities),
            med: self
                .ranged(&p.med, "med", 0, u32::MAX.into())
                .flatten()
                .map(|v| v as u32),
        }
    }

    /// Refuses, with its place, each key of `p` that belongs to the other direction.
    fn direction(&mut self, p: &RawPolicy, import: bool) {
        let spans = [
            (
                "max_prefixes",
                p.max_prefixes.as_ref().map(Spanned::span),
                true,
            ),
            (
                "max_prefixes_action",
                p.max_prefixes_action.as_ref().map(Spanned::span),
                true,
            ),
            (
                "max_prefixes_restart",
                p.max_prefixes_restart.as_ref().map(Spanned::span),
                true,
            ),
            (
                "max_received",
                p.max_received.as_ref().map(Spanned::span),
                true,
            ),
            (
                "soft_reconfiguration",
                p.soft_reconfiguration.as_ref().map(Spanned::span),
                true,
            ),
            ("local_pref", p.local_pref.as_ref().map(Spanned::span), true),
            ("networks", p.networks.as_ref().map(Spanned::span), false),
            ("prepend", p.prepend.as_ref().map(Spanned::span), false),
        ];
        for (key, span, import_only) in spans {
            if let Some(span) = span {
                if import_only != import {
                    let (is, not) = if import_only {
                        ("import", "export")
                    } else {
                        ("export", "import")
                    };
                    self.hint(
                        span,
                        format!("{key} is not an {not} key"),
                        format!("it belongs in the neighbor's {is} table"),
                    );
                }
            }
        }
    }

    fn import(&mut self, i: &RawPolicy) -> Import {
        self.direction(i, true);
        let common = self.policy_common(i);
        let max_received = self
            .ranged(&i.max_received, "max_received", 1, u32::MAX.into())
            .flatten()
            .map(|v| v as u32);
        // What soft reconfiguration keeps is bounded by its own limit, and that limit counts
        // what it keeps: the one needs the other.
        let soft = i
            .soft_reconfiguration
            .as_ref()
            .is_some_and(|s| *s.get_ref());
        match (&i.soft_reconfiguration, &i.max_received) {
            (Some(s), None) if *s.get_ref() => self.hint(
                s.span(),
                "soft_reconfiguration keeps every route the peer sends: it needs max_received",
                "max_received = 2000000, say, above what the peer may send",
            ),
            (_, Some(m)) if !soft => self.hint(
                m.span(),
                "max_received counts the routes soft_reconfiguration keeps",
                "soft_reconfiguration = true, or max_prefixes for what is accepted",
            ),
            _ => {}
        }
        let max = self
            .ranged(&i.max_prefixes, "max_prefixes", 1, u32::MAX.into())
            .flatten()
            .map(|v| v as u32);
        let warn = match &i.max_prefixes_action {
            None => false,
            Some(a) => match a.get_ref().as_str() {
                "teardown" => false,
                "warn" => true,
                other => {
                    self.hint(
                        a.span(),
                        format!("max_prefixes_action {other:?} is not known"),
                        "\"teardown\" (Cease, subcode 1) or \"warn\"",
                    );
                    false
                }
            },
        };
        let restart = match &i.max_prefixes_restart {
            None => std::time::Duration::from_secs(60),
            Some(r) => match crate::parse_duration(r.get_ref()) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => d,
                Ok(_) => {
                    self.hint(
                        r.span(),
                        "max_prefixes_restart is too short",
                        "at least \"1s\"",
                    );
                    std::time::Duration::from_secs(60)
                }
                Err(e) => {
                    self.hint(r.span(), e, "a duration such as \"5m\"");
                    std::time::Duration::from_secs(60)
                }
            },
        };
        Import {
            prefixes: common.prefixes,
            max_prefixes: max,
            max_received,
            soft_reconfiguration: soft,
            max_prefixes_warn_only: warn,
            max_prefixes_restart: restart,
            match_communities: common.match_communities,
            match_large_communities: common.match_large_communities,
            communities: common.communities,
            large_communities: common.large_communities,
            local_pref: self
                .ranged(&i.local_pref, "local_pref", 0, u32::MAX.into())
                .flatten()
                .map(|v| v as u32),
            med: common.med,
        }
    }

    fn export(&mut self, e: &RawPolicy) -> Export {
        self.direction(e, false);
        let common = self.policy_common(e);
        Export {
            networks: e.networks.as_ref().is_some_and(|n| *n.get_ref()),
            prefixes: common.prefixes,
            match_communities: common.match_communities,
            match_large_communities: common.match_large_communities,
            communities: common.communities,
            large_communities: common.large_communities,
            med: common.med,
            prepend: self
                .ranged(&e.prepend, "prepend", 0, 10)
                .flatten()
                .map_or(0, |v| v as u8),
        }
    }

    pub(crate) fn bgp(&mut self, raw: Option<&RawBgp>) -> Bgp {
        let Some(raw) = raw else {
            return Bgp::default();
        };
        let networks = raw
            .networks
            .iter()
            .filter_map(|n| match n.get_ref().parse::<Prefix>() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.hint(n.span(), e.to_string(), "\"10.10.0.0/16\"");
                    None
                }
            })
            .collect();
        Bgp {
            networks,
            multipath: raw.multipath,
        }
    }
}

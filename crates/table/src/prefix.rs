//! The one prefix type of the project: config, interlinkctl, the BGP RIB and the FIB all
//! hold an IPv4 or IPv6 prefix as a [`Prefix`], parsed by one parser.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::SortedMap;

/// An IPv4 or IPv6 prefix with its host bits zero. Compact (18 octets, no alignment) because
/// the FIB keeps one per route and a full table holds a million.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

#[derive(Debug, PartialEq, Eq)]
pub enum PrefixError {
    Syntax(String),
    TooLong { len: u8, max: u8 },
    HostBits(String, String),
}

impl fmt::Display for PrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PrefixError::Syntax(s) => write!(f, "{s:?} is not a prefix (ADDRESS/LENGTH)"),
            PrefixError::TooLong { len, max } => {
                write!(f, "prefix length {len} is longer than {max}")
            }
            PrefixError::HostBits(s, p) => write!(f, "{s} has host bits set (did you mean {p}?)"),
        }
    }
}

impl std::error::Error for PrefixError {}

impl Prefix {
    /// The prefix of `addr` with `len` bits; host bits are cleared.
    pub fn new(addr: IpAddr, len: u8) -> Result<Prefix, PrefixError> {
        match addr {
            IpAddr::V4(a) if len <= 32 => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                Ok(Prefix::V4((u32::from(a) & mask).to_be_bytes(), len))
            }
            IpAddr::V6(a) if len <= 128 => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                Ok(Prefix::V6((u128::from(a) & mask).to_be_bytes(), len))
            }
            IpAddr::V4(_) => Err(PrefixError::TooLong { len, max: 32 }),
            IpAddr::V6(_) => Err(PrefixError::TooLong { len, max: 128 }),
        }
    }

    pub fn addr(&self) -> IpAddr {
        match *self {
            Prefix::V4(a, _) => IpAddr::V4(Ipv4Addr::from(a)),
            Prefix::V6(a, _) => IpAddr::V6(Ipv6Addr::from(a)),
        }
    }

    pub fn prefix_len(&self) -> u8 {
        match *self {
            Prefix::V4(_, l) | Prefix::V6(_, l) => l,
        }
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self, Prefix::V4(..))
    }

    pub fn is_ipv6(&self) -> bool {
        matches!(self, Prefix::V6(..))
    }

    pub fn afi(&self) -> Afi {
        Afi::of(self)
    }

    /// Whether `addr` lies inside the prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        Prefix::new(addr, self.prefix_len()).is_ok_and(|p| p == *self)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;

    /// `ADDRESS/LENGTH`, with the host bits zero: a typo such as 10.0.0.1/8 is an error, not
    /// a silent 10.0.0.0/8.
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let syntax = || PrefixError::Syntax(s.to_owned());
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        let p = Prefix::new(addr, len)?;
        if p.addr() != addr {
            return Err(PrefixError::HostBits(s.to_owned(), p.to_string()));
        }
        Ok(p)
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An address family (the IANA AFI numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4 = 1,
    Ipv6 = 2,
}

impl Afi {
    pub const ALL: [Afi; 2] = [Afi::Ipv4, Afi::Ipv6];

    pub fn of(p: &Prefix) -> Afi {
        match p {
            Prefix::V4(..) => Afi::Ipv4,
            Prefix::V6(..) => Afi::Ipv6,
        }
    }

    /// The AFI as BGP and the IANA number it.
    pub fn number(self) -> u16 {
        self as u16
    }

    /// As people write it: "IPv4", "IPv6".
    pub fn name(self) -> &'static str {
        match self {
            Afi::Ipv4 => "IPv4",
            Afi::Ipv6 => "IPv6",
        }
    }

    /// As labels and JSON keys have it: "ipv4", "ipv6".
    pub fn key(self) -> &'static str {
        match self {
            Afi::Ipv4 => "ipv4",
            Afi::Ipv6 => "ipv6",
        }
    }
}

/// One value per address family, indexed by [`Afi`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PerFamily<T> {
    pub ipv4: T,
    pub ipv6: T,
}

impl<T> PerFamily<T> {
    /// Each family with its value, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = (Afi, &T)> {
        [(Afi::Ipv4, &self.ipv4), (Afi::Ipv6, &self.ipv6)].into_iter()
    }

    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> PerFamily<U> {
        PerFamily {
            ipv4: f(&self.ipv4),
            ipv6: f(&self.ipv6),
        }
    }
}

impl<T: Copy + std::ops::Add<Output = T>> PerFamily<T> {
    /// Both families together.
    pub fn total(&self) -> T {
        self.ipv4 + self.ipv6
    }

    /// Family by family, with `other`'s.
    pub fn plus(&self, other: &PerFamily<T>) -> PerFamily<T> {
        PerFamily {
            ipv4: self.ipv4 + other.ipv4,
            ipv6: self.ipv6 + other.ipv6,
        }
    }
}

impl<T> std::ops::Index<Afi> for PerFamily<T> {
    type Output = T;
    fn index(&self, afi: Afi) -> &T {
        match afi {
            Afi::Ipv4 => &self.ipv4,
            Afi::Ipv6 => &self.ipv6,
        }
    }
}

impl<T> std::ops::IndexMut<Afi> for PerFamily<T> {
    fn index_mut(&mut self, afi: Afi) -> &mut T {
        match afi {
            Afi::Ipv4 => &mut self.ipv4,
            Afi::Ipv6 => &mut self.ipv6,
        }
    }
}

/// A prefix as a compact, ordered key: IPv4 in 8 octets (address and length), IPv6 in 17.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PrefixKey {
    V4(u64),
    V6((u128, u8)),
}

impl Prefix {
    pub fn key(&self) -> PrefixKey {
        match *self {
            Prefix::V4(a, len) => {
                PrefixKey::V4(u64::from(u32::from_be_bytes(a)) << 8 | u64::from(len))
            }
            Prefix::V6(a, len) => PrefixKey::V6((u128::from_be_bytes(a), len)),
        }
    }

    /// The prefix of an IPv4 key made by [`Prefix::key`].
    pub fn from_v4_key(k: u64) -> Prefix {
        Prefix::V4(((k >> 8) as u32).to_be_bytes(), (k & 0xff) as u8)
    }

    /// The prefix of an IPv6 key made by [`Prefix::key`].
    pub fn from_v6_key(k: (u128, u8)) -> Prefix {
        Prefix::V6(k.0.to_be_bytes(), k.1)
    }
}

/// A route table: values by prefix in two [`SortedMap`]s, IPv4 and IPv6 apart, each with
/// its compact key, iterated in prefix order (IPv4 first). What the RIB and the FIB keep per
/// prefix.
pub struct PrefixMap<V> {
    v4: SortedMap<u64, V>,
    v6: SortedMap<(u128, u8), V>,
}

impl<V> Default for PrefixMap<V> {
    fn default() -> Self {
        PrefixMap {
            v4: SortedMap::default(),
            v6: SortedMap::default(),
        }
    }
}

impl<V: Default> PrefixMap<V> {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries per family.
    pub fn counts(&self) -> PerFamily<usize> {
        PerFamily {
            ipv4: self.v4.len(),
            ipv6: self.v6.len(),
        }
    }

    pub fn get(&self, p: &Prefix) -> Option<&V> {
        match p.key() {
            PrefixKey::V4(k) => self.v4.get(&k),
            PrefixKey::V6(k) => self.v6.get(&k),
        }
    }

    pub fn get_mut(&mut self, p: &Prefix) -> Option<&mut V> {
        match p.key() {
            PrefixKey::V4(k) => self.v4.get_mut(&k),
            PrefixKey::V6(k) => self.v6.get_mut(&k),
        }
    }

    /// The value of `p`, a default one if it had none.
    pub fn entry(&mut self, p: Prefix) -> &mut V {
        match p.key() {
            PrefixKey::V4(k) => self.v4.get_or_default(k),
            PrefixKey::V6(k) => self.v6.get_or_default(k),
        }
    }

    pub fn insert(&mut self, p: &Prefix, v: V) -> Option<V> {
        match p.key() {
            PrefixKey::V4(k) => self.v4.insert(k, v),
            PrefixKey::V6(k) => self.v6.insert(k, v),
        }
    }

    pub fn remove(&mut self, p: &Prefix) -> Option<V> {
        match p.key() {
            PrefixKey::V4(k) => self.v4.remove(&k),
            PrefixKey::V6(k) => self.v6.remove(&k),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (Prefix, &V)> {
        self.v4
            .iter()
            .map(|(k, v)| (Prefix::from_v4_key(*k), v))
            .chain(self.v6.iter().map(|(k, v)| (Prefix::from_v6_key(*k), v)))
    }

    /// The entries from `p` on (`p` included), in the order of [`PrefixMap::iter`].
    pub fn iter_from(&self, p: &Prefix) -> Box<dyn Iterator<Item = (Prefix, &V)> + '_> {
        match p.key() {
            PrefixKey::V4(k) => Box::new(
                self.v4
                    .iter_from(&k)
                    .map(|(k, v)| (Prefix::from_v4_key(*k), v))
                    .chain(self.v6.iter().map(|(k, v)| (Prefix::from_v6_key(*k), v))),
            ),
            PrefixKey::V6(k) => Box::new(
                self.v6
                    .iter_from(&k)
                    .map(|(k, v)| (Prefix::from_v6_key(*k), v)),
            ),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.v4.values_mut().chain(self.v6.values_mut())
    }

    /// Keeps the entries for which `f` says true (it may change them).
    pub fn retain(&mut self, mut f: impl FnMut(Prefix, &mut V) -> bool) {
        self.v4.retain(|k, v| f(Prefix::from_v4_key(*k), v));
        self.v6.retain(|k, v| f(Prefix::from_v6_key(*k), v));
    }

    /// The prefixes whose values satisfy `f`, in order.
    pub fn prefixes_where(&self, f: impl Fn(&V) -> bool) -> Vec<Prefix> {
        self.iter().filter(|(_, v)| f(v)).map(|(p, _)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_parse_strictly() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert!(p.is_ipv4());
        assert!(p.contains("10.1.2.3".parse().unwrap()));
        assert!(!p.contains("10.2.0.0".parse().unwrap()));
        assert_eq!("2001:db8::/32".parse::<Prefix>().unwrap().prefix_len(), 32);
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().prefix_len(), 0);
        assert_eq!("::/0".parse::<Prefix>().unwrap().prefix_len(), 0);
        assert_eq!(
            "10.0.0.1/8".parse::<Prefix>(),
            Err(PrefixError::HostBits(
                "10.0.0.1/8".into(),
                "10.0.0.0/8".into()
            ))
        );
        assert_eq!(
            "10.0.0.0/33".parse::<Prefix>(),
            Err(PrefixError::TooLong { len: 33, max: 32 })
        );
        for bad in [
            "10.0.0.0",
            "10.0.0.0/",
            "/8",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/0008",
            "",
        ] {
            assert!(bad.parse::<Prefix>().is_err(), "{bad}");
        }
        assert_eq!(std::mem::size_of::<Prefix>(), 18);
    }

    #[test]
    fn keys_round_trip_and_a_map_iterates_in_prefix_order() {
        for s in ["10.1.0.0/16", "0.0.0.0/0", "255.255.255.255/32"] {
            let p: Prefix = s.parse().unwrap();
            let PrefixKey::V4(k) = p.key() else { panic!() };
            assert_eq!(Prefix::from_v4_key(k), p);
        }
        let p: Prefix = "2001:db8::/32".parse().unwrap();
        let PrefixKey::V6(k) = p.key() else { panic!() };
        assert_eq!(Prefix::from_v6_key(k), p);
        let mut m: PrefixMap<u32> = PrefixMap::default();
        for (i, s) in ["fd00::/8", "10.2.0.0/16", "10.1.0.0/24", "10.1.0.0/16"]
            .iter()
            .enumerate()
        {
            m.insert(&s.parse().unwrap(), i as u32);
        }
        let order: Vec<String> = m.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(
            order,
            ["10.1.0.0/16", "10.1.0.0/24", "10.2.0.0/16", "fd00::/8"]
        );
        // A walk resumed: from a prefix present, one absent, and one of IPv6.
        let from = |s: &str| -> Vec<String> {
            m.iter_from(&s.parse().unwrap())
                .map(|(p, _)| p.to_string())
                .collect()
        };
        assert_eq!(from("10.1.0.0/24"), order[1..]);
        assert_eq!(from("10.1.128.0/24"), order[2..]);
        assert_eq!(from("::/0"), order[3..]);
        *m.entry("10.9.0.0/16".parse().unwrap()) += 5;
        assert_eq!(m.get(&"10.9.0.0/16".parse().unwrap()), Some(&5));
        assert_eq!(m.remove(&"fd00::/8".parse().unwrap()), Some(0));
        assert_eq!(m.len(), 4);
        assert_eq!(m.prefixes_where(|v| *v == 1).len(), 1);
    }
}

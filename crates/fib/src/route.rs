//! Prefixes, next hops and routes as the FIB programs them.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use thiserror::Error;

/// An IPv4 or IPv6 prefix with its host bits zero. Compact (18 octets, no alignment) because
/// the FIB keeps one per route and a full table holds a million.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Prefix {
    V4([u8; 4], u8),
    V6([u8; 16], u8),
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PrefixError {
    #[error("{0:?} is not a prefix (ADDRESS/LENGTH)")]
    Syntax(String),
    #[error("prefix length {len} is longer than {max}")]
    TooLong { len: u8, max: u8 },
    #[error("{0} has host bits set (did you mean {1}?)")]
    HostBits(String, String),
}

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

/// One way out: a gateway, an interface, or both (a link-local IPv6 gateway needs its
/// interface). `weight` is the ECMP weight, 1 to 256.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NextHop {
    pub gateway: Option<IpAddr>,
    pub ifindex: Option<u32>,
    pub weight: u16,
}

impl NextHop {
    pub fn via(gateway: IpAddr) -> NextHop {
        NextHop {
            gateway: Some(gateway),
            ifindex: None,
            weight: 1,
        }
    }

    pub fn dev(ifindex: u32) -> NextHop {
        NextHop {
            gateway: None,
            ifindex: Some(ifindex),
            weight: 1,
        }
    }

    /// Whether the kernel's next hop `k` is this one: the kernel fills in the interface it
    /// resolved a gateway to, so an interface left open here matches any.
    fn satisfied_by(&self, k: &NextHop) -> bool {
        self.gateway == k.gateway
            && self.weight == k.weight
            && (self.ifindex.is_none() || self.ifindex == k.ifindex)
    }
}

/// What the FIB puts in the kernel for a prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    /// Forward through one next hop, or several (ECMP, `RTA_MULTIPATH`). Kept sorted, so that
    /// equal sets compare equal.
    Unicast(Vec<NextHop>),
    /// Drop silently (`RTN_BLACKHOLE`).
    Blackhole,
    /// Drop with ICMP unreachable (`RTN_UNREACHABLE`).
    Unreachable,
}

impl Route {
    /// A unicast route through `hops`, sorted and without duplicates; `None` if empty.
    pub fn unicast(mut hops: Vec<NextHop>) -> Option<Route> {
        hops.sort();
        hops.dedup();
        (!hops.is_empty()).then_some(Route::Unicast(hops))
    }

    /// Whether the kernel's route `k` is what this one asks for.
    pub fn satisfied_by(&self, k: &Route) -> bool {
        match (self, k) {
            (Route::Unicast(a), Route::Unicast(b)) => {
                a.len() == b.len() && a.iter().all(|h| b.iter().any(|kh| h.satisfied_by(kh)))
            }
            (a, b) => a == b,
        }
    }

    /// Whether a next hop of the route goes out of interface `ifindex`.
    pub fn uses(&self, ifindex: u32) -> bool {
        match self {
            Route::Unicast(hops) => hops.iter().any(|h| h.ifindex == Some(ifindex)),
            _ => false,
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Route::Blackhole => f.write_str("blackhole"),
            Route::Unreachable => f.write_str("unreachable"),
            Route::Unicast(hops) => {
                for (i, h) in hops.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match (h.gateway, h.ifindex) {
                        (Some(g), Some(i)) => write!(f, "via {g} dev #{i}")?,
                        (Some(g), None) => write!(f, "via {g}")?,
                        (None, Some(i)) => write!(f, "dev #{i}")?,
                        (None, None) => f.write_str("nowhere")?,
                    }
                    if h.weight != 1 {
                        write!(f, " weight {}", h.weight)?;
                    }
                }
                Ok(())
            }
        }
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
    fn kernel_routes_satisfy_what_was_asked() {
        let gw: IpAddr = "192.0.2.1".parse().unwrap();
        let asked = Route::unicast(vec![NextHop::via(gw)]).unwrap();
        let kernel = Route::Unicast(vec![NextHop {
            ifindex: Some(3),
            ..NextHop::via(gw)
        }]);
        assert!(asked.satisfied_by(&kernel));
        assert!(!kernel.satisfied_by(&Route::Unicast(vec![NextHop::via(gw)])));
        let other = Route::unicast(vec![NextHop::via("192.0.2.2".parse().unwrap())]).unwrap();
        assert!(!asked.satisfied_by(&other));
        assert!(!asked.satisfied_by(&Route::Blackhole));
        assert!(Route::Blackhole.satisfied_by(&Route::Blackhole));
        assert_eq!(Route::unicast(vec![]), None);
        // Order does not matter; duplicates collapse.
        let a = NextHop::via(gw);
        let b = NextHop::via("192.0.2.2".parse().unwrap());
        assert_eq!(
            Route::unicast(vec![a.clone(), b.clone(), a.clone()]),
            Route::unicast(vec![b, a])
        );
    }
}

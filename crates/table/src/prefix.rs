//! The one prefix type of the project: config, interlinkctl, the BGP RIB and the FIB all
//! hold an IPv4 or IPv6 prefix as a [`Prefix`], parsed by one parser.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

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
}

//! Prefixes, next hops and routes as the FIB programs them.

use std::fmt;
use std::net::IpAddr;

pub use interlink_table::{Prefix, PrefixError};

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
    /// Forward through `primary`, with `backup` worked out in advance (BGP PIC edge: the
    /// next hop of the best path that does not go through `primary`). Through a nexthop
    /// object, every such route moves to the backup in one request when the primary fails
    /// ([`crate::Fib::fail_over`]); without objects it is a route through `primary`. Boxed:
    /// routes cross from BGP to the FIB by the million, and this keeps each at 32 octets.
    Protected(Box<Protection>),
    /// Drop silently (`RTN_BLACKHOLE`).
    Blackhole,
    /// Drop with ICMP unreachable (`RTN_UNREACHABLE`).
    Unreachable,
}

/// A next hop and its backup.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Protection {
    pub primary: NextHop,
    pub backup: NextHop,
}

impl Route {
    /// A unicast route through `hops`, sorted and without duplicates; `None` if empty.
    pub fn unicast(mut hops: Vec<NextHop>) -> Option<Route> {
        hops.sort();
        hops.dedup();
        (!hops.is_empty()).then_some(Route::Unicast(hops))
    }

    /// A route through `primary` protected by `backup`; through `primary` alone if they are
    /// the same.
    pub fn protected(primary: NextHop, backup: NextHop) -> Route {
        if primary == backup {
            Route::Unicast(vec![primary])
        } else {
            Route::Protected(Box::new(Protection { primary, backup }))
        }
    }

    /// Whether the kernel's route `k` is what this one asks for. A protected route is what
    /// it asks for only as the FIB made it (its backup lives in the nexthop object, which a
    /// route read from the kernel does not show).
    pub fn satisfied_by(&self, k: &Route) -> bool {
        match (self, k) {
            (Route::Unicast(a), Route::Unicast(b)) => {
                a.len() == b.len() && a.iter().all(|h| b.iter().any(|kh| h.satisfied_by(kh)))
            }
            (Route::Protected(a), Route::Protected(b)) => {
                a.primary.satisfied_by(&b.primary) && a.backup.satisfied_by(&b.backup)
            }
            (a, b) => a == b,
        }
    }

    /// Whether a next hop of the route goes out of interface `ifindex`.
    pub fn uses(&self, ifindex: u32) -> bool {
        match self {
            Route::Unicast(hops) => hops.iter().any(|h| h.ifindex == Some(ifindex)),
            Route::Protected(p) => {
                p.primary.ifindex == Some(ifindex) || p.backup.ifindex == Some(ifindex)
            }
            _ => false,
        }
    }

    /// The next hops the kernel is given for this route when it carries them itself: a
    /// protected route's primary.
    pub fn hops(&self) -> &[NextHop] {
        match self {
            Route::Unicast(hops) => hops,
            Route::Protected(p) => std::slice::from_ref(&p.primary),
            _ => &[],
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
                    write!(f, "{h}")?;
                }
                Ok(())
            }
            Route::Protected(p) => write!(f, "{} (backup {})", p.primary, p.backup),
        }
    }
}

impl fmt::Display for NextHop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.gateway, self.ifindex) {
            (Some(g), Some(i)) => write!(f, "via {g} dev #{i}")?,
            (Some(g), None) => write!(f, "via {g}")?,
            (None, Some(i)) => write!(f, "dev #{i}")?,
            (None, None) => f.write_str("nowhere")?,
        }
        if self.weight != 1 {
            write!(f, " weight {}", self.weight)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

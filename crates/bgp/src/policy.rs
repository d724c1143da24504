//! Route policy, pure functions of a route and a neighbor's settings: prefix lists, matching
//! on communities (RFC 1997) and large communities (RFC 8092), setting communities,
//! LOCAL_PREF, MED and AS-path prepends; what comes in ([`import`], with the RFC 8212
//! defaults and AS-path loop detection), what may go out ([`exports`], with NO_EXPORT and
//! NO_ADVERTISE honoured and no iBGP-to-iBGP) and with which attributes ([`outgoing`]).
//! (The config crate reads communities as people write them.)

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::update::{Attrs, Nlri, Segment, Update};

/// A prefix list entry: the prefix and the lengths it admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrefixFilter {
    pub prefix: Nlri,
    pub ge: u8,
    pub le: u8,
}

impl PrefixFilter {
    pub fn matches(&self, p: &Nlri) -> bool {
        let len = p.prefix_len();
        p.is_ipv4() == self.prefix.is_ipv4()
            && (self.ge..=self.le).contains(&len)
            && len >= self.prefix.prefix_len()
            && self.prefix.contains(p.addr())
    }
}

#[derive(Clone, Debug, Default)]
pub struct ImportPolicy {
    pub prefixes: Vec<PrefixFilter>,
    /// Only routes that also match these (communities) are taken.
    pub matching: Match,
    /// Set on the routes taken (LOCAL_PREF, MED, communities).
    pub set: Set,
    /// The most prefixes taken per family (IPv4 and IPv6 counted apart).
    pub max_prefixes: Option<u32>,
    /// The most prefixes per family the peer may have announced before policy (taken and
    /// refused), as `soft_reconfiguration` keeps them.
    pub max_received: Option<u32>,
    /// Keep what the peer sent before policy (its Adj-RIB-In: prefixes and the attributes
    /// they came with), so that a policy change is applied from it, without a route
    /// refresh or a reset. Otherwise refused routes are counted, never stored.
    pub soft_reconfiguration: bool,
    pub warn_only: bool,
    /// After a max-prefix teardown, the session stays down this long, then starts again.
    pub max_prefixes_restart: Duration,
}

#[derive(Clone, Debug, Default)]
pub struct ExportPolicy {
    pub networks: bool,
    pub prefixes: Vec<PrefixFilter>,
    /// Learnt routes go out only if they also match these (communities).
    pub matching: Match,
    /// Set on everything that goes out (communities, MED, prepends).
    pub set: Set,
}

/// Where a best route comes from, as export policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// One of our own networks.
    Local,
    /// Learnt from a peer, eBGP or iBGP.
    Peer { ebgp: bool },
}

/// An UPDATE through import policy: what goes into the RIB, and the announced prefixes
/// policy refused (they are withdrawn in `update`, since they replace what we had).
#[derive(Debug)]
pub struct Imported {
    pub update: Update,
    /// What the UPDATE withdrew or replaced: no longer refused, if it was.
    pub withdrawn: Vec<Nlri>,
    pub rejected: Vec<Nlri>,
}

/// Import policy: RFC 8212 for eBGP without a policy (nothing), the prefix list and the
/// communities condition otherwise, and no route whose AS_PATH holds our own AS (RFC 4271
/// §9.1.2).
pub fn import(u: &Update, policy: Option<&ImportPolicy>, ebgp: bool, local_as: u32) -> Imported {
    let mut out = Update {
        withdrawn: u.withdrawn.clone(),
        ..Update::default()
    };
    let mut rejected = Vec::new();
    let Some(attrs) = &u.attrs else {
        return Imported {
            withdrawn: u.withdrawn.clone(),
            update: out,
            rejected,
        };
    };
    let looped = attrs.as_path.iter().any(|s| match s {
        Segment::Sequence(v) | Segment::Set(v) => v.contains(&local_as),
    });
    // The communities condition holds for the whole UPDATE: its prefixes share attributes.
    let attrs_match = policy.is_none_or(|i| i.matching.matches(attrs));
    let accepts = |p: &Nlri| match policy {
        None => !ebgp,
        Some(i) => attrs_match && i.prefixes.iter().any(|f| f.matches(p)),
    };
    for p in &u.announced {
        if !looped && accepts(p) {
            out.announced.push(*p);
        } else {
            // A route we do not take replaces one we had: it goes.
            out.withdrawn.push(*p);
            rejected.push(*p);
        }
    }
    if !out.announced.is_empty() {
        out.attrs = Some(match policy.filter(|i| !i.set.is_empty()) {
            None => attrs.clone(),
            Some(i) => {
                let mut a = (**attrs).clone();
                i.set.apply(&mut a, local_as);
                Arc::new(a)
            }
        });
    }
    Imported {
        withdrawn: u.withdrawn.iter().chain(&out.announced).copied().collect(),
        update: out,
        rejected,
    }
}

/// Whether `prefix`, best with `attrs` from `source`, may go to a peer (eBGP or not, with its
/// export policy): RFC 8212 without a policy (nothing to eBGP), our networks if the policy
/// says so, learnt routes through the prefix list and communities condition; never iBGP to
/// iBGP (no route reflection), never what NO_EXPORT or NO_ADVERTISE keep in.
pub fn exports(
    prefix: &Nlri,
    attrs: &Attrs,
    source: Source,
    to_ebgp: bool,
    export: Option<&ExportPolicy>,
) -> bool {
    if !advertisable(attrs, to_ebgp) {
        return false;
    }
    let from_ebgp = match source {
        Source::Local => {
            return match export {
                None => !to_ebgp,
                Some(e) => e.networks,
            }
        }
        Source::Peer { ebgp } => ebgp,
    };
    match export {
        None => !to_ebgp && from_ebgp,
        Some(e) => {
            (to_ebgp || from_ebgp)
                && e.matching.matches(attrs)
                && e.prefixes.iter().any(|f| f.matches(prefix))
        }
    }
}

/// The attributes a route goes to a peer with, over a session from our address `local`:
/// our AS prepended and ourselves as next hop towards eBGP, LOCAL_PREF towards iBGP, then
/// what export policy sets. None when no next hop of the route's family can be given.
pub fn outgoing(
    best: &Attrs,
    local: IpAddr,
    to_ebgp: bool,
    export: Option<&ExportPolicy>,
    local_as: u32,
    v6: bool,
) -> Option<Attrs> {
    let mut a = best.clone();
    if to_ebgp {
        match a.as_path.first_mut() {
            Some(Segment::Sequence(v)) if v.len() < 255 => v.insert(0, local_as),
            _ => a.as_path.insert(0, Segment::Sequence(vec![local_as])),
        }
        a.local_pref = None;
        a.med = None;
    } else {
        a.local_pref = Some(a.local_pref.unwrap_or(crate::rib::DEFAULT_LOCAL_PREF));
    }
    // Next hop self; an IPv6 route needs an IPv6 next hop (our session address, or none).
    a.next_hop = match (v6, local) {
        (false, IpAddr::V4(_)) | (true, IpAddr::V6(_)) => Some(local),
        (false, IpAddr::V6(l)) => l.to_ipv4_mapped().map(IpAddr::V4),
        (true, IpAddr::V4(_)) => None,
    };
    a.next_hop?;
    a.link_local = None;
    if let Some(e) = export {
        e.set.apply(&mut a, local_as);
    }
    Some(a)
}

/// RFC 1997 well-known communities.
pub const NO_EXPORT: u32 = 0xffff_ff01;
pub const NO_ADVERTISE: u32 = 0xffff_ff02;
pub const NO_EXPORT_SUBCONFED: u32 = 0xffff_ff03;
/// RFC 8326.
pub const GRACEFUL_SHUTDOWN: u32 = 0xffff_0000;
/// RFC 7999.
pub const BLACKHOLE: u32 = 0xffff_029a;

/// Conditions on a route's attributes: any of the communities, any of the large ones. Empty
/// lists are no condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Match {
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
}

impl Match {
    pub fn matches(&self, a: &Attrs) -> bool {
        (self.communities.is_empty() || self.communities.iter().any(|c| a.communities.contains(c)))
            && (self.large_communities.is_empty()
                || self
                    .large_communities
                    .iter()
                    .any(|c| a.large_communities.contains(c)))
    }
}

/// What a policy sets on the routes it lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// Added (once each) to the route's communities.
    pub communities: Vec<u32>,
    pub large_communities: Vec<[u32; 3]>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// Our AS this many more times at the front of the AS_PATH (export towards eBGP).
    pub prepend: u8,
}

impl Set {
    pub fn is_empty(&self) -> bool {
        *self == Set::default()
    }

    /// Applies the settings to `a`; `local_as` is what prepending repeats.
    pub fn apply(&self, a: &mut Attrs, local_as: u32) {
        for c in &self.communities {
            if !a.communities.contains(c) {
                a.communities.push(*c);
            }
        }
        for c in &self.large_communities {
            if !a.large_communities.contains(c) {
                a.large_communities.push(*c);
            }
        }
        if let Some(lp) = self.local_pref {
            a.local_pref = Some(lp);
        }
        if let Some(med) = self.med {
            a.med = Some(med);
        }
        for _ in 0..self.prepend {
            match a.as_path.first_mut() {
                Some(Segment::Sequence(v)) if v.len() < 255 => v.insert(0, local_as),
                _ => a.as_path.insert(0, Segment::Sequence(vec![local_as])),
            }
        }
    }
}

/// Whether a route may be advertised to a peer at all, by its well-known communities
/// (RFC 1997): NO_ADVERTISE to nobody, NO_EXPORT and NO_EXPORT_SUBCONFED not to eBGP peers.
pub fn advertisable(a: &Attrs, to_ebgp: bool) -> bool {
    !a.communities.contains(&NO_ADVERTISE)
        && !(to_ebgp
            && (a.communities.contains(&NO_EXPORT) || a.communities.contains(&NO_EXPORT_SUBCONFED)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_and_sets() {
        let mut a = Attrs {
            communities: vec![7224 << 16 | 7300],
            as_path: vec![Segment::Sequence(vec![64512])],
            ..Attrs::default()
        };
        assert!(Match::default().matches(&a));
        let m = Match {
            communities: vec![1, 7224 << 16 | 7300],
            ..Match::default()
        };
        assert!(m.matches(&a));
        let m = Match {
            large_communities: vec![[1, 2, 3]],
            ..Match::default()
        };
        assert!(!m.matches(&a));
        let s = Set {
            communities: vec![7224 << 16 | 7300, 65010 << 16 | 1],
            local_pref: Some(200),
            med: Some(5),
            prepend: 2,
            ..Set::default()
        };
        s.apply(&mut a, 65010);
        assert_eq!(a.communities, [7224 << 16 | 7300, 65010 << 16 | 1]);
        assert_eq!((a.local_pref, a.med), (Some(200), Some(5)));
        assert_eq!(a.as_path, [Segment::Sequence(vec![65010, 65010, 64512])]);
    }

    #[test]
    fn well_known_communities_limit_advertisement() {
        let mut a = Attrs::default();
        assert!(advertisable(&a, true));
        a.communities = vec![NO_EXPORT];
        assert!(!advertisable(&a, true));
        assert!(advertisable(&a, false));
        a.communities = vec![NO_ADVERTISE];
        assert!(!advertisable(&a, false));
    }
}

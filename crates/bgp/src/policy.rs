//! Route policy beyond prefix lists: matching on communities (RFC 1997) and large
//! communities (RFC 8092), and setting communities, LOCAL_PREF, MED and AS-path prepends.
//! The well-known NO_EXPORT and NO_ADVERTISE communities are honoured when routes go out.
//! (The config crate reads communities as people write them.)

use crate::update::{Attrs, Segment};

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

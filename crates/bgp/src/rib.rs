//! The RIB, sans IO: routes learnt from each peer (Adj-RIB-In, after import policy), the
//! decision process of RFC 4271 §9.1 choosing the best per prefix (Loc-RIB), and the best-
//! route changes that come out of it for the FIB and for export. Attribute sets are interned:
//! a table of a million prefixes from one peer holds a handful of them.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::update::{Attrs, Nlri, Origin, Update};

/// Which peer a route came from; `LOCAL` for routes this speaker originates.
pub type PeerId = u32;
pub const LOCAL: PeerId = 0;

/// What the decision process needs to know about a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub ebgp: bool,
}

/// The default LOCAL_PREF given to routes without one (eBGP; RFC 4271 §5.1.5 leaves it to
/// configuration, 100 is what every implementation uses).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// A route of the Loc-RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Best {
    pub peer: PeerId,
    pub attrs: Arc<Attrs>,
    /// With multipath: the next hops of every route equal to the best one (itself included).
    pub next_hops: Vec<IpAddr>,
}

/// A change of the best route for a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub prefix: Nlri,
    /// None: no route any more.
    pub best: Option<Best>,
}

#[derive(Default)]
struct Entry {
    /// One route per peer that announced the prefix.
    routes: Vec<(PeerId, Arc<Attrs>)>,
    /// Routes of peers that restarted (RFC 4724), kept until they are announced again or
    /// the peer's End-of-RIB or restart time passes.
    stale: Vec<PeerId>,
    best: Option<Best>,
}

fn family(p: &Nlri) -> usize {
    usize::from(p.addr.is_ipv6())
}

pub struct Rib {
    peers: HashMap<PeerId, PeerInfo>,
    table: HashMap<Nlri, Entry>,
    attrs: HashSet<Arc<Attrs>>,
    multipath: bool,
    /// Prefixes each peer has in the table, IPv4 and IPv6, for max-prefix and for flushing.
    counts: HashMap<PeerId, [usize; 2]>,
    /// Interned sets at which the unused ones are next dropped.
    tidy_at: usize,
    /// Networks whose next hops cannot be reached now (a link down): routes through them
    /// are not candidates (RFC 4271 §9.1.2.1).
    down: Vec<Nlri>,
}

/// Whether `a` lies inside `net`.
pub fn net_contains(net: &Nlri, a: IpAddr) -> bool {
    let bits = u32::from(net.len);
    match (net.addr, a) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m = u32::MAX.checked_shl(32 - bits.min(32)).unwrap_or(0);
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let m = u128::MAX.checked_shl(128 - bits.min(128)).unwrap_or(0);
            u128::from(n) & m == u128::from(a) & m
        }
        _ => false,
    }
}

impl Rib {
    pub fn new(multipath: bool) -> Rib {
        Rib {
            peers: HashMap::new(),
            table: HashMap::new(),
            attrs: HashSet::new(),
            multipath,
            counts: HashMap::new(),
            tidy_at: 64,
            down: Vec::new(),
        }
    }

    pub fn set_peer(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
    }

    /// Prefixes in the Loc-RIB.
    pub fn len(&self) -> usize {
        self.table.values().filter(|e| e.best.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prefixes a peer has in the table.
    pub fn count(&self, peer: PeerId) -> usize {
        self.count_by_family(peer).iter().sum()
    }

    /// Prefixes a peer has in the table: IPv4, IPv6.
    pub fn count_by_family(&self, peer: PeerId) -> [usize; 2] {
        self.counts.get(&peer).copied().unwrap_or([0, 0])
    }

    /// Every route to `prefix`, best first: (peer, attributes).
    pub fn routes(&self, prefix: &Nlri) -> Vec<(PeerId, Arc<Attrs>)> {
        let Some(e) = self.table.get(prefix) else {
            return vec![];
        };
        let best = e.best.as_ref().map(|b| b.peer);
        let mut out = e.routes.clone();
        out.sort_by_key(|(p, _)| Some(*p) != best);
        out
    }

    /// The networks whose next hops are unreachable now; every prefix is decided again.
    /// Returns the best-route changes.
    pub fn set_unreachable(&mut self, nets: Vec<Nlri>) -> Vec<Change> {
        if nets == self.down {
            return vec![];
        }
        self.down = nets;
        let prefixes: Vec<Nlri> = self.table.keys().copied().collect();
        let mut out = Vec::new();
        for p in prefixes {
            self.decide(p, &mut out);
        }
        out
    }

    fn reachable(down: &[Nlri], a: &Attrs) -> bool {
        a.next_hop
            .is_none_or(|nh| !down.iter().any(|n| net_contains(n, nh)))
    }

    /// What is known of a peer.
    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    pub fn best(&self, prefix: &Nlri) -> Option<&Best> {
        self.table.get(prefix).and_then(|e| e.best.as_ref())
    }

    /// Every best route.
    pub fn iter(&self) -> impl Iterator<Item = (&Nlri, &Best)> {
        self.table
            .iter()
            .filter_map(|(p, e)| e.best.as_ref().map(|b| (p, b)))
    }

    fn intern(&mut self, a: &Arc<Attrs>) -> Arc<Attrs> {
        if let Some(x) = self.attrs.get(a) {
            return x.clone();
        }
        // Sets no route uses any more go once the set has doubled since the last look:
        // amortised, and bounded by twice what is in use.
        if self.attrs.len() >= self.tidy_at {
            self.tidy();
            self.tidy_at = self.attrs.len() * 2 + 64;
        }
        self.attrs.insert(a.clone());
        a.clone()
    }

    /// Drops interned attribute sets no route uses any more.
    pub fn tidy(&mut self) {
        self.attrs.retain(|a| Arc::strong_count(a) > 1);
    }

    /// Attribute sets interned now.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// Applies an UPDATE from `peer` (already through import policy); the best-route
    /// changes it makes.
    pub fn apply(&mut self, peer: PeerId, u: &Update) -> Vec<Change> {
        let mut changes = Vec::new();
        for p in &u.withdrawn {
            self.remove(peer, p, &mut changes);
        }
        if let Some(a) = &u.attrs {
            let a = self.intern(a);
            for p in &u.announced {
                self.insert(peer, *p, a.clone(), &mut changes);
            }
        }
        changes
    }

    /// Adds or replaces `peer`'s route to `prefix`.
    pub fn insert(&mut self, peer: PeerId, prefix: Nlri, attrs: Arc<Attrs>, out: &mut Vec<Change>) {
        let e = self.table.entry(prefix).or_default();
        e.stale.retain(|&s| s != peer);
        match e.routes.iter_mut().find(|(p, _)| *p == peer) {
            Some(r) => r.1 = attrs,
            None => {
                e.routes.push((peer, attrs));
                self.counts.entry(peer).or_default()[family(&prefix)] += 1;
            }
        }
        self.decide(prefix, out);
    }

    /// Removes `peer`'s route to `prefix`, if it has one.
    pub fn remove(&mut self, peer: PeerId, prefix: &Nlri, out: &mut Vec<Change>) {
        let Some(e) = self.table.get_mut(prefix) else {
            return;
        };
        let before = e.routes.len();
        e.routes.retain(|(p, _)| *p != peer);
        e.stale.retain(|&s| s != peer);
        if e.routes.len() == before {
            return;
        }
        if let Some(c) = self.counts.get_mut(&peer) {
            c[family(prefix)] -= 1;
        }
        self.decide(*prefix, out);
        if self.table.get(prefix).is_some_and(|e| e.routes.is_empty()) {
            self.table.remove(prefix);
        }
    }

    /// The session with `peer` went down without graceful restart: all its routes go.
    pub fn flush(&mut self, peer: PeerId) -> Vec<Change> {
        let prefixes: Vec<Nlri> = self
            .table
            .iter()
            .filter(|(_, e)| e.routes.iter().any(|(p, _)| *p == peer))
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in prefixes {
            self.remove(peer, &p, &mut out);
        }
        self.counts.remove(&peer);
        out
    }

    /// The peer restarts with graceful restart (RFC 4724 §4.2): its routes stay, marked
    /// stale, and keep forwarding.
    pub fn mark_stale(&mut self, peer: PeerId) {
        for e in self.table.values_mut() {
            if e.routes.iter().any(|(p, _)| *p == peer) && !e.stale.contains(&peer) {
                e.stale.push(peer);
            }
        }
    }

    /// The peer's End-of-RIB came, or its restart time ran out: routes still stale go.
    pub fn sweep_stale(&mut self, peer: PeerId) -> Vec<Change> {
        let prefixes: Vec<Nlri> = self
            .table
            .iter()
            .filter(|(_, e)| e.stale.contains(&peer))
            .map(|(p, _)| *p)
            .collect();
        let mut out = Vec::new();
        for p in prefixes {
            self.remove(peer, &p, &mut out);
        }
        out
    }

    /// Runs the decision process for `prefix`; records a change if the best moved.
    fn decide(&mut self, prefix: Nlri, out: &mut Vec<Change>) {
        let Some(e) = self.table.get_mut(&prefix) else {
            return;
        };
        let mut best: Option<&(PeerId, Arc<Attrs>)> = None;
        let down = &self.down;
        for r in e.routes.iter().filter(|r| Rib::reachable(down, &r.1)) {
            best = match best {
                None => Some(r),
                Some(b) => {
                    if better(r, b, &self.peers) == std::cmp::Ordering::Greater {
                        Some(r)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let new = best.map(|(peer, attrs)| {
            let mut next_hops: Vec<IpAddr> = attrs.next_hop.into_iter().collect();
            if self.multipath {
                for (p, a) in e.routes.iter().filter(|r| Rib::reachable(down, &r.1)) {
                    if *p != *peer && equal_cost((p, a), (peer, attrs), &self.peers) {
                        if let Some(nh) = a.next_hop {
                            if !next_hops.contains(&nh) {
                                next_hops.push(nh);
                            }
                        }
                    }
                }
                next_hops.sort();
            }
            Best {
                peer: *peer,
                attrs: attrs.clone(),
                next_hops,
            }
        });
        if new != e.best {
            e.best = new.clone();
            out.push(Change { prefix, best: new });
        }
    }
}

fn local_pref(a: &Attrs) -> u32 {
    a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
}

fn origin_rank(o: Option<Origin>) -> u8 {
    o.map_or(2, |o| o as u8)
}

/// Compares two routes by RFC 4271 §9.1.2.2: Greater if `a` is better than `b`.
pub fn better(
    a: &(PeerId, Arc<Attrs>),
    b: &(PeerId, Arc<Attrs>),
    peers: &HashMap<PeerId, PeerInfo>,
) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    let (pa, aa) = (a.0, &*a.1);
    let (pb, ab) = (b.0, &*b.1);
    // Routes we originate win over learnt ones.
    if (pa == LOCAL) != (pb == LOCAL) {
        return if pa == LOCAL { Greater } else { Less };
    }
    // a) highest LOCAL_PREF
    let c = local_pref(aa).cmp(&local_pref(ab));
    if c != Equal {
        return c;
    }
    // b) shortest AS_PATH
    let c = ab.path_len().cmp(&aa.path_len());
    if c != Equal {
        return c;
    }
    // c) lowest ORIGIN
    let c = origin_rank(ab.origin).cmp(&origin_rank(aa.origin));
    if c != Equal {
        return c;
    }
    // d) lowest MED, between routes from the same neighbouring AS (a missing MED is 0).
    if aa.neighbor_as() == ab.neighbor_as() {
        let c = ab.med.unwrap_or(0).cmp(&aa.med.unwrap_or(0));
        if c != Equal {
            return c;
        }
    }
    let (ia, ib) = (peers.get(&pa), peers.get(&pb));
    // e) eBGP over iBGP
    let ea = ia.is_some_and(|p| p.ebgp);
    let eb = ib.is_some_and(|p| p.ebgp);
    if ea != eb {
        return if ea { Greater } else { Less };
    }
    // f) lowest BGP identifier, g) lowest peer address
    let key = |p: Option<&PeerInfo>| p.map(|p| (u32::from(p.router_id), p.address));
    key(ib).cmp(&key(ia))
}

/// Whether two routes tie up to the tie-breakers (RFC 4271 §9.1.2.2 a-e): candidates for
/// ECMP.
fn equal_cost(
    a: (&PeerId, &Arc<Attrs>),
    b: (&PeerId, &Arc<Attrs>),
    peers: &HashMap<PeerId, PeerInfo>,
) -> bool {
    let (aa, ab) = (&**a.1, &**b.1);
    let ebgp = |p: &PeerId| peers.get(p).is_some_and(|i| i.ebgp);
    local_pref(aa) == local_pref(ab)
        && aa.path_len() == ab.path_len()
        && aa.origin == ab.origin
        && (aa.neighbor_as() != ab.neighbor_as() || aa.med.unwrap_or(0) == ab.med.unwrap_or(0))
        && ebgp(a.0) == ebgp(b.0)
        && (*a.0 == LOCAL) == (*b.0 == LOCAL)
}

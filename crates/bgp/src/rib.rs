//! The RIB, sans IO: routes learnt from each peer (Adj-RIB-In, after import policy), the
//! decision process of RFC 4271 §9.1 choosing the best per prefix (Loc-RIB), and the best-
//! route changes that come out of it for the FIB and for export. Attribute sets are interned:
//! a table of a million prefixes from one peer holds a handful of them.

use std::collections::HashMap;

use interlink_table::{Interner, PerFamily};
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
    /// The next hop of the best usable route that goes through none of `next_hops`: where
    /// the FIB sends traffic at once when they fail (BGP PIC edge), before the decision is
    /// made again.
    pub backup: Option<IpAddr>,
}

/// A change of the best route for a prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub prefix: Nlri,
    /// None: no route any more.
    pub best: Option<Best>,
    /// Only the backup changed: the FIB is told, the peers are not (what they are sent is
    /// the same).
    pub backup_only: bool,
}

impl Change {
    fn new(prefix: Nlri, old: &Option<Best>, best: Option<Best>) -> Change {
        let backup_only = match (old, &best) {
            (Some(o), Some(n)) => {
                o.peer == n.peer && o.attrs == n.attrs && o.next_hops == n.next_hops
            }
            _ => false,
        };
        Change {
            prefix,
            best,
            backup_only,
        }
    }
}

/// An interned attribute set's number.
type AttrId = u32;

/// Interned attribute sets with their reference counts: a route holds a 4-octet id, not a
/// pointer, and a table from one peer holds a handful of sets.
type AttrTable = Interner<Arc<Attrs>>;

/// The high bit of a route's peer number: the route is stale (RFC 4724).
const STALE: u32 = 1 << 31;
/// The next bit, on an entry's first route: that route is the best (else no route is
/// usable: every next hop unreachable).
const BEST: u32 = 1 << 30;
const PEER_MASK: u32 = !(STALE | BEST);

/// One peer's route to a prefix: 8 octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Route {
    /// The peer, with the `STALE` and `BEST` bits.
    peer: u32,
    attrs: AttrId,
}

impl Route {
    fn peer(self) -> PeerId {
        self.peer & PEER_MASK
    }
}

/// The routes to one prefix, the best first: 16 octets for the usual single route.
#[derive(Debug, Default)]
struct Entry {
    first: Route,
    /// A thin pointer on purpose: 8 octets in every entry where a `Vec` would take 24, and
    /// most prefixes have one route.
    #[allow(clippy::box_collection)]
    more: Option<Box<Vec<Route>>>,
}

impl Entry {
    fn routes(&self) -> impl Iterator<Item = &Route> {
        std::iter::once(&self.first).chain(self.more.iter().flat_map(|m| m.iter()))
    }

    fn has_best(&self) -> bool {
        self.first.peer & BEST != 0
    }

    fn position(&self, peer: PeerId) -> Option<usize> {
        self.routes().position(|r| r.peer() == peer)
    }

    fn get_mut(&mut self, i: usize) -> &mut Route {
        if i == 0 {
            &mut self.first
        } else {
            &mut self.more.as_mut().expect("more routes")[i - 1]
        }
    }

    fn push(&mut self, r: Route) {
        self.more.get_or_insert_with(Default::default).push(r);
    }

    /// Removes route `i`; false if it was the only one (the entry goes).
    fn remove(&mut self, i: usize) -> bool {
        if i == 0 {
            match self.more.as_mut().filter(|m| !m.is_empty()) {
                None => return false,
                Some(m) => self.first = m.remove(0),
            }
        } else if let Some(m) = self.more.as_mut() {
            m.remove(i - 1);
        }
        if self.more.as_ref().is_some_and(|m| m.is_empty()) {
            self.more = None;
        }
        true
    }
}

/// The prefixes, IPv4 keyed in 8 octets, IPv6 in 17, in order: 24 octets a prefix for
/// the usual single route.
type Table = interlink_table::PrefixMap<Entry>;

pub struct Rib {
    peers: HashMap<PeerId, PeerInfo>,
    table: Table,
    attrs: AttrTable,
    multipath: bool,
    /// Prefixes each peer has in the table, IPv4 and IPv6, for max-prefix and for flushing.
    counts: HashMap<PeerId, PerFamily<usize>>,
    /// Prefixes with a best route.
    selected: usize,
    /// Networks whose next hops cannot be reached now (a link down): routes through them
    /// are not candidates (RFC 4271 §9.1.2.1).
    down: Vec<Nlri>,
}

/// Whether `a` lies inside `net`.
pub fn net_contains(net: &Nlri, a: IpAddr) -> bool {
    net.contains(a)
}

impl Rib {
    pub fn new(multipath: bool) -> Rib {
        Rib {
            peers: HashMap::new(),
            table: Table::default(),
            attrs: AttrTable::default(),
            multipath,
            counts: HashMap::new(),
            selected: 0,
            down: Vec::new(),
        }
    }

    pub fn set_peer(&mut self, id: PeerId, info: PeerInfo) {
        self.peers.insert(id, info);
    }

    /// Prefixes in the Loc-RIB.
    pub fn len(&self) -> usize {
        self.selected
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Prefixes a peer has in the table.
    pub fn count(&self, peer: PeerId) -> usize {
        self.count_by_family(peer).total()
    }

    /// Prefixes a peer has in the table: IPv4, IPv6.
    pub fn count_by_family(&self, peer: PeerId) -> PerFamily<usize> {
        self.counts.get(&peer).copied().unwrap_or_default()
    }

    /// Whether `peer` has a route to `prefix` in the table.
    pub fn holds(&self, peer: PeerId, prefix: &Nlri) -> bool {
        self.table
            .get(prefix)
            .is_some_and(|e| e.routes().any(|r| r.peer() == peer))
    }

    /// Every route to `prefix`, best first: (peer, attributes).
    pub fn routes(&self, prefix: &Nlri) -> Vec<(PeerId, Arc<Attrs>)> {
        self.table.get(prefix).map_or(vec![], |e| {
            e.routes()
                .map(|r| (r.peer(), self.attrs.get(r.attrs).clone()))
                .collect()
        })
    }

    /// What is known of a peer.
    pub fn peer(&self, id: PeerId) -> Option<&PeerInfo> {
        self.peers.get(&id)
    }

    /// The best route to `prefix`.
    pub fn best(&self, prefix: &Nlri) -> Option<Best> {
        self.table.get(prefix).and_then(|e| self.best_of(e))
    }

    /// Every best route, IPv4 first, in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (Nlri, Best)> + '_ {
        self.table
            .iter()
            .filter_map(|(p, e)| self.best_of(e).map(|b| (p, b)))
    }

    /// Every best route from `prefix` on (`prefix` included), in the order of `iter`: an
    /// export to a peer resumed where it stopped.
    pub fn iter_from(&self, prefix: &Nlri) -> impl Iterator<Item = (Nlri, Best)> + '_ {
        self.table
            .iter_from(prefix)
            .filter_map(|(p, e)| self.best_of(e).map(|b| (p, b)))
    }

    fn reachable(&self, r: &Route) -> bool {
        self.down.is_empty()
            || self
                .attrs
                .get(r.attrs)
                .next_hop
                .is_none_or(|nh| !self.down.iter().any(|n| net_contains(n, nh)))
    }

    /// The best route of an entry as the FIB and export see it: with multipath, the next
    /// hops of every usable route equal to it.
    fn best_of(&self, e: &Entry) -> Option<Best> {
        self.best_of_with(e, self.multipath)
    }

    fn best_of_with(&self, e: &Entry, multipath: bool) -> Option<Best> {
        if !e.has_best() {
            return None;
        }
        let b = e.first;
        let attrs = self.attrs.get(b.attrs);
        let mut next_hops: Vec<IpAddr> = attrs.next_hop.into_iter().collect();
        if multipath {
            let bp = (b.peer(), attrs);
            for r in e.routes().skip(1).filter(|r| self.reachable(r)) {
                let a = self.attrs.get(r.attrs);
                if equal_cost((&r.peer(), a), (&bp.0, bp.1), &self.peers) {
                    if let Some(nh) = a.next_hop {
                        if !next_hops.contains(&nh) {
                            next_hops.push(nh);
                        }
                    }
                }
            }
            next_hops.sort();
        }
        // The backup: the best of the usable routes through another next hop.
        let mut backup: Option<(PeerId, &Arc<Attrs>)> = None;
        for r in e.routes().skip(1).filter(|r| self.reachable(r)) {
            let a = self.attrs.get(r.attrs);
            if a.next_hop.is_none_or(|nh| next_hops.contains(&nh)) {
                continue;
            }
            let better_than = |(bp, ba): (PeerId, &Arc<Attrs>)| {
                better(&(r.peer(), a.clone()), &(bp, ba.clone()), &self.peers)
                    == std::cmp::Ordering::Greater
            };
            if backup.is_none_or(better_than) {
                backup = Some((r.peer(), a));
            }
        }
        Some(Best {
            peer: b.peer(),
            attrs: attrs.clone(),
            next_hops,
            backup: backup.and_then(|(_, a)| a.next_hop),
        })
    }

    /// Attribute sets interned now.
    pub fn attribute_sets(&self) -> usize {
        self.attrs.len()
    }

    /// The networks whose next hops are unreachable now; every prefix is decided again.
    /// Returns the best-route changes.
    pub fn set_unreachable(&mut self, nets: Vec<Nlri>) -> Vec<Change> {
        if nets == self.down {
            return vec![];
        }
        // Each prefix's best as it was, under the old set (with multipath, the set of next
        // hops it had, which the new one may shrink without changing the best route), then
        // decided again under the new one.
        let mut other = nets;
        let prefixes = self.table.prefixes_where(|_| true);
        let mut out = Vec::new();
        for p in prefixes {
            let old = self.table.get(&p).and_then(|e| self.best_of(e));
            std::mem::swap(&mut self.down, &mut other);
            self.decide(p, old, &mut out);
            std::mem::swap(&mut self.down, &mut other);
        }
        self.down = other;
        out
    }

    /// Turns ECMP multipath on or off; the prefixes whose next hops change with it come
    /// back as changes.
    pub fn set_multipath(&mut self, multipath: bool) -> Vec<Change> {
        if multipath == self.multipath {
            return vec![];
        }
        let mut out = Vec::new();
        for (prefix, e) in self.table.iter() {
            // Only prefixes with more than one route can change.
            if e.more.is_none() {
                continue;
            }
            let old = self.best_of(e);
            let new = self.best_of_with(e, multipath);
            if new != old {
                out.push(Change::new(prefix, &old, new));
            }
        }
        self.multipath = multipath;
        out
    }

    /// Applies an UPDATE from `peer` (already through import policy); the best-route
    /// changes it makes.
    pub fn apply(&mut self, peer: PeerId, u: &Update) -> Vec<Change> {
        let mut changes = Vec::new();
        for p in &u.withdrawn {
            self.remove(peer, p, &mut changes);
        }
        if let Some(a) = &u.attrs {
            if u.announced.is_empty() {
                return changes;
            }
            let id = self.attrs.intern(a);
            for p in &u.announced {
                self.attrs.retain(id);
                self.insert_id(peer, *p, id, &mut changes);
            }
            self.attrs.release(id);
        }
        changes
    }

    /// Adds or replaces `peer`'s route to `prefix`.
    pub fn insert(&mut self, peer: PeerId, prefix: Nlri, attrs: Arc<Attrs>, out: &mut Vec<Change>) {
        let id = self.attrs.intern(&attrs);
        self.insert_id(peer, prefix, id, out);
    }

    /// `insert` with an interned set, whose reference this takes over.
    fn insert_id(&mut self, peer: PeerId, prefix: Nlri, id: AttrId, out: &mut Vec<Change>) {
        let route = Route { peer, attrs: id };
        let Some(e) = self.table.get(&prefix) else {
            // A new prefix: its one route is the best if it is usable.
            self.counts.entry(peer).or_default()[prefix.afi()] += 1;
            let mut first = route;
            if self.reachable(&first) {
                first.peer |= BEST;
            }
            let e = Entry { first, more: None };
            if e.has_best() {
                self.selected += 1;
                out.push(Change::new(prefix, &None, self.best_of(&e)));
            }
            self.table.insert(&prefix, e);
            return;
        };
        let old = self.best_of(e);
        let e = self.table.get_mut(&prefix).expect("the entry");
        match e.position(peer) {
            Some(i) => {
                let r = e.get_mut(i);
                let was = r.attrs;
                // Announced again: no longer stale.
                r.peer &= !STALE;
                r.attrs = id;
                self.attrs.release(was);
            }
            None => {
                e.push(route);
                self.counts.entry(peer).or_default()[prefix.afi()] += 1;
            }
        }
        self.decide(prefix, old, out);
    }

    /// Removes `peer`'s route to `prefix`, if it has one.
    pub fn remove(&mut self, peer: PeerId, prefix: &Nlri, out: &mut Vec<Change>) {
        let Some(e) = self.table.get(prefix) else {
            return;
        };
        let Some(i) = e.position(peer) else {
            return;
        };
        let old = self.best_of(e);
        let e = self.table.get_mut(prefix).expect("the entry");
        let id = e.get_mut(i).attrs;
        let keep = e.remove(i);
        self.attrs.release(id);
        if let Some(c) = self.counts.get_mut(&peer) {
            c[prefix.afi()] -= 1;
        }
        if keep {
            self.decide(*prefix, old, out);
        } else {
            self.table.remove(prefix);
            if old.is_some() {
                self.selected -= 1;
                out.push(Change::new(*prefix, &old, None));
            }
        }
    }

    /// The session with `peer` went down without graceful restart: all its routes go.
    pub fn flush(&mut self, peer: PeerId) -> Vec<Change> {
        let prefixes = self
            .table
            .prefixes_where(|e| e.routes().any(|r| r.peer() == peer));
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
            if let Some(i) = e.position(peer) {
                e.get_mut(i).peer |= STALE;
            }
        }
    }

    /// The peer's End-of-RIB came, or its restart time ran out: routes still stale go.
    pub fn sweep_stale(&mut self, peer: PeerId) -> Vec<Change> {
        let prefixes = self
            .table
            .prefixes_where(|e| e.routes().any(|r| r.peer() == peer && r.peer & STALE != 0));
        let mut out = Vec::new();
        for p in prefixes {
            self.remove(peer, &p, &mut out);
        }
        out
    }

    /// Removes up to `max` of `peer`'s stale routes, walking the table from `from`; returns
    /// the changes and where to go on from (None: the walk is done). A withdrawal of a whole
    /// table, a chunk at a time, so that no turn holds a million changes.
    pub fn sweep_stale_from(
        &mut self,
        peer: PeerId,
        from: &Nlri,
        max: usize,
    ) -> (Vec<Change>, Option<Nlri>) {
        let mut batch = Vec::new();
        let mut next = None;
        for (p, e) in self.table.iter_from(from) {
            if batch.len() == max {
                next = Some(p);
                break;
            }
            if e.routes().any(|r| r.peer() == peer && r.peer & STALE != 0) {
                batch.push(p);
            }
        }
        let mut out = Vec::new();
        for p in batch {
            self.remove(peer, &p, &mut out);
        }
        (out, next)
    }

    /// Runs the decision process for `prefix`, whose best was `old`; records a change if the
    /// best moved. The best route goes first in the entry.
    fn decide(&mut self, prefix: Nlri, old: Option<Best>, out: &mut Vec<Change>) {
        let Some(e) = self.table.get(&prefix) else {
            return;
        };
        let mut best: Option<(usize, Route)> = None;
        for (i, r) in e.routes().enumerate() {
            if !self.reachable(r) {
                continue;
            }
            best = match best {
                None => Some((i, *r)),
                Some((bi, b)) => {
                    let (ra, rb) = (
                        (r.peer(), self.attrs.get(r.attrs).clone()),
                        (b.peer(), self.attrs.get(b.attrs).clone()),
                    );
                    if better(&ra, &rb, &self.peers) == std::cmp::Ordering::Greater {
                        Some((i, *r))
                    } else {
                        Some((bi, b))
                    }
                }
            };
        }
        let e = self.table.get_mut(&prefix).expect("the entry");
        e.first.peer &= !BEST;
        if let Some((i, _)) = best {
            if i != 0 {
                let m = e.more.as_mut().expect("more routes");
                std::mem::swap(&mut e.first, &mut m[i - 1]);
            }
            e.first.peer |= BEST;
        }
        let e = self.table.get(&prefix).expect("the entry");
        let new = self.best_of(e);
        match (&old, &new) {
            (None, Some(_)) => self.selected += 1,
            (Some(_), None) => self.selected -= 1,
            _ => {}
        }
        if new != old {
            out.push(Change::new(prefix, &old, new));
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

//! Kernel nexthop objects (Linux 5.3, `ip nexthop`) as the FIB keeps them: one object per
//! distinct next hop (gateway and interface), shared by every route through it, so that a
//! route request names an id instead of carrying its next hop, and one delete takes every
//! route using the object with it (for IPv4 in a single pass of the kernel's trie).
//!
//! An ECMP route goes through a group (`NHA_GROUP`): one per distinct set of next hops and
//! weights, whose members are the objects of its next hops, added before it and kept while
//! it uses them.
//!
//! This module holds the table of objects and what the FIB counts per object; the decisions
//! (when to add, when a delete beats route-by-route deletes, what a link going down took)
//! are the FIB core's, in `fib.rs`.
//!
//! An object's gateway must come with its interface (`NHA_OIF`: the kernel does not resolve
//! it, as it does for a route's `RTA_GATEWAY`). Routes name a gateway alone, so the FIB finds
//! its interface among the connected networks the kernel reported; a gateway in none of them
//! (a recursive next hop) keeps today's per-route next hop, which the kernel resolves.
//!
//! Next hops on TUN interfaces stay per route too. A TUN loses its carrier whenever the
//! process behind it closes its queues, a restart of that process included (interlinkd's own
//! links, kept across a restart, are TUNs), and the kernel then deletes every object on the
//! interface with every route through them (`nh_netdev_event`, on NETDEV_CHANGE without
//! IFF_LOWER_UP); a route with its own next hop stays, marked linkdown, and forwards again
//! once the queues are back.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use interlink_table::PerFamily;

use crate::fib::RouteId;
use crate::route::{NextHop, Prefix, Route};

/// Where the FIB's own object ids start: above what people pick by hand (`ip nexthop add
/// id 1`), and the same after every restart, so that adopted ids and new ones do not meet.
const FIRST_ID: u32 = 0x494c_0000;
/// Times an add is tried with a fresh id after finding its id taken.
const ID_TRIES: u8 = 4;
/// What a group has as its `hop`: nothing.
const NO_HOP: NextHop = NextHop {
    gateway: None,
    ifindex: None,
    weight: 1,
};
/// Unmapped, in `of_route`.
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not in the kernel (yet, or any more).
    Absent,
    Adding,
    Present,
    /// Present, and switched between primary and backup by a request in flight: routes go
    /// through it meanwhile.
    Replacing,
    Deleting,
}

pub(crate) struct Obj {
    /// The kernel's id for it.
    pub id: u32,
    /// Gateway and interface, weight 1 (a group has none: see `group`).
    pub hop: NextHop,
    /// A group: its next hops with their weights, and the objects that carry them, in the
    /// same order. Empty for one next hop.
    pub group: Vec<(NextHop, u16)>,
    pub members: Vec<u32>,
    /// The groups this object is a member of: it stays while they do.
    pub in_groups: Vec<u32>,
    /// Made as a group's member, apart from the object routes through the same next hop
    /// use, so that a table's worth of those can still go with one delete of theirs.
    pub member: bool,
    /// A group whose members the kernel holds other than as listed (one was dropped with its
    /// interface, or was added again since): its member list is to be sent again.
    pub refresh: bool,
    /// Where routes through it go when `hop` fails (BGP PIC edge), if anywhere.
    pub backup: Option<NextHop>,
    /// Failed over: the kernel is to hold the backup.
    pub on_backup: bool,
    /// What the kernel holds (the backup or not), as last acked; and what the request in
    /// flight carries.
    pub kernel_on_backup: bool,
    pub sent_on_backup: bool,
    pub state: State,
    /// The kernel refused it: routes through this next hop carry it themselves, as they do
    /// without objects, until something changes (a link or an address comes up).
    pub failed: bool,
    /// Adopted at start: kept until the sweep, whoever uses it.
    pub stale: bool,
    /// Adopted at start and not yet taken by a route a source wants: the first one that
    /// wants its next hop protected takes it with its backup (see `Objects::for_key`).
    pub unclaimed: bool,
    /// Queued for a request (an add or a delete, decided when it goes).
    pub queued: bool,
    /// To be deleted, with the routes through it: the routes' own deletes are not sent.
    pub doomed: bool,
    /// Flushed by the kernel (its interface went down) while its add was in flight.
    pub flushed: bool,
    /// Listed by the dump under way.
    pub seen: bool,
    /// Adds tried with a fresh id after `EEXIST`.
    pub tries: u8,
    /// The routes (interned next-hop sets) that go through it: desired ones and ones the
    /// kernel reported. Each holds a reference, so that its number is not reused while
    /// mapped here.
    pub rids: Vec<RouteId>,
    /// Slots whose kernel route uses it, per family.
    pub kernel: PerFamily<u32>,
    /// Of those, the slots that the sources still want a route for (any route): while there
    /// are any, a delete of the object would take routes still wanted.
    pub kept: u32,
    /// Prefixes waiting for it to be added (or deleted, then added again).
    pub waiting: Vec<Prefix>,
}

impl Obj {
    fn new(id: u32, hop: NextHop, backup: Option<NextHop>, state: State) -> Obj {
        Obj {
            id,
            hop,
            group: Vec::new(),
            members: Vec::new(),
            in_groups: Vec::new(),
            member: false,
            refresh: false,
            backup,
            on_backup: false,
            kernel_on_backup: false,
            sent_on_backup: false,
            state,
            failed: false,
            stale: false,
            unclaimed: false,
            queued: false,
            doomed: false,
            flushed: false,
            seen: true,
            tries: 0,
            rids: Vec::new(),
            kernel: PerFamily::default(),
            kept: 0,
            waiting: Vec::new(),
        }
    }

    pub fn is_group(&self) -> bool {
        !self.group.is_empty()
    }

    /// The route that goes through this object.
    pub fn route(&self) -> Route {
        if self.is_group() {
            return Route::Unicast(
                self.group
                    .iter()
                    .map(|(h, w)| NextHop {
                        weight: *w,
                        ..h.clone()
                    })
                    .collect(),
            );
        }
        match &self.backup {
            Some(b) => Route::protected(self.hop.clone(), b.clone()),
            None => Route::Unicast(vec![self.hop.clone()]),
        }
    }

    /// The next hop the kernel is to hold for it now.
    pub fn active(&self) -> &NextHop {
        match &self.backup {
            Some(b) if self.on_backup => b,
            _ => &self.hop,
        }
    }

    /// Routes may name it: the kernel holds it (perhaps being switched) and it stays.
    pub fn usable(&self) -> bool {
        matches!(self.state, State::Present | State::Replacing) && !self.doomed && !self.failed
    }
}

/// What a route can go through.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// One next hop, and its backup.
    Hop(NextHop, Option<NextHop>),
    /// A group: next hops with their weights, sorted.
    Group(Vec<(NextHop, u16)>),
}

#[derive(Default)]
pub(crate) struct Objects {
    /// Whether routes go through objects: the kernel has them and they are not turned off.
    pub enabled: bool,
    list: Vec<Option<Obj>>,
    free: Vec<u32>,
    by_hop: HashMap<(NextHop, Option<NextHop>, bool), u32>,
    by_group: HashMap<Vec<(NextHop, u16)>, u32>,
    by_id: HashMap<u32, u32>,
    /// Per interned route (its index): the object it goes through, or `NONE`.
    of_route: Vec<u32>,
    /// Objects with a request to make.
    pub queue: VecDeque<u32>,
    /// Ids of objects that are not ours (other daemons', an operator's).
    taken: HashSet<u32>,
    /// Ours, but of a shape the FIB does not make (groups, blackholes, duplicates): deleted
    /// at the sweep.
    pub orphans: Vec<u32>,
    /// Orphans whose delete is to be sent.
    pub orphans_due: Vec<u32>,
    next_id: u32,
    /// Prefixes waiting for objects, all together: bounded by the request window.
    pub parked: usize,
    /// Objects are not judged (deleted, forgotten) while a resync's dumps come in.
    pub hold: bool,
    /// An interface with objects on it went down: a dump of the objects is due.
    pub check_due: bool,
    /// Connected networks and their interfaces, from the kernel's address events.
    connected: Vec<(Prefix, u32)>,
    /// TUN interfaces, whose next hops stay per route (see the module documentation).
    tuns: HashSet<u32>,
}

impl Objects {
    pub fn get(&self, o: u32) -> &Obj {
        self.list[o as usize].as_ref().expect("a live object")
    }

    pub fn get_mut(&mut self, o: u32) -> &mut Obj {
        self.list[o as usize].as_mut().expect("a live object")
    }

    pub fn live(&self, o: u32) -> bool {
        self.list.get(o as usize).is_some_and(Option::is_some)
    }

    /// Every live object's number.
    pub fn all(&self) -> Vec<u32> {
        (0..self.list.len() as u32)
            .filter(|&o| self.list[o as usize].is_some())
            .collect()
    }

    pub fn present(&self) -> usize {
        self.list
            .iter()
            .flatten()
            .filter(|o| o.state == State::Present)
            .count()
    }

    /// The object route `rid` is mapped to.
    pub fn of(&self, rid: RouteId) -> Option<u32> {
        match self.of_route.get(rid.index()) {
            Some(&o) if o != NONE => Some(o),
            _ => None,
        }
    }

    pub fn by_id(&self, id: u32) -> Option<u32> {
        self.by_id.get(&id).copied()
    }

    /// The object for `hop` protected by `backup`, made (absent from the kernel) if there is
    /// none.
    pub fn for_hop(&mut self, hop: &NextHop, backup: Option<&NextHop>) -> u32 {
        self.for_key(hop, backup, false)
    }

    fn for_key(&mut self, hop: &NextHop, backup: Option<&NextHop>, member: bool) -> u32 {
        let key = (hop.clone(), backup.cloned(), member);
        if let Some(&o) = self.by_hop.get(&key) {
            self.get_mut(o).unclaimed = false;
            return o;
        }
        // After a restart, the object the kernel kept for `hop` was adopted without its
        // backup (the kernel knows only the next hop in use). The first route that wants
        // `hop` protected takes it over, backup and all: the routes the kernel already has
        // through it stay as they are, instead of each moving to a new object, and a
        // failure of `hop` switches them in one request again. (Routes wanting `hop`
        // unprotected later get an object of their own, as they would have before.)
        if let (Some(b), false) = (backup, member) {
            let plain = (hop.clone(), None, false);
            if let Some(&o) = self.by_hop.get(&plain) {
                let obj = self.get(o);
                if obj.unclaimed && !obj.on_backup && obj.group.is_empty() {
                    self.by_hop.remove(&plain);
                    let obj = self.get_mut(o);
                    obj.unclaimed = false;
                    obj.backup = Some(b.clone());
                    self.by_hop.insert(key, o);
                    return o;
                }
            }
        }
        let id = self.fresh_id();
        let mut obj = Obj::new(id, key.0, key.1, State::Absent);
        obj.member = member;
        self.insert(obj)
    }

    /// The group of `hops` (placed next hops, weight 1, with their weights), made (absent
    /// from the kernel) if there is none, with the objects of its members.
    pub fn for_group(&mut self, hops: &[(NextHop, u16)]) -> u32 {
        if let Some(&o) = self.by_group.get(hops) {
            return o;
        }
        let members: Vec<u32> = hops
            .iter()
            .map(|(h, _)| self.for_key(h, None, true))
            .collect();
        let id = self.fresh_id();
        let mut obj = Obj::new(id, NO_HOP, None, State::Absent);
        obj.group = hops.to_vec();
        self.insert_group(obj, members)
    }

    /// A group found in the kernel, whose members (kernel ids, weights) are objects known
    /// already; None if they are not, or a group of the same set is known.
    pub fn adopt_group(&mut self, id: u32, members: &[(u32, u16)], stale: bool) -> Option<u32> {
        if self.by_id.contains_key(&id) {
            return self.by_id(id).filter(|&o| self.get(o).is_group());
        }
        let mut objs = Vec::new();
        let mut hops = Vec::new();
        for &(m, w) in members {
            let o = self.by_id(m)?;
            let obj = self.get(o);
            if obj.is_group() || obj.backup.is_some() {
                return None;
            }
            objs.push(o);
            hops.push((obj.hop.clone(), w));
        }
        if self.by_group.contains_key(&hops) {
            return None;
        }
        // A member adopted as the object of routes through its next hop becomes the group's
        // (trading places with the object taken for a member, if that is no one's yet).
        for &m in &objs {
            if self.get(m).member {
                continue;
            }
            let hop = self.get(m).hop.clone();
            let other = self.by_hop.get(&(hop.clone(), None, true)).copied();
            if let Some(x) = other {
                if !self.get(x).in_groups.is_empty() {
                    return None;
                }
                self.get_mut(x).member = false;
                self.by_hop.insert((hop.clone(), None, false), x);
            } else {
                self.by_hop.remove(&(hop.clone(), None, false));
            }
            self.get_mut(m).member = true;
            self.by_hop.insert((hop, None, true), m);
        }
        let mut obj = Obj::new(id, NO_HOP, None, State::Present);
        obj.group = hops;
        obj.stale = stale;
        Some(self.insert_group(obj, objs))
    }

    fn insert_group(&mut self, mut obj: Obj, members: Vec<u32>) -> u32 {
        obj.members = members.clone();
        let (key, id) = (obj.group.clone(), obj.id);
        let o = self.place_obj(obj);
        for m in members {
            self.get_mut(m).in_groups.push(o);
        }
        self.by_group.insert(key, o);
        self.by_id.insert(id, o);
        o
    }

    /// An object found in the kernel; None if one of the same next hop is known already.
    pub fn adopt(&mut self, id: u32, hop: NextHop, stale: bool) -> Option<u32> {
        if let Some(&o) = self.by_id.get(&id) {
            let obj = self.get_mut(o);
            let same = *obj.active() == hop;
            if same && obj.state == State::Absent {
                obj.state = State::Present;
            }
            return same.then_some(o);
        }
        // What it was a backup for, the kernel does not keep: adopted without one. Whether it
        // was a group's member shows when a group names it (see `adopt_group`); a second
        // object of the same next hop is taken for one, and goes at the sweep if no group
        // names it.
        let member = match (
            self.by_hop.contains_key(&(hop.clone(), None, false)),
            self.by_hop.contains_key(&(hop.clone(), None, true)),
        ) {
            (false, _) => false,
            (true, false) => true,
            (true, true) => return None,
        };
        let mut obj = Obj::new(id, hop, None, State::Present);
        obj.stale = stale;
        obj.unclaimed = stale && !member;
        obj.member = member;
        Some(self.insert(obj))
    }

    /// Someone else's object: its id is not ours to use.
    pub fn foreign(&mut self, id: u32) {
        self.taken.insert(id);
    }

    fn insert(&mut self, obj: Obj) -> u32 {
        let (hop, id) = ((obj.hop.clone(), obj.backup.clone(), obj.member), obj.id);
        let o = self.place_obj(obj);
        self.by_hop.insert(hop, o);
        self.by_id.insert(id, o);
        o
    }

    fn place_obj(&mut self, obj: Obj) -> u32 {
        match self.free.pop() {
            Some(o) => {
                self.list[o as usize] = Some(obj);
                o
            }
            None => {
                self.list.push(Some(obj));
                self.list.len() as u32 - 1
            }
        }
    }

    /// Route `rid` goes through object `o` (the caller holds a reference to it for the map).
    pub fn map(&mut self, rid: RouteId, o: u32) {
        let i = rid.index();
        if self.of_route.len() <= i {
            self.of_route.resize(i + 1, NONE);
        }
        self.of_route[i] = o;
        self.get_mut(o).rids.push(rid);
    }

    /// Forgets object `o`; the routes that were mapped to it, whose references the caller
    /// gives back.
    pub fn remove(&mut self, o: u32) -> Vec<RouteId> {
        let obj = self.list[o as usize].take().expect("a live object");
        if obj.is_group() {
            self.by_group.remove(&obj.group);
            for &m in &obj.members {
                self.get_mut(m).in_groups.retain(|&g| g != o);
            }
        } else {
            self.by_hop.remove(&(obj.hop, obj.backup, obj.member));
        }
        self.by_id.remove(&obj.id);
        for r in &obj.rids {
            self.of_route[r.index()] = NONE;
        }
        self.free.push(o);
        obj.rids
    }

    /// An add found its id taken: the object tries again under a fresh one, a few times.
    pub fn renumber(&mut self, o: u32) -> bool {
        let old = self.get(o).id;
        self.taken.insert(old);
        self.by_id.remove(&old);
        let id = self.fresh_id();
        self.by_id.insert(id, o);
        let obj = self.get_mut(o);
        obj.id = id;
        obj.tries += 1;
        obj.tries < ID_TRIES
    }

    fn fresh_id(&mut self) -> u32 {
        loop {
            let id = FIRST_ID.wrapping_add(self.next_id).max(1);
            self.next_id = self.next_id.wrapping_add(1);
            if !self.by_id.contains_key(&id) && !self.taken.contains(&id) {
                return id;
            }
        }
    }

    /// Queues `o` for a request, if it is not queued already.
    pub fn push(&mut self, o: u32) {
        let obj = self.get_mut(o);
        if !obj.queued {
            obj.queued = true;
            self.queue.push_back(o);
        }
    }

    /// Queues `o` ahead of everything: a switch to a backup.
    pub fn push_front(&mut self, o: u32) {
        if self.get(o).queued {
            self.queue.retain(|&q| q != o);
        }
        self.get_mut(o).queued = true;
        self.queue.push_front(o);
    }

    pub fn set_tun(&mut self, ifindex: u32, tun: bool) {
        if tun {
            self.tuns.insert(ifindex);
        } else {
            self.tuns.remove(&ifindex);
        }
    }

    pub fn connected(&mut self, ifindex: u32, prefix: Prefix, added: bool) {
        self.connected.retain(|&(p, i)| (p, i) != (prefix, ifindex));
        if added {
            self.connected.push((prefix, ifindex));
        }
    }

    /// What `route` can go through: the object of its one next hop (and backup), or the
    /// group of its next hops, each placed with its interface (given, or that of the longest
    /// connected network holding its gateway). None if a next hop cannot be placed (a
    /// backup that cannot is left out) or the route is of another kind.
    pub fn resolve(&self, route: &Route) -> Option<Resolved> {
        match route {
            Route::Unicast(hops) => match hops.as_slice() {
                [h] if h.weight == 1 => Some(Resolved::Hop(self.place(h)?, None)),
                [_] | [] => None,
                hops => {
                    let mut set = hops
                        .iter()
                        .map(|h| Some((self.place(h)?, h.weight)))
                        .collect::<Option<Vec<_>>>()?;
                    set.sort();
                    Some(Resolved::Group(set))
                }
            },
            Route::Protected(p) if p.primary.weight == 1 => Some(Resolved::Hop(
                self.place(&p.primary)?,
                self.place(&p.backup),
            )),
            _ => None,
        }
    }

    /// `h` with its interface, weight 1.
    fn place(&self, h: &NextHop) -> Option<NextHop> {
        let gw = h.gateway?;
        let ifindex = match h.ifindex {
            Some(i) => i,
            None => self.interface_of(gw)?,
        };
        if self.tuns.contains(&ifindex) {
            return None;
        }
        Some(NextHop {
            gateway: Some(gw),
            ifindex: Some(ifindex),
            weight: 1,
        })
    }

    fn interface_of(&self, gw: IpAddr) -> Option<u32> {
        self.connected
            .iter()
            .filter(|(p, _)| p.contains(gw))
            .max_by_key(|(p, _)| p.prefix_len())
            .map(|&(_, i)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop_of(o: &Objects, r: &Route) -> NextHop {
        match o.resolve(r) {
            Some(Resolved::Hop(h, _)) => h,
            r => panic!("{r:?}"),
        }
    }

    #[test]
    fn gateways_find_their_interface_in_the_longest_connected_network() {
        let mut o = Objects::default();
        o.connected(3, "192.0.2.0/24".parse().unwrap(), true);
        o.connected(4, "192.0.2.128/25".parse().unwrap(), true);
        let via = |g: &str| Route::unicast(vec![NextHop::via(g.parse().unwrap())]).unwrap();
        assert_eq!(hop_of(&o, &via("192.0.2.1")).ifindex, Some(3));
        assert_eq!(hop_of(&o, &via("192.0.2.200")).ifindex, Some(4));
        assert_eq!(o.resolve(&via("198.51.100.1")), None, "not connected");
        o.connected(4, "192.0.2.128/25".parse().unwrap(), false);
        assert_eq!(hop_of(&o, &via("192.0.2.200")).ifindex, Some(3));
        // Shapes that keep per-route next hops.
        assert_eq!(o.resolve(&Route::Blackhole), None);
        assert_eq!(o.resolve(&Route::Unicast(vec![NextHop::dev(3)])), None);
        let two = Route::unicast(vec![
            NextHop::via("192.0.2.1".parse().unwrap()),
            NextHop::via("192.0.2.2".parse().unwrap()),
        ])
        .unwrap();
        match o.resolve(&two) {
            Some(Resolved::Group(set)) => {
                assert_eq!(set.len(), 2);
                assert!(set.iter().all(|(h, w)| h.ifindex == Some(3) && *w == 1));
            }
            r => panic!("{r:?}"),
        }
        let far = Route::unicast(vec![
            NextHop::via("192.0.2.1".parse().unwrap()),
            NextHop::via("203.0.113.1".parse().unwrap()),
        ])
        .unwrap();
        assert_eq!(o.resolve(&far), None, "a member in no connected network");
        // A given interface is taken as it is.
        let ll = Route::Unicast(vec![NextHop {
            ifindex: Some(9),
            ..NextHop::via("fe80::1".parse().unwrap())
        }]);
        assert_eq!(hop_of(&o, &ll).ifindex, Some(9));
        // A protected route: both placed; a backup in no connected network is left out.
        let gw = |g: &str| NextHop::via(g.parse().unwrap());
        let Some(Resolved::Hop(p, b)) =
            o.resolve(&Route::protected(gw("192.0.2.1"), gw("192.0.2.200")))
        else {
            panic!("protected");
        };
        assert_eq!((p.ifindex, b.unwrap().ifindex), (Some(3), Some(3)));
        let Some(Resolved::Hop(_, b)) =
            o.resolve(&Route::protected(gw("192.0.2.1"), gw("203.0.113.1")))
        else {
            panic!("protected");
        };
        assert_eq!(b, None);
    }

    #[test]
    fn next_hops_on_a_tun_stay_per_route() {
        // A TUN's carrier goes with the process behind it, and the kernel flushes the
        // objects on it then: its next hops are never placed in one.
        let mut o = Objects::default();
        o.connected(3, "192.0.2.0/24".parse().unwrap(), true);
        o.connected(7, "169.254.0.0/30".parse().unwrap(), true);
        o.set_tun(7, true);
        let gw = |g: &str| NextHop::via(g.parse().unwrap());
        let via = |g: &str| Route::unicast(vec![gw(g)]).unwrap();
        assert_eq!(o.resolve(&via("169.254.0.2")), None);
        assert_eq!(hop_of(&o, &via("192.0.2.1")).ifindex, Some(3));
        let both = Route::unicast(vec![gw("192.0.2.1"), gw("169.254.0.2")]).unwrap();
        assert_eq!(o.resolve(&both), None, "a group with a member on a TUN");
        // A backup across the TUN is left out; a primary across it keeps the route off
        // objects.
        let Some(Resolved::Hop(_, b)) =
            o.resolve(&Route::protected(gw("192.0.2.1"), gw("169.254.0.2")))
        else {
            panic!("protected");
        };
        assert_eq!(b, None);
        assert_eq!(
            o.resolve(&Route::protected(gw("169.254.0.2"), gw("192.0.2.1"))),
            None
        );
        // The interface gone (or no longer a TUN), objects again.
        o.set_tun(7, false);
        assert_eq!(hop_of(&o, &via("169.254.0.2")).ifindex, Some(7));
    }

    #[test]
    fn ids_are_fresh_and_never_someone_elses() {
        let mut o = Objects::default();
        o.foreign(FIRST_ID);
        let hop = |g: &str| NextHop {
            ifindex: Some(3),
            ..NextHop::via(g.parse().unwrap())
        };
        let a = o.for_hop(&hop("192.0.2.1"), None);
        assert_eq!(
            o.for_hop(&hop("192.0.2.1"), None),
            a,
            "one object per next hop"
        );
        assert_ne!(o.get(a).id, FIRST_ID);
        let b = o.for_hop(&hop("192.0.2.2"), None);
        assert_ne!(o.get(a).id, o.get(b).id);
        // The same next hop with a backup is another object.
        let ab = o.for_hop(&hop("192.0.2.1"), Some(&hop("192.0.2.2")));
        assert_ne!(ab, a);
        assert_eq!(o.get(ab).active(), &hop("192.0.2.1"));
        o.get_mut(ab).on_backup = true;
        assert_eq!(o.get(ab).active(), &hop("192.0.2.2"));
        // An adopted object of a known next hop is taken for a group's member; a third is a
        // duplicate.
        let m = o.adopt(7, hop("192.0.2.1"), true).unwrap();
        assert!(o.get(m).member && !o.get(a).member);
        assert_eq!(o.adopt(9, hop("192.0.2.1"), true), None);
        // A group naming the object of routes trades it with the spare member.
        let g = o
            .adopt_group(10, &[(o.get(a).id, 1), (o.get(b).id, 2)], true)
            .unwrap();
        assert!(o.get(a).member && !o.get(m).member);
        assert_eq!(o.get(g).members, [a, b]);
        assert_eq!(o.get(a).in_groups, [g]);
        assert_eq!(
            o.for_hop(&hop("192.0.2.1"), None),
            m,
            "routes get the other"
        );
        assert_eq!(
            o.adopt_group(11, &[(12345, 1)], true),
            None,
            "an unknown member"
        );
        let c = o.adopt(8, hop("192.0.2.3"), true).unwrap();
        assert_eq!(o.by_id(8), Some(c));
        // Renumbered after EEXIST: the old id is never tried again, and the tries run out.
        let old = o.get(b).id;
        assert!(o.renumber(b));
        assert_ne!(o.get(b).id, old);
        assert_eq!(o.by_id(old), None);
        assert!(o.renumber(b) && o.renumber(b));
        assert!(!o.renumber(b));
        assert!(o.remove(c).is_empty());
        assert_eq!(o.by_id(8), None);
        assert_eq!(
            o.for_hop(&hop("192.0.2.3"), None),
            c,
            "the number is reused"
        );
    }
}

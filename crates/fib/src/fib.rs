//! The FIB's core, sans IO: what the sources (BGP, static routes) want for each prefix, what
//! the kernel holds in interlink's slot for it (its table and metric), and the requests that
//! bring the one to the other. The driver feeds it acks and kernel events and sends the
//! requests it hands out; no sockets here.
//!
//! Rules, after BIRD's kernel protocol and FRR's zebra:
//! - A prefix has at most one request in flight; changes that arrive meanwhile are coalesced
//!   into the state the next request carries. At most `window` requests are in flight.
//! - A new route is added with `NLM_F_EXCL`: a route that someone else put in the same slot
//!   (same table, prefix and metric) is reported as a conflict and left alone; ours are
//!   replaced, and deletes name our protocol, which the kernel matches.
//! - Routes found in the kernel at start with our protocol are adopted as stale: they keep
//!   forwarding, are taken over without a change when a source wants the same again, and are
//!   deleted by `sweep_stale` (once the sources have converged, or their time is up).
//! - An owned route deleted from outside is installed again; one that a foreign route
//!   replaced is reported.

use std::collections::{HashMap, VecDeque};

use interlink_table::{Interner, PerFamily, PrefixKey};
use std::net::IpAddr;
use std::num::NonZeroU32;

use crate::route::{Prefix, Route};
use crate::wire::{KernelEvent, KernelRoute, Op, Target};

/// An interned route: a full table shares a handful of next-hop sets. Non-zero, so that an
/// `Option<RouteId>` takes four octets in each of a million slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RouteId(NonZeroU32);

impl RouteId {
    fn index(self) -> usize {
        self.0.get() as usize - 1
    }

    fn of(index: usize) -> RouteId {
        RouteId(NonZeroU32::new(index as u32 + 1).expect("fewer than 2^32 routes"))
    }
}

/// The routes in use, each kept once: a table load through one gateway is one route.
#[derive(Default)]
struct Routes(Interner<Route>);

impl Routes {
    fn intern(&mut self, r: &Route) -> RouteId {
        RouteId::of(self.0.intern(r) as usize)
    }

    fn retain(&mut self, id: RouteId) -> RouteId {
        self.0.retain(id.index() as u32);
        id
    }

    fn release(&mut self, id: RouteId) {
        self.0.release(id.index() as u32);
    }

    fn get(&self, id: RouteId) -> &Route {
        self.0.get(id.index() as u32)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kernel {
    Absent,
    /// Someone else's route: never touched.
    Foreign,
    Ours(RouteId),
    /// Ours by protocol, but of a shape the FIB does not make: replaced.
    OursUnknown,
}

#[derive(Clone, Copy, Debug)]
struct Slot {
    desired: Option<RouteId>,
    kernel: Kernel,
    in_flight: bool,
    queued: bool,
    /// Adopted at start and not wanted again yet: kept until the sweep.
    stale: bool,
    /// The last request failed: not retried until something changes.
    failed: bool,
    /// The conflict with a foreign route has been reported.
    conflict: bool,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot::EMPTY
    }
}

impl Slot {
    const EMPTY: Slot = Slot {
        desired: None,
        kernel: Kernel::Absent,
        in_flight: false,
        queued: false,
        stale: false,
        failed: false,
        conflict: false,
    };

    fn unused(&self) -> bool {
        self.desired.is_none() && self.kernel == Kernel::Absent && !self.in_flight && !self.queued
    }
}

/// One request for the driver to encode and send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub seq: u32,
    pub op: Op,
    pub prefix: Prefix,
    /// The route to install (None for a delete).
    pub route: Option<RouteId>,
}

struct Pending {
    seq: u32,
    prefix: Prefix,
    op: Op,
    route: Option<RouteId>,
    /// Answered: popped once everything before it is too.
    done: bool,
}

/// The requests in flight, in the order they were sent: the kernel answers in that order, so
/// an ack is nearly always the first one's, found without a hash.
#[derive(Default)]
struct InFlight {
    q: VecDeque<Pending>,
    live: usize,
}

impl InFlight {
    fn len(&self) -> usize {
        self.live
    }

    fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn push(&mut self, p: Pending) {
        self.q.push_back(p);
        self.live += 1;
    }

    /// Takes the request with sequence number `seq` out, if it is in flight.
    fn take(&mut self, seq: u32) -> Option<(Prefix, Op, Option<RouteId>)> {
        let i = if self.q.front().is_some_and(|p| p.seq == seq) {
            0
        } else {
            self.q.iter().position(|p| p.seq == seq && !p.done)?
        };
        let p = &mut self.q[i];
        if p.done {
            return None;
        }
        p.done = true;
        let taken = (p.prefix, p.op, p.route.take());
        self.live -= 1;
        while self.q.front().is_some_and(|p| p.done) {
            self.q.pop_front();
        }
        Some(taken)
    }

    fn drain(&mut self) -> impl Iterator<Item = Pending> + '_ {
        self.live = 0;
        self.q.drain(..).filter(|p| !p.done)
    }
}

/// The slots of every prefix the FIB knows, in sorted arrays: a million routes take some
/// 28 octets each, where a hash map of `Prefix` took over 60.
type Slots = interlink_table::PrefixMap<Slot>;

/// Prefixes waiting for a request, per family (8 octets each for IPv4). Those queued to go
/// away are taken in a scrambled order within generations (what was queued when the previous
/// generation ran out is the next one, so nothing waits longer than two); the others in
/// arrival order. The two kinds take turns.
///
/// Why: the kernel's IPv4 trie deletes routes far faster in no particular order than in
/// address order, and BGP withdraws in address order (the RIB is sorted; BIRD, which walks a
/// hash table, does not). A million /24s through a bare pipelined writer here: deletes 13.4 s
/// in order, 5.8 to 6.8 s scrambled. Adds gain less in the kernel (11.1 s against 8.9 s) than
/// scrambled lookups cost in our own tables, so they keep their order.
#[derive(Default)]
struct Queue {
    v4: VecDeque<u64>,
    v6: VecDeque<(u128, u8)>,
    v4_gone: Scrambled<u64>,
    v6_gone: Scrambled<(u128, u8)>,
    /// Whose turn it is: the going ones or the others.
    gone_next: bool,
}

impl Queue {
    /// Queues `p`; `gone` if what is wanted for it now is no route.
    fn push_back(&mut self, p: Prefix, gone: bool) {
        match (p.key(), gone) {
            (PrefixKey::V4(k), false) => self.v4.push_back(k),
            (PrefixKey::V6(k), false) => self.v6.push_back(k),
            (PrefixKey::V4(k), true) => self.v4_gone.push(k),
            (PrefixKey::V6(k), true) => self.v6_gone.push(k),
        }
    }

    fn pop_front(&mut self) -> Option<Prefix> {
        self.gone_next = !self.gone_next;
        if self.gone_next {
            self.pop_gone().or_else(|| self.pop_kept())
        } else {
            self.pop_kept().or_else(|| self.pop_gone())
        }
    }

    fn pop_kept(&mut self) -> Option<Prefix> {
        self.v4
            .pop_front()
            .map(Prefix::from_v4_key)
            .or_else(|| self.v6.pop_front().map(Prefix::from_v6_key))
    }

    fn pop_gone(&mut self) -> Option<Prefix> {
        self.v4_gone
            .pop()
            .map(Prefix::from_v4_key)
            .or_else(|| self.v6_gone.pop().map(Prefix::from_v6_key))
    }

    fn is_empty(&self) -> bool {
        self.v4.is_empty()
            && self.v6.is_empty()
            && self.v4_gone.q.is_empty()
            && self.v6_gone.q.is_empty()
    }
}

/// A queue whose front `generation` entries are taken in a pseudo-random order.
struct Scrambled<T> {
    q: VecDeque<T>,
    /// Entries of the current generation still at the front of `q`.
    generation: usize,
    /// xorshift64 state: any fixed sequence serves, this is about order, not secrecy.
    rng: u64,
}

impl<T> Default for Scrambled<T> {
    fn default() -> Self {
        Scrambled {
            q: VecDeque::new(),
            generation: 0,
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl<T> Scrambled<T> {
    fn push(&mut self, v: T) {
        self.q.push_back(v);
    }

    fn pop(&mut self) -> Option<T> {
        if self.generation == 0 {
            self.generation = self.q.len();
        }
        if self.generation == 0 {
            return None;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let i = (self.rng % self.generation as u64) as usize;
        self.q.swap(0, i);
        self.generation -= 1;
        self.q.pop_front()
    }
}

/// What happened that someone should hear of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FibEvent {
    /// The kernel refused a request (errno, and its extended-ack message if any). The route
    /// is retried when it changes, or when a link comes up.
    Failed {
        prefix: Prefix,
        op: Op,
        errno: i32,
        message: Option<String>,
    },
    /// A route that interlink does not own sits in our slot: ours is not installed.
    Conflict {
        prefix: Prefix,
    },
    /// One of our routes was deleted from outside and is being installed again.
    Repaired {
        prefix: Prefix,
    },
    /// A link can no longer forward: next hops through it are gone (BGP is told).
    LinkDown {
        ifindex: u32,
        name: String,
    },
    LinkUp {
        ifindex: u32,
        name: String,
    },
    /// An address appeared on an interface: `address` is ours, `prefix` connected.
    AddressAdded {
        ifindex: u32,
        address: IpAddr,
        prefix: Prefix,
    },
    AddressRemoved {
        ifindex: u32,
        address: IpAddr,
        prefix: Prefix,
    },
}

/// Operation counters, for metrics: `[add, replace, delete]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibStats {
    pub ok: [u64; 3],
    pub failed: [u64; 3],
    pub repaired: u64,
    pub conflicts: u64,
    /// Routes of ours in the kernel, IPv4 and IPv6.
    pub installed: PerFamily<u64>,
}

fn op_index(op: Op) -> usize {
    match op {
        Op::Add => 0,
        Op::Replace => 1,
        Op::Delete => 2,
    }
}

pub struct Fib {
    target: Target,
    window: usize,
    slots: Slots,
    routes: Routes,
    queue: Queue,
    in_flight: InFlight,
    next_seq: u32,
    links: HashMap<u32, (String, bool)>,
    events: Vec<FibEvent>,
    stats: FibStats,
}

impl Fib {
    /// A FIB for routes in `target`, with at most `window` requests in flight.
    pub fn new(target: Target, window: usize) -> Fib {
        Fib {
            target,
            window: window.max(1),
            slots: Slots::default(),
            routes: Routes::default(),
            queue: Queue::default(),
            in_flight: InFlight::default(),
            next_seq: 1,
            links: HashMap::new(),
            events: Vec::new(),
            stats: FibStats::default(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn route(&self, id: RouteId) -> &Route {
        self.routes.get(id)
    }

    fn enqueue(&mut self, prefix: Prefix) {
        let slot = self.slots.entry(prefix);
        if !slot.queued {
            slot.queued = true;
            self.queue.push_back(prefix, slot.desired.is_none());
        }
    }

    fn release_kernel(&mut self, k: Kernel) {
        if let Kernel::Ours(id) = k {
            self.routes.release(id);
        }
    }

    fn tidy(&mut self, prefix: &Prefix) {
        if self.slots.get(prefix).is_some_and(Slot::unused) {
            self.slots.remove(prefix);
        }
    }

    fn count_installed(&mut self, prefix: &Prefix, delta: i64) {
        let n = &mut self.stats.installed[prefix.afi()];
        *n = n.saturating_add_signed(delta);
    }

    fn set_kernel(&mut self, prefix: &Prefix, k: Kernel) {
        let Some(slot) = self.slots.get_mut(prefix) else {
            return;
        };
        let old = std::mem::replace(&mut slot.kernel, k);
        let was = matches!(old, Kernel::Ours(_) | Kernel::OursUnknown);
        let is = matches!(k, Kernel::Ours(_) | Kernel::OursUnknown);
        self.release_kernel(old);
        self.count_installed(prefix, i64::from(is) - i64::from(was));
    }

    /// What the sources want for `prefix` now (None: no route). Replaces what they wanted
    /// before; a request not yet sent for the prefix carries the newest state only.
    pub fn set(&mut self, prefix: Prefix, route: Option<&Route>) {
        let id = route.map(|r| self.routes.intern(r));
        let slot = self.slots.entry(prefix);
        let old = std::mem::replace(&mut slot.desired, id);
        if let Some(old) = old {
            self.routes.release(old);
        }
        if old == id {
            // The same again: whatever is under way for it (a request, a failure waiting
            // for a change, a reported conflict, a stale route awaiting the sweep) stands.
            self.tidy(&prefix);
            return;
        }
        slot.failed = false;
        slot.conflict = false;
        if id.is_some() {
            slot.stale = false;
        }
        if !slot.queued {
            slot.queued = true;
            self.queue.push_back(prefix, id.is_none());
        }
    }

    /// Whether the kernel holds our route for `prefix` as the sources want it.
    pub fn in_sync(&self, prefix: &Prefix) -> bool {
        let Some(s) = self.slots.get(prefix) else {
            return true;
        };
        match (s.desired, s.kernel) {
            (None, Kernel::Absent | Kernel::Foreign) => true,
            (Some(d), Kernel::Ours(k)) => self.routes.get(d).satisfied_by(self.routes.get(k)),
            _ => false,
        }
    }

    /// Withdraws every route: for a shutdown that does not keep them.
    pub fn withdraw_all(&mut self) {
        let prefixes: Vec<Prefix> = self.slots.prefixes_where(|_| true);
        for p in prefixes {
            self.set(p, None);
            if let Some(s) = self.slots.get_mut(&p) {
                s.stale = false;
            }
            self.enqueue(p);
        }
    }

    /// Deletes the stale routes adopted at start that no source wanted again. Returns how
    /// many are going.
    pub fn sweep_stale(&mut self) -> usize {
        let stale: Vec<Prefix> = self
            .slots
            .iter()
            .filter(|(_, s)| s.stale)
            .map(|(p, _)| p)
            .collect();
        for p in &stale {
            if let Some(s) = self.slots.get_mut(p) {
                s.stale = false;
            }
            self.enqueue(*p);
        }
        stale.len()
    }

    /// How many adopted routes still wait for the sweep.
    pub fn stale(&self) -> usize {
        self.slots.values().filter(|s| s.stale).count()
    }

    /// Nothing queued and nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The next request to send, while the window has room.
    pub fn next_request(&mut self) -> Option<Request> {
        while self.in_flight.len() < self.window {
            let prefix = self.queue.pop_front()?;
            // One lookup per request: a million of them miss the cache each.
            let Some(slot) = self.slots.get_mut(&prefix) else {
                continue;
            };
            slot.queued = false;
            if slot.in_flight {
                // The ack queues the prefix again if there is more to do.
                continue;
            }
            let routes = &self.routes;
            let op = match (slot.desired, slot.kernel) {
                (Some(d), Kernel::Ours(k)) if routes.get(d).satisfied_by(routes.get(k)) => None,
                (Some(_), Kernel::Foreign) => {
                    if !slot.conflict {
                        slot.conflict = true;
                        self.stats.conflicts += 1;
                        self.events.push(FibEvent::Conflict { prefix });
                    }
                    None
                }
                (Some(d), Kernel::Absent) => Some((Op::Add, Some(d))),
                (Some(d), Kernel::Ours(_) | Kernel::OursUnknown) => Some((Op::Replace, Some(d))),
                (None, Kernel::Ours(_) | Kernel::OursUnknown) if !slot.stale => {
                    Some((Op::Delete, None))
                }
                (None, _) => None,
            };
            let Some((op, route)) = op else {
                self.tidy(&prefix);
                continue;
            };
            slot.in_flight = true;
            let route = route.map(|id| self.routes.retain(id));
            let seq = self.next_seq;
            // 1 to 2^31 - 1: dumps use the upper half.
            self.next_seq = self.next_seq % 0x7fff_ffff + 1;
            self.in_flight.push(Pending {
                seq,
                prefix,
                op,
                route,
                done: false,
            });
            return Some(Request {
                seq,
                op,
                prefix,
                route,
            });
        }
        None
    }

    fn conflict(&mut self, prefix: Prefix) {
        if let Some(s) = self.slots.get_mut(&prefix) {
            if s.desired.is_some() && !s.conflict {
                s.conflict = true;
                self.stats.conflicts += 1;
                self.events.push(FibEvent::Conflict { prefix });
            }
        }
    }

    /// The kernel's answer to request `seq`: 0 for done, else the errno.
    pub fn ack(&mut self, seq: u32, errno: i32, message: Option<String>) {
        let Some((prefix, op, route)) = self.in_flight.take(seq) else {
            return;
        };
        // The common case in one lookup: an install acked that is what the sources still want.
        if errno == 0 && op != Op::Delete {
            if let (Some(slot), Some(r)) = (self.slots.get_mut(&prefix), route) {
                if slot.desired == Some(r) && !slot.queued {
                    slot.in_flight = false;
                    slot.failed = false;
                    slot.stale = false;
                    let old = std::mem::replace(&mut slot.kernel, Kernel::Ours(r));
                    self.stats.ok[op_index(op)] += 1;
                    match old {
                        Kernel::Ours(id) => self.routes.release(id),
                        Kernel::OursUnknown => {}
                        _ => self.count_installed(&prefix, 1),
                    }
                    return;
                }
            }
        }
        let p = Pending {
            seq,
            prefix,
            op,
            route,
            done: true,
        };
        let Some(slot) = self.slots.get_mut(&p.prefix) else {
            if let Some(r) = p.route {
                self.routes.release(r);
            }
            return;
        };
        slot.in_flight = false;
        let i = op_index(p.op);
        match (p.op, errno) {
            (Op::Add | Op::Replace, 0) => {
                slot.failed = false;
                slot.stale = false;
                self.stats.ok[i] += 1;
                let r = p.route.expect("an install carries its route");
                self.set_kernel(&p.prefix, Kernel::Ours(r));
            }
            (Op::Delete, 0) | (Op::Delete, libc::ESRCH) => {
                self.stats.ok[i] += 1;
                self.set_kernel(&p.prefix, Kernel::Absent);
            }
            (Op::Add, libc::EEXIST) => {
                // Someone else's route sits in the slot.
                if let Some(r) = p.route {
                    self.routes.release(r);
                }
                self.stats.failed[i] += 1;
                self.set_kernel(&p.prefix, Kernel::Foreign);
                self.conflict(p.prefix);
            }
            (op, errno) => {
                if let Some(r) = p.route {
                    self.routes.release(r);
                }
                slot.failed = true;
                self.stats.failed[i] += 1;
                self.events.push(FibEvent::Failed {
                    prefix: p.prefix,
                    op,
                    errno,
                    message,
                });
            }
        }
        let s = *self.slots.get(&p.prefix).expect("a known prefix");
        if !s.failed && !self.in_sync(&p.prefix) {
            self.enqueue(p.prefix);
        }
        self.tidy(&p.prefix);
    }

    /// Acks were lost (ENOBUFS on the request socket): nothing in flight can be trusted. The
    /// driver follows with a resync.
    pub fn forget_in_flight(&mut self) {
        let pending: Vec<Pending> = self.in_flight.drain().collect();
        for p in pending {
            if let Some(r) = p.route {
                self.routes.release(r);
            }
            if let Some(s) = self.slots.get_mut(&p.prefix) {
                s.in_flight = false;
            }
        }
    }

    fn ours(&self, kr: &KernelRoute) -> bool {
        kr.table == self.target.table && kr.metric == self.target.metric
    }

    /// Starts a resync from a dump: everything the FIB believed of the kernel is forgotten,
    /// to be learnt again through `adopt`, then `finish_resync`.
    pub fn begin_resync(&mut self) {
        let prefixes: Vec<Prefix> = self.slots.prefixes_where(|_| true);
        for p in prefixes {
            if !self.slots.get(&p).expect("a known prefix").in_flight {
                self.set_kernel(&p, Kernel::Absent);
            }
        }
    }

    /// Ends a resync: every prefix whose kernel state differs from the wanted one is queued.
    pub fn finish_resync(&mut self) {
        let prefixes: Vec<Prefix> = self.slots.prefixes_where(|_| true);
        for p in prefixes {
            if !self.in_sync(&p) {
                self.enqueue(p);
            } else {
                self.tidy(&p);
            }
        }
    }

    /// A route from a dump of the kernel's table. At start (`startup`), ours are adopted as
    /// stale; in a resync they are what the kernel holds.
    pub fn adopt(&mut self, kr: &KernelRoute, startup: bool) {
        if !self.ours(kr) {
            return;
        }
        let slot = self.slots.entry(kr.prefix);
        if slot.in_flight {
            return;
        }
        let k = if kr.protocol != self.target.protocol {
            Kernel::Foreign
        } else {
            if startup && slot.desired.is_none() {
                slot.stale = true;
            }
            match &kr.route {
                Some(r) => Kernel::Ours(self.routes.intern(r)),
                None => Kernel::OursUnknown,
            }
        };
        self.set_kernel(&kr.prefix, k);
    }

    /// A notification from the kernel that another process (or the kernel itself) caused;
    /// the driver filters out the echoes of our own requests.
    pub fn observe(&mut self, ev: &KernelEvent) {
        match ev {
            KernelEvent::NewRoute(kr) if self.ours(kr) => {
                if self.slots.get(&kr.prefix).is_some_and(|s| s.in_flight) {
                    return;
                }
                self.slots.entry(kr.prefix);
                if kr.protocol == self.target.protocol {
                    let k = match &kr.route {
                        Some(r) => Kernel::Ours(self.routes.intern(r)),
                        None => Kernel::OursUnknown,
                    };
                    self.set_kernel(&kr.prefix, k);
                } else {
                    self.set_kernel(&kr.prefix, Kernel::Foreign);
                    self.conflict(kr.prefix);
                }
                if !self.in_sync(&kr.prefix) {
                    self.enqueue(kr.prefix);
                }
                self.tidy(&kr.prefix);
            }
            KernelEvent::DelRoute(kr) if self.ours(kr) => {
                let Some(slot) = self.slots.get_mut(&kr.prefix) else {
                    return;
                };
                if slot.in_flight {
                    return;
                }
                let own = kr.protocol == self.target.protocol;
                match slot.kernel {
                    Kernel::Ours(_) | Kernel::OursUnknown if own => {
                        slot.stale = false;
                        slot.failed = false;
                        if slot.desired.is_some() {
                            self.stats.repaired += 1;
                            self.events.push(FibEvent::Repaired { prefix: kr.prefix });
                        }
                    }
                    Kernel::Foreign if !own => {
                        slot.conflict = false;
                        slot.failed = false;
                    }
                    _ => return,
                }
                self.set_kernel(&kr.prefix, Kernel::Absent);
                if !self.in_sync(&kr.prefix) {
                    self.enqueue(kr.prefix);
                }
                self.tidy(&kr.prefix);
            }
            KernelEvent::NewRoute(_) | KernelEvent::DelRoute(_) => {}
            KernelEvent::Link { ifindex, name, up } => {
                let was = self.links.insert(*ifindex, (name.clone(), *up));
                let was_up = was.map(|(_, u)| u);
                if was_up == Some(*up) {
                    return;
                }
                if *up {
                    if was_up.is_some() {
                        self.events.push(FibEvent::LinkUp {
                            ifindex: *ifindex,
                            name: name.clone(),
                        });
                    }
                    self.retry_failed();
                } else if was_up == Some(true) {
                    self.events.push(FibEvent::LinkDown {
                        ifindex: *ifindex,
                        name: name.clone(),
                    });
                }
            }
            KernelEvent::LinkGone { ifindex } => {
                if let Some((name, true)) = self.links.remove(ifindex) {
                    self.events.push(FibEvent::LinkDown {
                        ifindex: *ifindex,
                        name,
                    });
                }
            }
            KernelEvent::Address {
                ifindex,
                address,
                prefix,
                added,
            } => {
                let (ifindex, address, prefix) = (*ifindex, *address, *prefix);
                self.events.push(if *added {
                    FibEvent::AddressAdded {
                        ifindex,
                        address,
                        prefix,
                    }
                } else {
                    FibEvent::AddressRemoved {
                        ifindex,
                        address,
                        prefix,
                    }
                });
                if *added {
                    // A new address can make a gateway reachable.
                    self.retry_failed();
                }
            }
        }
    }

    /// Queues every route whose last request failed: something changed that may let it in.
    fn retry_failed(&mut self) {
        let failed: Vec<Prefix> = self
            .slots
            .iter()
            .filter(|(_, s)| s.failed)
            .map(|(p, _)| p)
            .collect();
        for p in failed {
            if let Some(s) = self.slots.get_mut(&p) {
                s.failed = false;
            }
            self.enqueue(p);
        }
    }

    pub fn drain_events(&mut self) -> std::vec::Drain<'_, FibEvent> {
        self.events.drain(..)
    }

    pub fn stats(&self) -> FibStats {
        self.stats
    }

    /// Our routes in the kernel, as the FIB knows them.
    pub fn installed(&self) -> impl Iterator<Item = (Prefix, &Route)> {
        self.slots.iter().filter_map(|(p, s)| match s.kernel {
            Kernel::Ours(id) => Some((p, self.routes.get(id))),
            _ => None,
        })
    }

    /// Interned routes alive: for tests of reference counting.
    #[cfg(test)]
    fn live_routes(&self) -> usize {
        self.routes.0.len()
    }
}

#[cfg(test)]
mod tests {
    /// Each entry comes out once; within a generation in no particular order (not the order
    /// they came in); and what is queued during a generation waits for the next.
    #[test]
    fn scrambled_generations() {
        let mut q = super::Scrambled::<u32>::default();
        for i in 0..1000 {
            q.push(i);
        }
        let first: Vec<u32> = (0..500).map(|_| q.pop().unwrap()).collect();
        for i in 1000..1100 {
            q.push(i);
        }
        let mut rest = Vec::new();
        while let Some(v) = q.pop() {
            rest.push(v);
        }
        // The first generation (0..1000) ends before anything of the second comes.
        assert!(first.iter().chain(&rest[..500]).all(|&v| v < 1000));
        assert!(rest[500..].iter().all(|&v| v >= 1000));
        let mut all: Vec<u32> = first.iter().chain(&rest).copied().collect();
        assert_ne!(
            all[..1000],
            (0..1000).collect::<Vec<_>>()[..],
            "not scrambled"
        );
        all.sort_unstable();
        assert_eq!(all, (0..1100).collect::<Vec<_>>());
    }

    use super::*;
    use crate::route::NextHop;

    const T: Target = Target {
        table: 254,
        metric: 20,
        protocol: 77,
    };

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn via(gw: &str) -> Route {
        Route::unicast(vec![NextHop::via(gw.parse().unwrap())]).unwrap()
    }

    fn requests(fib: &mut Fib) -> Vec<Request> {
        std::iter::from_fn(|| fib.next_request()).collect()
    }

    fn ack_all(fib: &mut Fib, reqs: &[Request]) {
        for r in reqs {
            fib.ack(r.seq, 0, None);
        }
    }

    fn kernel(prefix: &str, protocol: u8, route: Route) -> KernelRoute {
        KernelRoute {
            prefix: p(prefix),
            table: 254,
            metric: 20,
            protocol,
            route: Some(route),
            nh_id: None,
        }
    }

    #[test]
    fn add_replace_delete() {
        let mut fib = Fib::new(T, 16);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].op, r[0].prefix), (Op::Add, p("10.1.0.0/16")));
        assert_eq!(fib.route(r[0].route.unwrap()), &via("192.0.2.1"));
        ack_all(&mut fib, &r);
        assert!(fib.is_idle());
        assert!(fib.in_sync(&p("10.1.0.0/16")));
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 1, ipv6: 0 });

        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.2")));
        let r = requests(&mut fib);
        assert_eq!(r[0].op, Op::Replace);
        ack_all(&mut fib, &r);

        fib.set(p("10.1.0.0/16"), None);
        let r = requests(&mut fib);
        assert_eq!((r[0].op, r[0].route), (Op::Delete, None));
        ack_all(&mut fib, &r);
        assert!(fib.is_idle());
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 0, ipv6: 0 });
        assert_eq!(fib.stats().ok, [1, 1, 1]);
        // Nothing left behind: no slot, no interned route.
        assert_eq!(fib.slots.len(), 0);
        assert_eq!(fib.live_routes(), 0);
    }

    #[test]
    fn changes_coalesce_while_they_wait_and_while_in_flight() {
        let mut fib = Fib::new(T, 16);
        let a = p("10.1.0.0/16");
        fib.set(a, Some(&via("192.0.2.1")));
        fib.set(a, Some(&via("192.0.2.2")));
        fib.set(a, Some(&via("192.0.2.3")));
        let r = requests(&mut fib);
        assert_eq!(r.len(), 1, "one request carries the newest state");
        assert_eq!(fib.route(r[0].route.unwrap()), &via("192.0.2.3"));
        // Changes while it is in flight wait for its ack, then go as one.
        fib.set(a, Some(&via("192.0.2.4")));
        fib.set(a, Some(&via("192.0.2.5")));
        assert!(requests(&mut fib).is_empty());
        ack_all(&mut fib, &r);
        let r2 = requests(&mut fib);
        assert_eq!(r2.len(), 1);
        assert_eq!(r2[0].op, Op::Replace);
        assert_eq!(fib.route(r2[0].route.unwrap()), &via("192.0.2.5"));
        ack_all(&mut fib, &r2);
        // Added and withdrawn before it went: nothing goes at all.
        let b = p("10.2.0.0/16");
        fib.set(b, Some(&via("192.0.2.1")));
        fib.set(b, None);
        assert!(requests(&mut fib).is_empty());
        assert!(fib.is_idle());
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let mut fib = Fib::new(T, 100);
        for i in 0..1000u32 {
            let pre = Prefix::new(std::net::IpAddr::V4((0x0a00_0000 + (i << 8)).into()), 24);
            fib.set(pre.unwrap(), Some(&Route::Blackhole));
        }
        let r = requests(&mut fib);
        assert_eq!(r.len(), 100);
        assert_eq!(fib.in_flight(), 100);
        ack_all(&mut fib, &r[..10]);
        assert_eq!(requests(&mut fib).len(), 10);
        // Sequence numbers are unique.
        let mut seqs: Vec<u32> = r.iter().map(|r| r.seq).collect();
        seqs.dedup();
        assert_eq!(seqs.len(), 100);
        // One interned route for all of them.
        assert_eq!(fib.live_routes(), 1);
    }

    #[test]
    fn acks_are_matched_by_sequence_number_in_any_order() {
        let mut fib = Fib::new(T, 16);
        for i in 1..=5 {
            fib.set(p(&format!("10.{i}.0.0/16")), Some(&Route::Blackhole));
        }
        let r = requests(&mut fib);
        for i in [2, 0, 4, 1, 3] {
            fib.ack(r[i].seq, 0, None);
            // An ack seen twice, or one for nothing sent, changes nothing.
            fib.ack(r[i].seq, libc::EINVAL, None);
            fib.ack(0x7000_0000, 0, None);
        }
        assert!(fib.is_idle());
        assert_eq!(fib.stats().ok, [5, 0, 0]);
        assert_eq!(fib.stats().failed, [0, 0, 0]);
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 5, ipv6: 0 });
    }

    #[test]
    fn keys_order_and_round_trip_prefixes() {
        for s in [
            "0.0.0.0/0",
            "10.1.0.0/16",
            "255.255.255.255/32",
            "::/0",
            "2001:db8::/32",
        ] {
            let pre = p(s);
            let back = match pre.key() {
                PrefixKey::V4(k) => Prefix::from_v4_key(k),
                PrefixKey::V6(k) => Prefix::from_v6_key(k),
            };
            assert_eq!(back, pre, "{s}");
        }
        let (PrefixKey::V4(a), PrefixKey::V4(b)) = (p("10.1.0.0/16").key(), p("10.1.0.0/24").key())
        else {
            panic!("IPv4 keys")
        };
        assert!(a < b);
    }

    #[test]
    fn a_foreign_route_is_reported_never_overwritten() {
        let mut fib = Fib::new(T, 16);
        // Found in the dump at start.
        fib.adopt(&kernel("10.1.0.0/16", 4, via("192.0.2.9")), true);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        assert!(requests(&mut fib).is_empty());
        let ev: Vec<FibEvent> = fib.drain_events().collect();
        assert_eq!(
            ev,
            [FibEvent::Conflict {
                prefix: p("10.1.0.0/16")
            }]
        );
        // Appearing between our look and our add: the kernel's EEXIST says so.
        fib.set(p("10.2.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        fib.ack(r[0].seq, libc::EEXIST, None);
        assert!(requests(&mut fib).is_empty());
        assert_eq!(fib.stats().conflicts, 2);
        // Once the foreign route goes, ours goes in.
        fib.observe(&KernelEvent::DelRoute(kernel(
            "10.1.0.0/16",
            4,
            via("192.0.2.9"),
        )));
        let r = requests(&mut fib);
        assert_eq!((r.len(), r[0].op), (1, Op::Add));
        // Routes of other tables and metrics are not in our slot at all.
        let mut other = kernel("10.3.0.0/16", 4, via("192.0.2.9"));
        other.metric = 100;
        fib.adopt(&other, true);
        fib.set(p("10.3.0.0/16"), Some(&via("192.0.2.1")));
        assert_eq!(requests(&mut fib)[0].op, Op::Add);
    }

    #[test]
    fn a_foreign_replace_of_ours_is_reported() {
        let mut fib = Fib::new(T, 16);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        ack_all(&mut fib, &r);
        fib.drain_events().for_each(drop);
        fib.observe(&KernelEvent::NewRoute(kernel(
            "10.1.0.0/16",
            4,
            via("192.0.2.9"),
        )));
        assert!(requests(&mut fib).is_empty());
        assert_eq!(
            fib.drain_events().collect::<Vec<_>>(),
            [FibEvent::Conflict {
                prefix: p("10.1.0.0/16")
            }]
        );
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 0, ipv6: 0 });
    }

    #[test]
    fn restart_adopts_then_sweeps_what_was_not_wanted_again() {
        let mut fib = Fib::new(T, 16);
        for (pre, gw) in [
            ("10.1.0.0/16", "192.0.2.1"),
            ("10.2.0.0/16", "192.0.2.1"),
            ("10.3.0.0/16", "192.0.2.1"),
        ] {
            let mut kr = kernel(pre, 77, via(gw));
            // The kernel reports the interface it resolved the gateway to.
            if let Some(Route::Unicast(h)) = &mut kr.route {
                h[0].ifindex = Some(2);
            }
            fib.adopt(&kr, true);
        }
        assert_eq!(fib.stale(), 3);
        assert!(fib.is_idle(), "adoption changes nothing in the kernel");
        // The sources want one back as it was, one changed, and never mention the third.
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        fib.set(p("10.2.0.0/16"), Some(&via("192.0.2.2")));
        let r = requests(&mut fib);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].op, r[0].prefix), (Op::Replace, p("10.2.0.0/16")));
        ack_all(&mut fib, &r);
        assert_eq!(fib.stale(), 1);
        // A withdrawal of a stale route before the sweep keeps it until then.
        fib.set(p("10.3.0.0/16"), None);
        assert!(requests(&mut fib).is_empty());
        assert_eq!(fib.sweep_stale(), 1);
        let r = requests(&mut fib);
        assert_eq!((r[0].op, r[0].prefix), (Op::Delete, p("10.3.0.0/16")));
        ack_all(&mut fib, &r);
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 2, ipv6: 0 });
    }

    #[test]
    fn an_owned_route_deleted_from_outside_is_repaired() {
        let mut fib = Fib::new(T, 16);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        ack_all(&mut fib, &r);
        fib.observe(&KernelEvent::DelRoute(kernel(
            "10.1.0.0/16",
            77,
            via("192.0.2.1"),
        )));
        let r = requests(&mut fib);
        assert_eq!((r.len(), r[0].op), (1, Op::Add));
        assert_eq!(
            fib.drain_events().collect::<Vec<_>>(),
            [FibEvent::Repaired {
                prefix: p("10.1.0.0/16")
            }]
        );
        assert_eq!(fib.stats().repaired, 1);
    }

    #[test]
    fn failures_are_reported_per_route_and_retried_when_a_link_comes_up() {
        let mut fib = Fib::new(T, 16);
        fib.observe(&KernelEvent::Link {
            ifindex: 3,
            name: "ic0".into(),
            up: true,
        });
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        fib.set(p("10.2.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        fib.ack(
            r[0].seq,
            libc::ENETUNREACH,
            Some("Nexthop has invalid gateway".into()),
        );
        fib.ack(r[1].seq, 0, None);
        assert!(fib.is_idle(), "a failure is not retried in a loop");
        let ev: Vec<FibEvent> = fib.drain_events().collect();
        assert_eq!(
            ev,
            [FibEvent::Failed {
                prefix: r[0].prefix,
                op: Op::Add,
                errno: libc::ENETUNREACH,
                message: Some("Nexthop has invalid gateway".into()),
            }]
        );
        fib.observe(&KernelEvent::Link {
            ifindex: 3,
            name: "ic0".into(),
            up: false,
        });
        fib.observe(&KernelEvent::Link {
            ifindex: 3,
            name: "ic0".into(),
            up: true,
        });
        let ev: Vec<FibEvent> = fib.drain_events().collect();
        assert_eq!(
            ev,
            [
                FibEvent::LinkDown {
                    ifindex: 3,
                    name: "ic0".into()
                },
                FibEvent::LinkUp {
                    ifindex: 3,
                    name: "ic0".into()
                }
            ]
        );
        let r2 = requests(&mut fib);
        assert_eq!((r2.len(), r2[0].prefix), (1, r[0].prefix));
    }

    #[test]
    fn lost_acks_and_a_resync_converge() {
        let mut fib = Fib::new(T, 16);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        fib.set(p("10.2.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        // The kernel did the first; the acks were lost.
        fib.forget_in_flight();
        fib.begin_resync();
        fib.adopt(&kernel("10.1.0.0/16", 77, via("192.0.2.1")), false);
        fib.finish_resync();
        let r2 = requests(&mut fib);
        assert_eq!(r2.len(), 1);
        assert_eq!((r2[0].op, r2[0].prefix), (Op::Add, p("10.2.0.0/16")));
        // A late ack of a forgotten request changes nothing.
        fib.ack(r[1].seq, 0, None);
        ack_all(&mut fib, &r2);
        assert!(fib.is_idle());
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 2, ipv6: 0 });
    }

    #[test]
    fn withdraw_all_removes_everything_ours() {
        let mut fib = Fib::new(T, 16);
        fib.adopt(&kernel("10.9.0.0/16", 77, via("192.0.2.1")), true);
        fib.set(p("10.1.0.0/16"), Some(&via("192.0.2.1")));
        let r = requests(&mut fib);
        ack_all(&mut fib, &r);
        fib.withdraw_all();
        let r = requests(&mut fib);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.op == Op::Delete));
        ack_all(&mut fib, &r);
        assert_eq!(fib.stats().installed, PerFamily { ipv4: 0, ipv6: 0 });
        assert_eq!(fib.live_routes(), 0);
    }
}

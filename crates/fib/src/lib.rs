//! interlink's kernel FIB: the only code in the project that programs routes.
//!
//! - [`route`]: prefixes, next hops, routes (unicast with ECMP, blackhole, unreachable).
//! - [`wire`]: rtnetlink requests, acks and the kernel's route, link and address messages,
//!   all written and read by hand (the hot path, and netlink-packet-route 0.30 panics on
//!   some short attributes); the tests check what is written against netlink-packet-route.
//! - [`fib`]: the sans-IO core: desired versus kernel state per prefix, coalescing, the
//!   request window, ownership, stale routes after a restart, repair.
//! - `nexthop`: the kernel's nexthop objects the FIB keeps, one per next hop.
//! - [`reach`]: the networks of interfaces that are down, from the kernel's events: next
//!   hops in them cannot be reached.
//! - [`sock`] and [`driver`]: the netlink sockets and the loop that runs the core against the
//!   kernel; [`service`]: that loop on a thread of its own, for the daemon.

pub mod driver;
pub mod fib;
pub mod fuzzing;
mod nexthop;
pub mod reach;
pub mod route;
pub mod service;
pub mod sock;
pub mod wire;

pub use driver::{Driver, DriverError};
pub use fib::{Fib, FibEvent, FibStats, Request, RouteId, Work};
pub use interlink_table::{Afi, PerFamily};
pub use reach::Reachability;
pub use route::{NextHop, Prefix, PrefixError, Protection, Route};
pub use service::{FibService, Snapshot};
pub use wire::{Op, Target};

/// interlink's route protocol id (`ip route ... proto interlink`, with the rt_protos.d entry
/// the project ships).
pub const RTPROT_INTERLINK: u8 = 77;
/// The main routing table.
pub const RT_TABLE_MAIN: u32 = 254;

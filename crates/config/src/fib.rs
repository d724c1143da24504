//! `[fib]`: where and how interlink's routes go into the kernel; `[[route]]`: static routes,
//! installed through the FIB like the routes BGP learns.

use core::ops::Range;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use interlink_fib::{Prefix, PrefixError};
use serde::Deserialize;
use toml::Spanned;

use crate::{parse_duration, Checker, IFNAME_MAX};

/// The `[fib]` section, with its defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fib {
    /// Routing table id (254: main).
    pub table: u32,
    /// Metric of every route: with the table and prefix, it names interlink's slot.
    pub metric: u32,
    /// Route protocol id that marks interlink's routes.
    pub protocol: u8,
    /// After a restart, how long routes found in the kernel are kept for the sources to
    /// announce them again, before they are swept.
    pub graceful_restart: Duration,
    pub on_shutdown: OnShutdown,
    /// Routes through the kernel's nexthop objects where it has them (Linux 5.3): one
    /// delete withdraws a next hop's routes, one switch moves them to their backup.
    pub nexthop_objects: bool,
}

impl Default for Fib {
    fn default() -> Fib {
        Fib {
            table: interlink_fib::RT_TABLE_MAIN,
            metric: 20,
            protocol: interlink_fib::RTPROT_INTERLINK,
            graceful_restart: Duration::from_secs(120),
            on_shutdown: OnShutdown::Withdraw,
            nexthop_objects: true,
        }
    }
}

/// What happens to interlink's routes when it stops on SIGTERM or SIGINT. (A crash or
/// kill -9 leaves them in the kernel, and the next start adopts them.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnShutdown {
    /// Delete them, as BIRD does.
    Withdraw,
    /// Leave them forwarding, for a restart (an upgrade) that should not interrupt traffic.
    Keep,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticRoute {
    pub prefix: Prefix,
    pub target: StaticTarget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaticTarget {
    /// Through gateways (several: ECMP), optionally out of a named interface.
    Via {
        gateways: Vec<IpAddr>,
        dev: Option<String>,
    },
    /// Directly out of an interface.
    Dev(String),
    Blackhole,
    Unreachable,
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum RawTable {
    Name(String),
    Id(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFib {
    table: Option<Spanned<RawTable>>,
    metric: Option<Spanned<i64>>,
    protocol: Option<Spanned<i64>>,
    graceful_restart: Option<Spanned<String>>,
    on_shutdown: Option<Spanned<String>>,
    nexthop_objects: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    prefix: Spanned<String>,
    #[serde(default)]
    via: Vec<Spanned<String>>,
    dev: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Option<Spanned<String>>,
}

/// Route protocol ids the kernel and iproute2 use themselves: taking one would make their
/// routes look like ours.
const RESERVED_PROTOCOLS: u8 = 4;

impl Checker<'_, '_> {
    pub(crate) fn fib(&mut self, raw: Option<&RawFib>) -> Fib {
        let mut fib = Fib::default();
        let Some(raw) = raw else {
            return fib;
        };
        if let Some(t) = &raw.table {
            match t.get_ref() {
                RawTable::Name(n) if n == "main" => fib.table = 254,
                RawTable::Name(n) => self.hint(
                    t.span(),
                    format!("table {n:?} is not known"),
                    "\"main\", or a table number",
                ),
                RawTable::Id(id) => match u32::try_from(*id) {
                    Ok(0) | Ok(255) | Err(_) => self.hint(
                        t.span(),
                        format!("table {id} cannot hold interlink's routes"),
                        "\"main\", or 1 to 4294967295 except 255 (local)",
                    ),
                    Ok(id) => fib.table = id,
                },
            }
        }
        if let Some(Some(m)) = self.ranged(&raw.metric, "metric", 0, u32::MAX.into()) {
            fib.metric = m as u32;
        }
        if let Some(p) = &raw.protocol {
            match u8::try_from(*p.get_ref()) {
                Ok(v) if v > RESERVED_PROTOCOLS => fib.protocol = v,
                _ => self.hint(
                    p.span(),
                    format!("protocol {} cannot mark interlink's routes", p.get_ref()),
                    "5 to 255 (0-4 are the kernel's and iproute2's own); 77 by default",
                ),
            }
        }
        if let Some(g) = &raw.graceful_restart {
            match parse_duration(g.get_ref()) {
                Ok(d) => fib.graceful_restart = d,
                Err(e) => self.hint(g.span(), e, "a duration such as \"120s\""),
            }
        }
        if let Some(o) = &raw.on_shutdown {
            match o.get_ref().as_str() {
                "withdraw" => fib.on_shutdown = OnShutdown::Withdraw,
                "keep" => fib.on_shutdown = OnShutdown::Keep,
                other => self.hint(
                    o.span(),
                    format!("on_shutdown {other:?} is not known"),
                    "\"withdraw\" or \"keep\"",
                ),
            }
        }
        if let Some(n) = raw.nexthop_objects {
            fib.nexthop_objects = n;
        }
        fib
    }

    pub(crate) fn routes(&mut self, raw: &[Spanned<RawRoute>]) -> Vec<StaticRoute> {
        let mut seen = HashSet::new();
        let mut routes = Vec::new();
        for r in raw {
            let span = r.span();
            let r = r.get_ref();
            // Twice the same prefix is a mistake whatever else is wrong with either.
            if let Ok(p) = r.prefix.get_ref().parse::<Prefix>() {
                if !seen.insert(p) {
                    self.error(
                        r.prefix.span(),
                        format!("a static route to {p} is defined twice"),
                    );
                    continue;
                }
            }
            if let Some(route) = self.route(span, r) {
                routes.push(route);
            }
        }
        routes
    }

    fn route(&mut self, span: Range<usize>, r: &RawRoute) -> Option<StaticRoute> {
        let prefix = match r.prefix.get_ref().parse::<Prefix>() {
            Ok(p) => Some(p),
            Err(e @ PrefixError::Syntax(_)) => {
                self.hint(r.prefix.span(), e.to_string(), "e.g. \"10.20.0.0/16\"");
                None
            }
            Err(e) => {
                self.error(r.prefix.span(), e.to_string());
                None
            }
        };
        let dev = r.dev.as_ref().and_then(|d| {
            let name = d.get_ref();
            if name.is_empty() || name.len() > IFNAME_MAX || name.contains(['/', ':', ' ']) {
                self.hint(
                    d.span(),
                    format!("interface name {name:?} is not valid"),
                    "1 to 15 characters, without '/', ':' or spaces",
                );
                None
            } else {
                Some(name.clone())
            }
        });
        let mut gateways = Vec::new();
        let mut bad = false;
        for v in &r.via {
            match v.get_ref().parse::<IpAddr>() {
                Ok(gw) => {
                    if prefix.is_some_and(|p| p.is_ipv4() != gw.is_ipv4()) {
                        self.error(
                            v.span(),
                            format!("gateway {gw} is not of the prefix's address family"),
                        );
                        bad = true;
                    } else if matches!(gw, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80)
                        && r.dev.is_none()
                    {
                        self.hint(
                            v.span(),
                            format!("link-local gateway {gw} needs its interface"),
                            "dev = \"ic-aws\"",
                        );
                        bad = true;
                    } else if gateways.contains(&gw) {
                        self.error(v.span(), format!("gateway {gw} is listed twice"));
                        bad = true;
                    } else {
                        gateways.push(gw);
                    }
                }
                Err(_) => {
                    self.hint(
                        v.span(),
                        format!("{:?} is not an IP address", v.get_ref()),
                        "via = [\"169.254.10.1\"]",
                    );
                    bad = true;
                }
            }
        }
        let kind = r.kind.as_ref().map(|k| (k.span(), k.get_ref().as_str()));
        let target = match kind {
            None | Some((_, "unicast")) => {
                if !gateways.is_empty() {
                    Some(StaticTarget::Via { gateways, dev })
                } else if bad {
                    None
                } else if let Some(dev) = dev {
                    Some(StaticTarget::Dev(dev))
                } else if r.dev.is_none() {
                    self.hint(
                        span,
                        "a unicast route needs via or dev",
                        "via = [\"169.254.10.1\"], or type = \"blackhole\"",
                    );
                    None
                } else {
                    None
                }
            }
            Some((kspan, t @ ("blackhole" | "unreachable"))) => {
                if !r.via.is_empty() || r.dev.is_some() {
                    self.error(kspan, format!("a {t} route takes neither via nor dev"));
                    None
                } else if t == "blackhole" {
                    Some(StaticTarget::Blackhole)
                } else {
                    Some(StaticTarget::Unreachable)
                }
            }
            Some((kspan, other)) => {
                self.hint(
                    kspan,
                    format!("route type {other:?} is not known"),
                    "\"unicast\", \"blackhole\" or \"unreachable\"",
                );
                None
            }
        };
        Some(StaticRoute {
            prefix: prefix?,
            target: target?,
        })
    }
}

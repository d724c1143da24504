//! `[flows]`: flow logs of every link's traffic, exported as IPFIX (RFC 7011).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::{parse_duration, Checker};

/// The `[flows]` section, with its defaults (those of IPFIX exporters: 60 s active, 15 s
/// idle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flows {
    /// Where IPFIX goes over UDP; none: flows are kept for `interlinkctl show flows` only.
    pub collectors: Vec<SocketAddr>,
    /// 1:N packet sampling (1: every packet).
    pub sampling: u32,
    pub active_timeout: Duration,
    pub idle_timeout: Duration,
    /// Flows kept per link at most (shared among its workers); a new flow past it evicts one.
    pub max_flows: usize,
    /// The observation domain of the IPFIX messages.
    pub observation_domain: u32,
}

impl Default for Flows {
    fn default() -> Flows {
        Flows {
            collectors: Vec::new(),
            sampling: 1,
            active_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(15),
            max_flows: 65536,
            observation_domain: 0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFlows {
    #[serde(default)]
    collectors: Vec<Spanned<String>>,
    sampling: Option<Spanned<i64>>,
    active_timeout: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    max_flows: Option<Spanned<i64>>,
    observation_domain: Option<Spanned<i64>>,
}

/// A table bigger than this is a mistake (about 100 octets a flow: 1.6 GB a link).
const MAX_FLOWS: i64 = 16 << 20;

impl Checker<'_, '_> {
    pub(crate) fn flows(&mut self, raw: Option<&RawFlows>) -> Option<Flows> {
        let raw = raw?;
        let mut f = Flows::default();
        for c in &raw.collectors {
            match c.get_ref().parse::<SocketAddr>() {
                Ok(a) if a.port() != 0 && !a.ip().is_unspecified() => {
                    if f.collectors.contains(&a) {
                        self.error(c.span(), format!("collector {a} is listed twice"));
                    } else {
                        f.collectors.push(a);
                    }
                }
                _ => self.hint(
                    c.span(),
                    format!("collector {:?} is not an address and port", c.get_ref()),
                    "\"192.0.2.50:4739\" (4739 is IPFIX's port)",
                ),
            }
        }
        if let Some(Some(s)) = self.ranged(&raw.sampling, "sampling", 1, 1 << 20) {
            f.sampling = s as u32;
        }
        if let Some(Some(m)) = self.ranged(&raw.max_flows, "max_flows", 1, MAX_FLOWS) {
            f.max_flows = m as usize;
        }
        if let Some(Some(d)) = self.ranged(
            &raw.observation_domain,
            "observation_domain",
            0,
            u32::MAX.into(),
        ) {
            f.observation_domain = d as u32;
        }
        for (field, slot, name) in [
            (&raw.active_timeout, &mut f.active_timeout, "active_timeout"),
            (&raw.idle_timeout, &mut f.idle_timeout, "idle_timeout"),
        ] {
            let Some(v) = field else { continue };
            match parse_duration(v.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86400) => {
                    *slot = d
                }
                Ok(_) => self.hint(
                    v.span(),
                    format!("{name} {:?} is out of range", v.get_ref()),
                    "1s to 24h",
                ),
                Err(e) => self.hint(v.span(), e, "a duration such as \"60s\""),
            }
        }
        Some(f)
    }
}

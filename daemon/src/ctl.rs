//! The main loop's state, borrowed for one interlinkctl command or a reload.

use std::path::Path;
use std::time::Instant;

use interlink_bgp::speaker::SpeakerCmd;
use interlink_config::Config;
use interlink_fib::{FibService, Target};
use tokio::sync::mpsc;

use crate::links::LinkRun;

/// What the verbs read and act on: the main loop's state, borrowed for one command.
pub(crate) struct Ctl<'a> {
    pub path: &'a Path,
    pub handle: &'a rtnetlink::Handle,
    pub links: &'a mut Vec<LinkRun>,
    pub fib: &'a FibService,
    pub bfd: Option<&'a interlink_bfd::BfdService>,
    /// The IPFIX exporter, with flow logs on.
    pub exporter: Option<&'a interlink_flow::Exporter>,
    pub target: Target,
    pub config: &'a mut Config,
    pub speaker: Option<&'a mpsc::Sender<SpeakerCmd>>,
    pub started: Instant,
    /// The metrics server, if any: a reload may move it.
    pub metrics: &'a mut Option<(std::net::SocketAddr, tokio::task::JoinHandle<()>)>,
    pub scrapes: &'a crate::metrics::Scrapes,
}

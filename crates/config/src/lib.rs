//! interlinkd's configuration: one TOML file.
//!
//! Parsing is strict. Unknown fields and sections are errors, values are checked against each
//! other, key files must exist and be private to their owner, and every problem is reported,
//! not only the first, as `FILE:LINE:COL: what is wrong (hint)`.
//!
//! Sections parsed so far: `[[link]]` with its `[link.macsec]`, `[fib]`, `[[route]]` (static
//! routes), `[router]`, `[[neighbor]]`, `[bgp]`, `[flows]`, `[metrics]`, `[control]` and
//! `[daemon]`.

mod bgp;
mod error;
mod fib;
mod flows;
mod recover;
mod text;

use core::ops::Range;
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use interlink_macsec::{An, CipherSuite, Sak, Salt, Sci, Ssci, ValidateFrames};
pub use interlink_secret::Secret;
use serde::Deserialize;
use toml::Spanned;

pub use bgp::{Afi, Bfd, BfdAuth, Bgp, Export, Import, Neighbor, PrefixMatch, Router};
use error::Diagnostics;
pub use error::{Error, Errors};
pub use fib::{Fib, OnShutdown, StaticRoute, StaticTarget};
pub use flows::Flows;
pub use text::{hex as parse_hex, parse_bandwidth, parse_duration, parse_mac, IfAddr, MacAddr};

/// The default place of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/interlink/interlink.toml";

/// The directory beside the main configuration file whose `*.toml` files follow it.
pub const DROPIN_DIR: &str = "interlink.d";

/// The UDP port of an underlay address given without one. No protocol has registered it, and
/// none can: IANA never assigns the dynamic range, 49152 to 65535 (RFC 6335 §6); and it lies
/// above Linux's ephemeral ports (32768 to 60999), so no outgoing connection takes it, nor
/// the ports of a link's lanes after it (61440 + i). 4789, used before, is VXLAN's: capture
/// tools and NICs with VXLAN offload took interlink's datagrams for VXLAN.
pub const DEFAULT_UDP_PORT: u16 = 61440;

/// An address without a port: "192.0.2.1", "2001:db8::1" or "[2001:db8::1]".
fn bare_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// The longest interface name Linux accepts (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// A link's `busy_poll` when the config says nothing: on a busy link, about the gap between
/// a TSO super-packet and the next at a few Gb/s, so that a steady flow keeps its workers
/// awake; on a quiet one (gaps longer than this) the workers sleep as before.
pub const DEFAULT_BUSY_POLL: Duration = Duration::from_micros(100);

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub links: Vec<Link>,
    pub fib: Fib,
    pub routes: Vec<StaticRoute>,
    /// Present when BGP runs.
    pub router: Option<Router>,
    pub neighbors: Vec<Neighbor>,
    pub bgp: Bgp,
    /// Flow logs (`[flows]`), when configured.
    pub flows: Option<Flows>,
    /// Where Prometheus metrics are served (`[metrics] listen`), if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The control socket interlinkctl talks to (`[control] socket`).
    pub control_socket: PathBuf,
    /// Where state that outlives the process is kept (`[daemon] state_dir`): the packet
    /// numbers of static keys, one file per link.
    pub state_dir: PathBuf,
}

/// Where state is kept unless `[daemon] state_dir` says otherwise (systemd's
/// `StateDirectory=interlink`).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/interlink";

/// One private L3 link: a TUN interface whose traffic is protected with 802.1AE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    /// The TUN interface's name.
    pub interface: String,
    pub addresses: Vec<IfAddr>,
    pub transport: Transport,
    /// The TUN MTU; `None` for the underlay MTU minus the encapsulation overhead.
    pub mtu: Option<u32>,
    /// How often a liveness probe goes through the secure channel.
    pub probe_interval: Duration,
    /// TUN queues, each with its own transmit worker (thread), and over UDP with MKA as many
    /// underlay lanes; `None`: chosen from the machine's cores at start (see
    /// [`Link::queues_for`]).
    pub queues: Option<usize>,
    /// Egress shaping, in bits a second, if any.
    pub bandwidth: Option<u64>,
    /// How long a worker that has just had work polls for more before it sleeps, while the
    /// traffic's gaps are that short; zero never polls.
    pub busy_poll: Duration,
    pub macsec: Macsec,
    /// A link offered with `interlinkctl link offer`: Unix seconds after which it is given
    /// up if the other site has not come (see the daemon's offers).
    pub offer_expires: Option<u64>,
}

impl Link {
    /// The queues the link runs with on a machine with `cores` cores: as configured, or a
    /// quarter of the cores (1 to 8; each queue is a transmit thread, and over UDP with MKA
    /// a receive thread too, beside the kernel's own work for the packets) where the peer
    /// takes packet numbers out of order: over UDP with MKA (the peer is interlink, whose
    /// receive window then always takes them) or where `replay_window` is set (both ends
    /// are configured alike). Otherwise 1: an Ethernet peer such as a provider's router may
    /// refuse every frame that is not in order.
    pub fn queues_for(&self, cores: usize) -> usize {
        if let Some(q) = self.queues {
            return q;
        }
        let reorder_ok = matches!(
            (&self.transport, &self.macsec.keying),
            (Transport::Udp { .. }, Keying::Mka(_))
        ) || self.macsec.replay_window > 0;
        if reorder_ok {
            (cores / 4).clamp(1, 8)
        } else {
            1
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// SecTAG, secure data and ICV as the payload of UDP datagrams between two addresses.
    Udp {
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// Genuine 802.1AE frames on an Ethernet interface, to the peer's MAC address.
    Ethernet { underlay: String, peer_mac: MacAddr },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macsec {
    pub cipher_suite: CipherSuite,
    pub replay_window: u32,
    pub validate: ValidateFrames,
    pub keying: Keying,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keying {
    /// One SAK per direction, as `ip macsec add ... sa` takes them.
    Static(StaticKeys),
    /// MKA (IEEE 802.1X) with a pre-shared CAK and its name.
    Mka(MkaKeys),
}

/// One CAK and its name, as a cloud provider hands them out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaKey {
    pub ckn: Vec<u8>,
    /// 16 or 32 octets, read from `cak_file`.
    pub cak: Secret,
}

/// MKA keying: a keychain of CAK/CKN pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MkaKeys {
    /// 1 to 3 pairs (the AWS limit), preferred first: `ckn` and `cak_file`, or `keychain`.
    pub keys: Vec<CaKey>,
    /// Distribute a new SAK once a PN passes this; by default three quarters of the PN space.
    pub rekey_pn: Option<u64>,
    /// Key server priority: lower wins; 16 by default (wpa_supplicant's is 255).
    pub key_server_priority: u8,
    /// Distribute a new SAK this often (as key server).
    pub rekey_interval: Option<Duration>,
    pub port: u16,
    pub sci: Option<Sci>,
    pub peer_sci: Option<Sci>,
    /// Replace the configured CAK, once the link is up, with one only the two gateways know:
    /// the key server makes it and hands it over in MKA (802.1X CAK distribution), both keep
    /// it in the state directory, and the configured CAK is no longer accepted. For links
    /// paired with an activation key, whose CAK derives from a key that was copied around.
    pub replace_cak: bool,
    /// With `replace_cak`: replace the replaced CAK again once it is this old.
    pub cak_lifetime: Option<Duration>,
}

/// Static SAs: ours to send with, the peer's to receive with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticKeys {
    pub tx_sak: Sak,
    pub rx_sak: Sak,
    /// The AN of our transmit SA.
    pub an: An,
    /// The AN of the peer's SA, which we receive with; the same as `an` unless configured.
    pub rx_an: An,
    /// The SCI port; with the interface's (or derived) MAC address it makes the SCI.
    pub port: u16,
    /// Our SCI, when not derived from the MAC address and port.
    pub sci: Option<Sci>,
    /// The peer's SCI, when not derived from its MAC address and the port.
    pub peer_sci: Option<Sci>,
    /// XPN suites: our SSCI, the peer's SSCI and the salt shared by both SAs.
    pub xpn: Option<XpnKeys>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XpnKeys {
    pub tx_ssci: Ssci,
    pub rx_ssci: Ssci,
    pub salt: Salt,
}

// What serde reads, before any check. Spans locate the errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    link: Vec<Spanned<RawLink>>,
    fib: Option<fib::RawFib>,
    #[serde(default)]
    route: Vec<Spanned<fib::RawRoute>>,
    router: Option<Spanned<bgp::RawRouter>>,
    #[serde(default)]
    neighbor: Vec<Spanned<bgp::RawNeighbor>>,
    bgp: Option<bgp::RawBgp>,
    flows: Option<flows::RawFlows>,
    metrics: Option<RawMetrics>,
    control: Option<RawControl>,
    daemon: Option<RawDaemon>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<Spanned<String>>,
}

/// Where interlinkctl finds the daemon unless told otherwise.
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/interlink/control.sock";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    socket: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    name: Spanned<String>,
    interface: Spanned<String>,
    #[serde(default)]
    addresses: Vec<Spanned<String>>,
    transport: Spanned<String>,
    local: Option<Spanned<String>>,
    remote: Option<Spanned<String>>,
    underlay: Option<Spanned<String>>,
    peer_mac: Option<Spanned<String>>,
    mtu: Option<Spanned<i64>>,
    probe_interval: Option<Spanned<String>>,
    queues: Option<Spanned<i64>>,
    bandwidth: Option<Spanned<String>>,
    busy_poll: Option<Spanned<String>>,
    offer_expires: Option<Spanned<i64>>,
    macsec: Spanned<RawMacsec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaKey {
    ckn: Spanned<String>,
    cak_file: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMacsec {
    cipher_suite: Spanned<String>,
    keying: Spanned<String>,
    replay_window: Option<Spanned<i64>>,
    validate: Option<Spanned<String>>,
    tx_sak_file: Option<Spanned<String>>,
    rx_sak_file: Option<Spanned<String>>,
    an: Option<Spanned<i64>>,
    rx_an: Option<Spanned<i64>>,
    port: Option<Spanned<i64>>,
    sci: Option<Spanned<String>>,
    peer_sci: Option<Spanned<String>>,
    tx_ssci: Option<Spanned<i64>>,
    rx_ssci: Option<Spanned<i64>>,
    salt: Option<Spanned<String>>,
    ckn: Option<Spanned<String>>,
    cak_file: Option<Spanned<String>>,
    keychain: Option<Spanned<Vec<RawCaKey>>>,
    rekey_pn: Option<Spanned<i64>>,
    key_server_priority: Option<Spanned<i64>>,
    rekey_interval: Option<Spanned<String>>,
    replace_cak: Option<Spanned<bool>>,
    cak_lifetime: Option<Spanned<String>>,
}

impl Config {
    /// Reads and checks the configuration at `path`, then the files of `interlink.d/` beside
    /// it (`*.toml`, in name order: `interlinkctl link offer` and `link accept` write theirs
    /// there), as if they followed it. Relative key file paths are taken from the main file's
    /// directory.
    pub fn load(path: &Path) -> Result<Config, Errors> {
        let unreadable = |file: &Path, e: std::io::Error| {
            Errors(vec![Error {
                file: file.to_path_buf(),
                line: 0,
                col: 0,
                message: format!("cannot read the configuration: {e}"),
                hint: None,
            }])
        };
        let mut text = std::fs::read_to_string(path).map_err(|e| unreadable(path, e))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut files = vec![(0, path.to_path_buf())];
        let mut dropins: Vec<PathBuf> = match std::fs::read_dir(dir.join(DROPIN_DIR)) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect(),
            Err(_) => Vec::new(),
        };
        dropins.sort();
        let mut errors = Vec::new();
        for f in dropins {
            let t = std::fs::read_to_string(&f).map_err(|e| unreadable(&f, e))?;
            // Appended to the main file, a key before the first table would land in the
            // last table of the file before.
            if let Some((line, _)) = t
                .lines()
                .enumerate()
                .find(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .filter(|(_, l)| !l.trim_start().starts_with('['))
            {
                errors.push(Error {
                    file: f.clone(),
                    line: line + 1,
                    col: 1,
                    message: "a file of interlink.d must begin with a table".into(),
                    hint: Some("[[link]], [[neighbor]] or [[route]]".into()),
                });
                continue;
            }
            text.push('\n');
            files.push((text.len(), f));
            text.push_str(&t);
        }
        if !errors.is_empty() {
            return Err(Errors(errors));
        }
        Config::parse_files(files, &text, dir)
    }

    /// Checks configuration `text`, reported as `file`, with key files relative to `dir`.
    pub fn parse(file: &Path, text: &str, dir: &Path) -> Result<Config, Errors> {
        Config::parse_files(vec![(0, file.to_path_buf())], text, dir)
    }

    /// Checks `text`, made of the `files` from their offsets on.
    fn parse_files(files: Vec<(usize, PathBuf)>, text: &str, dir: &Path) -> Result<Config, Errors> {
        let mut diag = Diagnostics::of_files(files, text);
        let Some(raw) = recover::read::<RawConfig>(&mut diag, text) else {
            return Err(diag.finish());
        };
        let mut checker = Checker {
            diag: &mut diag,
            dir,
        };
        let links = checker.links(&raw.link);
        let fib = checker.fib(raw.fib.as_ref());
        let routes = checker.routes(&raw.route);
        let router = checker.router(raw.router.as_ref().map(Spanned::get_ref));
        let router_span = raw.router.as_ref().map(Spanned::span);
        let neighbors = checker.neighbors(&raw.neighbor, router.as_ref(), router_span, &links);
        let bgp = checker.bgp(raw.bgp.as_ref());
        let flows = checker.flows(raw.flows.as_ref());
        let metrics_listen =
            raw.metrics
                .as_ref()
                .and_then(|m| match m.listen.get_ref().parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        checker.hint(
                            m.listen.span(),
                            format!("listen {:?} is not an address and port", m.listen.get_ref()),
                            "\"127.0.0.1:9477\"",
                        );
                        None
                    }
                });
        let control_socket = match &raw.control {
            None => PathBuf::from(DEFAULT_CONTROL_SOCKET),
            Some(c) if c.socket.get_ref().is_empty() => {
                checker.hint(
                    c.socket.span(),
                    "an empty control socket path",
                    format!("\"{DEFAULT_CONTROL_SOCKET}\""),
                );
                PathBuf::new()
            }
            Some(c) => checker.dir.join(c.socket.get_ref()),
        };
        let state_dir = match raw.daemon.as_ref().and_then(|d| d.state_dir.as_ref()) {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(d) if d.get_ref().is_empty() => {
                checker.hint(
                    d.span(),
                    "an empty state_dir",
                    format!("\"{DEFAULT_STATE_DIR}\""),
                );
                PathBuf::new()
            }
            Some(d) => checker.dir.join(d.get_ref()),
        };
        if diag.is_empty() {
            Ok(Config {
                state_dir,
                control_socket,
                links,
                fib,
                routes,
                router,
                neighbors,
                bgp,
                flows,
                metrics_listen,
            })
        } else {
            Err(diag.finish())
        }
    }
}

pub(crate) struct Checker<'d, 'a> {
    diag: &'d mut Diagnostics<'a>,
    dir: &'d Path,
}

impl Checker<'_, '_> {
    pub(crate) fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diag.error(span, message, None);
    }

    pub(crate) fn hint(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.diag.error(span, message, Some(hint.into()));
    }

    fn links(&mut self, raw: &[Spanned<RawLink>]) -> Vec<Link> {
        let mut names = HashSet::new();
        let mut interfaces = HashSet::new();
        let mut links = Vec::new();
        for l in raw {
            let span = l.span();
            let l = l.get_ref();
            if !names.insert(l.name.get_ref().clone()) {
                self.error(
                    l.name.span(),
                    format!("link {:?} is defined twice", l.name.get_ref()),
                );
            }
            if !interfaces.insert(l.interface.get_ref().clone()) {
                self.error(
                    l.interface.span(),
                    format!("interface {:?} is used by two links", l.interface.get_ref()),
                );
            }
            if let Some(link) = self.link(span, l) {
                // One static transmit key on two links: both count their PNs from their own
                // state, so (key, IV) pairs would repeat wherever the IVs meet (XPN links
                // with the same SSCI and salt, or the same SCI).
                if let Keying::Static(k) = &link.macsec.keying {
                    let other = links.iter().find(|o: &&Link| {
                        matches!(&o.macsec.keying, Keying::Static(ok) if ok.tx_sak == k.tx_sak)
                    });
                    if let (Some(o), Some(f)) = (other, &l.macsec.get_ref().tx_sak_file) {
                        self.hint(
                            f.span(),
                            format!(
                                "link {:?} sends with the same key as link {:?}",
                                link.name, o.name
                            ),
                            "each link needs its own transmit SAK: AES-GCM nonces would repeat",
                        );
                    }
                }
                links.push(link);
            }
        }
        links
    }

    fn link(&mut self, span: Range<usize>, l: &RawLink) -> Option<Link> {
        let name = l.name.get_ref();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.hint(
                l.name.span(),
                format!("link name {name:?} is not valid"),
                "letters, digits, '-', '_' and '.'",
            );
        }
        let ifname = l.interface.get_ref();
        if ifname.is_empty()
            || ifname.len() > IFNAME_MAX
            || ifname.contains(['/', ':'])
            || ifname.chars().any(char::is_whitespace)
        {
            self.hint(
                l.interface.span(),
                format!("interface name {ifname:?} is not valid"),
                "1 to 15 characters, without '/', ':' or spaces",
            );
        }
        let addresses: Vec<IfAddr> = l
            .addresses
            .iter()
            .filter_map(|a| match a.get_ref().parse::<IfAddr>() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    self.hint(
                        a.span(),
                        e,
                        "an address with its prefix length, e.g. \"169.254.10.2/30\"",
                    );
                    None
                }
            })
            .collect();
        let transport = self.transport(span.clone(), l);
        let mtu = l.mtu.as_ref().and_then(|m| {
            let v = *m.get_ref();
            let min = if addresses.iter().any(|a| a.addr.is_ipv6()) {
                1280
            } else {
                68
            };
            if !(min..=65535).contains(&v) {
                self.hint(
                    m.span(),
                    format!("mtu {v} is out of range"),
                    format!("{min} to 65535; IPv6 needs at least 1280"),
                );
                None
            } else {
                Some(v as u32)
            }
        });
        let probe_interval = match &l.probe_interval {
            None => Duration::from_secs(1),
            Some(p) => match parse_duration(p.get_ref()) {
                Ok(d) if d >= Duration::from_millis(10) => d,
                Ok(_) => {
                    self.hint(p.span(), "probe_interval is too short", "at least \"10ms\"");
                    Duration::from_secs(1)
                }
                Err(e) => {
                    self.hint(p.span(), e, "a duration such as \"1s\" or \"500ms\"");
                    Duration::from_secs(1)
                }
            },
        };
        let busy_poll = match &l.busy_poll {
            None => DEFAULT_BUSY_POLL,
            Some(p) => match parse_duration(p.get_ref()) {
                Ok(d) if d <= Duration::from_millis(1) => d,
                Ok(_) => {
                    self.hint(p.span(), "busy_poll is too long", "at most \"1ms\"");
                    DEFAULT_BUSY_POLL
                }
                Err(e) => {
                    self.hint(
                        p.span(),
                        e,
                        "a duration such as \"100us\", or \"0us\" for none",
                    );
                    DEFAULT_BUSY_POLL
                }
            },
        };
        let macsec = self.macsec(l.macsec.span(), l.macsec.get_ref());
        let bandwidth = match &l.bandwidth {
            None => Some(None),
            Some(b) => match text::parse_bandwidth(b.get_ref()) {
                Ok(v) if v >= 64_000 => Some(Some(v)),
                Ok(_) => {
                    self.hint(b.span(), "bandwidth is too low", "at least \"64kbps\"");
                    None
                }
                Err(e) => {
                    self.hint(b.span(), e, "\"1Gbps\", \"500Mbps\"");
                    None
                }
            },
        };
        let queues = self
            .ranged(&l.queues, "queues", 1, 64)
            .flatten()
            .map(|q| q as usize);
        // Several transmitters put PNs on the wire out of order. Over UDP with MKA the peer
        // is interlink, whose receive window takes that (see `Link::queues_for`).
        let mka_udp = matches!(transport, Some(Transport::Udp { .. }))
            && macsec
                .as_ref()
                .is_some_and(|m| matches!(m.keying, Keying::Mka(_)));
        if let (Some(q), Some(n)) = (&l.queues, queues.filter(|&n| n > 1 && !mka_udp)) {
            if macsec.as_ref().is_some_and(|m| m.replay_window == 0) {
                self.hint(
                    q.span(),
                    format!(
                        "queues = {n} sends packet numbers out of order, and replay_window is 0"
                    ),
                    format!("set replay_window to at least {} on both sides", 64 * n),
                );
            }
        }
        if let (Some(t), Some(m)) = (&transport, &macsec) {
            self.same_sci(span.clone(), l, t, m);
        }
        Some(Link {
            name: name.clone(),
            interface: ifname.clone(),
            addresses,
            transport: transport?,
            mtu,
            probe_interval,
            queues,
            bandwidth: bandwidth?,
            busy_poll,
            macsec: macsec?,
            offer_expires: self
                .ranged(&l.offer_expires, "offer_expires", 1, i64::MAX)?
                .map(|v| v as u64),
        })
    }

    /// Refuses a link whose SCI would be the peer's, explicit or derived: the IVs of both
    /// directions would then coincide under a shared SAK, and each end would take the
    /// other's MKPDUs for its own. Over Ethernet our own derived SCI needs the interface's
    /// MAC address, which the start checks.
    fn same_sci(&mut self, span: Range<usize>, l: &RawLink, t: &Transport, m: &Macsec) {
        let (port, sci, peer_sci) = match &m.keying {
            Keying::Static(k) => (k.port, k.sci, k.peer_sci),
            Keying::Mka(k) => (k.port, k.sci, k.peer_sci),
        };
        let (own, peer) = match t {
            Transport::Udp { local, remote } => (
                sci.or(Some(Sci::new(Sci::udp_mac(&local.ip()), port))),
                peer_sci.or(Some(Sci::new(Sci::udp_mac(&remote.ip()), port))),
            ),
            Transport::Ethernet { peer_mac, .. } => {
                (sci, peer_sci.or(Some(Sci::new(peer_mac.0, port))))
            }
        };
        if let (Some(own), Some(peer)) = (own, peer) {
            if own == peer {
                let at = l
                    .macsec
                    .get_ref()
                    .sci
                    .as_ref()
                    .or(l.macsec.get_ref().peer_sci.as_ref())
                    .map_or(span, |f| f.span());
                self.hint(
                    at,
                    format!("our SCI and the peer's are both {own}"),
                    "each end needs its own: set sci or peer_sci, or use distinct addresses",
                );
            }
        }
    }

    fn transport(&mut self, span: Range<usize>, l: &RawLink) -> Option<Transport> {
        let refuse = |c: &mut Self, field: &Option<Spanned<String>>, name: &str, kind: &str| {
            if let Some(f) = field {
                c.error(
                    f.span(),
                    format!("{name} does not apply to the {kind} transport"),
                );
            }
        };
        match l.transport.get_ref().as_str() {
            "udp" => {
                refuse(self, &l.underlay, "underlay", "udp");
                refuse(self, &l.peer_mac, "peer_mac", "udp");
                let endpoint = |c: &mut Self, f: &Option<Spanned<String>>, name: &str| match f {
                    None => {
                        c.hint(
                            span.clone(),
                            format!("a udp link needs {name}"),
                            format!("{name} = \"ADDRESS:PORT\" (or ADDRESS alone for port {DEFAULT_UDP_PORT})"),
                        );
                        None
                    }
                    Some(v) => match v.get_ref().parse::<SocketAddr>() {
                        Ok(a) if a.port() != 0 => Some(a),
                        Err(_) if bare_ip(v.get_ref()).is_some() => {
                            bare_ip(v.get_ref()).map(|ip| SocketAddr::new(ip, DEFAULT_UDP_PORT))
                        }
                        _ => {
                            c.hint(
                                v.span(),
                                format!("{name} {:?} is not an address and port", v.get_ref()),
                                "\"198.51.100.2:61440\" or \"[2001:db8::2]:61440\"",
                            );
                            None
                        }
                    },
                };
                let local = endpoint(self, &l.local, "local");
                let remote = endpoint(self, &l.remote, "remote");
                let (local, remote) = (local?, remote?);
                if local.is_ipv4() != remote.is_ipv4() {
                    if let Some(r) = &l.remote {
                        self.error(
                            r.span(),
                            "local and remote are of different address families",
                        );
                    }
                    return None;
                }
                Some(Transport::Udp { local, remote })
            }
            "ethernet" => {
                refuse(self, &l.local, "local", "ethernet");
                refuse(self, &l.remote, "remote", "ethernet");
                let underlay = match &l.underlay {
                    Some(u) => Some(u.get_ref().clone()),
                    None => {
                        self.hint(
                            span.clone(),
                            "an ethernet link needs underlay",
                            "underlay = \"eth1\"",
                        );
                        None
                    }
                };
                let peer_mac = match &l.peer_mac {
                    Some(m) => match parse_mac(m.get_ref()) {
                        Ok(mac) => Some(mac),
                        Err(e) => {
                            self.hint(m.span(), e, "six octets, e.g. \"02:00:00:00:00:02\"");
                            None
                        }
                    },
                    None => {
                        self.hint(
                            span,
                            "an ethernet link needs peer_mac",
                            "peer_mac = \"02:00:00:00:00:02\"",
                        );
                        None
                    }
                };
                Some(Transport::Ethernet {
                    underlay: underlay?,
                    peer_mac: peer_mac?,
                })
            }
            other => {
                self.hint(
                    l.transport.span(),
                    format!("unknown transport {other:?}"),
                    "\"udp\" or \"ethernet\"",
                );
                None
            }
        }
    }

    /// An integer field within `lo..=hi`: `Some(None)` when absent, `None` (and an error)
    /// when outside the range.
    pub(crate) fn ranged(
        &mut self,
        field: &Option<Spanned<i64>>,
        name: &str,
        lo: i64,
        hi: i64,
    ) -> Option<Option<i64>> {
        let Some(f) = field else {
            return Some(None);
        };
        let v = *f.get_ref();
        if (lo..=hi).contains(&v) {
            return Some(Some(v));
        }
        self.hint(
            f.span(),
            format!("{name} {v} is out of range"),
            format!("{lo} to {hi}"),
        );
        None
    }

    /// An association number field, 0 to 3, or `default` when absent.
    fn an(&mut self, field: &Option<Spanned<i64>>, name: &str, default: An) -> Option<An> {
        let an = self.ranged(field, name, 0, 3)?;
        Some(an.and_then(|v| An::new(v as u8)).unwrap_or(default))
    }

    fn macsec(&mut self, span: Range<usize>, m: &RawMacsec) -> Option<Macsec> {
        let suite = match m.cipher_suite.get_ref().parse::<CipherSuite>() {
            Ok(s) => Some(s),
            Err(e) => {
                self.error(m.cipher_suite.span(), e.to_string());
                None
            }
        };
        let replay_window = self
            .ranged(&m.replay_window, "replay_window", 0, u32::MAX.into())
            .map(|w| w.map(|w| w as u32));
        let validate = match &m.validate {
            None => Some(ValidateFrames::Strict),
            Some(v) => match v.get_ref().parse() {
                Ok(v) => Some(v),
                Err(e) => {
                    self.error(v.span(), format!("{e}"));
                    None
                }
            },
        };
        let keying = match m.keying.get_ref().as_str() {
            "static" => suite
                .and_then(|suite| self.static_keys(span, m, suite))
                .map(Keying::Static),
            "mka" => suite
                .and_then(|suite| self.mka_keys(span, m, suite))
                .map(Keying::Mka),
            other => {
                self.hint(
                    m.keying.span(),
                    format!("unknown keying {other:?}"),
                    "\"static\" or \"mka\"",
                );
                None
            }
        };
        Some(Macsec {
            cipher_suite: suite?,
            replay_window: replay_window?.unwrap_or(0),
            validate: validate?,
            keying: keying?,
        })
    }

    /// An optional SCI field: 16 hex digits.
    fn sci(&mut self, f: &Option<Spanned<String>>) -> Option<Option<Sci>> {
        match f {
            None => Some(None),
            Some(s) => match s.get_ref().parse::<Sci>() {
                Ok(sci) => Some(Some(sci)),
                Err(e) => {
                    self.error(s.span(), e.to_string());
                    None
                }
            },
        }
    }

    /// One keychain entry: a CKN in hex and the file holding its CAK in hex.
    fn ca_key(&mut self, ckn: &Spanned<String>, cak_file: &Spanned<String>) -> Option<CaKey> {
        let ckn = match text::hex(ckn.get_ref()) {
            Ok(b) if (1..=32).contains(&b.len()) => Some(b),
            Ok(b) => {
                self.hint(
                    ckn.span(),
                    format!("a CKN of {} octets", b.len()),
                    "1 to 32 octets, in hex",
                );
                None
            }
            Err(e) => {
                self.hint(
                    ckn.span(),
                    format!("ckn is not hex: {e}"),
                    "1 to 32 octets, in hex",
                );
                None
            }
        };
        let path = self.dir.join(cak_file.get_ref());
        let r = text::read_hex_key(&path).and_then(|k| {
            if k.len() == 16 || k.len() == 32 {
                Ok(k)
            } else {
                Err((
                    format!("holds {} octets; a CAK has 16 or 32", k.len()),
                    None,
                ))
            }
        });
        let cak = match r {
            Ok(k) => Some(k),
            Err((message, hint)) => {
                self.diag.error(
                    cak_file.span(),
                    format!("cak_file {}: {message}", path.display()),
                    hint,
                );
                None
            }
        };
        Some(CaKey {
            ckn: ckn?,
            cak: cak?,
        })
    }

    fn mka_keys(
        &mut self,
        span: Range<usize>,
        m: &RawMacsec,
        suite: CipherSuite,
    ) -> Option<MkaKeys> {
        // What static keying takes has no place here.
        for (f, name) in [
            (&m.tx_sak_file, "tx_sak_file"),
            (&m.rx_sak_file, "rx_sak_file"),
            (&m.salt, "salt"),
        ] {
            if let Some(f) = f {
                self.hint(
                    f.span(),
                    format!("{name} is for static keying"),
                    "MKA distributes the SAKs",
                );
            }
        }
        for (f, name) in [
            (&m.an, "an"),
            (&m.rx_an, "rx_an"),
            (&m.tx_ssci, "tx_ssci"),
            (&m.rx_ssci, "rx_ssci"),
        ] {
            if let Some(f) = f {
                self.hint(
                    f.span(),
                    format!("{name} is for static keying"),
                    "MKA chooses it",
                );
            }
        }
        let keys = match (&m.keychain, &m.ckn, &m.cak_file) {
            (Some(chain), None, None) => {
                let list = chain.get_ref();
                if list.is_empty() || list.len() > 3 {
                    self.hint(
                        chain.span(),
                        format!("a keychain of {} keys", list.len()),
                        "1 to 3 { ckn, cak_file } entries, preferred first",
                    );
                    None
                } else {
                    let keys: Vec<Option<CaKey>> = list
                        .iter()
                        .map(|k| self.ca_key(&k.ckn, &k.cak_file))
                        .collect();
                    let keys: Option<Vec<CaKey>> = keys.into_iter().collect();
                    if let Some(keys) = &keys {
                        for (i, k) in keys.iter().enumerate() {
                            if keys[..i].iter().any(|o| o.ckn == k.ckn) {
                                self.hint(
                                    list[i].ckn.span(),
                                    "this CKN is in the keychain twice",
                                    "each entry names its own CA",
                                );
                            }
                        }
                    }
                    keys
                }
            }
            (Some(chain), _, _) => {
                self.hint(
                    chain.span(),
                    "keychain and ckn/cak_file both given",
                    "one key: ckn and cak_file; several: keychain = [{ ckn, cak_file }, ...]",
                );
                None
            }
            (None, Some(ckn), Some(cak_file)) => self.ca_key(ckn, cak_file).map(|k| vec![k]),
            (None, ckn, cak_file) => {
                if ckn.is_none() {
                    self.hint(
                        span.clone(),
                        "MKA keying needs ckn",
                        "ckn = \"6162636465666768...\" (hex), or a keychain",
                    );
                }
                if cak_file.is_none() {
                    self.hint(
                        span.clone(),
                        "MKA keying needs cak_file",
                        "cak_file = \"keys/LINK.cak\", or a keychain",
                    );
                }
                None
            }
        };
        let max_pn = suite.max_pn().min(i64::MAX as u64) as i64;
        let rekey_pn = self
            .ranged(&m.rekey_pn, "rekey_pn", 1, max_pn)
            .map(|v| v.map(|v| v as u64));
        let priority = self
            .ranged(&m.key_server_priority, "key_server_priority", 0, 255)
            .map(|p| p.map_or(16, |p| p as u8));
        let rekey_interval = match &m.rekey_interval {
            None => Some(None),
            Some(r) => match parse_duration(r.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) => Some(Some(d)),
                Ok(_) => {
                    self.hint(r.span(), "rekey_interval is too short", "at least \"1s\"");
                    None
                }
                Err(e) => {
                    self.hint(r.span(), e, "a duration such as \"1h\"");
                    None
                }
            },
        };
        let port = self
            .ranged(&m.port, "port", 1, 65535)
            .map(|p| p.map_or(1, |p| p as u16));
        let our_sci = self.sci(&m.sci);
        let peer_sci = self.sci(&m.peer_sci);
        let replace_cak = m.replace_cak.as_ref().map(|r| (*r.get_ref(), r.span()));
        if let (Some((true, at)), Some(k)) = (&replace_cak, &keys) {
            if k.len() > 1 {
                self.hint(
                    at.clone(),
                    "replace_cak with a keychain",
                    "replace_cak takes one key: ckn and cak_file (the replacement comes first)",
                );
                return None;
            }
        }
        let cak_lifetime = match &m.cak_lifetime {
            None => Some(None),
            Some(l) if !replace_cak.as_ref().is_some_and(|(r, _)| *r) => {
                self.hint(
                    l.span(),
                    "cak_lifetime without replace_cak",
                    "replace_cak = true: only a CAK the gateways made is replaced as it ages",
                );
                None
            }
            Some(l) => match parse_duration(l.get_ref()) {
                Ok(d) if d >= Duration::from_secs(60) => Some(Some(d)),
                Ok(_) => {
                    self.hint(
                        l.span(),
                        "cak_lifetime is too short",
                        "at least \"1m\"; \"30d\", say",
                    );
                    None
                }
                Err(e) => {
                    self.hint(l.span(), e, "a duration such as \"30d\" or \"720h\"");
                    None
                }
            },
        };
        Some(MkaKeys {
            keys: keys?,
            rekey_pn: rekey_pn?,
            key_server_priority: priority?,
            rekey_interval: rekey_interval?,
            port: port?,
            sci: our_sci?,
            peer_sci: peer_sci?,
            replace_cak: replace_cak.is_some_and(|(r, _)| r),
            cak_lifetime: cak_lifetime?,
        })
    }

    fn static_keys(
        &mut self,
        span: Range<usize>,
        m: &RawMacsec,
        suite: CipherSuite,
    ) -> Option<StaticKeys> {
        // What MKA keying takes has no place here.
        let mka_only = [
            ("ckn", m.ckn.as_ref().map(|f| f.span())),
            ("cak_file", m.cak_file.as_ref().map(|f| f.span())),
            ("keychain", m.keychain.as_ref().map(|f| f.span())),
            ("rekey_pn", m.rekey_pn.as_ref().map(|f| f.span())),
            (
                "key_server_priority",
                m.key_server_priority.as_ref().map(|f| f.span()),
            ),
            (
                "rekey_interval",
                m.rekey_interval.as_ref().map(|f| f.span()),
            ),
            ("replace_cak", m.replace_cak.as_ref().map(|f| f.span())),
            ("cak_lifetime", m.cak_lifetime.as_ref().map(|f| f.span())),
        ];
        for (name, at) in mka_only {
            if let Some(at) = at {
                self.hint(
                    at,
                    format!("{name} is for keying \"mka\""),
                    "static keying takes tx_sak_file, rx_sak_file and an",
                );
            }
        }
        let tx_sak = self.key_file(span.clone(), &m.tx_sak_file, "tx_sak_file", suite);
        let rx_sak = self.key_file(span.clone(), &m.rx_sak_file, "rx_sak_file", suite);
        let an = self.an(&m.an, "an", An::ALL[0]);
        // Checked even when `an` is wrong, so that both mistakes are reported.
        let rx_an = self.an(&m.rx_an, "rx_an", an.unwrap_or(An::ALL[0]));
        let port = self
            .ranged(&m.port, "port", 1, 65535)
            .map(|p| p.map_or(1, |p| p as u16));
        let own_sci = self.sci(&m.sci);
        let peer_sci = self.sci(&m.peer_sci);
        let xpn = if suite.is_xpn() {
            let ssci = |c: &mut Self, f, name| {
                c.ranged(f, name, 0, u32::MAX.into())
                    .map(|v| v.map(|v| v as u32))
            };
            let tx = ssci(self, &m.tx_ssci, "tx_ssci");
            let rx = ssci(self, &m.rx_ssci, "rx_ssci");
            let salt = match &m.salt {
                Some(s) => match text::hex(s.get_ref())
                    .ok()
                    .and_then(|b| Salt::try_from(b).ok())
                {
                    Some(salt) => Some(Some(salt)),
                    None => {
                        self.hint(s.span(), "salt is not 12 octets of hex", "24 hex digits");
                        None
                    }
                },
                None => Some(None),
            };
            match (tx?, rx?, salt?) {
                (Some(tx_ssci), Some(rx_ssci), Some(salt)) => {
                    if tx_ssci == rx_ssci {
                        if let Some(f) = &m.rx_ssci {
                            self.hint(
                                f.span(),
                                "rx_ssci equals tx_ssci",
                                "each SecY of the link has its own SSCI",
                            );
                        }
                    }
                    Some(XpnKeys {
                        tx_ssci,
                        rx_ssci,
                        salt,
                    })
                }
                _ => {
                    self.hint(
                        span,
                        format!("{suite} with static keys needs tx_ssci, rx_ssci and salt"),
                        "as `ip macsec add ... ssci N salt HEX` takes them",
                    );
                    return None;
                }
            }
        } else {
            for (f, name) in [(&m.tx_ssci, "tx_ssci"), (&m.rx_ssci, "rx_ssci")] {
                if let Some(f) = f {
                    self.error(
                        f.span(),
                        format!("{name} only applies to the XPN cipher suites"),
                    );
                }
            }
            if let Some(f) = &m.salt {
                self.error(f.span(), "salt only applies to the XPN cipher suites");
            }
            None
        };
        Some(StaticKeys {
            tx_sak: tx_sak?,
            rx_sak: rx_sak?,
            an: an?,
            rx_an: rx_an?,
            port: port?,
            sci: own_sci?,
            peer_sci: peer_sci?,
            xpn: if suite.is_xpn() { Some(xpn?) } else { None },
        })
    }

    /// Reads a SAK: hex in a file private to its owner, of the suite's key length.
    fn key_file(
        &mut self,
        span: Range<usize>,
        field: &Option<Spanned<String>>,
        name: &str,
        suite: CipherSuite,
    ) -> Option<Sak> {
        let Some(f) = field else {
            self.hint(
                span,
                format!("static keying needs {name}"),
                format!("{name} = \"/etc/interlink/keys/LINK.sak\""),
            );
            return None;
        };
        let path = self.dir.join(f.get_ref());
        match text::read_key_file(&path, suite.key_len()) {
            Ok(key) => Some(Sak::new(key.as_bytes().to_vec())),
            Err((message, hint)) => {
                self.diag.error(
                    f.span(),
                    format!("{name} {}: {message}", path.display()),
                    hint,
                );
                None
            }
        }
    }
}

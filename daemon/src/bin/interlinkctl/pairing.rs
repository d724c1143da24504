//! `interlinkctl link offer` and `link accept`: pairing two sites with one activation key
//! (see `interlink_pairing`). Both work on the configuration's files, as root: they write the
//! link's `interlink.d/NAME.toml` and its CAK file (`keys/NAME.cak`, mode 0600), check the
//! whole configuration with them (and remove them again if it does not pass), and leave the
//! reload to the caller. The daemon cannot write them itself: under its unit /etc is
//! read-only.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use interlink_config::{Config, DEFAULT_UDP_PORT, DROPIN_DIR};
use interlink_pairing::{
    hex, valid_name, Local, Offer, Secret, Side, Tunnel6, MAX_NETWORKS, SUITES,
};

/// `link offer NAME ...`.
pub struct OfferArgs {
    pub name: String,
    pub underlay: String,
    pub peer: String,
    pub peer_asn: Option<u32>,
    pub expires: Duration,
    pub suite: String,
    pub interface: Option<String>,
    pub import: Vec<String>,
    /// An IPv6 tunnel too: "auto" (a unique local /125) or a prefix of 64 to 126 bits
    /// whose first two addresses the sites take.
    pub ipv6: Option<String>,
}

/// `link accept KEY ...`.
pub struct AcceptArgs {
    pub key: String,
    pub name: Option<String>,
    pub interface: Option<String>,
}

/// What was done, for the operator.
pub struct Done {
    /// The activation key (offer) to hand to the other site.
    pub key: Option<String>,
    pub notes: Vec<String>,
    /// The configuration as it now is (its control socket, to reload).
    pub config: Config,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn load(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| format!("the configuration does not check:\n{e}"))
}

/// An underlay endpoint: ADDRESS, ADDRESS:PORT or [IPv6]:PORT; the default port without one.
fn endpoint(what: &str, s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_UDP_PORT))
        .map_err(|_| format!("{what} {s:?} is not an address (or address:port)"))
}

/// Whether this machine has `ip` (a UDP socket can bind to it).
fn is_local(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

fn interface_for(name: &str, given: Option<&str>, cfg: &Config) -> Result<String, String> {
    let ifname = match given {
        Some(i) => i.to_owned(),
        None => format!("il-{name}").chars().take(15).collect(),
    };
    if ifname.is_empty() || ifname.len() > 15 || ifname.contains(['/', ' ']) {
        return Err(format!(
            "interface {ifname:?}: at most 15 characters, no '/' or space"
        ));
    }
    if let Some(l) = cfg.links.iter().find(|l| l.interface == ifname) {
        return Err(format!(
            "interface {ifname} is link {}'s: name another with --interface",
            l.name
        ));
    }
    Ok(ifname)
}

/// Writes `contents` to a new file (never over one) with `mode`.
fn create(path: &Path, contents: &str, mode: u32) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => format!(
                "{} exists: a link of that name was offered or accepted before (remove it, and its key file, to start again)",
                path.display()
            ),
            _ => format!("cannot write {}: {e}", path.display()),
        })?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The link's two files, checked with the rest of the configuration: on any failure neither
/// is left behind.
fn write_link(config: &Path, name: &str, cak: &[u8], toml: &str) -> Result<Config, String> {
    let dir = config.parent().unwrap_or(Path::new("."));
    let keys = dir.join("keys");
    let dropins = dir.join(DROPIN_DIR);
    for (d, mode) in [(&keys, 0o700), (&dropins, 0o755)] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(d)
            .map_err(|e| format!("cannot make {}: {e}", d.display()))?;
    }
    let cak_path = keys.join(format!("{name}.cak"));
    let toml_path = dropins.join(format!("{name}.toml"));
    create(&cak_path, &format!("{}\n", hex(cak)), 0o600)?;
    if let Err(e) = create(&toml_path, toml, 0o644) {
        let _ = fs::remove_file(&cak_path);
        return Err(e);
    }
    load(config).inspect_err(|_| {
        let _ = fs::remove_file(&cak_path);
        let _ = fs::remove_file(&toml_path);
    })
}

/// Whether two subnets overlap (never, of two families).
fn overlaps(a: IpAddr, a_len: u8, b: IpAddr, b_len: u8) -> bool {
    let bits = |ip: IpAddr| match ip {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32u8),
        IpAddr::V6(v) => (u128::from(v), 128u8),
    };
    let ((a, width), (b, width_b)) = (bits(a), bits(b));
    if width != width_b {
        return false;
    }
    let shift = u32::from(width - a_len.min(b_len).min(width));
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}

/// The subnets of the site's links' addresses, with the link each is on.
fn link_subnets(cfg: &Config) -> Vec<(IpAddr, u8, &str)> {
    cfg.links
        .iter()
        .flat_map(|l| {
            l.addresses
                .iter()
                .map(|a| (a.addr, a.prefix_len, l.name.as_str()))
        })
        .collect()
}

/// The first of `wanted` (address and prefix length) that overlaps a subnet in `taken`,
/// said as an error.
fn clash(wanted: &[(IpAddr, u8)], taken: &[(IpAddr, u8, &str)]) -> Result<(), String> {
    for (w, wl) in wanted {
        if let Some((a, l, link)) = taken.iter().find(|(a, l, _)| overlaps(*w, *wl, *a, *l)) {
            return Err(format!(
                "the key's tunnel {w}/{wl} overlaps link {link}'s {a}/{l} here: remove that link, or ask the offering site for another key"
            ));
        }
    }
    Ok(())
}

/// The IPv6 tunnel `--ipv6` asks for, clear of every subnet in `taken`.
fn tunnel6(
    asked: Option<&str>,
    secret: &Secret,
    taken: &[(IpAddr, u8)],
) -> Result<Option<Tunnel6>, String> {
    let free = |a: Ipv6Addr, len: u8| !taken.iter().any(|(t, l)| overlaps(a.into(), len, *t, *l));
    let (offerer, accepter, prefix_len) = match asked {
        None => return Ok(None),
        Some("auto") => {
            let (a, b) = (0..64)
                .map(|i| secret.tunnel6(i))
                .find(|(a, _)| free(*a, 125))
                .ok_or("no free /125 of fd00::/8 for the link")?;
            (a, b, 125)
        }
        Some(p) => {
            let bad = || {
                format!("--ipv6 {p}: auto, or an IPv6 prefix of 64 to 126 bits such as 2001:db8:1::/125")
            };
            let (addr, len) = p.split_once('/').ok_or_else(bad)?;
            let (base, len) = (
                addr.parse::<Ipv6Addr>().map_err(|_| bad())?,
                len.parse::<u8>().map_err(|_| bad())?,
            );
            if !(64..=126).contains(&len) || u128::from(base) << len != 0 {
                return Err(bad());
            }
            if !free(base, len) {
                return Err(format!("--ipv6 {p}: another link of this site uses it"));
            }
            let first = u128::from(base);
            (Ipv6Addr::from(first + 1), Ipv6Addr::from(first + 2), len)
        }
    };
    Ok(Some(Tunnel6 {
        prefix_len,
        offerer,
        accepter,
    }))
}

pub fn offer(config: &Path, a: OfferArgs) -> Result<Done, String> {
    let cfg = load(config)?;
    if !valid_name(&a.name) {
        return Err(format!(
            "link name {:?}: 1 to 32 letters, digits, '-', '_' or '.'",
            a.name
        ));
    }
    if cfg.links.iter().any(|l| l.name == a.name) {
        return Err(format!("a link named {} exists already", a.name));
    }
    let interface = interface_for(&a.name, a.interface.as_deref(), &cfg)?;
    let underlay = endpoint("underlay", &a.underlay)?;
    let peer = endpoint("peer", &a.peer)?;
    if underlay.is_ipv4() != peer.is_ipv4() {
        return Err("underlay and peer are of different address families".into());
    }
    if !is_local(underlay.ip()) {
        return Err(format!(
            "underlay {}: not an address of this machine",
            underlay.ip()
        ));
    }
    for l in &cfg.links {
        if let interlink_config::Transport::Udp { local, .. } = l.transport {
            if local == underlay {
                return Err(format!(
                    "underlay {underlay} is link {}'s: give another port (--underlay ADDRESS:PORT)",
                    l.name
                ));
            }
        }
    }
    let suite = SUITES
        .iter()
        .position(|s| *s == a.suite)
        .ok_or_else(|| format!("cipher suite {:?}: one of {}", a.suite, SUITES.join(", ")))?
        as u8;
    let (offerer_asn, accepter_asn) = match (&cfg.router, a.peer_asn) {
        (Some(r), Some(peer)) => (r.asn, peer),
        (None, Some(_)) => {
            return Err(
                "--peer-asn needs BGP here: the configuration has no [router] (asn, router_id)"
                    .into(),
            )
        }
        (_, None) => (0, 0),
    };
    let networks: Vec<(IpAddr, u8)> = cfg
        .bgp
        .networks
        .iter()
        .map(|p| (p.addr(), p.prefix_len()))
        .collect();
    if networks.len() > MAX_NETWORKS {
        return Err(format!(
            "[bgp] has {} networks; a key carries at most {MAX_NETWORKS}",
            networks.len()
        ));
    }
    let secret = Secret::random().map_err(|_| "no random numbers from the system")?;
    // A /30 (and a /125) no link of this site uses yet.
    let taken: Vec<(IpAddr, u8)> = link_subnets(&cfg)
        .into_iter()
        .map(|(a, l, _)| (a, l))
        .collect();
    let (offerer_tunnel, accepter_tunnel) = (0..64)
        .map(|i| secret.tunnel(i))
        .find(|(t, _)| !taken.iter().any(|(a, l)| overlaps((*t).into(), 30, *a, *l)))
        .ok_or("no free /30 in 169.254.0.0/16 for the link")?;
    let tunnel6 = tunnel6(a.ipv6.as_deref(), &secret, &taken)?;
    let o = Offer {
        name: a.name.clone(),
        suite,
        expires: now() + a.expires.as_secs().max(1),
        secret,
        offerer_asn,
        accepter_asn,
        prefix_len: 30,
        offerer_tunnel,
        accepter_tunnel,
        offerer: underlay,
        accepter: peer,
        networks,
        tunnel6,
    };
    let key = o.encode().map_err(|e| e.to_string())?;
    let cak_file = format!("keys/{}.cak", a.name);
    let toml = o.config(
        Side::Offerer,
        &Local {
            interface: &interface,
            cak_file: &cak_file,
            bgp: cfg.router.is_some(),
            import: &a.import,
        },
    );
    let config_now = write_link(config, &a.name, &o.keys().cak, &toml)?;
    let v6 = o.tunnel6.map_or(String::new(), |t| {
        format!(" and {}/{} to {}", t.offerer, t.prefix_len, t.accepter)
    });
    let mut notes = vec![format!(
        "link {} offered: {interface} {offerer_tunnel}/30 to {accepter_tunnel}{v6}, {underlay} to {peer}, {}; pending until the other site accepts (interlinkctl link accept KEY), expires in {}",
        a.name,
        o.suite_name(),
        humantime(a.expires)
    )];
    if accepter_asn == 0 {
        notes.push(
            "no BGP over the link (no --peer-asn): add routes or a [[neighbor]] yourself".into(),
        );
    }
    Ok(Done {
        key: Some(key),
        notes,
        config: config_now,
    })
}

pub fn accept(config: &Path, a: AcceptArgs) -> Result<Done, String> {
    let o = Offer::decode(&a.key, now()).map_err(|e| e.to_string())?;
    let cfg = load(config)?;
    let id = o.id();
    let record = accepted_record(&cfg.state_dir, &id);
    if let Ok(before) = fs::read_to_string(&record) {
        return Err(format!(
            "this key was accepted already ({}): a key is single use; ask the offering site for a new one",
            before.trim()
        ));
    }
    let name = a.name.unwrap_or_else(|| o.name.clone());
    if !valid_name(&name) {
        return Err(format!(
            "link name {name:?}: 1 to 32 letters, digits, '-', '_' or '.'"
        ));
    }
    if cfg.links.iter().any(|l| l.name == name) {
        return Err(format!(
            "a link named {name} exists already: accept it under another name (--name)"
        ));
    }
    let interface = interface_for(&name, a.interface.as_deref(), &cfg)?;
    if !is_local(o.accepter.ip()) {
        return Err(format!(
            "the key is for the site at {}, an address this machine does not have",
            o.accepter.ip()
        ));
    }
    // The offering site chose the tunnel subnets clear of its own links only.
    let mut wanted = vec![(IpAddr::V4(o.accepter_tunnel), o.prefix_len)];
    wanted.extend(o.tunnel6.map(|t| (IpAddr::V6(t.accepter), t.prefix_len)));
    clash(&wanted, &link_subnets(&cfg))?;
    let bgp = o.offerer_asn != 0 && o.accepter_asn != 0;
    if bgp {
        match &cfg.router {
            Some(r) if r.asn == o.accepter_asn => {}
            Some(r) => {
                return Err(format!(
                    "the key was offered to AS {}; this router is AS {} ([router] asn)",
                    o.accepter_asn, r.asn
                ))
            }
            None => {
                return Err(format!(
                    "the key comes with a BGP session to AS {} from AS {}: add [router] (asn = {}, router_id) first",
                    o.offerer_asn, o.accepter_asn, o.accepter_asn
                ))
            }
        }
    }
    let cak_file = format!("keys/{name}.cak");
    let mut local = o.clone();
    local.name = name.clone();
    let toml = local.config(
        Side::Accepter,
        &Local {
            interface: &interface,
            cak_file: &cak_file,
            bgp,
            import: &[],
        },
    );
    let config_now = write_link(config, &name, &o.keys().cak, &toml)?;
    // Used: a second accept here is refused.
    if let Some(parent) = record.parent() {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent);
    }
    fs::write(&record, format!("link {name}, at Unix time {}\n", now()))
        .map_err(|e| format!("cannot record the key as used in {}: {e}", record.display()))?;
    let notes = vec![format!(
        "link {name} accepted: {interface} {}/{} to {}{}, {} to {}, {}{}",
        o.accepter_tunnel,
        o.prefix_len,
        o.offerer_tunnel,
        o.tunnel6.map_or(String::new(), |t| format!(
            " and {}/{} to {}",
            t.accepter, t.prefix_len, t.offerer
        )),
        o.accepter,
        o.offerer,
        o.suite_name(),
        if bgp {
            format!(", BGP with AS {}", o.offerer_asn)
        } else {
            String::new()
        }
    )];
    Ok(Done {
        key: None,
        notes,
        config: config_now,
    })
}

/// `link remove NAME`: a link that `link offer` or `link accept` wrote goes (its
/// `interlink.d` file and its CAK file; a key accepted stays recorded as used). Links of the
/// main configuration, or files written by hand, are refused: they are the operator's to
/// edit.
pub fn remove(config: &Path, name: &str) -> Result<Done, String> {
    let dir = config.parent().unwrap_or(Path::new("."));
    if !valid_name(name) {
        return Err(format!(
            "link name {name:?}: 1 to 32 letters, digits, '-', '_' or '.'"
        ));
    }
    let toml_path = dir.join(DROPIN_DIR).join(format!("{name}.toml"));
    let text = fs::read_to_string(&toml_path).map_err(|_| {
        format!(
            "no link {name} written by link offer or link accept ({} is not there)",
            toml_path.display()
        )
    })?;
    let first = text.lines().next().unwrap_or_default();
    if !(first.starts_with(&format!("# Link {name}, offered with"))
        || first.starts_with(&format!("# Link {name}, accepted with")))
    {
        return Err(format!(
            "{} was not written by link offer or link accept: edit it yourself",
            toml_path.display()
        ));
    }
    let cak_path = dir.join("keys").join(format!("{name}.cak"));
    fs::remove_file(&toml_path)
        .map_err(|e| format!("cannot remove {}: {e}", toml_path.display()))?;
    let _ = fs::remove_file(&cak_path);
    let config_now = load(config)?;
    // Its record of the offer, and the CAK that replaced the derived one.
    let state = &config_now.state_dir;
    let _ = fs::remove_file(state.join("pairing").join("offered").join(name));
    let _ = fs::remove_file(state.join("cak").join(name));
    Ok(Done {
        key: None,
        notes: vec![format!(
            "link {name} removed ({} and {})",
            toml_path.display(),
            cak_path.display()
        )],
        config: config_now,
    })
}

/// Where an accepted key is recorded, by its offer's identity.
fn accepted_record(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("pairing").join("accepted").join(id)
}

fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        s if s % 3600 == 0 && s >= 3600 => format!("{}h", s / 3600),
        s if s % 60 == 0 && s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn subnets_overlap_within_their_family_only() {
        assert!(overlaps(ip("169.254.1.1"), 30, ip("169.254.1.2"), 30));
        assert!(!overlaps(ip("169.254.1.1"), 30, ip("169.254.1.5"), 30));
        assert!(overlaps(ip("10.0.0.0"), 8, ip("10.9.9.9"), 32));
        assert!(overlaps(ip("fd00::1"), 125, ip("fd00::6"), 125));
        assert!(!overlaps(ip("fd00::1"), 125, ip("fd00::9"), 125));
        assert!(overlaps(ip("::"), 0, ip("fd00::9"), 125));
        assert!(!overlaps(ip("0.0.0.0"), 0, ip("fd00::9"), 125));
    }

    #[test]
    fn an_accepted_tunnel_that_clashes_with_a_link_here_is_refused() {
        let taken = [
            (ip("169.254.7.1"), 30, "old"),
            (ip("fd12:3456:789a::1"), 64, "old6"),
        ];
        assert!(clash(&[(ip("169.254.8.2"), 30)], &taken).is_ok());
        let e = clash(&[(ip("169.254.7.2"), 30)], &taken).unwrap_err();
        assert!(e.contains("overlaps link old's 169.254.7.1/30"), "{e}");
        let e = clash(
            &[(ip("169.254.8.2"), 30), (ip("fd12:3456:789a::2"), 125)],
            &taken,
        )
        .unwrap_err();
        assert!(e.contains("link old6"), "{e}");
    }

    #[test]
    fn ipv6_tunnels_as_asked_and_clear_of_the_links() {
        let secret = Secret::from_bytes([3; 32]);
        assert_eq!(tunnel6(None, &secret, &[]), Ok(None));
        let auto = tunnel6(Some("auto"), &secret, &[]).unwrap().unwrap();
        assert_eq!(auto.prefix_len, 125);
        // The first draw taken by a link: the next one.
        let taken = [(IpAddr::V6(auto.offerer), 64)];
        let next = tunnel6(Some("auto"), &secret, &taken).unwrap().unwrap();
        assert_ne!(next.offerer, auto.offerer);
        let given = tunnel6(Some("2001:db8:1::8/125"), &secret, &[])
            .unwrap()
            .unwrap();
        assert_eq!(given.offerer, "2001:db8:1::9".parse::<Ipv6Addr>().unwrap());
        assert_eq!(given.accepter, "2001:db8:1::a".parse::<Ipv6Addr>().unwrap());
        for bad in [
            "2001:db8:1::9/125",
            "2001:db8::/127",
            "2001:db8::/48",
            "10.0.0.0/30",
            "x",
        ] {
            let e = tunnel6(Some(bad), &secret, &[]).unwrap_err();
            assert!(e.contains("--ipv6"), "{bad}: {e}");
        }
        let e = tunnel6(
            Some("2001:db8:1::8/125"),
            &secret,
            &[(ip("2001:db8:1::"), 64)],
        )
        .unwrap_err();
        assert!(e.contains("another link"), "{e}");
    }
}

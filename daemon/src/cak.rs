//! `replace_cak`: a link's configured CAK replaced by one that only the two gateways know,
//! and with `cak_lifetime` replaced again as it ages.
//!
//! A link paired with an activation key has a CAK derived from a string that was pasted
//! between people; whoever kept a copy could derive it for as long as the link lives. Once
//! the link is up, the key server of its configured CA makes a random CAK, as long as the
//! configured one, and a random CKN, and hands them to the peer in MKA (802.1X-2020 §9.8,
//! the Distributed CAK parameter set, wrapped under the KEK). Both sides run the new CA
//! ahead of the configured one, so the port moves to it as in a CAK rollover (no frame
//! lost); once it carries the link all round (`Kay::settled`), each side drops the
//! configured CA, whose key is then refused. The new key is the link's *base* from then on;
//! once it is older than `cak_lifetime`, the key server brings in the *next* one the same
//! way, over the base's CA.
//!
//! Every key is written down (`STATE_DIR/cak/LINK`, mode 0600, replaced durably) before it
//! is used: by the key server before it distributes it, by the member before it takes part
//! in its CA, and as the base before the CA under it is dropped. So a crash or restart at
//! any point leaves each side with a CA the other still has: a new CA becomes live only once
//! both sides run it, hence wrote it down, and a side drops the CA under it only once the
//! new one carries the link (`a_crash_at_any_step_...` below crashes either side or both at
//! each step). A state directory lost on one side (a reinstall) leaves the link down for
//! good: pair it again with a new key.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use interlink_config::parse_hex;
use interlink_mka::kay::{Action, CaKey, Kay};
use interlink_mka::keys::{random_sak, Secret};
use interlink_pairing::hex;

/// Where a link's replaced CAK is kept.
pub(crate) fn path(state_dir: &Path, link: &str) -> PathBuf {
    state_dir.join("cak").join(link)
}

/// What is written down: the key that carries the link in place of the configured one and
/// when it started to (Unix seconds), and a key being brought in over it (or over the
/// configured key, before there is a base).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stored {
    pub base: Option<(CaKey, u64)>,
    pub next: Option<CaKey>,
}

impl Stored {
    /// The keychain to run: the next key first, then the base (or the configured keys).
    fn keychain(&self, configured: &[CaKey]) -> Vec<CaKey> {
        let under = match &self.base {
            Some((k, _)) => vec![k.clone()],
            None => configured.to_vec(),
        };
        self.next.iter().cloned().chain(under).collect()
    }
}

/// What a link with `replace_cak` knows of its replaced CAK.
pub(crate) struct Replacement {
    path: PathBuf,
    /// The configured CKN: a file that replaced another (an earlier pairing under the same
    /// name) is not this link's.
    configured: Vec<u8>,
    /// Bring in a new key once the base is this old.
    lifetime: Option<Duration>,
    pub stored: Stored,
    /// A key the key server handed over, not yet written down (the write failed): tried
    /// again each turn, and not used before it succeeds.
    taken: Option<CaKey>,
    /// `interlinkctl link NAME replace-cak`: bring the next key in now, whatever its age.
    now_asked: bool,
}

/// The file's contents, a line each: `replaces HEX` (the configured CKN), then `base_ckn
/// HEX`, `base_cak HEX` and `base_since SECONDS` if there is a base, `next_ckn HEX` and
/// `next_cak HEX` if there is a next key.
fn parse(text: &str) -> Result<(Stored, Vec<u8>), String> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .map(str::trim)
    };
    let bytes = |name: &str| -> Result<Option<Vec<u8>>, String> {
        field(name)
            .map(|v| parse_hex(v).map_err(|_| format!("{name} is not hex")))
            .transpose()
    };
    let replaces = bytes("replaces")?.ok_or("no replaces line")?;
    let key = |prefix: &str| -> Result<Option<CaKey>, String> {
        match (
            bytes(&format!("{prefix}_ckn"))?,
            bytes(&format!("{prefix}_cak"))?,
        ) {
            (None, None) => Ok(None),
            (Some(ckn), Some(cak)) => {
                if !(1..=32).contains(&ckn.len()) || ckn == replaces {
                    return Err(format!(
                        "{prefix}_ckn: 1 to 32 octets, not the configured CKN"
                    ));
                }
                let cak = Secret::new(cak).map_err(|e| format!("{prefix}_cak: {e}"))?;
                Ok(Some(CaKey { ckn, cak }))
            }
            _ => Err(format!("{prefix}_ckn and {prefix}_cak go together")),
        }
    };
    let base = match key("base")? {
        Some(k) => {
            let since = field("base_since")
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or("no base_since line of Unix seconds")?;
            Some((k, since))
        }
        None => None,
    };
    let next = key("next")?;
    if let (Some((b, _)), Some(n)) = (&base, &next) {
        if b.ckn == n.ckn {
            return Err("base_ckn and next_ckn are the same".into());
        }
    }
    Ok((Stored { base, next }, replaces))
}

impl Replacement {
    /// Reads what the state directory holds for `link`, configured with `configured`. A file
    /// that is unreadable or malformed is an error (the link does not start: without it the
    /// peer may accept neither key); one written for another configured CKN is set aside.
    pub(crate) fn load(
        state_dir: &Path,
        link: &str,
        configured: &CaKey,
        lifetime: Option<Duration>,
    ) -> Result<Replacement, String> {
        let path = path(state_dir, link);
        let stored = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let (stored, replaces) =
                    parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
                if replaces == configured.ckn {
                    stored
                } else {
                    Stored::default()
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        Ok(Replacement {
            path,
            configured: configured.ckn.clone(),
            lifetime,
            stored,
            taken: None,
            now_asked: false,
        })
    }

    /// The keychain to run (see `Stored::keychain`).
    pub(crate) fn keychain(&self, configured: &[CaKey]) -> Vec<CaKey> {
        self.stored.keychain(configured)
    }

    /// A reload with `configured`: another configured CKN (the link paired again) starts
    /// over.
    pub(crate) fn reconfigure(&mut self, configured: &CaKey, lifetime: Option<Duration>) {
        self.lifetime = lifetime;
        if configured.ckn != self.configured {
            self.configured = configured.ckn.clone();
            self.stored = Stored::default();
            self.taken = None;
        }
    }

    /// Where the replacement stands: "configured", "replacing" (the first new key runs
    /// beside the configured one), "replaced", or "rotating" (the next key runs beside the
    /// base).
    pub(crate) fn state(&self) -> &'static str {
        match (&self.stored.base, &self.stored.next) {
            (None, None) => "configured",
            (None, Some(_)) => "replacing",
            (Some(_), None) => "replaced",
            (Some(_), Some(_)) => "rotating",
        }
    }

    /// Asks for the next key now (the operator's `replace-cak`): refused while one is being
    /// brought in, and where the peer is the key server of the CA in use (it makes the keys).
    pub(crate) fn replace_now(&mut self, kay: &Kay, configured: &[CaKey]) -> Result<(), String> {
        if self.stored.next.is_some() {
            return Err("a new CAK is being brought in already".into());
        }
        let under = match (&self.stored.base, configured.first()) {
            (Some((k, _)), _) => k.ckn.clone(),
            (None, Some(k)) => k.ckn.clone(),
            (None, None) => return Err("no CAK configured".into()),
        };
        match kay.ckns().position(|c| c == under.as_slice()) {
            Some(ca) if kay.is_key_server_of(ca) => {
                self.now_asked = true;
                Ok(())
            }
            Some(_) => {
                Err("the peer is the key server: it makes the CAKs (run replace-cak there)".into())
            }
            None => Err("no live peer".into()),
        }
    }

    /// Writes `stored` down; only then is it what this side holds.
    fn write(&mut self, stored: Stored) -> Result<(), String> {
        let mut text = format!("replaces {}\n", hex(&self.configured));
        if let Some((k, since)) = &stored.base {
            let _ = write!(
                text,
                "base_ckn {}\nbase_cak {}\nbase_since {since}\n",
                hex(&k.ckn),
                hex(k.cak.as_bytes())
            );
        }
        if let Some(k) = &stored.next {
            let _ = write!(
                text,
                "next_ckn {}\nnext_cak {}\n",
                hex(&k.ckn),
                hex(k.cak.as_bytes())
            );
        }
        let written = self
            .path
            .parent()
            .map_or(Ok(()), |d| {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(d)
            })
            .and_then(|()| interlink_sys::write_durably(&self.path, text.as_bytes(), 0o600));
        // The text held the CAKs: not left in freed memory.
        let mut text = text.into_bytes();
        text.fill(0);
        written.map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.stored = stored;
        Ok(())
    }

    /// A turn of the KaY's, at `now` (`unix` in Unix seconds): a CAK the key server of the
    /// CA under the next key (the base's, else the configured one's) handed over (`taken`)
    /// is written down and run; as that key server, one is made, written down and handed
    /// over when there is no base yet or the base has reached its lifetime; once the next
    /// key's CA carries the link all round, it is written down as the base and the CA under
    /// it dropped. Returns what the KaY asks for meanwhile.
    pub(crate) fn step(
        &mut self,
        kay: &mut Kay,
        configured: &[CaKey],
        taken: Vec<(usize, CaKey)>,
        now: Instant,
        unix: u64,
        name: &str,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let Some(first) = configured.first() else {
            return out;
        };
        let under = |s: &Stored| match &s.base {
            Some((k, _)) => k.ckn.clone(),
            None => first.ckn.clone(),
        };
        let under_ckn = under(&self.stored);
        let under_ca = kay.ckns().position(|c| c == under_ckn.as_slice());
        for (ca, key) in taken {
            let fresh = self.stored.next.as_ref().is_none_or(|n| n.ckn != key.ckn);
            if Some(ca) == under_ca && key.ckn != under_ckn {
                if fresh {
                    self.taken = Some(key);
                }
            } else {
                warn!(
                    "mka: link {name}: a CAK distributed in CKN {} not taken: only one over the CA that carries the link is",
                    kay.ckns().nth(ca).map(hex).unwrap_or_default()
                );
            }
        }
        let mut rechain = false;
        // A key handed over, or one to make as the key server.
        let due = self.now_asked
            || match &self.stored.base {
                None => true,
                Some((_, since)) => self
                    .lifetime
                    .is_some_and(|l| unix >= since.saturating_add(l.as_secs())),
            };
        let made = (self.taken.is_none()
            && self.stored.next.is_none()
            && due
            && under_ca.is_some_and(|ca| kay.is_key_server_of(ca)))
        .then(|| random_key(first.cak.len()));
        let new = match (self.taken.clone(), made) {
            (Some(k), _) => Some(k),
            (None, Some(Ok(k))) => Some(k),
            (None, Some(Err(e))) => {
                warn!("mka: link {name}: cannot make a CAK: {e}");
                None
            }
            (None, None) => None,
        };
        if let Some(key) = new {
            let ckn = hex(&key.ckn);
            let stored = Stored {
                base: self.stored.base.clone(),
                next: Some(key),
            };
            match self.write(stored) {
                Ok(()) => {
                    self.taken = None;
                    self.now_asked = false;
                    log!(
                        "mka: link {name}: a new CAK, CKN {ckn}, to replace CKN {}: written down, running beside it",
                        hex(&under_ckn)
                    );
                    rechain = true;
                }
                Err(e) => warn!(
                    "mka: link {name}: the new CAK is not used before it is written down: {e}"
                ),
            }
        }
        // The next key's CA carries the link all round: it is the base now.
        if let Some(next) = self.stored.next.clone() {
            let first_in_chain = kay.ckns().next() == Some(next.ckn.as_slice());
            if first_in_chain && kay.settled(0) {
                let ckn = hex(&next.ckn);
                match self.write(Stored {
                    base: Some((next, unix)),
                    next: None,
                }) {
                    Ok(()) => {
                        log!(
                            "mka: link {name}: the CAK of CKN {ckn} carries the link; CKN {} is no longer accepted",
                            hex(&under_ckn)
                        );
                        rechain = true;
                    }
                    Err(e) => warn!(
                        "mka: link {name}: CKN {} stays until this is written down: {e}",
                        hex(&under_ckn)
                    ),
                }
            }
        }
        if rechain {
            match kay.set_keys(self.keychain(configured), now) {
                Ok(a) => out.extend(a),
                Err(e) => warn!("mka: link {name}: keychain not taken: {e}"),
            }
        }
        // As the key server of the CA under it, the next key goes out (again, after a
        // restart).
        let under_ckn = under(&self.stored);
        let under_ca = kay.ckns().position(|c| c == under_ckn.as_slice());
        if let (Some(next), Some(ca)) = (&self.stored.next, under_ca) {
            if kay.is_key_server_of(ca) && !kay.distributes_cak(ca) {
                match kay.distribute_cak(ca, now, next) {
                    Ok(a) => out.extend(a),
                    Err(e) => warn!("mka: link {name}: cannot distribute the new CAK: {e}"),
                }
            }
        }
        out
    }
}

/// A fresh CAK of `len` octets and a CKN of 16, both random.
pub(crate) fn random_key(len: usize) -> Result<CaKey, String> {
    let cak = random_sak(len).map_err(|e| e.to_string())?;
    let ckn = random_sak(16).map_err(|e| e.to_string())?;
    Ok(CaKey {
        ckn: ckn.as_bytes().to_vec(),
        cak,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> CaKey {
        CaKey {
            ckn: vec![n; 16],
            cak: Secret::new(vec![n; 16]).unwrap(),
        }
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("il-cak-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn written_down_then_read_back_in_the_keychain_order() {
        let d = dir("order");
        let configured = key(1);
        let chain = [configured.clone()];
        let load = |c: &CaKey| Replacement::load(&d, "l", c, None).unwrap();
        let mut r = load(&configured);
        assert_eq!(
            (r.keychain(&chain), r.state()),
            (vec![key(1)], "configured")
        );
        for (stored, want, state) in [
            (
                Stored {
                    base: None,
                    next: Some(key(2)),
                },
                vec![key(2), key(1)],
                "replacing",
            ),
            (
                Stored {
                    base: Some((key(2), 100)),
                    next: None,
                },
                vec![key(2)],
                "replaced",
            ),
            (
                Stored {
                    base: Some((key(2), 100)),
                    next: Some(key(3)),
                },
                vec![key(3), key(2)],
                "rotating",
            ),
        ] {
            r.write(stored.clone()).unwrap();
            // A restart reads it back.
            let again = load(&configured);
            assert_eq!(again.stored, stored);
            assert_eq!((again.keychain(&chain), again.state()), (want, state));
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(&d, "l"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Another configured CKN (paired again under this name): the file is not its.
        assert_eq!(load(&key(4)).stored, Stored::default());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let d = dir("bad");
        std::fs::create_dir_all(d.join("cak")).unwrap();
        let cak = "01".repeat(16);
        for text in [
            String::new(),
            "replaces zz\n".into(),
            "replaces 01\nbase_ckn 02\nbase_since 5\n".into(),
            format!("replaces 01\nbase_ckn 02\nbase_cak {cak}\n"),
            format!("replaces 01\nbase_ckn 02\nbase_cak {cak}\nbase_since soon\n"),
            "replaces 01\nbase_ckn 02\nbase_cak 0101\nbase_since 5\n".into(),
            format!("replaces 01\nnext_ckn 01\nnext_cak {cak}\n"),
            format!("replaces 01\nnext_ckn {}\nnext_cak {cak}\n", "02".repeat(33)),
            format!("replaces 01\nbase_ckn 02\nbase_cak {cak}\nbase_since 5\nnext_ckn 02\nnext_cak {cak}\n"),
        ] {
            std::fs::write(path(&d, "l"), &text).unwrap();
            let e = Replacement::load(&d, "l", &CaKey { ckn: vec![1], ..key(1) }, None).err();
            assert!(e.is_some_and(|e| e.contains("cak/l")), "{text:?}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Two gateways' KaYs with their replacements, on a fake clock and a wire that delivers
    /// at once; one (or both) can crash after any number of MKPDUs delivered: it starts
    /// again from what its state directory holds, and what was in flight is lost.
    struct Gw {
        dir: PathBuf,
        sci: u8,
        kay: Kay,
        r: Replacement,
    }

    fn configured() -> [CaKey; 1] {
        [key(1)]
    }

    impl Gw {
        fn start(dir: &Path, sci: u8, now: Instant, lifetime: Option<Duration>) -> Gw {
            let template = interlink_mka::participant::Config {
                cak: Secret::new(vec![0; 16]).unwrap(),
                ckn: vec![0],
                sci: [2, 0, 0, 0, 0, sci, 0, 1],
                priority: 16,
                sak_len: 32,
                cipher_suite: Some(0x0080_c200_0001_0004),
                xpn: true,
                rekey_interval: None,
                pn_threshold: 1 << 62,
                take_cak: true,
            };
            let r = Replacement::load(dir, "l", &configured()[0], lifetime).unwrap();
            let kay = Kay::new(template, r.keychain(&configured()), now).unwrap();
            Gw {
                dir: dir.to_owned(),
                sci,
                kay,
                r,
            }
        }

        fn addrs(&self) -> [u8; 12] {
            let mut a = [0u8; 12];
            a[..6].copy_from_slice(&interlink_mka::mkpdu::MKA_GROUP);
            a[6..].copy_from_slice(&[2, 0, 0, 0, 0, self.sci]);
            a
        }
    }

    struct Net {
        now: Instant,
        /// The wall clock, in milliseconds.
        unix_ms: u64,
        gw: [Gw; 2],
        lifetime: Option<Duration>,
        delivered: usize,
        /// Crash side 0, 1 or (2) both once this many MKPDUs have been delivered.
        crash: Option<(usize, usize)>,
        /// Every base either side has held.
        bases: Vec<Vec<u8>>,
    }

    impl Net {
        fn new(d: &Path, lifetime: Option<Duration>, crash: Option<(usize, usize)>) -> Net {
            let now = Instant::now();
            Net {
                now,
                unix_ms: 1_000_000_000,
                gw: [
                    Gw::start(&d.join("a"), 1, now, lifetime),
                    Gw::start(&d.join("b"), 2, now, lifetime),
                ],
                lifetime,
                delivered: 0,
                crash,
                bases: Vec::new(),
            }
        }

        fn deliver(&mut self, from: usize, acts: Vec<Action>) {
            let mut queue = vec![(from, acts)];
            'turns: while let Some((i, acts)) = queue.pop() {
                let mut taken = Vec::new();
                for a in acts {
                    match a {
                        Action::Send(f) => {
                            let addrs = self.gw[i].addrs();
                            let out = self.gw[1 - i].kay.on_mkpdu(self.now, &addrs, &f);
                            self.delivered += 1;
                            queue.push((1 - i, out));
                            let Some((victim, _)) = self.crash.filter(|c| c.1 == self.delivered)
                            else {
                                continue;
                            };
                            self.crash = None;
                            let victims: Vec<usize> = [0, 1]
                                .into_iter()
                                .filter(|v| victim == 2 || *v == victim)
                                .collect();
                            for &v in &victims {
                                let (dir, sci) = (self.gw[v].dir.clone(), self.gw[v].sci);
                                self.gw[v] = Gw::start(&dir, sci, self.now, self.lifetime);
                            }
                            // What a crashed side had yet to do is lost with it.
                            queue.retain(|(s, _)| !victims.contains(s));
                            if victims.contains(&i) {
                                continue 'turns;
                            }
                        }
                        Action::Cak { ca, key } => taken.push((ca, key)),
                        _ => {}
                    }
                }
                let unix = self.unix_ms / 1000;
                let g = &mut self.gw[i];
                let more =
                    g.r.step(&mut g.kay, &configured(), taken, self.now, unix, "l");
                if let Some((b, _)) = &g.r.stored.base {
                    if !self.bases.contains(&b.ckn) {
                        self.bases.push(b.ckn.clone());
                    }
                }
                if !more.is_empty() {
                    queue.push((i, more));
                }
            }
        }

        fn run(&mut self, ticks: usize) {
            for _ in 0..ticks {
                self.now += Duration::from_millis(100);
                self.unix_ms += 100;
                for i in 0..2 {
                    if self.gw[i].kay.next_timer().is_some_and(|t| t <= self.now) {
                        let acts = self.gw[i].kay.on_timer(self.now);
                        self.deliver(i, acts);
                    }
                }
            }
        }

        /// Both sides on one base, written down, alone in their keychains and carrying the
        /// link; the base.
        fn agreed(&self, what: &str) -> CaKey {
            let [a, b] = &self.gw;
            let (Some((ka, _)), Some((kb, _))) = (&a.r.stored.base, &b.r.stored.base) else {
                panic!("{what}: no base: {:?} / {:?}", a.r.stored, b.r.stored);
            };
            assert_eq!(ka, kb, "{what}");
            for g in [a, b] {
                assert_eq!(g.r.stored.next, None, "{what}");
                assert_eq!(
                    g.kay.ckns().collect::<Vec<_>>(),
                    [ka.ckn.as_slice()],
                    "{what}"
                );
                assert!(g.kay.settled(0), "{what}: side {}", g.sci);
                // What runs is what a restart would read.
                let on_disk = Replacement::load(&g.dir, "l", &configured()[0], None).unwrap();
                assert_eq!(on_disk.stored, g.r.stored, "{what}");
            }
            ka.clone()
        }
    }

    #[test]
    fn a_crash_at_any_step_still_ends_on_one_replaced_cak_on_both_sides() {
        // How many MKPDUs a replacement without a crash takes.
        let mut whole = 0;
        for victim in [0, 1, 2] {
            for at in 0..40 {
                let d = dir(&format!("crash-{victim}-{at}"));
                let mut net = Net::new(&d, None, (at > 0).then_some((victim, at)));
                net.run(150);
                if at == 0 {
                    whole = whole.max(net.delivered);
                }
                net.agreed(&format!("crash {victim} at {at}"));
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        // The crashes fell before, during and after the replacement (28 MKPDUs in all, the
        // replacement in the first few).
        assert!((10..40).contains(&whole), "{whole} MKPDUs");
    }

    #[test]
    fn with_a_lifetime_the_cak_is_replaced_again_whatever_crashes() {
        // A 5 s lifetime over 30 s: the configured CAK replaced, then that one replaced
        // again and again; a crash of either side or both at each of the first 60 MKPDUs.
        let lifetime = Some(Duration::from_secs(5));
        for victim in [0, 1, 2] {
            for at in (0..60).step_by(3) {
                let what = format!("crash {victim} at {at}");
                let d = dir(&format!("rotate-{victim}-{at}"));
                let mut net = Net::new(&d, lifetime, (at > 0).then_some((victim, at)));
                net.run(300);
                assert!(net.bases.len() >= 4, "{what}: bases {}", net.bases.len());
                // The lifetime lifted (a reload): the last rotation settles and stays.
                for g in &mut net.gw {
                    g.r.reconfigure(&configured()[0], None);
                }
                net.lifetime = None;
                net.run(100);
                let base = net.agreed(&what);
                net.run(100);
                assert_eq!(net.agreed(&what), base, "{what}");
                let _ = std::fs::remove_dir_all(&d);
            }
        }
    }

    #[test]
    fn the_operator_replaces_the_cak_now_on_the_key_servers_side() {
        let d = dir("now");
        let mut net = Net::new(&d, None, None);
        net.run(30);
        let first = net.agreed("the first replacement");
        // Side 0 has the lower SCI: the key server. Side 1 is told to ask there.
        let e = net.gw[1]
            .r
            .replace_now(&net.gw[1].kay, &configured())
            .unwrap_err();
        assert!(e.contains("the peer is the key server"), "{e}");
        let g = &mut net.gw[0];
        g.r.replace_now(&g.kay, &configured()).unwrap();
        net.run(1);
        let g = &mut net.gw[0];
        // While it comes in, another is refused; once in, a new base on both sides.
        if g.r.stored.next.is_some() {
            let e = g.r.replace_now(&g.kay, &configured()).unwrap_err();
            assert!(e.contains("being brought in"), "{e}");
        }
        net.run(30);
        let second = net.agreed("after replace-cak");
        assert_ne!(second, first);
        // Asked once, done once.
        net.run(100);
        assert_eq!(net.agreed("later"), second);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn any_file_is_answered_without_a_panic() {
        // The state directory is ours, but a damaged disk or a careless edit can put
        // anything there: every prefix of a good file, every octet changed, and noise.
        let cak = "01".repeat(16);
        let good = format!(
            "replaces 01\nbase_ckn 02\nbase_cak {cak}\nbase_since 5\nnext_ckn 03\nnext_cak {cak}\n"
        );
        assert!(parse(&good).is_ok());
        for cut in 0..good.len() {
            let _ = parse(&good[..cut]);
        }
        for i in 0..good.len() {
            for v in [b' ', b'\n', b'0', b'z', b'_', 0xff] {
                let mut b = good.clone().into_bytes();
                b[i] = v;
                let _ = parse(&String::from_utf8_lossy(&b));
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for len in 0..400 {
            let noise: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    b" abcdefnrstx_0123456789\n"[(x % 24) as usize] as char
                })
                .collect();
            let _ = parse(&noise);
        }
    }
}

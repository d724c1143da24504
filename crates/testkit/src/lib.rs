//! Test support shared by every crate's tests and the benchmarks: network namespaces for
//! tests, each test's own, prefixed with its name and the process id, removed (with the
//! daemons in them) on every path, panics included; captures and injected frames.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Fails unless running as root, the way CI runs; `INTERLINK_SKIP_NETNS=1` skips instead.
pub fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("INTERLINK_SKIP_NETNS").is_some() {
        eprintln!("skipped: network namespace tests need root");
        return false;
    }
    panic!("network namespace tests need root (set INTERLINK_SKIP_NETNS=1 to skip them)");
}

/// Runs a command; panics with its output if it fails.
pub fn sh(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Waits for `child` to exit, for at most `timeout` (then kills it): its exit status.
fn reap(child: &mut Child, timeout: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs interlinkctl against the control socket `socket`: (exit status, stdout, stderr).
#[allow(dead_code)]
pub fn interlinkctl(bin: &str, socket: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The underlay MAC addresses of gateway A and gateway B in [`Lab::two_sites`].
pub const MAC_A: &str = "02:00:00:00:00:0a";
pub const MAC_B: &str = "02:00:00:00:00:0b";

/// The namespaces, files and processes of one test.
pub struct Lab {
    prefix: String,
    namespaces: Vec<String>,
    daemons: Vec<(String, Child)>,
    pub dir: PathBuf,
}

impl Lab {
    pub fn new(test: &str) -> Lab {
        let prefix = format!("il-{test}-{}", std::process::id());
        let dir = std::env::temp_dir().join(&prefix);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Lab {
            prefix,
            namespaces: Vec::new(),
            daemons: Vec::new(),
            dir,
        }
    }

    /// The full name of namespace `short`.
    pub fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    pub fn add_ns(&mut self, short: &str) -> String {
        let name = self.ns(short);
        sh(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        name
    }

    /// Removes namespace `short` before the end of the test (the lab removes the rest).
    pub fn del_ns(&mut self, short: &str) {
        let name = self.ns(short);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        self.namespaces.retain(|n| *n != name);
    }

    /// Runs `args` inside namespace `short`.
    pub fn exec(&self, short: &str, args: &[&str]) -> Output {
        let ns = self.ns(short);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Like `exec`, but returns the output whatever the exit status.
    pub fn try_exec(&self, short: &str, args: &[&str]) -> Output {
        let ns = self.ns(short);
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .args(args)
            .output()
            .unwrap()
    }

    /// A veth pair from `a`'s `a_if` to `b`'s `b_if`, both up.
    pub fn veth(&self, a: &str, a_if: &str, b: &str, b_if: &str) {
        let (na, nb) = (self.ns(a), self.ns(b));
        sh(&[
            "ip", "-n", &na, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns",
            &nb,
        ]);
        sh(&["ip", "-n", &na, "link", "set", a_if, "up"]);
        sh(&["ip", "-n", &nb, "link", "set", b_if, "up"]);
    }

    pub fn addr(&self, ns: &str, dev: &str, addr: &str) {
        sh(&[
            "ip",
            "-n",
            &self.ns(ns),
            "addr",
            "add",
            addr,
            "dev",
            dev,
            "nodad",
        ]);
    }

    /// `ip route add ARGS` in `ns`; IPv6 when an argument is an IPv6 address or prefix.
    pub fn route(&self, ns: &str, args: &[&str]) {
        let n = self.ns(ns);
        let family = if args.iter().any(|a| a.contains(':')) {
            "-6"
        } else {
            "-4"
        };
        let mut full = vec!["ip", family, "-n", &n, "route", "add"];
        full.extend_from_slice(args);
        sh(&full);
    }

    pub fn forwarding(&self, ns: &str) {
        self.exec(ns, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        self.exec(ns, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    }

    /// Writes a file only its owner may read, as key files must be.
    pub fn secret(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    }

    /// A `[daemon]` section whose state directory (where static keys keep their PNs) is
    /// `<dir>/<name>`, created empty if it is not there.
    pub fn daemon_section(&self, name: &str) -> String {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        format!("[daemon]\nstate_dir = \"{}\"\n\n", dir.display())
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Starts `bin args` inside namespace `short`, its output in `<dir>/<short>.log`.
    pub fn spawn(&mut self, short: &str, bin: &Path, args: &[&str]) {
        self.spawn_in(short, short, bin, args)
    }

    /// Starts BIRD 2, known as `name`, inside namespace `ns` with the configuration `conf`;
    /// returns its control socket (for [`birdc`]) once BIRD listens on it.
    pub fn spawn_bird(&mut self, name: &str, ns: &str, conf: &str) -> PathBuf {
        let cfg = self.file(&format!("{name}.conf"), conf);
        let sock = self.dir.join(format!("{name}.ctl"));
        self.spawn_in(
            name,
            ns,
            Path::new("bird"),
            &[
                "-f",
                "-c",
                cfg.to_str().unwrap(),
                "-s",
                sock.to_str().unwrap(),
            ],
        );
        self.wait_for("bird's control socket", Duration::from_secs(5), || {
            sock.exists()
        });
        sock
    }

    /// Starts FRR's bgpd, known as `name`, inside namespace `ns` with the configuration
    /// `conf` (no zebra: `-Z`, no kernel routes: `-n`, no listening port of its own: `-P 0`
    /// for the VTY); returns the VTY directory for [`Lab::vtysh`].
    pub fn spawn_frr(&mut self, name: &str, ns: &str, conf: &str) -> PathBuf {
        self.spawn_frr_daemon(name, ns, "bgpd", &["-Z", "-n", "-S"], conf)
    }

    /// Starts FRR's `daemon` (bgpd, bfdd...) from /usr/lib/frr, known as `name`, inside
    /// namespace `ns`, with `flags` and the configuration `conf`, its VTY in a directory of
    /// its own (no TCP port); returns that directory for [`Lab::vtysh`].
    pub fn spawn_frr_daemon(
        &mut self,
        name: &str,
        ns: &str,
        daemon: &str,
        flags: &[&str],
        conf: &str,
    ) -> PathBuf {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        // Daemons that drop to the frr user write their pid file and sockets here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let cfg = self.file(&format!("{name}/{daemon}.conf"), conf);
        let pid = dir.join(format!("{daemon}.pid"));
        let mut args: Vec<&str> = flags.to_vec();
        args.extend_from_slice(&[
            "-P",
            "0",
            "-f",
            cfg.to_str().unwrap(),
            "-i",
            pid.to_str().unwrap(),
            "--vty_socket",
            dir.to_str().unwrap(),
        ]);
        let bin = Path::new("/usr/lib/frr").join(daemon);
        self.spawn_in(name, ns, &bin, &args);
        dir
    }

    /// Runs `vtysh -c CMD...` in namespace `ns` against the bgpd whose VTY is in `vty`.
    pub fn vtysh(&self, ns: &str, vty: &Path, cmds: &[&str]) -> String {
        let mut args = vec!["vtysh", "--vty_socket", vty.to_str().unwrap()];
        for c in cmds {
            args.push("-c");
            args.push(c);
        }
        String::from_utf8_lossy(&self.try_exec(ns, &args).stdout).into_owned()
    }

    /// Starts gobgpd, known as `name`, inside namespace `ns` with the TOML configuration
    /// `conf`, its API on 127.0.0.1:50051 of that namespace; returns once the API answers.
    pub fn spawn_gobgp(&mut self, name: &str, ns: &str, conf: &str) {
        let cfg = self.file(&format!("{name}.toml"), conf);
        self.spawn_in(
            name,
            ns,
            Path::new("gobgpd"),
            &[
                "-f",
                cfg.to_str().unwrap(),
                "-p",
                "--api-hosts",
                "127.0.0.1:50051",
                "--pprof-disable",
            ],
        );
        self.wait_for("gobgpd's API", Duration::from_secs(10), || {
            // `gobgp global` prints "AS: <asn>" once the API is up.
            self.gobgp(ns, &["global"]).contains("AS:")
        });
    }

    /// Starts OpenBGPD's bgpd (in the foreground, verbose), known as `name`, inside
    /// namespace `ns` with the configuration `conf` (without a `socket` line: its control
    /// socket is put in the lab's directory and returned, for [`Lab::bgpctl`]). bgpd chroots
    /// to its user's home, `/run/openbgpd`, which is created if missing.
    pub fn spawn_openbgpd(&mut self, name: &str, ns: &str, conf: &str) -> PathBuf {
        std::fs::create_dir_all("/run/openbgpd").unwrap();
        let sock = self.dir.join(format!("{name}.sock"));
        let cfg = self.file(
            &format!("{name}.conf"),
            &format!("socket \"{}\"\n{conf}", sock.display()),
        );
        // bgpd refuses a configuration others can write.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.spawn_in(
            name,
            ns,
            Path::new("bgpd"),
            &["-d", "-v", "-f", cfg.to_str().unwrap()],
        );
        self.wait_for("bgpd's control socket", Duration::from_secs(10), || {
            sock.exists()
        });
        sock
    }

    /// Runs `bgpctl -s SOCK ARGS...` in namespace `ns`; stdout and stderr together.
    pub fn bgpctl(&self, ns: &str, sock: &Path, args: &[&str]) -> String {
        let mut all = vec!["bgpctl", "-s", sock.to_str().unwrap()];
        all.extend_from_slice(args);
        let out = self.try_exec(ns, &all);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Runs the `gobgp` client in namespace `ns`; stdout and stderr together.
    pub fn gobgp(&self, ns: &str, args: &[&str]) -> String {
        let mut all = vec!["gobgp"];
        all.extend_from_slice(args);
        let out = self.try_exec(ns, &all);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Starts tcpdump, known as `name`, on `dev` in namespace `ns` with `filter` (empty:
    /// everything), writing `<dir>/<name>.pcap`; returns once it listens.
    pub fn capture(&mut self, name: &str, ns: &str, dev: &str, filter: &str) {
        let path = self.dir.join(format!("{name}.pcap"));
        let path = path.to_str().unwrap().to_owned();
        let mut args = vec!["-i", dev, "--immediate-mode", "-U", "-n", "-w", &path];
        if !filter.is_empty() {
            args.push(filter);
        }
        self.spawn_in(name, ns, Path::new("tcpdump"), &args);
        self.wait_for("tcpdump to listen", Duration::from_secs(5), || {
            self.log(name).contains("listening on")
        });
    }

    /// Stops the capture `name` and returns its frames.
    pub fn stop_capture(&mut self, name: &str) -> Vec<Vec<u8>> {
        // Let the last replies land in the capture before stopping it.
        std::thread::sleep(Duration::from_millis(200));
        self.stop(name);
        pcap_frames(&self.dir.join(format!("{name}.pcap")))
    }

    /// Starts `bin args`, known as `name`, inside namespace `ns`; output in `<dir>/<name>.log`.
    pub fn spawn_in(&mut self, name: &str, ns: &str, bin: &Path, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .arg(bin)
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.daemons.push((name.to_owned(), child));
    }

    /// Starts a one-shot iperf3 server, known as `name`, in namespace `ns` on `port`, and
    /// waits until it listens.
    pub fn iperf3_server(&mut self, name: &str, ns: &str, port: &str) {
        self.spawn_in(
            name,
            ns,
            Path::new("iperf3"),
            &["-s", "-1", "--forceflush", "-p", port],
        );
        self.wait_for("iperf3 to listen", Duration::from_secs(5), || {
            self.log(name).contains("listening")
        });
    }

    pub fn log(&self, short: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{short}.log"))).unwrap_or_default()
    }

    /// Waits until `cond` holds, or panics after `timeout` with `what`.
    pub fn wait_for(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > timeout {
                let logs: Vec<String> = self
                    .daemons
                    .iter()
                    .map(|(n, _)| format!("--- {n}.log\n{}", self.log(n)))
                    .collect();
                panic!("timed out waiting for {what}\n{}", logs.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The daemon `name`, no longer the lab's to stop.
    fn take(&mut self, name: &str) -> Child {
        let i = self
            .daemons
            .iter()
            .position(|(n, _)| n == name)
            .expect("no such daemon");
        self.daemons.remove(i).1
    }

    /// Kills the daemon `name` with SIGKILL, as a crash would end it.
    pub fn kill9(&mut self, name: &str) {
        let mut child = self.take(name);
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends `signal` (a name `kill` takes, such as HUP) to the daemon `name`.
    pub fn signal(&self, name: &str, signal: &str) {
        let (_, child) = self
            .daemons
            .iter()
            .find(|(n, _)| n == name)
            .expect("no such daemon");
        sh(&["kill", &format!("-{signal}"), &child.id().to_string()]);
    }

    /// Waits for the process `name` to exit by itself, for at most `timeout` (then kills it),
    /// and returns its exit status and log.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> (Option<i32>, String) {
        let mut child = self.take(name);
        let status = reap(&mut child, timeout);
        (status, self.log(name))
    }

    /// Sends SIGTERM to the daemon in `short` and returns its exit status and log.
    pub fn stop(&mut self, short: &str) -> (Option<i32>, String) {
        let mut child = self.take(short);
        // `ip netns exec` execs the daemon, so the child's pid is the daemon's.
        sh(&["kill", "-TERM", &child.id().to_string()]);
        let status = reap(&mut child, Duration::from_secs(10));
        (status, self.log(short))
    }
}

impl Lab {
    /// host A (ha) - gateway A (ga) - underlay - gateway B (gb) - host B (hb):
    /// 10.1.0.0/24 and fd01::/64 on site A, 10.2.0.0/24 and fd02::/64 on site B, the underlay
    /// 192.0.2.0/24 between the gateways' `wan` interfaces (MACs [`MAC_A`], [`MAC_B`]). The
    /// hosts route through their gateways; the routes across the link are the test's to add.
    pub fn two_sites(&mut self) {
        for ns in ["ha", "ga", "gb", "hb"] {
            self.add_ns(ns);
        }
        self.veth("ha", "eth0", "ga", "lan");
        self.veth("ga", "wan", "gb", "wan");
        self.exec("ga", &["ip", "link", "set", "wan", "address", MAC_A]);
        self.exec("gb", &["ip", "link", "set", "wan", "address", MAC_B]);
        self.veth("gb", "lan", "hb", "eth0");
        for (ns, dev, addr) in [
            ("ha", "eth0", "10.1.0.2/24"),
            ("ha", "eth0", "fd01::2/64"),
            ("ga", "lan", "10.1.0.1/24"),
            ("ga", "lan", "fd01::1/64"),
            ("ga", "wan", "192.0.2.1/24"),
            ("gb", "wan", "192.0.2.2/24"),
            ("gb", "lan", "10.2.0.1/24"),
            ("gb", "lan", "fd02::1/64"),
            ("hb", "eth0", "10.2.0.2/24"),
            ("hb", "eth0", "fd02::2/64"),
        ] {
            self.addr(ns, dev, addr);
        }
        self.route("ha", &["default", "via", "10.1.0.1"]);
        self.route("ha", &["default", "via", "fd01::1"]);
        self.route("hb", &["default", "via", "10.2.0.1"]);
        self.route("hb", &["default", "via", "fd02::1"]);
        self.forwarding("ga");
        self.forwarding("gb");
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (_, child) in self.daemons.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The frames of a pcap file (as tcpdump -w writes it on this host).
pub fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= data.len() {
        let len = u32::from_le_bytes(data[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16;
        if at + len > data.len() {
            break;
        }
        frames.push(data[at..at + len].to_vec());
        at += len;
    }
    frames
}

/// Runs `f` on a thread that has entered network namespace `ns` (a full name).
pub fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let ns_path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns_path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a namespace file, for this thread only.
        assert_eq!(
            unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
            0,
            "setns"
        );
        f()
    })
}

/// The whole response (status line, headers, body) to an HTTP/1.1 GET of `path` from `addr`,
/// made from inside namespace `ns` (a full name); the connection closes after it.
pub fn http_get(ns: &str, addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let request = format!("GET {path} HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n");
    let addr = addr.to_owned();
    in_ns(ns, move || {
        let mut s = std::net::TcpStream::connect(addr)?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

/// Sends raw Ethernet frames out of `ifname` in namespace `ns`, from a thread that enters it.
pub fn inject(ns: &str, ifname: &str, frames: &[Vec<u8>]) {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let frames = frames.to_vec();
    in_ns(ns, move || {
        // SAFETY: plain syscalls with checked results; sll is valid for the calls.
        unsafe {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(fd >= 0, "packet socket");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
            assert!(sll.sll_ifindex > 0, "no such interface");
            sll.sll_halen = 6;
            for frame in &frames {
                let n = libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(n, frame.len() as isize, "sendto");
            }
            libc::close(fd);
        }
    })
    .join()
    .unwrap();
}

/// Whether `cmd` is on the PATH (interop tests skip, saying so, when their peer is not).
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// What `birdc` answers on BIRD's control socket `sock`.
pub fn birdc(sock: &Path, args: &[&str]) -> String {
    let mut all = vec!["birdc", "-s", sock.to_str().unwrap()];
    all.extend_from_slice(args);
    String::from_utf8_lossy(&sh(&all).stdout).into_owned()
}

/// Replays a fuzz target's corpus (`CRATE/fuzz/corpus/TARGET`) through `run`, the target's
/// code, under `cargo test`: CI checks every input the fuzzer found interesting, without
/// cargo-fuzz or a nightly compiler. Fails on an input that panics, and on a corpus of fewer
/// than `at_least` inputs (a lost or truncated corpus).
pub fn replay_corpus(
    crate_dir: &str,
    target: &str,
    at_least: usize,
    run: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) {
    let dir = Path::new(crate_dir).join("fuzz/corpus").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{} panicked", path.display());
        n += 1;
    }
    assert!(
        n >= at_least,
        "the corpus in {} has only {n} inputs",
        dir.display()
    );
}

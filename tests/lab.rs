//! The README's lab, end to end: `scripts/lab.sh` with namespaces and a run directory of this
//! test's own and the interlinkd built for the tests. MKA peers are live, BGP is Established
//! across the encrypted link, each site's prefix is in the other's kernel table, host A pings
//! host B, and a metrics scrape shows the session up and the packet counters moving; the
//! scrape passes `promtool check metrics` (Debian's prometheus package). `lab.sh down`
//! removes it all, also when the test fails. Needs root.

use interlink_testkit as netns;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct LabSh {
    prefix: String,
    run: PathBuf,
}

impl LabSh {
    fn cmd(&self, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab.sh");
        Command::new("bash")
            .arg(script)
            .args(args)
            .env("IL_LAB_PREFIX", &self.prefix)
            .env("IL_LAB_RUN", &self.run)
            .env("IL_LAB_BIN", env!("CARGO_BIN_EXE_interlinkd"))
            .output()
            .unwrap()
    }

    fn ns(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn exec(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for LabSh {
    fn drop(&mut self) {
        let _ = self.cmd(&["down"]);
    }
}

fn scrape(lab: &LabSh) -> String {
    http_get(lab, "gw-a", "127.0.0.1:9477", "/metrics").unwrap()
}

/// The body of an HTTP/1.1 GET from inside namespace `ns`.
fn http_get(lab: &LabSh, ns: &str, addr: &str, path: &str) -> std::io::Result<String> {
    let out = netns::http_get(&lab.ns(ns), addr, path)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned()))
}

fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn the_lab_works_end_to_end() {
    if !netns::require_root() {
        return;
    }
    let lab = LabSh {
        prefix: format!("il-lab-{}", std::process::id()),
        run: std::env::temp_dir().join(format!("il-lab-run-{}", std::process::id())),
    };
    let out = lab.cmd(&[]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{text}\n{err}");
    // What the lab prints: MKA live, the key in use, BGP up and in the kernel, pings answered.
    for want in [
        "mka: link to-site-b: peer live",
        "mka: link to-site-b: sending with key",
        "bgp: 169.254.0.2 (AS 65020) established",
        // With their own next hops, not through nexthop objects: the link is a TUN, whose
        // objects the kernel would flush when a restart drops its carrier.
        "gw-a: 10.20.0.0/24 via 169.254.0.2 dev il0",
        "gw-b: 10.10.0.0/24 via 169.254.0.1 dev il0",
        "3 packets transmitted, 3 received",
        "169.254.0.2  65020  established",
    ] {
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
    // The routes are really in the kernels, as interlink's.
    let r = lab.exec("gw-b", &["ip", "route", "show", "proto", "77"]);
    let r = String::from_utf8_lossy(&r.stdout).into_owned();
    assert!(r.starts_with("10.10.0.0/24 via 169.254.0.1 dev il0"), "{r}");
    // No nexthop object on the TUN.
    let nh = lab.exec("gw-b", &["ip", "nexthop", "show", "proto", "77"]);
    let nh = String::from_utf8_lossy(&nh.stdout).into_owned();
    assert!(!nh.contains("dev il0"), "{nh}");

    // Metrics: the session up, MKA live, counters moving with traffic. They are rendered every
    // half second: the first scrape may predate the session.
    let up = "interlink_bgp_session_established{neighbor=\"169.254.0.2\"}";
    let start = Instant::now();
    let mut before = scrape(&lab);
    while sample(&before, up) != 1.0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        before = scrape(&lab);
    }
    assert_eq!(
        sample(
            &before,
            "interlink_bgp_session_established{neighbor=\"169.254.0.2\"}"
        ),
        1.0
    );
    assert_eq!(
        sample(&before, "interlink_mka_peer_live{link=\"to-site-b\"}"),
        1.0
    );
    assert_eq!(
        sample(&before, "interlink_link_up{link=\"to-site-b\"}"),
        1.0
    );
    let info = "interlink_link_info{link=\"to-site-b\",interface=\"il0\",transport=\"udp\",\
                cipher_suite=\"gcm-aes-xpn-256\",aes_gcm=\"";
    assert!(
        before
            .lines()
            .any(|l| l.starts_with(info) && l.ends_with("\"} 1")),
        "{before}"
    );
    let series = "interlink_link_packets_total{link=\"to-site-b\",direction=\"tx\"}";
    let tx0 = sample(&before, series);
    let ping = lab.exec("host-a", &["ping", "-c", "5", "-i", "0.05", "10.20.0.2"]);
    assert!(ping.status.success());
    // The workers publish their counters after each batch, and at least once a second.
    let start = Instant::now();
    let mut after = scrape(&lab);
    while sample(&after, series) < tx0 + 5.0 && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(200));
        after = scrape(&lab);
    }
    assert!(sample(&after, series) >= tx0 + 5.0, "{after}");

    // The underlay fails: once gw-a's probes go unanswered, the routes across the link are
    // invalid (their next hop is on the link) and leave gw-a's kernel well before BGP's hold
    // time would end the session; they are back as soon as the link is.
    let route = || {
        let r = lab.exec("gw-a", &["ip", "route", "show", "proto", "77"]);
        String::from_utf8_lossy(&r.stdout).contains("10.20.0.0/24")
    };
    // A connection collision as both gateways connect at once (RFC 4271 §6.8) can end the
    // first session at the start; what counts is that none ends during the cut.
    let log_path = lab.run.join("gw-a.log");
    let downs = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .matches("169.254.0.2 down")
            .count()
    };
    let downs_before = downs();
    lab.exec("gw-b", &["ip", "link", "set", "wan", "down"]);
    let start = Instant::now();
    while route() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!route(), "the route across the dead link stayed");
    eprintln!(
        "route across the link withdrawn {:?} after the underlay went down",
        start.elapsed()
    );
    // The routes go at the 50 ms reachability check; the line is logged at the half-second
    // tick.
    let start = Instant::now();
    let mut log = std::fs::read_to_string(&log_path).unwrap();
    while !log.contains("link to-site-b: peer unreachable")
        && start.elapsed() < Duration::from_secs(3)
    {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&log_path).unwrap();
    }
    assert!(log.contains("link to-site-b: peer unreachable"), "{log}");
    assert_eq!(downs(), downs_before, "the session went down: {log}");
    lab.exec("gw-b", &["ip", "link", "set", "wan", "up"]);
    let start = Instant::now();
    while !route() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(route(), "the route did not come back");
    // Gateway B's route back comes with its own probes (every 500 ms): two answers within
    // five seconds.
    let ping = lab.exec(
        "host-a",
        &["ping", "-c", "2", "-i", "0.2", "-w", "5", "10.20.0.2"],
    );
    assert!(ping.status.success());

    // promtool, where installed (scripts/test.sh installs it).
    let path = lab.run.with_extension("prom");
    std::fs::write(&path, &after).unwrap();
    match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
    {
        Ok(o) => assert!(
            o.status.success(),
            "promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("skipped promtool: not installed"),
    }
    let _ = std::fs::remove_file(&path);
}

/// The replies' times of a `ping -D` log, in seconds.
fn reply_times(log: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// `./scripts/lab.sh --redundant`: two links over two underlays, BGP over each, ECMP across
/// both. An iperf3 TCP stream and a ping every 10 ms go from host A to host B while the
/// underlay of the link they use is cut (its veth down): they move to the other link within
/// a second, nothing stays routed through the dead one on either gateway, and both links
/// carry routes again once the underlay is back.
#[test]
fn redundant_links_carry_traffic_through_a_cut() {
    if !netns::require_root() || !netns::have("iperf3") {
        return;
    }
    let lab = LabSh {
        prefix: format!("il-red-{}", std::process::id()),
        run: std::env::temp_dir().join(format!("il-red-run-{}", std::process::id())),
    };
    let out = lab.cmd(&["--redundant"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let routes = |ns: &str| {
        let r = lab.exec(ns, &["ip", "route", "show", "proto", "77"]);
        String::from_utf8_lossy(&r.stdout).into_owned()
    };
    for ns in ["gw-a", "gw-b"] {
        let r = routes(ns);
        assert!(r.contains("dev il0") && r.contains("dev il1"), "{ns}: {r}");
    }
    // The link host A's traffic takes (the kernel hashes a flow onto one next hop).
    let get = lab.exec(
        "gw-a",
        &[
            "ip",
            "route",
            "get",
            "10.20.0.2",
            "from",
            "10.10.0.2",
            "iif",
            "lan",
        ],
    );
    let get = String::from_utf8_lossy(&get.stdout).into_owned();
    let (used, other, underlay) = if get.contains("dev il1") {
        ("il1", "il0", "wan2")
    } else {
        ("il0", "il1", "wan")
    };
    let spawn = |ns: &str, args: &[&str]| {
        Command::new("ip")
            .args(["netns", "exec", &lab.ns(ns)])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut server = spawn("host-b", &["iperf3", "-s", "-1"]);
    std::thread::sleep(Duration::from_millis(500));
    let iperf = spawn(
        "host-a",
        &[
            "iperf3",
            "-c",
            "10.20.0.2",
            "-t",
            "7",
            "-i",
            "0.2",
            "--json",
        ],
    );
    let ping = spawn(
        "host-a",
        &[
            "ping",
            "-D",
            "-n",
            "-i",
            "0.01",
            "-W",
            "1",
            "-c",
            "700",
            "10.20.0.2",
        ],
    );
    std::thread::sleep(Duration::from_millis(2000));
    lab.exec("gw-a", &["ip", "link", "set", underlay, "down"]);
    let cut = Instant::now();
    // Nothing left through the dead link, on either side.
    let mut gone = None;
    while cut.elapsed() < Duration::from_secs(5) {
        if !routes("gw-a").contains(used) && !routes("gw-b").contains(used) {
            gone = Some(cut.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let gone = gone.unwrap_or_else(|| panic!("still through {used}: {}", routes("gw-a")));
    assert!(routes("gw-a").contains(other), "{}", routes("gw-a"));
    std::thread::sleep(Duration::from_millis(2000));
    lab.exec("gw-a", &["ip", "link", "set", underlay, "up"]);
    let back = Instant::now();
    while back.elapsed() < Duration::from_secs(15) {
        if routes("gw-a").contains(used) && routes("gw-b").contains(used) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        routes("gw-a").contains(used) && routes("gw-b").contains(used),
        "{used} not back: {}",
        routes("gw-a")
    );
    let back = back.elapsed();

    let ping = ping.wait_with_output().unwrap();
    let times = reply_times(&String::from_utf8_lossy(&ping.stdout));
    let gap = times.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let iperf = iperf.wait_with_output().unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let report: serde_json::Value = serde_json::from_slice(&iperf.stdout)
        .unwrap_or_else(|e| panic!("iperf3: {e}: {}", String::from_utf8_lossy(&iperf.stdout)));
    // The longest run of 200 ms intervals that carried nothing.
    let (mut run, mut longest) = (0u32, 0u32);
    for i in report["intervals"].as_array().unwrap() {
        if i["sum"]["bytes"].as_f64().unwrap_or(0.0) == 0.0 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    let sent = report["end"]["sum_received"]["bytes"].as_f64().unwrap();
    let retransmits = report["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "cut {underlay} ({used}): routes through it gone after {gone:?}, back {back:?} after it returned; \
         ping: {} of 700 answered, longest gap {:.0} ms; iperf3: {:.1} MB, longest silence {} ms, \
         {retransmits} retransmits",
        times.len(),
        gap * 1000.0,
        sent / 1e6,
        longest * 200
    );
    assert!(gap < 1.0, "no reply for {gap} s");
    assert!(longest <= 5, "TCP carried nothing for {} ms", longest * 200);
    assert!(sent > 1e6, "{sent} octets");
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters kept).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Stops the Prometheus the dashboard test started.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `contrib/grafana/interlink.json` against the lab: a Prometheus in gateway A's namespace
/// scrapes its interlinkd every second while host A pings host B, then every expression of
/// every panel, and every variable's label_values, is evaluated by it with the variables at
/// "All": none returns an error, each returns data. (The lab runs max_prefixes and flow logs,
/// and here BFD, `lab.sh --bfd`, so that every panel has something to show.) Skipped, with a note, without the
/// prometheus binary (`scripts/test.sh` installs Debian's).
#[test]
fn every_dashboard_query_returns_data_from_the_lab() {
    if !netns::require_root() {
        return;
    }
    if !netns::have("prometheus") {
        eprintln!("skipped: prometheus is not installed");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("contrib/grafana/interlink.json")).unwrap(),
    )
    .unwrap();
    let lab = LabSh {
        prefix: format!("il-dash-{}", std::process::id()),
        run: std::env::temp_dir().join(format!("il-dash-run-{}", std::process::id())),
    };
    let out = lab.cmd(&["--bfd"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = lab.run.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n\
         scrape_configs:\n  - job_name: interlink\n    static_configs: [{targets: ['127.0.0.1:9477']}]\n",
    )
    .unwrap();
    let _prom = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("gw-a"), "prometheus"])
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                lab.run.join("tsdb").display()
            ))
            .args(["--web.listen-address=127.0.0.1:9090", "--log.level=warn"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let query = |q: &str| -> serde_json::Value {
        let body = http_get(
            &lab,
            "gw-a",
            "127.0.0.1:9090",
            &format!("/api/v1/query?query={}", url_encode(q)),
        )
        .unwrap_or_default();
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    };
    // Ready, and scraping the gateway.
    let start = Instant::now();
    while query("up{job=\"interlink\"} == 1")["data"]["result"]
        .as_array()
        .is_none_or(|r| r.is_empty())
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped the gateway"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Traffic across the link for a few scrapes.
    let ping = lab.exec(
        "host-a",
        &["ping", "-c", "40", "-i", "0.2", "-q", "10.20.0.2"],
    );
    assert!(ping.status.success());
    let substitute = |e: &str| {
        e.replace("$__rate_interval", "10s")
            .replace("$instance", ".*")
            .replace("$link", ".*")
            .replace("$neighbor", ".*")
            .replace("$job", ".*")
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push((
                p["title"].as_str().unwrap().to_owned(),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    // Variables: label_values(METRIC, LABEL) as the PromQL Grafana runs for it.
    for v in dash["templating"]["list"].as_array().unwrap() {
        let Some(def) = v["definition"].as_str() else {
            continue;
        };
        let inner = def
            .strip_prefix("label_values(")
            .and_then(|d| d.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {def}"));
        let (metric, label) = inner.rsplit_once(", ").unwrap();
        exprs.push((
            format!("variable {}", v["name"]),
            format!("count by ({label}) ({metric})"),
        ));
    }
    assert!(exprs.len() >= 30, "{} expressions", exprs.len());
    for (title, e) in &exprs {
        let q = substitute(e);
        let r = query(&q);
        let ok = r["status"] == "success"
            && r["data"]["result"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
        if !ok {
            failures.push(format!("{title}: {q}\n  -> {r}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    eprintln!("dashboard: {checked} expressions, each with data from the lab");
}

//! interlinkctl: asks a running interlinkd over its control socket and prints the answer as
//! aligned tables, or as the daemon's JSON with `--json`.
//!
//! Exit status: 0 done; 1 the daemon refused the command (the reason is printed); 2 a usage
//! error; 3 the daemon could not be reached.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;

use serde_json::Value;

#[path = "interlinkctl/pairing.rs"]
mod pairing;

const DEFAULT_SOCKET: &str = "/run/interlink/control.sock";

const HELP: &str = "\
usage: interlinkctl [--socket PATH] [--json] COMMAND

commands:
  status                                  the daemon in a few lines
  show links                              links: transport, keys, liveness, counters
  show neighbors                          BGP neighbors: state, uptime, prefixes
  show routes [PREFIX]                    best BGP routes, or every route to PREFIX
  show fib                                what interlinkd holds in the kernel's table
  show bfd                                BFD sessions: state, timers, last diagnostic
  show flows [--top N]                    flow logs: the N largest flows now (20), tables, export
  reload                                  read the configuration again, apply what changed
  neighbor ADDRESS reset|shutdown|enable  bounce, stop or start a BGP session
  link NAME rekey                         a new SAK now (MKA, when this side is key server)
  link NAME replace-cak                   a new CAK now (replace_cak, when this side is key
                                          server): the one in use is then refused
  link offer NAME --underlay ADDR[:PORT] --peer ADDR[:PORT] [--peer-asn ASN]
       [--expires 24h] [--cipher-suite gcm-aes-xpn-256] [--interface IF] [--import PREFIX]...
       [--ipv6 auto|PREFIX]               offer a link to another site: writes it (pending)
                                          and prints the activation key to hand over; with
                                          --ipv6, an IPv6 tunnel and BGP session too
  link accept KEY [--name NAME] [--interface IF]
                                          accept a link another site offered: writes it, with
                                          its CAK file, and reloads
  link remove NAME                        remove a link offer or accept wrote, and reload

options:
  --socket PATH   the daemon's control socket (default: the configuration's, else
                  /run/interlink/control.sock)
  --config FILE   the configuration link offer and accept write beside (default
                  /etc/interlink/interlink.toml; they need root)
  --json          print the daemon's answer as JSON, for scripts
";

/// The options of `link offer` and `link accept`.
const PAIRING_OPTIONS: [&str; 9] = [
    "--underlay",
    "--peer",
    "--peer-asn",
    "--expires",
    "--cipher-suite",
    "--interface",
    "--import",
    "--ipv6",
    "--name",
];

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut socket = DEFAULT_SOCKET.to_owned();
    let mut json = false;
    let mut words = Vec::new();
    let mut top = None;
    let mut config = None;
    let mut socket_given = false;
    let mut opts: Vec<(String, String)> = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--json" => json = true,
            "--config" => match args.next() {
                Some(p) => config = Some(p),
                None => return usage("--config needs a path"),
            },
            o if PAIRING_OPTIONS.contains(&o) => match args.next() {
                Some(v) => opts.push((o.to_owned(), v)),
                None => return usage(&format!("{o} needs a value")),
            },
            "--top" => match args.next() {
                Some(n) => top = Some(n),
                None => return usage("--top needs a number"),
            },
            "--socket" => match args.next() {
                Some(p) => {
                    socket = p;
                    socket_given = true;
                }
                None => return usage("--socket needs a path"),
            },
            "-h" | "--help" | "help" => {
                print!("{HELP}");
                return ExitCode::SUCCESS;
            }
            s if s.starts_with('-') => return usage(&format!("unknown option {s}")),
            s => words.push(s.to_owned()),
        }
    }
    if let Some(n) = top {
        if words != ["show", "flows"] {
            return usage("--top goes with show flows");
        }
        if !n.parse::<usize>().is_ok_and(|n| (1..=1000).contains(&n)) {
            return usage(&format!("--top {n}: a number of flows from 1 to 1000"));
        }
        words.push(n);
    }
    // (`link NAME rekey` stays a rekey, whatever the link is called; so does replace-cak.)
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let pairing = match w.as_slice() {
        ["link", "offer" | "accept" | "remove", "rekey" | "replace-cak"] => {
            !opts.is_empty() || config.is_some()
        }
        ["link", "offer" | "accept" | "remove", _] => true,
        _ => false,
    };
    if pairing {
        let config = config.unwrap_or_else(|| interlink_config::DEFAULT_PATH.to_owned());
        return pair(
            &words,
            &opts,
            config.as_ref(),
            socket_given.then_some(socket),
        );
    }
    if !opts.is_empty() || config.is_some() {
        return usage("--config and the link options go with link offer, accept and remove");
    }
    if let Err(e) = check(&words) {
        return usage(&e);
    }
    let line = words.join(" ");
    let answer = match ask(&socket, &line) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("interlinkctl: {e}");
            return ExitCode::from(3);
        }
    };
    if answer["ok"] != Value::Bool(true) {
        let why = answer["error"]
            .as_str()
            .unwrap_or("the daemon refused the command");
        if json {
            println!("{answer}");
        }
        eprintln!("interlinkctl: {why}");
        return ExitCode::from(1);
    }
    let data = &answer["data"];
    if json {
        println!("{}", serde_json::to_string_pretty(data).unwrap_or_default());
    } else {
        print!("{}", render(&words, data));
    }
    ExitCode::SUCCESS
}

/// `link offer` and `link accept`: the files written, then the daemon reloaded.
fn pair(
    words: &[String],
    opts: &[(String, String)],
    config: &std::path::Path,
    socket: Option<String>,
) -> ExitCode {
    let one = |name: &str| {
        opts.iter()
            .rev()
            .find(|(o, _)| o == name)
            .map(|(_, v)| v.clone())
    };
    let allowed: &[&str] = match words[1].as_str() {
        "offer" => &PAIRING_OPTIONS[..8],
        "accept" => &["--name", "--interface"],
        _ => &[],
    };
    if let Some((o, _)) = opts.iter().find(|(o, _)| !allowed.contains(&o.as_str())) {
        return usage(&format!("{o} does not go with link {}", words[1]));
    }
    let done = if words[1] == "remove" {
        pairing::remove(config, &words[2])
    } else if words[1] == "offer" {
        let (Some(underlay), Some(peer)) = (one("--underlay"), one("--peer")) else {
            return usage("link offer needs --underlay ADDR and --peer ADDR");
        };
        let peer_asn = match one("--peer-asn").map(|a| a.parse::<u32>()) {
            None => None,
            Some(Ok(a)) if a > 0 => Some(a),
            Some(_) => return usage("--peer-asn: an AS number, 1 to 4294967295"),
        };
        let expires = match one("--expires").map(|e| interlink_config::parse_duration(&e)) {
            None => std::time::Duration::from_secs(24 * 3600),
            Some(Ok(d)) if d >= std::time::Duration::from_secs(1) => d,
            Some(_) => return usage("--expires: a duration such as \"24h\" or \"30m\""),
        };
        pairing::offer(
            config,
            pairing::OfferArgs {
                name: words[2].clone(),
                underlay,
                peer,
                peer_asn,
                expires,
                suite: one("--cipher-suite").unwrap_or_else(|| "gcm-aes-xpn-256".into()),
                interface: one("--interface"),
                ipv6: one("--ipv6"),
                import: opts
                    .iter()
                    .filter(|(o, _)| o == "--import")
                    .map(|(_, v)| v.clone())
                    .collect(),
            },
        )
    } else {
        pairing::accept(
            config,
            pairing::AcceptArgs {
                key: words[2].clone(),
                name: one("--name"),
                interface: one("--interface"),
            },
        )
    };
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            eprintln!("interlinkctl: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(key) = &done.key {
        println!("{key}");
    }
    for n in &done.notes {
        eprintln!("interlinkctl: {n}");
    }
    let socket = socket.unwrap_or_else(|| done.config.control_socket.display().to_string());
    match ask(&socket, "reload") {
        Ok(a) if a["ok"] == Value::Bool(true) => {
            eprintln!("interlinkctl: interlinkd reloaded");
            ExitCode::SUCCESS
        }
        Ok(a) => {
            eprintln!(
                "interlinkctl: the files are written, but interlinkd refused the reload: {}",
                a["error"].as_str().unwrap_or("no reason given")
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("interlinkctl: the files are written; {e}: the link comes up when interlinkd starts");
            ExitCode::SUCCESS
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("interlinkctl: {why}\n\n{HELP}");
    ExitCode::from(2)
}

/// The command's shape, checked here so that a typo is a usage error, not a round trip.
fn check(w: &[String]) -> Result<(), String> {
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["status"] | ["reload"] => Ok(()),
        ["show", "links" | "neighbors" | "fib" | "bfd" | "flows"] => Ok(()),
        ["show", "flows", _] => Ok(()),
        ["show", "routes"] | ["show", "routes", _] => Ok(()),
        ["neighbor", _, "reset" | "shutdown" | "enable"] => Ok(()),
        ["link", _, "rekey" | "replace-cak"] => Ok(()),
        [] => Err("no command".into()),
        _ => Err(format!("unknown command: {}", w.join(" "))),
    }
}

fn ask(socket: &str, line: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            format!("cannot reach interlinkd at {socket}: is it running? ({e})")
        }
        std::io::ErrorKind::PermissionDenied => format!(
            "cannot reach interlinkd at {socket}: permission denied (run as root or as a \
             member of group interlink)"
        ),
        _ => format!("cannot reach interlinkd at {socket}: {e}"),
    })?;
    s.write_all(format!("{line}\n").as_bytes())
        .map_err(|e| format!("sending to interlinkd: {e}"))?;
    let mut text = String::new();
    BufReader::new(s)
        .read_line(&mut text)
        .map_err(|e| format!("reading interlinkd's answer: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("interlinkd's answer is not JSON: {e}"))
}

/// A value as a table cell.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        v => v.to_string(),
    }
}

/// Rows under headers, each column as wide as its widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut width: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        l.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

fn duration(v: &Value) -> String {
    let Some(s) = v.as_u64() else {
        return "-".into();
    };
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// `IPv4/IPv6`; `-` where the count is not kept (received without soft reconfiguration).
fn families(v: &Value) -> String {
    if v.is_null() {
        return "-".into();
    }
    format!("{}/{}", cell(&v["ipv4"]), cell(&v["ipv6"]))
}

fn render(words: &[String], data: &Value) -> String {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let rows = |f: &dyn Fn(&Value) -> Vec<String>| -> Vec<Vec<String>> {
        data.as_array()
            .map_or(vec![], |a| a.iter().map(f).collect())
    };
    match w.as_slice() {
        ["status"] => format!(
            "interlinkd {} up {}, config {}\nlinks      {} ({} up)\nneighbors  {}\nfib        {} IPv4, {} IPv6 route(s){}\n",
            cell(&data["version"]),
            duration(&data["uptime_seconds"]),
            cell(&data["config"]),
            cell(&data["links"]),
            cell(&data["links_up"]),
            cell(&data["neighbors"]),
            cell(&data["fib_routes"]["ipv4"]),
            cell(&data["fib_routes"]["ipv6"]),
            if data["fib_in_sync"] == Value::Bool(true) { "" } else { ", being programmed" },
        ),
        ["show", "links"] => table(
            &[
                "NAME", "INTERFACE", "TRANSPORT", "SUITE", "KEYING", "UP", "RTT", "TX", "RX",
                "DROPPED", "MKA",
            ],
            rows(&|l| {
                let mka = &l["mka"];
                let mka = if mka.is_null() {
                    "-".into()
                } else {
                    format!(
                        "{}{} key {} AN {}{}",
                        if mka["live"] == Value::Bool(true) { "live" } else { "no peer" },
                        if mka["key_server"] == Value::Bool(true) { ", key server," } else { "," },
                        cell(&mka["latest_key"]["key_number"]),
                        cell(&mka["latest_key"]["an"]),
                        // replace_cak: where the replacement of the configured CAK stands.
                        mka["cak"].as_str().map_or(String::new(), |c| format!(", CAK {c}")),
                    )
                };
                // An offered link: pending, available or expired first.
                let mka = match l["pairing"]["status"].as_str() {
                    Some(st) if mka == "-" => st.to_owned(),
                    Some(st) => format!("{st}: {mka}"),
                    None => mka,
                };
                vec![
                    cell(&l["name"]),
                    cell(&l["interface"]),
                    cell(&l["transport"]),
                    cell(&l["cipher_suite"]),
                    cell(&l["keying"]),
                    cell(&l["up"]),
                    l["rtt_seconds"]
                        .as_f64()
                        .map_or("-".into(), |s| format!("{:.2}ms", s * 1e3)),
                    cell(&l["tx_packets"]),
                    cell(&l["rx_packets"]),
                    cell(&l["rx_dropped"]),
                    mka,
                ]
            }),
        ),
        ["show", "neighbors"] => table(
            &[
                "NEIGHBOR",
                "AS",
                "STATE",
                "UPTIME",
                "RECEIVED",
                "ACCEPTED",
                "REFUSED",
                "ADVERTISED",
                "LAST ERROR",
            ],
            rows(&|n| {
                vec![
                    cell(&n["address"]),
                    cell(&n["remote_as"]),
                    cell(&n["state"]),
                    duration(&n["uptime_seconds"]),
                    families(&n["received"]),
                    families(&n["accepted"]),
                    families(&n["refused"]),
                    families(&n["advertised"]),
                    cell(&n["last_error"]),
                ]
            }),
        ),
        ["show", "routes", ..] => {
            let all = data.as_array().cloned().unwrap_or_default();
            let (more, listed): (Vec<Value>, Vec<Value>) =
                all.into_iter().partition(|r| r["truncated"] == Value::Bool(true));
            let mut out = table(
                &[
                    "PREFIX",
                    "BEST",
                    "FROM",
                    "NEXT HOP",
                    "AS PATH",
                    "ORIGIN",
                    "LOCAL PREF",
                    "MED",
                    "COMMUNITIES",
                ],
                listed
                    .iter()
                    .map(|r| {
                        vec![
                            cell(&r["prefix"]),
                            if r["best"] == Value::Bool(true) { "*" } else { "" }.into(),
                            cell(&r["from"]),
                            cell(&r["next_hops"]),
                            cell(&r["as_path"]),
                            cell(&r["origin"]),
                            cell(&r["local_pref"]),
                            cell(&r["med"]),
                            cell(&r["communities"]),
                        ]
                    })
                    .collect(),
            );
            if let Some(m) = more.first() {
                out.push_str(&format!(
                    "(the first {} of {} routes in the kernel; `show routes PREFIX` for one)\n",
                    listed.len(),
                    cell(&m["fib_routes"])
                ));
            }
            out
        }
        ["show", "flows", ..] => {
            if data["enabled"] != Value::Bool(true) {
                return "flow logs are off (a [flows] section turns them on)\n".into();
            }
            let e = &data["exporter"];
            let mut out = format!(
                "collectors {}, sampling 1:{}; exported {} records in {} messages, {} dropped, {} send errors\n",
                data["collectors"]
                    .as_array()
                    .filter(|a| !a.is_empty())
                    .map_or("none".into(), |a| a.iter().map(cell).collect::<Vec<_>>().join(",")),
                cell(&data["sampling"]),
                cell(&e["records"]),
                cell(&e["messages"]),
                cell(&e["dropped"]),
                cell(&e["errors"]),
            );
            let tables = data["tables"].as_array().cloned().unwrap_or_default();
            out.push_str(&table(
                &["LINK", "DIR", "FLOWS", "ENDED", "EVICTED"],
                tables
                    .iter()
                    .map(|t| {
                        ["link", "direction", "active", "ended", "evicted"]
                            .iter()
                            .map(|k| cell(&t[*k]))
                            .collect()
                    })
                    .collect(),
            ));
            out.push('\n');
            let top = data["top"].as_array().cloned().unwrap_or_default();
            let proto = |p: &Value| match p.as_u64() {
                Some(1) => "icmp".to_owned(),
                Some(6) => "tcp".to_owned(),
                Some(17) => "udp".to_owned(),
                Some(58) => "icmpv6".to_owned(),
                _ => cell(p),
            };
            let end = |a: &Value, port: &Value| match a.as_str() {
                Some(a) if a.contains(':') => format!("[{a}]:{}", cell(port)),
                _ => format!("{}:{}", cell(a), cell(port)),
            };
            out.push_str(&table(
                &["LINK", "DIR", "PROTO", "SOURCE", "DESTINATION", "PACKETS", "OCTETS", "SECONDS"],
                top.iter()
                    .map(|f| {
                        vec![
                            cell(&f["link"]),
                            cell(&f["direction"]),
                            proto(&f["protocol"]),
                            end(&f["source"], &f["source_port"]),
                            end(&f["destination"], &f["destination_port"]),
                            cell(&f["packets"]),
                            cell(&f["octets"]),
                            f["duration_s"].as_f64().map_or("-".into(), |s| format!("{s:.1}")),
                        ]
                    })
                    .collect(),
            ));
            out
        }
        ["show", "bfd"] => {
            let sessions = data["sessions"].as_array().cloned().unwrap_or_default();
            if sessions.is_empty() {
                return "no BFD sessions (a neighbor has one with bfd = true)\n".into();
            }
            let ms = |v: &Value| v.as_f64().map_or("-".into(), |m| format!("{m:.0}ms"));
            table(
                &["PEER", "STATE", "REMOTE", "INTERVAL", "DETECT", "UP FOR", "DOWNS", "LAST DIAGNOSTIC"],
                sessions
                    .iter()
                    .map(|v| {
                        vec![
                            cell(&v["peer"]),
                            cell(&v["state"]),
                            cell(&v["remote_state"]),
                            format!("{} x{}", ms(&v["tx_interval_ms"]), cell(&v["multiplier"])),
                            ms(&v["detection_time_ms"]),
                            v["up_for_s"].as_u64().map_or("-".into(), |s| format!("{s}s")),
                            cell(&v["downs"]),
                            cell(&v["diagnostic"]),
                        ]
                    })
                    .collect(),
            )
        }
        ["show", "fib"] => {
            let ops = &data["operations"];
            format!(
                "table {}, metric {}, protocol {}\nroutes      {} IPv4, {} IPv6 ({}){}\n{}",
                cell(&data["table"]),
                cell(&data["metric"]),
                cell(&data["protocol"]),
                cell(&data["routes"]["ipv4"]),
                cell(&data["routes"]["ipv6"]),
                if data["in_sync"] == Value::Bool(true) { "in sync" } else { "being programmed" },
                match data["stale"].as_u64() {
                    Some(n) if n > 0 => format!("\nstale       {n} of a previous run, awaiting the sweep"),
                    _ => String::new(),
                },
                table(
                    &["OPERATION", "OK", "FAILED"],
                    ["add", "replace", "delete"]
                        .iter()
                        .map(|op| vec![op.to_string(), cell(&ops[op]["ok"]), cell(&ops[op]["failed"])])
                        .collect(),
                ) + &format!(
                    "repaired    {}\nconflicts   {}\nnexthops    {} objects (added {}, deleted {}, refused {})\n",
                    cell(&data["repaired"]),
                    cell(&data["conflicts"]),
                    cell(&data["nexthop_objects"]),
                    cell(&data["nexthop_operations"]["add"]["ok"]),
                    cell(&data["nexthop_operations"]["delete"]["ok"]),
                    data["nexthop_operations"]["add"]["failed"].as_u64().unwrap_or(0)
                        + data["nexthop_operations"]["delete"]["failed"].as_u64().unwrap_or(0)
                ),
            )
        }
        ["reload"] => {
            let mut out = "reloaded\n".to_owned();
            for n in data["notes"].as_array().into_iter().flatten() {
                out.push_str(&format!("note: {}\n", cell(n)));
            }
            out
        }
        _ => "done\n".into(),
    }
}

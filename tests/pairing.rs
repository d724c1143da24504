//! Activation keys end to end: two gateways that know nothing of each other (a router, their
//! networks, a control socket; no link) are paired by two commands, `interlinkctl link offer`
//! on site A and `interlinkctl link accept KEY` on site B. The link comes up keyed by MKA from
//! the derived CAK, BGP runs across it, host A pings host B, and A's link turns from pending to
//! available. The CAK derived from the key is then replaced by one only the two gateways know
//! (MKA CAK distribution), which a restart keeps. Keys that are malformed, altered, used twice
//! or expired are refused with a clear message, an offer nobody accepts is given up when it
//! expires, and `link remove` takes a paired link away on each side. Needs root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use interlink_testkit as netns;
use netns::Lab;

fn ctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_interlinkctl")
}

/// Gateway `side`'s configuration directory: its base configuration and state directory.
fn base(lab: &Lab, side: &str, asn: u32, networks: &[&str]) -> PathBuf {
    let networks: Vec<String> = networks.iter().map(|n| format!("\"{n}\"")).collect();
    let networks = networks.join(", ");
    let dir = lab.dir.join(side);
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let router_id = if side == "a" {
        "192.0.2.1"
    } else {
        "192.0.2.2"
    };
    std::fs::write(
        dir.join("interlink.toml"),
        format!(
            "[daemon]\nstate_dir = \"state\"\n\n[router]\nasn = {asn}\nrouter_id = \"{router_id}\"\n\n\
             [bgp]\nnetworks = [{networks}]\n\n[control]\nsocket = \"ctl.sock\"\n\n\
             [metrics]\nlisten = \"127.0.0.1:9477\"\n"
        ),
    )
    .unwrap();
    dir
}

/// interlinkctl in gateway `ns` with `--config`: (exit status, stdout, stderr).
fn ctl(lab: &Lab, ns: &str, dir: &Path, args: &[&str]) -> (i32, String, String) {
    let cfg = dir.join("interlink.toml");
    let mut full = vec![ctl_bin(), "--config", cfg.to_str().unwrap()];
    full.extend_from_slice(args);
    let out = lab.try_exec(ns, &full);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn show_links(lab: &Lab, ns: &str, dir: &Path) -> serde_json::Value {
    let sock = dir.join("ctl.sock");
    let out = lab.try_exec(
        ns,
        &[
            ctl_bin(),
            "--socket",
            sock.to_str().unwrap(),
            "--json",
            "show",
            "links",
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

fn pairing_status(links: &serde_json::Value, name: &str) -> Option<String> {
    links.as_array()?.iter().find(|l| l["name"] == name)?["pairing"]["status"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn two_sites_pair_with_one_key() {
    if !netns::require_root() {
        return;
    }
    let mut lab = Lab::new("pairing");
    lab.two_sites();
    let a = base(&lab, "a", 65001, &["10.1.0.0/24", "fd01::/64"]);
    let b = base(&lab, "b", 65002, &["10.2.0.0/24", "fd02::/64"]);
    let bin = Path::new(env!("CARGO_BIN_EXE_interlinkd"));
    for (side, dir) in [("ga", &a), ("gb", &b)] {
        let cfg = dir.join("interlink.toml");
        lab.spawn(side, bin, &["--config", cfg.to_str().unwrap()]);
    }
    for (side, dir) in [("ga", &a), ("gb", &b)] {
        lab.wait_for(
            &format!("{side}'s control socket"),
            Duration::from_secs(10),
            || dir.join("ctl.sock").exists(),
        );
    }

    // Site A offers; the key is all it prints on stdout.
    let (code, key, err) = ctl(
        &lab,
        "ga",
        &a,
        &[
            "link",
            "offer",
            "site-b",
            "--underlay",
            "192.0.2.1",
            "--peer",
            "192.0.2.2",
            "--peer-asn",
            "65002",
            "--ipv6",
            "auto",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let key = key.trim().to_owned();
    assert!(
        key.starts_with("ilk1-") && !key.contains(char::is_whitespace),
        "{key}"
    );
    assert!(
        err.contains("link site-b offered") && err.contains("interlinkd reloaded"),
        "{err}"
    );
    lab.wait_for("A's link pending", Duration::from_secs(10), || {
        pairing_status(&show_links(&lab, "ga", &a), "site-b").as_deref() == Some("pending")
    });

    // Refusals on B before the real accept: not a key, malformed, altered.
    for (bad, want) in [
        ("hello".to_owned(), "not an interlink activation key"),
        ("ilk1-@@@".to_owned(), "malformed"),
        (
            {
                let mut k = key.clone().into_bytes();
                let i = k.len() / 2;
                k[i] = if k[i] == b'A' { b'B' } else { b'A' };
                String::from_utf8(k).unwrap()
            },
            "altered or damaged",
        ),
    ] {
        let (code, _, err) = ctl(&lab, "gb", &b, &["link", "accept", &bad]);
        assert_eq!(code, 1, "{bad}: {err}");
        assert!(err.contains(want), "{bad}: {err}");
    }
    assert!(!b.join("interlink.d").join("site-b.toml").exists());

    // Site B accepts.
    let accepted = std::time::Instant::now();
    let (code, out, err) = ctl(&lab, "gb", &b, &["link", "accept", &key]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("link site-b accepted") && err.contains("BGP with AS 65001"),
        "{err}"
    );

    // The CAK files: the same on both sides, 0600, never printed.
    use std::os::unix::fs::PermissionsExt;
    let cak_a = std::fs::read_to_string(a.join("keys/site-b.cak")).unwrap();
    let cak_b = std::fs::read_to_string(b.join("keys/site-b.cak")).unwrap();
    assert_eq!(cak_a, cak_b);
    assert_eq!(cak_a.trim().len(), 64);
    for dir in [&a, &b] {
        let mode = std::fs::metadata(dir.join("keys/site-b.cak"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(!key.contains(cak_a.trim()) && !err.contains(cak_a.trim()));

    // The link comes up, BGP across it, and host A reaches host B.
    lab.wait_for(
        "BGP across the paired link",
        Duration::from_secs(30),
        || lab.log("ga").contains("established") && lab.log("gb").contains("established"),
    );
    lab.wait_for("host B from host A", Duration::from_secs(20), || {
        lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.2"])
            .status
            .success()
    });
    // IPv6 too: its own tunnel (a unique local /125) and BGP session across the link.
    lab.wait_for(
        "host B from host A over IPv6",
        Duration::from_secs(20),
        || {
            lab.try_exec("ha", &["ping", "-6", "-c", "1", "-W", "1", "fd02::2"])
                .status
                .success()
        },
    );
    let toml_a = std::fs::read_to_string(a.join("interlink.d/site-b.toml")).unwrap();
    assert!(toml_a.contains("/125\"]"), "{toml_a}");
    assert_eq!(toml_a.matches("[[neighbor]]").count(), 2, "{toml_a}");
    lab.wait_for("A's link available", Duration::from_secs(10), || {
        pairing_status(&show_links(&lab, "ga", &a), "site-b").as_deref() == Some("available")
    });
    let log = lab.log("ga");
    assert!(
        log.contains("link site-b: available: the other site accepted the offer"),
        "{log}"
    );
    eprintln!(
        "paired: host B answered host A {:?} after the accept",
        accepted.elapsed()
    );
    let links_b = show_links(&lab, "gb", &b);
    assert_eq!(links_b[0]["mka"]["live"], true, "{links_b}");
    assert!(links_b[0]["pairing"].is_null(), "{links_b}");

    // The derived CAK is replaced: the same new key written down on both sides (0600), the
    // configured CA gone from both keychains, traffic still flowing.
    let toml_b = std::fs::read_to_string(b.join("interlink.d/site-b.toml")).unwrap();
    assert!(toml_b.contains("replace_cak = true"), "{toml_b}");
    let configured_ckn = toml_b
        .lines()
        .find_map(|l| l.strip_prefix("ckn = \""))
        .map(|c| c.trim_end_matches('"').to_owned())
        .unwrap();
    let replaced = |ns: &str, dir: &Path| {
        let l = show_links(&lab, ns, dir);
        let mka = &l[0]["mka"];
        mka["cak"] == "replaced" && mka["keychain"].as_array().is_some_and(|k| k.len() == 1)
    };
    lab.wait_for(
        "the CAK replaced on both sides",
        Duration::from_secs(20),
        || replaced("ga", &a) && replaced("gb", &b),
    );
    let stored_a = std::fs::read_to_string(a.join("state/cak/site-b")).unwrap();
    let stored_b = std::fs::read_to_string(b.join("state/cak/site-b")).unwrap();
    assert_eq!(stored_a, stored_b);
    assert!(!stored_a.contains("next_"), "{stored_a}");
    assert!(
        stored_a.contains(&format!("replaces {configured_ckn}")),
        "{stored_a}"
    );
    assert!(!stored_a.contains(cak_a.trim()));
    let mode = std::fs::metadata(b.join("state/cak/site-b"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let new_ckn = show_links(&lab, "ga", &a)[0]["mka"]["keychain"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_ckn, configured_ckn);
    assert!(
        stored_a.contains(&format!("base_ckn {new_ckn}")),
        "{stored_a}"
    );
    for side in ["ga", "gb"] {
        let log = lab.log(side);
        assert!(
            log.contains(&format!(
                "link site-b: the CAK of CKN {new_ckn} carries the link; CKN {configured_ckn} is no longer accepted"
            )),
            "{log}"
        );
    }
    assert!(lab
        .try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.2"])
        .status
        .success());
    // What Prometheus sees of it on A: the offer available, the CAK replaced.
    let metrics = netns::http_get(&lab.ns("ga"), "127.0.0.1:9477", "/metrics").unwrap();
    for series in [
        "interlink_link_pairing{link=\"site-b\",status=\"available\"} 1",
        "interlink_link_pairing{link=\"site-b\",status=\"pending\"} 0",
        "interlink_mka_cak_replaced{link=\"site-b\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in:\n{metrics}"
        );
    }
    // B restarts (killed): it comes back on the replaced CAK alone, which A still has.
    lab.kill9("gb");
    let cfg_b = b.join("interlink.toml");
    lab.spawn("gb", bin, &["--config", cfg_b.to_str().unwrap()]);
    lab.wait_for(
        "B back on the replaced CAK",
        Duration::from_secs(30),
        || {
            let l = show_links(&lab, "gb", &b);
            l[0]["mka"]["live"] == true && l[0]["mka"]["keychain"][0] == new_ckn.as_str()
        },
    );
    lab.wait_for("host B from host A again", Duration::from_secs(30), || {
        lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.2"])
            .status
            .success()
    });
    // The operator replaces the CAK again now, on the key server's side; the other side
    // says that it is not the one to ask.
    let replace = |dir: &Path| {
        let sock = dir.join("ctl.sock");
        netns::interlinkctl(ctl_bin(), &sock, &["link", "site-b", "replace-cak"])
    };
    let (ks, other) = match replace(&a) {
        (0, _, _) => (("ga", &a), ("gb", &b)),
        (_, _, err) => {
            assert!(err.contains("the peer is the key server"), "{err}");
            let (code, out, err) = replace(&b);
            assert_eq!(code, 0, "{out}{err}");
            (("gb", &b), ("ga", &a))
        }
    };
    let on_a_third = |ns: &str, dir: &Path| {
        let l = show_links(&lab, ns, dir);
        let chain = &l[0]["mka"]["keychain"];
        l[0]["mka"]["cak"] == "replaced"
            && chain.as_array().is_some_and(|k| k.len() == 1)
            && chain[0] != new_ckn.as_str()
    };
    lab.wait_for("a third CAK on both sides", Duration::from_secs(20), || {
        on_a_third(ks.0, ks.1) && on_a_third(other.0, other.1)
    });
    // The table says it too.
    let (code, table, err) =
        netns::interlinkctl(ctl_bin(), &a.join("ctl.sock"), &["show", "links"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("site-b") && l.ends_with(", CAK replaced")),
        "{table}"
    );
    lab.wait_for(
        "host B from host A on the third CAK",
        Duration::from_secs(10),
        || {
            lab.try_exec("ha", &["ping", "-c", "1", "-W", "1", "10.2.0.2"])
                .status
                .success()
        },
    );

    // Used twice: refused.
    let (code, _, err) = ctl(&lab, "gb", &b, &["link", "accept", &key]);
    assert_eq!(code, 1);
    assert!(
        err.contains("accepted already") && err.contains("single use"),
        "{err}"
    );

    // An offer nobody accepts in time: its key is refused once expired, and site A gives
    // the pending link up.
    let (code, late_key, err) = ctl(
        &lab,
        "ga",
        &a,
        &[
            "link",
            "offer",
            "late",
            "--underlay",
            "192.0.2.1:61450",
            "--peer",
            "192.0.2.2:61450",
            "--expires",
            "1s",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("no BGP over the link"), "{err}");
    std::thread::sleep(Duration::from_millis(2100));
    let (code, _, err) = ctl(&lab, "gb", &b, &["link", "accept", late_key.trim()]);
    assert_eq!(code, 1);
    assert!(err.contains("expired"), "{err}");
    lab.wait_for(
        "A to give the late offer up",
        Duration::from_secs(5),
        || {
            lab.log("ga")
                .contains("link late: the offer expired with nobody come")
        },
    );
    assert_eq!(
        pairing_status(&show_links(&lab, "ga", &a), "late").as_deref(),
        Some("expired")
    );

    // A key for another site: refused by that site's accept (B is not 192.0.2.9).
    let (code, other, _) = ctl(
        &lab,
        "ga",
        &a,
        &[
            "link",
            "offer",
            "elsewhere",
            "--underlay",
            "192.0.2.1:61460",
            "--peer",
            "192.0.2.9",
        ],
    );
    assert_eq!(code, 0);
    let (code, _, err) = ctl(&lab, "gb", &b, &["link", "accept", other.trim()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("an address this machine does not have"),
        "{err}"
    );

    // Removed on both sides: files gone, the link and its interface with them; the key
    // stays used. A link the configuration holds otherwise is not interlinkctl's to remove.
    for (ns, dir) in [("ga", &a), ("gb", &b)] {
        let (code, _, err) = ctl(&lab, ns, dir, &["link", "remove", "site-b"]);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("link site-b removed"), "{err}");
        assert!(!dir.join("keys/site-b.cak").exists());
        assert!(!dir.join("state/cak/site-b").exists());
        lab.wait_for("the link gone", Duration::from_secs(10), || {
            pairing_status(&show_links(&lab, ns, dir), "site-b").is_none()
                && !lab
                    .try_exec(ns, &["ip", "link", "show", "il-site-b"])
                    .status
                    .success()
        });
        let (code, _, err) = ctl(&lab, ns, dir, &["link", "remove", "site-b"]);
        assert_eq!(code, 1);
        assert!(
            err.contains("no link site-b written by link offer"),
            "{err}"
        );
    }
    let (code, _, err) = ctl(&lab, "gb", &b, &["link", "accept", &key]);
    assert_eq!(code, 1);
    assert!(err.contains("accepted already"), "{err}");
    std::fs::write(
        a.join("interlink.d/mine.toml"),
        "[[route]]\nprefix = \"10.9.0.0/16\"\ntype = \"blackhole\"\n",
    )
    .unwrap();
    let (code, _, err) = ctl(&lab, "ga", &a, &["link", "remove", "mine"]);
    assert_eq!(code, 1);
    assert!(err.contains("was not written by link offer"), "{err}");

    for side in ["ga", "gb"] {
        let (status, log) = lab.stop(side);
        assert_eq!(status, Some(0), "{log}");
    }
}

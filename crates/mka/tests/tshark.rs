//! The MKPDUs two participants exchange, written as Ethernet frames (DA 01:80:C2:00:00:03,
//! EtherType 888E) to a pcap, dissect in tshark as EAPOL-MKA with their parameter sets (a
//! Distributed CAK among them) and without a malformed-packet warning. Skipped, with a note, where tshark is not installed
//! (`./scripts/test.sh` installs it).

use std::time::{Duration, Instant};

use interlink_mka::keys::Secret;
use interlink_mka::mkpdu::{ETHERTYPE_EAPOL, MKA_GROUP};
use interlink_mka::participant::{Action, Config, Participant};

fn cfg(sci_last: u8, xpn: bool) -> Config {
    Config {
        cak: Secret::new(vec![0x11; 16]).unwrap(),
        ckn: vec![0xab; 16],
        sci: [2, 0, 0, 0, 0, sci_last, 0, 1],
        priority: 16,
        sak_len: 16,
        // GCM-AES-128 goes without its number; GCM-AES-XPN-128 with it.
        cipher_suite: xpn.then_some(0x0080_c200_0001_0003),
        xpn,
        rekey_interval: None,
        pn_threshold: u64::MAX,
        take_cak: false,
    }
}

fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    // Global header: magic, v2.4, UTC, accuracy, snaplen, Ethernet.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

#[test]
fn mkpdus_dissect_as_eapol_mka() {
    dissect(false);
}

#[test]
fn xpn_mkpdus_dissect_as_eapol_mka_with_the_key_server_ssci() {
    dissect(true);
}

fn dissect(xpn: bool) {
    if std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .is_err()
    {
        eprintln!("skipped: tshark is not installed");
        return;
    }
    let mut now = Instant::now();
    let mut a = Participant::new(cfg(1, xpn), now).unwrap();
    let mut b = Participant::new(cfg(2, xpn), now).unwrap();
    let mut frames = Vec::new();
    // Run the pair for a few seconds, capturing every MKPDU as a frame on the wire.
    let mut pending: Vec<(usize, Vec<Action>)> = Vec::new();
    for i in 0..40 {
        now += Duration::from_millis(100);
        if i == 20 {
            // The key server hands a new CAK over (replace_cak).
            let cak = Secret::new(vec![0x22; 16]).unwrap();
            pending.push((0, a.distribute_cak(now, &[0xcd; 16], &cak).unwrap()));
        }
        pending.push((0, a.on_timer(now)));
        pending.push((1, b.on_timer(now)));
        while let Some((from, acts)) = pending.pop() {
            for act in acts {
                let Action::Send(eapol) = act else { continue };
                let addrs = if from == 0 { a.addrs() } else { b.addrs() };
                let mut f = addrs.to_vec();
                f.extend_from_slice(&ETHERTYPE_EAPOL.to_be_bytes());
                f.extend_from_slice(&eapol);
                frames.push(f);
                let out = if from == 0 {
                    b.on_mkpdu(now, &addrs, &eapol)
                } else {
                    a.on_mkpdu(now, &addrs, &eapol)
                };
                pending.push((1 - from, out));
            }
        }
    }
    assert!(
        a.latest().is_some_and(|k| k.2),
        "the pair never agreed on a key"
    );
    assert!(frames.len() >= 6);
    assert!(frames.iter().all(|f| f[..6] == MKA_GROUP));
    let path =
        std::env::temp_dir().join(format!("interlink-mka-{}-{xpn}.pcap", std::process::id()));
    std::fs::write(&path, pcap(&frames)).unwrap();
    let out = std::process::Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&path)
        .args([
            "-T",
            "fields",
            "-e",
            "eapol.type",
            "-e",
            "mka.version_id",
            "-e",
            "mka.cak_name",
        ])
        .args([
            "-e",
            "mka.aes_key_wrap_sak",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
            "-e",
            "mka.key_server_ssci",
            "-e",
            "mka.aes_key_wrap_cak",
            "-E",
            "separator=,",
            "-E",
            "aggregator=;",
        ])
        .output()
        .expect("tshark");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), frames.len(), "{text}");
    let ckn = "ab".repeat(16);
    let mut with_sak = 0;
    let mut with_ssci = 0;
    let mut with_cak = 0;
    for l in &lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f[0], "5", "not EAPOL-MKA: {l}");
        assert_eq!(f[1], "3", "MKA version: {l}");
        // The Basic Parameter Set's CKN; a Distributed CAK's follows it.
        let ckns: Vec<String> = f[2].split(';').map(|c| c.replace(':', "")).collect();
        assert_eq!(ckns[0], ckn, "CKN: {l}");
        if f.get(7).is_some_and(|w| !w.is_empty()) {
            assert_eq!(
                ckns.get(1).map(String::as_str),
                Some(&*"cd".repeat(16)),
                "{l}"
            );
            with_cak += 1;
        }
        if !f[3].is_empty() {
            with_sak += 1;
        }
        assert!(f.get(4).is_none_or(|m| m.is_empty()), "malformed: {l}");
        assert!(f.get(5).is_none_or(|m| m.is_empty()), "an expert note: {l}");
        // Shown as 0x00 by some versions when there is none.
        let ssci = f.get(6).map_or(0, |s| {
            u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or(0)
        });
        if ssci != 0 {
            // The key server is the lower SCI: SSCI 1.
            assert_eq!(ssci, 1, "key server SSCI: {l}");
            with_ssci += 1;
        }
    }
    assert!(with_sak >= 1, "no Distributed SAK dissected:\n{text}");
    assert!(with_cak >= 1, "no Distributed CAK dissected:\n{text}");
    if xpn {
        assert!(with_ssci >= 1, "no key server SSCI dissected:\n{text}");
    } else {
        assert_eq!(with_ssci, 0, "{text}");
    }
}

//! Known-answer self test: the 33 frames of IEEE 802.1AE-2006 Annex C and 802.1AEbw-2013
//! Annex C, embedded in the binary, protected and validated through the SecY with a backend.
//!
//! The tests use the same vectors; `interlinkd self-test` runs them on the machine it is
//! installed on, as a crypto module's power-on self test would.

use std::time::{Duration, Instant};

use crate::{
    Accepted, An, Backend, CipherSuite, RxConfig, RxSecY, RxStats, SaKey, Sci, Tci, TxConfig,
    TxSecY, TxStats, ICV_LEN,
};

/// The vectors file, a copy of `shared/vectors/macsec-annex-c.json`.
pub const ANNEX_C_JSON: &str = include_str!("../vectors/macsec-annex-c.json");

/// One frame of Annex C, as the JSON file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vector {
    pub name: String,
    pub suite: CipherSuite,
    pub confidentiality: bool,
    pub sak: Vec<u8>,
    /// The first SecTAG octet: TCI and AN.
    pub tci_an: u8,
    pub short_len: u8,
    /// The full PN; with XPN its high half comes from `xpn_pn_high` in the file.
    pub pn: u64,
    pub sci: Sci,
    pub sci_in_frame: bool,
    pub xpn: Option<(u32, [u8; 12])>,
    /// DA, SA, then the user data from its EtherType on.
    pub plain: Vec<u8>,
    pub protected: Vec<u8>,
}

impl Vector {
    pub fn an(&self) -> An {
        An::from_octet(self.tci_an)
    }

    pub fn key(&self) -> SaKey<'_> {
        SaKey {
            sak: &self.sak,
            xpn: self.xpn,
        }
    }

    /// A transmit SecY framed as the vector's TCI says, its SA at the vector's AN and PN.
    pub fn transmitter(&self, backend: Backend) -> Result<TxSecY, String> {
        let tci = Tci::from_octet(self.tci_an);
        let cfg = TxConfig {
            include_sci: self.sci_in_frame,
            end_station: tci.es(),
            scb: tci.scb(),
            confidentiality: self.confidentiality,
            ..TxConfig::new(self.sci)
        };
        let mut tx = TxSecY::new(self.suite, backend, cfg).map_err(|e| e.to_string())?;
        tx.install_sa(self.an(), &self.key(), self.pn)
            .map_err(|e| e.to_string())?;
        tx.set_encoding_sa(self.an()).map_err(|e| e.to_string())?;
        Ok(tx)
    }

    /// A receive SecY with one SC for the vector's SCI, its SA at the vector's AN and PN.
    pub fn receiver(&self, backend: Backend) -> Result<RxSecY, String> {
        let mut rx = RxSecY::new(self.suite, backend, RxConfig::default());
        rx.add_sc(self.sci).map_err(|e| e.to_string())?;
        rx.install_sa(self.sci, self.an(), &self.key(), self.pn)
            .map_err(|e| e.to_string())?;
        Ok(rx)
    }

    /// Protects the plain frame and compares with the protected one, then validates the
    /// protected frame and compares with the plain one.
    pub fn check(&self, backend: Backend) -> Result<(), String> {
        let tx = self.transmitter(backend)?;
        let hdr = tx.header_len();
        let user = self
            .plain
            .get(12..)
            .ok_or("plain frame shorter than DA SA")?;
        let mut frame = vec![0; hdr + user.len() + ICV_LEN];
        frame[..12].copy_from_slice(&self.plain[..12]);
        frame[hdr..hdr + user.len()].copy_from_slice(user);
        let p = tx
            .protect(&mut TxStats::default(), &mut frame, user.len())
            .map_err(|e| format!("protect: {e}"))?;
        if frame[..p.len] != self.protected[..] {
            return Err("protect: frame differs from the vector".into());
        }

        let mut rx = self.receiver(backend)?;
        let mut frame = self.protected.clone();
        let r = rx
            .validate(&mut RxStats::default(), &mut frame)
            .map_err(|e| format!("validate: {e}"))?;
        let expected = Accepted::Ok {
            sci: self.sci,
            an: self.an(),
            pn: self.pn,
        };
        if r.accepted != expected {
            return Err(format!("validate: {:?}, expected {expected:?}", r.accepted));
        }
        if frame[..12] != self.plain[..12] || frame[r.user] != *user {
            return Err("validate: user data differs from the vector".into());
        }
        Ok(())
    }
}

fn hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("odd-length hex {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("{s:?}: {e}")))
        .collect()
}

/// Parses the embedded Annex C vectors.
pub fn annex_c() -> Result<Vec<Vector>, String> {
    parse(ANNEX_C_JSON)
}

/// Parses a vectors file in the format of `shared/vectors/macsec-annex-c.json`.
pub fn parse(json: &str) -> Result<Vec<Vector>, String> {
    let json: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let vectors = json["vectors"].as_array().ok_or("no \"vectors\" array")?;
    vectors.iter().map(vector).collect()
}

fn vector(v: &serde_json::Value) -> Result<Vector, String> {
    let opt = |k: &str| v[k].as_str();
    let s = |k: &str| opt(k).ok_or_else(|| format!("field {k:?} missing"));
    let name = s("name")?.to_owned();
    let ctx = |e: String| format!("{name}: {e}");
    let u32_hex = |k: &str| -> Result<Option<u32>, String> {
        opt(k)
            .map(|h| u32::from_str_radix(h, 16).map_err(|e| format!("{k}: {e}")))
            .transpose()
    };
    let one_octet = |k: &str| -> Result<u8, String> {
        let b = hex(s(k)?)?;
        b.first().copied().ok_or_else(|| format!("{k} is empty"))
    };
    let pn_low = u32_hex("pn")
        .map_err(ctx)?
        .ok_or_else(|| ctx("pn missing".into()))?;
    let pn_high = u32_hex("xpn_pn_high").map_err(ctx)?.unwrap_or(0);
    let xpn = match (u32_hex("ssci").map_err(ctx)?, opt("salt")) {
        (Some(ssci), Some(salt)) => {
            let salt: [u8; 12] = hex(salt)
                .map_err(ctx)?
                .try_into()
                .map_err(|_| ctx("salt is not 12 octets".into()))?;
            Some((ssci, salt))
        }
        (None, None) => None,
        _ => return Err(ctx("ssci and salt come together".into())),
    };
    Ok(Vector {
        suite: s("cipher_suite")?
            .parse()
            .map_err(|e| ctx(format!("{e}")))?,
        confidentiality: match s("mode")? {
            "confidentiality" => true,
            "integrity" => false,
            m => return Err(ctx(format!("unknown mode {m:?}"))),
        },
        sak: hex(s("sak")?).map_err(ctx)?,
        tci_an: one_octet("tci_an").map_err(ctx)?,
        short_len: one_octet("sl").map_err(ctx)?,
        pn: u64::from(pn_high) << 32 | u64::from(pn_low),
        sci: s("sci")?.parse().map_err(|e| ctx(format!("{e}")))?,
        sci_in_frame: v["sci_in_frame"]
            .as_bool()
            .ok_or_else(|| ctx("sci_in_frame missing".into()))?,
        xpn,
        plain: hex(s("plain_frame")?).map_err(ctx)?,
        protected: hex(s("protected_frame")?).map_err(ctx)?,
        name,
    })
}

/// Protect and validate rates of one suite and backend, measured on this machine.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Frames protected per second.
    pub protect_fps: f64,
    /// Frames validated per second.
    pub validate_fps: f64,
    /// User data octets per frame.
    pub size: usize,
}

impl Throughput {
    pub fn protect_gbps(&self) -> f64 {
        self.protect_fps * self.size as f64 * 8.0 / 1e9
    }
    pub fn validate_gbps(&self) -> f64 {
        self.validate_fps * self.size as f64 * 8.0 / 1e9
    }
}

/// Protects, then validates, frames of `size` octets of user data for about `time` each.
pub fn throughput(
    suite: CipherSuite,
    backend: Backend,
    size: usize,
    time: Duration,
) -> Result<Throughput, String> {
    let sci = Sci::new([0x02, 0, 0, 0, 0, 0x01], 1);
    let an = An::ALL[0];
    let sak = [0x5a; 32];
    let key = SaKey {
        sak: &sak[..suite.key_len()],
        xpn: suite.is_xpn().then_some((1, [0xa5; 12])),
    };
    let mut tx = TxSecY::new(suite, backend, TxConfig::new(sci)).map_err(|e| e.to_string())?;
    tx.install_sa(an, &key, 1).map_err(|e| e.to_string())?;
    tx.set_encoding_sa(an).map_err(|e| e.to_string())?;
    let mut rx = RxSecY::new(suite, backend, RxConfig::default());
    rx.add_sc(sci).map_err(|e| e.to_string())?;
    rx.install_sa(sci, an, &key, 1).map_err(|e| e.to_string())?;

    // Protect a batch of frames, timing only the protection; then validate them in order.
    let hdr = tx.header_len();
    let batch = 256;
    let mut frames = vec![vec![0u8; hdr + size + ICV_LEN]; batch];
    let (mut tx_stats, mut rx_stats) = (TxStats::default(), RxStats::default());
    let (mut protect_time, mut validate_time, mut n) = (Duration::ZERO, Duration::ZERO, 0u64);
    while protect_time + validate_time < time * 2 {
        let t = Instant::now();
        for f in frames.iter_mut() {
            f[hdr..hdr + 2].copy_from_slice(&[0x08, 0x00]);
            tx.protect(&mut tx_stats, f, size)
                .map_err(|e| e.to_string())?;
        }
        protect_time += t.elapsed();
        let t = Instant::now();
        for f in frames.iter_mut() {
            rx.validate(&mut rx_stats, f).map_err(|e| e.to_string())?;
        }
        validate_time += t.elapsed();
        n += batch as u64;
    }
    Ok(Throughput {
        protect_fps: n as f64 / protect_time.as_secs_f64(),
        validate_fps: n as f64 / validate_time.as_secs_f64(),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reports_what_is_wrong() {
        assert!(parse("{}").unwrap_err().contains("vectors"));
        let bad = r#"{"vectors":[{"name":"x","pn":"zz"}]}"#;
        assert!(parse(bad).unwrap_err().starts_with("x: pn"));
    }

    #[test]
    fn throughput_measures_something() {
        let t = throughput(
            CipherSuite::GcmAesXpn256,
            Backend::default(),
            1420,
            Duration::from_millis(5),
        )
        .unwrap();
        assert!(t.protect_fps > 0.0 && t.validate_fps > 0.0);
        assert!(t.protect_gbps() > 0.0);
    }
}

//! Links offered with `interlinkctl link offer` (`offer_expires` in their `[[link]]`): pending
//! until the other site has accepted the key and its MKA peer is live, then available for
//! good (recorded in the state directory, so that a restart or reload keeps it so); one still
//! pending when the offer expires is given up: stopped, and not started again.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use interlink_config::{Keying, Link as LinkConfig};

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An offered link's state.
pub(crate) struct Offer {
    pub expires: u64,
    pub available: bool,
    /// Holds the CKN of the offer that became available: a new offer under the same name
    /// (another CKN) is pending again.
    record: PathBuf,
    ckn: String,
}

impl Offer {
    /// The offer of `[[link]]` `cfg`, if it is one.
    pub(crate) fn of(cfg: &LinkConfig, state_dir: &Path) -> Option<Offer> {
        let expires = cfg.offer_expires?;
        let ckn = match &cfg.macsec.keying {
            Keying::Mka(m) => m.keys.first().map(|k| interlink_pairing::hex(&k.ckn))?,
            Keying::Static(_) => String::new(),
        };
        let record = state_dir.join("pairing").join("offered").join(&cfg.name);
        let available = std::fs::read_to_string(&record).is_ok_and(|c| c.trim() == ckn);
        Some(Offer {
            expires,
            available,
            record,
            ckn,
        })
    }

    /// Still pending past its expiry.
    pub(crate) fn expired(&self) -> bool {
        !self.available && now() > self.expires
    }

    pub(crate) fn status(&self) -> &'static str {
        match (self.available, self.expired()) {
            (true, _) => "available",
            (false, false) => "pending",
            (false, true) => "expired",
        }
    }

    /// The other site came: available from now on.
    pub(crate) fn accepted(&mut self) -> std::io::Result<()> {
        self.available = true;
        if let Some(dir) = self.record.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.record, format!("{}\n", self.ckn))
    }
}

/// Whether `[[link]]` `cfg` is an offer that expired without the other site: not started.
pub(crate) fn given_up(cfg: &LinkConfig, state_dir: &Path) -> bool {
    Offer::of(cfg, state_dir).is_some_and(|o| o.expired())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(expires: u64) -> LinkConfig {
        let dir = std::env::temp_dir().join(format!("il-offers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("k.cak"), "00112233445566778899aabbccddeeff\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("k.cak"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        let text = format!(
            "[[link]]\nname = \"p\"\ninterface = \"il-p\"\ntransport = \"udp\"\n\
             local = \"192.0.2.1\"\nremote = \"192.0.2.2\"\noffer_expires = {expires}\n\
             [link.macsec]\ncipher_suite = \"gcm-aes-128\"\nkeying = \"mka\"\nckn = \"6162\"\n\
             cak_file = \"k.cak\"\n"
        );
        let c = interlink_config::Config::parse(Path::new("t.toml"), &text, &dir).unwrap();
        c.links[0].clone()
    }

    #[test]
    fn pending_then_available_for_good_or_expired() {
        let state = std::env::temp_dir().join(format!("il-offers-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let far = now() + 3600;
        let mut o = Offer::of(&link(far), &state).unwrap();
        assert_eq!(o.status(), "pending");
        assert!(!given_up(&link(far), &state));
        o.accepted().unwrap();
        // Read again (a restart): available, even once past its expiry.
        assert_eq!(Offer::of(&link(far), &state).unwrap().status(), "available");
        assert_eq!(Offer::of(&link(1), &state).unwrap().status(), "available");
        assert!(!given_up(&link(1), &state));
        // Another offer under the same name (another CKN) is pending again; expired, given up.
        std::fs::write(state.join("pairing/offered/p"), "ffff\n").unwrap();
        assert_eq!(Offer::of(&link(1), &state).unwrap().status(), "expired");
        assert!(given_up(&link(1), &state));
        let _ = std::fs::remove_dir_all(&state);
    }
}

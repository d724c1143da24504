//! Helpers shared by the integration tests: a matched transmitter/receiver pair.
#![allow(dead_code)]

use interlink_macsec::{
    An, Backend, CipherSuite, RxConfig, RxSecY, RxStats, SaKey, Sci, TxConfig, TxSecY, TxStats,
    ICV_LEN,
};

pub const LOCAL_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
pub const PEER_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

pub fn sak(suite: CipherSuite, seed: u8) -> Vec<u8> {
    (0..suite.key_len() as u8).map(|i| i ^ seed).collect()
}

pub fn xpn(suite: CipherSuite) -> Option<(u32, [u8; 12])> {
    suite.is_xpn().then_some((
        0x0000_0101,
        [
            0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
        ],
    ))
}

/// A transmitter (our side) and a receiver of its frames (the peer), keyed alike on `an`.
pub struct Pair {
    pub tx: TxSecY,
    pub rx: RxSecY,
    pub tx_stats: TxStats,
    pub rx_stats: RxStats,
    pub sci: Sci,
    pub an: An,
}

impl Pair {
    pub fn new(
        suite: CipherSuite,
        backend: Backend,
        tx_cfg: TxConfig,
        rx_cfg: RxConfig,
        an: An,
        pn: u64,
    ) -> Pair {
        let sak = sak(suite, 0x42);
        let key = SaKey {
            sak: &sak,
            xpn: xpn(suite),
        };
        let mut tx = TxSecY::new(suite, backend, tx_cfg).unwrap();
        tx.install_sa(an, &key, pn).unwrap();
        tx.set_encoding_sa(an).unwrap();
        let mut rx = RxSecY::new(suite, backend, rx_cfg);
        rx.add_sc(tx_cfg.sci).unwrap();
        rx.install_sa(tx_cfg.sci, an, &key, pn).unwrap();
        Pair {
            tx,
            rx,
            tx_stats: TxStats::default(),
            rx_stats: RxStats::default(),
            sci: tx_cfg.sci,
            an,
        }
    }

    /// GCM-AES-128 on `backend`, SCI sent, confidentiality, AN 0, first PN 1.
    pub fn simple(backend: Backend, rx_cfg: RxConfig) -> Pair {
        Pair::new(
            CipherSuite::GcmAes128,
            backend,
            TxConfig::new(Sci::new(LOCAL_MAC, 1)),
            rx_cfg,
            An::new(0).unwrap(),
            1,
        )
    }

    /// Protects an IPv4 frame carrying `payload`; returns the protected frame.
    pub fn protect(&mut self, payload: &[u8]) -> Vec<u8> {
        let hdr = self.tx.header_len();
        let user_len = 2 + payload.len();
        let mut frame = vec![0; hdr + user_len + ICV_LEN];
        frame[..6].copy_from_slice(&PEER_MAC);
        frame[6..12].copy_from_slice(&LOCAL_MAC);
        frame[hdr..hdr + 2].copy_from_slice(&[0x08, 0x00]);
        frame[hdr + 2..hdr + user_len].copy_from_slice(payload);
        let p = self
            .tx
            .protect(&mut self.tx_stats, &mut frame, user_len)
            .unwrap();
        frame.truncate(p.len);
        frame
    }

    /// Validates a copy of `frame`; on success returns the payload after the EtherType.
    pub fn validate(&mut self, frame: &[u8]) -> Result<Vec<u8>, interlink_macsec::RxError> {
        let mut copy = frame.to_vec();
        let r = self.rx.validate(&mut self.rx_stats, &mut copy)?;
        Ok(copy[r.user.start + 2..r.user.end].to_vec())
    }
}

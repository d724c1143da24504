//! The MAC Security TAG (IEEE 802.1AE-2018 §9.3 to §9.9): a zero-copy view over the bytes that
//! follow the MACsec EtherType, and its parsed form.
//!
//! ```text
//!  octet 1      2      3..6    7..14
//! +--------+--------+-------+---------------+
//! | TCI|AN |   SL   |  PN   | SCI (if TCI.SC)|
//! +--------+--------+-------+---------------+
//! TCI = V(0x80) ES(0x40) SC(0x20) SCB(0x10) E(0x08) C(0x04), AN = low two bits
//! SL  = two reserved bits (must be 0), then a 6-bit short length
//! ```

use core::fmt;
use core::str::FromStr;

use crate::BadTag;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const TCI_AN: usize = 0;
    pub const SL: usize = 1;
    pub const PN: Field = 2..6;
    pub const SCI: Field = 6..14;
}

/// SecTAG length without the optional SCI: TCI/AN, SL and PN.
pub const SECTAG_LEN: usize = field::PN.end;
/// Length of an explicitly encoded SCI.
pub const SCI_LEN: usize = 8;
/// SecTAG length when it carries the SCI.
pub const SECTAG_SCI_LEN: usize = field::SCI.end;
/// Short lengths are only used for secure data below this size (§9.7).
pub const MIN_NON_SHORT_LEN: usize = 48;

/// The TAG Control Information bits of the first SecTAG octet, AN excluded.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Tci(u8);

impl Tci {
    /// Version; must be 0 (§9.5).
    pub const V: u8 = 0x80;
    /// End Station: the SCI is the source MAC address and port 0x0001.
    pub const ES: u8 = 0x40;
    /// SCI present in the SecTAG.
    pub const SC: u8 = 0x20;
    /// Single Copy Broadcast (EPON): the SCI port is 0x0000.
    pub const SCB: u8 = 0x10;
    /// Encryption: the user data is encrypted.
    pub const E: u8 = 0x08;
    /// Changed text: the user data is not sent as it was received from the user.
    pub const C: u8 = 0x04;

    /// The TCI from a first SecTAG octet; the AN bits are dropped.
    pub const fn from_octet(octet: u8) -> Self {
        Tci(octet & 0xfc)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn contains(self, flag: u8) -> bool {
        self.0 & flag == flag
    }

    pub const fn version(self) -> bool {
        self.contains(Self::V)
    }
    pub const fn es(self) -> bool {
        self.contains(Self::ES)
    }
    pub const fn sc(self) -> bool {
        self.contains(Self::SC)
    }
    pub const fn scb(self) -> bool {
        self.contains(Self::SCB)
    }
    pub const fn e(self) -> bool {
        self.contains(Self::E)
    }
    pub const fn c(self) -> bool {
        self.contains(Self::C)
    }
}

impl fmt::Debug for Tci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (Self::V, "V"),
            (Self::ES, "ES"),
            (Self::SC, "SC"),
            (Self::SCB, "SCB"),
            (Self::E, "E"),
            (Self::C, "C"),
        ];
        write!(f, "Tci(")?;
        let mut first = true;
        for (bit, name) in names {
            if self.contains(bit) {
                if !first {
                    write!(f, "|")?;
                }
                write!(f, "{name}")?;
                first = false;
            }
        }
        write!(f, ")")
    }
}

/// Association Number: which of the four SAs of a secure channel protected a frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct An(u8);

impl An {
    pub const ALL: [An; 4] = [An(0), An(1), An(2), An(3)];

    /// `None` unless `value` is 0 to 3.
    pub const fn new(value: u8) -> Option<An> {
        if value < 4 {
            Some(An(value))
        } else {
            None
        }
    }

    /// The AN in the low two bits of a first SecTAG octet.
    pub const fn from_octet(octet: u8) -> An {
        An(octet & 0x03)
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// The AN that follows this one, as MKA assigns them for successive SAKs.
    pub const fn next(self) -> An {
        An((self.0 + 1) & 0x03)
    }
}

impl TryFrom<u8> for An {
    type Error = BadAn;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        An::new(value).ok_or(BadAn(value))
    }
}

impl fmt::Display for An {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// An association number outside 0 to 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("association number {0} is out of range (0 to 3)")]
pub struct BadAn(pub u8);

/// Secure Channel Identifier: a MAC address and a 16-bit port (§8.2.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Sci([u8; 8]);

impl Sci {
    /// The MAC part of the SCI interlink derives for an underlay address over UDP (and the
    /// stand-in DA/SA of the AAD there): locally administered, `02:00` and the IPv4 address;
    /// for IPv6, `02` and five octets of the 64-bit FNV-1a hash of all sixteen, so that two
    /// addresses that differ only in their upper octets (fd00:a::1 and fd00:b::1) still get
    /// SCIs of their own.
    pub fn udp_mac(addr: &core::net::IpAddr) -> [u8; 6] {
        match addr {
            core::net::IpAddr::V4(a) => {
                let o = a.octets();
                [0x02, 0x00, o[0], o[1], o[2], o[3]]
            }
            core::net::IpAddr::V6(a) => {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for b in a.octets() {
                    h ^= u64::from(b);
                    h = h.wrapping_mul(0x0000_0100_0000_01b3);
                }
                let o = h.to_be_bytes();
                [0x02, o[3], o[4], o[5], o[6], o[7]]
            }
        }
    }

    /// The port of an end station's implicit SCI (§9.5, ES bit).
    pub const PORT_ES: u16 = 0x0001;
    /// The port of a Single Copy Broadcast SCI (§9.5, SCB bit).
    pub const PORT_SCB: u16 = 0x0000;

    pub const fn new(mac: [u8; 6], port: u16) -> Sci {
        let p = port.to_be_bytes();
        Sci([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], p[0], p[1]])
    }

    pub const fn from_bytes(bytes: [u8; 8]) -> Sci {
        Sci(bytes)
    }

    pub const fn from_u64(value: u64) -> Sci {
        Sci(value.to_be_bytes())
    }

    pub const fn to_u64(self) -> u64 {
        u64::from_be_bytes(self.0)
    }

    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(&self.0[..6]);
        mac
    }

    pub const fn port(&self) -> u16 {
        u16::from_be_bytes([self.0[6], self.0[7]])
    }
}

impl fmt::Display for Sci {
    /// 16 hex digits, as `ip macsec show` prints an SCI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.to_u64())
    }
}

impl fmt::Debug for Sci {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.mac();
        write!(
            f,
            "Sci({:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}/{})",
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            self.port()
        )
    }
}

/// An SCI that is not 16 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("an SCI is 16 hex digits (MAC address then port), got {0:?}")]
pub struct BadSci(pub String);

impl FromStr for Sci {
    type Err = BadSci;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix("0x").unwrap_or(s);
        if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadSci(s.to_owned()));
        }
        u64::from_str_radix(digits, 16)
            .map(Sci::from_u64)
            .map_err(|_| BadSci(s.to_owned()))
    }
}

/// A read/write view of a SecTAG at the start of `buffer` (the octets after the EtherType).
#[derive(Debug, Clone)]
pub struct SecTag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SecTag<T> {
    /// A view without any length check; accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> SecTag<T> {
        SecTag { buffer }
    }

    /// A view over a buffer long enough for the SecTAG its TCI announces.
    pub fn new_checked(buffer: T) -> Result<SecTag<T>, BadTag> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// Ensures that every accessor stays in bounds.
    pub fn check_len(&self) -> Result<(), BadTag> {
        let data = self.buffer.as_ref();
        if data.len() < SECTAG_LEN || data.len() < Self::len_for(Tci::from_octet(data[0])) {
            return Err(BadTag::Truncated);
        }
        Ok(())
    }

    const fn len_for(tci: Tci) -> usize {
        if tci.sc() {
            SECTAG_SCI_LEN
        } else {
            SECTAG_LEN
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn tci(&self) -> Tci {
        Tci::from_octet(self.buffer.as_ref()[field::TCI_AN])
    }

    pub fn an(&self) -> An {
        An::from_octet(self.buffer.as_ref()[field::TCI_AN])
    }

    /// The 6-bit short length.
    pub fn short_len(&self) -> u8 {
        self.buffer.as_ref()[field::SL] & 0x3f
    }

    /// The two reserved bits above the short length, in place (0x00, 0x40, 0x80 or 0xc0).
    pub fn sl_reserved(&self) -> u8 {
        self.buffer.as_ref()[field::SL] & 0xc0
    }

    /// The packet number field: the whole PN, or its low 32 bits with XPN.
    pub fn pn(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::PN];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The explicit SCI, when TCI.SC is set.
    pub fn sci(&self) -> Option<Sci> {
        if !self.tci().sc() {
            return None;
        }
        let mut sci = [0; 8];
        sci.copy_from_slice(&self.buffer.as_ref()[field::SCI]);
        Some(Sci(sci))
    }

    /// SecTAG length: 6 octets, or 14 with an SCI.
    pub fn header_len(&self) -> usize {
        Self::len_for(self.tci())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SecTag<T> {
    pub fn set_tci_an(&mut self, tci: Tci, an: An) {
        self.buffer.as_mut()[field::TCI_AN] = tci.bits() | an.value();
    }

    /// Sets the short length; the reserved bits are cleared.
    pub fn set_short_len(&mut self, short_len: u8) {
        self.buffer.as_mut()[field::SL] = short_len & 0x3f;
    }

    pub fn set_pn(&mut self, pn: u32) {
        self.buffer.as_mut()[field::PN].copy_from_slice(&pn.to_be_bytes());
    }

    pub fn set_sci(&mut self, sci: Sci) {
        self.buffer.as_mut()[field::SCI].copy_from_slice(&sci.0);
    }
}

/// A parsed SecTAG. TCI.V is always 0 and TCI.SC is `sci.is_some()`, so neither is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecTagRepr {
    pub es: bool,
    pub scb: bool,
    pub e: bool,
    pub c: bool,
    pub an: An,
    pub short_len: u8,
    pub pn: u32,
    pub sci: Option<Sci>,
}

impl SecTagRepr {
    /// Parses a SecTAG and checks the rules that concern the tag alone (§9.12 c, d, e).
    /// The length and PN rules need the whole frame and the cipher suite: see the receive path.
    pub fn parse<T: AsRef<[u8]>>(tag: &SecTag<T>) -> Result<SecTagRepr, BadTag> {
        tag.check_len()?;
        let tci = tag.tci();
        // §9.12 c) the version bit is 0.
        if tci.version() {
            return Err(BadTag::Version);
        }
        // §9.12 d) ES or SCB set means the SCI is implicit, so SC must be clear.
        if (tci.es() || tci.scb()) && tci.sc() {
            return Err(BadTag::ExplicitSciWithEsOrScb);
        }
        // §9.12 e) the two most significant bits of the SL octet are 0.
        if tag.sl_reserved() != 0 {
            return Err(BadTag::SlReservedBits);
        }
        Ok(SecTagRepr {
            es: tci.es(),
            scb: tci.scb(),
            e: tci.e(),
            c: tci.c(),
            an: tag.an(),
            short_len: tag.short_len(),
            pn: tag.pn(),
            sci: tag.sci(),
        })
    }

    pub fn tci(&self) -> Tci {
        let mut bits = 0;
        for (on, bit) in [
            (self.es, Tci::ES),
            (self.sci.is_some(), Tci::SC),
            (self.scb, Tci::SCB),
            (self.e, Tci::E),
            (self.c, Tci::C),
        ] {
            if on {
                bits |= bit;
            }
        }
        Tci(bits)
    }

    pub fn buffer_len(&self) -> usize {
        if self.sci.is_some() {
            SECTAG_SCI_LEN
        } else {
            SECTAG_LEN
        }
    }

    /// Writes the SecTAG; `tag` must be at least `buffer_len()` long.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, tag: &mut SecTag<T>) {
        tag.set_tci_an(self.tci(), self.an);
        tag.set_short_len(self.short_len);
        tag.set_pn(self.pn);
        if let Some(sci) = self.sci {
            tag.set_sci(sci);
        }
    }

    /// The short length to send for `secure_data_len` octets of secure data (§9.7).
    pub fn short_len_for(secure_data_len: usize) -> u8 {
        if secure_data_len < MIN_NON_SHORT_LEN {
            secure_data_len as u8
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The SecTAG of Annex C.1.1 (64-octet frame, SCI present, AN 0, PN 2).
    static TAG_SCI: [u8; 14] = [
        0x2c, 0x00, 0x00, 0x00, 0x00, 0x02, 0xfe, 0x2f, 0xcd, 0x14, 0x24, 0x1b, 0x88, 0x2c,
    ];
    // The SecTAG of Annex C.1.2 (54-octet frame, ES set, SL 42).
    static TAG_ES: [u8; 6] = [0x4c, 0x2a, 0x76, 0xd4, 0x57, 0xed];

    #[test]
    fn deconstruct_with_sci() {
        let tag = SecTag::new_checked(&TAG_SCI[..]).unwrap();
        assert_eq!(tag.tci(), Tci::from_octet(Tci::SC | Tci::E | Tci::C));
        assert_eq!(tag.an(), An::new(0).unwrap());
        assert_eq!(tag.short_len(), 0);
        assert_eq!(tag.pn(), 2);
        assert_eq!(tag.sci(), Some(Sci::from_u64(0xfe2f_cd14_241b_882c)));
        assert_eq!(tag.header_len(), 14);
    }

    #[test]
    fn deconstruct_implicit_sci() {
        let tag = SecTag::new_checked(&TAG_ES[..]).unwrap();
        let repr = SecTagRepr::parse(&tag).unwrap();
        assert!(repr.es && repr.e && repr.c && !repr.scb);
        assert_eq!(repr.short_len, 42);
        assert_eq!(repr.pn, 0x76d4_57ed);
        assert_eq!(repr.sci, None);
        assert_eq!(repr.buffer_len(), 6);
    }

    #[test]
    fn construct_round_trips() {
        for bytes in [&TAG_SCI[..], &TAG_ES[..]] {
            let repr = SecTagRepr::parse(&SecTag::new_checked(bytes).unwrap()).unwrap();
            let mut out = vec![0xff; repr.buffer_len()];
            repr.emit(&mut SecTag::new_unchecked(&mut out[..]));
            assert_eq!(out, bytes);
        }
    }

    #[test]
    fn truncated_is_rejected() {
        assert_eq!(
            SecTag::new_checked(&TAG_SCI[..13]).unwrap_err(),
            BadTag::Truncated
        );
        assert_eq!(
            SecTag::new_checked(&TAG_ES[..5]).unwrap_err(),
            BadTag::Truncated
        );
        assert_eq!(SecTag::new_checked(&[][..]).unwrap_err(), BadTag::Truncated);
    }

    #[test]
    fn tag_rules_of_9_12() {
        let parse = |b: &[u8]| SecTagRepr::parse(&SecTag::new_checked(b).unwrap());
        let mut v = TAG_ES;
        v[0] |= Tci::V;
        assert_eq!(parse(&v), Err(BadTag::Version));
        let mut es_sc = TAG_SCI;
        es_sc[0] |= Tci::ES;
        assert_eq!(parse(&es_sc), Err(BadTag::ExplicitSciWithEsOrScb));
        let mut scb_sc = TAG_SCI;
        scb_sc[0] |= Tci::SCB;
        assert_eq!(parse(&scb_sc), Err(BadTag::ExplicitSciWithEsOrScb));
        for reserved in [0x40, 0x80] {
            let mut sl = TAG_ES;
            sl[1] |= reserved;
            assert_eq!(parse(&sl), Err(BadTag::SlReservedBits));
        }
    }

    #[test]
    fn sci_text_form() {
        let sci = Sci::new([0x02, 0, 0, 0, 0, 0x01], 1);
        assert_eq!(sci.to_string(), "0200000000010001");
        assert_eq!("0200000000010001".parse::<Sci>().unwrap(), sci);
        assert_eq!(sci.port(), 1);
        assert_eq!(sci.mac(), [0x02, 0, 0, 0, 0, 0x01]);
        assert!("02000000000100".parse::<Sci>().is_err());
        assert!("020000000001000g".parse::<Sci>().is_err());
    }

    #[test]
    fn an_range() {
        assert_eq!(An::try_from(3).unwrap().value(), 3);
        assert_eq!(An::try_from(4), Err(BadAn(4)));
        assert_eq!(An::new(3).unwrap().next(), An::new(0).unwrap());
    }

    #[test]
    fn short_len_rule() {
        assert_eq!(SecTagRepr::short_len_for(0), 0);
        assert_eq!(SecTagRepr::short_len_for(42), 42);
        assert_eq!(SecTagRepr::short_len_for(47), 47);
        assert_eq!(SecTagRepr::short_len_for(48), 0);
        assert_eq!(SecTagRepr::short_len_for(1500), 0);
    }
}

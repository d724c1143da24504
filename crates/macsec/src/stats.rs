//! Counters named after the IEEE 802.1AE MIB (IEEE8021-SECY-MIB) and Linux `macsec`.
//!
//! The caller owns them: each data-plane worker keeps its own and whoever reports sums them
//! with [`TxStats::merge`] / [`RxStats::merge`], so counting never needs a lock or an atomic.

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident => $mib:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// Every counter with its MIB name, in declaration order.
            pub fn entries(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$(($mib, self.$field),)*].into_iter()
            }

            /// Adds another worker's counters to these.
            pub fn merge(&mut self, other: &$name) {
                $(self.$field += other.$field;)*
            }
        }
    };
}

counters! {
    /// Transmit counters of a SecY.
    TxStats {
        /// Frames integrity protected but not encrypted.
        out_pkts_protected => "OutPktsProtected",
        /// Frames encrypted.
        out_pkts_encrypted => "OutPktsEncrypted",
        /// User data octets integrity protected but not encrypted.
        out_octets_protected => "OutOctetsProtected",
        /// User data octets encrypted.
        out_octets_encrypted => "OutOctetsEncrypted",
        /// Frames discarded because the protected frame would exceed the MTU or the buffer.
        out_pkts_too_long => "OutPktsTooLong",
        /// Frames discarded because no transmit SA is in use (802.1AE: the SecY is not
        /// operational).
        out_pkts_sa_not_in_use => "OutPktsSANotInUse",
        /// Frames discarded because the transmit SA has used its last PN.
        out_pkts_pn_exhausted => "OutPktsPNExhausted",
        /// Frames discarded because the next PN is not yet reserved in durable storage (not
        /// in the MIB: keys that outlive the process reserve their PNs before using them).
        out_pkts_pn_unreserved => "OutPktsPNUnreserved",
        /// Frames discarded because the user data is too short to hold an EtherType.
        out_pkts_malformed => "OutPktsMalformed",
    }
}

counters! {
    /// Receive counters of a SecY, over all its receive SCs.
    RxStats {
        /// Untagged frames delivered (validateFrames not Strict).
        in_pkts_untagged => "InPktsUntagged",
        /// Untagged frames discarded (validateFrames Strict).
        in_pkts_no_tag => "InPktsNoTag",
        /// Frames discarded for an invalid SecTAG or length (§9.12).
        in_pkts_bad_tag => "InPktsBadTag",
        /// Frames from an unknown SCI delivered unverified (not Strict, C clear).
        in_pkts_unknown_sci => "InPktsUnknownSCI",
        /// Frames from an unknown SCI discarded.
        in_pkts_no_sci => "InPktsNoSCI",
        /// Frames for an SA not in use, delivered unverified (not Strict, C clear).
        in_pkts_unused_sa => "InPktsUnusedSA",
        /// Frames for an SA not in use, discarded.
        in_pkts_not_using_sa => "InPktsNotUsingSA",
        /// Frames discarded by replay protection.
        in_pkts_late => "InPktsLate",
        /// Frames that failed validation and were discarded.
        in_pkts_not_valid => "InPktsNotValid",
        /// Frames that failed validation but were delivered (validateFrames Check, C clear).
        in_pkts_invalid => "InPktsInvalid",
        /// Valid frames below the lowest acceptable PN, delivered (replay protection off).
        in_pkts_delayed => "InPktsDelayed",
        /// Frames delivered without validation (validateFrames Disabled, C clear).
        in_pkts_unchecked => "InPktsUnchecked",
        /// Frames validated and delivered.
        in_pkts_ok => "InPktsOK",
        /// Valid frames discarded because their PN is above what the SA may accept before
        /// more is reserved in durable storage (not in the MIB; see `RxSecY::validate_reserving`).
        in_pkts_unreserved => "InPktsUnreserved",
        /// User data octets validated that were not encrypted.
        in_octets_validated => "InOctetsValidated",
        /// User data octets validated and decrypted.
        in_octets_decrypted => "InOctetsDecrypted",
    }
}

impl RxStats {
    /// Frames counted, delivered or not: each frame lands in exactly one packet counter.
    pub fn frames(&self) -> u64 {
        self.delivered() + self.dropped()
    }

    /// Frames delivered to the controlled port, validated or not.
    pub fn delivered(&self) -> u64 {
        self.in_pkts_untagged
            + self.in_pkts_unknown_sci
            + self.in_pkts_unused_sa
            + self.in_pkts_invalid
            + self.in_pkts_delayed
            + self.in_pkts_unchecked
            + self.in_pkts_ok
    }

    /// Frames discarded, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.in_pkts_no_tag
            + self.in_pkts_bad_tag
            + self.in_pkts_no_sci
            + self.in_pkts_not_using_sa
            + self.in_pkts_late
            + self.in_pkts_not_valid
            + self.in_pkts_unreserved
    }
}

impl TxStats {
    /// Frames discarded, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.out_pkts_too_long
            + self.out_pkts_sa_not_in_use
            + self.out_pkts_pn_exhausted
            + self.out_pkts_pn_unreserved
            + self.out_pkts_malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sums_every_counter() {
        let mut a = RxStats {
            in_pkts_ok: 3,
            in_pkts_late: 1,
            ..Default::default()
        };
        let b = RxStats {
            in_pkts_ok: 4,
            in_octets_decrypted: 100,
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.in_pkts_ok, 7);
        assert_eq!(a.in_pkts_late, 1);
        assert_eq!(a.in_octets_decrypted, 100);
        assert_eq!(a.entries().count(), 16);
        assert_eq!(
            a.entries().find(|(n, _)| *n == "InPktsOK"),
            Some(("InPktsOK", 7))
        );
        assert_eq!(a.dropped(), 1);
    }
}

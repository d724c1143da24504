//! interlink's data plane: encrypted links.
//!
//! Each link is a TUN interface whose packets are protected with IEEE 802.1AE by
//! `interlink-macsec` and carried to the peer over UDP. The packet path runs on dedicated OS
//! threads, in batches, with buffers allocated when the link starts: no allocation and no lock
//! per packet. See [`link`] for the wire format.

pub mod counters;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod link;
pub mod netlink;
pub mod offload;
pub mod pnstate;
pub mod probe;
mod sys;

pub use counters::{Counters, LinkCounters, Liveness, RTT_BUCKETS};
pub use flows::{FlowSpec, FlowView};
pub use link::{
    udp_mac, Link, LinkError, LinkSpec, SaKeys, StaticSas, Underlay, BATCH, EAPOL_GROUP,
    ETHERTYPE_EAPOL, OVERHEAD,
};

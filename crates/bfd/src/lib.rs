//! Bidirectional Forwarding Detection (RFC 5880) in asynchronous mode, for single-hop
//! sessions over IPv4 and IPv6 (RFC 5881), sans IO: [`packet`] reads and writes control
//! packets, [`session`] is one session's state machine, fed the packets that arrive and the
//! time, answering with packets to send and state changes. [`service`] runs the sessions on a
//! thread of their own against UDP sockets (port 3784, TTL 255 sent and checked).

pub mod fuzzing;
pub mod packet;
pub mod service;
pub mod session;

pub use packet::{ControlPacket, Diag, PacketError, State};
pub use service::{BfdService, Dropped, Event, Peer, View};
pub use session::{AuthKey, Session, SessionConfig, Transition};

/// UDP port of single-hop control packets (RFC 5881 §4).
pub const PORT: u16 = 3784;
/// Source ports of single-hop control packets: 49152 to 65535 (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;
/// The TTL (hop limit) sent, and the only one accepted (RFC 5881 §5, GTSM).
pub const TTL: u8 = 255;

//! interlink's BGP speaker: the wire format of the session messages, the RFC 4271 session
//! state machine, UPDATEs, the RIB, policy and the speaker's decisions, all sans IO (fed
//! events with the time they happen at, answering with actions), and the tokio edge that runs
//! them against sockets and timers ([`peer`] for a session, `tasks` for the speaker).
//!
//! - [`wire`]: message framing, OPEN with its capabilities (RFC 5492: 4-octet ASN, MP-BGP,
//!   route refresh, graceful restart, extended messages), KEEPALIVE, NOTIFICATION (with the
//!   RFC 8203 shutdown communication) and ROUTE-REFRESH; every malformed input is an error
//!   that names the NOTIFICATION to send.
//! - [`fsm`]: the session state machine of RFC 4271 §8, with its timers, hold-time
//!   negotiation and back-off after repeated failures.
//! - [`peer`]: the I/O edge, on tokio: connections out and in, TTL 1, TCP-MD5, framing,
//!   timers and collision resolution, carrying out what the state machine asks.
//! - [`update`]: UPDATEs with RFC 7606 error handling; [`rib`]: the decision process;
//!   [`policy`]: prefix lists, communities, LOCAL_PREF, MED and prepends, import and export;
//!   [`speaker`]: all of it together, as a state machine ([`speaker::Speaker`]), run on tokio
//!   by [`speaker::run`].

pub mod collision;
pub mod fsm;
pub mod fuzzing;
pub mod peer;
pub mod policy;
pub mod rib;
pub mod speaker;
mod tasks;
pub mod update;
pub mod wire;

//! BGP session messages on the wire (RFC 4271 §4, RFC 5492, RFC 6793, RFC 4760, RFC 2918,
//! RFC 4724, RFC 8654, RFC 8203/9003, RFC 9072). Decoding never panics: every malformed input
//! is an `Err(Notification)` carrying the code, subcode and data that RFC 4271 §6 says to send.
//!
//! UPDATE bodies are framed here and handed on whole; their attributes are the RIB's work
//! (RFC 7606 error handling needs the session context).

use std::net::Ipv4Addr;

pub const HEADER_LEN: usize = 19;
/// The largest message without the extended message capability.
pub const MAX_LEN: usize = 4096;
/// The largest message with it (RFC 8654).
pub const MAX_EXTENDED_LEN: usize = 65535;
/// The 2-octet stand-in for a 4-octet AS (RFC 6793).
pub const AS_TRANS: u16 = 23456;

pub const OPEN: u8 = 1;
pub const UPDATE: u8 = 2;
pub const NOTIFICATION: u8 = 3;
pub const KEEPALIVE: u8 = 4;
pub const ROUTE_REFRESH: u8 = 5;

/// NOTIFICATION error codes (RFC 4271 §4.5) and the subcodes used here.
pub mod code {
    pub const HEADER: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const UPDATE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH: u8 = 7;

    pub const HEADER_NOT_SYNCHRONIZED: u8 = 1;
    pub const HEADER_BAD_LENGTH: u8 = 2;
    pub const HEADER_BAD_TYPE: u8 = 3;

    pub const OPEN_UNSUPPORTED_VERSION: u8 = 1;
    pub const OPEN_BAD_PEER_AS: u8 = 2;
    pub const OPEN_BAD_BGP_ID: u8 = 3;
    pub const OPEN_UNSUPPORTED_PARAMETER: u8 = 4;
    pub const OPEN_UNACCEPTABLE_HOLD_TIME: u8 = 6;

    /// Cease subcodes (RFC 4486).
    pub const CEASE_MAX_PREFIXES: u8 = 1;
    pub const CEASE_ADMIN_SHUTDOWN: u8 = 2;
    pub const CEASE_PEER_DECONFIGURED: u8 = 3;
    pub const CEASE_ADMIN_RESET: u8 = 4;
    pub const CEASE_CONFIG_CHANGE: u8 = 6;
    pub const CEASE_COLLISION: u8 = 7;
    /// RFC 9384.
    pub const CEASE_BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION: sent before closing, or received as the reason the peer closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: &[u8]) -> Notification {
        Notification {
            code,
            subcode,
            data: data.to_vec(),
        }
    }

    /// Cease with a shutdown communication (RFC 8203 as updated by RFC 9003): a length octet
    /// and up to 255 octets of UTF-8, cut at a character boundary.
    pub fn shutdown(subcode: u8, text: &str) -> Notification {
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = vec![end as u8];
        data.extend_from_slice(&text.as_bytes()[..end]);
        Notification {
            code: code::CEASE,
            subcode,
            data,
        }
    }

    /// The shutdown communication of a Cease / Administrative Shutdown or Reset, if it
    /// carries a well-formed one.
    pub fn communication(&self) -> Option<String> {
        let admin = [code::CEASE_ADMIN_SHUTDOWN, code::CEASE_ADMIN_RESET];
        if self.code != code::CEASE || !admin.contains(&self.subcode) {
            return None;
        }
        let (&len, text) = self.data.split_first()?;
        let text = text.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().map(str::to_owned)
    }

    fn header(subcode: u8, data: &[u8]) -> Notification {
        Notification::new(code::HEADER, subcode, data)
    }

    fn open(subcode: u8, data: &[u8]) -> Notification {
        Notification::new(code::OPEN, subcode, data)
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.code, self.subcode) {
            (code::HEADER, code::HEADER_NOT_SYNCHRONIZED) => {
                "message header: connection not synchronized"
            }
            (code::HEADER, code::HEADER_BAD_LENGTH) => "message header: bad message length",
            (code::HEADER, code::HEADER_BAD_TYPE) => "message header: bad message type",
            (code::HEADER, _) => "message header error",
            (code::OPEN, code::OPEN_UNSUPPORTED_VERSION) => "OPEN: unsupported version number",
            (code::OPEN, code::OPEN_BAD_PEER_AS) => "OPEN: bad peer AS",
            (code::OPEN, code::OPEN_BAD_BGP_ID) => "OPEN: bad BGP identifier",
            (code::OPEN, code::OPEN_UNSUPPORTED_PARAMETER) => {
                "OPEN: unsupported optional parameter"
            }
            (code::OPEN, code::OPEN_UNACCEPTABLE_HOLD_TIME) => "OPEN: unacceptable hold time",
            (code::OPEN, _) => "OPEN message error",
            (code::UPDATE, _) => "UPDATE message error",
            (code::HOLD_TIMER_EXPIRED, _) => "hold timer expired",
            (code::FSM, _) => "finite state machine error",
            (code::CEASE, code::CEASE_MAX_PREFIXES) => "cease: maximum number of prefixes reached",
            (code::CEASE, code::CEASE_ADMIN_SHUTDOWN) => "cease: administrative shutdown",
            (code::CEASE, code::CEASE_ADMIN_RESET) => "cease: administrative reset",
            (code::CEASE, code::CEASE_BFD_DOWN) => "cease: BFD down",
            (code::CEASE, code::CEASE_COLLISION) => "cease: connection collision resolution",
            (code::CEASE, _) => "cease",
            (code::ROUTE_REFRESH, _) => "ROUTE-REFRESH message error",
            _ => "unknown error",
        };
        write!(f, "{what} ({}/{})", self.code, self.subcode)?;
        if let Some(c) = self.communication() {
            write!(f, ": {c:?}")?;
        }
        Ok(())
    }
}

/// A whole message found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    pub kind: u8,
    pub body: &'a [u8],
    /// Header included: where the next message starts.
    pub len: usize,
}

/// Finds the first whole message at the start of `buf`; `Ok(None)` until enough has arrived.
/// `max_len` is 4096, or 65535 once the extended message capability is negotiated (RFC 8654;
/// OPEN and KEEPALIVE stay within 4096).
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<Frame<'_>>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(Notification::header(code::HEADER_NOT_SYNCHRONIZED, &[]));
    }
    let len_octets = [buf[16], buf[17]];
    let len = usize::from(u16::from_be_bytes(len_octets));
    let kind = buf[18];
    let (min, max) = match kind {
        OPEN => (29, MAX_LEN),
        UPDATE => (23, max_len),
        NOTIFICATION => (21, max_len),
        KEEPALIVE => (19, 19),
        ROUTE_REFRESH => (23, max_len),
        _ => return Err(Notification::header(code::HEADER_BAD_TYPE, &[kind])),
    };
    if len < min || len > max {
        return Err(Notification::header(code::HEADER_BAD_LENGTH, &len_octets));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame {
        kind,
        body: &buf[HEADER_LEN..len],
        len,
    }))
}

fn header(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, kind]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Address family and subsequent address family (RFC 4760).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };
}

/// The graceful restart capability (RFC 4724 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R: the sender has restarted.
    pub restarting: bool,
    /// Seconds the sender asks its peer to keep its routes, 0 to 4095.
    pub restart_time: u16,
    /// The families it preserves forwarding for, with the F bit.
    pub families: Vec<(Family, bool)>,
}

/// Capabilities an OPEN advertises (RFC 5492). Unknown ones are kept by code, and ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub multiprotocol: Vec<Family>,
    pub route_refresh: bool,
    pub four_octet_as: Option<u32>,
    pub graceful_restart: Option<GracefulRestart>,
    pub extended_message: bool,
    pub unknown: Vec<u8>,
}

/// An OPEN message. `asn` is the 4-octet AS when the capability carries one (the My AS field
/// then usually holds AS_TRANS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub caps: Capabilities,
}

impl Open {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = header(out, OPEN);
        out.push(4);
        let my_as = u16::try_from(self.asn).unwrap_or(AS_TRANS);
        out.extend_from_slice(&my_as.to_be_bytes());
        out.extend_from_slice(&self.hold_time.to_be_bytes());
        out.extend_from_slice(&self.router_id.octets());
        let mut caps = Vec::new();
        let mut cap = |code: u8, value: &[u8]| {
            caps.extend_from_slice(&[code, value.len() as u8]);
            caps.extend_from_slice(value);
        };
        for f in &self.caps.multiprotocol {
            let a = f.afi.to_be_bytes();
            cap(1, &[a[0], a[1], 0, f.safi]);
        }
        if self.caps.route_refresh {
            cap(2, &[]);
        }
        if self.caps.extended_message {
            cap(6, &[]);
        }
        if let Some(gr) = &self.caps.graceful_restart {
            let flags = u16::from(gr.restarting) << 15 | gr.restart_time.min(4095);
            let mut v = flags.to_be_bytes().to_vec();
            for (f, forwarding) in &gr.families {
                v.extend_from_slice(&f.afi.to_be_bytes());
                v.push(f.safi);
                v.push(u8::from(*forwarding) << 7);
            }
            cap(64, &v);
        }
        if let Some(asn) = self.caps.four_octet_as {
            cap(65, &asn.to_be_bytes());
        }
        // One optional parameter of type 2 holding every capability; past 255 octets, in the
        // extended format of RFC 9072.
        if caps.len() + 2 <= 255 {
            out.push((caps.len() + 2) as u8);
            out.extend_from_slice(&[2, caps.len() as u8]);
        } else {
            out.extend_from_slice(&[255, 255]);
            out.extend_from_slice(&((caps.len() + 3) as u16).to_be_bytes());
            out.push(2);
            out.extend_from_slice(&(caps.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&caps);
        finish(out, start);
    }

    /// Decodes an OPEN body. Checks what the message alone decides (version, hold time,
    /// identifier, parameters); the peer AS is the session's to check.
    pub fn decode(body: &[u8]) -> Result<Open, Notification> {
        let bad = || Notification::open(0, &[]);
        if body.len() < 10 {
            return Err(Notification::header(
                code::HEADER_BAD_LENGTH,
                &((body.len() + HEADER_LEN) as u16).to_be_bytes(),
            ));
        }
        if body[0] != 4 {
            // The data is the largest version we support (RFC 4271 §6.2).
            return Err(Notification::open(code::OPEN_UNSUPPORTED_VERSION, &[0, 4]));
        }
        let my_as = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        if hold_time == 1 || hold_time == 2 {
            return Err(Notification::open(code::OPEN_UNACCEPTABLE_HOLD_TIME, &[]));
        }
        let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        if router_id.is_unspecified() {
            return Err(Notification::open(code::OPEN_BAD_BGP_ID, &body[5..9]));
        }
        let mut opt_len = usize::from(body[9]);
        let mut params = &body[10..];
        // RFC 9072: a non-extended length of 255 followed by type 255 announces the extended
        // format, with two-octet lengths.
        let extended = opt_len == 255 && params.first() == Some(&255);
        if extended {
            let l = params.get(1..3).ok_or_else(bad)?;
            opt_len = usize::from(u16::from_be_bytes([l[0], l[1]]));
            params = &params[3..];
        }
        if params.len() != opt_len {
            return Err(bad());
        }
        let mut caps = Capabilities::default();
        let hdr = if extended { 3 } else { 2 };
        while !params.is_empty() {
            if params.len() < hdr {
                return Err(bad());
            }
            let kind = params[0];
            let len = if extended {
                usize::from(u16::from_be_bytes([params[1], params[2]]))
            } else {
                usize::from(params[1])
            };
            let value = params.get(hdr..hdr + len).ok_or_else(bad)?;
            if kind != 2 {
                return Err(Notification::open(code::OPEN_UNSUPPORTED_PARAMETER, &[]));
            }
            parse_capabilities(value, &mut caps)?;
            params = &params[hdr + len..];
        }
        let asn = caps.four_octet_as.unwrap_or(u32::from(my_as));
        Ok(Open {
            asn,
            hold_time,
            router_id,
            caps,
        })
    }
}

fn parse_capabilities(mut v: &[u8], caps: &mut Capabilities) -> Result<(), Notification> {
    let bad = || Notification::open(0, &[]);
    while !v.is_empty() {
        let (&code, rest) = v.split_first().ok_or_else(bad)?;
        let (&len, rest) = rest.split_first().ok_or_else(bad)?;
        let value = rest.get(..usize::from(len)).ok_or_else(bad)?;
        v = &rest[usize::from(len)..];
        match (code, value.len()) {
            (1, 4) => {
                let f = Family {
                    afi: u16::from_be_bytes([value[0], value[1]]),
                    safi: value[3],
                };
                if !caps.multiprotocol.contains(&f) {
                    caps.multiprotocol.push(f);
                }
            }
            (2, 0) => caps.route_refresh = true,
            (6, 0) => caps.extended_message = true,
            (64, n) if n >= 2 && (n - 2) % 4 == 0 => {
                let flags = u16::from_be_bytes([value[0], value[1]]);
                caps.graceful_restart = Some(GracefulRestart {
                    restarting: flags & 0x8000 != 0,
                    restart_time: flags & 0x0fff,
                    families: value[2..]
                        .chunks_exact(4)
                        .map(|c| {
                            (
                                Family {
                                    afi: u16::from_be_bytes([c[0], c[1]]),
                                    safi: c[2],
                                },
                                c[3] & 0x80 != 0,
                            )
                        })
                        .collect(),
                });
            }
            (65, 4) => {
                caps.four_octet_as =
                    Some(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            // A known capability of the wrong length is malformed (RFC 5492 leaves the
            // reaction open; FRR and BIRD reject the OPEN).
            (1 | 2 | 6 | 64 | 65, _) => return Err(bad()),
            _ => caps.unknown.push(code),
        }
    }
    Ok(())
}

/// A message of the session, decoded. UPDATE bodies stay raw for the RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Vec<u8>),
    Notification(Notification),
    Keepalive,
    RouteRefresh { family: Family, subtype: u8 },
}

impl Message {
    /// Decodes the body of a message that `frame` found.
    pub fn decode(kind: u8, body: &[u8]) -> Result<Message, Notification> {
        match kind {
            OPEN => Open::decode(body).map(Message::Open),
            UPDATE => Ok(Message::Update(body.to_vec())),
            NOTIFICATION => match body {
                [code, subcode, data @ ..] => Ok(Message::Notification(Notification::new(
                    *code, *subcode, data,
                ))),
                _ => Err(Notification::header(code::HEADER_BAD_LENGTH, &[])),
            },
            KEEPALIVE => Ok(Message::Keepalive),
            ROUTE_REFRESH => match body {
                [a0, a1, subtype, safi] => Ok(Message::RouteRefresh {
                    family: Family {
                        afi: u16::from_be_bytes([*a0, *a1]),
                        safi: *safi,
                    },
                    subtype: *subtype,
                }),
                // RFC 7313 §5: a ROUTE-REFRESH of another length is an error of its own code.
                _ => Err(Notification::new(code::ROUTE_REFRESH, 1, body)),
            },
            t => Err(Notification::header(code::HEADER_BAD_TYPE, &[t])),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Message::Open(o) => o.encode(out),
            Message::Update(body) => {
                let start = header(out, UPDATE);
                out.extend_from_slice(body);
                finish(out, start);
            }
            Message::Notification(n) => {
                let start = header(out, NOTIFICATION);
                out.extend_from_slice(&[n.code, n.subcode]);
                out.extend_from_slice(&n.data);
                finish(out, start);
            }
            Message::Keepalive => {
                let start = header(out, KEEPALIVE);
                finish(out, start);
            }
            Message::RouteRefresh { family, subtype } => {
                let start = header(out, ROUTE_REFRESH);
                out.extend_from_slice(&family.afi.to_be_bytes());
                out.extend_from_slice(&[*subtype, family.safi]);
                finish(out, start);
            }
        }
    }
}

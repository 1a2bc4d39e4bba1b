//! Close codes and close frames (RFC 6455 §5.5.1, §7.4).

use std::fmt;

/// A close status code.
///
/// The named constants are the codes RFC 6455 §7.4.1 and the IANA registry
/// define. Any other value in `3000..=4999` is also valid on the wire: those
/// ranges belong to libraries and applications.
///
/// ```
/// use sockeye_core::CloseCode;
///
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert!(CloseCode::new(4001).is_valid_on_wire());
/// assert!(!CloseCode::NO_STATUS.is_valid_on_wire()); // 1005 is never sent
/// assert!(!CloseCode::new(1016).is_valid_on_wire()); // unassigned
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigation).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1005: reported locally when a close frame carried no code. Never sent.
    pub const NO_STATUS: Self = Self(1005);
    /// 1006: reported locally when the connection ended without a close
    /// handshake. Never sent.
    pub const ABNORMAL: Self = Self(1006);
    /// 1007: a message's data did not match its type (e.g. invalid UTF-8 text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server hit an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting (IANA registry).
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (IANA registry).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway got an invalid response upstream (IANA registry).
    pub const BAD_GATEWAY: Self = Self(1014);
    /// 1015: reported locally when the TLS handshake failed. Never sent.
    pub const TLS_HANDSHAKE: Self = Self(1015);

    /// Any code. Check [`is_valid_on_wire`](Self::is_valid_on_wire) before
    /// trusting one that came from elsewhere.
    pub const fn new(code: u16) -> Self {
        Self(code)
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether a close frame may carry this code: the assigned codes of
    /// 1000–1014 apart from the locally reported 1004–1006, and 3000–4999.
    pub const fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The code and reason of a close frame.
///
/// A close frame without a payload is reported as [`CloseCode::NO_STATUS`]
/// with an empty reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The reason, at most 123 bytes of UTF-8.
    pub reason: String,
}

/// The longest reason a close frame can carry: 125 bytes minus the code.
pub const MAX_CLOSE_REASON: usize = 123;

//! The client's half of the handshake (RFC 6455 §4.1).

use bytes::{BufMut, Bytes, BytesMut};

use super::server::write_headers;
use super::{
    Extension, Header, accept_key, encode_key, has_token, header_values, is_token, single_header,
};
use crate::error::{ResponseError, UsageError};

/// What a client asks for when it opens a connection.
///
/// ```
/// use sockeye_core::ClientRequest;
///
/// let request = ClientRequest::new("example.com", 8080, "/chat?room=1")
///     .protocol("chat.v2")
///     .header("Authorization", "Bearer t0k3n");
/// # let _ = request;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    port: u16,
    resource: String,
    default_port: u16,
    protocols: Vec<String>,
    headers: Vec<Header>,
}

impl ClientRequest {
    /// A request for `resource` (path and query, starting with `/`) on
    /// `host:port`. The `Host` header leaves out port 80.
    pub fn new(host: impl Into<String>, port: u16, resource: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port,
            resource: resource.into(),
            default_port: 80,
            protocols: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// For `wss://`: the `Host` header leaves out port 443 instead of 80.
    pub fn secure(mut self, secure: bool) -> Self {
        self.default_port = if secure { 443 } else { 80 };
        self
    }

    /// Offers a subprotocol. Offer them in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a header to the request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Writes the request with the given key, and remembers what the response
    /// must match.
    pub(crate) fn encode(&self, key: [u8; 16]) -> Result<(Bytes, ClientHandshake), UsageError> {
        let invalid = |what: &str| UsageError::InvalidRequest(what.to_owned());
        let host_ok = !self.host.is_empty()
            && self
                .host
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/?#@".contains(&b));
        if !host_ok {
            return Err(invalid("host must be a non-empty name or address"));
        }
        if !self.resource.starts_with('/') || !self.resource.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "resource must start with / and contain no spaces or controls",
            ));
        }
        if let Some(bad) = self.protocols.iter().find(|p| !is_token(p)) {
            return Err(invalid(&format!("subprotocol {bad:?} is not a token")));
        }
        let key = encode_key(key);
        let mut out = BytesMut::with_capacity(256);
        out.put_slice(b"GET ");
        out.put_slice(self.resource.as_bytes());
        out.put_slice(b" HTTP/1.1\r\nHost: ");
        let bracket = self.host.contains(':') && !self.host.starts_with('[');
        if bracket {
            out.put_slice(format!("[{}]", self.host).as_bytes());
        } else {
            out.put_slice(self.host.as_bytes());
        }
        if self.port != self.default_port {
            out.put_slice(format!(":{}", self.port).as_bytes());
        }
        out.put_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        out.put_slice(key.as_bytes());
        out.put_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
        if !self.protocols.is_empty() {
            out.put_slice(b"Sec-WebSocket-Protocol: ");
            out.put_slice(self.protocols.join(", ").as_bytes());
            out.put_slice(b"\r\n");
        }
        write_headers(&mut out, &self.headers)?;
        out.put_slice(b"\r\n");
        let expect = ClientHandshake {
            accept: accept_key(key.as_bytes()),
            protocols: self.protocols.clone(),
        };
        Ok((out.freeze(), expect))
    }
}

/// What the server's response must match.
#[derive(Debug, Clone)]
pub(crate) struct ClientHandshake {
    accept: String,
    protocols: Vec<String>,
}

/// What a complete response head turned out to be.
#[derive(Debug)]
pub(crate) enum ResponseOutcome {
    /// The server switched protocols.
    Upgraded {
        protocol: Option<String>,
        headers: Vec<Header>,
    },
    /// The server refused; `body_len` is its Content-Length, if any.
    Refused {
        status: u16,
        reason: String,
        headers: Vec<Header>,
        body_len: Option<usize>,
    },
    /// The response is not acceptable.
    Invalid(ResponseError),
}

impl ClientHandshake {
    /// Parses and checks a complete response head.
    pub(crate) fn check(&self, head: &[u8], max_headers: usize) -> ResponseOutcome {
        let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
        let mut parsed = httparse::Response::new(&mut slots);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return ResponseOutcome::Invalid(ResponseError::Malformed(
                    "incomplete response head".into(),
                ));
            }
            Err(httparse::Error::TooManyHeaders) => {
                return ResponseOutcome::Invalid(ResponseError::TooLarge);
            }
            Err(e) => return ResponseOutcome::Invalid(ResponseError::Malformed(e.to_string())),
        }
        let status = parsed.code.unwrap_or_default();
        let headers: Vec<Header> = parsed
            .headers
            .iter()
            .map(|h| Header::new(h.name, h.value))
            .collect();
        if status != 101 {
            let body_len = header_values(&headers, "content-length")
                .next()
                .and_then(Result::ok)
                .and_then(|v| v.trim().parse().ok());
            return ResponseOutcome::Refused {
                status,
                reason: parsed.reason.unwrap_or_default().to_owned(),
                headers,
                body_len,
            };
        }
        match self.validate_upgrade(&headers) {
            Ok(protocol) => ResponseOutcome::Upgraded { protocol, headers },
            Err(e) => ResponseOutcome::Invalid(e),
        }
    }

    fn validate_upgrade(&self, headers: &[Header]) -> Result<Option<String>, ResponseError> {
        if !has_token(headers, "upgrade", "websocket") {
            return Err(ResponseError::MissingUpgrade);
        }
        if !has_token(headers, "connection", "upgrade") {
            return Err(ResponseError::MissingConnectionUpgrade);
        }
        let accept = single_header(headers, "sec-websocket-accept")
            .map_err(|()| ResponseError::BadAccept)?;
        if accept.map(|h| h.value.trim_ascii()) != Some(self.accept.as_bytes()) {
            return Err(ResponseError::BadAccept);
        }
        let protocol = single_header(headers, "sec-websocket-protocol")
            .map_err(|()| ResponseError::Malformed("repeated Sec-WebSocket-Protocol".into()))?
            .map(|h| String::from_utf8_lossy(h.value.trim_ascii()).into_owned());
        if let Some(chosen) = &protocol
            && !self.protocols.contains(chosen)
        {
            return Err(ResponseError::UnexpectedProtocol(chosen.clone()));
        }
        // No extension is offered yet, so any extension is unexpected.
        for value in header_values(headers, "sec-websocket-extensions") {
            let value = value.map_err(|_| {
                ResponseError::Malformed("Sec-WebSocket-Extensions is not UTF-8".into())
            })?;
            let extensions = Extension::parse_list(value).map_err(ResponseError::Malformed)?;
            if let Some(extension) = extensions.into_iter().next() {
                return Err(ResponseError::UnexpectedExtension(extension.name));
            }
        }
        Ok(protocol)
    }
}

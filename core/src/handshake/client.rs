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
/// let request = ClientRequest::from_url("ws://example.com:8080/chat?room=1")?
///     .protocol("chat.v2")
///     .header("Authorization", "Bearer t0k3n");
/// assert_eq!((request.host(), request.port()), ("example.com", 8080));
/// # Ok::<(), sockeye_core::UsageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRequest {
    host: String,
    port: u16,
    resource: String,
    secure: bool,
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
            secure: false,
            protocols: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A request for a `ws://` or `wss://` URL (RFC 6455 §3):
    /// `ws://host[:port][/path][?query]`, with the port 80 or 443 by default
    /// and IPv6 addresses in brackets. A URL with a fragment or credentials
    /// is refused, with the reason.
    ///
    /// ```
    /// use sockeye_core::{ClientRequest, UsageError};
    /// let request = ClientRequest::from_url("wss://[::1]/agent?session=42")?;
    /// assert_eq!((request.host(), request.port(), request.is_secure()), ("::1", 443, true));
    /// assert_eq!(request.resource(), "/agent?session=42");
    ///
    /// let error = ClientRequest::from_url("http://example.com/").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "invalid WebSocket URL \"http://example.com/\": the scheme must be ws:// or wss://",
    /// );
    /// # Ok::<(), UsageError>(())
    /// ```
    pub fn from_url(url: &str) -> Result<Self, UsageError> {
        let invalid = |reason| UsageError::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let (secure, rest) = if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            return Err(invalid("the scheme must be ws:// or wss://"));
        };
        if rest.contains('#') {
            return Err(invalid("a WebSocket URL has no fragment"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        if authority.contains('@') {
            return Err(invalid(
                "credentials in the URL are not supported; use a header",
            ));
        }
        let default_port = if secure { 443 } else { 80 };
        let parse_port = |port: &str| {
            port.parse()
                .map_err(|_| invalid("the port must be a number from 0 to 65535"))
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unterminated IPv6 address"))?;
            match after {
                "" => (host, default_port),
                p => (host, parse_port(p.strip_prefix(':').unwrap_or("x"))?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, parse_port(port)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        Ok(Self::new(host, port, resource).secure(secure))
    }

    /// For `wss://`: the `Host` header leaves out port 443 instead of 80.
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// The host to connect to: a name, or an address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path and query asked for.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Whether the connection is to run over TLS (`wss://`).
    pub fn is_secure(&self) -> bool {
        self.secure
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
        let default_port = if self.secure { 443 } else { 80 };
        if self.port != default_port {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_and_resource() {
        let parts = |url| {
            let r = ClientRequest::from_url(url).unwrap();
            (r.host.clone(), r.port, r.resource.clone(), r.secure)
        };
        assert_eq!(
            parts("ws://example.com:8080/chat?room=1"),
            ("example.com".into(), 8080, "/chat?room=1".into(), false)
        );
        assert_eq!(
            parts("wss://example.com"),
            ("example.com".into(), 443, "/".into(), true)
        );
        assert_eq!(
            parts("ws://[::1]:9001?x=1"),
            ("::1".into(), 9001, "/?x=1".into(), false)
        );
        assert_eq!(parts("ws://[::1]").1, 80);
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, reason) in [
            ("http://x/", "the scheme must be ws:// or wss://"),
            ("ws://x/#frag", "a WebSocket URL has no fragment"),
            ("ws://:80/", "the host is missing"),
            ("ws://x:99999/", "the port must be a number from 0 to 65535"),
            (
                "ws://u:p@x/",
                "credentials in the URL are not supported; use a header",
            ),
            ("ws://[::1/", "unterminated IPv6 address"),
            ("ws://[::1]x/", "the port must be a number from 0 to 65535"),
        ] {
            match ClientRequest::from_url(url) {
                Err(UsageError::InvalidUrl { reason: got, .. }) => assert_eq!(got, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}

//! The server's half of the handshake (RFC 6455 §4.2).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    Extension, Handshake, Header, accept_key, has_token, header_is_writable, header_values,
    is_token, key_is_valid, reason_phrase, single_header, split_list,
};
use crate::error::{RequestError, UsageError};

/// An HTTP request, as the server received it.
///
/// A WebSocket upgrade request comes out as
/// [`Event::Request`](crate::Event::Request), after validation; any other
/// request as [`Event::HttpRequest`](crate::Event::HttpRequest).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target up to any `?`.
    pub path: String,
    /// The part after `?`, if any.
    pub query: Option<String>,
    /// Every header line, in order.
    pub headers: Vec<Header>,
    /// Subprotocols the client offered, in its order of preference.
    pub protocols: Vec<String>,
    /// Extensions the client offered, in its order of preference.
    pub extensions: Vec<Extension>,
}

impl Request {
    /// The first value of a header, by case-insensitive name, if it is UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_values(&self.headers, name).next()?.ok()
    }

    /// The `Origin` header, which browsers always send (§4.1, §10.2).
    pub fn origin(&self) -> Option<&str> {
        self.header("origin")
    }
}

/// A plain HTTP response: a rejection of an upgrade request, or the answer
/// to a request that is not an upgrade.
///
/// The core adds `Content-Length` and `Connection: close` (the transport
/// closes after the response), and `Content-Type: text/plain` when there is
/// a body and no content type.
///
/// ```
/// use sockeye_core::Response;
/// let forbidden = Response::new(403, "origin not allowed");
/// let health = Response::new(200, "ok").with_header("Cache-Control", "no-store");
/// # let _ = (forbidden, health);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code: three digits, not 101.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<Header>,
    /// The body.
    pub body: Bytes,
}

impl Response {
    /// A response with a status and a body.
    pub fn new(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    /// `426 Upgrade Required`: the answer of a WebSocket-only endpoint to a
    /// plain HTTP request (RFC 9110 §15.5.22), naming the protocol and the
    /// version it speaks.
    ///
    /// ```
    /// use sockeye_core::Response;
    /// let response = Response::upgrade_required();
    /// assert_eq!(response.status, 426);
    /// assert!(response.headers.iter().any(|h| h.name == "Upgrade" && h.value == b"websocket"));
    /// ```
    pub fn upgrade_required() -> Self {
        Response::new(426, "this endpoint speaks WebSocket\n")
            .with_header("Upgrade", "websocket")
            .with_header("Sec-WebSocket-Version", "13")
    }

    /// The response that refuses a request for `error`.
    pub(crate) fn for_error(error: &RequestError) -> Self {
        let response = Response::new(error.status(), error.to_string());
        match error {
            RequestError::UnsupportedVersion(_) => {
                response.with_header("Sec-WebSocket-Version", "13")
            }
            _ => response,
        }
    }

    pub(crate) fn encode(&self) -> Result<Bytes, UsageError> {
        if !(100..=999).contains(&self.status) || self.status == 101 {
            return Err(UsageError::InvalidStatus(self.status));
        }
        let mut out = BytesMut::with_capacity(128 + self.body.len());
        write_status_line(&mut out, self.status);
        write_headers(&mut out, &self.headers)?;
        let has = |name: &str| {
            self.headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name))
        };
        if !self.body.is_empty() && !has("content-type") {
            out.put_slice(b"Content-Type: text/plain; charset=utf-8\r\n");
        }
        if !has("content-length") {
            out.put_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        if !has("connection") {
            out.put_slice(b"Connection: close\r\n");
        }
        out.put_slice(b"\r\n");
        out.put_slice(&self.body);
        Ok(out.freeze())
    }
}

impl Handshake {
    /// The 101 response for a request whose key gave `accept`.
    pub(crate) fn encode(&self, accept: &str, offered: &[String]) -> Result<Bytes, UsageError> {
        if let Some(protocol) = &self.protocol
            && !offered.contains(protocol)
        {
            return Err(UsageError::ProtocolNotOffered(protocol.clone()));
        }
        let mut out = BytesMut::with_capacity(160);
        write_status_line(&mut out, 101);
        out.put_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
        out.put_slice(accept.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(protocol) = &self.protocol {
            out.put_slice(b"Sec-WebSocket-Protocol: ");
            out.put_slice(protocol.as_bytes());
            out.put_slice(b"\r\n");
        }
        write_headers(&mut out, &self.headers)?;
        out.put_slice(b"\r\n");
        Ok(out.freeze())
    }
}

fn write_status_line(out: &mut BytesMut, status: u16) {
    out.put_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
}

pub(crate) fn write_headers(out: &mut BytesMut, headers: &[Header]) -> Result<(), UsageError> {
    for header in headers {
        match header.value_str() {
            Some(value) if header_is_writable(&header.name, value) => {
                out.put_slice(header.name.as_bytes());
                out.put_slice(b": ");
                out.put_slice(value.as_bytes());
                out.put_slice(b"\r\n");
            }
            _ => return Err(UsageError::InvalidHeader(header.name.clone())),
        }
    }
    Ok(())
}

/// What a complete request head turned out to be.
#[derive(Debug)]
pub(crate) enum RequestOutcome {
    /// A valid upgrade request, and the `Sec-WebSocket-Accept` it needs.
    Upgrade { request: Request, accept: String },
    /// A request that is not a WebSocket upgrade.
    Plain(Request),
    /// An upgrade request that must be refused.
    Invalid(RequestError),
}

/// Parses and validates a complete request head.
pub(crate) fn parse_request(head: &[u8], max_headers: usize) -> RequestOutcome {
    let mut slots = vec![httparse::EMPTY_HEADER; max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return RequestOutcome::Invalid(RequestError::Malformed(
                "incomplete request head".into(),
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return RequestOutcome::Invalid(RequestError::TooManyHeaders(max_headers));
        }
        Err(e) => return RequestOutcome::Invalid(RequestError::Malformed(e.to_string())),
    }
    let target = parsed.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let headers: Vec<Header> = parsed
        .headers
        .iter()
        .map(|h| Header::new(h.name, h.value))
        .collect();
    let mut request = Request {
        method: parsed.method.unwrap_or_default().to_owned(),
        path,
        query,
        headers,
        protocols: Vec::new(),
        extensions: Vec::new(),
    };
    let is_upgrade = has_token(&request.headers, "upgrade", "websocket")
        || request.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("sec-websocket-key")
                || h.name.eq_ignore_ascii_case("sec-websocket-version")
        });
    if !is_upgrade {
        return RequestOutcome::Plain(request);
    }
    match validate_upgrade(&mut request, parsed.version == Some(1)) {
        Ok(accept) => RequestOutcome::Upgrade { request, accept },
        Err(e) => RequestOutcome::Invalid(e),
    }
}

fn validate_upgrade(request: &mut Request, http11: bool) -> Result<String, RequestError> {
    if request.method != "GET" {
        return Err(RequestError::MethodNotGet(request.method.clone()));
    }
    if !http11 {
        return Err(RequestError::NotHttp11);
    }
    let headers = &request.headers;
    match single_header(headers, "host") {
        Ok(Some(_)) => {}
        Ok(None) => return Err(RequestError::MissingHost),
        Err(()) => return Err(RequestError::DuplicateHeader("Host")),
    }
    if !has_token(headers, "upgrade", "websocket") {
        return Err(RequestError::MissingUpgrade);
    }
    if !has_token(headers, "connection", "upgrade") {
        return Err(RequestError::MissingConnectionUpgrade);
    }
    let version = single_header(headers, "sec-websocket-version")
        .map_err(|()| RequestError::DuplicateHeader("Sec-WebSocket-Version"))?;
    match version.map(|h| String::from_utf8_lossy(&h.value).trim().to_owned()) {
        Some(v) if v == "13" => {}
        other => return Err(RequestError::UnsupportedVersion(other)),
    }
    let key = single_header(headers, "sec-websocket-key")
        .map_err(|()| RequestError::DuplicateHeader("Sec-WebSocket-Key"))?
        .ok_or(RequestError::MissingKey)?;
    let key = key.value.trim_ascii();
    if !key_is_valid(key) {
        return Err(RequestError::InvalidKey);
    }
    let declares_body = headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            || (h.name.eq_ignore_ascii_case("content-length") && h.value.trim_ascii() != b"0")
    });
    if declares_body {
        return Err(RequestError::UnexpectedBody);
    }
    let mut protocols = Vec::new();
    for value in header_values(headers, "sec-websocket-protocol") {
        for protocol in split_list(value.map_err(|_| RequestError::MalformedProtocols)?) {
            if !is_token(protocol) {
                return Err(RequestError::MalformedProtocols);
            }
            protocols.push(protocol.to_owned());
        }
    }
    let mut extensions = Vec::new();
    for value in header_values(headers, "sec-websocket-extensions") {
        let value =
            value.map_err(|_| RequestError::MalformedExtensions("value is not UTF-8".into()))?;
        extensions.extend(Extension::parse_list(value).map_err(RequestError::MalformedExtensions)?);
    }
    let accept = accept_key(key);
    request.protocols = protocols;
    request.extensions = extensions;
    Ok(accept)
}

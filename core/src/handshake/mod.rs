//! The HTTP/1.1 upgrade handshake (RFC 6455 §4): the server's request
//! parsing and response, the client's request and response validation, and
//! what both share.

mod client;
mod server;

pub use client::ClientRequest;
pub(crate) use client::{ClientHandshake, ResponseOutcome};
pub use server::{Request, Response};
pub(crate) use server::{RequestOutcome, parse_request};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

/// What the two ends agreed in the upgrade: the subprotocol, and the
/// headers that came with the 101 response.
///
/// A server passes it to [`accept`](crate::Connection::accept) (the headers
/// are extra ones for its 101 response), and both ends get it back in
/// [`Event::Open`](crate::Event::Open): the server what it accepted with,
/// the client what the server's response said (every header of it).
///
/// ```
/// use sockeye_core::{Handshake, Header};
/// let accept = Handshake {
///     protocol: Some("chat.v2".into()),
///     headers: vec![Header::new("X-Session", "abc")],
/// };
/// # let _ = accept;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The subprotocol in use, if one was chosen: one the client offered.
    pub protocol: Option<String>,
    /// Server: extra headers for the 101 response. Client: the headers of
    /// the server's 101 response.
    pub headers: Vec<Header>,
}

/// One HTTP header line.
///
/// ```
/// use sockeye_core::Header;
/// let header = Header::new("Origin", "https://example.com");
/// assert_eq!(header.value_str(), Some("https://example.com"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Header {
    /// The name, as received.
    pub name: String,
    /// The value, as received (HTTP allows bytes that are not UTF-8).
    pub value: Vec<u8>,
}

impl Header {
    /// A header line.
    pub fn new(name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }

    /// The value, if it is UTF-8.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.value).ok()
    }
}

/// One extension offered in `Sec-WebSocket-Extensions` (§9.1), with its
/// parameters in order.
///
/// ```
/// use sockeye_core::Extension;
/// let offers = Extension::parse_list("permessage-deflate; client_max_window_bits, x-y; a=\"1\"").unwrap();
/// assert_eq!(offers[0].name, "permessage-deflate");
/// assert_eq!(offers[0].params, vec![("client_max_window_bits".to_string(), None)]);
/// assert_eq!(offers[1].params, vec![("a".to_string(), Some("1".to_string()))]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Extension {
    /// The extension token.
    pub name: String,
    /// Parameters: a name and an optional value (quotes removed).
    pub params: Vec<(String, Option<String>)>,
}

impl Extension {
    /// Parses a `Sec-WebSocket-Extensions` value. The error says what broke
    /// the grammar.
    pub fn parse_list(value: &str) -> Result<Vec<Extension>, String> {
        let mut out = Vec::new();
        for item in split_list(value) {
            let mut parts = split_unquoted(item, ';');
            let name = parts.next().unwrap_or_default().trim();
            if !is_token(name) {
                return Err(format!("invalid extension name {name:?}"));
            }
            let mut params = Vec::new();
            for param in parts {
                let (key, value) = match param.split_once('=') {
                    Some((k, v)) => (k.trim(), Some(parse_param_value(v.trim())?)),
                    None => (param.trim(), None),
                };
                if !is_token(key) {
                    return Err(format!("invalid parameter name {key:?} in {name}"));
                }
                params.push((key.to_owned(), value));
            }
            out.push(Extension {
                name: name.to_owned(),
                params,
            });
        }
        Ok(out)
    }
}

fn parse_param_value(raw: &str) -> Result<String, String> {
    let value = match raw.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated quoted value {raw:?}"))?,
        None => raw,
    };
    if !is_token(value) {
        return Err(format!("invalid parameter value {raw:?}"));
    }
    Ok(value.to_owned())
}

/// Splits on `sep` outside double quotes.
fn split_unquoted(s: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut quoted = false;
    s.split(move |c| {
        if c == '"' {
            quoted = !quoted;
        }
        c == sep && !quoted
    })
}

/// The non-empty elements of an HTTP `#rule` list (RFC 9110 §5.6.1).
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    split_unquoted(value, ',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// An HTTP token (RFC 9110 §5.6.2).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// All values of a header, in order (RFC 9110 §5.3). A value that is not
/// UTF-8 comes out as `Err`, so that validation cannot skip it.
pub(crate) fn header_values<'a>(
    headers: &'a [Header],
    name: &str,
) -> impl Iterator<Item = Result<&'a str, std::str::Utf8Error>> {
    headers
        .iter()
        .filter(move |h| h.name.eq_ignore_ascii_case(name))
        .map(|h| std::str::from_utf8(&h.value))
}

/// Whether any value of header `name` lists `token` (case-insensitively).
pub(crate) fn has_token(headers: &[Header], name: &str, token: &str) -> bool {
    header_values(headers, name)
        .filter_map(Result::ok)
        .flat_map(split_list)
        .any(|t| t.eq_ignore_ascii_case(token))
}

/// The single value of a header that must not repeat: `Ok(None)` if absent,
/// `Err(())` if repeated.
pub(crate) fn single_header<'a>(
    headers: &'a [Header],
    name: &str,
) -> Result<Option<&'a Header>, ()> {
    let mut found = headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name));
    let first = found.next();
    if found.next().is_some() {
        Err(())
    } else {
        Ok(first)
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (§4.2.2).
///
/// ```
/// // The example of RFC 6455 §1.3.
/// assert_eq!(
///     sockeye_core::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
///     "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
/// );
/// ```
pub fn accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

pub(crate) fn encode_key(key: [u8; 16]) -> String {
    BASE64.encode(key)
}

pub(crate) fn key_is_valid(key: &[u8]) -> bool {
    BASE64.decode(key).is_ok_and(|raw| raw.len() == 16)
}

/// Whether a header can be written without breaking the HTTP message.
pub(crate) fn header_is_writable(name: &str, value: &str) -> bool {
    is_token(name)
        && value
            .bytes()
            .all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Locates the end of an HTTP head: the index just past the blank line.
/// `from` is where the previous search stopped, so a head that trickles in
/// byte by byte is scanned once in total.
pub(crate) fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    let mut i = start;
    while let Some(pos) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + pos;
        match buf.get(nl + 1) {
            Some(b'\n') => return Some(nl + 2),
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// The reason phrase for a status, for responses the core writes.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lists_are_case_insensitive_and_tolerate_spacing() {
        let headers = vec![
            Header::new("connection", "keep-alive , UPGRADE"),
            Header::new("Upgrade", "h2c"),
            Header::new("UPGRADE", "WebSocket"),
        ];
        assert!(has_token(&headers, "Connection", "upgrade"));
        assert!(has_token(&headers, "upgrade", "websocket"));
        assert!(!has_token(&headers, "connection", "close"));
    }

    #[test]
    fn extension_grammar_errors_are_reported() {
        assert!(Extension::parse_list("a; b=\"unterminated").is_err());
        assert!(Extension::parse_list("bad name").is_err());
        assert!(Extension::parse_list("a; =1").is_err());
        assert_eq!(Extension::parse_list("").unwrap(), vec![]);
        let parsed = Extension::parse_list("foo; q=\"a,b\"").unwrap_err();
        assert!(parsed.contains("invalid parameter value"), "{parsed}");
    }

    #[test]
    fn head_end_is_found_across_calls() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let mut searched = 0;
        let mut found = None;
        for len in 1..=head.len() {
            if let Some(end) = find_head_end(&head[..len], searched) {
                found = Some(end);
                break;
            }
            searched = len;
        }
        assert_eq!(found, Some(head.len() - 4));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\nHost: a\n\nxx", 0), Some(24));
    }
}

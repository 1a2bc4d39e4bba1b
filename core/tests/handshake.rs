//! The HTTP/1.1 upgrade handshake (RFC 6455 §4) in both roles, driven only
//! through the public `Connection` API: every way a server refuses a request,
//! what it accepts, and how a client checks the server's response.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use sockeye_core::testing::{Endpoint, Frame, Output, split_head};
use sockeye_core::{
    ClientRequest, CloseCode, Closed, Config, Connection, Error, Event, Extension, Handshake,
    Header, Message, ProtocolError, RequestError, Response, ResponseError, State, TransportAction,
    UsageError, accept_key,
};

/// The key of RFC 6455 §1.3 and the accept value it gives.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The header lines of a valid upgrade request.
const UPGRADE_HEADERS: [&str; 5] = [
    "Host: example.com",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

// ---- helpers -----------------------------------------------------------

/// Drains the outputs, at the connection's latest time.
fn drain(conn: &mut Endpoint) -> Output {
    let now = conn.conn.now();
    conn.drain(now)
}

/// Feeds `input` in one call and drains the outputs.
fn feed(conn: &mut Endpoint, now: Instant, input: &[u8]) -> Output {
    conn.conn.handle_input(now, input);
    conn.drain(now)
}

/// Feeds `input` in chunks of `size` bytes, draining after each, and returns
/// everything produced.
fn feed_chunked(conn: &mut Endpoint, now: Instant, input: &[u8], size: usize) -> Output {
    let mut all = Output::default();
    for chunk in input.chunks(size) {
        let out = feed(conn, now, chunk);
        all.wire.extend(out.wire);
        all.events.extend(out.events);
        all.transport.extend(out.transport);
    }
    all
}

/// An HTTP head: the start line, each header line, and the blank line.
fn head(start_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{start_line}\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A valid upgrade request for `/chat`, with `extra` header lines appended.
fn upgrade_request(extra: &[&str]) -> Vec<u8> {
    let lines: Vec<&str> = UPGRADE_HEADERS.iter().chain(extra).copied().collect();
    head("GET /chat HTTP/1.1", &lines)
}

/// A valid upgrade request for `/chat` with the header `name` left out and
/// `extra` lines appended.
fn upgrade_request_without(name: &str, extra: &[&str]) -> Vec<u8> {
    let lines: Vec<&str> = UPGRADE_HEADERS
        .iter()
        .filter(|line| {
            !line
                .to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .chain(extra)
        .copied()
        .collect();
    assert_eq!(
        lines.len(),
        UPGRADE_HEADERS.len() - 1 + extra.len(),
        "no header {name} to remove"
    );
    head("GET /chat HTTP/1.1", &lines)
}

/// A parsed HTTP message, read strictly: CRLF line endings, `Name: value`
/// header lines.
#[derive(Debug)]
struct Http {
    start_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Http {
    fn parse(wire: &[u8]) -> Self {
        let (head, body) = split_head(wire)
            .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(wire)));
        let head = std::str::from_utf8(head)
            .expect("head is UTF-8")
            .trim_end_matches("\r\n");
        let mut lines = head.split("\r\n");
        let start_line = lines.next().unwrap().to_owned();
        let headers = lines
            .map(|line| {
                let (name, value) = line
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("bad header line {line:?}"));
                (name.to_owned(), value.to_owned())
            })
            .collect();
        Self {
            start_line,
            headers,
            body: body.to_vec(),
        }
    }

    fn status(&self) -> u16 {
        let code = self.start_line.split(' ').nth(1).expect("status code");
        code.parse().expect("numeric status")
    }

    /// Every value of the header `name`, case-insensitively.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of a header that must appear at most once.
    fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} repeated: {all:?}");
        all.first().copied()
    }

    fn body_str(&self) -> &str {
        std::str::from_utf8(&self.body).expect("body is UTF-8")
    }
}

/// The status line a refusal with `status` must have.
fn status_line(status: u16) -> &'static str {
    match status {
        400 => "HTTP/1.1 400 Bad Request",
        408 => "HTTP/1.1 408 Request Timeout",
        426 => "HTTP/1.1 426 Upgrade Required",
        431 => "HTTP/1.1 431 Request Header Fields Too Large",
        _ => panic!("no status line for {status}"),
    }
}

/// The `Closed` event of a handshake that failed with `error`.
fn failed(error: Error) -> Event {
    abnormal(Some(error))
}

/// The `Closed` event of a connection that ended without close frames.
fn abnormal(error: Option<Error>) -> Event {
    Event::Closed(Box::new(Closed {
        code: CloseCode::ABNORMAL,
        reason: String::new(),
        clean: false,
        error,
    }))
}

fn server(config: Config, now: Instant) -> Endpoint {
    Endpoint::server(config, now)
}

/// Checks a server refusal: one response with `status`, the error's text as
/// the body, then `Closed` with the error as the last event, and nothing
/// more after further input.
fn check_refusal(
    conn: &mut Endpoint,
    now: Instant,
    out: &Output,
    status: u16,
    expected: &RequestError,
) -> Http {
    assert!(
        !out.wire.is_empty(),
        "no response was written; events: {:?}",
        out.events
    );
    let response = Http::parse(&out.wire);
    assert_eq!(response.start_line, status_line(status), "{response:?}");
    assert_eq!(response.status(), status);
    assert_eq!(response.body_str(), expected.to_string());
    assert_eq!(
        response.header("Content-Length"),
        Some(response.body.len().to_string().as_str())
    );
    assert_eq!(
        response.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(
        out.events.last(),
        Some(&failed(Error::Request(expected.clone()))),
        "events: {:?}",
        out.events
    );
    let closed = out
        .events
        .iter()
        .filter(|e| matches!(e, Event::Closed(_)))
        .count();
    assert_eq!(closed, 1, "events: {:?}", out.events);
    assert!(
        !out.events.iter().any(|e| matches!(e, Event::Open(_))),
        "events: {:?}",
        out.events
    );
    assert_eq!(conn.conn.state(), State::Closed);
    check_lingers(conn, now, out);
    assert!(
        feed(conn, now, &upgrade_request(&[])).is_empty(),
        "input after the refusal was processed"
    );
    assert_eq!(
        conn.conn.accept(now, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );
    response
}

/// Checks that a server that answered with an HTTP response at `now` then
/// half-closed, and waits for the client to close its side for as long as a
/// close handshake may take: closing at once could reset the connection
/// under the response.
fn check_lingers(conn: &Endpoint, now: Instant, out: &Output) {
    assert_eq!(out.transport, [TransportAction::HalfClose]);
    let close_timeout = conn.conn.config().close_timeout;
    assert_eq!(conn.conn.poll_timeout(), Some(now + close_timeout));
}

/// Feeds `input` to a fresh server with `config` in one call and checks it is
/// refused with `status` and `expected`, and nothing else happened.
fn assert_refused_with(config: Config, input: &[u8], status: u16, expected: RequestError) -> Http {
    let t0 = Instant::now();
    let mut conn = server(config, t0);
    let out = feed(&mut conn, t0, input);
    assert_eq!(out.events.len(), 1, "events: {:?}", out.events);
    check_refusal(&mut conn, t0, &out, status, &expected)
}

fn assert_refused(input: &[u8], status: u16, expected: RequestError) -> Http {
    assert_refused_with(Config::default(), input, status, expected)
}

/// Feeds a request in one call and returns the `Request` event it gave.
fn expect_request(conn: &mut Endpoint, now: Instant, input: &[u8]) -> sockeye_core::Request {
    let out = feed(conn, now, input);
    assert!(
        out.wire.is_empty(),
        "server wrote before answering: {:?}",
        String::from_utf8_lossy(&out.wire)
    );
    match <[Event; 1]>::try_from(out.events) {
        Ok([Event::Request(request)]) => *request,
        other => panic!("expected one Request event, got {other:?}"),
    }
}

fn concat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---- server: refusals ----------------------------------------------------

#[test]
fn rfc_example_accept_key() {
    assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
}

#[test]
fn head_larger_than_max_handshake_size_gets_431() {
    let max = Config::default().max_handshake_size;
    // A head of exactly the limit is fine...
    let base = upgrade_request(&["X-Pad: "]).len();
    let pad = "a".repeat(max - base);
    let exact = upgrade_request(&[&format!("X-Pad: {pad}")]);
    assert_eq!(exact.len(), max);
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let request = expect_request(&mut conn, t0, &exact);
    assert_eq!(request.header("x-pad"), Some(pad.as_str()));

    // ...one byte more is not.
    let over = upgrade_request(&[&format!("X-Pad: {pad}a")]);
    assert_eq!(over.len(), max + 1);
    assert_refused(&over, 431, RequestError::TooLarge(max));
}

#[test]
fn head_that_never_ends_is_refused_as_soon_as_it_reaches_the_limit() {
    let config = Config {
        max_handshake_size: 300,
        ..Config::default()
    };
    let t0 = Instant::now();
    let mut conn = server(config, t0);
    let mut endless = b"GET /chat HTTP/1.1\r\nHost: example.com\r\nX-Pad: ".to_vec();
    endless.resize(300, b'a');
    let out = feed_chunked(&mut conn, t0, &endless[..299], 1);
    assert!(out.is_empty(), "refused early: {out:?}");
    let out = feed(&mut conn, t0, &endless[299..]);
    check_refusal(&mut conn, t0, &out, 431, &RequestError::TooLarge(300));
}

#[test]
fn more_than_max_headers_gets_431() {
    let max = Config::default().max_headers;
    let fill: Vec<String> = (0..max - UPGRADE_HEADERS.len())
        .map(|i| format!("X-H{i}: v"))
        .collect();
    let mut lines: Vec<&str> = fill.iter().map(String::as_str).collect();
    // Exactly max_headers is fine.
    let t0 = Instant::now();
    let request = expect_request(
        &mut server(Config::default(), t0),
        t0,
        &upgrade_request(&lines),
    );
    assert_eq!(request.headers.len(), max);
    // One more is refused.
    lines.push("X-One-Too-Many: v");
    assert_refused(
        &upgrade_request(&lines),
        431,
        RequestError::TooManyHeaders(max),
    );
}

#[test]
fn malformed_http_gets_400() {
    // A header line without a colon.
    let input = head(
        "GET /chat HTTP/1.1",
        &["Host example.com", "Upgrade: websocket"],
    );
    let response = assert_refused(
        &input,
        400,
        RequestError::Malformed("invalid header name".into()),
    );
    assert!(response.body_str().starts_with("malformed HTTP request: "));

    // Not HTTP at all.
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let out = feed(
        &mut conn,
        t0,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
    );
    let error = match out.events.last() {
        Some(Event::Closed(closed)) => match &closed.error {
            Some(Error::Request(error @ RequestError::Malformed(_))) => error.clone(),
            other => panic!("expected Malformed, got {other:?}"),
        },
        other => panic!("expected Closed, got {other:?}"),
    };
    check_refusal(&mut conn, t0, &out, 400, &error);
}

#[test]
fn non_get_upgrade_gets_400() {
    let lines = UPGRADE_HEADERS;
    let input = head("POST /chat HTTP/1.1", &lines);
    assert_refused(&input, 400, RequestError::MethodNotGet("POST".into()));
}

#[test]
fn http_10_upgrade_gets_400() {
    let input = head("GET /chat HTTP/1.0", &UPGRADE_HEADERS);
    assert_refused(&input, 400, RequestError::NotHttp11);
}

#[test]
fn missing_host_gets_400() {
    assert_refused(
        &upgrade_request_without("Host", &[]),
        400,
        RequestError::MissingHost,
    );
}

#[test]
fn duplicate_host_gets_400() {
    assert_refused(
        &upgrade_request(&["host: other.example"]),
        400,
        RequestError::DuplicateHeader("Host"),
    );
}

#[test]
fn missing_upgrade_header_gets_400() {
    assert_refused(
        &upgrade_request_without("Upgrade", &[]),
        400,
        RequestError::MissingUpgrade,
    );
}

#[test]
fn wrong_upgrade_token_gets_400() {
    assert_refused(
        &upgrade_request_without("Upgrade", &["Upgrade: h2c"]),
        400,
        RequestError::MissingUpgrade,
    );
}

#[test]
fn connection_without_upgrade_token_gets_400() {
    assert_refused(
        &upgrade_request_without("Connection", &["Connection: keep-alive"]),
        400,
        RequestError::MissingConnectionUpgrade,
    );
    assert_refused(
        &upgrade_request_without("Connection", &[]),
        400,
        RequestError::MissingConnectionUpgrade,
    );
}

#[test]
fn missing_version_gets_426_with_supported_version() {
    let response = assert_refused(
        &upgrade_request_without("Sec-WebSocket-Version", &[]),
        426,
        RequestError::UnsupportedVersion(None),
    );
    assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn version_8_gets_426_with_supported_version() {
    let response = assert_refused(
        &upgrade_request_without("Sec-WebSocket-Version", &["Sec-WebSocket-Version: 8"]),
        426,
        RequestError::UnsupportedVersion(Some("8".into())),
    );
    assert_eq!(response.header("Sec-WebSocket-Version"), Some("13"));
}

#[test]
fn missing_key_gets_400() {
    assert_refused(
        &upgrade_request_without("Sec-WebSocket-Key", &[]),
        400,
        RequestError::MissingKey,
    );
}

#[test]
fn key_that_is_not_base64_gets_400() {
    assert_refused(
        &upgrade_request_without(
            "Sec-WebSocket-Key",
            &["Sec-WebSocket-Key: not*base64*at*all!"],
        ),
        400,
        RequestError::InvalidKey,
    );
}

#[test]
fn key_that_is_not_16_bytes_gets_400() {
    for raw in [&[7u8; 15][..], &[7u8; 17][..], &[][..]] {
        let line = format!("Sec-WebSocket-Key: {}", BASE64.encode(raw));
        assert_refused(
            &upgrade_request_without("Sec-WebSocket-Key", &[&line]),
            400,
            RequestError::InvalidKey,
        );
    }
}

#[test]
fn duplicate_key_gets_400() {
    assert_refused(
        &upgrade_request(&["Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA=="]),
        400,
        RequestError::DuplicateHeader("Sec-WebSocket-Key"),
    );
}

#[test]
fn malformed_protocol_list_gets_400() {
    assert_refused(
        &upgrade_request(&["Sec-WebSocket-Protocol: chat, bad proto"]),
        400,
        RequestError::MalformedProtocols,
    );
    assert_refused(
        &upgrade_request(&["Sec-WebSocket-Protocol: chat/v1"]),
        400,
        RequestError::MalformedProtocols,
    );
}

#[test]
fn malformed_extension_list_gets_400() {
    assert_refused(
        &upgrade_request(&["Sec-WebSocket-Extensions: permessage-deflate, bad name"]),
        400,
        RequestError::MalformedExtensions("invalid extension name \"bad name\"".into()),
    );
    assert_refused(
        &upgrade_request(&["Sec-WebSocket-Extensions: permessage-deflate; =1"]),
        400,
        RequestError::MalformedExtensions(
            "invalid parameter name \"\" in permessage-deflate".into(),
        ),
    );
}

#[test]
fn upgrade_with_a_body_gets_400() {
    assert_refused(
        &upgrade_request(&["Content-Length: 5"]),
        400,
        RequestError::UnexpectedBody,
    );
    assert_refused(
        &upgrade_request(&["Transfer-Encoding: chunked"]),
        400,
        RequestError::UnexpectedBody,
    );
    // An explicit empty body is not a body.
    let t0 = Instant::now();
    expect_request(
        &mut server(Config::default(), t0),
        t0,
        &upgrade_request(&["Content-Length: 0"]),
    );
}

#[test]
fn handshake_timeout_gets_408() {
    let t0 = Instant::now();
    let timeout = Config::default().handshake_timeout;
    let mut conn = server(Config::default(), t0);
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + timeout));
    // Part of a request arrives; the deadline does not move.
    let request = upgrade_request(&[]);
    let out = feed(&mut conn, t0 + Duration::from_secs(1), &request[..20]);
    assert!(out.is_empty());
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + timeout));
    // An early call does nothing.
    conn.conn
        .handle_timeout(t0 + timeout - Duration::from_millis(1));
    assert!(drain(&mut conn).is_empty());
    assert_eq!(conn.conn.state(), State::Handshaking);
    conn.conn.handle_timeout(t0 + timeout);
    let out = drain(&mut conn);
    assert_eq!(out.events.len(), 1, "{:?}", out.events);
    check_refusal(&mut conn, t0 + timeout, &out, 408, &RequestError::Timeout);
}

#[test]
fn handshake_timeout_while_the_application_decides_gets_408() {
    let t0 = Instant::now();
    let timeout = Config::default().handshake_timeout;
    let mut conn = server(Config::default(), t0);
    expect_request(&mut conn, t0, &upgrade_request(&[]));
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + timeout));
    conn.conn.handle_timeout(t0 + timeout);
    let out = drain(&mut conn);
    assert_eq!(out.events.len(), 1, "{:?}", out.events);
    check_refusal(&mut conn, t0 + timeout, &out, 408, &RequestError::Timeout);
}

#[test]
fn early_data_up_to_the_limit_waits_for_accept() {
    let max = Config::default().max_handshake_size;
    // One binary frame that is exactly max bytes on the wire: 2 + 2 + 4 header bytes.
    let payload = vec![0xa5; max - 8];
    let frame = Frame::binary(payload.clone()).from_client().encode();
    assert_eq!(frame.len(), max);
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(
        &mut conn,
        t0,
        &concat(&[&upgrade_request(&[]), &frame[..100]]),
    );
    assert!(feed(&mut conn, t0, &frame[100..]).is_empty());
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let out = drain(&mut conn);
    assert_eq!(Http::parse(&out.wire).status(), 101);
    assert_eq!(
        out.events,
        vec![
            Event::Open(Handshake {
                protocol: None,
                headers: vec![]
            }),
            Event::Message(Message::binary(payload)),
        ]
    );
}

#[test]
fn too_much_early_data_in_the_request_input_gets_400() {
    let max = Config::default().max_handshake_size;
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let frame = Frame::binary(vec![0xa5; max - 8]).from_client().encode();
    let out = feed(
        &mut conn,
        t0,
        &concat(&[&upgrade_request(&[]), &frame, b"\x82"]),
    );
    check_refusal(&mut conn, t0, &out, 400, &RequestError::EarlyData(max));
}

#[test]
fn too_much_early_data_after_the_request_gets_400() {
    let max = Config::default().max_handshake_size;
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let request = expect_request(&mut conn, t0, &upgrade_request(&[]));
    assert_eq!(request.path, "/chat");
    let frame = Frame::binary(vec![0xa5; max - 8]).from_client().encode();
    assert!(feed(&mut conn, t0, &frame[..max / 2]).is_empty());
    assert!(feed(&mut conn, t0, &frame[max / 2..]).is_empty());
    let out = feed(&mut conn, t0, b"\x82");
    assert_eq!(out.events.len(), 1, "{:?}", out.events);
    check_refusal(&mut conn, t0, &out, 400, &RequestError::EarlyData(max));
}

// ---- server: requests that are accepted ----------------------------------

#[test]
fn request_split_one_byte_at_a_time_is_parsed_identically() {
    let input = upgrade_request(&[
        "Origin: https://example.com",
        "Sec-WebSocket-Protocol: chat.v1, chat.v2",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
    ]);
    let t0 = Instant::now();
    let mut whole = server(Config::default(), t0);
    let expected = expect_request(&mut whole, t0, &input);

    let mut split = server(Config::default(), t0);
    let last = input.len() - 1;
    let before = feed_chunked(&mut split, t0, &input[..last], 1);
    assert!(
        before.is_empty(),
        "output before the head was complete: {before:?}"
    );
    let got = expect_request(&mut split, t0, &input[last..]);
    assert_eq!(got, expected);

    let accept = Handshake {
        protocol: Some("chat.v2".into()),
        headers: vec![],
    };
    whole.conn.accept(t0, accept.clone()).unwrap();
    split.conn.accept(t0, accept).unwrap();
    assert_eq!(drain(&mut split).wire, drain(&mut whole).wire);
}

#[test]
fn request_with_bare_lf_line_endings_split_byte_by_byte() {
    let input = String::from_utf8(upgrade_request(&[]))
        .unwrap()
        .replace("\r\n", "\n");
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let last = input.len() - 1;
    assert!(feed_chunked(&mut conn, t0, &input.as_bytes()[..last], 1).is_empty());
    let request = expect_request(&mut conn, t0, &input.as_bytes()[last..]);
    assert_eq!(request.header("Sec-WebSocket-Key"), Some(KEY));
}

#[test]
fn tokens_and_header_names_are_case_insensitive() {
    let input = head(
        "GET /chat HTTP/1.1",
        &[
            "host: example.com",
            "upgrade: WebSocket",
            "connection: keep-alive, Upgrade",
            "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==",
            "sec-websocket-version: 13",
        ],
    );
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(&mut conn, t0, &input);
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let out = drain(&mut conn);
    let response = Http::parse(&out.wire);
    assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert!(
        matches!(out.events[..], [Event::Open(_)]),
        "{:?}",
        out.events
    );
}

#[test]
fn request_event_exposes_the_request() {
    let input = head(
        "GET /chat/room?id=7&x=y HTTP/1.1",
        &[
            "Host: example.com:8080",
            "Origin: https://example.com",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Protocol: chat.v2, chat.v1",
            "Sec-WebSocket-Protocol: superchat",
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; server_max_window_bits=10",
            "Sec-WebSocket-Extensions: x-custom; mode=\"fast\"",
            "X-Trace: abc",
        ],
    );
    let t0 = Instant::now();
    let request = expect_request(&mut server(Config::default(), t0), t0, &input);
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/chat/room");
    assert_eq!(request.query.as_deref(), Some("id=7&x=y"));
    assert_eq!(request.origin(), Some("https://example.com"));
    assert_eq!(request.header("x-trace"), Some("abc"));
    assert_eq!(request.header("host"), Some("example.com:8080"));
    assert_eq!(request.header("x-absent"), None);
    assert_eq!(
        request.headers,
        vec![
            Header::new("Host", "example.com:8080"),
            Header::new("Origin", "https://example.com"),
            Header::new("Upgrade", "websocket"),
            Header::new("Connection", "Upgrade"),
            Header::new("Sec-WebSocket-Key", KEY),
            Header::new("Sec-WebSocket-Version", "13"),
            Header::new("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
            Header::new("Sec-WebSocket-Protocol", "superchat"),
            Header::new(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
            ),
            Header::new("Sec-WebSocket-Extensions", "x-custom; mode=\"fast\""),
            Header::new("X-Trace", "abc"),
        ]
    );
    assert_eq!(request.protocols, ["chat.v2", "chat.v1", "superchat"]);
    assert_eq!(
        request.extensions,
        vec![
            Extension {
                name: "permessage-deflate".into(),
                params: vec![
                    ("client_max_window_bits".into(), None),
                    ("server_max_window_bits".into(), Some("10".into())),
                ],
            },
            Extension {
                name: "x-custom".into(),
                params: vec![("mode".into(), Some("fast".into()))],
            },
        ]
    );

    // Without the optional parts.
    let request = expect_request(
        &mut server(Config::default(), t0),
        t0,
        &upgrade_request(&[]),
    );
    assert_eq!(request.query, None);
    assert_eq!(request.origin(), None);
    assert!(request.protocols.is_empty());
    assert!(request.extensions.is_empty());
}

#[test]
fn accept_with_a_subprotocol_writes_the_101() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(
        &mut conn,
        t0,
        &upgrade_request(&["Sec-WebSocket-Protocol: chat.v2, chat.v1"]),
    );
    let accept = Handshake {
        protocol: Some("chat.v1".into()),
        headers: vec![Header::new("X-Session", "abc")],
    };
    conn.conn.accept(t0, accept).unwrap();
    let out = drain(&mut conn);
    let response = Http::parse(&out.wire);
    assert_eq!(response.start_line, "HTTP/1.1 101 Switching Protocols");
    assert_eq!(response.header("Upgrade"), Some("websocket"));
    assert_eq!(response.header("Connection"), Some("Upgrade"));
    assert_eq!(response.header("Sec-WebSocket-Accept"), Some(ACCEPT));
    assert_eq!(response.header("Sec-WebSocket-Protocol"), Some("chat.v1"));
    assert_eq!(response.header("X-Session"), Some("abc"));
    assert_eq!(response.header("Sec-WebSocket-Extensions"), None);
    assert_eq!(response.header("Content-Length"), None);
    assert!(
        response.body.is_empty(),
        "bytes after the 101: {:?}",
        response.body
    );
    assert_eq!(
        out.events,
        vec![Event::Open(Handshake {
            protocol: Some("chat.v1".into()),
            headers: vec![Header::new("X-Session", "abc")],
        })]
    );
    assert_eq!(conn.conn.state(), State::Open);
    // The handshake deadline is gone; the heartbeat's is next.
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    assert_eq!(
        conn.conn.accept(t0, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );
}

#[test]
fn accept_without_a_subprotocol_writes_none() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(
        &mut conn,
        t0,
        &upgrade_request(&["Sec-WebSocket-Protocol: chat.v2"]),
    );
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let response = Http::parse(&drain(&mut conn).wire);
    assert_eq!(response.status(), 101);
    assert_eq!(response.header("Sec-WebSocket-Protocol"), None);
}

#[test]
fn accept_with_a_protocol_not_offered_is_a_usage_error() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(
        &mut conn,
        t0,
        &upgrade_request(&["Sec-WebSocket-Protocol: chat.v2"]),
    );
    let accept = Handshake {
        protocol: Some("chat.v3".into()),
        headers: vec![],
    };
    assert_eq!(
        conn.conn.accept(t0, accept),
        Err(UsageError::ProtocolNotOffered("chat.v3".into()))
    );
    // Nothing changed: no output, and the request can still be answered.
    assert!(drain(&mut conn).is_empty());
    assert_eq!(conn.conn.state(), State::Handshaking);
    let no_offer = Handshake {
        protocol: Some("chat.v2".into()),
        headers: vec![],
    };
    conn.conn.accept(t0, no_offer).unwrap();
    assert_eq!(
        Http::parse(&drain(&mut conn).wire).header("Sec-WebSocket-Protocol"),
        Some("chat.v2")
    );

    // With no protocols offered at all, none can be chosen.
    let mut conn = server(Config::default(), t0);
    expect_request(&mut conn, t0, &upgrade_request(&[]));
    let accept = Handshake {
        protocol: Some("chat.v2".into()),
        headers: vec![],
    };
    assert_eq!(
        conn.conn.accept(t0, accept),
        Err(UsageError::ProtocolNotOffered("chat.v2".into()))
    );
}

#[test]
fn application_rejection_writes_the_response_then_closes() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(
        &mut conn,
        t0,
        &upgrade_request(&["Origin: https://evil.example"]),
    );
    conn.conn
        .respond(
            t0,
            Response::new(403, "nope").with_header("X-Reason", "origin"),
        )
        .unwrap();
    let out = drain(&mut conn);
    let response = Http::parse(&out.wire);
    assert_eq!(response.start_line, "HTTP/1.1 403 Forbidden");
    assert_eq!(response.body_str(), "nope");
    assert_eq!(response.header("Content-Length"), Some("4"));
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(response.header("X-Reason"), Some("origin"));
    assert_eq!(out.events, vec![abnormal(None)]);
    assert_eq!(conn.conn.state(), State::Closed);
    check_lingers(&conn, t0, &out);
    assert_eq!(
        conn.conn.respond(t0, Response::new(403, "again")),
        Err(UsageError::NoPendingRequest)
    );
}

#[test]
fn frames_in_the_same_input_as_the_request_are_not_lost() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    // Two whole frames and the start of a third follow the request.
    let partial = Frame::text("partial").from_client().encode();
    let input = concat(&[
        &upgrade_request(&[]),
        &Frame::text("hello").from_client().encode(),
        &Frame::binary([1, 2, 3]).from_client().encode(),
        &partial[..5],
    ]);
    expect_request(&mut conn, t0, &input);
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let out = drain(&mut conn);
    assert_eq!(Http::parse(&out.wire).status(), 101);
    assert_eq!(
        out.events,
        vec![
            Event::Open(Handshake {
                protocol: None,
                headers: vec![]
            }),
            Event::Message(Message::text("hello")),
            Event::Message(Message::binary(vec![1, 2, 3])),
        ]
    );
    let out = feed(&mut conn, t0, &partial[5..]);
    assert_eq!(out.events, vec![Event::Message(Message::text("partial"))]);
}

#[test]
fn a_bad_frame_in_the_early_data_fails_the_connection_after_the_101() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    // A server-style (unmasked) frame from the client.
    expect_request(
        &mut conn,
        t0,
        &concat(&[&upgrade_request(&[]), &Frame::text("hi").encode()]),
    );
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let out = drain(&mut conn);
    let error = ProtocolError::UnmaskedClientFrame;
    let reason = error.to_string();
    // The 101 goes out first, then the close frame with 1002 and the reason.
    let (response, frames) = split_head(&out.wire).expect("a response");
    assert_eq!(Http::parse(response).status(), 101);
    let mut close = vec![0x88, 2 + reason.len() as u8, 0x03, 0xea];
    close.extend_from_slice(reason.as_bytes());
    assert_eq!(frames, &close[..]);
    assert_eq!(
        out.events,
        vec![
            Event::Open(Handshake {
                protocol: None,
                headers: vec![]
            }),
            Event::Closed(Box::new(Closed {
                code: CloseCode::PROTOCOL_ERROR,
                reason,
                clean: false,
                error: Some(Error::Protocol(error)),
            })),
        ]
    );
}

#[test]
fn plain_http_request_is_answered_with_respond() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let out = feed(
        &mut conn,
        t0,
        &head(
            "GET /healthz?verbose HTTP/1.1",
            &["Host: example.com", "Accept: */*"],
        ),
    );
    assert!(out.wire.is_empty());
    let request = match <[Event; 1]>::try_from(out.events) {
        Ok([Event::HttpRequest(request)]) => request,
        other => panic!("expected one HttpRequest, got {other:?}"),
    };
    assert_eq!(request.method, "GET");
    assert_eq!(request.path, "/healthz");
    assert_eq!(request.query.as_deref(), Some("verbose"));
    assert_eq!(request.header("accept"), Some("*/*"));
    // It is not an upgrade: it cannot be accepted.
    assert_eq!(
        conn.conn.accept(t0, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );

    conn.conn.respond(t0, Response::new(200, "ok")).unwrap();
    let out = drain(&mut conn);
    let response = Http::parse(&out.wire);
    assert_eq!(response.start_line, "HTTP/1.1 200 OK");
    assert_eq!(response.header("Content-Length"), Some("2"));
    assert_eq!(response.header("Connection"), Some("close"));
    assert_eq!(response.body_str(), "ok");
    assert_eq!(out.events, vec![abnormal(None)]);
    check_lingers(&conn, t0, &out);
}

#[test]
fn accept_and_respond_without_a_pending_request_are_usage_errors() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    assert_eq!(
        conn.conn.accept(t0, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );
    assert_eq!(
        conn.conn.respond(t0, Response::new(404, "")),
        Err(UsageError::NoPendingRequest)
    );
    // Half a request is not a pending request either.
    feed(&mut conn, t0, &upgrade_request(&[])[..30]);
    assert_eq!(
        conn.conn.accept(t0, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );
    assert_eq!(
        conn.conn.respond(t0, Response::new(404, "")),
        Err(UsageError::NoPendingRequest)
    );
    assert!(drain(&mut conn).is_empty());
    assert_eq!(conn.conn.state(), State::Handshaking);

    // A client never has one.
    let mut client = Connection::client(
        ClientRequest::new("example.com", 80, "/"),
        Config::default(),
        1,
        t0,
    )
    .unwrap();
    assert_eq!(
        client.accept(t0, Handshake::default()),
        Err(UsageError::NoPendingRequest)
    );
    assert_eq!(
        client.respond(t0, Response::new(404, "")),
        Err(UsageError::NoPendingRequest)
    );
}

#[test]
fn header_injection_in_accept_or_response_is_a_usage_error() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    expect_request(&mut conn, t0, &upgrade_request(&[]));
    let bad_value = Handshake {
        protocol: None,
        headers: vec![Header::new("X-Bad", "a\r\nSet-Cookie: x=1")],
    };
    assert_eq!(
        conn.conn.accept(t0, bad_value),
        Err(UsageError::InvalidHeader("X-Bad".into()))
    );
    let bad_name = Handshake {
        protocol: None,
        headers: vec![Header::new("X Bad", "a")],
    };
    assert_eq!(
        conn.conn.accept(t0, bad_name),
        Err(UsageError::InvalidHeader("X Bad".into()))
    );
    let response = Response::new(403, "no").with_header("X-Bad", "a\r\n\r\n<html>");
    assert_eq!(
        conn.conn.respond(t0, response),
        Err(UsageError::InvalidHeader("X-Bad".into()))
    );
    let response = Response::new(403, "no").with_header("X-Bad", "a\nb");
    assert_eq!(
        conn.conn.respond(t0, response),
        Err(UsageError::InvalidHeader("X-Bad".into()))
    );
    assert_eq!(
        conn.conn.respond(t0, Response::new(101, "")),
        Err(UsageError::InvalidStatus(101))
    );
    // Nothing was written and the request can still be answered.
    assert!(drain(&mut conn).is_empty());
    assert_eq!(conn.conn.state(), State::Handshaking);
    conn.conn.accept(t0, Handshake::default()).unwrap();
    assert_eq!(Http::parse(&drain(&mut conn).wire).status(), 101);
}

// ---- client --------------------------------------------------------------

/// A client connection and the request bytes it wrote first.
fn client(request: ClientRequest, seed: u64, now: Instant) -> (Endpoint, Http) {
    let mut conn = Endpoint::new(
        Connection::client(request, Config::default(), seed, now).expect("valid request"),
    );
    let out = drain(&mut conn);
    assert!(out.events.is_empty(), "{:?}", out.events);
    let request = Http::parse(&out.wire);
    assert!(
        request.body.is_empty(),
        "bytes after the request head: {:?}",
        request.body
    );
    (conn, request)
}

/// The 101 response to a request with `key`, with `extra` header lines.
fn response_101(key: &str, extra: &[&str]) -> Vec<u8> {
    let accept = format!("Sec-WebSocket-Accept: {}", accept_key(key.as_bytes()));
    let mut lines = vec!["Upgrade: websocket", "Connection: Upgrade", accept.as_str()];
    lines.extend(extra);
    head("HTTP/1.1 101 Switching Protocols", &lines)
}

/// A client for `/chat` on example.com offering `chat.v2`, and its key.
fn chat_client(now: Instant) -> (Endpoint, String) {
    let (conn, request) = client(
        ClientRequest::new("example.com", 80, "/chat").protocol("chat.v2"),
        42,
        now,
    );
    let key = request.header("Sec-WebSocket-Key").expect("key").to_owned();
    (conn, key)
}

/// Feeds a response to a client and checks it failed with `expected`.
fn assert_client_fails(input: &[u8], expected: ResponseError) {
    let t0 = Instant::now();
    let (mut conn, _) = chat_client(t0);
    let out = feed(&mut conn, t0, input);
    assert_client_failed(&mut conn, &out, expected);
}

fn assert_client_failed(conn: &mut Endpoint, out: &Output, expected: ResponseError) {
    assert!(out.wire.is_empty(), "client wrote {:?}", out.wire);
    assert_eq!(out.events, vec![failed(Error::Response(expected))]);
    assert_eq!(conn.conn.state(), State::Closed);
    // Nothing to say to a server that answered wrongly: close at once.
    assert_eq!(out.transport, [TransportAction::Close]);
    assert_eq!(conn.conn.poll_timeout(), None);
}

#[test]
fn client_request_is_well_formed() {
    let t0 = Instant::now();
    let request = ClientRequest::new("example.com", 80, "/chat?room=1")
        .protocol("chat.v2")
        .protocol("chat.v1")
        .header("Authorization", "Bearer t0k3n");
    let (_, request) = client(request, 42, t0);
    assert_eq!(request.start_line, "GET /chat?room=1 HTTP/1.1");
    assert_eq!(request.header("Host"), Some("example.com"));
    assert_eq!(request.header("Upgrade"), Some("websocket"));
    assert_eq!(request.header("Connection"), Some("Upgrade"));
    assert_eq!(request.header("Sec-WebSocket-Version"), Some("13"));
    assert_eq!(
        request.header("Sec-WebSocket-Protocol"),
        Some("chat.v2, chat.v1")
    );
    assert_eq!(request.header("Authorization"), Some("Bearer t0k3n"));
    let key = request.header("Sec-WebSocket-Key").expect("key");
    assert_eq!(BASE64.decode(key).expect("base64 key").len(), 16);

    // No protocol header when none is offered.
    let (_, request) = client(ClientRequest::new("example.com", 80, "/"), 42, t0);
    assert_eq!(request.header("Sec-WebSocket-Protocol"), None);
}

#[test]
fn client_host_header_omits_only_the_default_port() {
    let t0 = Instant::now();
    let host = |request: ClientRequest| client(request, 1, t0).1.header("Host").map(str::to_owned);
    assert_eq!(
        host(ClientRequest::new("example.com", 80, "/")).as_deref(),
        Some("example.com")
    );
    assert_eq!(
        host(ClientRequest::new("example.com", 8080, "/")).as_deref(),
        Some("example.com:8080")
    );
    assert_eq!(
        host(ClientRequest::new("example.com", 443, "/")).as_deref(),
        Some("example.com:443")
    );
    assert_eq!(
        host(ClientRequest::new("example.com", 443, "/").secure(true)).as_deref(),
        Some("example.com")
    );
    assert_eq!(
        host(ClientRequest::new("example.com", 80, "/").secure(true)).as_deref(),
        Some("example.com:80")
    );
    assert_eq!(
        host(ClientRequest::new("10.0.0.1", 9001, "/")).as_deref(),
        Some("10.0.0.1:9001")
    );
}

#[test]
fn client_ipv6_host_is_bracketed() {
    let t0 = Instant::now();
    let host = |request: ClientRequest| client(request, 1, t0).1.header("Host").map(str::to_owned);
    assert_eq!(
        host(ClientRequest::new("::1", 9001, "/")).as_deref(),
        Some("[::1]:9001")
    );
    assert_eq!(
        host(ClientRequest::new("::1", 80, "/")).as_deref(),
        Some("[::1]")
    );
    assert_eq!(
        host(ClientRequest::new("[fe80::1]", 8080, "/")).as_deref(),
        Some("[fe80::1]:8080")
    );
}

#[test]
fn client_request_depends_only_on_the_seed() {
    let t0 = Instant::now();
    let bytes = |seed: u64| {
        let request = ClientRequest::new("example.com", 80, "/chat").protocol("chat.v2");
        let mut conn =
            Endpoint::new(Connection::client(request, Config::default(), seed, t0).unwrap());
        drain(&mut conn).wire
    };
    assert_eq!(bytes(7), bytes(7));
    let key = |seed: u64| {
        Http::parse(&bytes(seed))
            .header("Sec-WebSocket-Key")
            .unwrap()
            .to_owned()
    };
    assert_ne!(key(7), key(8));
    assert_eq!(BASE64.decode(key(0)).unwrap().len(), 16);
}

#[test]
fn client_opens_on_a_valid_101() {
    let t0 = Instant::now();
    let (mut conn, key) = chat_client(t0);
    assert_eq!(
        conn.conn.poll_timeout(),
        Some(t0 + Config::default().handshake_timeout)
    );
    let response = response_101(&key, &["Sec-WebSocket-Protocol: chat.v2", "X-Server: test"]);
    let out = feed(&mut conn, t0, &response);
    assert!(out.wire.is_empty());
    assert_eq!(
        out.events,
        vec![Event::Open(Handshake {
            protocol: Some("chat.v2".into()),
            headers: vec![
                Header::new("Upgrade", "websocket"),
                Header::new("Connection", "Upgrade"),
                Header::new("Sec-WebSocket-Accept", accept_key(key.as_bytes())),
                Header::new("Sec-WebSocket-Protocol", "chat.v2"),
                Header::new("X-Server", "test"),
            ],
        })]
    );
    assert_eq!(conn.conn.state(), State::Open);
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + Duration::from_secs(30)));
}

#[test]
fn client_opens_on_a_101_split_byte_by_byte_with_any_token_case() {
    let t0 = Instant::now();
    let (mut conn, key) = chat_client(t0);
    let accept = format!("sec-websocket-accept: {}", accept_key(key.as_bytes()));
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &[
            "upgrade: WebSocket",
            "connection: keep-alive, upgrade",
            &accept,
        ],
    );
    let last = response.len() - 1;
    assert!(feed_chunked(&mut conn, t0, &response[..last], 1).is_empty());
    let out = feed(&mut conn, t0, &response[last..]);
    assert!(
        matches!(
            &out.events[..],
            [Event::Open(Handshake { protocol: None, .. })]
        ),
        "{:?}",
        out.events
    );
}

#[test]
fn client_frames_after_the_101_are_not_lost() {
    let t0 = Instant::now();
    let (mut conn, key) = chat_client(t0);
    let input = concat(&[
        &response_101(&key, &[]),
        &Frame::text("welcome").encode(),
        &Frame::binary([9, 8, 7]).encode(),
    ]);
    let out = feed(&mut conn, t0, &input);
    assert!(out.wire.is_empty());
    assert_eq!(
        out.events,
        vec![
            Event::Open(Handshake {
                protocol: None,
                headers: vec![
                    Header::new("Upgrade", "websocket"),
                    Header::new("Connection", "Upgrade"),
                    Header::new("Sec-WebSocket-Accept", accept_key(key.as_bytes())),
                ],
            }),
            Event::Message(Message::text("welcome")),
            Event::Message(Message::binary(vec![9, 8, 7])),
        ]
    );
}

#[test]
fn client_rejection_with_a_body_in_several_chunks() {
    let t0 = Instant::now();
    let (mut conn, _) = chat_client(t0);
    let mut input = head(
        "HTTP/1.1 403 Forbidden",
        &[
            "Content-Type: text/plain",
            "Content-Length: 18",
            "X-Why: origin",
        ],
    );
    let head_len = input.len();
    input.extend_from_slice(b"origin not allowed");
    // The head in two pieces, then the body in three.
    let cuts = [0, head_len / 2, head_len + 3, head_len + 10, input.len()];
    for pair in cuts.windows(2).take(cuts.len() - 2) {
        let out = feed(&mut conn, t0, &input[pair[0]..pair[1]]);
        assert!(out.is_empty(), "finished early: {out:?}");
        assert_eq!(conn.conn.state(), State::Handshaking);
    }
    let out = feed(&mut conn, t0, &input[cuts[3]..]);
    let expected = ResponseError::Rejected {
        status: 403,
        reason: "Forbidden".into(),
        headers: vec![
            Header::new("Content-Type", "text/plain"),
            Header::new("Content-Length", "18"),
            Header::new("X-Why", "origin"),
        ],
        body: Bytes::from_static(b"origin not allowed"),
    };
    assert_client_failed(&mut conn, &out, expected);
}

#[test]
fn client_rejection_without_a_length_ends_at_eof() {
    let t0 = Instant::now();
    let (mut conn, _) = chat_client(t0);
    let response = head("HTTP/1.1 500 Internal Server Error", &["Server: test"]);
    assert!(feed(&mut conn, t0, &concat(&[&response, b"some"])).is_empty());
    assert!(feed(&mut conn, t0, b"thing broke").is_empty());
    assert_eq!(conn.conn.state(), State::Handshaking);
    conn.conn.handle_eof(t0);
    let out = drain(&mut conn);
    let expected = ResponseError::Rejected {
        status: 500,
        reason: "Internal Server Error".into(),
        headers: vec![Header::new("Server", "test")],
        body: Bytes::from_static(b"something broke"),
    };
    assert_client_failed(&mut conn, &out, expected);
}

#[test]
fn client_rejection_with_an_empty_body_ends_at_once() {
    let response = head("HTTP/1.1 404 Not Found", &["Content-Length: 0"]);
    assert_client_fails(
        &response,
        ResponseError::Rejected {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![Header::new("Content-Length", "0")],
            body: Bytes::new(),
        },
    );
}

#[test]
fn client_requires_upgrade_in_the_101() {
    let t0 = Instant::now();
    let (_, key) = chat_client(t0);
    let accept = format!("Sec-WebSocket-Accept: {}", accept_key(key.as_bytes()));
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &["Connection: Upgrade", &accept],
    );
    assert_client_fails(&response, ResponseError::MissingUpgrade);
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: h2c", "Connection: Upgrade", &accept],
    );
    assert_client_fails(&response, ResponseError::MissingUpgrade);
}

#[test]
fn client_requires_connection_upgrade_in_the_101() {
    let t0 = Instant::now();
    let (_, key) = chat_client(t0);
    let accept = format!("Sec-WebSocket-Accept: {}", accept_key(key.as_bytes()));
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: websocket", &accept],
    );
    assert_client_fails(&response, ResponseError::MissingConnectionUpgrade);
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: websocket", "Connection: keep-alive", &accept],
    );
    assert_client_fails(&response, ResponseError::MissingConnectionUpgrade);
}

#[test]
fn client_requires_the_right_accept() {
    // The accept of another key.
    let response = response_101(KEY, &[]);
    assert_client_fails(&response, ResponseError::BadAccept);
    // No accept at all.
    let response = head(
        "HTTP/1.1 101 Switching Protocols",
        &["Upgrade: websocket", "Connection: Upgrade"],
    );
    assert_client_fails(&response, ResponseError::BadAccept);
}

#[test]
fn client_refuses_a_subprotocol_it_did_not_offer() {
    let t0 = Instant::now();
    let (_, key) = chat_client(t0);
    let response = response_101(&key, &["Sec-WebSocket-Protocol: chat.v3"]);
    assert_client_fails(
        &response,
        ResponseError::UnexpectedProtocol("chat.v3".into()),
    );
}

#[test]
fn client_refuses_any_extension() {
    let t0 = Instant::now();
    let (_, key) = chat_client(t0);
    let response = response_101(
        &key,
        &["Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover"],
    );
    assert_client_fails(
        &response,
        ResponseError::UnexpectedExtension("permessage-deflate".into()),
    );
}

#[test]
fn client_refuses_a_response_head_over_the_limit() {
    let max = Config::default().max_handshake_size;
    let mut endless = b"HTTP/1.1 101 Switching Protocols\r\nX-Pad: ".to_vec();
    endless.resize(max, b'a');
    let t0 = Instant::now();
    let (mut conn, _) = chat_client(t0);
    assert!(feed(&mut conn, t0, &endless[..max - 1]).is_empty());
    let out = feed(&mut conn, t0, &endless[max - 1..]);
    assert_client_failed(&mut conn, &out, ResponseError::TooLarge);

    // Too many header lines count as too large too.
    let t0 = Instant::now();
    let (_, key) = chat_client(t0);
    let fill: Vec<String> = (0..Config::default().max_headers)
        .map(|i| format!("X-H{i}: v"))
        .collect();
    let lines: Vec<&str> = fill.iter().map(String::as_str).collect();
    assert_client_fails(&response_101(&key, &lines), ResponseError::TooLarge);
}

#[test]
fn client_eof_mid_response() {
    let t0 = Instant::now();
    let (mut conn, key) = chat_client(t0);
    let response = response_101(&key, &[]);
    assert!(feed(&mut conn, t0, &response[..response.len() - 2]).is_empty());
    conn.conn.handle_eof(t0);
    let out = drain(&mut conn);
    assert_client_failed(&mut conn, &out, ResponseError::Eof);
}

#[test]
fn client_handshake_timeout() {
    let t0 = Instant::now();
    let timeout = Config::default().handshake_timeout;
    let (mut conn, key) = chat_client(t0);
    let response = response_101(&key, &[]);
    assert!(feed(&mut conn, t0 + Duration::from_secs(1), &response[..10]).is_empty());
    assert_eq!(conn.conn.poll_timeout(), Some(t0 + timeout));
    conn.conn
        .handle_timeout(t0 + timeout - Duration::from_millis(1));
    assert!(drain(&mut conn).is_empty());
    conn.conn.handle_timeout(t0 + timeout);
    let out = drain(&mut conn);
    assert_client_failed(&mut conn, &out, ResponseError::Timeout);
    // The rest of the response changes nothing.
    assert!(feed(&mut conn, t0 + timeout, &response[10..]).is_empty());
}

#[test]
fn invalid_client_requests_are_usage_errors() {
    let t0 = Instant::now();
    let build =
        |request: ClientRequest| Connection::client(request, Config::default(), 1, t0).map(|_| ());
    let invalid =
        |result: Result<(), UsageError>| matches!(result, Err(UsageError::InvalidRequest(_)));
    assert!(
        invalid(build(ClientRequest::new("", 80, "/"))),
        "empty host"
    );
    assert!(
        invalid(build(ClientRequest::new("exa mple.com", 80, "/"))),
        "space in host"
    );
    assert!(
        invalid(build(ClientRequest::new("example.com", 80, "chat"))),
        "relative resource"
    );
    assert!(
        invalid(build(ClientRequest::new("example.com", 80, ""))),
        "empty resource"
    );
    assert!(
        invalid(build(ClientRequest::new("example.com", 80, "/a b"))),
        "space in resource"
    );
    assert!(
        invalid(build(
            ClientRequest::new("example.com", 80, "/").protocol("chat v2")
        )),
        "protocol with a space"
    );
    assert!(
        invalid(build(
            ClientRequest::new("example.com", 80, "/").protocol("")
        )),
        "empty protocol"
    );
    assert!(
        invalid(build(
            ClientRequest::new("example.com", 80, "/").protocol("a,b")
        )),
        "protocol with a comma"
    );
    assert_eq!(
        build(ClientRequest::new("example.com", 80, "/").header("X-Bad", "a\r\nb")),
        Err(UsageError::InvalidHeader("X-Bad".into()))
    );
}

// ---- header values that are not UTF-8 ------------------------------------

/// A valid upgrade request with one more header line of raw bytes.
fn upgrade_request_with_raw(line: &[u8]) -> Vec<u8> {
    let mut input = upgrade_request(&[]);
    input.truncate(input.len() - 2);
    input.extend_from_slice(line);
    input.extend_from_slice(b"\r\n\r\n");
    input
}

#[test]
fn protocol_header_that_is_not_utf8_gets_400() {
    // 0xff is not a token character, so this is not a list of tokens.
    let input = upgrade_request_with_raw(b"Sec-WebSocket-Protocol: ch\xffat");
    assert_refused(&input, 400, RequestError::MalformedProtocols);
}

#[test]
fn extension_header_that_is_not_utf8_gets_400() {
    let input = upgrade_request_with_raw(b"Sec-WebSocket-Extensions: permessage-deflate; x=\xff");
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    let out = feed(&mut conn, t0, &input);
    let error = match out.events.last() {
        Some(Event::Closed(closed)) => match &closed.error {
            Some(Error::Request(error @ RequestError::MalformedExtensions(_))) => error.clone(),
            other => panic!("expected MalformedExtensions, got {other:?}"),
        },
        other => panic!("expected Closed, got {other:?}"),
    };
    check_refusal(&mut conn, t0, &out, 400, &error);
}

#[test]
fn client_refuses_an_extension_header_that_is_not_utf8() {
    let t0 = Instant::now();
    let (mut conn, key) = chat_client(t0);
    let mut response = response_101(&key, &[]);
    response.truncate(response.len() - 2);
    response.extend_from_slice(b"Sec-WebSocket-Extensions: permessage-deflate; x=\xff\r\n\r\n");
    let out = feed(&mut conn, t0, &response);
    assert!(out.wire.is_empty());
    assert!(
        matches!(
            &out.events[..],
            [Event::Closed(closed)] if matches!(
                closed.error,
                Some(Error::Response(ResponseError::Malformed(_) | ResponseError::UnexpectedExtension(_)))
            )
        ),
        "the client opened with an extension it did not offer: {:?}",
        out.events
    );
    assert_eq!(conn.conn.state(), State::Closed);
}

#[test]
fn a_client_that_half_closes_after_a_plain_request_still_gets_the_answer() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    conn.conn
        .handle_input(t0, &head("GET /healthz HTTP/1.1", &["Host: example.com"]));
    conn.conn.handle_eof(t0);
    let out = drain(&mut conn);
    assert!(matches!(&out.events[..], [Event::HttpRequest(r)] if r.path == "/healthz"));
    conn.conn.respond(t0, Response::new(200, "ok")).unwrap();
    let out = drain(&mut conn);
    assert!(out.wire.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(out.events, vec![abnormal(None)]);
    // The client has closed its side already: nothing to wait for.
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn a_client_that_half_closes_after_an_upgrade_request_gets_the_101_then_eof() {
    let t0 = Instant::now();
    let mut conn = server(Config::default(), t0);
    conn.conn.handle_input(t0, &upgrade_request(&[]));
    conn.conn.handle_eof(t0);
    assert!(matches!(drain(&mut conn).events[..], [Event::Request(_)]));
    conn.conn.accept(t0, Handshake::default()).unwrap();
    let out = drain(&mut conn);
    assert!(out.wire.starts_with(b"HTTP/1.1 101 "));
    assert!(matches!(out.events[0], Event::Open(_)));
    assert_eq!(out.events[1..], [failed(Error::UnexpectedEof)]);
    assert_eq!(out.transport, [TransportAction::Close]);
}

#[test]
fn a_refusal_whose_body_stalls_is_reported_with_its_status_at_the_timeout() {
    let t0 = Instant::now();
    let (mut conn, _) = chat_client(t0);
    drain(&mut conn);
    let out = feed(
        &mut conn,
        t0,
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 10\r\n\r\nabc",
    );
    assert!(out.is_empty());
    conn.conn.handle_timeout(t0 + Duration::from_secs(10));
    let out = drain(&mut conn);
    let [Event::Closed(closed)] = &out.events[..] else {
        panic!("{:?}", out.events)
    };
    let Some(Error::Response(ResponseError::Rejected { status, body, .. })) = &closed.error else {
        panic!("{closed:?}")
    };
    assert_eq!((*status, &body[..]), (403, &b"abc"[..]));
}

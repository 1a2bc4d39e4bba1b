//! The client side: connect to a `ws://` URL, or over a stream you supply.

use std::future::poll_fn;

use sockeye_core::{ClientRequest, Config, Connection, Event};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::driver::Driver;
use crate::{Error, WebSocket};

/// Opens client connections: a URL plus subprotocols, headers and a config.
///
/// ```no_run
/// use sockeye_tokio::{Client, Message};
/// # async fn run() -> Result<(), sockeye_tokio::Error> {
/// let mut socket = Client::new("ws://127.0.0.1:9001/agent?session=42")
///     .protocol("agent.v1")
///     .header("Authorization", "Bearer t0k3n")
///     .connect()
///     .await?;
/// assert_eq!(socket.handshake().protocol.as_deref(), Some("agent.v1"));
/// socket.send(Message::text("hello")).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    url: String,
    protocols: Vec<String>,
    headers: Vec<(String, Vec<u8>)>,
    config: Config,
}

/// The parts of a `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    resource: String,
    secure: bool,
}

impl Client {
    /// A client for `url` (`ws://host[:port][/path][?query]`, or `wss://`
    /// with [`connect_on`](Self::connect_on) over a TLS stream).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocols: Vec::new(),
            headers: Vec::new(),
            config: Config::default(),
        }
    }

    /// Offers a subprotocol; offer them in order of preference.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Adds a header to the upgrade request.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the limits, timeouts, heartbeat and write high-water mark.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Connects over TCP (`ws://` only) and completes the handshake, both
    /// within [`Config::handshake_timeout`](sockeye_core::Config::handshake_timeout)
    /// (an `io::ErrorKind::TimedOut` error if the TCP connect takes longer).
    pub async fn connect(self) -> Result<WebSocket<TcpStream>, Error> {
        let target = self.target()?;
        if target.secure {
            return Err(self.url_error("wss:// needs a TLS stream: use connect_on"));
        }
        // The handshake timeout bounds the TCP connect too: an unreachable
        // host must not hang the caller for the kernel's minutes of SYN
        // retries.
        let timeout = self.config.handshake_timeout;
        let stream = tokio::time::timeout(
            timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TCP connection within the handshake timeout ({timeout:?})"),
            )
        })??;
        stream.set_nodelay(true)?;
        self.handshake(stream, target).await
    }

    /// Completes the handshake over a stream the caller connected (TLS, a
    /// proxy tunnel, an in-memory pipe).
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
    ) -> Result<WebSocket<S>, Error> {
        let target = self.target()?;
        self.handshake(stream, target).await
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
        target: Target,
    ) -> Result<WebSocket<S>, Error> {
        let mut request =
            ClientRequest::new(target.host, target.port, target.resource).secure(target.secure);
        for protocol in self.protocols {
            request = request.protocol(protocol);
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let conn = Connection::client(
            request,
            self.config,
            masking_seed()?,
            tokio::time::Instant::now().into_std(),
        )?;
        let mut driver = Driver::new(stream, conn);
        match poll_fn(|cx| driver.poll_handshake(cx)).await? {
            Event::Open(upgraded) => Ok(WebSocket::from_driver(driver, upgraded)),
            other => unreachable!("a client's first event is Open or Closed, not {other:?}"),
        }
    }

    fn url_error(&self, reason: &'static str) -> Error {
        Error::Url {
            url: self.url.clone(),
            reason,
        }
    }

    fn target(&self) -> Result<Target, Error> {
        let (secure, rest) = if let Some(rest) = self.url.strip_prefix("ws://") {
            (false, rest)
        } else if let Some(rest) = self.url.strip_prefix("wss://") {
            (true, rest)
        } else {
            return Err(self.url_error("the scheme must be ws:// or wss://"));
        };
        if rest.contains('#') {
            return Err(self.url_error("a WebSocket URL has no fragment"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        let resource = match resource {
            "" => "/".to_owned(),
            r if r.starts_with('?') => format!("/{r}"),
            r => r.to_owned(),
        };
        if authority.contains('@') {
            return Err(self.url_error("credentials in the URL are not supported; use a header"));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| self.url_error("unterminated IPv6 address"))?;
            match after {
                "" => (host, default_port),
                p => (host, self.parse_port(p.strip_prefix(':').unwrap_or("x"))?),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, self.parse_port(port)?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(self.url_error("the host is missing"));
        }
        Ok(Target {
            host: host.to_owned(),
            port,
            resource,
            secure,
        })
    }

    fn parse_port(&self, port: &str) -> Result<u16, Error> {
        port.parse()
            .map_err(|_| self.url_error("the port must be a number from 0 to 65535"))
    }
}

/// Connects to a `ws://` URL with the default config.
///
/// ```no_run
/// # async fn run() -> Result<(), sockeye_tokio::Error> {
/// let mut socket = sockeye_tokio::connect("ws://127.0.0.1:9001/").await?;
/// socket.send(sockeye_tokio::Message::text("hi")).await?;
/// let reply = socket.recv().await;
/// # Ok(()) }
/// ```
pub async fn connect(url: &str) -> Result<WebSocket<TcpStream>, Error> {
    Client::new(url).connect().await
}

/// The seed of a client's `Sec-WebSocket-Key` and masking keys. They must be
/// unpredictable to the page scripts masking defends against (RFC 6455
/// §10.3), so it comes from the OS.
pub(crate) fn masking_seed() -> Result<u64, Error> {
    getrandom::u64().map_err(|e| std::io::Error::other(e.to_string()).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, Error> {
        Client::new(url).target()
    }

    #[test]
    fn urls_parse_into_host_port_and_resource() {
        let t = target("ws://example.com:8080/chat?room=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.resource.as_str(), t.secure),
            ("example.com", 8080, "/chat?room=1", false)
        );
        let t = target("wss://example.com").unwrap();
        assert_eq!((t.port, t.resource.as_str(), t.secure), (443, "/", true));
        let t = target("ws://[::1]:9001?x=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.resource.as_str()),
            ("::1", 9001, "/?x=1")
        );
        assert_eq!(target("ws://[::1]").unwrap().port, 80);
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
        ] {
            match target(url) {
                Err(Error::Url { reason: got, .. }) => assert_eq!(got, reason, "{url}"),
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}

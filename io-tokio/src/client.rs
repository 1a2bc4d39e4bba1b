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

impl Client {
    /// A client for `url` (`ws://host[:port][/path][?query]`, or `wss://`
    /// with [`connect_on`](Self::connect_on) over a TLS stream). The URL is
    /// checked when connecting, by
    /// [`ClientRequest::from_url`](sockeye_core::ClientRequest::from_url).
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
        let request = ClientRequest::from_url(&self.url)?;
        if request.is_secure() {
            return Err(sockeye_core::UsageError::InvalidUrl {
                url: self.url,
                reason: "wss:// needs a TLS stream: use connect_on",
            }
            .into());
        }
        // The handshake timeout bounds the TCP connect too: an unreachable
        // host must not hang the caller for the kernel's minutes of SYN
        // retries.
        let timeout = self.config.handshake_timeout;
        let stream = tokio::time::timeout(
            timeout,
            TcpStream::connect((request.host(), request.port())),
        )
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no TCP connection within the handshake timeout ({timeout:?})"),
            )
        })??;
        stream.set_nodelay(true)?;
        self.handshake(stream, request).await
    }

    /// Completes the handshake over a stream the caller connected (TLS, a
    /// proxy tunnel, an in-memory pipe).
    pub async fn connect_on<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
    ) -> Result<WebSocket<S>, Error> {
        let request = ClientRequest::from_url(&self.url)?;
        self.handshake(stream, request).await
    }

    async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
        self,
        stream: S,
        mut request: ClientRequest,
    ) -> Result<WebSocket<S>, Error> {
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
/// §10.3), so it comes from the OS, as in every driver.
pub(crate) fn masking_seed() -> Result<u64, Error> {
    getrandom::u64().map_err(|e| std::io::Error::other(e.to_string()).into())
}

//! The server side: read a request, let the application answer it.

use std::future::poll_fn;

use sockeye_core::{Config, Connection, Event, Handshake, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::driver::Driver;
use crate::{Error, WebSocket};

/// A request read from a client, waiting for the application's answer.
///
/// The application can take its time (look up a session, check the origin)
/// and then [`accept`](Self::accept) or [`respond`](Self::respond). A plain
/// HTTP request (not an upgrade) comes out here too, so a server can answer
/// `/healthz` on the same port.
///
/// ```no_run
/// use sockeye_tokio::{Config, Handshake, Incoming, Response};
/// # async fn handle(stream: tokio::net::TcpStream) -> Result<(), sockeye_tokio::Error> {
/// let incoming = Incoming::read(stream, Config::default()).await?;
/// if !incoming.is_upgrade() {
///     return incoming.respond(Response::new(200, "ok")).await;
/// }
/// if incoming.request().origin() != Some("https://app.example.com") {
///     return incoming.respond(Response::new(403, "origin not allowed")).await;
/// }
/// let socket = incoming.accept(Handshake::default()).await?;
/// # let _ = socket; Ok(()) }
/// ```
pub struct Incoming<S> {
    driver: Driver<S>,
    request: Box<Request>,
    upgrade: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Incoming<S> {
    /// Reads and validates a request. An invalid upgrade request is answered
    /// by the core with the right status (400, 426, 431, or 408 when the
    /// handshake timeout passes) and comes back as
    /// [`Error::Connection`] carrying a [`RequestError`](sockeye_core::RequestError).
    pub async fn read(io: S, config: Config) -> Result<Self, Error> {
        let conn = Connection::server(config, tokio::time::Instant::now().into_std())?;
        let mut driver = Driver::new(io, conn);
        let (request, upgrade) = match poll_fn(|cx| driver.poll_handshake(cx)).await? {
            Event::Request(request) => (request, true),
            Event::HttpRequest(request) => (request, false),
            other => unreachable!("a server's first event is a request, not {other:?}"),
        };
        Ok(Self {
            driver,
            request,
            upgrade,
        })
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Whether it is a WebSocket upgrade (rather than plain HTTP).
    pub fn is_upgrade(&self) -> bool {
        self.upgrade
    }

    /// Accepts the upgrade: writes the 101 response and returns the socket.
    /// The heartbeat starts now.
    pub async fn accept(mut self, handshake: Handshake) -> Result<WebSocket<S>, Error> {
        let handshake = self.driver.accept(handshake)?;
        let mut socket = WebSocket::from_driver(self.driver, handshake);
        socket.flush().await?;
        Ok(socket)
    }

    /// Answers with a plain HTTP response (a refusal, or the answer to a
    /// plain request), writes it and winds the transport down as the core
    /// says: a half-close, then up to
    /// [`Config::close_timeout`](sockeye_core::Config::close_timeout) for
    /// the client to close its side.
    pub async fn respond(mut self, response: Response) -> Result<(), Error> {
        self.driver.respond(response)?;
        while let Some(result) = poll_fn(|cx| self.driver.poll_recv(cx)).await {
            result?;
        }
        Ok(())
    }
}

/// Accepts a WebSocket connection on `io` with the default config, for any path
/// and origin. A plain HTTP request gets
/// [`Response::upgrade_required`](sockeye_core::Response::upgrade_required)
/// and comes back as [`Error::Responded`].
///
/// ```no_run
/// # async fn run() -> Result<(), sockeye_tokio::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// loop {
///     let (stream, _) = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut socket = sockeye_tokio::accept(stream).await?;
///         while let Some(message) = socket.recv().await {
///             socket.send(message?).await?;
///         }
///         Ok::<_, sockeye_tokio::Error>(())
///     });
/// }
/// # }
/// ```
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(io: S) -> Result<WebSocket<S>, Error> {
    let incoming = Incoming::read(io, Config::default()).await?;
    if !incoming.is_upgrade() {
        let response = Response::upgrade_required();
        let status = response.status;
        incoming.respond(response).await?;
        return Err(Error::Responded { status });
    }
    incoming.accept(Handshake::default()).await
}

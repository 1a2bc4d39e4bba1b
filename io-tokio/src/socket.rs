//! [`WebSocket`], its split halves, and their `Stream`/`Sink` impls.

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use sockeye_core::{CloseCode, Closed, Config, Connection, Handshake, Message, Role};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;
use crate::client::masking_seed;
use crate::driver::Driver;

/// A WebSocket connection over any `AsyncRead + AsyncWrite` stream: a
/// `TcpStream`, a TLS stream, or an upgraded hyper connection.
///
/// The socket does its I/O when polled: keep a task calling
/// [`recv`](Self::recv) (or polling it as a [`Stream`]) so that pings are
/// answered, the heartbeat runs and the close handshake completes.
///
/// * [`recv`](Self::recv) is **cancel-safe**: if its future is dropped (in
///   `tokio::select!`, say), no bytes and no message are lost; the next call
///   picks up where it stopped.
/// * [`send`](Self::send) queues and writes; it waits while more than
///   [`Config::write_buffer_high_water`] bytes are queued.
///   [`feed`](Self::feed) queues without writing: the next `recv` that has
///   to wait for input, or [`flush`](Self::flush), writes everything queued
///   in as few writes as possible.
/// * [`split`](Self::split) gives halves for two tasks.
///
/// ```no_run
/// # async fn echo() -> Result<(), sockeye_tokio::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9001").await?;
/// let (stream, _) = listener.accept().await?;
/// let mut socket = sockeye_tokio::accept(stream).await?;
/// while let Some(message) = socket.recv().await {
///     socket.feed(message?).await?;
/// }
/// # Ok(()) }
/// ```
pub struct WebSocket<S> {
    driver: Driver<S>,
    handshake: Handshake,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocket<S> {
    pub(crate) fn from_driver(driver: Driver<S>, handshake: Handshake) -> Self {
        Self { driver, handshake }
    }

    /// A socket over a transport whose HTTP upgrade was done elsewhere: a
    /// hyper or axum upgraded connection, whose 101 response carried
    /// [`accept_key`](sockeye_core::accept_key) of the request's key.
    /// `handshake` records what that handshake agreed (the subprotocol, the
    /// response headers), for [`handshake`](Self::handshake).
    ///
    /// ```no_run
    /// use sockeye_tokio::{Config, Handshake, Role, WebSocket};
    /// # async fn run(upgraded_io: tokio::net::TcpStream) -> Result<(), sockeye_tokio::Error> {
    /// // With hyper: `hyper::upgrade::on(request).await?`, wrapped in
    /// // `hyper_util::rt::TokioIo`, after answering 101.
    /// let agreed = Handshake::default();
    /// let mut socket = WebSocket::from_upgraded(upgraded_io, Role::Server, agreed, Config::default())?;
    /// while let Some(message) = socket.recv().await {
    ///     socket.send(message?).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn from_upgraded(
        io: S,
        role: Role,
        handshake: Handshake,
        config: Config,
    ) -> Result<Self, Error> {
        let seed = match role {
            Role::Client => masking_seed()?,
            Role::Server => 0,
        };
        let now = tokio::time::Instant::now().into_std();
        let conn = Connection::upgraded(role, config, seed, now)?;
        Ok(Self::from_driver(Driver::new(io, conn), handshake))
    }

    /// The outcome of the handshake: the subprotocol in use and the headers
    /// of the 101 response.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The next message. `None` once the connection has closed cleanly
    /// (see [`closed`](Self::closed)); an error if it failed, then `None`.
    ///
    /// The end (`None` or the error) comes once the transport is done as
    /// the core winds it down: after our close frame or a failure's, the
    /// peer is given up to
    /// [`Config::close_timeout`](sockeye_core::Config::close_timeout) to
    /// close its side, and its input is read and dropped meanwhile, so that
    /// closing the socket does not reset the connection under the close
    /// frame.
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.driver.poll_recv(cx)).await
    }

    /// Queues a message and writes everything queued.
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message, waiting first if the write buffer is over its
    /// high-water mark. It is written by the next [`recv`](Self::recv) that
    /// waits for input, or by [`flush`](Self::flush) or
    /// [`send`](Self::send).
    ///
    /// Once the connection has closed, this fails with [`Error::Closed`],
    /// but only after the connection has finished as [`recv`](Self::recv)
    /// would finish it (our close frame written, the linger after a
    /// protocol error over): dropping the socket on that error is safe.
    /// `recv` tells how the connection ended.
    pub async fn feed(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.driver.poll_ready(cx)).await?;
        self.driver.start_send(message)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.driver.poll_flush(cx)).await
    }

    /// Sends a ping with up to 125 bytes of payload, and writes everything
    /// queued. The heartbeat pings on its own (see
    /// [`Config::ping_interval`](sockeye_core::Config::ping_interval)); this
    /// is for an application that wants to probe the peer itself. The pong
    /// counts as a sign of life; it is not returned by `recv`.
    ///
    /// ```no_run
    /// # async fn probe(socket: &mut sockeye_tokio::WebSocket<tokio::net::TcpStream>) -> Result<(), sockeye_tokio::Error> {
    /// socket.ping(bytes::Bytes::from_static(b"are you there?")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.driver.start_ping(payload)?;
        self.flush().await
    }

    /// Closes the connection: sends a close frame after what is queued, and
    /// waits for the close handshake to finish (messages that arrive
    /// meanwhile are dropped). Returns how it ended.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<Closed, Error> {
        poll_fn(|cx| self.driver.poll_close(cx, code, reason)).await
    }

    /// How the connection ended, once it has.
    pub fn closed(&self) -> Option<&Closed> {
        self.driver.closed()
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.driver.buffered()
    }

    /// The protocol state machine, for inspection.
    pub fn connection(&self) -> &Connection {
        self.driver.conn()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        self.driver.io()
    }

    /// Splits the socket into halves that can be used from two tasks. Either
    /// half alone keeps pings answered and notices a close; messages that
    /// arrive while only the write half is polled wait for the read half (up
    /// to 64 of them, then reading pauses).
    pub fn split(self) -> (ReadHalf<S>, WriteHalf<S>) {
        let shared = Arc::new(Shared {
            driver: Mutex::new(self.driver),
            wakers: Arc::new(HalfWakers::default()),
        });
        (
            ReadHalf {
                shared: shared.clone(),
            },
            WriteHalf { shared },
        )
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for WebSocket<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().driver.poll_recv(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WebSocket<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        self.get_mut().driver.start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().driver.poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut()
            .driver
            .poll_close(cx, CloseCode::NORMAL, "")
            .map_ok(drop)
    }
}

// ---- split halves ------------------------------------------------------

struct Shared<S> {
    driver: Mutex<Driver<S>>,
    wakers: Arc<HalfWakers>,
}

/// The transport keeps one waker per direction, and both halves read and
/// write (pongs go out from the read half; the write half reads ahead). So
/// the transport is polled with a waker that wakes both halves: no half can
/// be left asleep because the other registered last.
#[derive(Default)]
struct HalfWakers {
    read: Mutex<Option<Waker>>,
    write: Mutex<Option<Waker>>,
}

impl Wake for HalfWakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        for slot in [&self.read, &self.write] {
            if let Some(waker) = lock(slot).take() {
                waker.wake();
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves the driver consistent: every
    // method leaves it in a valid state between statements.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<S> Shared<S> {
    /// Runs `f` on the driver with a context whose waker wakes both halves,
    /// after registering this half's waker in `slot`.
    fn with<R>(
        &self,
        cx: &mut Context<'_>,
        read_side: bool,
        f: impl FnOnce(&mut Driver<S>, &mut Context<'_>) -> R,
    ) -> R {
        let slot = if read_side {
            &self.wakers.read
        } else {
            &self.wakers.write
        };
        {
            let mut slot = lock(slot);
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        let waker = Waker::from(self.wakers.clone());
        let mut both = Context::from_waker(&waker);
        f(&mut lock(&self.driver), &mut both)
    }
}

/// The receiving half of a [`WebSocket`]. `recv` is cancel-safe.
pub struct ReadHalf<S> {
    shared: Arc<Shared<S>>,
}

/// The sending half of a [`WebSocket`].
pub struct WriteHalf<S> {
    shared: Arc<Shared<S>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> ReadHalf<S> {
    /// The next message; see [`WebSocket::recv`].
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.shared.with(cx, true, Driver::poll_recv)).await
    }

    /// How the connection ended, once it has.
    pub fn closed(&self) -> Option<Closed> {
        lock(&self.shared.driver).closed().cloned()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WriteHalf<S> {
    /// Queues a message and writes everything queued; see
    /// [`WebSocket::send`].
    pub async fn send(&mut self, message: Message) -> Result<(), Error> {
        self.feed(message).await?;
        self.flush().await
    }

    /// Queues a message; see [`WebSocket::feed`].
    pub async fn feed(&mut self, message: Message) -> Result<(), Error> {
        poll_fn(|cx| self.poll_ready_inner(cx)).await?;
        lock(&self.shared.driver).start_send(message)
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), Error> {
        poll_fn(|cx| self.poll_flush_inner(cx)).await
    }

    /// Sends a ping and writes everything queued; see [`WebSocket::ping`].
    pub async fn ping(&mut self, payload: Bytes) -> Result<(), Error> {
        lock(&self.shared.driver).start_ping(payload)?;
        self.flush().await
    }

    /// Starts the close handshake and waits for it to finish; see
    /// [`WebSocket::close`]. Messages the read half has not taken are
    /// dropped.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> Result<Closed, Error> {
        poll_fn(|cx| {
            self.shared
                .with(cx, false, |d, cx| d.poll_close(cx, code, reason))
        })
        .await
    }

    fn poll_ready_inner(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.with(cx, false, |driver, cx| {
            driver.poll_read_ahead(cx);
            driver.poll_ready(cx)
        })
    }

    fn poll_flush_inner(&self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared.with(cx, false, |driver, cx| {
            // Write first: reading ahead may find the peer's close, and the
            // core drops queued messages once it replies to a close. What
            // the caller queued before flushing should not lose that race.
            let flushed = driver.poll_flush(cx);
            driver.poll_read_ahead(cx);
            flushed
        })
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for ReadHalf<S> {
    type Item = Result<Message, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared.with(cx, true, Driver::poll_recv)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Message> for WriteHalf<S> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_ready_inner(cx)
    }

    fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Error> {
        lock(&self.shared.driver).start_send(message)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_flush_inner(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.shared
            .with(cx, false, |d, cx| d.poll_close(cx, CloseCode::NORMAL, ""))
            .map_ok(drop)
    }
}

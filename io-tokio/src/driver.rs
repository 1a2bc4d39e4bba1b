//! The one place where bytes move between a transport and a
//! [`Connection`]: every socket type and half delegates here.
//!
//! Everything is poll-based and keeps no state across an `.await`, so every
//! future built on it is cancel-safe: bytes read are handed to the core at
//! once, and an event leaves the core only in the same `poll` that returns
//! it. The driver makes no protocol decision and has no teardown policy of
//! its own: it writes what the core offers, half-closes and closes when the
//! core says so, and reads (the core discards what arrives once the
//! connection is over) until then.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use sockeye_core::{
    CloseCode, Closed, Connection, Event, Handshake, Message, State, TransportAction, UsageError,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::Error;

/// Bytes read per call, into a buffer on the stack: the core copies what it
/// keeps, so an idle connection holds no read buffer at all. Large reads
/// move large messages faster (BENCHMARKS.md, "256 KiB reads"); they fit
/// easily in tokio's 2 MiB worker stacks (a runtime built with much smaller
/// `thread_stack_size` would need this lowered).
const READ_CHUNK: usize = 256 * 1024;
/// `IoSlice`s offered to the core per vectored write: a header and a
/// payload per frame.
const MAX_SLICES: usize = 64;
/// Messages the write side of a split socket reads ahead for the read side,
/// while it keeps pings answered on its own.
const READ_AHEAD: usize = 64;

pub(crate) struct Driver<S> {
    io: S,
    conn: Connection,
    /// The core's next deadline; allocated on first use.
    timer: Option<Pin<Box<Sleep>>>,
    /// Messages read by the write side of a split socket, for the read side.
    inbox: VecDeque<Message>,
    /// How the connection ended, once its `Closed` event came out.
    closed: Option<Box<Closed>>,
    /// The I/O error that ended the connection, until it is reported.
    io_error: Option<io::Error>,
    /// Whether the connection's error was returned already.
    error_reported: bool,
    /// The core asked for a half-close that `poll_shutdown` has not
    /// finished.
    shutting_down: bool,
    /// The write side is shut: the peer has our end of stream.
    write_shut: bool,
    /// The transport has no more to read: its end of stream, or an error.
    read_done: bool,
    /// The core said to close the transport: it is done.
    finished: bool,
    /// The application's close was handed to the core (once).
    close_requested: bool,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(crate) fn new(io: S, conn: Connection) -> Self {
        Self {
            io,
            conn,
            timer: None,
            inbox: VecDeque::new(),
            closed: None,
            io_error: None,
            error_reported: false,
            shutting_down: false,
            write_shut: false,
            read_done: false,
            finished: false,
            close_requested: false,
        }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    pub(crate) fn closed(&self) -> Option<&Closed> {
        self.closed.as_deref()
    }

    /// Bytes waiting to be written.
    pub(crate) fn buffered(&self) -> usize {
        self.conn.buffered_amount()
    }

    // ---- reading ------------------------------------------------------

    /// The next message, driving the connection until one arrives. `None`
    /// once the transport is done after a clean close; an error once, then
    /// `None`, after a failure.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if let Some(message) = self.inbox.pop_front().or_else(|| self.next_message()) {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.finished {
                return Poll::Ready(self.take_error().map(Err));
            }
            ready!(self.poll_step(cx));
        }
    }

    /// Drives the handshake until the core has something for the caller: a
    /// request (server) or the opened connection (client). A refused or
    /// failed handshake is written out, wound down and returned as an error.
    pub(crate) fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, Error>> {
        loop {
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Closed(closed) => self.closed = Some(closed),
                    Event::Drained => {}
                    other => return Poll::Ready(Ok(other)),
                }
            }
            if self.finished {
                return Poll::Ready(Err(self.take_error().unwrap_or(Error::Closed)));
            }
            ready!(self.poll_step(cx));
        }
    }

    /// Server: accepts the pending request and returns the handshake the
    /// core opened the connection with.
    pub(crate) fn accept(&mut self, handshake: Handshake) -> Result<Handshake, Error> {
        self.conn.accept(now(), handshake)?;
        match self.conn.poll_event() {
            Some(Event::Open(handshake)) => Ok(handshake),
            other => unreachable!("Open follows an accepted request, not {other:?}"),
        }
    }

    /// Server: answers the pending request with a plain HTTP response.
    pub(crate) fn respond(&mut self, response: sockeye_core::Response) -> Result<(), Error> {
        Ok(self.conn.respond(now(), response)?)
    }

    /// Takes events from the core up to the next message.
    fn next_message(&mut self) -> Option<Message> {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Message(message) => return Some(message),
                Event::Closed(closed) => {
                    tracing::debug!(code = %closed.code, clean = closed.clean, error = ?closed.error, "closed");
                    self.closed = Some(closed);
                }
                Event::Ping(payload) => tracing::trace!(len = payload.len(), "ping"),
                Event::CloseReceived(frame) => {
                    tracing::debug!(code = %frame.code, reason = %frame.reason, "close received")
                }
                Event::Open(_)
                | Event::Pong(_)
                | Event::Drained
                | Event::Request(_)
                | Event::HttpRequest(_) => {}
            }
        }
        None
    }

    /// One step of I/O, in the order of the core's contract: write what it
    /// offers (many replies go out in one write under load, and none waits
    /// when there is nothing else to do), carry out what it says of the
    /// transport, handle its deadline, read. `Ready` once something
    /// happened that may have brought events; `Pending` when waiting for
    /// the transport or the timer.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _ = self.poll_write_out(cx);
        if self.poll_transport(cx) || self.poll_timer(cx) {
            return Poll::Ready(());
        }
        self.poll_read_in(cx)
    }

    fn poll_read_in(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.read_done {
            // The writes and the timer are what is left to wait for.
            return Poll::Pending;
        }
        // A large frame's payload goes straight into the core's message
        // buffer; the rest through a buffer on the stack.
        let read = if let Some(room) = self.conn.payload_buffer() {
            let mut buf = ReadBuf::uninit(room);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)).map(|()| buf.filled().len())
        } else {
            let mut storage = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let len = self.conn.read_size(READ_CHUNK);
            let mut buf = ReadBuf::uninit(&mut storage[..len]);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                Ok(()) if !buf.filled().is_empty() => {
                    self.conn.handle_input(now(), buf.filled());
                    return Poll::Ready(());
                }
                other => other.map(|()| 0),
            }
        };
        match read {
            Ok(0) => {
                self.read_done = true;
                self.conn.handle_eof(now());
            }
            // SAFETY: `ReadBuf` counts as filled only bytes that were
            // written, and nothing touched the core since `payload_buffer`
            // (a pending read returned above).
            Ok(n) => unsafe { self.conn.handle_payload_read(now(), n) },
            Err(error) => {
                self.read_done = true;
                self.transport_failed(error);
            }
        }
        Poll::Ready(())
    }

    /// Re-arms the one timer at the core's deadline; handles it when due.
    /// Returns whether a timeout was handled.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.conn.poll_timeout() else {
            return false;
        };
        let deadline = Instant::from_std(deadline);
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_ready() {
            self.conn.handle_timeout(now());
            return true;
        }
        false
    }

    /// For the write side of a split socket: reads what has arrived, so that
    /// pings are answered and a close is noticed (and the transport wound
    /// down) even if nobody reads. Messages are kept for the read side, up
    /// to [`READ_AHEAD`].
    pub(crate) fn poll_read_ahead(&mut self, cx: &mut Context<'_>) {
        while !self.finished && self.inbox.len() < READ_AHEAD {
            if let Some(message) = self.next_message() {
                self.inbox.push_back(message);
                continue;
            }
            if self.finished || self.poll_step(cx).is_pending() {
                break;
            }
        }
    }

    // ---- writing ------------------------------------------------------

    /// Writes what the core offers until it offers nothing (`Ready`, after
    /// flushing the transport) or the transport is full (`Pending`), with
    /// vectored writes: frame headers and payloads are never copied
    /// together. A failure goes to the core, and counts as done.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let used = self.conn.poll_transmit(&mut slices);
            let written = if used == 0 {
                match ready!(Pin::new(&mut self.io).poll_flush(cx)) {
                    Ok(()) => return Poll::Ready(()),
                    Err(error) => Err(error),
                }
            } else {
                match ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..used])) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    other => other,
                }
            };
            match written {
                Ok(n) => self.conn.handle_written(now(), n),
                Err(error) => {
                    self.transport_failed(error);
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Carries out what the core says of the transport: a half-close
    /// (`poll_shutdown`, which a TLS stream needs polled to the end), or the
    /// end. Returns whether the transport is done.
    fn poll_transport(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.shutting_down {
                match Pin::new(&mut self.io).poll_shutdown(cx) {
                    Poll::Pending => return false,
                    Poll::Ready(result) => {
                        self.shutting_down = false;
                        self.write_shut = true;
                        if let Err(error) = result {
                            self.transport_failed(error);
                        }
                    }
                }
            }
            match self.conn.poll_transport() {
                Some(TransportAction::HalfClose) => self.shutting_down = true,
                Some(TransportAction::Close) => {
                    // The transport itself is only released when the socket
                    // is dropped, which the application may put off; a peer
                    // waiting for our end of stream gets it now. One try is
                    // all it gets: a close may follow a failure, and must
                    // not wait on a transport that has stopped moving.
                    if !self.write_shut {
                        self.write_shut = true;
                        let _ = Pin::new(&mut self.io).poll_shutdown(cx);
                    }
                    self.finished = true;
                    return true;
                }
                None => return false,
            }
        }
    }

    /// Waits until the bytes waiting are at or under the high-water mark.
    /// On a closed connection, finishes it first (the close frame written,
    /// the transport wound down as the core says), then reports
    /// [`Error::Closed`]: a caller that drops the socket on that error loses
    /// no close frame and resets no peer.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.closed.is_some() {
            while !self.finished {
                // Messages cannot come after `Closed`; input is discarded.
                ready!(self.poll_step(cx));
            }
            return Poll::Ready(Err(Error::Closed));
        }
        while self.conn.is_backpressured() {
            ready!(self.poll_write_out(cx));
            if let Some(error) = self.take_io_error() {
                return Poll::Ready(Err(error));
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Queues a message without writing it.
    pub(crate) fn start_send(&mut self, message: Message) -> Result<(), Error> {
        // The time of a send only restarts the idle timer: without one, the
        // latest time the core has seen will do, and saves a clock read per
        // message.
        let now = match self.conn.config().idle_timeout {
            Some(_) => now(),
            None => self.conn.now(),
        };
        self.queue(|conn| conn.send(now, message))
    }

    /// Queues a ping without writing it.
    pub(crate) fn start_ping(&mut self, payload: Bytes) -> Result<(), Error> {
        self.queue(|conn| conn.ping(now(), payload))
    }

    /// A call refused because the connection is closing reports
    /// [`Error::Closed`], just as one made after it closed.
    fn queue(
        &mut self,
        call: impl FnOnce(&mut Connection) -> Result<(), UsageError>,
    ) -> Result<(), Error> {
        if self.closed.is_some() {
            return Err(Error::Closed);
        }
        call(&mut self.conn).map_err(|e| match e {
            UsageError::Closing => Error::Closed,
            other => other.into(),
        })
    }

    /// Writes everything queued.
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        ready!(self.poll_write_out(cx));
        Poll::Ready(self.take_io_error().map_or(Ok(()), Err))
    }

    // ---- closing ------------------------------------------------------

    /// Starts the close handshake (once) and drives the connection until
    /// its transport is done, dropping messages that arrive meanwhile.
    pub(crate) fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        code: CloseCode,
        reason: &str,
    ) -> Poll<Result<Closed, Error>> {
        if !self.close_requested && self.closed.is_none() {
            self.close_requested = true;
            match self.conn.close(now(), code, reason) {
                Ok(()) | Err(UsageError::Closing) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
        loop {
            match ready!(self.poll_recv(cx)) {
                Some(Ok(_dropped)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => {
                    let closed = self.closed.as_deref().cloned();
                    return Poll::Ready(closed.ok_or(Error::Closed));
                }
            }
        }
    }

    /// The error that ended the connection, once: the I/O error itself if
    /// the transport failed, or the core's.
    fn take_error(&mut self) -> Option<Error> {
        if let Some(error) = self.take_io_error() {
            return Some(error);
        }
        if self.error_reported {
            return None;
        }
        self.error_reported = true;
        let error = self.closed.as_ref().and_then(|closed| closed.error.clone());
        error.map(Error::Connection)
    }

    fn take_io_error(&mut self) -> Option<Error> {
        let error = self.io_error.take()?;
        self.error_reported = true;
        Some(Error::Io(error))
    }

    /// Tells the core the transport failed. The error is the caller's to
    /// see only if it ended the connection: once the connection is over, a
    /// failed write means the peer is gone, which is where the teardown was
    /// heading anyway.
    fn transport_failed(&mut self, error: io::Error) {
        tracing::debug!(%error, "transport failed");
        let ends_it = self.conn.state() != State::Closed;
        self.conn.handle_transport_error(now(), &error);
        if ends_it {
            self.io_error = Some(error);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use futures_core::Stream;
    use futures_sink::Sink;
    use sockeye_core::testing::Frame;
    use sockeye_core::{Config, ProtocolError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::{Incoming, WebSocket};

    /// Runs `serve` on the server's socket (messages up to 1024 bytes) while
    /// the client sends a message over the limit in 512-byte fragments, the
    /// last ones after the server has failed the connection. A peer still
    /// sending must not be reset (a reset can destroy the 1009 close frame on
    /// its side): the server reads and drops input until the client closes.
    /// Returns what `serve` returned.
    async fn fail_while_the_peer_sends<F>(
        serve: impl FnOnce(WebSocket<TcpStream>) -> F + Send + 'static,
    ) -> F::Output
    where
        F: Future + Send,
        F::Output: Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let config = Config {
                max_message_size: 1024,
                ..Config::default()
            };
            let incoming = Incoming::read(stream, config).await.unwrap();
            serve(incoming.accept(Handshake::default()).await.unwrap()).await
        });

        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(client.read_u8().await.unwrap());
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));

        // 512-byte fragments: the third takes the message over 1024.
        for opcode in [2, 0, 0] {
            client
                .write_all(
                    &Frame::new(opcode, [0; 512])
                        .fin(false)
                        .from_client()
                        .encode(),
                )
                .await
                .unwrap();
        }
        // The server has failed the connection by now. Without lingering, its
        // socket is closed: the next write draws a reset and the one after
        // fails with EPIPE/ECONNRESET.
        for fin in [false, true] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client
                .write_all(
                    &Frame::continuation([0; 512])
                        .fin(fin)
                        .from_client()
                        .encode(),
                )
                .await
                .expect("the server still reads after failing the connection");
        }
        assert!(!server.is_finished(), "the server reported before our EOF");

        // Our close frame is there, then the server's FIN.
        let mut close = Vec::new();
        client.read_to_end(&mut close).await.unwrap();
        assert_eq!(&close[..4], &[0x88, close[1], 0x03, 0xf1], "close 1009");
        client.shutdown().await.unwrap();
        server.await.unwrap()
    }

    #[tokio::test]
    async fn a_failed_connection_lingers_until_the_peer_closes() {
        match fail_while_the_peer_sends(|mut socket| async move { socket.recv().await }).await {
            Some(Err(Error::Connection(sockeye_core::Error::Protocol(
                ProtocolError::MessageTooLarge { max: 1024, .. },
            )))) => {}
            other => panic!("expected MessageTooLarge, got {other:?}"),
        }
    }

    /// A loop that asks whether it may send before it takes the next message
    /// (as an echo loop over `Sink` and `Stream` does) sees `Closed` from the
    /// sink only once the connection has finished: dropping the socket then
    /// resets nobody.
    #[tokio::test]
    async fn a_closed_sink_finishes_the_connection_before_it_reports() {
        let ended = fail_while_the_peer_sends(|mut socket| async move {
            poll_fn(|cx| {
                loop {
                    if let Err(error) = ready!(Pin::new(&mut socket).poll_ready(cx)) {
                        return Poll::Ready(error);
                    }
                    match ready!(Pin::new(&mut socket).poll_next(cx)) {
                        Some(Ok(message)) => Pin::new(&mut socket).start_send(message).unwrap(),
                        Some(Err(error)) => return Poll::Ready(error),
                        None => panic!("the stream ended before the sink"),
                    }
                }
            })
            .await
        })
        .await;
        assert!(matches!(ended, Error::Closed), "{ended:?}");
    }
}

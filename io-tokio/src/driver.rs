//! The one place where bytes move between a transport and a
//! [`Connection`]: every socket type and half delegates here.
//!
//! Everything is poll-based and keeps no state across an `.await`, so every
//! future built on it is cancel-safe: bytes read are handed to the core at
//! once, and an event leaves the core only in the same `poll` that returns
//! it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use sockeye_core::{CloseCode, Closed, Connection, Event, Message, TransmitQueue, UsageError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::Error;

/// Bytes read per call, into a buffer on the stack: the core copies what it
/// keeps, so an idle connection holds no read buffer at all. 256 KiB reads
/// moved large messages 10-20 % faster than 64 KiB in wsbench; they fit
/// easily in tokio's 2 MiB worker stacks (a runtime built with much smaller
/// `thread_stack_size` would need this lowered).
const READ_CHUNK: usize = 256 * 1024;
/// Most `IoSlice`s per vectored write: a header and a payload per frame.
const MAX_SLICES: usize = 64;
/// Messages the write side of a split socket reads ahead for the read side,
/// while it keeps pings answered on its own.
const READ_AHEAD: usize = 64;

pub(crate) struct Driver<S> {
    io: S,
    conn: Connection,
    /// Transmits taken from the core and not yet fully written.
    out: TransmitQueue,
    high_water: usize,
    /// The core's next deadline; allocated on first use.
    timer: Option<Pin<Box<Sleep>>>,
    /// Messages read by the write side of a split socket, for the read side.
    inbox: VecDeque<Message>,
    closed: Option<Box<Closed>>,
    /// Whether the error in `closed` (or an I/O error) was returned already.
    error_reported: bool,
    shut_down: bool,
    close_requested: bool,
    /// How long to keep reading after failing the connection; see
    /// [`poll_linger`](Self::poll_linger).
    linger: Duration,
    /// Until when to read and drop input, once lingering has started.
    linger_until: Option<Instant>,
}

fn now() -> std::time::Instant {
    Instant::now().into_std()
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<S> {
    pub(crate) fn new(io: S, conn: Connection) -> Self {
        let config = conn.config();
        Self {
            high_water: config.write_buffer_high_water,
            linger: config.close_timeout,
            io,
            conn,
            out: TransmitQueue::default(),
            timer: None,
            inbox: VecDeque::new(),
            closed: None,
            error_reported: false,
            shut_down: false,
            close_requested: false,
            linger_until: None,
        }
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    pub(crate) fn io(&self) -> &S {
        &self.io
    }

    pub(crate) fn closed(&self) -> Option<&Closed> {
        self.closed.as_deref()
    }

    /// Bytes waiting to be written, in the core and here.
    pub(crate) fn buffered(&self) -> usize {
        self.out.remaining() + self.conn.buffered_amount()
    }

    // ---- reading ------------------------------------------------------

    /// The next message, driving the connection until one arrives. `None`
    /// after a clean close; an error once, then `None`, after a failure.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if let Some(message) = self.inbox.pop_front().or_else(|| self.next_message()) {
                return Poll::Ready(Some(Ok(message)));
            }
            if self.closed.is_some() {
                return self.poll_finish(cx).map(|error| error.map(Err));
            }
            // Write what reacting to earlier input queued before waiting for
            // more: many replies go out in one write under load, and none
            // waits when there is nothing else to do.
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Some(Err(self.io_failed(e))));
            }
            if self.poll_timer(cx) {
                continue;
            }
            match self.poll_read_in(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.io_failed(e)))),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Drives the handshake until the core has something for the caller: a
    /// request (server) or the opened connection (client). A refused or
    /// failed handshake is written out, shut down and returned as an error.
    pub(crate) fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<Result<Event, Error>> {
        loop {
            while let Some(event) = self.conn.poll_event() {
                match event {
                    Event::Closed(closed) => self.closed = Some(closed),
                    other => return Poll::Ready(Ok(other)),
                }
            }
            if self.closed.is_some() {
                let error = ready!(self.poll_finish(cx));
                return Poll::Ready(Err(error.unwrap_or(Error::Closed)));
            }
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(self.io_failed(e)));
            }
            if self.poll_timer(cx) {
                continue;
            }
            match self.poll_read_in(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(self.io_failed(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
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
                Event::Open(_) | Event::Pong(_) | Event::Request(_) | Event::HttpRequest(_) => {}
            }
        }
        None
    }

    fn poll_read_in(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A large frame's payload goes straight into the core's message
        // buffer; the rest through a buffer on the stack.
        if let Some(room) = self.conn.payload_buffer() {
            let mut buf = ReadBuf::uninit(room);
            ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
            match buf.filled().len() {
                0 => self.conn.handle_eof(now()),
                // SAFETY: `ReadBuf` counts as filled only bytes that were
                // written, and nothing touched the core since
                // `payload_buffer` (a pending read returned above).
                n => unsafe { self.conn.handle_payload_read(now(), n) },
            }
            return Poll::Ready(Ok(()));
        }
        let mut storage = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let len = self.conn.read_size(READ_CHUNK);
        let mut buf = ReadBuf::uninit(&mut storage[..len]);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        match buf.filled() {
            [] => self.conn.handle_eof(now()),
            data => self.conn.handle_input(now(), data),
        }
        Poll::Ready(Ok(()))
    }

    /// Re-arms the one timer at the core's deadline; handles it when due.
    /// Returns whether a timeout was handled.
    fn poll_timer(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.conn.poll_timeout() else {
            return false;
        };
        if self.poll_sleep(cx, Instant::from_std(deadline)).is_ready() {
            self.conn.handle_timeout(now());
            return true;
        }
        false
    }

    /// Polls the connection's one timer, moved to `deadline` if needed.
    fn poll_sleep(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    }

    /// For the write side of a split socket: reads what has arrived, so that
    /// pings are answered and a close is noticed even if nobody reads.
    /// Messages are kept for the read side, up to [`READ_AHEAD`].
    pub(crate) fn poll_read_ahead(&mut self, cx: &mut Context<'_>) {
        while self.closed.is_none() && self.inbox.len() < READ_AHEAD {
            if let Some(message) = self.next_message() {
                self.inbox.push_back(message);
                continue;
            }
            if self.closed.is_some() || self.poll_timer(cx) {
                continue;
            }
            match self.poll_read_in(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) | Poll::Pending => break,
            }
        }
        if self.closed.is_some() {
            // Finish here too: a peer waiting for the transport to close (a
            // client, after the close handshake with our server) must not
            // wait until the read half is polled. The connection's error is
            // left for the read half to report (a failed write here only
            // means the peer is gone already).
            let _ = self.poll_shut_down(cx);
        } else {
            let _ = self.poll_write_out(cx);
        }
    }

    // ---- writing ------------------------------------------------------

    /// Takes what the core has to send and writes as much as the transport
    /// accepts, with vectored writes: frame headers and payloads are never
    /// copied together.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while let Some(transmit) = self.conn.poll_transmit() {
                self.out.push(transmit);
            }
            if self.out.is_empty() {
                return Pin::new(&mut self.io).poll_flush(cx);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let used = self.out.chunks_vectored(&mut slices);
            let written = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..used]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.advance(written);
        }
    }

    /// Waits until the queued bytes are under the high-water mark. On a
    /// closed connection, finishes it first (the close frame written, the
    /// transport shut down, the linger after a protocol error over), then
    /// reports [`Error::Closed`]: a caller that drops the socket on that
    /// error loses no close frame and resets no peer.
    pub(crate) fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.closed.is_some() {
            // A write error here means the peer is gone; the read side
            // reports it.
            let _ = ready!(self.poll_shut_down(cx));
            return Poll::Ready(Err(Error::Closed));
        }
        while self.buffered() > self.high_water {
            if let Err(e) = ready!(self.poll_write_out(cx)) {
                return Poll::Ready(Err(self.io_failed(e)));
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
        self.queue(|conn| conn.ping(payload))
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
        match ready!(self.poll_write_out(cx)) {
            Ok(()) => Poll::Ready(Ok(())),
            Err(e) => Poll::Ready(Err(self.io_failed(e))),
        }
    }

    // ---- closing ------------------------------------------------------

    /// Starts the close handshake (once) and drives the connection until it
    /// ends, dropping messages that arrive meanwhile.
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

    /// After [`Event::Closed`]: writes what is left, shuts the transport down,
    /// and returns the connection's error, once.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Option<Error>> {
        if let Err(e) = ready!(self.poll_shut_down(cx)) {
            return Poll::Ready(Some(self.io_failed(e)));
        }
        if self.error_reported {
            return Poll::Ready(None);
        }
        self.error_reported = true;
        let error = self.closed.as_ref().and_then(|closed| closed.error.clone());
        Poll::Ready(error.map(Error::Connection))
    }

    /// After [`Event::Closed`]: writes what is left, shuts the transport down
    /// and lingers after a protocol error, once. For [`poll_finish`](Self::poll_finish),
    /// and for the write side of a split socket, which must finish the
    /// connection without the read side. Returns a write error.
    fn poll_shut_down(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.shut_down {
            if let Err(e) = ready!(self.poll_write_out(cx)) {
                self.shut_down = true;
                return Poll::Ready(Err(e));
            }
            // Errors here mean the peer is already gone, which is the goal.
            let _ = ready!(Pin::new(&mut self.io).poll_shutdown(cx));
            self.shut_down = true;
            if let Some(Closed {
                error: Some(sockeye_core::Error::Protocol(_)),
                ..
            }) = self.closed.as_deref()
            {
                self.linger_until = Some(Instant::now() + self.linger);
            }
        }
        if let Some(deadline) = self.linger_until {
            ready!(self.poll_linger(cx, deadline));
            self.linger_until = None;
        }
        Poll::Ready(Ok(()))
    }

    /// After failing the connection for a protocol error, the peer may still
    /// be sending (the rest of a message over the limit, say). Closing the
    /// socket with input unread, or with more arriving, makes the kernel
    /// send a TCP reset, and a reset can destroy our close frame in the
    /// peer's receive buffer: the peer would never learn the close code. So
    /// read and drop input until the peer closes its side (it does once it
    /// has our close frame and our FIN), an error, or `deadline`
    /// ([`Config::close_timeout`] after the shutdown): a lingering close.
    fn poll_linger(&mut self, cx: &mut Context<'_>, deadline: Instant) -> Poll<()> {
        if self.poll_sleep(cx, deadline).is_ready() {
            return Poll::Ready(());
        }
        let mut storage = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        loop {
            let mut buf = ReadBuf::uninit(&mut storage);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                // A peer that keeps sending is cut off at the deadline.
                Ok(()) if !buf.filled().is_empty() && Instant::now() < deadline => {}
                _ => return Poll::Ready(()),
            }
        }
    }

    /// An I/O failure ends the connection: it is reported once.
    fn io_failed(&mut self, error: io::Error) -> Error {
        tracing::debug!(%error, "transport failed");
        self.error_reported = true;
        self.shut_down = true;
        self.closed.get_or_insert_with(|| {
            Box::new(Closed {
                code: CloseCode::ABNORMAL,
                reason: String::new(),
                clean: false,
                error: None,
            })
        });
        Error::Io(error)
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use futures_core::Stream;
    use futures_sink::Sink;
    use sockeye_core::{Accept, Config, ProtocolError};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::{Incoming, WebSocket};

    /// A masked client frame with a zero mask key (the payload goes as is).
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![u8::from(fin) << 7 | opcode];
        match u16::try_from(payload.len()) {
            Ok(len) if len < 126 => frame.push(0x80 | len as u8),
            Ok(len) => {
                frame.push(0x80 | 126);
                frame.extend(len.to_be_bytes());
            }
            Err(_) => unreachable!("test frames are small"),
        }
        frame.extend([0; 4]);
        frame.extend(payload);
        frame
    }

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
            serve(incoming.accept(Accept::default()).await.unwrap()).await
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
                .write_all(&frame(opcode, false, &[0; 512]))
                .await
                .unwrap();
        }
        // The server has failed the connection by now. Without lingering, its
        // socket is closed: the next write draws a reset and the one after
        // fails with EPIPE/ECONNRESET.
        for fin in [false, true] {
            tokio::time::sleep(Duration::from_millis(50)).await;
            client
                .write_all(&frame(0, fin, &[0; 512]))
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

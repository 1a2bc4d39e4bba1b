//! Echo mode (`--mode echo`): every message goes back to its sender, one
//! turn of [`ECHO_TURN`] bytes per poll so that connections take turns.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use futures_core::Stream;
use futures_sink::Sink;
use sockeye_tokio::{Error, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

/// How an echo loop ended.
pub(crate) enum Ended {
    /// The connection closed: cleanly (`None`) or not.
    Closed(Option<Error>),
    /// The server is shutting down; the connection is still open.
    ShuttingDown,
}

/// Bytes one connection echoes in one poll before it lets its worker run
/// the other connections. Without a turn, a peer that keeps large messages
/// coming holds the worker while the others wait, for as long as its input
/// lasts. Taking turns bounds that wait and keeps each connection's data
/// flowing, which also moves more in all (measurements: BENCHMARKS.md,
/// "1 MiB: taking turns").
const ECHO_TURN: usize = 1024 * 1024;

/// Sends every message back until the connection closes or the server shuts
/// down. One poll echoes all the messages that one read brought (up to
/// [`ECHO_TURN`]), through the `Stream` and `Sink` halves of the socket: no
/// future is built per message. The shutdown signal is looked at only when
/// the socket has to wait (no message ready, or a send held back by the
/// high-water mark), and its one waiter lives as long as the loop.
pub(crate) async fn echo<S>(
    socket: &mut WebSocket<S>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shutting_down = shutdown.changed();
    tokio::pin!(shutting_down);
    poll_fn(|cx| {
        let mut echoed = 0;
        loop {
            if echoed >= ECHO_TURN {
                // The replies queued so far go out at the start of the next
                // turn, which this wake asks for.
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Once the connection has closed, sends fail with `Closed`, and
            // the stream says how it ended.
            let next = match Pin::new(&mut *socket).poll_ready(cx) {
                Poll::Ready(Ok(()) | Err(Error::Closed)) => Pin::new(&mut *socket).poll_next(cx),
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error))),
                Poll::Pending => Poll::Pending,
            };
            match next {
                Poll::Ready(Some(Ok(message))) => {
                    echoed += message.len();
                    match Pin::new(&mut *socket).start_send(message) {
                        Ok(()) | Err(Error::Closed) => {}
                        Err(error) => return Poll::Ready(Ended::Closed(Some(error))),
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Ended::Closed(Some(error))),
                Poll::Ready(None) => return Poll::Ready(Ended::Closed(None)),
                Poll::Pending => {
                    return shutting_down.as_mut().poll(cx).map(|_| Ended::ShuttingDown);
                }
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Wake, Waker};

    use futures_util::FutureExt;
    use sockeye_tokio::{Config, Handshake, Role};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// With more messages waiting than a turn's worth, one poll of the echo
    /// loop ends early, already woken for its next turn, and later turns echo
    /// the rest.
    #[tokio::test]
    async fn an_echo_loop_gives_up_its_turn_after_a_turn_of_messages() {
        let (mut peer, io) = tokio::io::duplex(16 << 20);
        let mut socket =
            WebSocket::from_upgraded(io, Role::Server, Handshake::default(), Config::default())
                .expect("a server socket");
        // Four masked binary messages of 512 KiB (mask key 0): two turns.
        let payload = 512 * 1024;
        let mut frame = vec![0x82, 0x80 | 127];
        frame.extend((payload as u64).to_be_bytes());
        frame.extend([0; 4]);
        frame.resize(frame.len() + payload, 7);
        for _ in 0..4 {
            peer.write_all(&frame).await.unwrap();
        }

        let (_stop, mut shutdown) = watch::channel(false);
        let mut echoing = std::pin::pin!(echo(&mut socket, &mut shutdown));
        let flag = Arc::new(Flag::default());
        let waker = Waker::from(flag.clone());
        assert!(
            echoing
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // Without turns, the loop would have echoed all four and waited for
        // input, which no one is going to send: no wake.
        assert!(flag.0.load(Ordering::SeqCst), "the loop did not yield");

        // The server's frames: a 10-byte header and the payload, unmasked.
        // The first turn wrote at most its own two.
        let mut echoes = vec![0; 4 * (10 + payload)];
        let mut first_turn = 0;
        while let Some(read) = peer.read(&mut echoes[first_turn..]).now_or_never() {
            first_turn += read.unwrap();
        }
        assert!(
            first_turn <= 2 * (10 + payload),
            "{first_turn} bytes in one turn"
        );
        tokio::select! {
            _ = echoing => panic!("the echo loop ended"),
            read = peer.read_exact(&mut echoes[first_turn..]) => read.unwrap(),
        };
        assert!(
            echoes
                .chunks(10 + payload)
                .all(|echo| echo[0] == 0x82 && echo[10..] == frame[14..])
        );
    }
}

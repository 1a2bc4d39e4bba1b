//! The outgoing side: queued frames, fragmentation, masking, and
//! [`Transmit`], the unit of output a driver writes.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{EncodedHeader, Header, Opcode, Role};
use crate::mask::{apply_mask, extend_masked};
use crate::message::Message;
use crate::random::SplitMix64;

/// Bytes to write to the transport: one frame's header and its payload, or
/// an HTTP handshake message (with an empty header).
///
/// The two parts are separate so a driver can write them with one vectored
/// write, without copying the payload. `Transmit` implements [`Buf`], so
/// partial writes are a matter of [`Buf::advance`], and
/// [`Buf::chunks_vectored`] fills `IoSlice`s.
///
/// ```
/// use bytes::Buf;
/// use sockeye_core::{Config, Connection, Event, Accept, Message};
/// # use std::time::Instant;
/// # let now = Instant::now();
/// # let mut server = Connection::server(Config::default(), now).unwrap();
/// # server.handle_input(now, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
/// # let _ = server.poll_event();
/// # server.accept(Accept::default()).unwrap();
/// # let _ = server.poll_transmit(); // the 101 response
/// server.send(now, Message::text("hi")).unwrap();
/// let mut out = server.poll_transmit().unwrap();
/// assert_eq!(out.header(), &[0x81, 0x02]);
/// assert_eq!(out.payload().as_ref(), b"hi");
/// let mut wire = Vec::new();
/// while out.has_remaining() {
///     let chunk = out.chunk();
///     wire.extend_from_slice(chunk);
///     let n = chunk.len();
///     out.advance(n);
/// }
/// assert_eq!(wire, b"\x81\x02hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    header: EncodedHeader,
    /// Header bytes already consumed through [`Buf::advance`].
    header_pos: usize,
    payload: Bytes,
}

impl Transmit {
    fn raw(bytes: Bytes) -> Self {
        Self {
            header: EncodedHeader::EMPTY,
            header_pos: 0,
            payload: bytes,
        }
    }

    /// The unwritten part of the frame header (empty for HTTP messages).
    pub fn header(&self) -> &[u8] {
        &self.header.as_slice()[self.header_pos..]
    }

    /// The unwritten part of the payload, or of the HTTP message.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }
}

impl Buf for Transmit {
    fn remaining(&self) -> usize {
        self.header().len() + self.payload.len()
    }

    fn chunk(&self) -> &[u8] {
        let header = self.header();
        if header.is_empty() {
            &self.payload
        } else {
            header
        }
    }

    fn advance(&mut self, mut cnt: usize) {
        let from_header = cnt.min(self.header().len());
        self.header_pos += from_header;
        cnt -= from_header;
        self.payload.advance(cnt);
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for part in [self.header(), &self.payload[..]] {
            if !part.is_empty() && n < dst.len() {
                dst[n] = std::io::IoSlice::new(part);
                n += 1;
            }
        }
        n
    }
}

/// Transmits taken from a [`Connection`](crate::Connection) and not yet
/// fully written: the queue a driver keeps when the transport takes only
/// part of what it is given.
///
/// It implements [`Buf`] over all its transmits in order, so one
/// [`Buf::chunks_vectored`] gathers many frames for one vectored write, and
/// [`Buf::advance`] consumes what the write took, across transmit
/// boundaries. Large payloads are never copied: a frame is its header slice
/// and its payload slice. Small transmits in a row are copied together into
/// one slice, which the kernel takes faster than two tiny slices per frame.
///
/// ```
/// use std::io::IoSlice;
/// use bytes::Buf;
/// use sockeye_core::{Connection, Message, TransmitQueue};
/// # use sockeye_core::{Accept, Config};
/// # use std::time::Instant;
/// # let now = Instant::now();
/// # let mut server = Connection::server(Config::default(), now).unwrap();
/// # server.handle_input(now, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
/// # let _ = server.poll_event();
/// # server.accept(Accept::default()).unwrap();
/// # let _ = server.poll_transmit(); // the 101 response
/// server.send(now, Message::text("one"))?;
/// server.send(now, Message::text("two"))?;
/// let mut queue = TransmitQueue::default();
/// while let Some(transmit) = server.poll_transmit() {
///     queue.push(transmit);
/// }
/// let mut wire = Vec::new();
/// while queue.has_remaining() {
///     let mut slices = [IoSlice::new(&[]); 8];
///     let used = queue.chunks_vectored(&mut slices);
///     // A transport that takes at most 7 bytes per vectored write.
///     let mut room = 7;
///     for slice in &slices[..used] {
///         let n = slice.len().min(room);
///         wire.extend_from_slice(&slice[..n]);
///         room -= n;
///     }
///     queue.advance(7 - room);
/// }
/// assert_eq!(wire, b"\x81\x03one\x81\x03two");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
pub struct TransmitQueue {
    queue: VecDeque<Transmit>,
    /// Small transmits pushed after the last of `queue`, copied together.
    small: BytesMut,
    remaining: usize,
}

/// Transmits up to this size are copied into one slice with their
/// neighbours: copying a few hundred bytes costs less than the kernel's
/// handling of each extra slice of a vectored write.
const COPY_MAX: usize = 512;

impl TransmitQueue {
    /// Queues a transmit after the others.
    pub fn push(&mut self, transmit: Transmit) {
        let len = transmit.remaining();
        if len == 0 {
            return;
        }
        self.remaining += len;
        if len <= COPY_MAX {
            if self.small.capacity() == 0 {
                // One allocation for a burst, not a growth per frame.
                self.small.reserve(8 * COPY_MAX);
            }
            self.small.extend_from_slice(transmit.header());
            self.small.extend_from_slice(transmit.payload());
            return;
        }
        if !self.small.is_empty() {
            let small = Transmit::raw(self.small.split().freeze());
            self.queue.push_back(small);
        }
        self.queue.push_back(transmit);
    }

    /// How many slices a vectored write of everything queued takes: what
    /// [`Buf::chunks_vectored`] fills, given room. A driver that takes
    /// transmits from the core lazily stops at what one write can take.
    pub fn slices(&self) -> usize {
        let parts = |t: &Transmit| {
            usize::from(!t.header().is_empty()) + usize::from(!t.payload().is_empty())
        };
        self.queue.iter().map(parts).sum::<usize>() + usize::from(!self.small.is_empty())
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

impl Buf for TransmitQueue {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.queue.front().map_or(&self.small, Buf::chunk)
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advanced past the queued bytes");
        self.remaining -= cnt;
        while cnt > 0
            && let Some(front) = self.queue.front_mut()
        {
            let n = cnt.min(front.remaining());
            front.advance(n);
            cnt -= n;
            if !front.has_remaining() {
                self.queue.pop_front();
            }
        }
        if cnt > 0 {
            self.small.advance(cnt);
        }
        if self.remaining == 0 {
            // An idle connection keeps no buffer.
            self.small = BytesMut::new();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for transmit in &self.queue {
            if n == dst.len() {
                return n;
            }
            n += transmit.chunks_vectored(&mut dst[n..]);
        }
        if !self.small.is_empty() && n < dst.len() {
            dst[n] = std::io::IoSlice::new(&self.small);
            n += 1;
        }
        n
    }
}

/// Unanswered pings beyond this many are answered only with the latest.
const MAX_PENDING_PONGS: usize = 16;

/// Frames waiting to go out, in the order the protocol needs: the handshake,
/// then control frames, then data (control frames slip in between the
/// fragments of a long message), then the close frame, then nothing.
#[derive(Debug)]
pub(crate) struct Outbox {
    role: Role,
    rng: SplitMix64,
    fragment_size: Option<usize>,
    handshake: Option<Bytes>,
    pings: VecDeque<Bytes>,
    /// Pongs owed, oldest first, at most [`MAX_PENDING_PONGS`].
    pongs: VecDeque<Bytes>,
    data: VecDeque<Message>,
    /// Payload bytes of `data.front()` already framed.
    front_sent: usize,
    close: Option<Bytes>,
    close_sent: bool,
    /// Payload bytes queued and not yet handed out.
    buffered: usize,
}

impl Outbox {
    pub(crate) fn new(role: Role, rng: SplitMix64, fragment_size: Option<usize>) -> Self {
        Self {
            role,
            rng,
            fragment_size,
            handshake: None,
            pings: VecDeque::new(),
            pongs: VecDeque::new(),
            data: VecDeque::new(),
            front_sent: 0,
            close: None,
            close_sent: false,
            buffered: 0,
        }
    }

    pub(crate) fn push_handshake(&mut self, bytes: Bytes) {
        self.buffered += bytes.len();
        self.handshake = Some(bytes);
    }

    pub(crate) fn push_message(&mut self, message: Message) {
        self.buffered += message.len();
        self.data.push_back(message);
    }

    pub(crate) fn push_ping(&mut self, payload: Bytes) {
        self.buffered += payload.len();
        self.pings.push_back(payload);
    }

    /// Owes the peer a pong. Every ping is answered while few are pending;
    /// under a flood the oldest are dropped, which RFC 6455 §5.5.3 allows, so
    /// the latest ping is always answered and the queue stays bounded.
    pub(crate) fn push_pong(&mut self, payload: Bytes) {
        if self.pongs.len() == MAX_PENDING_PONGS
            && let Some(dropped) = self.pongs.pop_front()
        {
            self.buffered -= dropped.len();
        }
        self.buffered += payload.len();
        self.pongs.push_back(payload);
    }

    /// Queues the close frame behind the data already queued.
    pub(crate) fn push_close(&mut self, payload: Bytes) {
        self.buffered += payload.len();
        self.close = Some(payload);
    }

    /// Drops everything queued but the handshake and sends `payload` as the
    /// close frame next, cutting into a fragmented message if need be: the
    /// reply to the peer's close goes out "as soon as practical" (§5.5.1),
    /// since the peer has stopped caring about our data.
    pub(crate) fn close_now(&mut self, payload: Bytes) {
        self.pings.clear();
        self.pongs.clear();
        self.data.clear();
        self.front_sent = 0;
        self.buffered = self.handshake.as_ref().map_or(0, Bytes::len);
        self.push_close(payload);
    }

    pub(crate) fn buffered(&self) -> usize {
        self.buffered
    }

    pub(crate) fn release_buffers(&mut self) {
        self.pings.shrink_to_fit();
        self.pongs.shrink_to_fit();
        self.data.shrink_to_fit();
    }

    pub(crate) fn poll(&mut self) -> Option<Transmit> {
        if self.close_sent {
            return None;
        }
        if let Some(bytes) = self.handshake.take() {
            self.buffered -= bytes.len();
            return Some(Transmit::raw(bytes));
        }
        if let Some(payload) = self.pings.pop_front() {
            return Some(self.frame(Opcode::Ping, true, payload));
        }
        if let Some(payload) = self.pongs.pop_front() {
            return Some(self.frame(Opcode::Pong, true, payload));
        }
        if let Some(message) = self.data.front() {
            let total = message.len();
            let start = self.front_sent;
            let end = self
                .fragment_size
                .map_or(total, |size| total.min(start + size));
            let opcode = match (start, message) {
                (0, Message::Text(_)) => Opcode::Text,
                (0, Message::Binary(_)) => Opcode::Binary,
                _ => Opcode::Continuation,
            };
            let fin = end == total;
            let payload = if fin {
                let whole = self.data.pop_front().expect("front message").into_payload();
                self.front_sent = 0;
                if start == 0 {
                    whole
                } else {
                    whole.slice(start..)
                }
            } else {
                self.front_sent = end;
                message.payload().slice(start..end)
            };
            return Some(self.frame(opcode, fin, payload));
        }
        let payload = self.close.take()?;
        self.close_sent = true;
        Some(self.frame(Opcode::Close, true, payload))
    }

    fn frame(&mut self, opcode: Opcode, fin: bool, payload: Bytes) -> Transmit {
        self.buffered -= payload.len();
        let mask = match self.role {
            Role::Client => Some(self.rng.mask_key()),
            Role::Server => None,
        };
        let header = Header {
            fin,
            rsv: 0,
            opcode,
            mask,
            payload_len: payload.len() as u64,
        }
        .encode();
        let payload = match mask {
            Some(key) => masked(payload, key),
            None => payload,
        };
        Transmit {
            header,
            header_pos: 0,
            payload,
        }
    }
}

/// Masks a payload in place when this is its only reference, and into a
/// fresh buffer otherwise (the application may still hold the message).
fn masked(payload: Bytes, key: [u8; 4]) -> Bytes {
    match payload.try_into_mut() {
        Ok(mut owned) => {
            apply_mask(&mut owned, key, 0);
            owned.freeze()
        }
        Err(shared) => {
            let mut out = BytesMut::new();
            extend_masked(&mut out, &shared, key, 0);
            out.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;

    fn frame(payload: impl Into<Bytes>) -> Transmit {
        let payload = payload.into();
        let header = Header {
            fin: true,
            rsv: 0,
            opcode: Opcode::Binary,
            mask: None,
            payload_len: payload.len() as u64,
        };
        Transmit {
            header: header.encode(),
            header_pos: 0,
            payload,
        }
    }

    #[test]
    fn a_queue_gathers_large_frames_as_header_and_payload_in_order() {
        let mut queue = TransmitQueue::default();
        queue.push(frame(vec![b'a'; 600]));
        queue.push(Transmit::raw(Bytes::new())); // nothing to write: not queued
        queue.push(frame(vec![b'b'; 700]));
        assert_eq!((queue.slices(), queue.remaining()), (4, 4 + 600 + 4 + 700));

        let mut one = [IoSlice::new(&[]); 1];
        assert_eq!(queue.chunks_vectored(&mut one), 1);
        assert_eq!(&*one[0], &[0x82, 126, 2, 88]);
        let mut three = [IoSlice::new(&[]); 3];
        assert_eq!(queue.chunks_vectored(&mut three), 3);
        assert_eq!(three[1].len(), 600, "the first payload, not copied");
        assert_eq!(
            &*three[2],
            &[0x82, 126, 2, 188],
            "the second header, without its payload"
        );

        // A write that ends inside the second frame's header.
        queue.advance(4 + 600 + 3);
        assert_eq!(
            (queue.slices(), queue.remaining(), queue.chunk()),
            (2, 701, &[188][..])
        );
        queue.advance(701);
        assert!(queue.is_empty() && queue.chunk().is_empty());
    }

    #[test]
    fn small_frames_in_a_row_are_copied_into_one_slice_in_order() {
        let mut queue = TransmitQueue::default();
        queue.push(frame(&b"abc"[..]));
        queue.push(frame(&b"de"[..]));
        queue.push(frame(vec![b'x'; 600]));
        queue.push(frame(&b"f"[..]));
        assert_eq!(queue.slices(), 4);
        let mut slices = [IoSlice::new(&[]); 8];
        let used = queue.chunks_vectored(&mut slices);
        let parts: Vec<&[u8]> = slices[..used].iter().map(|s| &**s).collect();
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert_eq!(parts[0], b"\x82\x03abc\x82\x02de");
        assert_eq!(parts[2], &[b'x'; 600][..]);
        assert_eq!(parts[3], b"\x82\x01f");

        // Partial writes go through the copied slices too.
        queue.advance(3);
        assert_eq!(queue.chunk(), b"bc\x82\x02de");
        queue.advance(6 + 4 + 600 + 1);
        assert_eq!((queue.chunk(), queue.remaining()), (&b"\x01f"[..], 2));
        queue.advance(2);
        assert!(queue.is_empty());
        assert_eq!(queue.small.capacity(), 0, "an idle queue keeps no buffer");
    }
}

//! The outgoing side, from the application's calls to the bytes a driver
//! writes: queued frames in protocol order, fragmentation, masking, and the
//! framed bytes not yet written. One owner for the whole path, so that one
//! policy decides what goes next in every driver.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{EncodedHeader, Header, MAX_HEADER_LEN, Opcode, Role};
use crate::mask::{apply_mask, extend_masked};
use crate::message::Message;
use crate::random::SplitMix64;

/// One frame's header and payload, or an HTTP message (with an empty
/// header), framed and not yet fully written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Transmit {
    header: EncodedHeader,
    /// Header bytes already written.
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

    fn header(&self) -> &[u8] {
        &self.header.as_slice()[self.header_pos..]
    }

    fn remaining(&self) -> usize {
        self.header().len() + self.payload.len()
    }

    fn advance(&mut self, mut cnt: usize) {
        let from_header = cnt.min(self.header().len());
        self.header_pos += from_header;
        cnt -= from_header;
        self.payload.advance(cnt);
    }

    fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for part in [self.header(), &self.payload[..]] {
            if !part.is_empty() && n < dst.len() {
                dst[n] = IoSlice::new(part);
                n += 1;
            }
        }
        n
    }
}

/// Transmits up to this size are copied into one slice with their
/// neighbours: copying a few hundred bytes costs less than the kernel's
/// handling of each extra slice of a vectored write.
const COPY_MAX: usize = 512;

/// Framed bytes are staged for writing until this many wait, or until they
/// fill the slices the driver offers. Everything not staged stays in the
/// queues in protocol order, where a pong, a ping or the reply to the
/// peer's close still goes ahead of queued data: a control frame waits
/// behind at most this much (and the frame in progress).
const STAGE_MAX: usize = 256 * 1024;

/// Unanswered pings beyond this many are answered only with the latest.
const MAX_PENDING_PONGS: usize = 16;

/// Frames waiting to go out, in the order the protocol needs: the handshake,
/// then control frames, then data (control frames slip in between the
/// fragments of a long message), then the close frame, then nothing. The
/// front of that order is framed into `staged` as the driver asks for bytes
/// to write.
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
    close_framed: bool,
    /// Payload bytes queued and not framed yet.
    queued: usize,
    /// Framed and not yet written, in order; then `small`.
    staged: VecDeque<Transmit>,
    /// Small transmits framed after the last of `staged`, copied together.
    small: BytesMut,
    /// `small` holds an HTTP head: its buffer goes once written.
    small_http: bool,
    /// Bytes in `staged` and `small` not yet written.
    staged_bytes: usize,
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
            close_framed: false,
            queued: 0,
            staged: VecDeque::new(),
            small: BytesMut::new(),
            small_http: false,
            staged_bytes: 0,
        }
    }

    pub(crate) fn push_handshake(&mut self, bytes: Bytes) {
        self.queued += bytes.len();
        self.handshake = Some(bytes);
    }

    pub(crate) fn push_message(&mut self, message: Message) {
        self.queued += message.len();
        self.data.push_back(message);
    }

    pub(crate) fn push_ping(&mut self, payload: Bytes) {
        self.queued += payload.len();
        self.pings.push_back(payload);
    }

    /// Owes the peer a pong. Every ping is answered while few are pending;
    /// under a flood the oldest are dropped, which RFC 6455 §5.5.3 allows, so
    /// the latest ping is always answered and the queue stays bounded.
    pub(crate) fn push_pong(&mut self, payload: Bytes) {
        if self.pongs.len() == MAX_PENDING_PONGS
            && let Some(dropped) = self.pongs.pop_front()
        {
            self.queued -= dropped.len();
        }
        self.queued += payload.len();
        self.pongs.push_back(payload);
    }

    /// Queues the close frame behind the data already queued.
    pub(crate) fn push_close(&mut self, payload: Bytes) {
        self.queued += payload.len();
        self.close = Some(payload);
    }

    /// Drops everything queued but the handshake and sends `payload` as the
    /// close frame next, cutting into a fragmented message if need be: the
    /// reply to the peer's close goes out "as soon as practical" (§5.5.1),
    /// since the peer has stopped caring about our data. What is staged
    /// already goes first: a frame cannot be cut once it is being written.
    pub(crate) fn close_now(&mut self, payload: Bytes) {
        self.pings.clear();
        self.pongs.clear();
        self.data.clear();
        self.front_sent = 0;
        self.queued = self.handshake.as_ref().map_or(0, Bytes::len);
        self.push_close(payload);
    }

    /// Drops everything, staged or not: the transport is going away.
    pub(crate) fn clear(&mut self) {
        *self = Self::new(self.role, self.rng.clone(), self.fragment_size);
        self.close_framed = true;
    }

    /// Bytes waiting to be written: payloads not framed yet, and framed
    /// bytes (headers included) not written yet.
    pub(crate) fn buffered(&self) -> usize {
        self.queued + self.staged_bytes
    }

    /// Whether nothing at all waits to be written (an empty frame counts).
    pub(crate) fn is_empty(&self) -> bool {
        self.staged_bytes == 0 && !self.has_unframed()
    }

    fn has_unframed(&self) -> bool {
        self.handshake.is_some()
            || !self.pings.is_empty()
            || !self.pongs.is_empty()
            || !self.data.is_empty()
            || (self.close.is_some() && !self.close_framed)
    }

    pub(crate) fn release_buffers(&mut self) {
        self.pings.shrink_to_fit();
        self.pongs.shrink_to_fit();
        self.data.shrink_to_fit();
        self.staged.shrink_to_fit();
        if self.small.is_empty() {
            self.small = BytesMut::new();
        }
    }

    /// Fills `dst` with the bytes to write next, framing more of the queue
    /// while the staged bytes fit `dst` and stay under [`STAGE_MAX`]; returns
    /// how many slices it filled.
    pub(crate) fn poll_transmit<'a>(&'a mut self, dst: &mut [IoSlice<'a>]) -> usize {
        // A staged transmit takes at most two slices, and `small` one.
        while self.staged_bytes < STAGE_MAX
            && 2 * self.staged.len() + usize::from(!self.small.is_empty()) < dst.len()
            && let Some(transmit) = self.frame_next()
        {
            self.stage(transmit);
        }
        let mut n = 0;
        for transmit in &self.staged {
            if n == dst.len() {
                return n;
            }
            n += transmit.slices(&mut dst[n..]);
        }
        if !self.small.is_empty() && n < dst.len() {
            dst[n] = IoSlice::new(&self.small);
            n += 1;
        }
        n
    }

    /// Takes `n` written bytes off the front of what
    /// [`poll_transmit`](Self::poll_transmit) offered.
    ///
    /// # Panics
    ///
    /// If `n` is more than it offered.
    pub(crate) fn advance(&mut self, mut n: usize) {
        assert!(
            n <= self.staged_bytes,
            "{n} bytes written, {} were offered",
            self.staged_bytes
        );
        self.staged_bytes -= n;
        while n > 0
            && let Some(front) = self.staged.front_mut()
        {
            let taken = n.min(front.remaining());
            front.advance(taken);
            n -= taken;
            if front.remaining() == 0 {
                self.staged.pop_front();
            }
        }
        if n > 0 {
            self.small.advance(n);
        }
        if self.staged_bytes == 0 {
            if self.small_http {
                // An open connection that has sent no frame keeps no buffer.
                self.small = BytesMut::new();
                self.small_http = false;
            } else {
                // Kept for the next burst, or a steady stream of small frames
                // would allocate once per write; `release_buffers` gives it
                // back when the peer falls silent.
                self.small.clear();
            }
        }
    }

    fn stage(&mut self, transmit: Transmit) {
        let len = transmit.remaining();
        if len == 0 {
            return;
        }
        self.staged_bytes += len;
        if len <= COPY_MAX {
            if self.small.capacity() == 0 {
                // One allocation for a burst, not a growth per frame: room
                // for what is queued behind this transmit too, up to a
                // bound, so a lone frame keeps a buffer of its own size only.
                let frames = 1 + self.pings.len() + self.pongs.len() + self.data.len();
                let burst = len + self.queued + frames * MAX_HEADER_LEN;
                self.small.reserve(burst.min(8 * COPY_MAX));
            }
            self.small_http |= transmit.header().is_empty();
            self.small.extend_from_slice(transmit.header());
            self.small.extend_from_slice(&transmit.payload);
            return;
        }
        if !self.small.is_empty() {
            let small = Transmit::raw(self.small.split().freeze());
            self.staged.push_back(small);
        }
        self.staged.push_back(transmit);
    }

    /// Frames the next transmit in protocol order.
    fn frame_next(&mut self) -> Option<Transmit> {
        if self.close_framed {
            return None;
        }
        if let Some(bytes) = self.handshake.take() {
            self.queued -= bytes.len();
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
        self.close_framed = true;
        Some(self.frame(Opcode::Close, true, payload))
    }

    fn frame(&mut self, opcode: Opcode, fin: bool, payload: Bytes) -> Transmit {
        self.queued -= payload.len();
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
    use super::*;

    fn server() -> Outbox {
        Outbox::new(Role::Server, SplitMix64::new(0), None)
    }

    /// What one `poll_transmit` offers, slice by slice.
    fn offered(outbox: &mut Outbox, room: usize) -> Vec<Vec<u8>> {
        let mut slices = vec![IoSlice::new(&[]); room];
        let n = outbox.poll_transmit(&mut slices);
        slices[..n].iter().map(|s| s.to_vec()).collect()
    }

    /// Writes everything, in writes of at most `size` bytes.
    fn written(outbox: &mut Outbox, size: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        loop {
            let parts = offered(outbox, 8);
            if parts.is_empty() {
                return wire;
            }
            let all = parts.concat();
            let n = all.len().min(size);
            wire.extend_from_slice(&all[..n]);
            outbox.advance(n);
        }
    }

    #[test]
    fn large_frames_are_offered_as_header_and_payload_in_order() {
        let mut outbox = server();
        outbox.push_message(Message::binary(vec![b'a'; 600]));
        outbox.push_message(Message::binary(vec![b'b'; 700]));
        assert_eq!(outbox.buffered(), 1300);
        let parts = offered(&mut outbox, 8);
        assert_eq!(parts.len(), 4);
        assert_eq!(parts[0], [0x82, 126, 2, 88]);
        assert_eq!(parts[1].len(), 600, "the first payload, not copied");
        assert_eq!(parts[2], [0x82, 126, 2, 188]);
        assert_eq!(
            outbox.buffered(),
            4 + 600 + 4 + 700,
            "headers count once framed"
        );

        // A write that ends inside the second frame's header.
        outbox.advance(4 + 600 + 3);
        assert_eq!(offered(&mut outbox, 8)[0], [188]);
        outbox.advance(701);
        assert!(outbox.is_empty() && offered(&mut outbox, 8).is_empty());
    }

    #[test]
    fn small_frames_in_a_row_are_copied_into_one_slice_in_order() {
        let mut outbox = server();
        for payload in [&b"abc"[..], b"de", &[b'x'; 600], b"f"] {
            outbox.push_message(Message::binary(payload.to_vec()));
        }
        let parts = offered(&mut outbox, 8);
        assert_eq!(parts.len(), 4, "{parts:?}");
        assert_eq!(parts[0], b"\x82\x03abc\x82\x02de");
        assert_eq!(parts[2], [b'x'; 600]);
        assert_eq!(parts[3], b"\x82\x01f");

        // Partial writes go through the copied slices too.
        outbox.advance(3);
        assert_eq!(offered(&mut outbox, 8)[0], b"bc\x82\x02de");
        outbox.advance(6 + 4 + 600 + 1);
        assert_eq!(offered(&mut outbox, 8), [b"\x01f".to_vec()]);
        outbox.advance(2);
        assert!(outbox.is_empty());
        assert!(outbox.small.capacity() > 0, "kept for the next burst");
        outbox.release_buffers();
        assert_eq!(outbox.small.capacity(), 0, "an idle outbox keeps no buffer");
    }

    #[test]
    fn only_what_fits_the_offered_slices_is_framed_so_control_frames_overtake_the_rest() {
        let mut outbox = server();
        for _ in 0..3 {
            outbox.push_message(Message::binary(vec![0; 1000]));
        }
        // Room for one frame's two slices: one frame is framed.
        assert_eq!(offered(&mut outbox, 2).len(), 2);
        outbox.push_pong(Bytes::from_static(b"p"));
        let wire = written(&mut outbox, usize::MAX);
        let pong = [0x8a, 1, b'p'];
        let at = wire.windows(3).position(|w| w == pong).expect("the pong");
        assert_eq!(at, 4 + 1000, "the pong goes right after the staged frame");
        assert_eq!(wire.len(), 3 * (4 + 1000) + 3);
    }

    #[test]
    fn staging_stops_at_its_byte_limit() {
        let mut outbox = server();
        for _ in 0..4 {
            outbox.push_message(Message::binary(vec![0; STAGE_MAX / 2]));
        }
        assert_eq!(offered(&mut outbox, 64).len(), 4, "two frames");
        assert_eq!(written(&mut outbox, 4096).len(), 4 * (10 + STAGE_MAX / 2));
    }

    #[test]
    fn the_reply_to_a_close_drops_what_is_not_staged_and_nothing_follows_it() {
        let mut outbox = server();
        outbox.push_message(Message::binary(vec![0; 1000]));
        outbox.push_message(Message::binary(vec![1; 1000]));
        assert_eq!(offered(&mut outbox, 2).len(), 2);
        outbox.close_now(Bytes::from_static(&[3, 232]));
        let wire = written(&mut outbox, 100);
        assert_eq!(wire.len(), 4 + 1000 + 4);
        assert_eq!(wire[1004..], [0x88, 2, 3, 232]);
        assert!(outbox.is_empty());
    }

    #[test]
    fn an_empty_close_frame_still_counts_as_waiting() {
        let mut outbox = server();
        outbox.push_close(Bytes::new());
        assert_eq!(outbox.buffered(), 0);
        assert!(!outbox.is_empty());
        assert_eq!(written(&mut outbox, 1), [0x88, 0]);
        assert!(outbox.is_empty());
    }
}

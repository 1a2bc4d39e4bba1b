//! The frame layer (RFC 6455 §5): headers, and [`Decoder`], which turns a
//! byte stream into messages and control frames.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use crate::close::CloseCode;
use crate::close::CloseFrame;
use crate::config::Config;
use crate::error::ProtocolError;
use crate::mask::{apply_mask, extend_masked};
use crate::message::Message;
use crate::utf8::{Utf8Bytes, Utf8Validator};

/// Which end of the connection this is. It decides the masking rules: a
/// client masks what it sends and a server requires that (§5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that sent the upgrade request.
    Client,
    /// The end that accepted it.
    Server,
}

/// A frame opcode (§5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Opcode {
    /// 0x0: a later fragment of a text or binary message.
    Continuation,
    /// 0x1: the first frame of a text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Decodes the low nibble of a frame's first byte.
    ///
    /// ```
    /// use sockeye_core::frame::Opcode;
    /// assert_eq!(Opcode::from_u8(0x9), Some(Opcode::Ping));
    /// assert_eq!(Opcode::from_u8(0x3), None); // reserved
    /// ```
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong are control frames (§5.5).
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// The longest header: 2 bytes, an 8-byte length and a 4-byte mask.
pub const MAX_HEADER_LEN: usize = 14;

/// A frame header (§5.2).
///
/// ```
/// use sockeye_core::frame::{Header, Opcode};
///
/// // RFC 6455 §5.7: a single-frame masked text message "Hello".
/// let wire = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
/// let (header, len) = Header::parse(&wire).unwrap().unwrap();
/// assert_eq!(len, 6);
/// assert_eq!(header.opcode, Opcode::Text);
/// assert_eq!(header.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(header.payload_len, 5);
/// assert_eq!(header.encode().as_slice(), &wire[..6]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2 and RSV3 as the low three bits.
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, if the frame is masked.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

/// An encoded header, kept inline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl EncodedHeader {
    pub(crate) const EMPTY: Self = Self {
        bytes: [0; MAX_HEADER_LEN],
        len: 0,
    };

    /// The header bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl Header {
    /// Parses a header from the start of `buf`.
    ///
    /// Returns the header and its length in bytes, or `None` if `buf` ends
    /// before the header does. Fails on a reserved opcode and on a 64-bit
    /// length with its top bit set; every other rule depends on the
    /// connection and is checked by [`Decoder`].
    pub fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, ProtocolError> {
        let [b0, b1, rest @ ..] = buf else {
            return Ok(None);
        };
        let opcode = Opcode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
        let (payload_len, len_bytes) = match b1 & 0x7F {
            126 => match rest {
                [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 2),
                _ => return Ok(None),
            },
            127 => match rest.first_chunk::<8>() {
                Some(bytes) => {
                    let len = u64::from_be_bytes(*bytes);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::InvalidLength);
                    }
                    (len, 8)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 0),
        };
        let rest = &rest[len_bytes..];
        let mask = if b1 & 0x80 != 0 {
            match rest.first_chunk::<4>() {
                Some(key) => Some(*key),
                None => return Ok(None),
            }
        } else {
            None
        };
        let header = Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x07,
            opcode,
            mask,
            payload_len,
        };
        Ok(Some((
            header,
            2 + len_bytes + if mask.is_some() { 4 } else { 0 },
        )))
    }

    /// Encodes the header with the shortest length form (§5.2).
    pub fn encode(&self) -> EncodedHeader {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut len = 2;
        match self.payload_len {
            n @ 0..=125 => bytes[1] = mask_bit | n as u8,
            n @ 126..=0xFFFF => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                len = 4;
            }
            n => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&n.to_be_bytes());
                len = 10;
            }
        }
        if let Some(key) = self.mask {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        EncodedHeader {
            bytes,
            len: len as u8,
        }
    }
}

/// One item decoded from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete text or binary message, all fragments joined.
    Message(Message),
    /// A ping with its payload.
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
    /// A close frame; `None` when it had no payload.
    Close(Option<CloseFrame>),
}

/// The frame currently being read.
#[derive(Debug, Clone, Copy)]
struct FrameInProgress {
    opcode: Opcode,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes already read, which is the mask phase.
    done: usize,
}

/// Turns the bytes of a WebSocket stream into messages and control frames,
/// enforcing every framing rule of RFC 6455 for its [`Role`].
///
/// It accepts any chunking of the input, down to one byte at a time. Payload
/// bytes are copied once, from the input into the message buffer, and
/// unmasked and UTF-8-checked while still in cache; the payload of a large
/// frame can instead be read straight into the message buffer
/// ([`payload_spare`](Self::payload_spare)) and unmasked there. Small
/// messages share one buffer of [`Config::read_buffer_size`] bytes, split
/// off without copying, so steady traffic does not allocate per frame. Memory stays under
/// `max_message_size` plus one control frame.
///
/// After an error the decoder is spent: the connection is failing.
///
/// ```
/// use sockeye_core::frame::{Decoded, Decoder, Role};
/// use sockeye_core::{Config, Message};
///
/// let mut decoder = Decoder::new(Role::Client, &Config::default());
/// // RFC 6455 §5.7: "Hel" and "lo" as two unmasked fragments.
/// let mut input: &[u8] = &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
/// let item = decoder.decode(&mut input).unwrap();
/// assert_eq!(item, Some(Decoded::Message(Message::text("Hello"))));
/// assert!(input.is_empty());
/// ```
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    max_frame_size: usize,
    max_message_size: usize,
    read_buffer_size: usize,
    /// A header split across inputs.
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    frame: Option<FrameInProgress>,
    /// The opcode of the data message in progress, if any.
    message: Option<Opcode>,
    utf8: Utf8Validator,
    /// Payload of the data message in progress, and spare room for the next.
    buffer: BytesMut,
    /// Payload of the control frame in progress.
    control: Vec<u8>,
    /// Payload size of the last data message received.
    last_message_size: usize,
    /// Whether the last data frame received had a payload of `LARGE` bytes
    /// or more.
    last_frame_large: bool,
}

/// Text is validated in blocks that were just written, so still in L1.
const BLOCK: usize = 16 * 1024;
/// Messages from this size on get a buffer of their own size.
const LARGE: usize = 64 * 1024;

/// The least room a message starts with. Small messages share it, which
/// saves each the two allocations of a buffer of its own (in a small-message
/// echo they were a large share of the core's work: BENCHMARKS.md, "Small
/// messages share one buffer"); a message the application keeps holds the
/// whole chunk alive.
const SMALL_CHUNK: usize = 1024;

impl Decoder {
    /// A decoder for the given role, with the limits of `config`.
    pub fn new(role: Role, config: &Config) -> Self {
        Self {
            role,
            max_frame_size: config.max_frame_size,
            max_message_size: config.max_message_size,
            read_buffer_size: config.read_buffer_size,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            frame: None,
            message: None,
            utf8: Utf8Validator::default(),
            buffer: BytesMut::new(),
            control: Vec::new(),
            last_message_size: 0,
            last_frame_large: false,
        }
    }

    /// Consumes bytes from the front of `input` until one item is complete,
    /// and returns it. Returns `None` once `input` is used up with no item
    /// complete; the partial state is kept for the next call.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let Some(frame) = self.frame else {
                match self.read_header(input)? {
                    Some(frame) => {
                        self.frame = Some(frame);
                        if frame.remaining == 0
                            && let Some(item) = self.finish_frame()?
                        {
                            return Ok(Some(item));
                        }
                        continue;
                    }
                    None => return Ok(None),
                }
            };
            if input.is_empty() {
                return Ok(None);
            }
            let n = usize::try_from(frame.remaining).map_or(input.len(), |r| r.min(input.len()));
            let (chunk, rest) = input.split_at(n);
            *input = rest;
            if frame.opcode.is_control() {
                let start = self.control.len();
                self.control.extend_from_slice(chunk);
                if let Some(key) = frame.mask {
                    apply_mask(&mut self.control[start..], key, frame.done);
                }
            } else {
                self.append_payload(chunk, &frame)?;
            }
            if let Some(item) = self.advance_frame(n)? {
                return Ok(Some(item));
            }
        }
    }

    /// How much of `capacity` bytes of room the next input should fill:
    /// see [`Connection::read_size`](crate::Connection::read_size).
    pub fn read_size(&self, capacity: usize) -> usize {
        if !self.last_frame_large {
            return capacity;
        }
        let rest_of_frame = self.frame.map_or(0, |frame| frame.remaining);
        let wanted = rest_of_frame.saturating_add(self.read_buffer_size as u64);
        usize::try_from(wanted).map_or(capacity, |wanted| wanted.min(capacity))
    }

    /// The part of the message buffer where the next payload bytes of the
    /// data frame in progress belong, for a driver to read them into
    /// straight from the transport: see
    /// [`Connection::payload_buffer`](crate::Connection::payload_buffer).
    ///
    /// `None` unless that frame still has at least
    /// [`Config::read_buffer_size`] bytes to come; smaller remainders are
    /// not worth a read of their own. The slice is never longer than what
    /// the frame still needs, and the buffer grows as
    /// [`decode`](Self::decode) grows it: to at most four times what has
    /// arrived, or the size of the previous message.
    pub fn payload_spare(&mut self) -> Option<&mut [MaybeUninit<u8>]> {
        let min = self.read_buffer_size as u64;
        let frame = self
            .frame
            .filter(|frame| !frame.opcode.is_control() && frame.remaining >= min)?;
        self.make_room(&frame, 0, self.read_buffer_size);
        let spare = self.buffer.spare_capacity_mut();
        let n = usize::try_from(frame.remaining).map_or(spare.len(), |r| r.min(spare.len()));
        Some(&mut spare[..n])
    }

    /// Takes the first `n` bytes of the slice that
    /// [`payload_spare`](Self::payload_spare) returned as the next payload
    /// bytes: unmasks them in place, checks them if they are text, and
    /// returns the message they complete, if they do.
    ///
    /// # Safety
    ///
    /// The caller has written (initialized) those `n` bytes, and has called
    /// nothing else on this decoder since `payload_spare`.
    ///
    /// # Panics
    ///
    /// If no data frame is in progress, or `n` is longer than the slice.
    pub unsafe fn commit_payload(&mut self, n: usize) -> Result<Option<Decoded>, ProtocolError> {
        let frame = self.frame.expect("a data frame in progress");
        let start = self.buffer.len();
        let end = start + n;
        assert!(
            !frame.opcode.is_control()
                && n as u64 <= frame.remaining
                && end <= self.buffer.capacity(),
            "commit_payload: {n} bytes do not fit what payload_spare offered"
        );
        // SAFETY: the assertion keeps `end` within the capacity, and the
        // caller initialized the `n` bytes of spare capacity after `start`.
        unsafe { self.buffer.set_len(end) };
        let mut offset = frame.done;
        let mut block_start = start;
        while block_start < end {
            let block_end = (block_start + BLOCK).min(end);
            if let Some(key) = frame.mask {
                apply_mask(&mut self.buffer[block_start..block_end], key, offset);
            }
            offset += block_end - block_start;
            self.check_text(block_end)?;
            block_start = block_end;
        }
        self.advance_frame(n)
    }

    /// Bytes held for a message or control frame in progress.
    pub fn buffered(&self) -> usize {
        self.buffer.len() + self.control.len() + self.header_len
    }

    /// Frees the payload buffers when nothing is in progress. A connection
    /// calls it when the peer falls silent, so idle connections cost almost
    /// no memory.
    pub fn release_buffers(&mut self) {
        if self.buffer.is_empty() {
            self.buffer = BytesMut::new();
        }
        if self.control.is_empty() {
            self.control = Vec::new();
        }
    }

    fn read_header(&mut self, input: &mut &[u8]) -> Result<Option<FrameInProgress>, ProtocolError> {
        if self.header_len == 0 {
            // Fast path: the whole header is in this input.
            if let Some((header, len)) = Header::parse(input)? {
                *input = &input[len..];
                return self.start_frame(header).map(Some);
            }
        }
        let take = (MAX_HEADER_LEN - self.header_len).min(input.len());
        let before = self.header_len;
        self.header[before..before + take].copy_from_slice(&input[..take]);
        self.header_len += take;
        match Header::parse(&self.header[..self.header_len])? {
            Some((header, len)) => {
                *input = &input[len - before..];
                self.header_len = 0;
                self.start_frame(header).map(Some)
            }
            None => {
                *input = &input[take..];
                Ok(None)
            }
        }
    }

    fn start_frame(&mut self, header: Header) -> Result<FrameInProgress, ProtocolError> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        if header.rsv != 0 {
            return Err(ProtocolError::ReservedBits(header.rsv));
        }
        let opcode = header.opcode;
        if opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if header.payload_len > 125 {
                return Err(ProtocolError::ControlTooLarge(header.payload_len));
            }
        } else {
            match (opcode, self.message) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Text | Opcode::Binary, Some(_)) => {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                _ => {}
            }
            if header.payload_len > self.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooLarge {
                    size: header.payload_len,
                    max: self.max_frame_size,
                });
            }
            let total = self.buffer.len() as u64 + header.payload_len;
            if total > self.max_message_size as u64 {
                return Err(ProtocolError::MessageTooLarge {
                    size: total,
                    max: self.max_message_size,
                });
            }
            if opcode != Opcode::Continuation {
                self.message = Some(opcode);
                self.utf8 = Utf8Validator::default();
            }
        }
        Ok(FrameInProgress {
            opcode,
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            done: 0,
        })
    }

    fn append_payload(
        &mut self,
        chunk: &[u8],
        frame: &FrameInProgress,
    ) -> Result<(), ProtocolError> {
        self.make_room(frame, chunk.len(), chunk.len());
        let mut offset = frame.done;
        for block in chunk.chunks(BLOCK) {
            match frame.mask {
                Some(key) => extend_masked(&mut self.buffer, block, key, offset),
                None => self.buffer.extend_from_slice(block),
            }
            offset += block.len();
            self.check_text(self.buffer.len())?;
        }
        Ok(())
    }

    /// Makes room for at least `needed` more payload bytes of `frame`, of
    /// which `incoming` have arrived. The buffer holds the rest of the frame,
    /// but never more than four times what has actually arrived, or the size
    /// of the peer's previous message: a peer announcing 16 MiB and sending
    /// one byte gets a small buffer, and one that keeps sending large
    /// messages gets room for the whole of each at once. Growing copies what
    /// the buffer holds, so the steps are large: a frame whose first read
    /// brings a quarter of it is never copied, and one that arrives 64 KiB at
    /// a time is copied a quarter of its size again in all. Messages start
    /// with room for at least `SMALL_CHUNK` bytes, so a run of small ones is
    /// split off one allocation.
    fn make_room(&mut self, frame: &FrameInProgress, incoming: usize, needed: usize) {
        let len = self.buffer.len();
        let spare = self.buffer.capacity() - len;
        let arrived = (len + incoming).max(self.read_buffer_size) as u64;
        let allowed = (4 * arrived).max(self.last_message_size as u64);
        let target = (len as u64 + frame.remaining).min(allowed) as usize;
        if len == 0 && target >= LARGE {
            // Nothing to copy: a large message starts in the room left
            // after the last one only if it all fits there, or it would be
            // copied out of it later; that room includes the whole
            // allocation once the earlier messages in it are dropped.
            // Otherwise in a buffer of exactly its size: `reserve` rounds
            // up, leaving room that no message of this size fits in.
            if spare < target && !self.buffer.try_reclaim(target) {
                self.buffer = BytesMut::with_capacity(target);
            }
        } else if spare < needed {
            let room = if len == 0 {
                target.max(SMALL_CHUNK)
            } else {
                target - len
            };
            self.buffer.reserve(room);
        }
    }

    /// Checks the text message in progress up to `end`, the end of the bytes
    /// just written, so they are validated while still in cache.
    fn check_text(&mut self, end: usize) -> Result<(), ProtocolError> {
        if self.message == Some(Opcode::Text) {
            self.utf8
                .feed(&self.buffer[..end], false)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Counts `n` more payload bytes of the frame in progress, and finishes
    /// the frame if they were its last.
    fn advance_frame(&mut self, n: usize) -> Result<Option<Decoded>, ProtocolError> {
        let frame = self.frame.as_mut().expect("frame in progress");
        frame.remaining -= n as u64;
        frame.done += n;
        if frame.remaining == 0 {
            self.finish_frame()
        } else {
            Ok(None)
        }
    }

    fn finish_frame(&mut self) -> Result<Option<Decoded>, ProtocolError> {
        let frame = self.frame.take().expect("frame in progress");
        if !frame.opcode.is_control() {
            self.last_frame_large = frame.done >= LARGE;
        }
        let item = match frame.opcode {
            Opcode::Ping => Decoded::Ping(Bytes::copy_from_slice(&self.control)),
            Opcode::Pong => Decoded::Pong(Bytes::copy_from_slice(&self.control)),
            Opcode::Close => Decoded::Close(parse_close(&self.control)?),
            _ if !frame.fin => return Ok(None),
            _ => {
                let opcode = self.message.take().expect("message in progress");
                if opcode == Opcode::Text {
                    self.utf8
                        .feed(&self.buffer, true)
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                let payload = self.buffer.split().freeze();
                self.last_message_size = payload.len();
                return Ok(Some(Decoded::Message(if opcode == Opcode::Text {
                    Message::Text(Utf8Bytes::from_validated(payload))
                } else {
                    Message::Binary(payload)
                })));
            }
        };
        self.control.clear();
        Ok(Some(item))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::TruncatedCloseCode),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::new(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(ProtocolError::InvalidCloseCode(code.as_u16()));
            }
            let reason =
                std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

#[cfg(test)]
mod tests;

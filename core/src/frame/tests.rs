use super::*;
use crate::message::Message;
use crate::testing::Frame;

fn decoder(role: Role) -> Decoder {
    Decoder::new(role, &Config::default())
}

/// Decodes everything in `input`, stopping at the first error.
fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> Result<Vec<Decoded>, ProtocolError> {
    let mut out = Vec::new();
    while let Some(item) = decoder.decode(&mut input)? {
        out.push(item);
    }
    assert!(input.is_empty(), "decoder stopped with input left");
    Ok(out)
}

/// Decodes `input` one byte at a time.
fn decode_bytewise(decoder: &mut Decoder, input: &[u8]) -> Result<Vec<Decoded>, ProtocolError> {
    let mut out = Vec::new();
    for byte in input.chunks(1) {
        out.extend(decode_all(decoder, byte)?);
    }
    Ok(out)
}

fn both_ways(role: Role, input: &[u8]) -> Result<Vec<Decoded>, ProtocolError> {
    let whole = decode_all(&mut decoder(role), input);
    let bytewise = decode_bytewise(&mut decoder(role), input);
    assert_eq!(whole, bytewise, "chunking changed the result");
    whole
}

fn text(s: &str) -> Decoded {
    Decoded::Message(Message::text(s))
}

// RFC 6455 §5.7, every example.

#[test]
fn rfc_single_frame_unmasked_text() {
    let wire = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(both_ways(Role::Client, &wire), Ok(vec![text("Hello")]));
}

#[test]
fn rfc_single_frame_masked_text() {
    let wire = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(both_ways(Role::Server, &wire), Ok(vec![text("Hello")]));
}

#[test]
fn rfc_fragmented_unmasked_text() {
    let wire = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    assert_eq!(both_ways(Role::Client, &wire), Ok(vec![text("Hello")]));
}

#[test]
fn rfc_unmasked_ping_and_masked_pong() {
    let ping = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    assert_eq!(
        both_ways(Role::Client, &ping),
        Ok(vec![Decoded::Ping(Bytes::from_static(b"Hello"))])
    );
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        both_ways(Role::Server, &pong),
        Ok(vec![Decoded::Pong(Bytes::from_static(b"Hello"))])
    );
}

#[test]
fn rfc_256_bytes_and_64_kib_binary() {
    for (len, header) in [
        (256usize, vec![0x82, 0x7E, 0x01, 0x00]),
        (65536, vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
    ] {
        let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let mut wire = header.clone();
        wire.extend_from_slice(&payload);
        let decoded = decode_all(&mut decoder(Role::Client), &wire).unwrap();
        assert_eq!(
            decoded,
            vec![Decoded::Message(Message::binary(payload.clone()))]
        );
        let encoded = Header {
            fin: true,
            rsv: 0,
            opcode: Opcode::Binary,
            mask: None,
            payload_len: len as u64,
        }
        .encode();
        assert_eq!(encoded.as_slice(), &header[..]);
    }
}

#[test]
fn encode_uses_shortest_length_form_at_each_boundary() {
    for (len, header_len) in [(0u64, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
        let header = Header {
            fin: false,
            rsv: 0,
            opcode: Opcode::Continuation,
            mask: Some([1, 2, 3, 4]),
            payload_len: len,
        };
        let encoded = header.encode();
        assert_eq!(encoded.as_slice().len(), header_len + 4);
        assert_eq!(
            Header::parse(encoded.as_slice()),
            Ok(Some((header, header_len + 4)))
        );
        // Every proper prefix is incomplete, not an error.
        for cut in 0..encoded.as_slice().len() {
            assert_eq!(Header::parse(&encoded.as_slice()[..cut]), Ok(None));
        }
    }
}

// The rules a decoder enforces, each with its close code.

fn first_error(role: Role, wire: &[u8]) -> ProtocolError {
    both_ways(role, wire).expect_err("must fail")
}

#[test]
fn masking_rules_follow_the_role() {
    assert_eq!(
        first_error(Role::Server, &[0x81, 0x00]),
        ProtocolError::UnmaskedClientFrame
    );
    assert_eq!(
        first_error(Role::Client, &[0x81, 0x80, 1, 2, 3, 4]),
        ProtocolError::MaskedServerFrame
    );
    assert_eq!(
        ProtocolError::UnmaskedClientFrame.close_code(),
        CloseCode::PROTOCOL_ERROR
    );
}

#[test]
fn reserved_bits_and_opcodes_are_protocol_errors() {
    for rsv in 1..8u8 {
        assert_eq!(
            first_error(Role::Client, &[0x81 | (rsv << 4), 0]),
            ProtocolError::ReservedBits(rsv)
        );
    }
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let error = first_error(Role::Client, &[0x80 | opcode, 0]);
        assert_eq!(error, ProtocolError::ReservedOpcode(opcode));
        assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
    }
}

#[test]
fn control_frame_rules() {
    assert_eq!(
        first_error(Role::Client, &[0x09, 0x00]),
        ProtocolError::FragmentedControl
    );
    let mut big_ping = vec![0x89, 126, 0, 126];
    big_ping.extend_from_slice(&[0; 126]);
    assert_eq!(
        first_error(Role::Client, &big_ping),
        ProtocolError::ControlTooLarge(126)
    );
    // 125 bytes is fine.
    let mut ping = vec![0x89, 125];
    ping.extend_from_slice(&[7; 125]);
    assert_eq!(
        both_ways(Role::Client, &ping),
        Ok(vec![Decoded::Ping(Bytes::from(vec![7; 125]))])
    );
}

#[test]
fn control_frames_may_interleave_with_fragments() {
    let wire = [
        0x01, 0x02, b'a', b'b', 0x89, 0x01, b'p', 0x8A, 0x00, 0x80, 0x01, b'c',
    ];
    assert_eq!(
        both_ways(Role::Client, &wire),
        Ok(vec![
            Decoded::Ping(Bytes::from_static(b"p")),
            Decoded::Pong(Bytes::new()),
            text("abc")
        ])
    );
}

#[test]
fn continuation_rules() {
    assert_eq!(
        first_error(Role::Client, &[0x80, 0x00]),
        ProtocolError::UnexpectedContinuation
    );
    assert_eq!(
        first_error(Role::Client, &[0x01, 0x00, 0x81, 0x00]),
        ProtocolError::ExpectedContinuation
    );
    assert_eq!(
        first_error(Role::Client, &[0x02, 0x00, 0x02, 0x00]),
        ProtocolError::ExpectedContinuation
    );
    // Empty fragments are legal, and so is an empty message.
    assert_eq!(
        both_ways(Role::Client, &[0x01, 0x00, 0x00, 0x00, 0x80, 0x00]),
        Ok(vec![text("")])
    );
}

#[test]
fn length_with_top_bit_set_is_rejected() {
    let wire = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 1];
    assert_eq!(
        first_error(Role::Client, &wire),
        ProtocolError::InvalidLength
    );
}

#[test]
fn size_limits_fail_at_the_header_with_1009() {
    let config = Config {
        max_frame_size: 100,
        max_message_size: 150,
        ..Config::default()
    };
    let mut d = Decoder::new(Role::Client, &config);
    let error = decode_all(&mut d, &[0x82, 101]).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::FrameTooLarge {
            size: 101,
            max: 100
        }
    );
    assert_eq!(error.close_code(), CloseCode::MESSAGE_TOO_BIG);

    let mut d = Decoder::new(Role::Client, &config);
    let mut wire = vec![0x02, 100];
    wire.extend_from_slice(&[0; 100]);
    wire.extend_from_slice(&[0x80, 51]);
    let error = decode_all(&mut d, &wire).unwrap_err();
    assert_eq!(
        error,
        ProtocolError::MessageTooLarge {
            size: 151,
            max: 150
        }
    );
    assert_eq!(
        d.buffered(),
        100,
        "nothing of the oversized frame was buffered"
    );
}

#[test]
fn invalid_utf8_fails_fast_inside_a_partial_frame() {
    let mut d = decoder(Role::Client);
    // A 100-byte text frame whose 3rd byte is invalid: the error comes before
    // the rest of the frame arrives.
    let mut input: &[u8] = &[0x81, 100, b'o', b'k', 0xFF];
    assert_eq!(d.decode(&mut input), Err(ProtocolError::InvalidUtf8));
    assert_eq!(
        ProtocolError::InvalidUtf8.close_code(),
        CloseCode::INVALID_PAYLOAD
    );
    // A code point split across fragments is fine.
    let euro = "€".as_bytes();
    let wire = [
        0x01, 0x01, euro[0], 0x00, 0x01, euro[1], 0x80, 0x01, euro[2],
    ];
    assert_eq!(both_ways(Role::Client, &wire), Ok(vec![text("€")]));
    // But a message may not end inside one.
    assert_eq!(
        first_error(Role::Client, &[0x81, 0x02, euro[0], euro[1]]),
        ProtocolError::InvalidUtf8
    );
}

#[test]
fn binary_payloads_are_not_utf8_checked() {
    assert_eq!(
        both_ways(Role::Client, &[0x82, 0x01, 0xFF]),
        Ok(vec![Decoded::Message(Message::binary(vec![0xFF]))])
    );
}

#[test]
fn close_payload_rules() {
    assert_eq!(
        both_ways(Role::Client, &[0x88, 0x00]),
        Ok(vec![Decoded::Close(None)])
    );
    assert_eq!(
        first_error(Role::Client, &[0x88, 0x01, 0x03]),
        ProtocolError::TruncatedCloseCode
    );
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
        4000, 4999,
    ] {
        assert_eq!(
            both_ways(Role::Client, &Frame::close(code, "why").encode()),
            Ok(vec![Decoded::Close(Some(CloseFrame {
                code: CloseCode::new(code),
                reason: "why".into()
            }))]),
            "code {code}"
        );
    }
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        assert_eq!(
            first_error(Role::Client, &Frame::close(code, "").encode()),
            ProtocolError::InvalidCloseCode(code)
        );
    }
    let error = first_error(Role::Client, &Frame::new(0x8, *b"\x03\xe8\xff").encode());
    assert_eq!(error, ProtocolError::InvalidCloseReason);
    assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn decode_returns_one_item_at_a_time_and_keeps_the_rest() {
    let mut d = decoder(Role::Client);
    let mut input: &[u8] = &[0x81, 0x01, b'a', 0x81, 0x01, b'b'];
    assert_eq!(d.decode(&mut input), Ok(Some(text("a"))));
    assert_eq!(input, &[0x81, 0x01, b'b']);
    assert_eq!(d.decode(&mut input), Ok(Some(text("b"))));
    assert_eq!(d.decode(&mut input), Ok(None));
}

#[test]
fn a_large_announced_frame_does_not_allocate_what_has_not_arrived() {
    let mut d = decoder(Role::Client);
    // 16 MiB announced, 10 bytes sent.
    let mut input: &[u8] = &[
        0x82, 0x7F, 0, 0, 0, 0, 1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
    ];
    assert_eq!(d.decode(&mut input), Ok(None));
    assert_eq!(d.buffered(), 10);
    assert!(
        d.buffer.capacity() <= 64 * 1024,
        "capacity {}",
        d.buffer.capacity()
    );
}

#[test]
fn small_messages_share_one_allocation() {
    let mut d = decoder(Role::Server);
    let mut wire = Vec::new();
    for payload in [b"first", b"secnd", b"third"] {
        wire.extend(Frame::binary(*payload).masked([1, 2, 3, 4]).encode());
    }
    let messages = decode_all(&mut d, &wire).unwrap();
    // All three stay alive, each right after the one before in memory.
    let starts: Vec<_> = messages
        .iter()
        .map(|item| match item {
            Decoded::Message(message) => message.payload().as_ptr() as usize,
            other => panic!("expected a message, got {other:?}"),
        })
        .collect();
    assert_eq!(starts, [starts[0], starts[0] + 5, starts[0] + 10]);
}

#[test]
fn release_buffers_frees_idle_memory_only() {
    let mut d = decoder(Role::Client);
    decode_all(&mut d, &[0x81, 0x01, b'a']).unwrap();
    assert!(d.buffer.capacity() > 0);
    d.release_buffers();
    assert_eq!(d.buffer.capacity(), 0);
    // A partial message survives a release.
    decode_all(&mut d, &[0x01, 0x01, b'a']).unwrap();
    d.release_buffers();
    assert_eq!(
        decode_all(&mut d, &[0x80, 0x01, b'b']),
        Ok(vec![text("ab")])
    );
}

// Reading straight into the message buffer.

/// Decodes `wire` as a driver reads it: into `payload_spare` while the
/// decoder offers room, at most `read` bytes at a time, and through
/// `decode` otherwise.
fn decode_reading(
    decoder: &mut Decoder,
    mut wire: &[u8],
    read: usize,
) -> Result<Vec<Decoded>, ProtocolError> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        if let Some(room) = decoder.payload_spare() {
            let n = room.len().min(read).min(wire.len());
            for (slot, byte) in room.iter_mut().zip(&wire[..n]) {
                slot.write(*byte);
            }
            wire = &wire[n..];
            // SAFETY: the loop above wrote the first `n` bytes of `room`.
            out.extend(unsafe { decoder.commit_payload(n) }?);
        } else {
            let (chunk, rest) = wire.split_at(read.min(wire.len()));
            wire = rest;
            out.extend(decode_all(decoder, chunk)?);
        }
    }
    Ok(out)
}

#[test]
fn payload_read_into_the_spare_room_is_unmasked_and_checked() {
    let body = "héllo wörld ".repeat(3000);
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let wire = Frame::text(&body).masked(key).encode();
    for read in [1000, 4096, 65_536] {
        let mut d = decoder(Role::Server);
        assert_eq!(decode_reading(&mut d, &wire, read), Ok(vec![text(&body)]));
    }
    // Invalid UTF-8 deep in the direct part fails as it does through decode.
    let mut bad = body.clone().into_bytes();
    bad[30_000] = 0xff;
    let wire = Frame::new(0x1, bad).masked(key).encode();
    assert_eq!(
        decode_reading(&mut decoder(Role::Server), &wire, 4096),
        Err(ProtocolError::InvalidUtf8)
    );
}

#[test]
fn payload_spare_is_offered_only_for_large_remainders_of_data_frames() {
    let mut d = decoder(Role::Client);
    assert!(d.payload_spare().is_none(), "between frames");
    let ping = Frame::ping([1; 100]).encode();
    decode_all(&mut d, &ping[..10]).unwrap();
    assert!(d.payload_spare().is_none(), "in a control frame");
    decode_all(&mut d, &ping[10..]).unwrap();

    let wire = Frame::binary([7; 10_000]).encode();
    // Header and 6 000 bytes in: 4 000 to come, less than read_buffer_size.
    decode_all(&mut d, &wire[..4 + 6_000]).unwrap();
    assert!(d.payload_spare().is_none(), "a small remainder");
    let mut d = decoder(Role::Client);
    decode_all(&mut d, &wire[..4]).unwrap();
    let room = d.payload_spare().expect("a large remainder");
    assert!((4096..=10_000).contains(&room.len()), "{}", room.len());
}

#[test]
fn reads_are_cut_short_only_after_a_large_frame() {
    const CAPACITY: usize = 256 * 1024;
    let read_buffer_size = Config::default().read_buffer_size;
    let mut d = decoder(Role::Client);
    assert_eq!(d.read_size(CAPACITY), CAPACITY, "a fresh connection");
    decode_all(&mut d, &Frame::binary([1; 60_000]).encode()).unwrap();
    assert_eq!(
        d.read_size(CAPACITY),
        CAPACITY,
        "after a message under 64 KiB"
    );

    let wire = Frame::binary([2; 100_000]).encode();
    decode_all(&mut d, &wire).unwrap();
    assert_eq!(d.read_size(CAPACITY), read_buffer_size, "between frames");
    // All of the next frame but 1 000 bytes: those, and room for the header
    // and the start of the frame after.
    decode_all(&mut d, &wire[..wire.len() - 1_000]).unwrap();
    assert_eq!(d.read_size(CAPACITY), 1_000 + read_buffer_size);
    assert_eq!(d.read_size(100), 100, "never more than the room");
    decode_all(&mut d, &wire[wire.len() - 1_000..]).unwrap();

    decode_all(&mut d, &Frame::binary([3; 10]).encode()).unwrap();
    assert_eq!(
        d.read_size(CAPACITY),
        CAPACITY,
        "after a small message again"
    );

    // A large message in small fragments: many frames per read still.
    for (fin, opcode) in [(false, 2), (false, 0), (true, 0)] {
        let mut fragment = vec![u8::from(fin) << 7 | opcode, 126, 0x80, 0];
        fragment.extend([4; 32 * 1024]);
        decode_all(&mut d, &fragment).unwrap();
        assert_eq!(d.read_size(CAPACITY), CAPACITY, "after a 32 KiB fragment");
    }
}

#[test]
fn a_peer_that_sent_a_large_message_gets_room_for_the_next_at_once() {
    let payload = vec![9; 1 << 20];
    let wire = Frame::binary(payload.clone()).encode();
    let mut d = decoder(Role::Client);
    // The first message grows with what arrives, 64 KiB at a time.
    assert_eq!(decode_reading(&mut d, &wire, 65_536).unwrap().len(), 1);
    // The next one starts in a buffer of its full size, never moved.
    decode_all(&mut d, &wire[..10 + 65_536]).unwrap();
    assert!(
        d.buffer.capacity() >= payload.len(),
        "{}",
        d.buffer.capacity()
    );
    let start = d.buffer.as_ptr();
    let rest = decode_reading(&mut d, &wire[10 + 65_536..], 65_536).unwrap();
    assert!(matches!(&rest[..], [Decoded::Message(Message::Binary(b))] if b.as_ptr() == start));
}

#[test]
fn a_large_message_does_not_start_in_leftover_room_it_would_outgrow() {
    let mut d = decoder(Role::Client);
    // A peer whose last message had 200 001 bytes, and 200 000 bytes of
    // room left in the allocation of an earlier message still alive.
    d.last_message_size = 200_001;
    let mut buffer = BytesMut::with_capacity(300_000);
    buffer.extend_from_slice(&[0; 100_000]);
    let earlier = buffer.split().freeze();
    d.buffer = buffer;
    // The next message starts in a buffer of its own instead of being
    // copied out of that room when it fills up.
    let wire = Frame::binary(vec![2; 200_001]).encode();
    decode_all(&mut d, &wire[..10 + 1000]).unwrap();
    let start = d.buffer.as_ptr();
    let rest = decode_all(&mut d, &wire[10 + 1000..]).unwrap();
    assert!(matches!(&rest[..], [Decoded::Message(Message::Binary(b))] if b.as_ptr() == start));
    drop(earlier);
}

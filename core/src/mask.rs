//! Payload masking (RFC 6455 §5.3).
//!
//! Masking is an XOR with a repeating 4-byte key, so the same function masks
//! and unmasks. It runs a `u64` word at a time; LLVM vectorises the word loop,
//! which is what lets unmasking keep up with `memcpy`.

/// XORs `data` with `key`, as if `data` started `offset` bytes into the
/// masked payload.
///
/// Calling it on consecutive pieces of one payload, with `offset` counting the
/// bytes already processed, gives the same result as one call on the whole.
///
/// ```
/// use sockeye_core::apply_mask;
///
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut data = *b"Hello";
/// apply_mask(&mut data, key, 0);
/// assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]); // RFC 6455 §5.7
/// let (head, tail) = data.split_at_mut(2);
/// apply_mask(head, key, 0);
/// apply_mask(tail, key, 2);
/// assert_eq!(&data, b"Hello");
/// ```
#[inline]
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    // Four words per step gives LLVM a 32-byte body to vectorise.
    let mut blocks = data.chunks_exact_mut(32);
    for block in &mut blocks {
        for lane in block.chunks_exact_mut(8) {
            let value = u64::from_ne_bytes(lane.try_into().expect("8-byte lane")) ^ word;
            lane.copy_from_slice(&value.to_ne_bytes());
        }
    }
    // A remainder of fewer than 32 bytes starts at a multiple of 4, so the key
    // phase is unchanged.
    for (i, byte) in blocks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i & 3];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(data: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in data.iter_mut().enumerate() {
            *b ^= key[(i + offset) % 4];
        }
    }

    #[test]
    fn matches_bytewise_definition_for_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..200 {
            for offset in 0..8 {
                let original: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = original.clone();
                let mut slow = original.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unaligned_start_is_handled() {
        let key = [1, 2, 3, 4];
        let mut buf = vec![0u8; 101];
        let mut expected = buf.clone();
        apply_mask(&mut buf[3..], key, 0);
        naive(&mut expected[3..], key, 0);
        assert_eq!(buf, expected);
    }
}

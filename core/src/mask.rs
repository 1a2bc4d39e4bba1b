//! Payload masking (RFC 6455 §5.3).
//!
//! Masking is an XOR with a repeating 4-byte key, so the same function masks
//! and unmasks. It runs on 64-byte blocks of `u64` lanes, which LLVM turns
//! into full-width vector XORs for whatever target features it compiles
//! for; that is what lets unmasking keep up with `memcpy`.
//!
//! A portable x86-64 build may only assume SSE2, so on x86-64 the loops are
//! compiled a second time for AVX2 and chosen at run time for payloads of
//! [`WIDE`] bytes or more. In a large-message echo server, unmasking is
//! the largest cost outside the kernel, and the AVX2 loops cut it
//! (BENCHMARKS.md, "AVX2 masking chosen at run time").

use std::mem::MaybeUninit;

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
    #[cfg(target_arch = "x86_64")]
    if wide(data.len()) {
        // SAFETY: `wide` checked that this CPU has AVX2, the one feature the
        // function enables.
        unsafe { avx2::xor_in_place(data, key, offset) };
        return;
    }
    xor_in_place(data, key, offset);
}

/// Appends `src` XORed with `key` (at phase `offset`) to `buf`, in one pass.
///
/// Copying and then unmasking in place reads and writes every byte twice;
/// this writes each byte once, straight into the buffer's spare capacity.
/// It is what lets a masked frame decode at close to `memcpy` speed
/// (benches/throughput.rs, `decode_binary`).
pub(crate) fn extend_masked(buf: &mut bytes::BytesMut, src: &[u8], key: [u8; 4], offset: usize) {
    buf.reserve(src.len());
    let start = buf.len();
    mask_into(&mut buf.spare_capacity_mut()[..src.len()], src, key, offset);
    // SAFETY: `mask_into` wrote every one of the `src.len()` bytes after
    // `start` (all of the slice it got, which is exactly that long), and
    // `reserve` made room for them.
    unsafe { buf.set_len(start + src.len()) };
}

/// Writes `src` XORed with `key` (at phase `offset`) to `dst`, which is
/// exactly as long.
#[inline]
fn mask_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
    #[cfg(target_arch = "x86_64")]
    if wide(src.len()) {
        // SAFETY: `wide` checked that this CPU has AVX2, the one feature the
        // function enables.
        unsafe { avx2::xor_into(dst, src, key, offset) };
        return;
    }
    xor_into(dst, src, key, offset);
}

/// Whether `len` bytes go to the AVX2 compilation: from [`WIDE`] bytes on,
/// on a CPU that has it. The check is an atomic load once the standard
/// library has asked the CPU.
#[cfg(target_arch = "x86_64")]
#[inline]
fn wide(len: usize) -> bool {
    len >= WIDE && std::arch::is_x86_feature_detected!("avx2")
}

/// Payloads from this size on are worth the feature check and a call to the
/// AVX2 loops; smaller ones take fewer instructions than the check.
#[cfg(target_arch = "x86_64")]
const WIDE: usize = 256;

/// The loops, compiled once more with AVX2 enabled.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::mem::MaybeUninit;

    #[target_feature(enable = "avx2")]
    pub(super) fn xor_in_place(data: &mut [u8], key: [u8; 4], offset: usize) {
        super::xor_in_place(data, key, offset);
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn xor_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
        super::xor_into(dst, src, key, offset);
    }
}

/// The body of [`apply_mask`], inlined into each of its compilations.
#[inline(always)]
fn xor_in_place(data: &mut [u8], key: [u8; 4], offset: usize) {
    let word = key_word(key, offset);
    let (blocks, rest) = data.as_chunks_mut::<64>();
    for block in blocks {
        xor_lanes(block.as_chunks_mut::<8>().0, word);
    }
    // Every piece below starts at a multiple of 8, so the phase is unchanged.
    let (lanes, tail) = rest.as_chunks_mut::<8>();
    xor_lanes(lanes, word);
    for (byte, key) in tail.iter_mut().zip(word.to_ne_bytes()) {
        *byte ^= key;
    }
}

/// The body of [`mask_into`], inlined into each of its compilations.
#[inline(always)]
fn xor_into(dst: &mut [MaybeUninit<u8>], src: &[u8], key: [u8; 4], offset: usize) {
    let word = key_word(key, offset);
    // 64-byte blocks of u64 lanes, as in `apply_mask`: the shape LLVM turns
    // into full-width vector loads, XORs and stores.
    let (dst_blocks, dst_rest) = dst.as_chunks_mut::<64>();
    let (src_blocks, src_rest) = src.as_chunks::<64>();
    for (dst, src) in dst_blocks.iter_mut().zip(src_blocks) {
        xor_copy_lanes(dst.as_chunks_mut::<8>().0, src.as_chunks::<8>().0, word);
    }
    let (dst_lanes, dst_tail) = dst_rest.as_chunks_mut::<8>();
    let (src_lanes, src_tail) = src_rest.as_chunks::<8>();
    xor_copy_lanes(dst_lanes, src_lanes, word);
    for ((dst, src), key) in dst_tail.iter_mut().zip(src_tail).zip(word.to_ne_bytes()) {
        dst.write(src ^ key);
    }
}

/// The key as a `u64` whose bytes in memory are the key starting at phase
/// `offset`, twice.
#[inline(always)]
fn key_word(key: [u8; 4], offset: usize) -> u64 {
    // Rotating the bytes left is rotating the little-endian word right, which
    // stays in registers; a byte-array rotation was an out-of-line call that
    // cost more than the XOR itself on small frames.
    let phased = u32::from_le_bytes(key).rotate_right(8 * (offset % 4) as u32);
    u64::from_ne_bytes((u64::from(phased) * 0x1_0000_0001).to_le_bytes())
}

#[inline(always)]
fn xor_copy_lanes(dst: &mut [[MaybeUninit<u8>; 8]], src: &[[u8; 8]], word: u64) {
    for (dst, src) in dst.iter_mut().zip(src) {
        *dst = (u64::from_ne_bytes(*src) ^ word)
            .to_ne_bytes()
            .map(MaybeUninit::new);
    }
}

#[inline(always)]
fn xor_lanes(lanes: &mut [[u8; 8]], word: u64) {
    for lane in lanes {
        *lane = (u64::from_ne_bytes(*lane) ^ word).to_ne_bytes();
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
        // Past `WIDE`, so the run-time-chosen loops are covered too.
        for len in 0..600 {
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
    fn extend_masked_equals_copy_then_mask() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        for len in 0..600 {
            for offset in 0..5 {
                let src: Vec<u8> = (0..len).map(|i| (i * 13 + 1) as u8).collect();
                let mut buf = bytes::BytesMut::from(&b"prefix"[..]);
                extend_masked(&mut buf, &src, key, offset);
                let mut expected = b"prefix".to_vec();
                let mut tail = src.clone();
                naive(&mut tail, key, offset);
                expected.extend(tail);
                assert_eq!(&buf[..], &expected[..], "len {len} offset {offset}");
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

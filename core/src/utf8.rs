//! UTF-8 for text messages: an incremental, fail-fast validator and
//! [`Utf8Bytes`], the validated payload handed to the application.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// Validates a byte stream as UTF-8 while it arrives in pieces.
///
/// It fails as soon as the bytes seen so far cannot start valid UTF-8, even in
/// the middle of a frame: `0xF4 0x90` fails at once, because no continuation
/// can make it valid (RFC 6455 §8.1, "fail fast"). Each byte is examined once,
/// apart from at most three bytes of a split code point.
#[derive(Debug, Default, Clone)]
pub(crate) struct Utf8Validator {
    /// Bytes of the stream known to be valid, complete code points.
    valid: usize,
}

/// The stream holds a byte sequence that is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Checks `stream` (everything received so far) past the validated
    /// prefix. `complete` says no more bytes will follow, so a split code
    /// point at the end is an error too.
    pub(crate) fn feed(&mut self, stream: &[u8], complete: bool) -> Result<(), InvalidUtf8> {
        let pending = &stream[self.valid..];
        // simdutf8's `compat` API reports errors exactly as std does, at 8x
        // its speed on multi-byte text (benches/throughput.rs, `utf8`).
        match simdutf8::compat::from_utf8(pending) {
            Ok(_) => {
                self.valid = stream.len();
                Ok(())
            }
            Err(e) if e.error_len().is_none() && !complete => {
                self.valid += e.valid_up_to();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }
}

/// A text payload: [`Bytes`] that are known to be valid UTF-8.
///
/// It derefs to `str` without re-validating or copying: the bytes were checked
/// once, as they arrived, and are immutable from then on.
///
/// ```
/// use sockeye_core::Utf8Bytes;
///
/// let text = Utf8Bytes::from("héllo");
/// assert_eq!(text.len(), 6);
/// assert!(text.starts_with("hé"));
/// let again = Utf8Bytes::try_from(bytes::Bytes::from_static(b"ok")).unwrap();
/// assert_eq!(&*again, "ok");
/// assert!(Utf8Bytes::try_from(bytes::Bytes::from_static(b"\xff")).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes that the caller has validated.
    pub(crate) fn from_validated(bytes: Bytes) -> Self {
        debug_assert!(std::str::from_utf8(&bytes).is_ok());
        Self(bytes)
    }

    /// Wraps a static string without copying.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor either validates the bytes (`TryFrom`,
        // `from_validated` after `Utf8Validator` accepted them) or takes
        // them from a `str`, and `Bytes` never changes its contents, so they
        // are still valid UTF-8. Re-validating here would cost a full pass over
        // every text message on each access (see benches/throughput.rs).
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The underlying bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Utf8Bytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for Utf8Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl TryFrom<Bytes> for Utf8Bytes {
    type Error = std::str::Utf8Error;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(bytes: &[u8], split: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        let mut end = 0;
        while end < bytes.len() {
            end = (end + split).min(bytes.len());
            v.feed(&bytes[..end], false)?;
        }
        v.feed(bytes, true)
    }

    #[test]
    fn agrees_with_std_for_every_split() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf0\x90\x80\x80",
            b"\xf4\x8f\xbf\xbf",
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xed\xbf\xbf",
            b"abc\xf0\x9f\x98",
            b"",
        ];
        for sample in samples {
            for split in 1..=sample.len().max(1) {
                assert_eq!(
                    feed_in_pieces(sample, split).is_ok(),
                    std::str::from_utf8(sample).is_ok(),
                    "{sample:?} split {split}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_inside_an_incomplete_stream() {
        let mut v = Utf8Validator::default();
        // 0xF4 0x90 is above U+10FFFF whatever follows.
        assert_eq!(v.feed(b"ok\xf4\x90", false), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        // A lone 0xF4 could still become valid.
        assert_eq!(v.feed(b"ok\xf4", false), Ok(()));
        assert_eq!(v.feed(b"ok\xf4", true), Err(InvalidUtf8));
    }
}

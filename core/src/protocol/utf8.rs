//! Incremental UTF-8 validation, so an invalid text message fails at its first bad byte
//! even when that byte arrives in the middle of a fragment (RFC 6455 §8.1).

/// Validates a byte stream chunk by chunk; at most 3 bytes of an unfinished character are
/// carried from one chunk to the next.
#[derive(Debug, Default)]
pub struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// The stream is not UTF-8.
#[derive(Debug, PartialEq, Eq)]
pub struct InvalidUtf8;

fn char_width(lead: u8) -> usize {
    match lead {
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 1,
    }
}

impl Utf8Validator {
    /// Feeds the next chunk. Ok carries how many bytes at the end of the stream so far belong
    /// to a character that is not complete yet.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<usize, InvalidUtf8> {
        if self.pending_len > 0 {
            let need = char_width(self.pending[0]) - self.pending_len;
            let take = need.min(data.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&data[..take]);
            let filled = self.pending_len + take;
            match std::str::from_utf8(&self.pending[..filled]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    self.pending_len = filled;
                    return Ok(filled);
                }
                Err(_) => return Err(InvalidUtf8),
            }
            data = &data[take..];
        }
        match std::str::from_utf8(data) {
            Ok(_) => Ok(0),
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(tail.len())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// How many bytes of an unfinished character were fed last.
    pub fn pending_len(&self) -> usize {
        self.pending_len
    }

    /// Ends the stream: an unfinished character is an error.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(data: &[u8], piece: usize) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        for chunk in data.chunks(piece.max(1)) {
            v.feed(chunk)?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_in_any_split() {
        let text = "κόσμε, ☃ and 𝄞 — hello".as_bytes();
        for piece in 1..=text.len() {
            assert_eq!(feed_in_pieces(text, piece), Ok(()), "piece {piece}");
        }
    }

    #[test]
    fn invalid_byte_fails_before_the_stream_ends() {
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"ok \xce"), Ok(1));
        // 0xce must be followed by a continuation byte: fail at once, not at finish().
        assert_eq!(v.feed(b"A more"), Err(InvalidUtf8));
    }

    #[test]
    fn invalid_prefix_fails_at_its_first_byte() {
        // 0xed 0xa0 starts a UTF-16 surrogate: invalid although the character is incomplete.
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"\xed"), Ok(1));
        assert_eq!(v.feed(b"\xa0"), Err(InvalidUtf8));
        let mut v = Utf8Validator::default();
        assert_eq!(v.feed(b"\xf4\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_character_at_the_end_is_invalid() {
        assert_eq!(feed_in_pieces(b"abc\xe2\x82", 2), Err(InvalidUtf8));
    }
}

//! What the handshake targets share.

use ferrows_core::protocol::handshake::HandshakeLimits;

/// The default limits, and tight ones that the fuzzer's short inputs can exceed.
pub const LIMITS: [HandshakeLimits; 2] = [
    HandshakeLimits {
        max_head_bytes: 16 << 10,
        max_headers: 128,
        max_line_bytes: 8 << 10,
    },
    HandshakeLimits {
        max_head_bytes: 256,
        max_headers: 8,
        max_line_bytes: 64,
    },
];

/// A head parsed from `data` under `limits` (`headers` counts its headers), checked to stay
/// within them; None when it is incomplete (and then within the head limit) or refused.
pub fn within_limits<T, E>(
    parsed: Result<Option<(T, usize)>, E>,
    data: &[u8],
    limits: &HandshakeLimits,
    headers: impl Fn(&T) -> usize,
) -> Option<T> {
    match parsed {
        Ok(Some((head, used))) => {
            assert!(used <= data.len() && used <= limits.max_head_bytes);
            assert!(headers(&head) <= limits.max_headers);
            Some(head)
        }
        Ok(None) => {
            assert!(
                data.len() <= limits.max_head_bytes,
                "incomplete head over the limit"
            );
            None
        }
        Err(_) => None,
    }
}

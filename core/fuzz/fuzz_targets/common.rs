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

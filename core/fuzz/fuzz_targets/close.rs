//! Close frame payloads: any bytes parse to a close frame or a protocol error (1002, 1007),
//! and a parsed frame serializes back to the bytes it came from.
#![no_main]

use ferrows_core::protocol::close::{
    is_valid_code, parse_payload, payload, INVALID_DATA, NO_STATUS, PROTOCOL_ERROR,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| match parse_payload(data) {
    Ok(frame) => {
        assert!(frame.code == NO_STATUS || is_valid_code(frame.code));
        assert!(frame.reason.len() <= data.len());
        assert_eq!(payload(&frame), data, "round trip of {frame:?}");
    }
    Err((code, _)) => assert!(matches!(code, PROTOCOL_ERROR | INVALID_DATA), "{code}"),
});

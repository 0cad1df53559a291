//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use crate::error::CloseFrame;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The endpoint is going away (server shutdown).
pub const GOING_AWAY: u16 = 1001;
/// The peer broke the protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// No status code in the close frame (never sent on the wire).
pub const NO_STATUS: u16 = 1005;
/// The connection dropped without a close frame (never sent on the wire).
pub const ABNORMAL: u16 = 1006;
/// A text message was not UTF-8.
pub const INVALID_DATA: u16 = 1007;
/// A message broke the endpoint's policy (a broadcast's slow consumer, say).
pub const POLICY_VIOLATION: u16 = 1008;
/// A message or frame was larger than the limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// An unexpected condition, such as a keepalive timeout.
pub const INTERNAL_ERROR: u16 = 1011;
/// 1013: try again later (a server sheds a slow consumer).
pub const TRY_AGAIN_LATER: u16 = 1013;

/// Whether `code` may appear in a close frame: the codes RFC 6455 defines for the wire,
/// the IANA-registered 1012–1014, and the ranges for libraries and applications.
pub fn is_valid_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Why a received close payload is malformed: the close code to fail with, and a reason.
pub type CloseParseError = (u16, &'static str);

/// Parses a close frame payload; an empty payload means "no status" (1005).
pub fn parse_payload(payload: &[u8]) -> Result<CloseFrame, CloseParseError> {
    match payload.len() {
        0 => Ok(CloseFrame {
            code: NO_STATUS,
            reason: String::new(),
        }),
        1 => Err((PROTOCOL_ERROR, "close frame payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_code(code) {
                return Err((PROTOCOL_ERROR, "invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| (INVALID_DATA, "close reason is not UTF-8"))?;
            Ok(CloseFrame {
                code,
                reason: reason.to_owned(),
            })
        }
    }
}

/// Serializes a close payload; 1005 is sent as an empty payload.
pub fn payload(frame: &CloseFrame) -> Vec<u8> {
    if frame.code == NO_STATUS {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2 + frame.reason.len());
    out.extend_from_slice(&frame.code.to_be_bytes());
    out.extend_from_slice(frame.reason.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6455_7_4_1_valid_and_invalid_codes() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_code(code), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000] {
            assert!(!is_valid_code(code), "{code}");
        }
    }

    #[test]
    fn rfc6455_5_5_1_payload_round_trip_and_errors() {
        let frame = CloseFrame {
            code: 4001,
            reason: "bye ☃".into(),
        };
        assert_eq!(parse_payload(&payload(&frame)), Ok(frame));
        assert_eq!(parse_payload(b"").unwrap().code, NO_STATUS);
        assert_eq!(parse_payload(b"\x03").unwrap_err().0, PROTOCOL_ERROR);
        assert_eq!(parse_payload(b"\x03\xed").unwrap_err().0, PROTOCOL_ERROR);
        assert_eq!(parse_payload(b"\x03\xe8\xff").unwrap_err().0, INVALID_DATA);
    }
}

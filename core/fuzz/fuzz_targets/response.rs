//! The client's side of the opening handshake: any bytes as the server's response head.
//! Parsing never buffers past the limits; a response that validates is a 101 that selected
//! only what was offered.
//!
//! The key is random, so an input cannot carry its accept value: an accept value of the
//! RFC 6455 §1.3 sample stands for the right one, and is replaced before validation.
#![no_main]

mod common;

use std::sync::OnceLock;

use ferrows_core::protocol::handshake::{
    accept_response, ClientHandshake, ClientOptions, HandshakeLimits, Headers, Response,
};
use ferrows_core::protocol::uri::WsUri;
use libfuzzer_sys::fuzz_target;

/// The accept value of the RFC 6455 §1.3 sample key.
const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
const SUBPROTOCOLS: [&str; 2] = ["chat", "superchat"];
/// Offered besides permessage-deflate, which the default options offer themselves.
const EXTENSIONS: [&str; 1] = ["x-test"];

fuzz_target!(|data: &[u8]| {
    for limits in &common::LIMITS {
        check(data, limits);
    }
});

/// The handshake whose response is checked, and the accept value its key calls for.
fn handshake() -> &'static (ClientHandshake, String) {
    static HANDSHAKE: OnceLock<(ClientHandshake, String)> = OnceLock::new();
    HANDSHAKE.get_or_init(|| {
        let uri = WsUri::parse("ws://example.com/chat").expect("a valid URI");
        let options = ClientOptions {
            subprotocols: SUBPROTOCOLS.map(String::from).to_vec(),
            extensions: EXTENSIONS.map(String::from).to_vec(),
            ..ClientOptions::default()
        };
        let handshake = ClientHandshake::new(&uri, &options).expect("valid options");
        let accept = accept_response(handshake.key(), None, None, &Headers::new())
            .headers
            .get("Sec-WebSocket-Accept")
            .expect("an accept header")
            .to_owned();
        (handshake, accept)
    })
}

fn check(data: &[u8], limits: &HandshakeLimits) {
    let parsed = ClientHandshake::parse_response(data, limits);
    let Some(response) = common::within_limits(parsed, data, limits, |r| r.headers.len()) else {
        return;
    };
    assert!(response.body.is_empty());
    if let Some(length) = ClientHandshake::body_length(&response) {
        let value = response.headers.get("Content-Length");
        assert_eq!(value.map(str::parse), Some(Ok(length)));
    }
    let (handshake, accept) = handshake();
    let headers: Vec<(String, String)> = response
        .headers
        .iter()
        .map(|(name, value)| {
            let value = if value == SAMPLE_ACCEPT {
                accept
            } else {
                value
            };
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let response = Response {
        headers: Headers::from(headers),
        ..response
    };
    if let Ok(accepted) = handshake.validate(&response) {
        assert_eq!(response.status, 101);
        if let Some(protocol) = &accepted.subprotocol {
            assert!(SUBPROTOCOLS.contains(&protocol.as_str()), "{protocol:?}");
        }
        for extension in &accepted.extensions {
            let name = extension_name(extension);
            assert!(
                EXTENSIONS
                    .iter()
                    .chain(&["permessage-deflate"])
                    .any(|offer| extension_name(offer).eq_ignore_ascii_case(name)),
                "{extension:?}"
            );
        }
        // An accepted deflate answer is one we could have offered: its windows in range.
        if let Some(agreement) = accepted.deflate {
            for bits in [
                agreement.server_max_window_bits,
                agreement.client_max_window_bits,
            ] {
                assert!(bits.is_none_or(|b| (8..=15).contains(&b)), "{agreement:?}");
            }
        }
    }
}

/// What precedes an extension's `;` parameters, without whitespace.
fn extension_name(extension: &str) -> &str {
    let name = extension.split(';').next().unwrap_or_default();
    name.trim_matches([' ', '\t'])
}

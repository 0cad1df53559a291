//! The server's side of the opening handshake: any bytes as a request head. Parsing never
//! buffers past the limits; a parsed request is accepted or refused, and the response for
//! either parses back as what it says.
#![no_main]

mod common;

use ferrows_core::protocol::handshake::{
    accept_response, parse_request, select_subprotocol, validate_request, ClientHandshake,
    HandshakeLimits, Headers, Response, ServerOptions,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for limits in &common::LIMITS {
        check(data, limits);
    }
});

fn check(data: &[u8], limits: &HandshakeLimits) {
    let parsed = parse_request(data, limits);
    let Some(request) = common::within_limits(parsed, data, limits, |r| r.headers.len()) else {
        return;
    };
    let options = ServerOptions {
        subprotocols: vec!["chat".into(), "superchat".into()],
        origins: Some(vec![Some("https://example.com".into()), None]),
        ..ServerOptions::default()
    };
    match validate_request(&request, &options) {
        Ok(valid) => {
            let subprotocol = select_subprotocol(&valid.subprotocols, &options.subprotocols);
            // Whatever the offers, an agreement is answered as a valid element.
            let extensions = valid.deflate.map(|agreement| agreement.to_header());
            let response = accept_response(
                &valid.key,
                subprotocol.as_deref(),
                extensions.as_deref(),
                &Headers::new(),
            );
            assert_eq!(response.status, 101);
            round_trip(&response);
        }
        Err((_, refusal)) => {
            assert!(
                matches!(refusal.status, 400 | 403 | 405 | 426),
                "refused with {}",
                refusal.status
            );
            round_trip(&refusal);
        }
    }
}

/// The response on the wire parses back to the same status, headers and body.
fn round_trip(response: &Response) {
    let wire = response.to_bytes();
    let (parsed, used) = ClientHandshake::parse_response(&wire, &common::LIMITS[0])
        .expect("our response parses")
        .expect("our response is complete");
    assert_eq!(parsed.status, response.status);
    assert_eq!(&wire[used..], &response.body[..]);
    let announced = ClientHandshake::body_length(&parsed).unwrap_or(0);
    assert_eq!(announced, response.body.len());
    let sent: Vec<_> = response.headers.iter().collect();
    let got: Vec<_> = parsed.headers.iter().take(sent.len()).collect();
    assert_eq!(got, sent);
}

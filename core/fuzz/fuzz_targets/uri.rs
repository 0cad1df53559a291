//! WebSocket URIs: any string parses or is refused; a parsed URI prints as one that parses
//! back to it, and the request built for it is one our own server parses and accepts.
#![no_main]

use ferrows_core::protocol::handshake::{
    parse_request, validate_request, ClientHandshake, ClientOptions, HandshakeLimits, ServerOptions,
};
use ferrows_core::protocol::uri::WsUri;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = WsUri::parse(text) else {
        return;
    };
    assert!(!uri.host.is_empty() && uri.port != 0);
    assert!(uri.resource.starts_with('/'));
    let printed = uri.to_string();
    let reparsed = WsUri::parse(&printed).unwrap_or_else(|e| panic!("{printed:?}: {e}"));
    assert_eq!(
        reparsed,
        WsUri {
            user_info: None,
            ..uri.clone()
        }
    );

    let handshake = ClientHandshake::new(&uri, &ClientOptions::default())
        .unwrap_or_else(|e| panic!("no request for {uri:?}: {e}"));
    let wire = handshake.to_bytes();
    let (request, used) = parse_request(&wire, &HandshakeLimits::default())
        .unwrap_or_else(|e| panic!("our request for {uri:?} does not parse: {e}"))
        .expect("our request is complete");
    assert_eq!(used, wire.len());
    assert_eq!(request.path, uri.resource);
    assert_eq!(
        request.headers.get("Host"),
        Some(uri.host_header().as_str())
    );
    validate_request(&request, &ServerOptions::default())
        .unwrap_or_else(|(e, _)| panic!("our server refuses our request for {uri:?}: {e}"));
});

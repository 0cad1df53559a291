//! ferrows-core: the WebSocket engine of ferrows.
//!
//! [`protocol`] is the sans-IO RFC 6455 core (bytes in, events and bytes out); [`engine`]
//! drives it on ferrows' own tokio runtime with TCP, TLS, timers and servers. The Python and
//! C faces are thin layers over these two; see `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod engine;
pub mod error;
pub mod metrics;
pub mod protocol;
pub mod reconnect;

pub use error::{CloseFrame, CloseInfo, Error, Result};

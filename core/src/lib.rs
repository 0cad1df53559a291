pub mod engine;
pub mod error;
pub mod protocol;

pub use error::{CloseFrame, CloseInfo, Error, Result};

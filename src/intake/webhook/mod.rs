//! Signed HR webhooks (`POST /v1/events`): [`signature`] verifies the Standard Webhooks
//! signature, [`body`] turns the verified body into a lifecycle event.

pub mod body;
pub mod signature;

pub use body::{parse_event, EventError};
pub use signature::*;

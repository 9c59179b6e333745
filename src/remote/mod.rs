//! Profiling boards from a host (issue 15): `lts agent` on the board serves measurement jobs;
//! the host sends [`message::Message::Job`]s and gets [`crate::job::JobResult`]s back.
//!
//! Layers, bottom up: `frame` (length-prefixed frames with a hard size cap and a deadline, then
//! per-frame HMAC and sequence numbers), `keyfile` (shared key files), `auth` (the mutual HMAC-SHA256
//! challenge-response handshake), [`message`] (what the frames carry).

pub mod agent;
pub mod auth;
pub mod fleet;
pub mod frame;
pub mod host;
pub mod keyfile;
pub mod message;
pub mod serial;
pub mod startups;

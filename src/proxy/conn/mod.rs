//! Per-connection limits enforced where every byte passes (SPEC §3.7): the whole-header
//! deadline and byte budget for every request of a kept-alive connection, the idle keep-alive
//! timeout, and the deadline of an HTTP/2 preface; and the refusals Pingora's own HTTP/1 parser
//! answers, which no hook sees (`answer`).
//!
//! Why at the stream: Pingora 0.9 serves every keep-alive request of an HTTP/1 connection in
//! one `process_new` call, and times each header *read* (not the header) while buffering up to
//! 1 MiB; only a wrapper around the stream sees each request's bytes as they arrive.

mod answer;
mod coalesce;
pub(crate) mod delegate;
mod line;
mod stream;
mod watch;

pub use stream::Watched;
pub use watch::{ConnLimits, Cut, Phase, Signals, Watch};

//! Telemetry: what tether counts and logs, for operators to read. `metrics` holds the
//! Prometheus counters (the request path reaches them through handles built with each
//! snapshot, never by a label lookup) and renders `GET /metrics`; `log_sink` is the process
//! log with batched access lines; `refusals` counts every refusal and rate-limits its log
//! lines; `store` holds the state store's own gauges; `certs` the listener certificates' expiry and
//! the ACME orders; `escape` is how client bytes look in any
//! log line. Nothing here decides anything.

pub mod certs;
pub mod escape;
pub mod log_sink;
pub mod metrics;
pub mod refusals;
pub mod store;

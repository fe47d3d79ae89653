//! Operating a running instance: reload (SIGHUP and the admin API), the admin listener with its
//! status views and runtime drain, and Prometheus metrics.

pub mod admin;
mod admin_auth;
pub mod graceful;
pub mod log_sink;
pub mod metrics;
pub mod reload;
pub mod status;
pub mod status_page;

//! Operating a running instance: reload (SIGHUP and the admin API), the admin listener with its
//! status views (the served certificates among them), runtime drain and `GET /metrics` (counted in `crate::telemetry`).

pub mod admin;
mod admin_auth;
mod admin_path;
pub mod certs;
pub mod graceful;
pub mod history;
pub mod html;
pub mod reload;
pub mod sparkline;
pub mod state_sync;
pub mod status;
pub mod status_page;

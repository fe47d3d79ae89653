//! Operating a running instance: reload (SIGHUP and the admin API), the admin listener with its
//! status views, runtime drain and `GET /metrics` (counted in `crate::telemetry`).

pub mod admin;
mod admin_auth;
mod admin_path;
pub mod graceful;
pub mod history;
pub mod html;
pub mod reload;
pub mod sparkline;
pub mod state_sync;
pub mod status;
pub mod status_page;

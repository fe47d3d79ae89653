//! Operating a running instance: reload on SIGHUP (and later the admin API and metrics).

pub mod log_sink;
pub mod reload;

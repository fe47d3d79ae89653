//! Configuration: the YAML schema, its defaults, and validation that names the YAML path of
//! every error. Nothing here is consulted per request: `balancer::Snapshot` is built from it.

mod error;
mod load;
mod schema;
mod secret;
mod typed;
mod validate;
mod values;

pub use error::{ConfigError, ConfigErrors};
pub use schema::*;
pub use secret::REDACTED;
pub use typed::{session_ttl, MonitorSpec, Validated};
pub use values::{ExpectedCodes, SessionHeader};

//! Configuration: the YAML schema, its defaults, and validation that names the YAML path of
//! every error. Nothing here is consulted per request: `balancer::Snapshot` is built from it.

mod access_log;
mod acme;
mod address;
mod error;
mod listener_tls;
mod load;
pub mod lookup;
mod origin_tls;
mod own_addrs;
pub mod printable;
mod resolver;
mod schema;
mod secret;
mod state;
mod typed;
mod validate;
mod values;
mod warnings;

pub use access_log::{AccessLog, AccessLogFormat};
pub use acme::{AcmeConfig, LETS_ENCRYPT};
pub use address::{is_dns_name, lookup_all, OriginAddr, LOOKUP_BUDGET};
pub use error::{ConfigError, ConfigErrors};
pub use listener_tls::{CertKey, ListenerTls};
pub use origin_tls::{read_ca_file, OriginTls, OriginTlsConfig};
pub use own_addrs::{OwnAddr, OwnAddrs};
pub use resolver::{ResolverSection, MAX_INTERVAL_SECONDS};
pub use schema::*;
pub use secret::REDACTED;
pub use state::{redis_address, unused_parts, RedisSection, StateSection, StoreKind};
pub use typed::{session_ttl, MonitorSpec, TypedBalancer, TypedPool, Validated};
pub use values::{ExpectedCodes, RetryStatuses, SessionHeader};

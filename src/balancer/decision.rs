//! The vocabulary of a routing decision: what the router is told about a request, and what it
//! decides (where the request goes, what happens to its pin, what to count it as). Plain data,
//! shared by the router, the affinity modes, the failover policy and the proxy.

use std::net::IpAddr;

use http::HeaderMap;

use crate::affinity::header_key::SessionKey;
use crate::affinity::rendezvous::HashKey;

use super::endpoint::EndpointRef;

/// What the router needs to know about a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The `Host` header (or the authority of an absolute or HTTP/2 target).
    pub host: &'a str,
    pub client_ip: IpAddr,
    /// The raw values of every `Cookie` header, in order.
    pub cookies: &'a [&'a [u8]],
    /// All request headers, for `header` affinity.
    pub headers: &'a HeaderMap,
    /// A fresh random number for steering.
    pub random: u64,
    /// The request arrived over TLS.
    pub tls: bool,
}

/// What happened to the request's session, as the access log and metrics name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The balancer has no affinity (`session_affinity: none`); named "none".
    NoAffinity,
    /// No affinity cookie or header session yet: a first visit.
    New,
    /// A valid pin was honoured.
    Kept,
    /// The request carries none of the headers of `header` affinity: balanced, no session.
    NoSession,
    /// The cookie was authentic but expired.
    Expired,
    /// The cookie was malformed, forged, or named an endpoint that no longer exists.
    Invalid,
    /// The pinned endpoint is unhealthy: re-pinned.
    Unhealthy,
    /// The pinned endpoint is drained past its drain duration: re-pinned.
    Drained,
    /// Failed over without changing the pin.
    FailoverTemporary,
    /// Failed over and re-pinned.
    FailoverSticky,
}

impl Outcome {
    /// Every outcome, in declaration order: `outcome as usize` indexes it.
    pub const ALL: [Outcome; 10] = [
        Outcome::NoAffinity,
        Outcome::New,
        Outcome::Kept,
        Outcome::NoSession,
        Outcome::Expired,
        Outcome::Invalid,
        Outcome::Unhealthy,
        Outcome::Drained,
        Outcome::FailoverTemporary,
        Outcome::FailoverSticky,
    ];

    /// The name used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::NoAffinity => "none",
            Outcome::New => "new",
            Outcome::NoSession => "no-session",
            Outcome::Kept => "kept",
            Outcome::Expired => "expired",
            Outcome::Invalid => "invalid",
            Outcome::Unhealthy => "unhealthy",
            Outcome::Drained => "drained",
            Outcome::FailoverTemporary => "failover-temporary",
            Outcome::FailoverSticky => "failover-sticky",
        }
    }
}

/// What the response must do about the client's pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinAction {
    /// No affinity, or nothing to change.
    None,
    /// Mint a new pin to the chosen endpoint that lasts until `expires` (unix seconds).
    Set { expires: u64 },
    /// Pin header session `session` to the chosen endpoint (a new session or a re-pin).
    Remember { session: u128 },
}

/// Where a request goes and what happens to its pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub balancer: usize,
    pub target: EndpointRef,
    pub pin: PinAction,
    pub outcome: Outcome,
    /// The key the session is placed by, in the modes that place sessions by consistent
    /// hashing (`ip_cookie`: the client address; `header`: the session key); a failover places
    /// the session by it too (SPEC §3.2).
    pub key: Option<HashKey>,
}

/// Why a request is not forwarded: tether answers it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No balancer answers this Host: 404, nothing forwarded.
    NoBalancer,
    /// A plain-HTTP request to a balancer with `always_use_https`: 301 to https.
    HttpsOnly { balancer: usize },
    /// No usable endpoint in any pool: 503.
    NoEndpoint { balancer: usize },
}

impl Refusal {
    /// The balancer that answered, when one did.
    pub fn balancer(self) -> Option<usize> {
        match self {
            Refusal::NoBalancer => None,
            Refusal::HttpsOnly { balancer } | Refusal::NoEndpoint { balancer } => Some(balancer),
        }
    }
}

/// A request past step one of routing (`route::admit`): the balancer that answers it, and its
/// header session key when the balancer's mode keys sessions by headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// Index into `Snapshot::balancers`.
    pub balancer: usize,
    pub session: Option<SessionKey>,
}

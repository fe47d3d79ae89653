//! HTTP-01 validations (SPEC §3.11): a plain-HTTP request for `/.well-known/acme-challenge/<token>`
//! whose token this instance (or, with Redis, another instance) expects is answered here, before
//! any balancer, redirect or `always_use_https` sees it. Any other token goes on to routing, so
//! an origin that gets its own certificates still receives its validations.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::Result;
use pingora_proxy::Session;

use crate::instance::Instance;

const PREFIX: &str = "/.well-known/acme-challenge/";
/// Longer than any token a directory issues (RFC 8555 §8.3: at least 128 bits, base64url; Let's
/// Encrypt's are 43 characters).
const MAX_TOKEN: usize = 128;

/// Whether `token` can be an ACME token: base64url characters only, not empty, at most
/// [`MAX_TOKEN`]. Anything else goes on to routing without a look in the shared store, so a
/// client cannot turn arbitrary paths into Redis reads, nor put other bytes in the log line.
fn is_token(token: &str) -> bool {
    (1..=MAX_TOKEN).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// True when `session` was an HTTP-01 validation and has been answered.
pub async fn answered(live: &Instance, session: &mut Session) -> Result<bool> {
    if !live.acme.enabled || super::facts::is_tls(session) {
        return Ok(false);
    }
    let Some(token) = session.req_header().uri.path().strip_prefix(PREFIX) else {
        return Ok(false);
    };
    if !is_token(token) {
        return Ok(false);
    }
    let answer = match live.acme.answers.get(token) {
        Some(a) => a,
        None => match live.state.shared_cert_store() {
            Some(store) => match store.challenge(token).await {
                Some(a) => a,
                None => return Ok(false),
            },
            None => return Ok(false),
        },
    };
    log::info!("acme: answered an HTTP-01 validation for token {token}");
    let mut resp = ResponseHeader::build(200, Some(3))?;
    resp.insert_header("content-type", "application/octet-stream")?;
    resp.insert_header("content-length", answer.len())?;
    resp.insert_header("cache-control", "no-store")?;
    session.write_response_header(Box::new(resp), false).await?;
    session
        .write_response_body(Some(Bytes::from(answer)), true)
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::is_token;

    #[test]
    fn only_base64url_tokens_of_a_sane_length_are_looked_up() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(is_token("a-b_C9"));
        for bad in ["", "a/b", "a%2Fb", "a.b", "tok en", "é", "a\nb"] {
            assert!(!is_token(bad), "{bad:?}");
        }
        assert!(is_token(&"a".repeat(128)));
        assert!(!is_token(&"a".repeat(129)));
    }
}

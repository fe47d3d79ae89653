//! The certificate slot of a TLS listener: what it serves now, changeable at run time without
//! touching open connections or the listener. A reload that re-read the certificate files
//! stores them here; a certificate issued at run time (ACME) is stored beside them, so that a
//! reload does not take it away, and so are the TLS-ALPN-01 challenge certificates while an
//! order is being validated. Each handshake reads the slot once, so the next handshake after a
//! store serves the new one.

use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};

use super::listener_certs::{names_by_wildcard, names_exactly, ListenerCerts};
use crate::config::CertKey;

/// One listener's certificates, swapped whole.
#[derive(Debug)]
pub struct CertSlot {
    current: ArcSwap<ListenerCerts>,
    /// The certificate issued at run time (ACME), once there is one.
    issued: ArcSwapOption<CertKey>,
    /// TLS-ALPN-01 challenge certificates by name, only while their order is validated.
    challenges: Mutex<Vec<(String, Arc<CertKey>)>>,
}

impl CertSlot {
    /// A slot serving `certs` until something else is stored.
    pub fn new(certs: Arc<ListenerCerts>) -> Self {
        CertSlot {
            current: ArcSwap::new(certs),
            issued: ArcSwapOption::empty(),
            challenges: Mutex::new(Vec::new()),
        }
    }

    /// The certificate issued at run time, if any.
    pub fn issued(&self) -> Option<Arc<CertKey>> {
        self.issued.load_full()
    }

    /// Serves `cert` for its names from the next handshake on (the files stay for other names).
    pub fn store_issued(&self, cert: Arc<CertKey>) {
        self.issued.store(Some(cert));
    }

    /// Presents `cert` to a TLS-ALPN-01 validation of `name` (RFC 8737) until withdrawn.
    pub fn add_challenge(&self, name: &str, cert: Arc<CertKey>) {
        let mut c = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        c.push((name.to_ascii_lowercase(), cert));
    }

    /// Withdraws the challenge certificate of `name`.
    pub fn remove_challenge(&self, name: &str) {
        let mut c = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        c.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// The challenge certificate for `name`, while a validation of it is expected.
    pub fn challenge(&self, name: &str) -> Option<Arc<CertKey>> {
        let name = name.trim_end_matches('.');
        let c = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        c.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, cert)| cert.clone())
    }

    /// What the slot serves now.
    pub fn current(&self) -> Arc<ListenerCerts> {
        self.current.load_full()
    }

    /// Serves `certs` from the next handshake on.
    pub fn store(&self, certs: Arc<ListenerCerts>) {
        self.current.store(certs);
    }
}

/// The certificate a handshake for `sni` gets: the issued one when it names `sni`, else the
/// files' choice, else the issued one; `None` when the listener has nothing yet.
pub fn choose<'a>(
    files: &'a ListenerCerts,
    issued: Option<&'a CertKey>,
    sni: Option<&str>,
) -> Option<&'a CertKey> {
    let issued_names =
        |c: &&CertKey| sni.is_some_and(|sni| names_exactly(c, sni) || names_by_wildcard(c, sni));
    issued
        .filter(issued_names)
        .or_else(|| files.select(sni))
        .or(issued)
}

/// Every TLS listener's slot, by address; fixed at start (listeners change only with an
/// upgrade).
#[derive(Debug, Default)]
pub struct CertSlots {
    slots: Vec<(String, Arc<CertSlot>)>,
}

impl CertSlots {
    /// A slot for each of `listeners` (address, certificates as first loaded).
    pub fn new(listeners: &[(String, Arc<ListenerCerts>)]) -> Self {
        CertSlots {
            slots: listeners
                .iter()
                .map(|(a, c)| (a.clone(), Arc::new(CertSlot::new(c.clone()))))
                .collect(),
        }
    }

    /// The slot of the listener at `address`.
    pub fn slot(&self, address: &str) -> Option<Arc<CertSlot>> {
        self.slots
            .iter()
            .find(|(a, _)| a == address)
            .map(|(_, s)| s.clone())
    }

    /// Every slot with its listener's address.
    pub fn all(&self) -> impl Iterator<Item = (&str, &Arc<CertSlot>)> {
        self.slots.iter().map(|(a, s)| (a.as_str(), s))
    }

    /// Stores every certificate set of `loaded` (by address) in its listener's slot. A listener
    /// `loaded` does not name (its TLS removed by a reload, which only an upgrade applies) keeps
    /// serving what it had.
    pub fn refresh(&self, loaded: &[(String, Arc<ListenerCerts>)]) {
        for (address, certs) in loaded {
            if let Some(slot) = self.slot(address) {
                slot.store(certs.clone());
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::{Listener, ListenerTls};

    /// A self-signed certificate for `names`, made now (also for the acceptor's tests).
    pub(crate) fn cert(names: &[&str]) -> CertKey {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let pem = format!("{}{}", c.signing_key.serialize_pem(), c.cert.pem());
        CertKey::from_pem(pem.as_bytes()).unwrap()
    }

    fn files(certs: Vec<CertKey>) -> Arc<ListenerCerts> {
        let tls: ListenerTls = serde_yaml::from_str("acme: { domains: [a.test] }").unwrap();
        let l = Listener {
            address: "127.0.0.1:443".into(),
            tls: Some(tls),
        };
        ListenerCerts::by_address(&[l], vec![Some(certs)])[0]
            .1
            .clone()
    }

    #[test]
    fn issued_wins_for_its_names_and_the_files_serve_the_rest() {
        let slot = CertSlot::new(files(vec![cert(&["fallback.test"])]));
        let name = |sni| {
            let (f, i) = (slot.current(), slot.issued());
            choose(&f, i.as_deref(), sni).map(|c| c.names[0].clone())
        };
        assert_eq!(
            name(Some("shop.test")).unwrap(),
            "fallback.test",
            "before issuance"
        );
        slot.store_issued(Arc::new(cert(&["shop.test", "www.shop.test"])));
        assert_eq!(name(Some("WWW.shop.test")).unwrap(), "shop.test");
        assert_eq!(name(Some("other.test")).unwrap(), "fallback.test");
        assert_eq!(name(None).unwrap(), "fallback.test");
        // A reload stores the files again; the issued certificate stays.
        slot.store(files(vec![cert(&["fallback.test"])]));
        assert_eq!(name(Some("shop.test")).unwrap(), "shop.test");
    }

    #[test]
    fn an_acme_listener_without_files_has_nothing_until_issued_then_only_that() {
        let slot = CertSlot::new(files(Vec::new()));
        let (f, i) = (slot.current(), slot.issued());
        assert!(choose(&f, i.as_deref(), Some("shop.test")).is_none());
        slot.store_issued(Arc::new(cert(&["shop.test"])));
        let (f, i) = (slot.current(), slot.issued());
        assert_eq!(choose(&f, i.as_deref(), None).unwrap().names, ["shop.test"]);
        slot.add_challenge("New.test", Arc::new(cert(&["new.test"])));
        assert!(slot.challenge("new.test.").is_some());
        slot.remove_challenge("new.test");
        assert!(slot.challenge("new.test").is_none());
    }
}

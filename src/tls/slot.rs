//! The certificate slot of a TLS listener: what it serves now, changeable at run time without
//! touching open connections or the listener. A reload that re-read the certificate files
//! stores them here; a certificate issued at run time (ACME) would be stored the same way. Each
//! handshake reads the slot once, so the next handshake after a store serves the new one.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::listener_certs::ListenerCerts;

/// One listener's certificates, swapped whole.
#[derive(Debug)]
pub struct CertSlot {
    current: ArcSwap<ListenerCerts>,
}

impl CertSlot {
    /// A slot serving `certs` until something else is stored.
    pub fn new(certs: Arc<ListenerCerts>) -> Self {
        CertSlot {
            current: ArcSwap::new(certs),
        }
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

//! TLS (RFC 3261 §26.2.1, RFC 5630) with rustls: the server credentials that `tls:` and
//! `wss:` listeners and the XCAP server present, read from PEM files and swapped in
//! place on reload (connections already open keep theirs); optional client-certificate
//! verification; the client side for connections presenced opens itself (a NOTIFY to a
//! TLS subscriber whose connection is gone), which checks the peer's certificate for the
//! address it connects to; and the cap on handshakes in progress, overall and per source
//! address, so one source opening connections it never completes cannot keep others out.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The settings TLS is made from (the `tls_*` configuration keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    pub certificate: Option<std::path::PathBuf>,
    pub private_key: Option<std::path::PathBuf>,
    pub ca_list: Option<std::path::PathBuf>,
    pub verify_client: bool,
}

impl TlsSettings {
    pub fn from_config(c: &crate::config::Config) -> TlsSettings {
        TlsSettings {
            certificate: c.tls_certificate.clone(),
            private_key: c.tls_private_key.clone(),
            ca_list: c.tls_ca_list.clone(),
            verify_client: c.tls_verify_client,
        }
    }
}

/// ring, not aws-lc-rs: it builds with any C compiler for every target we ship,
/// musl cross builds included (aws-lc needs more toolchain than a small box's build
/// has). Its only shortcoming rustls flags is the lack of post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The server side, from the certificate chain and key files (and the CA list, when
/// clients must show a certificate). Errors name the file.
pub fn server_config(s: &TlsSettings) -> Result<ServerConfig, String> {
    let (Some(cert), Some(key)) = (&s.certificate, &s.private_key) else {
        return Err("tls_certificate and tls_private_key are needed".to_owned());
    };
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match (&s.ca_list, s.verify_client) {
        (Some(ca), true) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(read_roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, true) => return Err("tls_verify_client needs tls_ca_list".to_owned()),
        (_, false) => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("{} with {}: {e}", cert.display(), key_name(s)))
}

fn key_name(s: &TlsSettings) -> String {
    s.private_key
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// The client side: certificates checked against `tls_ca_list`, else the system's
/// store.
pub fn client_config(s: &TlsSettings) -> Result<ClientConfig, String> {
    let roots = match &s.ca_list {
        Some(ca) => read_roots(ca)?,
        None => {
            let mut roots = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                log::debug!("tls: system certificate store: {e}");
            }
            let (added, _) = roots.add_parsable_certificates(found.certs);
            log::debug!("tls: {added} certificate authorities from the system store");
            roots
        }
    };
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The credentials in use, replaced whole on reload.
#[derive(Clone)]
pub struct TlsContext {
    inner: Arc<RwLock<Loaded>>,
}

struct Loaded {
    server: Option<TlsAcceptor>,
    client: TlsConnector,
}

impl Loaded {
    fn load(s: &TlsSettings, required: bool) -> Result<Loaded, String> {
        let server = match (&s.certificate, required) {
            (None, false) => None,
            _ => Some(TlsAcceptor::from(Arc::new(server_config(s)?))),
        };
        let client = match client_config(s) {
            Ok(c) => c,
            Err(e) if !required => {
                log::warn!("tls: outgoing TLS connections disabled: {e}");
                ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth()
            }
            Err(e) => return Err(e),
        };
        Ok(Loaded {
            server,
            client: TlsConnector::from(Arc::new(client)),
        })
    }
}

impl TlsContext {
    /// Loads the server side when a certificate is configured (`required`: a listener
    /// needs it, so a failure is an error), and the client side.
    pub fn load(s: &TlsSettings, required: bool) -> Result<TlsContext, String> {
        Ok(TlsContext {
            inner: Arc::new(RwLock::new(Loaded::load(s, required)?)),
        })
    }

    /// Reads the files again; on any error the credentials in use stay. Connections
    /// already open keep the credentials they were made with.
    pub fn reload(&self, s: &TlsSettings) -> Result<(), String> {
        let fresh = Loaded::load(s, s.certificate.is_some())?;
        *self.inner.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.server.clone()
    }

    pub fn connector(&self) -> TlsConnector {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.client.clone()
    }
}

/// The name a certificate is checked for when presenced connects to `addr`: the
/// address itself (Contacts carry addresses; a name is not resolved).
pub fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// Handshakes in progress (TLS, WebSocket upgrade): at most `max` at once, a quarter of
/// them (at least one) from one source address.
pub struct HandshakeSlots {
    max: usize,
    per_source: usize,
    taken: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// The source a handshake counts against: an IPv4 address, or an IPv6 /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// A handshake's place; given back when dropped.
pub struct Slot {
    slots: Arc<HandshakeSlots>,
    ip: IpAddr,
}

impl HandshakeSlots {
    pub fn new(max: usize) -> Arc<HandshakeSlots> {
        let max = max.max(1);
        Arc::new(HandshakeSlots {
            max,
            per_source: (max / 4).max(1),
            taken: Mutex::new((0, HashMap::new())),
        })
    }

    /// A place for a handshake with `ip`, if one is free. IPv6 sources count by /64
    /// (one host may hold a whole one), so a single source cannot pose as many; an
    /// `exempt` source (a trusted proxy) is held to the total only.
    pub fn take(self: &Arc<Self>, ip: IpAddr, exempt: bool) -> Option<Slot> {
        let ip = source_of(ip);
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *taken;
        let mine = by_ip.get(&ip).copied().unwrap_or(0);
        if *total >= self.max || (mine >= self.per_source && !exempt) {
            return None;
        }
        *total += 1;
        by_ip.insert(ip, mine + 1);
        Some(Slot {
            slots: self.clone(),
            ip,
        })
    }

    /// Handshakes in progress.
    #[cfg(test)]
    pub fn in_progress(&self) -> usize {
        self.taken.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut taken = self.slots.taken.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *taken;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_a_quarter_of_the_handshake_slots() {
        let slots = HandshakeSlots::new(8);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let held: Vec<_> = (0..2).map(|_| slots.take(a, false).unwrap()).collect();
        assert!(slots.take(a, false).is_none(), "a third from one source");
        let trusted = slots
            .take(a, true)
            .expect("a trusted proxy: the total only");
        let other = slots.take(b, false).expect("another source still gets one");
        assert_eq!(slots.in_progress(), 4);
        drop(trusted);
        drop(held);
        assert!(
            slots.take(a, false).is_some(),
            "freed places are given back"
        );
        drop(other);
    }

    #[test]
    fn an_ipv6_64_is_one_source() {
        let slots = HandshakeSlots::new(8);
        let _a = slots.take("2001:db8::1".parse().unwrap(), false).unwrap();
        let _b = slots.take("2001:db8::2".parse().unwrap(), false).unwrap();
        assert!(slots.take("2001:db8::3".parse().unwrap(), false).is_none());
        assert!(
            slots
                .take("2001:db8:0:1::1".parse().unwrap(), false)
                .is_some()
        );
    }

    #[test]
    fn the_total_is_capped() {
        let slots = HandshakeSlots::new(2);
        let one = slots.take("192.0.2.1".parse().unwrap(), false).unwrap();
        let two = slots.take("192.0.2.2".parse().unwrap(), false).unwrap();
        assert!(slots.take("192.0.2.3".parse().unwrap(), false).is_none());
        drop((one, two));
        assert_eq!(slots.in_progress(), 0);
    }

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").unwrap();
        let s = TlsSettings {
            certificate: Some(cert.clone()),
            private_key: Some(dir.path().join("missing.pem")),
            ..Default::default()
        };
        let e = server_config(&s).unwrap_err();
        assert!(e.contains("cert.pem"), "{e}");
        let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        let e = server_config(&s).unwrap_err();
        assert!(e.contains("missing.pem"), "{e}");
        std::fs::write(
            dir.path().join("missing.pem"),
            generated.signing_key.serialize_pem(),
        )
        .unwrap();
        server_config(&s).expect("a matching pair loads");
    }
}

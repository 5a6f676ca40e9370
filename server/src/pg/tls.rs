//! TLS for client connections (`[server.tls]`): the certificate and key loaded once at
//! start, a client's SSLRequest answered `S` and its socket wrapped, and the transport under
//! the framing checks either way. With TLS on, logins over it may bind SCRAM to the
//! certificate (SCRAM-SHA-256-PLUS, `tls-server-end-point`).

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;

const CERTIFICATE: &str = "the server's certificate, then any intermediates";
const KEY: &str = "an unencrypted PKCS#8, PKCS#1 or SEC1 private key that only its owner may read (its group too) and change";

/// The certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("[server.tls] {key} {path}: {why}; give a PEM file ({what}) readable by the server")]
    File {
        key: &'static str,
        path: PathBuf,
        what: &'static str,
        why: String,
    },
    #[error(
        "[server.tls]: the certificate {certificate} and the private key {private_key} cannot be used together: {why}; give the key the certificate was issued for"
    )]
    Pair {
        certificate: PathBuf,
        private_key: PathBuf,
        why: String,
    },
}

/// TLS as the config asks for it, ready for connections.
pub struct Tls {
    acceptor: TlsAcceptor,
    /// The certificate chain as read, for SCRAM's channel binding.
    pub certificate_pem: Vec<u8>,
    /// Clients without TLS are refused.
    pub required: bool,
    /// SCRAM logins over TLS may be bound to the certificate (SCRAM-SHA-256-PLUS): its
    /// signature is RSA or ECDSA with SHA-256, 384 or 512, whose hash binding uses.
    pub binds_scram: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("required", &self.required)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key the config names.
    pub fn load(config: &TlsConfig) -> Result<Tls, TlsError> {
        let file = |key, path: &Path, what, why: String| TlsError::File {
            key,
            path: path.to_owned(),
            what,
            why,
        };
        let certificate = |why: String| file("certificate", &config.certificate, CERTIFICATE, why);
        let certificate_pem =
            std::fs::read(&config.certificate).map_err(|e| certificate(e.to_string()))?;
        let chain = CertificateDer::pem_slice_iter(&certificate_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(certificate("it holds no CERTIFICATE block".into()));
        }
        // As PostgreSQL: a key others may read is refused, not used. Checked on the file that
        // is then read, not on its path again.
        let key = |why: String| file("private_key", &config.private_key, KEY, why);
        let mut key_file =
            std::fs::File::open(&config.private_key).map_err(|e| key(e.to_string()))?;
        use std::os::unix::fs::PermissionsExt;
        let mode = key_file
            .metadata()
            .map_err(|e| key(e.to_string()))?
            .permissions()
            .mode();
        if mode & 0o037 != 0 {
            return Err(key(format!(
                "others than its owner (and its group, reading) may use it (mode {:o}); chmod 600 {}",
                mode & 0o777,
                config.private_key.display()
            )));
        }
        let mut key_pem = Vec::new();
        std::io::Read::read_to_end(&mut key_file, &mut key_pem).map_err(|e| key(e.to_string()))?;
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            key(format!(
                "{e} (an encrypted key is not read: decrypt it with `openssl pkey -in KEY -out KEY`)"
            ))
        })?;
        let pair = |why: String| TlsError::Pair {
            certificate: config.certificate.clone(),
            private_key: config.private_key.clone(),
            why,
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| pair(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(|e| pair(e.to_string()))?;
        let binds_scram = pgwire::api::auth::sasl::scram::ScramServerAuth::new()
            .configure_certificate(&certificate_pem)
            .is_ok();
        if !binds_scram {
            tracing::warn!(certificate = %config.certificate.display(), "logins over TLS cannot bind SCRAM to this certificate (SCRAM-SHA-256-PLUS needs one signed with RSA or ECDSA and SHA-256, 384 or 512): clients asking channel_binding=require are refused");
        }
        Ok(Tls {
            binds_scram,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            certificate_pem,
            required: config.required,
        })
    }
}

/// A client's connection: plain TCP until the client asks for TLS and gets it.
#[derive(Debug)]
pub enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Between the two, or after a failed handshake: reads end, writes fail.
    Gone,
}

impl Transport {
    /// Runs the TLS handshake on the plain socket; the transport is TLS from then on.
    pub async fn start_tls(&mut self, tls: &Tls) -> io::Result<()> {
        let Transport::Plain(tcp) = std::mem::replace(self, Transport::Gone) else {
            return Err(io::Error::other("TLS was asked for twice"));
        };
        let stream = tls.acceptor.accept(tcp).await?;
        *self = Transport::Tls(Box::new(stream));
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "the TLS handshake failed")
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s).poll_flush(cx),
            Transport::Gone => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Gone => Poll::Ready(Ok(())),
        }
    }
}

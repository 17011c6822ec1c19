//! HTTPS: rustls, driven in blocking style on the connection's own
//! coroutine (or thread).
//!
//! A rustls `ServerConnection` is a state machine without I/O: the
//! handshake and every record go through the connection's
//! [`Transport`], whose reads and writes park only this coroutine. Once
//! the handshake is done, [`TlsStream`] is a `Transport` itself, and the
//! same connection loop serves HTTP/1.1 over it.
//!
//! - The handshake is bounded by the header timeout as a whole: a client
//!   that trickles its ClientHello is a slowloris too.
//! - Plain HTTP sent to the TLS port gets a plaintext `400` saying so, then
//!   a close (nginx does the same).
//! - Closing sends TLS's `close_notify` before the TCP FIN.
//! - An idle TLS connection parks like a plain one (coroutine engine): its
//!   rustls session ([`Session`]) waits in the parking lot beside the
//!   socket, and the coroutine that picks the socket up again goes on with
//!   it, without a new handshake. Only a session holding no decrypted
//!   plaintext and no unsent records parks; the others are closed (the
//!   connection loop reads all plaintext before it calls a connection
//!   idle, so that never happens).

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::conn::{self, ConnConfig, Ended, ServerState};
use crate::handler::Handler;
use crate::request::TlsInfo;
use crate::transport::Transport;

mod ktls;

/// A TLS configuration for a [`Server`](crate::Server)
/// ([`Config::tls`](crate::Config::tls)): a certificate chain and its key
/// read from PEM files, or any `rustls::ServerConfig`.
///
/// The one made from files speaks TLS 1.3 and 1.2 with forward-secret
/// AEAD suites only, prefers the key exchanges X25519MLKEM768, X25519 and
/// P-256 in that order (rustls' own default puts P-384, several times
/// slower, before X25519), and offers ALPN `http/1.1`.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) server: Arc<ServerConfig>,
    /// The certificates read from files, which [`TlsConfig::reload`]
    /// reads again; `None` for a rustls configuration given whole.
    certs: Option<Arc<Certificates>>,
    /// Whether to hand connections to the kernel's TLS (see `ktls.rs`).
    ktls: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("alpn", &self.server.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// Why a TLS configuration could not be made, naming the file.
#[derive(Debug)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    Read(PathBuf, io::Error),
    /// The certificate file holds no PEM certificate.
    NoCertificate(PathBuf),
    /// The key file holds no PEM private key (PKCS#8, PKCS#1 or SEC1).
    NoKey(PathBuf),
    /// rustls refused the pair: most often, the key does not match the
    /// certificate.
    Refused(String),
    /// The key is encrypted and no password was given, or the password
    /// does not decrypt it.
    Password(PathBuf, &'static str),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::Read(p, e) => write!(f, "{}: {e}", p.display()),
            TlsError::NoCertificate(p) => {
                write!(
                    f,
                    "{}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
                    p.display()
                )
            }
            TlsError::NoKey(p) => write!(
                f,
                "{}: no PEM private key (PKCS#8, RSA or EC) in it",
                p.display()
            ),
            TlsError::Refused(why) => write!(f, "{why}"),
            TlsError::Password(p, why) => write!(f, "{}: {why}", p.display()),
        }
    }
}

impl std::error::Error for TlsError {}

impl TlsConfig {
    /// Reads a certificate chain (the server's certificate first, then
    /// any intermediates) and its private key from PEM files.
    pub fn from_pem_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem_pairs([(cert, key)])
    }

    /// Several certificate chains and keys, for several names: each
    /// handshake gets the first certificate valid for the name the client
    /// asked for (SNI), or the first one when none is (or the client named
    /// none). Fails on an empty list.
    pub fn from_pem_pairs<C: AsRef<Path>, K: AsRef<Path>>(
        pairs: impl IntoIterator<Item = (C, K)>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_pem_pairs_with_password(pairs, None)
    }

    /// [`TlsConfig::from_pem_pairs`], with the password of encrypted keys
    /// (PKCS#8 `ENCRYPTED PRIVATE KEY`, as `openssl genpkey -aes256` and
    /// OpenSSL 3's `req` without `-noenc` write them; PBES2 with PBKDF2 or
    /// scrypt). Keys that are not encrypted are read as they are. The
    /// password is kept for [`TlsConfig::reload`].
    pub fn from_pem_pairs_with_password<C: AsRef<Path>, K: AsRef<Path>>(
        pairs: impl IntoIterator<Item = (C, K)>,
        password: Option<&[u8]>,
    ) -> Result<TlsConfig, TlsError> {
        let files: Vec<(PathBuf, PathBuf)> = pairs
            .into_iter()
            .map(|(c, k)| (c.as_ref().to_path_buf(), k.as_ref().to_path_buf()))
            .collect();
        if files.is_empty() {
            return Err(TlsError::Refused("no certificate given".into()));
        }
        TlsConfig::from_source(Source::Pairs(files), password)
    }

    /// Every `NAME.crt` in `dir` with its `NAME.key`, as
    /// [`TlsConfig::from_pem_pairs_with_password`] takes pairs: in order of
    /// name, so the first name is the default certificate. A reload lists
    /// the directory again, so a pair added later is picked up. Fails if a
    /// `.crt` has no `.key`, or there is no pair at all.
    pub fn from_pem_dir(
        dir: impl AsRef<Path>,
        password: Option<&[u8]>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::from_source(Source::Dir(dir.as_ref().to_path_buf()), password)
    }

    fn from_source(source: Source, password: Option<&[u8]>) -> Result<TlsConfig, TlsError> {
        let password = password.map(Box::from);
        let loaded = load(&source.pairs()?, password.as_deref())?;
        let certs = Arc::new(Certificates {
            source,
            password,
            loaded: RwLock::new(Arc::new(loaded)),
        });
        let resolver: Arc<dyn ResolvesServerCert> = certs.clone();
        let server = builder().with_cert_resolver(resolver);
        let mut tls = TlsConfig::finish(server);
        tls.certs = Some(certs);
        Ok(tls)
    }

    /// Any rustls configuration, for what the PEM files cannot say (client
    /// certificates, a certificate resolver of one's own). Its ALPN list is
    /// used as it is: include `http/1.1`.
    pub fn from_rustls(config: Arc<ServerConfig>) -> TlsConfig {
        TlsConfig {
            server: config,
            certs: None,
            ktls: false,
        }
    }

    /// Reads the certificate and key files again, for the handshakes to
    /// come (connections already open keep theirs). If any file fails,
    /// nothing changes and the error says which: a renewal half-written
    /// keeps the old certificates in use. A configuration made with
    /// [`TlsConfig::from_rustls`] has nothing to reload.
    pub fn reload(&self) -> Result<(), TlsError> {
        let Some(certs) = &self.certs else {
            return Ok(());
        };
        let loaded = load(&certs.source.pairs()?, certs.password.as_deref())?;
        *certs.loaded.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(loaded);
        Ok(())
    }

    /// The rustls configuration.
    pub fn rustls(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    fn finish(mut server: ServerConfig) -> TlsConfig {
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Our order of suites and groups, not the client's: testssl.sh
        // marks a server without its own order "NOT ok".
        server.ignore_client_order = true;
        TlsConfig {
            server: Arc::new(server),
            certs: None,
            ktls: false,
        }
    }

    /// Hands each connection to the kernel's TLS (kTLS) after the
    /// handshake, where the kernel has it, so that file bodies go out with
    /// `sendfile` (off by default). At start, a probe finds which ciphers
    /// the kernel takes; connections with another cipher, and every
    /// connection on a kernel without kTLS (with a warning at start), stay
    /// with rustls. A TLS 1.3 key update from a client ends its
    /// connection. Not yet run against a kernel with kTLS: the machines
    /// coserve is tested on have none.
    pub fn ktls(mut self, on: bool) -> TlsConfig {
        self.ktls = on;
        if on && !self.server.enable_secret_extraction {
            let mut server = (*self.server).clone();
            server.enable_secret_extraction = true;
            self.server = Arc::new(server);
        }
        self
    }

    /// Whether connections are handed to the kernel's TLS where it can.
    fn ktls_planned(&self) -> bool {
        self.ktls && matches!(ktls::kernel(), ktls::Kernel::Ciphers(_))
    }

    /// The smallest coroutine stack a TLS server accepts
    /// ([`Runtime::stack_size`](crate::Runtime::stack_size)), about twice
    /// what a handshake uses: 20.5 KiB (TLS 1.3) and 21.5 KiB (TLS 1.2) in
    /// release builds, 63 and 70 KiB in debug builds, against about 9 KiB
    /// for plain HTTP, as `scripts/bench/stack_use.sh` (built with
    /// `--cfg coserve_stack_report`) reports it. A smaller stack makes
    /// [`Server::spawn`](crate::Server::spawn) fail.
    pub const MIN_STACK_SIZE: usize = if cfg!(debug_assertions) {
        160 * 1024
    } else {
        48 * 1024
    };

    /// Runs handshakes in memory, one for each key exchange we offer, so
    /// that the provider's lazy statics (CPU feature detection, aws-lc's
    /// one-time initialisations of its key exchange and signature code)
    /// are built on the caller's stack and not first on a connection's
    /// small coroutine stack, where an overflow would abandon them half
    /// done. Called by the server before it accepts. The client trusts no
    /// certificate, so each handshake ends at its verification, after the
    /// server has done its key exchange and signed.
    pub(crate) fn warm_up(&self) {
        if self.ktls {
            match ktls::kernel() {
                ktls::Kernel::Ciphers(ciphers) => log::info!("kTLS: the kernel takes {ciphers:?}"),
                ktls::Kernel::Unavailable(why) => {
                    log::warn!("kTLS: not available ({why}); HTTPS bodies go through rustls")
                }
            }
        }
        for group in provider::ALL_KX_GROUPS {
            if !self.handshake_in_memory(*group) {
                log::debug!("TLS warm-up: no handshake with {:?}", group.name());
            }
        }
    }

    /// One handshake in memory with a client that offers only `group` and
    /// trusts no certificate; whether the server got as far as its signed
    /// flight (`Finished` in TLS 1.3, `ServerKeyExchange` in 1.2).
    fn handshake_in_memory(&self, group: &'static dyn rustls::crypto::SupportedKxGroup) -> bool {
        let mut client_provider = provider::default_provider();
        client_provider.kx_groups = vec![group];
        let Ok(builder) = rustls::ClientConfig::builder_with_provider(Arc::new(client_provider))
            .with_safe_default_protocol_versions()
        else {
            return false;
        };
        let client = builder
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").expect("a name");
        let (Ok(mut client), Ok(mut server)) = (
            rustls::ClientConnection::new(Arc::new(client), name),
            rustls::ServerConnection::new(Arc::clone(&self.server)),
        ) else {
            return false;
        };
        let mut wire = Vec::new();
        while client.wants_write() && client.write_tls(&mut wire).is_ok() {}
        if server.read_tls(&mut &wire[..]).is_err() || server.process_new_packets().is_err() {
            return false;
        }
        wire.clear();
        while server.wants_write() && server.write_tls(&mut wire).is_ok() {}
        // The client refuses the certificate here: the server's work is done.
        let _ = client.read_tls(&mut &wire[..]);
        let _ = client.process_new_packets();
        // ServerHello and the encrypted rest (TLS 1.3), or ServerHello,
        // Certificate, ServerKeyExchange and ServerHelloDone (TLS 1.2).
        wire.len() > 300
    }
}

/// The certificates read from files, chosen by SNI.
#[derive(Debug)]
struct Certificates {
    source: Source,
    /// For encrypted keys.
    password: Option<Box<[u8]>>,
    /// Swapped whole by a reload; read (never across I/O) by handshakes.
    loaded: RwLock<Arc<Vec<Arc<CertifiedKey>>>>,
}

/// Where the certificate and key files are.
#[derive(Debug)]
enum Source {
    /// These pairs.
    Pairs(Vec<(PathBuf, PathBuf)>),
    /// Every `NAME.crt` and `NAME.key` in a directory, listed at each load.
    Dir(PathBuf),
}

impl Source {
    /// The (certificate, key) pairs, in order.
    fn pairs(&self) -> Result<Vec<(PathBuf, PathBuf)>, TlsError> {
        let dir = match self {
            Source::Pairs(pairs) => return Ok(pairs.clone()),
            Source::Dir(dir) => dir,
        };
        let mut certs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| TlsError::Read(dir.clone(), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "crt"))
            .collect();
        certs.sort();
        if certs.is_empty() {
            return Err(TlsError::Refused(format!(
                "{}: no NAME.crt and NAME.key pairs in it",
                dir.display()
            )));
        }
        Ok(certs
            .into_iter()
            .map(|cert| {
                let key = cert.with_extension("key");
                (cert, key)
            })
            .collect())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let loaded = Arc::clone(&self.loaded.read().unwrap_or_else(|e| e.into_inner()));
        if let Some(name) = hello
            .server_name()
            .and_then(|n| rustls::pki_types::ServerName::try_from(n).ok())
            && let Some(found) = loaded.iter().find(|ck| valid_for(ck, &name))
        {
            return Some(Arc::clone(found));
        }
        loaded.first().cloned()
    }
}

/// Whether `ck`'s certificate names `name`.
fn valid_for(ck: &CertifiedKey, name: &rustls::pki_types::ServerName<'_>) -> bool {
    ck.cert.first().is_some_and(|der| {
        webpki::EndEntityCert::try_from(der)
            .is_ok_and(|ee| ee.verify_is_valid_for_subject_name(name).is_ok())
    })
}

/// Reads every pair, each key checked against its certificate. A
/// certificate that has expired or is not valid yet is served all the same
/// (a clock may be wrong; a renewal may be on its way), with a warning.
fn load(
    files: &[(PathBuf, PathBuf)],
    password: Option<&[u8]>,
) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
    let provider = crate::crypto::provider();
    files
        .iter()
        .map(|(cert, key)| {
            let chain = read_chain(cert)?;
            if let Some(problem) = chain
                .first()
                .and_then(|leaf| validity_problem(leaf, now_unix()))
            {
                log::warn!("certificate {}: {problem}", cert.display());
            }
            let key_der = read_key(key, password)?;
            CertifiedKey::from_der(chain, key_der, &provider)
                .map(Arc::new)
                .map_err(|e| {
                    TlsError::Refused(format!(
                        "{} and {}: {}",
                        cert.display(),
                        key.display(),
                        match e {
                            rustls::Error::InconsistentKeys(_) => {
                                "the key does not match the certificate".to_string()
                            }
                            other => other.to_string(),
                        }
                    ))
                })
        })
        .collect()
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What is wrong with a certificate's validity period at `now` (Unix
/// seconds): expired, or not valid yet. `None` if it is valid then, or if
/// the period cannot be read (rustls has accepted the certificate, and
/// clients judge the period themselves).
fn validity_problem(cert: &[u8], now: i64) -> Option<String> {
    let (not_before, not_after) = der::validity(cert)?;
    if now > not_after {
        Some(format!(
            "expired on {}: clients will refuse it",
            der::Utc(not_after)
        ))
    } else if now < not_before {
        Some(format!(
            "not valid until {}: clients will refuse it until then",
            der::Utc(not_before)
        ))
    } else {
        None
    }
}

/// Just enough DER to read an X.509 certificate's validity period.
mod der {
    use std::fmt;

    /// The next element of `input`: its tag, its contents, and what
    /// follows it.
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |len, &b| (len << 8) | usize::from(b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// `notBefore` and `notAfter`, in Unix seconds.
    pub(super) fn validity(cert: &[u8]) -> Option<(i64, i64)> {
        const SEQUENCE: u8 = 0x30;
        let (SEQUENCE, cert, _) = element(cert)? else {
            return None;
        };
        let (SEQUENCE, mut tbs, _) = element(cert)? else {
            return None;
        };
        // [0] version (optional), serial number, signature algorithm,
        // issuer, then the validity.
        if tbs.first() == Some(&0xa0) {
            tbs = element(tbs)?.2;
        }
        for _ in 0..3 {
            tbs = element(tbs)?.2;
        }
        let (SEQUENCE, validity, _) = element(tbs)? else {
            return None;
        };
        let (tag, not_before, rest) = element(validity)?;
        let not_before = time(tag, not_before)?;
        let (tag, not_after, _) = element(rest)?;
        Some((not_before, time(tag, not_after)?))
    }

    /// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`),
    /// as RFC 5280 allows them, in Unix seconds.
    fn time(tag: u8, text: &[u8]) -> Option<i64> {
        let digits = |s: &[u8]| -> Option<i64> {
            s.iter().try_fold(0i64, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
            })
        };
        let (year, rest) = match (tag, text.len()) {
            (0x17, 13) => {
                let yy = digits(&text[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
            }
            (0x18, 15) => (digits(&text[..4])?, &text[4..]),
            _ => return None,
        };
        if rest[10] != b'Z' {
            return None;
        }
        let field = |i: usize| digits(&rest[i..i + 2]);
        let (month, day) = (field(0)?, field(2)?);
        let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
        if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        Some(days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard
    /// Hinnant's algorithm).
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// Unix seconds, shown as a UTC date and time.
    pub(super) struct Utc(pub i64);

    impl fmt::Display for Utc {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let t = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(self.0.max(0).unsigned_abs()),
            );
            f.write_str(&t)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_count_days_from_the_epoch() {
            assert_eq!(days_from_civil(1970, 1, 1), 0);
            assert_eq!(days_from_civil(2000, 3, 1), 11_017);
            assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
            assert_eq!(time(0x17, b"500101000000Z"), Some(-631_152_000));
            assert_eq!(time(0x18, b"20261206120000Z"), Some(1_796_558_400));
            assert_eq!(time(0x18, b"2026120612000Z"), None);
            assert_eq!(time(0x17, b"261306120000Z"), None);
        }

        #[test]
        fn short_or_broken_der_is_none() {
            assert_eq!(validity(b""), None);
            assert_eq!(validity(b"\x30\x82\xff"), None);
            assert_eq!(validity(b"\x30\x03\x30\x01\x00"), None);
        }
    }
}

/// The provider with coserve's key exchange order, TLS 1.3 and 1.2.
fn builder() -> rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert> {
    ServerConfig::builder_with_provider(Arc::new(crate::crypto::provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = File::open(path).map_err(|e| TlsError::Read(path.into(), e))?;
    let chain = CertificateDer::pem_reader_iter(io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read(path.into(), io::Error::other(e.to_string())))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.into()));
    }
    Ok(chain)
}

/// The first private key in a PEM file, decrypted with `password` if it is
/// an encrypted PKCS#8 key.
fn read_key(path: &Path, password: Option<&[u8]>) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read(path).map_err(|e| TlsError::Read(path.into(), e))?;
    if let Ok(key) = PrivateKeyDer::from_pem_slice(&text) {
        return Ok(key);
    }
    let text = String::from_utf8_lossy(&text);
    // OpenSSL's older "traditional" encryption (`Proc-Type: 4,ENCRYPTED`).
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(TlsError::Password(
            path.into(),
            "a key in OpenSSL's legacy encrypted format: convert it with \
             `openssl pkcs8 -topk8 -in OLD -out NEW` (PKCS#8 encryption)",
        ));
    }
    let Some(start) = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") else {
        return Err(TlsError::NoKey(path.into()));
    };
    let Some(password) = password else {
        return Err(TlsError::Password(
            path.into(),
            "the key is encrypted: give its password (--tls-password-file)",
        ));
    };
    let end = "-----END ENCRYPTED PRIVATE KEY-----";
    let pem = match text[start..].find(end) {
        Some(at) => &text[start..start + at + end.len()],
        None => return Err(TlsError::NoKey(path.into())),
    };
    let wrong = || TlsError::Password(path.into(), "cannot decrypt the key: wrong password?");
    let (_, doc) =
        pkcs8::SecretDocument::from_pem(pem).map_err(|_| TlsError::NoKey(path.into()))?;
    let encrypted = pkcs8::EncryptedPrivateKeyInfoRef::try_from(doc.as_bytes())
        .map_err(|_| TlsError::NoKey(path.into()))?;
    let decrypted = encrypted.decrypt(password).map_err(|_| wrong())?;
    // A wrong password can decrypt to padding that happens to check out,
    // and then to bytes that are no key.
    pkcs8::PrivateKeyInfoRef::try_from(decrypted.as_bytes()).map_err(|_| wrong())?;
    Ok(PrivateKeyDer::Pkcs8(decrypted.as_bytes().to_vec().into()))
}

/// A TLS connection over a transport, itself a [`Transport`].
pub(crate) struct TlsStream<'a, T: Transport + ?Sized> {
    /// Boxed: it is about 1 KiB, which would otherwise sit in the frame of
    /// every TLS connection's stack, and it moves to the parking lot whole.
    conn: Box<rustls::ServerConnection>,
    io: &'a mut T,
}

/// An idle TLS connection's session, parked with its socket: rustls'
/// (keys, sequence numbers and any part of a record already read), or,
/// for a connection the kernel's TLS took over, only what handlers see.
pub(crate) enum Session {
    Rustls(Box<rustls::ServerConnection>),
    Kernel(Arc<TlsInfo>),
}

impl Session {
    /// Sends `close_notify` on a parked connection's socket that is to be
    /// closed (idle too long, or the server stopping), as far as the socket
    /// takes it without waiting: an alert of a few dozen bytes, to a client
    /// that has been sending nothing.
    pub(crate) fn close_notify(self, mut sock: &std::net::TcpStream) {
        match self {
            Session::Rustls(mut conn) => {
                conn.send_close_notify();
                while conn.wants_write() {
                    if conn.write_tls(&mut sock).is_err() {
                        break;
                    }
                }
            }
            Session::Kernel(_) => ktls::close_notify(std::os::fd::AsRawFd::as_raw_fd(sock)),
        }
    }
}

impl<'a, T: Transport + ?Sized> TlsStream<'a, T> {
    /// Hands the connection to the kernel's TLS: rustls' last records sent,
    /// the plaintext it has decrypted taken out, then the keys given to
    /// the socket. The transport and that plaintext; or the stream back
    /// untouched if the socket refused; or `None` if it failed half-way
    /// (the connection must close).
    #[allow(clippy::type_complexity)]
    fn into_kernel(
        mut self,
        fd: std::os::fd::RawFd,
    ) -> Result<(&'a mut T, Vec<u8>), Option<TlsStream<'a, T>>> {
        if self.flush_records().is_err() {
            return Err(None);
        }
        let mut early = Vec::new();
        match self.conn.reader().read_to_end(&mut early) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The client's close_notify, or an error: nothing to hand over.
            _ => return Err(None),
        }
        let TlsStream { conn, io } = self;
        match ktls::hand_over(fd, conn) {
            Ok(Ok(())) => Ok((io, early)),
            Ok(Err(e)) => {
                log::debug!("kTLS hand-over failed: {e}");
                Err(None)
            }
            Err(conn) if early.is_empty() => Err(Some(TlsStream { conn, io })),
            // rustls' plaintext was read out and cannot go back.
            Err(_) => Err(None),
        }
    }
}

impl<T: Transport + ?Sized> TlsStream<'_, T> {
    /// Whether the session can wait without this stream: no decrypted
    /// plaintext left to read and no record left to send.
    fn parkable(&mut self) -> bool {
        !self.conn.wants_write()
            && self
                .conn
                .process_new_packets()
                .is_ok_and(|state| state.plaintext_bytes_to_read() == 0)
    }
}

impl<T: Transport + ?Sized> Read for TlsStream<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match rustls::Stream::new(&mut *self.conn, &mut self.io).read(buf) {
            // A client that closes without close_notify: the end of the
            // stream, as on a plain socket (every request is framed, so
            // nothing can be cut short unseen).
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            other => other,
        }
    }
}

impl<T: Transport + ?Sized> Write for TlsStream<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.conn.writer().write(buf)?;
        self.flush_records()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.flush_records()?;
        self.io.flush()
    }
}

impl<T: Transport + ?Sized> TlsStream<'_, T> {
    /// Writes every record rustls has ready.
    fn flush_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.io)?;
        }
        Ok(())
    }
}

impl<T: Transport + ?Sized> Transport for TlsStream<'_, T> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }

    /// `close_notify`, then the FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.conn.send_close_notify();
        self.flush_records()?;
        self.io.shutdown_write()
    }

    fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        self.io.read_waker()
    }
}

/// Reads from a transport with a deadline for all the reads together.
struct Deadlined<'a, T: Transport + ?Sized> {
    io: &'a mut T,
    deadline: Instant,
    /// Reads whole records only, for a hand-over to kTLS.
    records: Option<ktls::RecordReader>,
}

impl<T: Transport + ?Sized> Read for Deadlined<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "TLS handshake timed out",
            ));
        }
        self.io.set_read_timeout(Some(left))?;
        let Some(records) = &mut self.records else {
            return self.io.read(buf);
        };
        let limit = buf.len().min(records.limit());
        let n = self.io.read(&mut buf[..limit])?;
        records.seen(&buf[..n]);
        Ok(n)
    }
}

impl<T: Transport + ?Sized> Write for Deadlined<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

/// What a plain HTTP request to the TLS port gets.
const PLAIN_TO_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 49\r\n\
Connection: close\r\n\
\r\n\
This port speaks HTTPS: ask for an https:// URL.\n";

/// Serves one connection over TLS: the handshake (or the parked `session`
/// of a connection back from the parking lot), then the connection loop
/// over the TLS stream: rustls', or the kernel's when the configuration
/// asks for kTLS and the kernel has it (`fd` is the socket's). Ends with
/// the connection closed, or idle with its session in `session` (see
/// [`ConnConfig::park`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn serve<T: Transport + ?Sized>(
    io: &mut T,
    fd: Option<std::os::fd::RawFd>,
    peer: Option<SocketAddr>,
    tls: &TlsConfig,
    session: &mut Option<Session>,
    handler: &dyn Handler,
    config: &ConnConfig,
    state: ServerState<'_>,
) -> Ended {
    let conn = match session.take() {
        Some(Session::Rustls(conn)) => conn,
        Some(Session::Kernel(info)) => {
            let Some(fd) = fd else {
                return Ended::Closed;
            };
            return serve_ktls(
                io,
                fd,
                Vec::new(),
                info,
                session,
                peer,
                handler,
                config,
                state,
            );
        }
        None => {
            let records = tls.ktls_planned() && fd.is_some();
            match handshake(io, tls, config.header_timeout, records) {
                Some(conn) => conn,
                None => return Ended::Closed,
            }
        }
    };
    let info = Arc::new(info(&conn));
    let mut stream = TlsStream { conn, io };
    if let Some(fd) = fd
        && let Some(suite) = stream.conn.negotiated_cipher_suite()
        && let ktls::Decision::Kernel(_) = ktls::decide(tls.ktls, ktls::kernel(), suite.suite())
    {
        match stream.into_kernel(fd) {
            Ok((io, early)) => {
                return serve_ktls(io, fd, early, info, session, peer, handler, config, state);
            }
            Err(Some(back)) => stream = back,
            Err(None) => return Ended::Closed,
        }
    }
    let stopping = state.stopping;
    let ended = conn::serve(&mut stream, peer, Some(info), handler, config, state)
        .upgrade_here(&mut stream, stopping);
    if ended.is_idle() && stream.parkable() {
        *session = Some(Session::Rustls(stream.conn));
        return Ended::Idle;
    }
    // However the loop ended (a close it chose, or the server shutting
    // down and ending its reads), the client gets close_notify, once.
    stream.conn.send_close_notify();
    let _ = stream.flush_records();
    Ended::Closed
}

/// The connection loop over a connection the kernel's TLS has taken over.
#[allow(clippy::too_many_arguments)]
fn serve_ktls<T: Transport + ?Sized>(
    io: &mut T,
    fd: std::os::fd::RawFd,
    early: Vec<u8>,
    info: Arc<TlsInfo>,
    session: &mut Option<Session>,
    peer: Option<SocketAddr>,
    handler: &dyn Handler,
    config: &ConnConfig,
    state: ServerState<'_>,
) -> Ended {
    let mut stream = ktls::KtlsStream { io, fd, early };
    let stopping = state.stopping;
    let ended = conn::serve(
        &mut stream,
        peer,
        Some(info.clone()),
        handler,
        config,
        state,
    )
    .upgrade_here(&mut stream, stopping);
    if ended.is_idle() && stream.early.is_empty() {
        *session = Some(Session::Kernel(info));
        return Ended::Idle;
    }
    ktls::close_notify(fd);
    Ended::Closed
}

/// Answers a connection over a limit: the handshake (within `limit`), then
/// `refusal` (a whole response), close_notify, and the client's close.
pub(crate) fn refuse<T: Transport + ?Sized>(
    io: &mut T,
    tls: &TlsConfig,
    refusal: &[u8],
    limit: Duration,
) {
    let Some(conn) = handshake(io, tls, limit, false) else {
        return;
    };
    let mut stream = TlsStream { conn, io };
    if stream.set_write_timeout(Some(limit)).is_ok()
        && stream.write_all(refusal).is_ok()
        && stream.flush().is_ok()
    {
        crate::transport::close_gracefully(&mut stream, limit, 64 * 1024);
    }
}

/// What handlers see of a connection's TLS ([`crate::Request::tls`]).
fn info(conn: &rustls::ServerConnection) -> TlsInfo {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    TlsInfo::new(version, conn.server_name())
}

/// The handshake, within `limit`. `None` (the connection is to be closed)
/// if it fails, times out, or the client spoke plain HTTP (which gets its
/// `400` here).
fn handshake<T: Transport + ?Sized>(
    io: &mut T,
    tls: &TlsConfig,
    limit: Duration,
    whole_records: bool,
) -> Option<Box<rustls::ServerConnection>> {
    let mut conn = Box::new(rustls::ServerConnection::new(Arc::clone(&tls.server)).ok()?);
    let mut io = Deadlined {
        io,
        deadline: Instant::now() + limit,
        records: whole_records.then(ktls::RecordReader::new),
    };
    // The first bytes say whether this is TLS at all: a handshake record
    // starts with 0x16.
    let mut first = [0u8; 512];
    let n = io.read(&mut first).ok()?;
    if n == 0 {
        return None;
    }
    if first[0] != 0x16 {
        if first[0].is_ascii_uppercase() {
            let _ = io.io.write_all(PLAIN_TO_TLS);
            let _ = io.io.flush();
            crate::transport::close_gracefully(io.io, Duration::from_secs(1), 64 * 1024);
        }
        return None;
    }
    let mut seen: &[u8] = &first[..n];
    while !seen.is_empty() {
        conn.read_tls(&mut seen).ok()?;
    }
    if conn.process_new_packets().is_err() {
        // The alert rustls prepared tells the client why.
        let _ = conn.write_tls(&mut io);
        return None;
    }
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut io) {
            log::debug!("TLS handshake with a client failed: {e}");
            let _ = conn.write_tls(&mut io);
            return None;
        }
    }
    Some(conn)
}

/// A handler that sends every request to the same host and target over
/// HTTPS, with `308 Permanent Redirect` (the method and body are kept):
/// for the plain-HTTP port beside an HTTPS server (`--redirect-http`).
///
/// The host is the request's `Host` (which the parser has already checked
/// is a host name or address with an optional port), its port replaced by
/// the HTTPS one; a request without `Host` (HTTP/1.0) gets `400`. The
/// target is the request's path and query as sent, so the redirect can
/// only point at this host.
#[derive(Debug, Clone, Copy)]
pub struct RedirectToHttps {
    port: u16,
}

impl RedirectToHttps {
    /// Redirects to HTTPS on `port` (left out of the URL when it is 443).
    pub fn new(port: u16) -> RedirectToHttps {
        RedirectToHttps { port }
    }

    /// Where `req` is sent, if it names a host.
    pub fn location(&self, req: &crate::Request) -> Option<String> {
        let host = req.header_str("host")?.trim();
        // `[v6]:port`, `name:port`, or either without a port.
        let name = match host.strip_prefix('[') {
            Some(rest) => &host[..rest.find(']')? + 2],
            None => host.split(':').next()?,
        };
        if name.is_empty() {
            return None;
        }
        let path = req.path();
        let path = if path.starts_with('/') { path } else { "/" };
        let mut url = format!("https://{name}");
        if self.port != 443 {
            url.push(':');
            url.push_str(&self.port.to_string());
        }
        url.push_str(path);
        if let Some(q) = req.query() {
            url.push('?');
            url.push_str(q);
        }
        Some(url)
    }
}

impl Handler for RedirectToHttps {
    fn handle(&self, req: &crate::Request) -> crate::Response {
        match self.location(req) {
            Some(url) => crate::Response::redirect(crate::StatusCode::PERMANENT_REDIRECT, &url),
            None => crate::Response::error(crate::StatusCode::BAD_REQUEST),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate valid from `not_before` to `not_after`.
    fn cert(not_before: (i32, u8, u8), not_after: (i32, u8, u8)) -> (Vec<u8>, i64, i64) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let (from, to) = (
            params.not_before.unix_timestamp(),
            params.not_after.unix_timestamp(),
        );
        let cert = params.self_signed(&key).unwrap();
        (cert.der().to_vec(), from, to)
    }

    #[test]
    fn the_validity_period_is_read_from_the_certificate() {
        // UTCTime before 2050, GeneralizedTime from 2050 on.
        let (der, from, to) = cert((2020, 2, 29), (2051, 7, 1));
        assert_eq!(der::validity(&der), Some((from, to)));
        assert_eq!(validity_problem(&der, from + 1), None);
        assert_eq!(validity_problem(&der, to), None);
        let expired = validity_problem(&der, to + 1).unwrap();
        assert!(
            expired.starts_with("expired on Sat, 01 Jul 2051 00:00:00 GMT"),
            "{expired}"
        );
        let early = validity_problem(&der, from - 1).unwrap();
        assert!(
            early.starts_with("not valid until Sat, 29 Feb 2020 00:00:00 GMT"),
            "{early}"
        );
    }

    /// A configuration with a self-signed certificate for `localhost`, the
    /// directory of its files, and the certificate.
    fn self_signed() -> (
        tempfile::TempDir,
        TlsConfig,
        rustls::pki_types::CertificateDer<'static>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("c.pem"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("k.pem"), key.serialize_pem()).unwrap();
        let tls =
            TlsConfig::from_pem_files(dir.path().join("c.pem"), dir.path().join("k.pem")).unwrap();
        (dir, tls, cert.der().clone())
    }

    /// A std socket as a transport, for the handshake tests.
    struct Plain(std::net::TcpStream);

    impl Read for Plain {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Plain {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.0.flush()
        }
    }

    impl Transport for Plain {
        fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.0.set_read_timeout(timeout)
        }
        fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
            self.0.set_write_timeout(timeout)
        }
        fn shutdown_write(&mut self) -> io::Result<()> {
            self.0.shutdown(std::net::Shutdown::Write)
        }
    }

    /// A client that sends its `Finished` and a request in one write, and
    /// the server's side of the handshake (reading whole records or not):
    /// what rustls holds after it, and what is left in the socket.
    fn handshake_then_request(whole_records: bool) -> (Vec<u8>, Vec<u8>) {
        let (_dir, tls, cert) = self_signed();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let client_config =
            rustls::ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut sock = std::net::TcpStream::connect(addr).unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut conn = rustls::ClientConnection::new(Arc::new(client_config), name).unwrap();
            while conn.is_handshaking() {
                while conn.wants_write() {
                    conn.write_tls(&mut sock).unwrap();
                }
                if conn.is_handshaking() {
                    conn.read_tls(&mut sock).unwrap();
                    conn.process_new_packets().unwrap();
                }
            }
            // Finished is queued: the request joins it in one write.
            conn.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
            let mut out = Vec::new();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
            sock.write_all(&out).unwrap();
            sock
        });
        let (server, _) = listener.accept().unwrap();
        let mut io = Plain(server.try_clone().unwrap());
        let mut conn = handshake(&mut io, &tls, Duration::from_secs(10), whole_records).unwrap();
        let _client = client.join().unwrap();
        let mut held = Vec::new();
        let _ = conn.process_new_packets();
        let _ = conn.reader().read_to_end(&mut held);
        server.set_nonblocking(true).unwrap();
        let mut left = vec![0u8; 4096];
        let n = (&server).read(&mut left).unwrap_or(0);
        left.truncate(n);
        (held, left)
    }

    /// For a hand-over to kTLS, the handshake reads whole records and no
    /// further: a request sent with the client's `Finished` stays in the
    /// socket, as one application-data record. Reading as usual, rustls
    /// would hold it.
    #[test]
    fn a_handshake_for_ktls_leaves_what_follows_in_the_socket() {
        let (held, left) = handshake_then_request(true);
        assert!(held.is_empty(), "{held:?}");
        assert!(left.len() > 5 && left[0] == 23, "{left:?}");
        assert_eq!(
            usize::from(u16::from_be_bytes([left[3], left[4]])) + 5,
            left.len()
        );
        let (held, left) = handshake_then_request(false);
        assert_eq!(held, b"GET / HTTP/1.1\r\n\r\n");
        assert!(left.is_empty(), "{left:?}");
    }

    /// The warm-up really runs the server's side of a handshake with each
    /// key exchange (an empty wire would warm up nothing).
    #[test]
    fn the_warm_up_handshakes_with_every_key_exchange() {
        let (_dir, tls, _) = self_signed();
        for group in [
            provider::kx_group::X25519MLKEM768,
            provider::kx_group::X25519,
            provider::kx_group::SECP256R1,
        ] {
            assert!(tls.handshake_in_memory(group), "{:?}", group.name());
        }
        // A group the server does not offer gets no handshake.
        assert!(!tls.handshake_in_memory(provider::kx_group::SECP384R1));
    }
}

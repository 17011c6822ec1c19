//! kTLS: the kernel encrypts and decrypts the records once rustls has done
//! the handshake, so that file bodies go out with `sendfile(2)` over TLS
//! as they do over plain HTTP.
//!
//! Off unless asked for ([`TlsConfig::ktls`](super::TlsConfig::ktls),
//! `--ktls`), and used only where the kernel has it: at start, one probe
//! per process sets `TCP_ULP "tls"` and each cipher's `TLS_TX` and
//! `TLS_RX` on a loopback socket of its own ([`probe`]); [`decide`] then
//! picks kTLS for a connection whose cipher the kernel took, and rustls
//! otherwise. Only a connection whose upgrade cannot fail half-way is
//! handed over: the handshake reads whole records only (so that nothing
//! the client sent after its `Finished` is left inside rustls), rustls'
//! last records are flushed, and the plaintext it already decrypted is
//! served first.
//!
//! After the hand-over the kernel holds the keys. A client's alert
//! (`close_notify` ends the stream) and handshake messages arrive as
//! records of their own, read here with `recvmsg`; a TLS 1.3 key update
//! cannot be followed (rustls has given up the key schedule), so it ends
//! the connection. Our `close_notify` is sent as an alert record.
//!
//! The machines this project is built and measured on have no kTLS
//! (`CONFIG_TLS` unset: `TCP_ULP "tls"` fails with ENOENT), so what runs
//! here is the probe and the decision; the hand-over itself has not run
//! against a kernel.

use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::sync::OnceLock;
use std::time::Duration;

use rustls::ConnectionTrafficSecrets;

use crate::transport::Transport;

use crate::sys::{self, SOL_TLS};

const TCP_ULP: libc::c_int = 31;
const TLS_TX: libc::c_int = 1;
const TLS_RX: libc::c_int = 2;

const TLS_1_2_VERSION: u16 = 0x0303;
const TLS_1_3_VERSION: u16 = 0x0304;

/// The record content types kTLS reports.
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// The ciphers kTLS knows, as `linux/tls.h` numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cipher {
    Aes128Gcm = 51,
    Aes256Gcm = 52,
    Chacha20Poly1305 = 54,
}

impl Cipher {
    const ALL: [Cipher; 3] = [
        Cipher::Aes128Gcm,
        Cipher::Aes256Gcm,
        Cipher::Chacha20Poly1305,
    ];

    /// (key, salt, explicit IV) lengths in `struct tls12_crypto_info_*`.
    fn lengths(self) -> (usize, usize, usize) {
        match self {
            Cipher::Aes128Gcm => (16, 4, 8),
            Cipher::Aes256Gcm => (32, 4, 8),
            Cipher::Chacha20Poly1305 => (32, 0, 12),
        }
    }

    /// The cipher of a negotiated suite.
    pub(crate) fn of(suite: rustls::CipherSuite) -> Option<Cipher> {
        use rustls::CipherSuite as S;
        Some(match suite {
            S::TLS13_AES_128_GCM_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => Cipher::Aes128Gcm,
            S::TLS13_AES_256_GCM_SHA384
            | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => Cipher::Aes256Gcm,
            S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => Cipher::Chacha20Poly1305,
            _ => return None,
        })
    }
}

/// What this kernel's kTLS takes: the ciphers it accepted for both
/// directions, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kernel {
    Ciphers(Vec<Cipher>),
    Unavailable(String),
}

/// How a connection's records are encrypted after the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// By the kernel: file bodies go out with `sendfile`.
    Kernel(Cipher),
    /// By rustls, and why not by the kernel.
    Rustls(&'static str),
}

/// Whether a connection that negotiated `suite` is handed to the kernel.
pub(crate) fn decide(enabled: bool, kernel: &Kernel, suite: rustls::CipherSuite) -> Decision {
    if !enabled {
        return Decision::Rustls("kTLS is off");
    }
    let Kernel::Ciphers(ciphers) = kernel else {
        return Decision::Rustls("the kernel has no kTLS");
    };
    match Cipher::of(suite) {
        Some(cipher) if ciphers.contains(&cipher) => Decision::Kernel(cipher),
        Some(_) => Decision::Rustls("the kernel's kTLS lacks the cipher"),
        None => Decision::Rustls("kTLS has no such cipher"),
    }
}

/// The kernel's kTLS, probed once per process.
pub(crate) fn kernel() -> &'static Kernel {
    static KERNEL: OnceLock<Kernel> = OnceLock::new();
    KERNEL.get_or_init(|| match probe() {
        Ok(ciphers) if !ciphers.is_empty() => Kernel::Ciphers(ciphers),
        Ok(_) => Kernel::Unavailable("the kernel's kTLS takes none of our ciphers".into()),
        Err(e) => Kernel::Unavailable(e),
    })
}

/// Sets up kTLS on a loopback connection of its own, with made-up keys:
/// `TCP_ULP "tls"`, then each cipher's `TLS_TX` and `TLS_RX` on a fresh
/// connection (a direction's keys can be set once). The ciphers the kernel
/// took both ways, or why it took none.
fn probe() -> Result<Vec<Cipher>, String> {
    let mut taken = Vec::new();
    for cipher in Cipher::ALL {
        let (_client, server) = loopback_pair().map_err(|e| format!("probe socket: {e}"))?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&server);
        set_ulp(fd).map_err(|e| format!("setsockopt(TCP_ULP, \"tls\"): {e}"))?;
        let info = crypto_info(
            TLS_1_3_VERSION,
            cipher,
            &[7; 32][..cipher.lengths().0],
            &[9; 12],
            0,
        );
        if set_keys(fd, TLS_TX, &info).is_ok() && set_keys(fd, TLS_RX, &info).is_ok() {
            taken.push(cipher);
        }
    }
    Ok(taken)
}

fn loopback_pair() -> io::Result<(std::net::TcpStream, std::net::TcpStream)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let client = std::net::TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((client, server))
}

fn set_ulp(fd: RawFd) -> io::Result<()> {
    sys::setsockopt_bytes(fd, libc::SOL_TCP, TCP_ULP, b"tls")
}

fn set_keys(fd: RawFd, direction: libc::c_int, info: &[u8]) -> io::Result<()> {
    sys::setsockopt_bytes(fd, SOL_TLS, direction, info)
}

/// A `struct tls12_crypto_info_*` of `linux/tls.h`: version and cipher
/// (two native-endian u16), then the explicit IV, the key, the salt and
/// the record sequence number (big-endian), in that order. rustls' 12-byte
/// IV is the salt (first 4 bytes) and the explicit IV (last 8) for
/// AES-GCM, and all IV for ChaCha20-Poly1305.
fn crypto_info(version: u16, cipher: Cipher, key: &[u8], iv: &[u8; 12], seq: u64) -> Vec<u8> {
    let (key_len, salt_len, iv_len) = cipher.lengths();
    debug_assert_eq!(key.len(), key_len);
    let mut info = Vec::with_capacity(4 + iv_len + key_len + salt_len + 8);
    info.extend_from_slice(&version.to_ne_bytes());
    info.extend_from_slice(&(cipher as u16).to_ne_bytes());
    info.extend_from_slice(&iv[salt_len..]);
    info.extend_from_slice(key);
    info.extend_from_slice(&iv[..salt_len]);
    info.extend_from_slice(&seq.to_be_bytes());
    info
}

/// The crypto info for one direction of a connection.
fn secrets_info(version: u16, seq: u64, secrets: &ConnectionTrafficSecrets) -> Option<Vec<u8>> {
    let (cipher, key, iv) = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (Cipher::Aes128Gcm, key, iv),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (Cipher::Aes256Gcm, key, iv),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Cipher::Chacha20Poly1305, key, iv)
        }
        _ => return None,
    };
    let iv: &[u8; 12] = iv.as_ref().try_into().ok()?;
    (key.as_ref().len() == cipher.lengths().0)
        .then(|| crypto_info(version, cipher, key.as_ref(), iv, seq))
}

/// Hands a connection whose handshake is done, and whose last records are
/// sent, to the kernel. `Err` with the connection if nothing was changed
/// (the socket refused the ULP); `Ok(Err(e))` if the socket was changed
/// and then failed: it must be closed.
pub(crate) fn hand_over(
    fd: RawFd,
    conn: Box<rustls::ServerConnection>,
) -> Result<io::Result<()>, Box<rustls::ServerConnection>> {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => TLS_1_3_VERSION,
        Some(rustls::ProtocolVersion::TLSv1_2) => TLS_1_2_VERSION,
        _ => return Err(conn),
    };
    if conn.wants_write() || set_ulp(fd).is_err() {
        return Err(conn);
    }
    let secrets = match conn.dangerous_extract_secrets() {
        Ok(s) => s,
        Err(e) => return Ok(Err(io::Error::other(e))),
    };
    let (Some(tx), Some(rx)) = (
        secrets_info(version, secrets.tx.0, &secrets.tx.1),
        secrets_info(version, secrets.rx.0, &secrets.rx.1),
    ) else {
        return Ok(Err(io::Error::other("kTLS: a cipher it does not know")));
    };
    Ok(set_keys(fd, TLS_TX, &tx).and_then(|()| set_keys(fd, TLS_RX, &rx)))
}

/// A connection the kernel encrypts: reads and writes go to the socket as
/// plaintext, `sendfile` included, after the plaintext rustls decrypted
/// before the hand-over.
pub(crate) struct KtlsStream<'a, T: Transport + ?Sized> {
    pub io: &'a mut T,
    pub fd: RawFd,
    /// Plaintext rustls had decrypted, not yet read.
    pub early: Vec<u8>,
}

impl<T: Transport + ?Sized> Read for KtlsStream<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.early.is_empty() {
            let n = buf.len().min(self.early.len());
            buf[..n].copy_from_slice(&self.early[..n]);
            self.early.drain(..n);
            return Ok(n);
        }
        match self.io.read(buf) {
            // The next record is not data: read it as what it is.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => {}
            other => return other,
        }
        let mut record = [0u8; 512];
        let (kind, n) = sys::recv_tls_record(self.fd, &mut record, APPLICATION_DATA)?;
        match (kind, &record[..n]) {
            (APPLICATION_DATA, data) => {
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                Ok(n)
            }
            // close_notify: the end of the stream.
            (ALERT, [_, 0]) => Ok(0),
            (ALERT, [_, why]) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("TLS alert {why} from the client"),
            )),
            (HANDSHAKE, _) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a TLS handshake message (key update) after the kernel took over",
            )),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("an unexpected TLS record (type {kind})"),
            )),
        }
    }
}

impl<T: Transport + ?Sized> Write for KtlsStream<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.io.flush()
    }
}

impl<T: Transport + ?Sized> Transport for KtlsStream<'_, T> {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }

    /// `close_notify`, then the FIN.
    fn shutdown_write(&mut self) -> io::Result<()> {
        close_notify(self.fd);
        self.io.shutdown_write()
    }

    fn read_waker(&mut self) -> Option<crate::transport::ReadWaker> {
        self.io.read_waker()
    }

    fn send_file(
        &mut self,
        head: &[u8],
        file: &std::fs::File,
        offset: u64,
        len: u64,
    ) -> io::Result<()> {
        self.io.send_file(head, file, offset, len)
    }
}

/// Sends a `close_notify` alert as a record of its own, if the socket
/// takes it at once.
pub(crate) fn close_notify(fd: RawFd) {
    let _ = sys::send_tls_record(fd, ALERT, &[1, 0]);
}

/// Reads whole TLS records only: never a byte past the end of the record
/// it is in, so that what a client sends after its last handshake record
/// stays in the socket for the kernel. One read for each record's header
/// and one (or more) for its body.
pub(crate) struct RecordReader {
    header: [u8; 5],
    /// Bytes of the current header seen.
    have: usize,
    /// Bytes of the current record's body still to come.
    left: usize,
}

impl RecordReader {
    pub(crate) fn new() -> RecordReader {
        RecordReader {
            header: [0; 5],
            have: 0,
            left: 0,
        }
    }

    /// The most the next read may take.
    pub(crate) fn limit(&self) -> usize {
        if self.left > 0 {
            self.left
        } else {
            5 - self.have
        }
    }

    /// Follows bytes that were read, whole or in parts of records.
    pub(crate) fn seen(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = self.left.min(bytes.len());
                self.left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 5 {
                self.left = usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.have = 0;
            }
        }
    }

    /// Whether the bytes seen end at a record boundary.
    #[cfg(test)]
    fn at_boundary(&self) -> bool {
        self.left == 0 && self.have == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's structures (`linux/tls.h`): 40 bytes for AES-128-GCM,
    /// 56 for AES-256-GCM and ChaCha20-Poly1305, fields in order.
    #[test]
    fn crypto_info_has_the_kernels_layout() {
        let iv: [u8; 12] = std::array::from_fn(|i| 0xa0 + i as u8);
        let key: Vec<u8> = (0..16).collect();
        let info = crypto_info(TLS_1_3_VERSION, Cipher::Aes128Gcm, &key, &iv, 0x0102);
        assert_eq!(info.len(), 40);
        assert_eq!(&info[..4], &[0x04, 0x03, 51, 0]);
        assert_eq!(&info[4..12], &iv[4..]);
        assert_eq!(&info[12..28], &key[..]);
        assert_eq!(&info[28..32], &iv[..4]);
        assert_eq!(&info[32..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        let key32 = [5u8; 32];
        let aes256 = crypto_info(TLS_1_2_VERSION, Cipher::Aes256Gcm, &key32, &iv, 0);
        assert_eq!((aes256.len(), &aes256[..4]), (56, &[0x03, 0x03, 52, 0][..]));
        let chacha = crypto_info(TLS_1_3_VERSION, Cipher::Chacha20Poly1305, &key32, &iv, 7);
        assert_eq!(chacha.len(), 56);
        assert_eq!(&chacha[4..16], &iv[..]);
        assert_eq!(&chacha[16..48], &key32[..]);
        assert_eq!(chacha[55], 7);
    }

    /// kTLS only when asked for, the kernel has it, and it took the
    /// negotiated cipher; rustls with the reason otherwise.
    #[test]
    fn the_fallback_decision() {
        use rustls::CipherSuite as S;
        let all = Kernel::Ciphers(Cipher::ALL.to_vec());
        let aes_only = Kernel::Ciphers(vec![Cipher::Aes128Gcm, Cipher::Aes256Gcm]);
        let none = Kernel::Unavailable("ENOENT".into());
        let suite = S::TLS13_AES_128_GCM_SHA256;
        assert_eq!(
            decide(true, &all, suite),
            Decision::Kernel(Cipher::Aes128Gcm)
        );
        assert_eq!(
            decide(true, &all, S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384),
            Decision::Kernel(Cipher::Aes256Gcm)
        );
        assert_eq!(decide(false, &all, suite), Decision::Rustls("kTLS is off"));
        assert_eq!(
            decide(true, &none, suite),
            Decision::Rustls("the kernel has no kTLS")
        );
        assert_eq!(
            decide(true, &aes_only, S::TLS13_CHACHA20_POLY1305_SHA256),
            Decision::Rustls("the kernel's kTLS lacks the cipher")
        );
        assert_eq!(
            decide(true, &all, S::TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA),
            Decision::Rustls("kTLS has no such cipher")
        );
    }

    /// This machine's kernel, whatever it is, gives an answer, and the
    /// probe leaves nothing open; a kernel without kTLS says why.
    #[test]
    fn the_probe_answers() {
        match kernel() {
            Kernel::Ciphers(c) => assert!(!c.is_empty()),
            Kernel::Unavailable(why) => assert!(!why.is_empty()),
        }
        if !std::path::Path::new("/proc/sys/net/ipv4/tcp_available_ulp").exists() {
            return;
        }
        let ulps = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp").unwrap();
        if !ulps.split_whitespace().any(|u| u == "tls") {
            assert!(matches!(kernel(), Kernel::Unavailable(_)), "{:?}", kernel());
        }
    }

    /// The handshake's reader never reads past the record it is in.
    #[test]
    fn records_are_read_whole_and_no_further() {
        let mut r = RecordReader::new();
        assert_eq!(r.limit(), 5);
        r.seen(&[22, 3, 1]);
        assert_eq!(r.limit(), 2);
        r.seen(&[0, 4]);
        assert_eq!(r.limit(), 4);
        r.seen(&[1, 2]);
        assert_eq!(r.limit(), 2);
        r.seen(&[3, 4]);
        assert!(r.at_boundary());
        // Two records and part of a third in one go.
        r.seen(&[22, 3, 3, 0, 1, 9, 23, 3, 3, 0, 2, 8, 8, 21, 3]);
        assert_eq!(r.limit(), 3);
        r.seen(&[3, 0, 2]);
        assert_eq!(r.limit(), 2);
    }
}

//! HTTP Basic authentication (RFC 7617) in front of any handler.
//!
//! The check runs before the wrapped handler, so a refused request never
//! reaches it (nor, for static files, the file system). Passwords are kept
//! only as hashes: a plain password is kept as its SHA-256, and bcrypt and
//! argon2 hashes are verified on the blocking pool, since each costs tens
//! of milliseconds of CPU that would otherwise stall a may worker and every
//! connection on it.

use std::fmt;
#[cfg(feature = "password-hashes")]
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::handler::Handler;
use crate::request::Request;
use crate::response::{Response, check_header};
use crate::status::StatusCode;

/// Why a credential, a user or a realm was refused. Its message never
/// holds the password or hash it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthError {
    /// A `user:password` spec without the `:`.
    NoColon,
    /// An empty user name.
    EmptyUser,
    /// A user name holding `:` or a control character, which Basic
    /// credentials cannot carry (RFC 7617 §2).
    BadUser,
    /// The same user name twice.
    DuplicateUser,
    /// An empty password.
    EmptyPassword,
    /// `sha256:` not followed by exactly 64 hexadecimal digits.
    BadSha256,
    /// A `$2a$`, `$2b$` or `$2y$` string that is not a bcrypt hash with a
    /// cost from 4 to 31.
    BadBcrypt,
    /// An `$argon2id$`, `$argon2i$` or `$argon2d$` string that is not a
    /// valid argon2 PHC string.
    BadArgon2,
    /// A credential that starts with `$` but is neither bcrypt nor argon2
    /// (sha512-crypt's `$6$`, Apache's `$apr1$`, ...).
    UnknownHash,
    /// A bcrypt or argon2 hash, in a coserve built without its
    /// `password-hashes` feature.
    HashesNotBuilt,
    /// A realm holding a control character, which cannot be sent in a
    /// header field.
    BadRealm,
    /// No users: every request would be refused.
    NoUsers,
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthError::NoColon => "a credential is user:password (or user:sha256:HEX, or user:HASH); the ':' is missing",
            AuthError::EmptyUser => "the user name is empty",
            AuthError::BadUser => "a user name cannot hold ':' or a control character",
            AuthError::DuplicateUser => "the same user is given twice",
            AuthError::EmptyPassword => "the password is empty",
            AuthError::BadSha256 => "sha256: must be followed by 64 hexadecimal digits (echo -n PASSWORD | sha256sum)",
            AuthError::BadBcrypt => "not a bcrypt hash ($2b$, $2y$ or $2a$, a cost from 4 to 31, 53 characters of salt and hash)",
            AuthError::BadArgon2 => "not an argon2 PHC string ($argon2id$v=19$m=...,t=...,p=...$SALT$HASH)",
            AuthError::UnknownHash => "an unknown hash: bcrypt ($2b$, $2y$, $2a$) and argon2 ($argon2id$, ...) are known; write plain:PASSWORD for a password that starts with '$'",
            AuthError::HashesNotBuilt => "bcrypt and argon2 hashes need coserve's password-hashes feature",
            AuthError::BadRealm => "the realm holds a control character",
            AuthError::NoUsers => "no users: every request would be refused",
        })
    }
}

impl std::error::Error for AuthError {}

/// A user's password, as a [`BasicAuth`] checks it: a plain password, its
/// SHA-256, or a bcrypt or argon2 hash.
///
/// Whatever the form, only a hash is kept, and its `Debug` shows only the
/// form.
#[derive(Clone)]
pub struct Credential(Secret);

#[derive(Clone)]
enum Secret {
    /// The SHA-256 of the password: what a plain password and the
    /// `sha256:` form become, so that comparing costs the same whatever
    /// the password's length.
    Sha256([u8; 32]),
    #[cfg(feature = "password-hashes")]
    Slow(Arc<SlowHash>),
}

#[cfg(feature = "password-hashes")]
enum SlowHash {
    Bcrypt(String),
    Argon2(Box<argon2::PasswordHash>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = match &self.0 {
            Secret::Sha256(_) => "sha256",
            #[cfg(feature = "password-hashes")]
            Secret::Slow(slow) => match **slow {
                SlowHash::Bcrypt(_) => "bcrypt",
                SlowHash::Argon2(_) => "argon2",
            },
        };
        write!(f, "Credential({form})")
    }
}

impl Credential {
    /// A plain password. Kept as its SHA-256, not as itself.
    pub fn plain(password: &str) -> Credential {
        Credential(Secret::Sha256(Sha256::digest(password).into()))
    }

    /// Parses the part of a `--auth` spec after `user:`:
    ///
    /// | form | example |
    /// |---|---|
    /// | a plain password | `correct horse` |
    /// | `plain:` and a password (one that starts with `$` or `sha256:`) | `plain:$ecret` |
    /// | `sha256:` and 64 hex digits, the SHA-256 of the password | `sha256:4104d3...5631` |
    /// | a bcrypt hash (`$2b$`, `$2y$`, `$2a$`) | `$2y$10$...` |
    /// | an argon2 PHC string (`$argon2id$`, `$argon2i$`, `$argon2d$`) | `$argon2id$v=19$m=19456,t=2,p=1$...` |
    ///
    /// bcrypt and argon2 need the `password-hashes` feature (on by
    /// default); without it they are [`AuthError::HashesNotBuilt`].
    pub fn parse(spec: &str) -> Result<Credential, AuthError> {
        if let Some(password) = spec.strip_prefix("plain:") {
            return Credential::nonempty(password);
        }
        if let Some(hex) = spec.strip_prefix("sha256:") {
            return parse_sha256(hex).map(|d| Credential(Secret::Sha256(d)));
        }
        let Some(hash) = spec.strip_prefix('$') else {
            return Credential::nonempty(spec);
        };
        match hash.split('$').next().unwrap_or("") {
            "2a" | "2b" | "2y" => parse_bcrypt(spec),
            "argon2id" | "argon2i" | "argon2d" => parse_argon2(spec),
            _ => Err(AuthError::UnknownHash),
        }
    }

    /// Parses a `--auth` spec, `user:` then a credential in one of the
    /// forms of [`Credential::parse`]. The user is everything before the
    /// first `:`; `htpasswd -nbB user password` prints such a spec.
    ///
    /// ```
    /// use coserve::Credential;
    /// let (user, _credential) = Credential::parse_user("alice:correct horse").unwrap();
    /// assert_eq!(user, "alice");
    /// assert!(Credential::parse_user("alice").is_err());
    /// ```
    pub fn parse_user(spec: &str) -> Result<(String, Credential), AuthError> {
        let (user, credential) = spec.split_once(':').ok_or(AuthError::NoColon)?;
        check_user(user)?;
        Ok((user.to_owned(), Credential::parse(credential)?))
    }

    fn nonempty(password: &str) -> Result<Credential, AuthError> {
        if password.is_empty() {
            return Err(AuthError::EmptyPassword);
        }
        Ok(Credential::plain(password))
    }

    #[cfg(feature = "password-hashes")]
    fn is_slow(&self) -> bool {
        matches!(self.0, Secret::Slow(_))
    }
}

fn check_user(user: &str) -> Result<(), AuthError> {
    if user.is_empty() {
        return Err(AuthError::EmptyUser);
    }
    if user.chars().any(|c| c == ':' || c.is_control()) {
        return Err(AuthError::BadUser);
    }
    Ok(())
}

fn parse_sha256(hex: &str) -> Result<[u8; 32], AuthError> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return Err(AuthError::BadSha256);
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let digit = |b: u8| (b as char).to_digit(16).ok_or(AuthError::BadSha256);
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(digest)
}

#[cfg(feature = "password-hashes")]
fn parse_bcrypt(spec: &str) -> Result<Credential, AuthError> {
    let parts: bcrypt::HashParts = spec.parse().map_err(|_| AuthError::BadBcrypt)?;
    if !(4..=31).contains(&parts.get_cost()) {
        return Err(AuthError::BadBcrypt);
    }
    Ok(Credential(Secret::Slow(Arc::new(SlowHash::Bcrypt(
        spec.to_owned(),
    )))))
}

#[cfg(feature = "password-hashes")]
fn parse_argon2(spec: &str) -> Result<Credential, AuthError> {
    let hash = argon2::PasswordHash::new(spec).map_err(|_| AuthError::BadArgon2)?;
    // What verifying would find wrong, found now: the algorithm, the
    // parameters, a salt and a hash to compare with.
    argon2::Algorithm::try_from(hash.algorithm.as_str()).map_err(|_| AuthError::BadArgon2)?;
    argon2::Params::try_from(&hash).map_err(|_| AuthError::BadArgon2)?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(AuthError::BadArgon2);
    }
    Ok(Credential(Secret::Slow(Arc::new(SlowHash::Argon2(
        Box::new(hash),
    )))))
}

#[cfg(not(feature = "password-hashes"))]
fn parse_bcrypt(_: &str) -> Result<Credential, AuthError> {
    Err(AuthError::HashesNotBuilt)
}

#[cfg(not(feature = "password-hashes"))]
fn parse_argon2(_: &str) -> Result<Credential, AuthError> {
    Err(AuthError::HashesNotBuilt)
}

/// HTTP Basic authentication in front of a handler: users and their
/// credentials, built with chained setters, then [`BasicAuth::wrap`]ped
/// around the handler to protect.
///
/// A request without valid credentials gets `401 Unauthorized` with
/// `WWW-Authenticate: Basic realm="REALM", charset="UTF-8"`, and the
/// wrapped handler is not called. Passwords are compared in constant time,
/// and a user that does not exist costs what a wrong password does, so
/// that timing tells neither. Nothing of the `Authorization` field is
/// logged.
///
/// bcrypt and argon2 are slow on purpose: each verification costs tens of
/// milliseconds of CPU, so it runs on the [`blocking()`](crate::blocking())
/// pool, parking only the request's coroutine. A password that verified is
/// remembered, per user, as a keyed SHA-256 (the key random to each
/// [`Protected`]), so the user's next requests cost one SHA-256; a wrong
/// password always costs a full verification. Every request carries the
/// password, in clear text unless the connection is TLS.
///
/// ```
/// use coserve::{BasicAuth, Credential, Request, StatusCode};
/// use coserve::Handler as _;
///
/// # fn main() -> Result<(), coserve::AuthError> {
/// let app = BasicAuth::new("staff")
///     .user("alice", Credential::plain("correct horse"))
///     // As the command line's --auth takes it: `echo -n 'battery staple' | sha256sum`.
///     .user_spec("bob:sha256:11e2b7895e7b3dca8df8d0cf965fde793b82cd39242774277ca90d72d09bfd59")
///     .wrap(|_: &Request| "the staff page\n")?;
///
/// let anonymous = Request::parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
/// let refused = app.handle(&anonymous);
/// assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(
///     refused.header_value("WWW-Authenticate"),
///     Some(r#"Basic realm="staff", charset="UTF-8""#)
/// );
///
/// // base64 of "alice:correct horse"
/// let alice = Request::parse(
///     b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic YWxpY2U6Y29ycmVjdCBob3JzZQ==\r\n\r\n",
/// )
/// .unwrap();
/// assert_eq!(app.handle(&alice).status(), StatusCode::OK);
/// // base64 of "bob:battery staple"
/// let bob = Request::parse(
///     b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Basic Ym9iOmJhdHRlcnkgc3RhcGxl\r\n\r\n",
/// )
/// .unwrap();
/// assert_eq!(app.handle(&bob).status(), StatusCode::OK);
/// assert_eq!(BasicAuth::request_user(&alice).as_deref(), Some("alice"));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BasicAuth {
    realm: String,
    users: Vec<(String, Credential)>,
    /// The first user refused, reported by `wrap`.
    refused: Option<AuthError>,
}

impl BasicAuth {
    /// No users yet, and the realm the browser shows when it asks for a
    /// password (quotes and backslashes in it are escaped).
    pub fn new(realm: impl Into<String>) -> BasicAuth {
        BasicAuth {
            realm: realm.into(),
            users: Vec::new(),
            refused: None,
        }
    }

    /// Adds a user. A name that is empty, holds `:` or a control
    /// character, or was added before, is refused: [`BasicAuth::wrap`]
    /// returns the error.
    pub fn user(mut self, name: impl Into<String>, credential: Credential) -> BasicAuth {
        let name = name.into();
        let checked =
            check_user(&name).and_then(|()| match self.users.iter().any(|(n, _)| *n == name) {
                true => Err(AuthError::DuplicateUser),
                false => Ok(()),
            });
        match checked {
            Ok(()) => self.users.push((name, credential)),
            Err(e) => {
                self.refused.get_or_insert(e);
            }
        }
        self
    }

    /// Adds a user from a `user:credential` spec, as the command line's
    /// `--auth` takes it ([`Credential::parse_user`]). A spec that does not
    /// parse is refused: [`BasicAuth::wrap`] returns the error.
    pub fn user_spec(mut self, spec: &str) -> BasicAuth {
        match Credential::parse_user(spec) {
            Ok((name, credential)) => self.user(name, credential),
            Err(e) => {
                self.refused.get_or_insert(e);
                self
            }
        }
    }

    /// Protects `inner`: the result is a [`Handler`] that calls it only for
    /// requests with valid credentials. The error is the first user refused
    /// by a setter, a realm with a control character, or no users at all.
    pub fn wrap<H: Handler>(self, inner: H) -> Result<Protected<H>, AuthError> {
        if let Some(e) = self.refused {
            return Err(e);
        }
        if self.users.is_empty() {
            return Err(AuthError::NoUsers);
        }
        let challenge = challenge(&self.realm)?;
        // A user that does not exist is verified against a configured
        // credential, slow if any is, so that it costs what a wrong
        // password does.
        #[cfg(feature = "password-hashes")]
        let decoy = self
            .users
            .iter()
            .find(|(_, c)| c.is_slow())
            .unwrap_or(&self.users[0])
            .1
            .clone();
        #[cfg(not(feature = "password-hashes"))]
        let decoy = self.users[0].1.clone();
        Ok(Protected {
            inner,
            challenge,
            users: self
                .users
                .into_iter()
                .map(|(name, credential)| User {
                    name,
                    credential,
                    #[cfg(feature = "password-hashes")]
                    remembered: Mutex::new(None),
                })
                .collect(),
            decoy,
            #[cfg(feature = "password-hashes")]
            key: random_key(),
        })
    }

    /// The user name of a request's Basic credentials, or `None` without
    /// any. It is not verified here: in a handler that a [`Protected`]
    /// wraps, the request got there only because it was.
    pub fn request_user(req: &Request) -> Option<String> {
        let mut basic = basic_credentials(req)?;
        basic.decoded.truncate(basic.colon);
        Some(basic.decoded)
    }
}

/// The `WWW-Authenticate` value for `realm`, which is a quoted-string: its
/// quotes and backslashes are escaped, and a control character is
/// refused.
fn challenge(realm: &str) -> Result<String, AuthError> {
    let mut value = String::from("Basic realm=\"");
    for c in realm.chars() {
        if c == '"' || c == '\\' {
            value.push('\\');
        }
        value.push(c);
    }
    value.push_str("\", charset=\"UTF-8\"");
    check_header("WWW-Authenticate", &value).map_err(|_| AuthError::BadRealm)?;
    Ok(value)
}

#[cfg(feature = "password-hashes")]
fn random_key() -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    // Without randomness (which Linux always has) nothing is remembered,
    // and every request with a bcrypt or argon2 user costs a full
    // verification.
    getrandom::fill(&mut key).ok().map(|()| key)
}

/// A handler behind Basic authentication, made by [`BasicAuth::wrap`].
pub struct Protected<H> {
    inner: H,
    /// The `WWW-Authenticate` value of a 401.
    challenge: String,
    users: Box<[User]>,
    /// What the password of a user that does not exist is checked against.
    decoy: Credential,
    /// Keys the SHA-256 of a password that verified; `None`: nothing is
    /// remembered.
    #[cfg(feature = "password-hashes")]
    key: Option<[u8; 32]>,
}

struct User {
    name: String,
    credential: Credential,
    /// The keyed SHA-256 of the last password that verified against a
    /// bcrypt or argon2 hash: one per user, so the memory is bounded by
    /// the configuration, not by the attempts.
    #[cfg(feature = "password-hashes")]
    remembered: Mutex<Option<[u8; 32]>>,
}

impl<H> fmt::Debug for Protected<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Protected")
            .field("challenge", &self.challenge)
            .field(
                "users",
                &self.users.iter().map(|u| &u.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Handler for Protected<H> {
    fn handle(&self, req: &Request) -> Response {
        if self.authenticates(req) {
            self.inner.handle(req)
        } else {
            Response::error(StatusCode::UNAUTHORIZED).header("WWW-Authenticate", &*self.challenge)
        }
    }

    /// A streamed body is not read before the credentials are checked: a
    /// refused client's body is drained or its connection closed.
    fn body_policy(&self, req: &Request) -> crate::BodyPolicy {
        self.inner.body_policy(req)
    }
}

impl<H> Protected<H> {
    fn authenticates(&self, req: &Request) -> bool {
        let Some(basic) = basic_credentials(req) else {
            return false;
        };
        let (name, password) = basic.decoded.split_at(basic.colon);
        let password = &password[1..];
        match self.users.iter().find(|u| u.name == name) {
            Some(user) => self.verify(user, password),
            None => {
                let _ = verify_once(&self.decoy, password);
                false
            }
        }
    }

    #[cfg(feature = "password-hashes")]
    fn verify(&self, user: &User, password: &str) -> bool {
        if !user.credential.is_slow() {
            return verify_once(&user.credential, password);
        }
        let tag = self.key.map(|key| -> [u8; 32] {
            Sha256::new()
                .chain_update(key)
                .chain_update(password)
                .finalize()
                .into()
        });
        // Copied out, so that no guard is held across the verification,
        // which parks the coroutine.
        let remembered = *user.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(tag), Some(remembered)) = (tag, remembered)
            && bool::from(tag.ct_eq(&remembered))
        {
            return true;
        }
        let verified = verify_once(&user.credential, password);
        if verified && tag.is_some() {
            *user.remembered.lock().unwrap_or_else(|e| e.into_inner()) = tag;
        }
        verified
    }

    #[cfg(not(feature = "password-hashes"))]
    fn verify(&self, user: &User, password: &str) -> bool {
        verify_once(&user.credential, password)
    }
}

/// Verifies `password` against `credential`, the slow hashes on the
/// blocking pool.
fn verify_once(credential: &Credential, password: &str) -> bool {
    match &credential.0 {
        Secret::Sha256(digest) => Sha256::digest(password).ct_eq(digest).into(),
        #[cfg(feature = "password-hashes")]
        Secret::Slow(slow) => {
            let (slow, password) = (slow.clone(), password.to_owned());
            crate::blocking::blocking(move || match &*slow {
                SlowHash::Bcrypt(hash) => bcrypt::verify(&password, hash).unwrap_or(false),
                SlowHash::Argon2(hash) => {
                    use argon2::PasswordVerifier as _;
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &**hash)
                        .is_ok()
                }
            })
        }
    }
}

/// The decoded `user:password` of an `Authorization: Basic` field.
struct Basic {
    decoded: String,
    /// Where the first `:` is.
    colon: usize,
}

/// A request's Basic credentials, or `None` when it has none or they are
/// malformed (not base64, not UTF-8, no `:`).
fn basic_credentials(req: &Request) -> Option<Basic> {
    let value = req.header("authorization")?.trim_ascii();
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = STANDARD_PAD_INDIFFERENT.decode(token.trim_ascii()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let colon = decoded.find(':')?;
    Some(Basic { decoded, colon })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA256_OF_CORRECT_HORSE: &str =
        "4104d36f8da2c254349f85836793ebe029e0c957063a34c91c2e9203187b5631";

    fn form(spec: &str) -> Result<String, AuthError> {
        Credential::parse(spec).map(|c| format!("{c:?}"))
    }

    #[test]
    fn specs_parse_to_their_forms() {
        assert_eq!(form("correct horse"), Ok("Credential(sha256)".into()));
        assert_eq!(form("plain:$ecret"), Ok("Credential(sha256)".into()));
        assert_eq!(
            form(&format!("sha256:{SHA256_OF_CORRECT_HORSE}")),
            Ok("Credential(sha256)".into())
        );
        assert_eq!(
            form(&format!(
                "sha256:{}",
                SHA256_OF_CORRECT_HORSE.to_ascii_uppercase()
            )),
            Ok("Credential(sha256)".into())
        );
        let (user, _) = Credential::parse_user("alice:pass:with:colons").unwrap();
        assert_eq!(user, "alice");
    }

    #[test]
    fn a_plain_password_and_its_sha256_are_the_same_credential() {
        let Secret::Sha256(plain) = Credential::plain("correct horse").0 else {
            panic!("a plain password is kept as its SHA-256");
        };
        let Secret::Sha256(hashed) =
            Credential::parse(&format!("sha256:{SHA256_OF_CORRECT_HORSE}"))
                .unwrap()
                .0
        else {
            panic!("sha256: is kept as the digest");
        };
        assert_eq!(plain, hashed);
        // `plain:` is taken off, not hashed with the password.
        let Secret::Sha256(prefixed) = Credential::parse("plain:correct horse").unwrap().0 else {
            panic!()
        };
        assert_eq!(prefixed, plain);
    }

    #[test]
    fn malformed_specs_are_refused_with_their_reason() {
        let cases: &[(&str, AuthError)] = &[
            ("alice", AuthError::NoColon),
            (":secret", AuthError::EmptyUser),
            ("alice:", AuthError::EmptyPassword),
            ("alice:plain:", AuthError::EmptyPassword),
            ("al\x07ice:secret", AuthError::BadUser),
            ("alice:sha256:", AuthError::BadSha256),
            ("alice:sha256:abc", AuthError::BadSha256),
            (
                // 64 characters, one not hex.
                "alice:sha256:g104d36f8da2c254349f85836793ebe029e0c957063a34c91c2e9203187b5631",
                AuthError::BadSha256,
            ),
            (
                // 66 hex digits.
                "alice:sha256:4104d36f8da2c254349f85836793ebe029e0c957063a34c91c2e9203187b563100",
                AuthError::BadSha256,
            ),
            ("alice:$6$salt$hash", AuthError::UnknownHash),
            ("alice:$apr1$salt$hash", AuthError::UnknownHash),
            ("alice:$ecret", AuthError::UnknownHash),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter_map(|&(spec, want)| {
                let got = Credential::parse_user(spec).map(|(u, c)| (u, format!("{c:?}")));
                (got != Err(want)).then(|| format!("{spec:?}: {got:?}, not {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[cfg(feature = "password-hashes")]
    #[test]
    fn bcrypt_and_argon2_strings_are_checked_when_parsed() {
        // htpasswd -nbBC 4 alice 'bcrypt pw:1'
        let bcrypt = "$2y$04$s3ivHPnnpuRiRmylq7EnXOiGLXsV3z24Dj11cuHjzNsdLPVJaxeqO";
        // echo -n 'argon pw:2' | argon2 coservesalt -id -t 1 -m 6 -p 1 -e
        let argon2 = "$argon2id$v=19$m=64,t=1,p=1$Y29zZXJ2ZXNhbHQ$lSh1M6fPb/AMAE2W2LvJaKhGukHxwaOej3YjZPRWxEg";
        assert_eq!(form(bcrypt), Ok("Credential(bcrypt)".into()));
        assert_eq!(
            form(&bcrypt.replace("$2y$", "$2b$")),
            Ok("Credential(bcrypt)".into())
        );
        assert_eq!(
            form(&bcrypt.replace("$2y$", "$2a$")),
            Ok("Credential(bcrypt)".into())
        );
        assert_eq!(form(argon2), Ok("Credential(argon2)".into()));
        let cases: &[(String, AuthError)] = &[
            (bcrypt[..59].into(), AuthError::BadBcrypt),
            (bcrypt.replace("$04$", "$03$"), AuthError::BadBcrypt),
            (bcrypt.replace("$04$", "$32$"), AuthError::BadBcrypt),
            (bcrypt.replace("$04$", "$x4$"), AuthError::BadBcrypt),
            (bcrypt.replace("s3iv", "s3i!"), AuthError::BadBcrypt),
            (argon2.replace("m=64", "m=x"), AuthError::BadArgon2),
            (argon2.replace("m=64", "m=1"), AuthError::BadArgon2),
            (
                // A salt, but no hash to compare with.
                "$argon2id$v=19$m=64,t=1,p=1$Y29zZXJ2ZXNhbHQ".into(),
                AuthError::BadArgon2,
            ),
            (
                argon2.replace("argon2id", "argon2x"),
                AuthError::UnknownHash,
            ),
            ("$argon2id$v=19$m=64,t=1,p=1".into(), AuthError::BadArgon2),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter_map(|(spec, want)| {
                let got = form(spec);
                (got != Err(*want)).then(|| format!("{spec:?}: {got:?}, not {want:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[cfg(not(feature = "password-hashes"))]
    #[test]
    fn bcrypt_and_argon2_say_they_need_the_feature() {
        assert_eq!(form("$2y$04$x"), Err(AuthError::HashesNotBuilt));
        assert_eq!(form("$argon2id$v=19$x"), Err(AuthError::HashesNotBuilt));
    }

    #[test]
    fn no_message_shows_the_password() {
        let password = "hunter2-unique";
        for spec in [
            format!("alice:sha256:{password}"),
            format!("alice:$2y$04${password}"),
            format!("alice:$argon2id${password}"),
            format!("alice:$zz${password}"),
        ] {
            let e = Credential::parse_user(&spec).unwrap_err();
            assert!(!e.to_string().contains(password), "{e}");
        }
        let c = Credential::plain(password);
        assert!(!format!("{c:?}").contains(password));
        let auth = BasicAuth::new("r").user("alice", c);
        assert!(!format!("{auth:?}").contains(password));
    }

    #[test]
    fn users_and_realms_are_checked_when_wrapped() {
        let ok = |_: &Request| "ok";
        let plain = || Credential::plain("pw");
        let refusal = |auth: BasicAuth| auth.wrap(ok).map(|_| ()).unwrap_err();
        assert_eq!(refusal(BasicAuth::new("r")), AuthError::NoUsers);
        assert_eq!(
            refusal(BasicAuth::new("r").user("a:b", plain())),
            AuthError::BadUser
        );
        assert_eq!(
            refusal(BasicAuth::new("r").user("", plain())),
            AuthError::EmptyUser
        );
        assert_eq!(
            refusal(BasicAuth::new("r").user("a", plain()).user("a", plain())),
            AuthError::DuplicateUser
        );
        assert_eq!(
            refusal(BasicAuth::new("r").user_spec("a").user("b", plain())),
            AuthError::NoColon
        );
        assert_eq!(
            refusal(BasicAuth::new("r\r\nX-Evil: 1").user("a", plain())),
            AuthError::BadRealm
        );
        let escaped = BasicAuth::new(r#"say "hi" \o/"#)
            .user("a", plain())
            .wrap(ok)
            .unwrap();
        assert_eq!(
            escaped.challenge,
            r#"Basic realm="say \"hi\" \\o/", charset="UTF-8""#
        );
    }

    fn with_authorization(value: &[u8]) -> Request {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: ".to_vec();
        raw.extend_from_slice(value);
        raw.extend_from_slice(b"\r\n\r\n");
        Request::parse(&raw).unwrap()
    }

    fn basic(user_password: &[u8]) -> Request {
        let mut value = b"Basic ".to_vec();
        value.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(user_password)
                .as_bytes(),
        );
        with_authorization(&value)
    }

    #[test]
    fn the_authorization_field_is_read_leniently_but_exactly() {
        let user = |req: &Request| BasicAuth::request_user(req);
        assert_eq!(user(&basic(b"alice:pw")).as_deref(), Some("alice"));
        assert_eq!(user(&basic(b":pw")).as_deref(), Some(""));
        // The scheme is case-insensitive; padding may be left off.
        assert_eq!(
            user(&with_authorization(b"bAsIc   YWxpY2U6cHc=")).as_deref(),
            Some("alice")
        );
        assert_eq!(
            user(&with_authorization(b"Basic YWxpY2U6cHc")).as_deref(),
            Some("alice")
        );
        for bad in [
            &b"Basic !!!"[..],
            b"Basic",
            b"Basic ",
            b"Bearer YWxpY2U6cHc=",
            b"YWxpY2U6cHc=",
        ] {
            assert_eq!(
                user(&with_authorization(bad)),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(user(&basic(b"no colon")), None);
        assert_eq!(user(&basic(b"al\xffice:pw")), None);
        let none = Request::parse(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(user(&none), None);
    }

    #[test]
    fn only_the_right_password_of_a_known_user_passes() {
        let app = BasicAuth::new("r")
            .user("alice", Credential::plain("correct horse"))
            .user_spec(&format!("bob:sha256:{SHA256_OF_CORRECT_HORSE}"))
            .wrap(|_: &Request| "in")
            .unwrap();
        let status = |req: Request| app.handle(&req).status();
        assert_eq!(status(basic(b"alice:correct horse")), StatusCode::OK);
        assert_eq!(status(basic(b"bob:correct horse")), StatusCode::OK);
        for wrong in [
            &b"alice:correct horse "[..],
            b"alice:correct hors",
            b"alice:",
            b"Alice:correct horse",
            b"carol:correct horse",
            b"alice:correct horse\x00",
        ] {
            assert_eq!(
                status(basic(wrong)),
                StatusCode::UNAUTHORIZED,
                "{:?}",
                String::from_utf8_lossy(wrong)
            );
        }
    }

    #[cfg(feature = "password-hashes")]
    #[test]
    fn a_slow_hash_that_verified_is_remembered_keyed_and_per_user() {
        // htpasswd -nbBC 4 alice 'bcrypt pw:1'
        let app = BasicAuth::new("r")
            .user_spec("alice:$2y$04$s3ivHPnnpuRiRmylq7EnXOiGLXsV3z24Dj11cuHjzNsdLPVJaxeqO")
            .wrap(|_: &Request| "in")
            .unwrap();
        let remembered = || *app.users[0].remembered.lock().unwrap();
        assert_eq!(
            app.handle(&basic(b"alice:bcrypt pw:2")).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(remembered(), None, "a failure is not remembered");
        assert_eq!(
            app.handle(&basic(b"alice:bcrypt pw:1")).status(),
            StatusCode::OK
        );
        let tag = remembered().expect("a success is remembered");
        // Keyed: not the password's plain SHA-256.
        assert_ne!(tag, <[u8; 32]>::from(Sha256::digest("bcrypt pw:1")));
        assert!(app.verify(&app.users[0], "bcrypt pw:1"));
        // Another password still costs (and fails) a full verification,
        // and leaves what was remembered alone.
        assert!(!app.verify(&app.users[0], "bcrypt pw:2"));
        assert_eq!(remembered(), Some(tag));
    }
}

//! Basic auth (`BasicAuth`) in front of a handler and in front of static
//! files, over real sockets: who gets in, what the others get, and that
//! neither the wrapped handler nor the log sees a refused request's
//! credentials.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use coserve::{BasicAuth, Request, StaticFiles};

use crate::util::{TestServer, eventually, read_response, request, start, test_config, test_files};

const REALM: &str = "coserve tests";
const CHALLENGE: &str = r#"Basic realm="coserve tests", charset="UTF-8""#;

/// `user:spec` as `--auth` takes it, and the password that opens it.
/// The hashes were made once by the tools a user would reach for (and by
/// the crates coserve verifies with), so that this also checks coserve
/// reads what they write.
const USERS: &[(&str, &str)] = &[
    ("alice:correct horse", "correct horse"),
    // echo -n 'battery staple' | sha256sum
    (
        "bob:sha256:11e2b7895e7b3dca8df8d0cf965fde793b82cd39242774277ca90d72d09bfd59",
        "battery staple",
    ),
    // A password with a colon, and a credential that needs `plain:`.
    ("cleo:plain:$ecret:with:colons", "$ecret:with:colons"),
];

#[cfg(feature = "password-hashes")]
const SLOW_USERS: &[(&str, &str)] = &[
    // htpasswd -nbBC 4 carol 'bcrypt pw:1' (Apache writes $2y$)
    (
        "carol:$2y$04$s3ivHPnnpuRiRmylq7EnXOiGLXsV3z24Dj11cuHjzNsdLPVJaxeqO",
        "bcrypt pw:1",
    ),
    // bcrypt::hash("bcrypt b pw", 4)
    (
        "dave:$2b$04$zRIl.Epipy81DxhiwUXu.egDIDmXaGoCI0a44mhfnc/lzzNbhsmL.",
        "bcrypt b pw",
    ),
    // carol's hash with the $2a$ prefix: the same algorithm for UTF-8.
    (
        "dora:$2a$04$s3ivHPnnpuRiRmylq7EnXOiGLXsV3z24Dj11cuHjzNsdLPVJaxeqO",
        "bcrypt pw:1",
    ),
    // echo -n 'argon pw:2' | argon2 coservesalt -id -t 1 -m 6 -p 1 -e
    (
        "erin:$argon2id$v=19$m=64,t=1,p=1$Y29zZXJ2ZXNhbHQ$lSh1M6fPb/AMAE2W2LvJaKhGukHxwaOej3YjZPRWxEg",
        "argon pw:2",
    ),
    // argon2 0.6, Argon2id, m=64 t=1 p=1, salt "coserve-test-salt"
    (
        "finn:$argon2id$v=19$m=64,t=1,p=1$Y29zZXJ2ZS10ZXN0LXNhbHQ$oT+W+ZjDOo6Xvms3IOem7txr9RO6IgCCwLtc0Llxqx4",
        "argon rust pw",
    ),
];

#[cfg(not(feature = "password-hashes"))]
const SLOW_USERS: &[(&str, &str)] = &[];

/// Every user and password, fast and slow.
fn users() -> impl Iterator<Item = (&'static str, &'static str)> {
    USERS.iter().chain(SLOW_USERS).map(|&(spec, password)| {
        let user = spec.split_once(':').unwrap().0;
        (user, password)
    })
}

fn auth() -> BasicAuth {
    USERS
        .iter()
        .chain(SLOW_USERS)
        .fold(BasicAuth::new(REALM), |auth, (spec, _)| {
            auth.user_spec(spec)
        })
}

/// A protected handler that says who came in, and counts its calls.
fn start_protected() -> (TestServer, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = auth()
        .wrap(move |req: &Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            format!("hello, {}\n", BasicAuth::request_user(req).unwrap())
        })
        .expect("valid users");
    (start(test_config(), app), calls)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `GET /` with this `Authorization` value, if any.
fn get(server: &TestServer, authorization: Option<&str>) -> crate::util::Resp {
    let headers: Vec<_> = authorization
        .iter()
        .map(|v| ("Authorization", *v))
        .collect();
    request(server, "GET", "/", &headers)
}

/// Checks a response is the challenge: 401, `WWW-Authenticate` and a short
/// body; says what differs.
fn challenged(r: &crate::util::Resp) -> Result<(), String> {
    let got = (r.status, r.header("www-authenticate"), r.text());
    let want = (401, Some(CHALLENGE), "401 Unauthorized\n".to_string());
    (got == want)
        .then_some(())
        .ok_or_else(|| format!("{got:?}, not {want:?}"))
}

crate::engine_tests! {
    #[test]
    fn a_request_without_credentials_is_challenged_and_not_handled() {
        let (server, calls) = start_protected();
        challenged(&get(&server, None)).unwrap();
        let head = request(&server, "HEAD", "/", &[]);
        assert_eq!(
            (head.status, head.header("www-authenticate")),
            (401, Some(CHALLENGE))
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn every_form_of_credential_lets_its_user_in() {
        let (server, calls) = start_protected();
        let mut wrong = Vec::new();
        for (user, password) in users() {
            let r = get(&server, Some(&basic(user, password)));
            if (r.status, r.text()) != (200, format!("hello, {user}\n")) {
                wrong.push(format!("{user}: {} {:?}", r.status, r.text()));
            }
            // Again, as a browser does on every request: a slow hash's
            // second time goes the remembered way.
            let r = get(&server, Some(&basic(user, password)));
            if r.status != 200 {
                wrong.push(format!("{user} again: {}", r.status));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(calls.load(Ordering::SeqCst), 2 * users().count());
    }

    #[test]
    fn a_wrong_password_or_an_unknown_user_is_challenged_and_not_handled() {
        let (server, calls) = start_protected();
        let mut wrong = Vec::new();
        for (user, password) in users() {
            for (u, p) in [
                (user, format!("{password}x")),
                (user, password[1..].to_string()),
                (user, String::new()),
                (&*user.to_uppercase(), password.to_string()),
                ("nobody", password.to_string()),
            ] {
                if let Err(e) = challenged(&get(&server, Some(&basic(u, &p)))) {
                    wrong.push(format!("{u}:{p}: {e}"));
                }
            }
        }
        // Another user's password.
        let (first, _) = users().next().unwrap();
        let (_, last) = users().last().unwrap();
        if let Err(e) = challenged(&get(&server, Some(&basic(first, last)))) {
            wrong.push(format!("{first} with another's password: {e}"));
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// What a client could send that is not Basic credentials is a 401,
    /// never the 400 or 500 of a request the server failed to read.
    #[test]
    fn a_malformed_authorization_field_is_a_401_not_a_400() {
        let (server, calls) = start_protected();
        let not_utf8 = format!("Basic {}", STANDARD.encode(b"alice:\xff\xfe"));
        let no_colon = format!("Basic {}", STANDARD.encode("alice correct horse"));
        let mut wrong = Vec::new();
        for value in [
            "Basic !!!",
            "Basic",
            "Basic ",
            "Basic ====",
            "basic",
            "Bearer YWxpY2U6Y29ycmVjdCBob3JzZQ==",
            "YWxpY2U6Y29ycmVjdCBob3JzZQ==",
            "Basic YWxpY2U6Y29ycmVjdCBob3JzZQ== extra",
            &not_utf8,
            &no_colon,
        ] {
            if let Err(e) = challenged(&get(&server, Some(value))) {
                wrong.push(format!("{value:?}: {e}"));
            }
        }
        // A field value that is not UTF-8 itself.
        let raw = server.one(
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nAuthorization: Basic \xff\xfe\r\n\r\n",
        );
        if let Err(e) = challenged(&raw) {
            wrong.push(format!("a value of raw bytes: {e}"));
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
    }

    /// A browser first asks without credentials, then again on the same
    /// connection with them: the 401 keeps the connection open.
    #[test]
    fn the_challenge_keeps_the_connection_for_the_retry() {
        let (server, _) = start_protected();
        let mut s = server.connect();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        challenged(&read_response(&mut s, false).unwrap()).unwrap();
        let retry = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            basic("alice", "correct horse")
        );
        s.write_all(retry.as_bytes()).unwrap();
        let r = read_response(&mut s, false).expect("a second response");
        assert_eq!((r.status, r.text()), (200, "hello, alice\n".to_string()));
    }

    /// The `coserve` binary's use: static files behind the check.
    #[test]
    fn static_files_are_served_only_with_credentials() {
        let site = crate::util::make_site();
        let files = StaticFiles::new(site.path(), test_files()).unwrap();
        let server = start(test_config(), auth().wrap(files).unwrap());
        for path in ["/", "/index.html", "/no-such-file", "/sub/"] {
            challenged(&request(&server, "GET", path, &[])).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let alice = basic("alice", "correct horse");
        let r = request(&server, "GET", "/index.html", &[("Authorization", &alice)]);
        assert_eq!(r.status, 200);
        assert!(r.text().contains("home page"), "{:?}", r.text());
        let r = request(&server, "GET", "/no-such-file", &[("Authorization", &alice)]);
        assert_eq!(r.status, 404);
    }

    /// The access log shows the request line, never the `Authorization`
    /// field: neither the password nor its base64, accepted or refused.
    #[test]
    fn credentials_never_reach_the_log() {
        let (server, _) = start_protected();
        let log = capture_log();
        let probe = format!("/auth-log-probe-{:?}", crate::util::engine());
        let password = "correct horse";
        for authorization in [basic("alice", password), basic("alice", "correct horsf"), basic("nobody", password)] {
            request(&server, "GET", &probe, &[("Authorization", &authorization)]);
        }
        // A line for each request shows that the capture works.
        let seen = eventually(Duration::from_secs(5), || {
            log.lines().iter().filter(|l| l.contains(&probe)).count() >= 3
        });
        let lines = log.lines();
        assert!(seen, "no access lines for {probe} in {lines:#?}");
        let secrets = [
            password.to_string(),
            STANDARD.encode(format!("alice:{password}")),
            STANDARD.encode(format!("nobody:{password}")),
            "correct horsf".to_string(),
        ];
        let leaks: Vec<_> = lines
            .iter()
            .filter(|l| secrets.iter().any(|s| l.contains(s)))
            .collect();
        assert!(leaks.is_empty(), "{leaks:#?}");
    }
}

/// A process-wide logger that keeps, while a test captures, the lines that
/// matter to these tests: those that name a probe path or hold a secret.
/// Other tests' lines are dropped, and with no capture on it answers that
/// nothing is enabled, so the rest of the suite logs as before.
struct Capture {
    active: AtomicUsize,
    lines: Mutex<Vec<String>>,
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        self.active.load(Ordering::SeqCst) > 0
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        const KEEP: &[&str] = &[
            "/auth-log-probe",
            "correct hors",
            "YWxpY2U6",
            "bm9ib2R5",
            "/sized-log-probe",
        ];
        if KEEP.iter().any(|k| line.contains(k)) {
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

/// While held, the kept log lines are captured.
pub(crate) struct CaptureGuard(&'static Capture);

impl CaptureGuard {
    pub(crate) fn lines(&self) -> Vec<String> {
        self.0.lines.lock().unwrap().clone()
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Captures, while the guard lives, the log lines that hold one of the
/// markers in `Capture::log` (tests/handlers.rs uses it too: a process has
/// one logger).
pub(crate) fn capture_log() -> CaptureGuard {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    let capture = *CAPTURE.get_or_init(|| {
        let capture: &'static Capture = Box::leak(Box::new(Capture {
            active: AtomicUsize::new(0),
            lines: Mutex::new(Vec::new()),
        }));
        log::set_logger(capture).expect("no other test installs a logger");
        log::set_max_level(log::LevelFilter::Trace);
        capture
    });
    capture.active.fetch_add(1, Ordering::SeqCst);
    CaptureGuard(capture)
}

//! The directory listing in a real browser: headless Chromium driven through
//! chromedriver's W3C WebDriver HTTP API.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages. Without them the
//! test fails when `CI` is set and is skipped (with a notice) otherwise.
//!
//! Four tests: the directory listing, the bundled site (`html/`) over
//! HTTPS with the test certificate's public key pinned, and the pages of
//! the `chat` and `events` examples (tests/examples.rs compiles them in).
//! Each saves a screenshot to `target/` (`listing.png`, `https.png`,
//! `chat.png`, `events.png`), and to `docs/` when
//! `COSERVE_UPDATE_SCREENSHOT=1`.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::examples::{chat, events, heard, join_chat, say};
use crate::util::{TestServer, start, start_files, test_config, test_files};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key of an element reference in WebDriver responses.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

const ODD_NAME: &str = "<b>odd&name.txt";
const ODD_BODY: &str = "contents of <b>odd&name.txt: 1 < 2 && 3 > 2";
const SECRET: &str = "TOP-SECRET-dotfile-4b9e";

/// Text files in the served root: (name, contents). Each is clicked in the
/// browser and must come back byte for byte.
const TEXT_FILES: &[(&str, &str)] = &[
    (ODD_NAME, ODD_BODY),
    ("100% done?.txt", "one hundred percent, question mark"),
    ("notes #1.txt", "a hash in the name"),
    ("it's \"quoted\".txt", "quotes in the name"),
    (
        "\u{fc}n\u{ef}c\u{f6}d\u{e9} \u{2713}.txt",
        "UTF-8 in the name",
    ),
    ("README.md", "# Project\n\nRead me first."),
];

/// Whether Chromium and chromedriver are installed. Without them, panics
/// when `CI` is set, else prints a notice that `test` is skipped.
fn browser_installed(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let msg = format!(
        "the browser test needs {CHROMIUM} and {CHROMEDRIVER}: \
         apt-get install -y chromium chromium-driver"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("skipping {test}: {msg}");
    false
}

#[test]
fn listing_in_a_browser() {
    if !browser_installed("listing_in_a_browser") {
        return;
    }

    // Declared before the driver, so the browser is gone before the server
    // shuts down.
    let server = listing_server(make_tree());
    let base = format!("http://{}/", server.addr);
    let driver = Driver::start(&[]);

    // The root listing.
    driver.goto(&base);
    assert_eq!(driver.title(), "Index of /");
    assert_eq!(
        driver.text(&driver.find("css selector", "h1")),
        "Index of /"
    );
    save_screenshot("listing.png", &driver.screenshot());

    let source = driver.source();
    assert!(!source.contains("secret"), "a dotfile is listed: {source}");
    assert!(driver.find_all("partial link text", "secret").is_empty());
    assert!(driver.find_all("link text", "../").is_empty());
    // Directories first, then files, by name, case-insensitively.
    let names: Vec<String> = driver
        .find_all("css selector", "tbody a")
        .iter()
        .map(|el| driver.text(el))
        .collect();
    assert_eq!(
        names,
        [
            "docs/",
            "sub dir/",
            "100% done?.txt",
            ODD_NAME,
            "archive.tar.gz",
            "it's \"quoted\".txt",
            "notes #1.txt",
            "photo.jpg",
            "README.md",
            "\u{fc}n\u{ef}c\u{f6}d\u{e9} \u{2713}.txt",
        ]
    );
    let row = driver.text(&driver.find("xpath", "//tr[td/a[text()='archive.tar.gz']]"));
    assert_eq!(row, "archive.tar.gz 12 MiB 2024-03-09 14:30");

    // Every awkward name links to its own file.
    for (name, contents) in TEXT_FILES {
        let link = driver.find("link text", name);
        driver.click(&link);
        let url = driver.current_url();
        assert!(
            url.starts_with(&base) && !url[base.len()..].contains('/'),
            "{name}: {url}"
        );
        assert_eq!(driver.body_text(), *contents, "{name} at {url}");
        driver.back();
        assert_eq!(driver.title(), "Index of /");
    }

    // Into a directory whose name has a space, and back up.
    driver.click(&driver.find("link text", "sub dir/"));
    assert_eq!(driver.current_url(), format!("{base}sub%20dir/"));
    assert_eq!(driver.title(), "Index of /sub dir/");
    let inner = driver.find("link text", "inner file.txt");
    assert_eq!(driver.find_all("link text", "../").len(), 1);
    driver.click(&inner);
    assert_eq!(driver.body_text(), "inside the sub dir");
    driver.back();
    driver.click(&driver.find("link text", "../"));
    assert_eq!(driver.current_url(), base);
    assert_eq!(driver.title(), "Index of /");
}

/// The real static-file handler with `listing` on (what `--listing` does),
/// on 127.0.0.1:0, serving `site`.
fn listing_server(site: tempfile::TempDir) -> TestServer {
    let mut server = start_files(site.path(), test_config(), test_files().listing(true));
    server.site = Some(site);
    server
}

/// The served tree, with fixed modification times so that the screenshot
/// is the same on every run.
fn make_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for (name, contents) in TEXT_FILES {
        fs::write(p.join(name), contents).unwrap();
    }
    fs::create_dir(p.join("sub dir")).unwrap();
    fs::write(p.join("sub dir/inner file.txt"), "inside the sub dir").unwrap();
    fs::create_dir(p.join("docs")).unwrap();
    fs::write(
        p.join("docs/guide.html"),
        "<!doctype html><title>guide</title>",
    )
    .unwrap();
    fs::write(p.join(".secret"), SECRET).unwrap();
    // Sparse: sizes without the bytes.
    File::create(p.join("archive.tar.gz"))
        .unwrap()
        .set_len(12 * 1024 * 1024 + 300_000)
        .unwrap();
    File::create(p.join("photo.jpg"))
        .unwrap()
        .set_len(1_572_864)
        .unwrap();

    let times = [
        ("archive.tar.gz", 1_709_994_600), // 2024-03-09 14:30
        ("photo.jpg", 1_718_454_720),
        ("README.md", 1_704_103_200),
        ("docs/guide.html", 1_700_000_000),
        ("docs", 1_700_000_000),
        ("sub dir/inner file.txt", 1_712_345_678),
        ("sub dir", 1_712_345_678),
    ];
    for (i, (name, _)) in TEXT_FILES.iter().enumerate() {
        set_mtime(&p.join(name), 1_720_000_000 + 86_400 * 3 * i as u64);
    }
    for (name, secs) in times {
        set_mtime(&p.join(name), secs);
    }
    dir
}

fn set_mtime(path: &Path, secs: u64) {
    File::open(path)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

#[test]
fn the_bundled_site_over_https_with_the_key_pinned() {
    if !browser_installed("the_bundled_site_over_https_with_the_key_pinned") {
        return;
    }

    // Two certificates for localhost, each signed by a test CA of its own
    // that Chromium does not trust; only the first one's key is pinned.
    let certs = tempfile::tempdir().unwrap();
    for prefix in ["pinned-", "other-"] {
        crate::tls::make_named(certs.path(), prefix, &["localhost", "127.0.0.1"]);
    }
    let pin = spki_sha256_base64(certs.path(), "pinned-");
    assert_ne!(pin, spki_sha256_base64(certs.path(), "other-"));
    // Declared before the driver, so the browser is gone before the servers
    // shut down.
    let pinned = https_site(certs.path(), "pinned-");
    let other = https_site(certs.path(), "other-");
    let driver = Driver::start(&[format!("--ignore-certificate-errors-spki-list={pin}")]);

    let base = format!("https://localhost:{}/", pinned.addr.port());
    driver.goto(&base);
    assert_eq!(driver.current_url(), base);
    assert_eq!(driver.title(), "Welcome to coserve");
    let page = driver.script(
        "const nav = performance.getEntriesByType('navigation')[0];
         const img = document.images[0];
         const sheet = document.styleSheets[0];
         return {
             protocol: location.protocol,
             status: nav.responseStatus,
             alpn: nav.nextHopProtocol,
             images: document.images.length,
             img: [new URL(img.src).pathname, img.complete, img.naturalWidth, img.naturalHeight],
             sheets: document.styleSheets.length,
             sheet: [new URL(sheet.href).pathname, sheet.cssRules.length > 0],
             fontSize: getComputedStyle(document.body).fontSize,
             maxWidth: getComputedStyle(document.querySelector('main')).maxWidth,
             resources: performance.getEntriesByType('resource')
                 .map(e => [new URL(e.name).pathname, e.initiatorType, e.responseStatus]),
         };",
    );
    assert_eq!(page["protocol"], "https:", "{page}");
    assert_eq!(page["status"], 200, "{page}");
    assert_eq!(page["alpn"], "http/1.1", "{page}");
    // The one image is the logo, decoded at its own size (128 by 128).
    assert_eq!(page["images"], 1, "{page}");
    assert_eq!(page["img"], json!(["/logo.png", true, 128, 128]), "{page}");
    // The one stylesheet loaded and applies: html/style.css sets the body
    // to 17px (the default is 16px) and main's max-width to 42rem.
    assert_eq!(page["sheets"], 1, "{page}");
    assert_eq!(page["sheet"], json!(["/style.css", true]), "{page}");
    assert_eq!(page["fontSize"], "17px", "{page}");
    assert_eq!(page["maxWidth"], "672px", "{page}");
    // Every resource the page fetched came back 200: the stylesheet and
    // the logo (as the image, and maybe again as the icon), nothing else.
    let resources = page["resources"].as_array().expect("an array");
    assert!(resources.iter().all(|r| r[2] == 200), "{page}");
    let mut paths: Vec<&str> = resources.iter().filter_map(|r| r[0].as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths, ["/logo.png", "/style.css"], "{page}");
    save_screenshot("https.png", &driver.screenshot());

    // The same site behind a certificate whose key is not pinned: Chromium
    // refuses it and shows its interstitial instead of the page.
    let unpinned = format!("https://localhost:{}/", other.addr.port());
    driver.goto(&unpinned);
    let title = driver.title();
    let body = driver.body_text();
    assert_ne!(title, "Welcome to coserve", "{body}");
    assert!(
        body.contains("ERR_CERT_AUTHORITY_INVALID"),
        "{unpinned}: {title}: {body}"
    );
}

/// The bundled site, `html/`, served over HTTPS on 127.0.0.1:0 with
/// `{prefix}cert.pem` and `{prefix}key.pem` from `dir`.
fn https_site(dir: &Path, prefix: &str) -> TestServer {
    let tls = coserve::TlsConfig::from_pem_files(
        dir.join(format!("{prefix}cert.pem")),
        dir.join(format!("{prefix}key.pem")),
    )
    .unwrap();
    let html = Path::new(env!("CARGO_MANIFEST_DIR")).join("html");
    start_files(html, test_config().tls(Some(tls)), test_files())
}

/// What Chromium's `--ignore-certificate-errors-spki-list` takes for the
/// certificate `{prefix}cert.pem` in `dir`: the base64 of the SHA-256 of
/// its SubjectPublicKeyInfo (DER), taken from the key, `{prefix}key.pem`.
fn spki_sha256_base64(dir: &Path, prefix: &str) -> String {
    use base64::Engine as _;
    use rcgen::PublicKeyData as _;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use sha2::{Digest as _, Sha256};

    let key = fs::read_to_string(dir.join(format!("{prefix}key.pem"))).unwrap();
    let spki = rcgen::KeyPair::from_pem(&key)
        .unwrap()
        .subject_public_key_info();
    // The certificate holds that same SubjectPublicKeyInfo.
    let cert = CertificateDer::from_pem_file(dir.join(format!("{prefix}cert.pem"))).unwrap();
    assert!(
        cert.windows(spki.len()).any(|w| w == spki),
        "{prefix}cert.pem does not hold {prefix}key.pem's public key"
    );
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&spki))
}

#[test]
fn chat_in_a_browser_with_a_rust_client() {
    if !browser_installed("chat_in_a_browser_with_a_rust_client") {
        return;
    }

    // Declared before the driver, so the browser is gone before the server
    // shuts down.
    let server = start(test_config(), chat::app());
    let driver = Driver::start(&[]);
    driver.goto(&format!("http://{}/", server.addr));
    assert_eq!(driver.title(), "coserve chat");
    let open = driver.wait_for(
        "the page's WebSocket to open",
        "return document.body.dataset.state || null;",
        |state| state == "open",
    );
    assert_eq!(open, "open");
    let input = driver.find("css selector", "#text");
    let send = driver.find("css selector", "#send");
    let shown = |n: usize| -> Vec<String> {
        driver.wait_for(
            &format!("{n} messages in the page's list"),
            "return Array.from(document.querySelectorAll('#messages li'), li => li.textContent);",
            |list| list.as_array().is_some_and(|l| l.len() >= n),
        );
        driver
            .find_all("css selector", "#messages li")
            .iter()
            .map(|li| driver.text(li))
            .collect()
    };

    // The browser's own message comes back to it, which also shows that
    // the hub has it: whatever is sent from now on reaches it.
    driver.send_keys(&input, "browser is here");
    driver.click(&send);
    assert_eq!(shown(1), ["browser is here"]);

    // A Rust client joins (it hears its own hello); the browser hears it.
    let mut rust = join_chat(server.addr, "rust is here");
    assert_eq!(shown(2), ["browser is here", "rust is here"]);

    // Typed and sent with the button: the Rust client gets exactly that
    // text, and the browser shows it as text, not markup.
    let markup = r#"<b>bold?</b> & "quoted" ✓"#;
    driver.send_keys(&input, markup);
    driver.click(&send);
    assert_eq!(heard(&mut rust), markup);
    assert_eq!(shown(3)[2], markup);

    // From the Rust client to the browser.
    let from_rust = "<i>from Rust</i> 1 < 2 && 3 > 2";
    say(&mut rust, from_rust);
    assert_eq!(heard(&mut rust), from_rust);
    assert_eq!(shown(4)[3], from_rust);

    // Enter sends too, and the input is emptied.
    driver.send_keys(&input, "sent with Enter\u{E007}");
    assert_eq!(heard(&mut rust), "sent with Enter");
    assert_eq!(
        shown(5),
        [
            "browser is here",
            "rust is here",
            markup,
            from_rust,
            "sent with Enter"
        ]
    );
    let page = driver.script(
        "const list = document.getElementById('messages');
         return {
             elements: list.querySelectorAll('li *').length,
             input: document.getElementById('text').value,
             status: document.getElementById('status').textContent,
         };",
    );
    assert_eq!(
        page["elements"], 0,
        "markup in a message became elements: {page}"
    );
    assert_eq!(page["input"], "", "{page}");
    assert_eq!(page["status"], "connected", "{page}");
    save_screenshot("chat.png", &driver.screenshot());

    // Both leave, and their connections end.
    drop((driver, rust));
    crate::examples::wait_all_closed(&server);
}

#[test]
fn events_in_a_browser() {
    if !browser_installed("events_in_a_browser") {
        return;
    }

    // Declared before the driver, so the browser is gone before the server
    // shuts down.
    let server = start(test_config(), events::app());
    let driver = Driver::start(&[]);
    driver.goto(&format!("http://{}/", server.addr));
    assert_eq!(driver.title(), "coserve events");
    // Counts 1, 2, ... a second apart: wait for the second.
    let seen = driver.wait_for(
        "#count to reach 2",
        "return [document.getElementById('count').textContent,
                 document.getElementById('last-id').textContent,
                 document.getElementById('status').textContent];",
        |v| {
            v[0].as_str()
                .and_then(|c| c.parse::<u64>().ok())
                .is_some_and(|n| n >= 2)
        },
    );
    // Each event's id is its count.
    assert_eq!(seen[0], seen[1], "{seen}");
    assert_eq!(seen[2], "open", "{seen}");
    save_screenshot("events.png", &driver.screenshot());

    // With the browser gone, the stream ends at the handler's next writes.
    drop(driver);
    crate::examples::wait_all_closed(&server);
}

/// Writes the screenshot to `target/{name}`, and to `docs/{name}` when
/// `COSERVE_UPDATE_SCREENSHOT=1`.
fn save_screenshot(name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join(name);
    fs::write(&target, png).unwrap();
    if std::env::var("COSERVE_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
        fs::create_dir_all(&docs).unwrap();
        fs::write(docs.join(name), png).unwrap();
    }
}

/// A chromedriver process, started in a process group of its own. Dropping
/// it kills the group: chromedriver and anything it started and left.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions. The group is
        // the one created for this child, which is not reaped yet (only
        // `wait` below reaps it), so its id cannot have been reused.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Chromedriver {
    /// Starts chromedriver on a port that was free a moment ago, logging to
    /// `log`.
    fn spawn(log: &Path) -> Chromedriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("spawn chromedriver");
        Chromedriver { child, port }
    }

    /// Polls `GET /status` until chromedriver says it is ready (true), or
    /// it exits or 20 s pass (false).
    fn wait_ready(&mut self) -> bool {
        let poll = agent(Duration::from_secs(2));
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut resp) = poll.get(&url).call()
                && let Ok(text) = resp.body_mut().read_to_string()
                && let Ok(v) = serde_json::from_str::<Value>(&text)
                && v["value"]["ready"] == true
            {
                return true;
            }
            if !matches!(self.child.try_wait(), Ok(None)) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }
}

/// A WebDriver session in headless Chromium. Dropping it ends the session,
/// which closes the browser, then stops chromedriver.
struct Driver {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT`
    base: String,
    session: Option<String>,
    // Dropped after `drop` below has ended the session, in this order.
    _chromedriver: Chromedriver,
    /// Chromium's profile and chromedriver's log.
    _tmp: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = self.session.take() {
            let _ = self
                .agent
                .delete(format!("{}/session/{id}", self.base))
                .call();
        }
    }
}

impl Driver {
    /// Starts chromedriver, waits until it is ready and opens a session in
    /// a Chromium started with the harness's flags and `extra_args`.
    fn start(extra_args: &[String]) -> Driver {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("chromedriver.log");
        // The port may be taken again before chromedriver binds it; then
        // chromedriver exits and another port is tried.
        let chromedriver = (0..3)
            .map(|_| Chromedriver::spawn(&log))
            .find_map(|mut c| c.wait_ready().then_some(c))
            .unwrap_or_else(|| {
                let log = fs::read_to_string(&log).unwrap_or_default();
                panic!("chromedriver did not become ready:\n{log}")
            });
        let mut driver = Driver {
            agent: agent(Duration::from_secs(30)),
            base: format!("http://127.0.0.1:{}", chromedriver.port),
            session: None,
            _chromedriver: chromedriver,
            _tmp: tmp,
        };
        let profile = driver._tmp.path().join("profile");
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-proxy-server",
            "--window-size=1000,720",
            "--force-device-scale-factor=1",
            "--hide-scrollbars",
        ]
        .map(String::from)
        .into();
        // Chromium honours `--ignore-certificate-errors-spki-list` only
        // with a `--user-data-dir`.
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend_from_slice(extra_args);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
            // Certificate errors stay errors (the default, said outright).
            "acceptInsecureCerts": false,
            "timeouts": {"implicit": 0, "pageLoad": 20_000, "script": 10_000},
        }}});
        let value = driver.call("POST", "/session", Some(caps));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_string();
        driver.session = Some(id);
        driver
    }

    /// One WebDriver command; returns its `value`, panicking on an error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let result = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            "POST" => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string()),
            _ => unreachable!("{method}"),
        };
        let mut resp = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: {e} in {text:?}"));
        if status != 200 {
            let v = &json["value"];
            panic!(
                "{method} {path}: {status} {}: {}",
                v["error"],
                v["message"].as_str().unwrap_or_default()
            );
        }
        json["value"].clone()
    }

    /// A command on the session: `path` is what follows `/session/{id}`.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let id = self.session.as_deref().expect("a session");
        self.call(method, &format!("/session/{id}{path}"), body)
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn back(&self) {
        self.cmd("POST", "/back", None);
    }

    fn current_url(&self) -> String {
        string(self.cmd("GET", "/url", None))
    }

    fn title(&self) -> String {
        string(self.cmd("GET", "/title", None))
    }

    fn source(&self) -> String {
        string(self.cmd("GET", "/source", None))
    }

    /// The one element found with `using` (`"link text"`, `"css selector"`,
    /// `"xpath"`, ...); panics if there is none.
    fn find(&self, using: &str, value: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": using, "value": value })),
        );
        element_id(&v)
    }

    /// Every element found with `using`.
    fn find_all(&self, using: &str, value: &str) -> Vec<String> {
        let v = self.cmd(
            "POST",
            "/elements",
            Some(json!({ "using": using, "value": value })),
        );
        v.as_array()
            .expect("an array")
            .iter()
            .map(element_id)
            .collect()
    }

    fn click(&self, element: &str) {
        self.cmd("POST", &format!("/element/{element}/click"), None);
    }

    /// Types `text` into an element (`\u{E007}` is Enter).
    fn send_keys(&self, element: &str, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// An element's rendered text.
    fn text(&self, element: &str) -> String {
        string(self.cmd("GET", &format!("/element/{element}/text"), None))
    }

    /// The rendered text of the page's body.
    fn body_text(&self) -> String {
        self.text(&self.find("css selector", "body"))
    }

    /// Runs `script` (a function body) in the page; what it returns.
    fn script(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Runs `script` until what it returns satisfies `done`, polling for up
    /// to 10 s; returns that value. Panics, saying it was waiting for
    /// `what` and what it saw last, when the time runs out.
    fn wait_for(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let value = self.script(script);
            if done(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {what}; last saw {value}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// A PNG of the viewport.
    fn screenshot(&self) -> Vec<u8> {
        base64_decode(&string(self.cmd("GET", "/screenshot", None)))
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn string(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => panic!("expected a string, got {other}"),
    }
}

fn element_id(v: &Value) -> String {
    v[ELEMENT]
        .as_str()
        .unwrap_or_else(|| panic!("not an element reference: {v}"))
        .to_string()
}

/// Standard base64 (with or without padding; whitespace ignored).
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' | b'\r' | b'\n' | b' ' => continue,
            _ => panic!("invalid base64 byte {c:#x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn base64_decoder() {
    assert_eq!(base64_decode(""), b"");
    assert_eq!(base64_decode("Zg=="), b"f");
    assert_eq!(base64_decode("Zm8="), b"fo");
    assert_eq!(base64_decode("Zm9v"), b"foo");
    assert_eq!(base64_decode("Zm9vYmFy"), b"foobar");
    assert_eq!(base64_decode("/+8A"), [0xff, 0xef, 0x00]);
}

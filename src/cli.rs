//! The command line: flags in the spirit of `python3 -m http.server`,
//! turned into the runtime's settings, a [`coserve::Config`] and the
//! static files' [`coserve::FilesOptions`].

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use coserve::{
    BasicAuth, CacheOptions, Config, Credential, EngineKind, FilesOptions, Response, Runtime,
    StatusCode, Symlinks,
};

/// A fast, safe HTTP/1.1 static-file server on may coroutines.
#[derive(Debug, Parser)]
#[command(name = "coserve", version, about)]
#[command(group(clap::ArgGroup::new("https").args(["tls_cert", "tls_dir"]).multiple(true)))]
pub struct Cli {
    /// Port to listen on; 0 picks a free port.
    #[arg(default_value_t = 8000)]
    pub port: u16,

    /// Address or host name to bind to [default: all interfaces, `::`
    /// taking IPv4 too, or `0.0.0.0` without IPv6].
    #[arg(short = 'b', long = "bind", value_name = "ADDR")]
    pub bind: Option<String>,

    /// Directory to serve.
    #[arg(
        short = 'd',
        long = "directory",
        value_name = "DIR",
        default_value = "."
    )]
    pub directory: PathBuf,

    /// Do not write the access log.
    #[arg(short, long)]
    pub quiet: bool,

    /// How connections are served: `coroutine` (one may coroutine each) or
    /// `thread` (one OS thread each).
    #[arg(long, value_name = "ENGINE", default_value = "coroutine")]
    pub engine: EngineKind,

    /// Worker processes sharing the port (SO_REUSEPORT), under a
    /// supervisor that restarts one that dies and replaces them one by one
    /// on SIGHUP.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub processes: u16,

    /// Worker threads, in each process (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Pin each worker thread to a core (may's default; off here, see
    /// docs/performance.md).
    #[arg(long)]
    pub pin_workers: bool,

    /// Stack size of each connection's coroutine; 16384 (65536 in debug
    /// builds) to 67108864.
    #[arg(long, value_name = "BYTES", default_value_t = Runtime::DEFAULT_STACK_SIZE,
          value_parser = parse_stack_size)]
    pub stack_size: usize,

    /// Close keep-alive connections idle this long.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub idle_timeout: u64,

    /// A connection idle this long frees its buffers and, on the coroutine
    /// engine, its coroutine: it waits in the parking lot until its next
    /// request.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub release_idle_after: u64,

    /// Close clients that take longer than this to send a request head.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,

    /// Answer 408 and close when a request body has not arrived whole this
    /// long after its head.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub body_timeout: u64,

    /// Close a connection when one write waits this long for the client
    /// to read.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    pub write_timeout: u64,

    /// How long SIGINT/SIGTERM waits for responses in flight before exiting.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_grace: u64,

    /// Connections served at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Connections served at once from one client address; more get 503
    /// [default: no cap].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// Which symlinks out of the directory are followed: `refuse` (none),
    /// `owner` (when the link and its target have the same owner, as
    /// nginx's `disable_symlinks if_not_owner`) or `follow` (all, as
    /// python's http.server).
    #[arg(long, value_name = "POLICY", default_value_t = Symlinks::SameOwner)]
    pub symlinks: Symlinks,

    /// The same as `--symlinks follow`.
    #[arg(long, hide = true)]
    pub follow_symlinks: bool,

    /// Answer 404 for a directory without an index file, instead of
    /// listing it.
    #[arg(long, overrides_with = "listing")]
    pub no_listing: bool,

    /// List directories that have no index file (the default).
    #[arg(long, hide = true, overrides_with = "no_listing")]
    pub listing: bool,

    /// Do not serve precompressed `.br`/`.gz` siblings.
    #[arg(long)]
    pub no_precompressed: bool,

    /// Do not compress responses on the fly (text, JavaScript, JSON, XML,
    /// SVG and wasm of 1 KiB or more get `br`, `zstd` or `gzip` otherwise).
    #[arg(long)]
    pub no_compress: bool,

    /// `Cache-Control` value for file responses.
    #[arg(long, value_name = "VALUE")]
    pub cache_control: Option<String>,

    /// Extra response header, `"Name: value"`; repeatable.
    #[arg(long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,

    /// Allow cross-origin requests from anywhere and answer preflights.
    #[arg(long)]
    pub cors: bool,

    /// Serve the root index for unknown paths without an extension.
    #[arg(long)]
    pub spa: bool,

    /// Fixed socket send buffer (SO_SNDBUF) for each connection, instead of
    /// the kernel's autotuning [default: autotuning].
    #[arg(long, value_name = "BYTES")]
    pub send_buffer: Option<usize>,

    /// Serve HTTPS with this certificate chain (PEM: the server's
    /// certificate first, then intermediates); needs --tls-key. Repeat the
    /// pair for several names: each client gets the first certificate for
    /// the name it asks for (SNI), else the first. SIGHUP reloads them.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Vec<PathBuf>,

    /// The private key of the --tls-cert in the same position (PEM:
    /// PKCS#8, RSA or EC; encrypted PKCS#8 with --tls-password-file).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Vec<PathBuf>,

    /// Serve HTTPS with every NAME.crt and NAME.key pair in this directory
    /// (the first name in order is the default certificate); SIGHUP lists
    /// it again.
    #[arg(long, value_name = "DIR", conflicts_with = "tls_cert")]
    pub tls_dir: Option<PathBuf>,

    /// The password of encrypted keys: this file's first line.
    #[arg(long, value_name = "FILE", requires = "https")]
    pub tls_password_file: Option<PathBuf>,

    /// Hand HTTPS connections to the kernel's TLS (kTLS) after the
    /// handshake, where the kernel has it, so that files go out with
    /// sendfile; a warning at start says when it has not.
    #[arg(long, requires = "https")]
    pub ktls: bool,

    /// Also listen on this port for plain HTTP, and answer every request
    /// there with a 308 to the same host and path over HTTPS.
    #[arg(long, value_name = "PORT", requires = "https")]
    pub redirect_http: Option<u16>,

    /// The TLS configuration `--tls-cert` and `--tls-key` made, once
    /// `main` has read them (see [`Cli::load_tls`]).
    #[arg(skip)]
    pub tls: Option<coserve::TlsConfig>,

    /// Read every file from disk on every request: no in-memory file cache.
    #[arg(long)]
    pub no_cache: bool,

    /// The most the file cache holds, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = CacheOptions::DEFAULT_MAX_BYTES)]
    pub cache_size: usize,

    /// Files up to this size are cached in memory; larger ones (up to
    /// 1 MiB) are held open and go out with sendfile.
    #[arg(long, value_name = "BYTES", default_value_t = CacheOptions::DEFAULT_MAX_FILE)]
    pub cache_max_file: u64,

    /// The most files the cache holds open (0: none); at most a quarter of
    /// the open-files limit.
    #[arg(long, value_name = "N", default_value_t = CacheOptions::DEFAULT_MAX_OPEN)]
    pub cache_max_open: usize,

    /// Ask for a user name and password (HTTP Basic auth): `USER:PASSWORD`,
    /// `USER:sha256:HEX`, or a bcrypt (`USER:$2b$...`) or argon2
    /// (`USER:$argon2id$...`) hash; repeatable.
    #[arg(long = "auth", value_name = "USER:SECRET")]
    pub auth: Vec<String>,

    /// Read `--auth` users from a file, one `USER:SECRET` a line (`#`
    /// comments; an htpasswd file of bcrypt hashes works), so that no
    /// secret shows in the process list.
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,

    /// The realm a browser shows when it asks for the password.
    #[arg(long, value_name = "TEXT", default_value = "coserve")]
    pub auth_realm: String,

    /// Index file name for directories; repeatable [default: index.html].
    #[arg(long = "index", value_name = "NAME")]
    pub index: Vec<String>,
}

/// A password file's first line, without its line ending (as python's
/// `http.server --tls-password-file` reads it).
fn read_password(file: &std::path::Path) -> Result<Vec<u8>, String> {
    let text =
        std::fs::read(file).map_err(|e| format!("--tls-password-file {}: {e}", file.display()))?;
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line).to_vec())
}

/// A stack size within the server's bounds (`MIN_STACK_SIZE` to
/// `MAX_STACK_SIZE`), refused here with the flag's name rather than later by
/// `Server::bind`.
fn parse_stack_size(s: &str) -> Result<usize, String> {
    let bytes: usize = s.parse().map_err(|e| format!("{e}"))?;
    let (min, max) = (Runtime::MIN_STACK_SIZE, Runtime::MAX_STACK_SIZE);
    if bytes < min {
        return Err(format!(
            "must be at least {min} bytes: the server's own code needs about half that"
        ));
    }
    if bytes > max {
        return Err(format!("must be at most {max} bytes"));
    }
    Ok(bytes)
}

/// `Name: value`, checked as a handler's header field is (a token name, a
/// value free of control characters), so a flag cannot inject a header line.
fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s.split_once(':').ok_or("expected \"Name: value\"")?;
    let (name, value) = (name.trim(), value.trim());
    Response::new(StatusCode::OK)
        .try_header(name, value)
        .map_err(|e| e.to_string())?;
    Ok((name.to_string(), value.to_string()))
}

impl Cli {
    /// The users `--auth` and `--auth-file` name, or `None` when there are
    /// none. An error names the file and line at fault.
    pub fn auth(&self) -> Result<Option<BasicAuth>, String> {
        // Checked here rather than by clap, whose error would repeat the
        // value, password and all.
        let mut specs: Vec<(String, String)> = self
            .auth
            .iter()
            .map(|s| ("--auth".to_string(), s.clone()))
            .collect();
        if let Some(path) = &self.auth_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("--auth-file {}: {e}", path.display()))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                specs.push((
                    format!("{}, line {}", path.display(), i + 1),
                    line.to_string(),
                ));
            }
        }
        if specs.is_empty() {
            return Ok(None);
        }
        let mut auth = BasicAuth::new(self.auth_realm.clone());
        for (from, spec) in specs {
            // Each is checked alone, so that the error says where it was.
            let (user, credential) =
                Credential::parse_user(&spec).map_err(|e| format!("{from}: {e}"))?;
            auth = auth.user(user, credential);
        }
        Ok(Some(auth))
    }

    /// may's runtime as these flags set it.
    pub fn runtime(&self) -> Runtime {
        Runtime::new()
            .workers(self.workers.unwrap_or(0))
            .pin_workers(self.pin_workers)
            .stack_size(self.stack_size)
    }

    /// The server's settings.
    pub fn config(&self) -> Config {
        Config::new()
            .engine(self.engine)
            .idle_timeout(Duration::from_secs(self.idle_timeout))
            .release_idle_after(Duration::from_millis(self.release_idle_after))
            .header_timeout(Duration::from_secs(self.header_timeout))
            .body_timeout(Duration::from_secs(self.body_timeout))
            .write_timeout(Duration::from_secs(self.write_timeout))
            .shutdown_grace(Duration::from_secs(self.shutdown_grace))
            .max_connections(self.max_connections)
            .max_connections_per_ip(self.max_connections_per_ip)
            .send_buffer(self.send_buffer)
            .tls(self.tls.clone())
    }

    /// Reads `--tls-cert` and `--tls-key` (or `--tls-dir`), with
    /// `--tls-password-file`, if given, into `self.tls`; the error names
    /// the file and what is wrong with it.
    pub fn load_tls(&mut self) -> Result<(), String> {
        if self.tls_cert.is_empty() && self.tls_dir.is_none() {
            return Ok(());
        }
        if self.tls_cert.len() != self.tls_key.len() {
            return Err(format!(
                "{} --tls-cert but {} --tls-key: give them in pairs",
                self.tls_cert.len(),
                self.tls_key.len()
            ));
        }
        let password = match &self.tls_password_file {
            Some(file) => Some(read_password(file)?),
            None => None,
        };
        let tls = match &self.tls_dir {
            Some(dir) => coserve::TlsConfig::from_pem_dir(dir, password.as_deref()),
            None => {
                let pairs = self.tls_cert.iter().zip(&self.tls_key);
                coserve::TlsConfig::from_pem_pairs_with_password(pairs, password.as_deref())
            }
        };
        self.tls = Some(tls.map_err(|e| e.to_string())?.ktls(self.ktls));
        Ok(())
    }

    /// What the static files are served with.
    pub fn files(&self) -> FilesOptions {
        let mut files = FilesOptions::new()
            .symlinks(if self.follow_symlinks {
                Symlinks::Follow
            } else {
                self.symlinks
            })
            .precompressed(!self.no_precompressed)
            .compress(!self.no_compress)
            .listing(!self.no_listing)
            .cors(self.cors)
            .spa(self.spa)
            .cache((!self.no_cache).then(|| {
                CacheOptions::new()
                    .max_bytes(self.cache_size)
                    .max_file(self.cache_max_file)
                    .max_open(self.cache_max_open)
            }));
        if !self.index.is_empty() {
            files = files.index(self.index.iter().cloned());
        }
        if let Some(value) = &self.cache_control {
            files = files.cache_control(value.clone());
        }
        for (name, value) in &self.headers {
            files = files.header(name.clone(), value.clone());
        }
        files
    }
}

//! Test harness: databases (a temp SQLite file, or a fresh database on the Postgres server
//! named by `SHORTENER_TEST_POSTGRES_URL`), an in-process service on a free port, and the real
//! binary.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use shortener::app::{AppState, Settings};
use shortener::store::{self, AnyStore, PoolOptions, Store};
use sqlx::Connection;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Env var naming a Postgres server on which tests may create databases.
pub const POSTGRES_ENV: &str = "SHORTENER_TEST_POSTGRES_URL";

/// Says why a test does not run, where the person running `cargo test` sees it: straight to
/// the process's stderr, since the harness keeps `eprintln!` of a passing test to itself.
pub fn skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// A database for one test; the SQLite file lives as long as this value.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A fresh SQLite file in a temp dir.
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("links.db").display());
        Self {
            url,
            _dir: Some(dir),
        }
    }

    /// A SQLite database at `url`, owned by the caller (nothing to clean up here).
    pub fn sqlite_at(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            _dir: None,
        }
    }

    /// A fresh database on the test Postgres server. Outside CI, `None` (with a printed
    /// reason) when no server is configured; in CI a missing server fails the test.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin) = std::env::var(POSTGRES_ENV) else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "{POSTGRES_ENV} is not set: CI must run the Postgres tests (scripts/test.sh starts a server)"
                );
            }
            skip(&format!(
                "{POSTGRES_ENV} is not set; run scripts/test.sh to test Postgres too"
            ));
            return None;
        };
        let name = format!(
            "t_{}",
            nanoid::nanoid!(
                12,
                &"abcdefghijklmnopqrstuvwxyz0123456789"
                    .chars()
                    .collect::<Vec<_>>()
            )
        );
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_ENV}: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin).expect("valid URL");
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            _dir: None,
        })
    }

    /// A connected, migrated store on this database.
    pub async fn store(&self) -> AnyStore {
        let store = store::connect(&self.url, &PoolOptions::default())
            .await
            .expect("connect");
        store.migrate().await.expect("migrate");
        store
    }
}

/// The service running in this process on a free loopback port.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    pub db: TestDb,
}

/// A client that shows redirects instead of following them.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

impl TestApp {
    /// The service on a fresh SQLite file with default settings.
    pub async fn spawn() -> Self {
        Self::spawn_on(TestDb::sqlite(), |_| {}).await
    }

    /// The service on `db`, with settings adjusted by `tune`.
    pub async fn spawn_on(db: TestDb, tune: impl FnOnce(&mut Settings)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let mut settings = Settings::new(url::Url::parse(&base).expect("url"));
        tune(&mut settings);
        let state = AppState::new(db.store().await, settings);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(shortener::serve(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: client(),
            state,
            stop,
            task,
            db,
        }
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET base + path`, without following redirects.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Creates a link through the API and returns its code.
    pub async fn create(&self, url: &str) -> String {
        let response = self
            .client
            .post(self.url("/api/v1/links"))
            .json(&serde_json::json!({ "url": url }))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.expect("json");
        body["code"].as_str().expect("code").to_owned()
    }

    /// Stops the service gracefully, waits for it, and hands back its database.
    pub async fn stop(self) -> TestDb {
        let _ = self.stop.send(());
        self.task.await.expect("join").expect("serve");
        self.db
    }
}

/// The real `shortener` binary, started with a clean environment plus `args`.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    /// Lines of its log (stderr) as they arrive.
    log: mpsc::Receiver<String>,
    /// Every line read from `log` so far, start-up included.
    lines: Mutex<Vec<String>>,
}

/// Lines of a log shown in a failure message.
const LOG_TAIL_LINES: usize = 60;

impl Binary {
    /// Starts `shortener serve` on `database_url` and waits until it listens.
    pub fn start(database_url: &str, extra: &[&str]) -> Self {
        Self::start_logging(database_url, extra, "info")
    }

    /// Like [`Binary::start`], with `RUST_LOG` set to `filter`.
    pub fn start_logging(database_url: &str, extra: &[&str], filter: &str) -> Self {
        Self::launch(database_url, "127.0.0.1:0", extra, filter)
    }

    /// Like [`Binary::start`], on a given address (to restart an instance where a balancer
    /// expects it).
    pub fn start_at(database_url: &str, listen: SocketAddr, extra: &[&str]) -> Self {
        Self::launch(database_url, &listen.to_string(), extra, "info")
    }

    /// Like [`Binary::start`], listening on `listen` (`0.0.0.0:0`, say).
    pub fn start_listening(database_url: &str, listen: &str, extra: &[&str]) -> Self {
        Self::launch(database_url, listen, extra, "info")
    }

    fn launch(database_url: &str, listen: &str, extra: &[&str], filter: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_shortener"))
            .env_clear()
            .env("RUST_LOG", filter)
            .args(["serve", "--log-format", "json", "--listen", listen])
            .args(["--database-url", database_url])
            // Tests drive load from one address; rate limits have tests of their own.
            .args(["--create-rate-limit", "0", "--not-found-rate-limit", "0"])
            .args(extra)
            .args(if extra.contains(&"--metrics-listen") {
                &[][..]
            } else {
                &["--metrics-listen", "off"][..]
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the binary");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, log) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // From here on, Drop stops the process whatever happens.
        let mut bin = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            lines: Mutex::default(),
        };
        loop {
            let Ok(line) = bin.log.recv_timeout(Duration::from_secs(20)) else {
                panic!(
                    "the binary did not become ready; its log:\n{}",
                    bin.log_tail()
                );
            };
            let ready = line
                .contains("shortener ready")
                .then(|| serde_json::from_str::<serde_json::Value>(&line).expect("json log"));
            bin.lines.lock().unwrap().push(line);
            if let Some(v) = ready {
                let listen = v["listen"].as_str().expect("listen");
                let mut addr: SocketAddr = listen.parse().expect("addr");
                if addr.ip().is_unspecified() {
                    addr.set_ip([127, 0, 0, 1].into());
                }
                bin.addr = addr;
                return bin;
            }
        }
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the binary logged so far, start-up included.
    pub fn log(&self) -> String {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(self.log.try_iter());
        lines.join("\n")
    }

    /// The last lines the binary logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.extend(self.log.try_iter());
        let from = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines[from..].join("\n")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        self.sigterm();
        self.child.wait().expect("wait")
    }

    /// Sends SIGTERM without waiting: the instance drains and stops on its own.
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
    }

    /// Waits for the process to exit by itself, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the instance did not exit within {within:?}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process with SIGKILL: no chance to flush or clean up.
    pub fn kill9(mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of `field` in `/proc/PID/status` of process `pid`, trimmed (`None` when the
/// kernel does not show that field).
pub fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        Some(value.trim().to_owned())
    })
}

/// A free loopback port (bound then released: fine for a server started right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// nginx balancing round-robin over `backends`, run from a temp dir (no system config), set
/// up as the README's "Behind a load balancer" says: a request that fails to reach an
/// instance is retried on another, creates included, but never one the instance answered (no
/// `http_503`: a create answered 503 may still be written); idle upstream connections are
/// closed before the service's idle limit (`--header-read-timeout`).
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    _dir: TempDir,
}

impl Nginx {
    /// Starts nginx in front of `backends` and waits until it accepts connections.
    pub fn start(backends: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let servers: String = backends
            .iter()
            .map(|b| format!("server {b} max_fails=0;\n"))
            .collect();
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             upstream app {{\n{servers} keepalive 16;\n keepalive_timeout 5s;\n }}\n\
             server {{\n  listen 127.0.0.1:{port};\n  location / {{\n   proxy_pass http://app;\n\
             proxy_http_version 1.1;\n   proxy_set_header Connection \"\";\n\
             proxy_next_upstream error timeout non_idempotent;\n\
             proxy_connect_timeout 1s;\n  }}\n }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write conf");
        let nginx = ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Command::new(p).arg("-v").output().is_ok())
            .expect("nginx is not installed (scripts/test.sh installs it)");
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nginx");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let nginx = Self {
            child,
            addr,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(addr).is_ok() {
                return nginx;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nginx did not start");
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // master_process off: the one process is the whole server.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Postgres server of this test's own (so it can be stopped and started), through
/// `scripts/pg-temp.sh`. Outside CI, `None` with a printed reason when `initdb` is missing.
pub struct OwnPostgres {
    dir: TempDir,
    pub admin_url: String,
}

fn pg_script(action: &str, dir: &std::path::Path) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg-temp.sh"))
        .arg(action)
        .arg(dir)
        .output()
        .expect("run pg-temp.sh")
}

impl OwnPostgres {
    /// Starts a fresh cluster.
    pub fn start() -> Option<Self> {
        if Command::new("initdb").arg("--version").output().is_err() {
            if std::env::var_os("CI").is_some() {
                panic!("initdb not found: CI must run the Postgres outage tests");
            }
            skip("initdb not found; install the PostgreSQL server to run this test");
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        // The server runs as `postgres` when we are root: let it through the temp dir.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        let out = pg_script("start", &dir.path().join("pg"));
        assert!(
            out.status.success(),
            "pg-temp.sh start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin_url = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Some(Self { dir, admin_url })
    }

    /// Stops the server (fast shutdown: clients are disconnected).
    pub fn stop(&self) {
        assert!(
            pg_script("stop", &self.dir.path().join("pg"))
                .status
                .success()
        );
    }

    /// Starts the stopped server again on the same port.
    pub fn resume(&self) {
        let out = pg_script("resume", &self.dir.path().join("pg"));
        assert!(
            out.status.success(),
            "pg-temp.sh resume failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = pg_script("stop", &self.dir.path().join("pg"));
    }
}

/// GETs `url` and parses the JSON body.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = client.get(url).send().await.expect("request");
    response.json().await.expect("a JSON body")
}

/// Polls `GET path` on `bin` until it answers `status`; fails after `within`, showing the
/// last answer and the instance's log tail. Returns how long it took.
pub async fn wait_for_status(
    client: &reqwest::Client,
    bin: &Binary,
    path: &str,
    status: u16,
    within: Duration,
) -> Duration {
    let url = bin.url(path);
    let started = std::time::Instant::now();
    loop {
        let seen = match client.get(&url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                format!("{status} {}", body.chars().take(200).collect::<String>())
            }
            Err(e) => format!("no answer ({e})"),
        };
        if seen.starts_with(&format!("{status} ")) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{url} still answers {seen:?}, not {status}, after {within:?}; log tail:\n{}",
            bin.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

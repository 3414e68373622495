//! Test harness: the real broker binary against a fresh Postgres database and
//! LocalStack (signature validation on), the real `upb` binary, and a TCP fault
//! proxy between them and storage. A missing service fails the test with
//! instructions; nothing is skipped.
#![allow(dead_code)]

pub mod proxy;
pub mod storage;

pub use storage::*;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const MIB: u64 = 1024 * 1024;
pub const API_KEY: &str = "key-of-upb-tests";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The broker binary of this workspace (tests of another package cannot name it
/// with CARGO_BIN_EXE_).
pub fn broker_bin() -> PathBuf {
    let bin = target_dir().join("debug").join("upload-broker");
    assert!(
        bin.exists(),
        "{} is missing: build it with `flock /tmp/cargo.lock cargo build --bin upload-broker` (scripts/test.sh does)",
        bin.display()
    );
    bin
}

pub fn upb_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_upb"))
}

/// A scratch directory under target/, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = target_dir().join("upb-tests").join(format!(
            "{name}-{}-{}",
            std::process::id(),
            uniq()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uniq() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn database_base() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url.rsplit_once('/')
        .map(|(base, _)| base.to_string())
        .unwrap()
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .arg(format!("{}/postgres", database_base()))
        .args(["-qAtc", sql])
        .output()
        .unwrap_or_else(|e| panic!("psql could not be run ({e}): {HOW_TO}"));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {} — is Postgres up at {}? {HOW_TO}",
        String::from_utf8_lossy(&out.stderr),
        database_base()
    );
}

/// The real `upload-broker serve` on a free port, with its own database (made
/// by `serve` itself, dropped at the end) and key prefix.
pub struct Broker {
    pub url: String,
    pub prefix: String,
    child: Child,
    db: String,
    pub log: PathBuf,
}

#[derive(Default)]
pub struct BrokerOptions {
    /// Storage endpoint the broker talks to and signs URLs for (default LocalStack).
    pub s3_endpoint: Option<String>,
    pub part_url_ttl: Option<&'static str>,
}

impl Broker {
    pub fn start(opts: BrokerOptions) -> Self {
        check_localstack();
        let bin = broker_bin();
        let port = free_port();
        let db = format!("upb_client_test_{}_{}", std::process::id(), uniq());
        let prefix = format!("upb-test-{}-{}/", std::process::id(), uniq());
        let logs = target_dir().join("upb-tests").join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = logs.join(format!("{db}.log"));
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .env("DATABASE_URL", format!("{}/{db}", database_base()))
            .env("S3_BUCKET", bucket())
            .env("S3_ENDPOINT", opts.s3_endpoint.unwrap_or_else(s3_endpoint))
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("S3_REGION", "us-east-1")
            .env("S3_KEY_PREFIX", &prefix)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("BROKER_LISTEN", format!("127.0.0.1:{port}"))
            .env("BROKER_API_KEYS", format!("upb-tests:{API_KEY}"))
            .env(
                "BROKER_TOKEN_SECRET",
                "upb-tests-token-secret-0123456789abcdef",
            )
            .env("SWEEP_INTERVAL", "0")
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .env_remove("METRICS_LISTEN")
            .env_remove("METRICS_TOKEN")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        if let Some(ttl) = opts.part_url_ttl {
            cmd.env("PART_URL_TTL", ttl);
        }
        let child = cmd.spawn().expect("spawn upload-broker");
        let mut broker = Self {
            url: format!("http://127.0.0.1:{port}"),
            prefix,
            child,
            db,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = broker.child.try_wait() {
                panic!(
                    "the broker exited ({status}) during start-up; its log:\n{}\n(Postgres: {HOW_TO})",
                    std::fs::read_to_string(&broker.log).unwrap_or_default()
                );
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && ureq_healthz(port) {
                return broker;
            }
            assert!(
                Instant::now() < deadline,
                "the broker did not answer /healthz within 60 s; log: {}",
                broker.log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn client(&self) -> upload_broker_client::Client {
        upload_broker_client::Client::new(&self.url, API_KEY).unwrap()
    }

    /// `upb` with this broker configured through the environment.
    pub fn upb(&self, state: &Path) -> Command {
        let mut c = Command::new(upb_bin());
        c.env("UPLOAD_BROKER_URL", &self.url)
            .env("UPLOAD_BROKER_CREDENTIAL", API_KEY)
            .env("XDG_STATE_HOME", state)
            .env_remove("NO_COLOR");
        c
    }
}

fn ureq_healthz(port: u16) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        psql(&format!(
            "drop database if exists \"{}\" with (force)",
            self.db
        ));
    }
}

fn check_localstack() {
    let url = format!("{}/_localstack/health", s3_endpoint());
    let out = Command::new("curl")
        .args(["-fsS", "--max-time", "5", &url])
        .output();
    let ok = out
        .as_ref()
        .map(|o| {
            let body = String::from_utf8_lossy(&o.stdout);
            body.contains("\"s3\": \"running\"") || body.contains("\"s3\": \"available\"")
        })
        .unwrap_or(false);
    assert!(ok, "LocalStack S3 is not answering at {url}: {HOW_TO}");
}

/// Replaces an object behind the broker's back.
pub async fn put_object(key: &str, path: &Path) {
    let body = aws_sdk_s3::primitives::ByteStream::from_path(path)
        .await
        .unwrap();
    s3().await
        .put_object()
        .bucket(bucket())
        .key(key)
        .body(body)
        .send()
        .await
        .unwrap();
}

/// Runs a command to its end; (status code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

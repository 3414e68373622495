//! The chaos run: two broker instances on one database, clients of the
//! `upload-broker-client` library uploading files of random sizes (some with
//! checksums) while broker instances are `kill -9`ed and restarted, a fault
//! proxy between everything and LocalStack injects latency, resets, 500/503s
//! and S3's "200 with an error inside" on CompleteMultipartUpload, clients
//! vanish mid-upload and others resume by fingerprint, Postgres restarts once
//! and the sweep runs throughout. Then the invariants are checked, a summary
//! printed, and the exit code is non-zero on any violation.
//!
//! Run it with `scripts/chaos.sh` (short profile) or `scripts/chaos.sh --long`;
//! the script starts the services and sets the environment read here.

#[path = "../tests/common/storage.rs"]
#[allow(dead_code)]
mod common;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use upload_broker_client::{Checksum, Client, Event, Fingerprint, Source, UploadOptions};

const KEY: &str = "chaos-api-key-0123456789";
const MIB: u64 = 1024 * 1024;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/chaos.sh"))
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A uniformly random number in `lo..hi` (OS randomness: the run is not
/// reproducible by design; its summary says what happened).
fn rand_in(lo: u64, hi: u64) -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    lo + u64::from_le_bytes(b) % (hi - lo).max(1)
}

fn chance(p: f64) -> bool {
    (rand_in(0, 1_000_000) as f64) < p * 1_000_000.0
}

// ------------------------------------------------------------------ the proxy

#[derive(Default)]
struct Injected {
    latency: AtomicU64,
    status_503: AtomicU64,
    status_500: AtomicU64,
    resets: AtomicU64,
    complete_error_inside: AtomicU64,
    complete_lost_success: AtomicU64,
}

/// A TCP-level HTTP/1.1 proxy in front of LocalStack that everything talks to
/// (the brokers' own calls and the clients' presigned PUTs). One request per
/// connection (`Connection: close`); each request may be delayed, answered
/// with 503 or 500, reset, or (CompleteMultipartUpload) answered "200 with an
/// error inside", before or after storage did the work.
struct ChaosProxy {
    url: String,
    on: Arc<AtomicBool>,
    injected: Arc<Injected>,
}

impl ChaosProxy {
    async fn start(upstream: &str) -> Self {
        let hostport = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let on = Arc::new(AtomicBool::new(true));
        let injected = Arc::new(Injected::default());
        let (on2, inj2) = (on.clone(), injected.clone());
        tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (up, on, inj) = (hostport.clone(), on2.clone(), inj2.clone());
                tokio::spawn(async move {
                    let _ = handle(sock, &up, on.load(Ordering::SeqCst), &inj).await;
                });
            }
        });
        Self { url, on, injected }
    }
}

async fn read_head(sock: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(i + 4);
            return Ok((buf, rest));
        }
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reply(status: &str, code: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the chaos proxy</Message></Error>"
    );
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn handle(
    mut sock: TcpStream,
    upstream: &str,
    faults: bool,
    inj: &Injected,
) -> std::io::Result<()> {
    let (head, early_body) = read_head(&mut sock).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let first = text.lines().next().unwrap_or("").to_string();
    let is_complete =
        first.starts_with("POST ") && first.contains("uploadId=") && !first.contains("partNumber=");
    if faults {
        if chance(0.10) {
            inj.latency.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(rand_in(50, 600))).await;
        }
        if chance(0.02) {
            inj.status_503.fetch_add(1, Ordering::Relaxed);
            sock.write_all(&reply("503 Service Unavailable", "SlowDown"))
                .await?;
            return Ok(());
        }
        if chance(0.01) {
            inj.status_500.fetch_add(1, Ordering::Relaxed);
            sock.write_all(&reply("500 Internal Server Error", "InternalError"))
                .await?;
            return Ok(());
        }
        if chance(0.01) {
            inj.resets.fetch_add(1, Ordering::Relaxed);
            let _ = sock.set_zero_linger();
            return Ok(());
        }
        if is_complete && chance(0.08) {
            inj.complete_error_inside.fetch_add(1, Ordering::Relaxed);
            sock.write_all(&reply("200 OK", "InternalError")).await?;
            return Ok(());
        }
    }
    // Forward with `Connection: close`, so the upstream ends the exchange.
    let mut out = Vec::with_capacity(head.len() + 20);
    for (i, line) in text.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 && line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&out).await?;
    up.write_all(&early_body).await?;
    let lose_success = faults && is_complete && chance(0.08);
    let (mut cr, mut cw) = sock.into_split();
    let (mut ur, mut uw) = up.into_split();
    let upload = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut uw).await;
        let _ = uw.shutdown().await;
    });
    if lose_success {
        // Storage completes; the broker hears an error inside a 200.
        let mut sink = Vec::new();
        let _ = ur.read_to_end(&mut sink).await;
        inj.complete_lost_success.fetch_add(1, Ordering::Relaxed);
        cw.write_all(&reply("200 OK", "InternalError")).await?;
    } else {
        tokio::io::copy(&mut ur, &mut cw).await?;
    }
    let _ = cw.shutdown().await;
    upload.abort();
    Ok(())
}

// ---------------------------------------------------------------- the brokers

struct Brokers {
    bin: PathBuf,
    db: String,
    storage: String,
    prefix: String,
    dir: PathBuf,
    ports: Vec<u16>,
    children: Mutex<Vec<Option<Child>>>,
}

impl Brokers {
    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i % self.ports.len()])
    }

    fn spawn(&self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("broker-{i}.log")))
            .unwrap();
        let child = Command::new(&self.bin)
            .arg("serve")
            .env("DATABASE_URL", &self.db)
            .env("S3_BUCKET", common::bucket())
            .env("S3_ENDPOINT", &self.storage)
            .env("S3_FORCE_PATH_STYLE", "true")
            .env("S3_KEY_PREFIX", &self.prefix)
            .env("BROKER_LISTEN", format!("127.0.0.1:{}", self.ports[i]))
            .env("BROKER_API_KEYS", format!("chaos:{KEY}"))
            .env(
                "BROKER_TOKEN_SECRET",
                "chaos-token-secret-0123456789abcdef0123",
            )
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .env("RATE_LIMIT", "0")
            .env("SWEEP_INTERVAL", "3s")
            .env("COMPLETION_LEASE", "8s")
            .env("STORAGE_TIMEOUT", "3s")
            .env("BROKER_SHUTDOWN_TIMEOUT", "2s")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.lock().unwrap()[i] = Some(child);
    }

    /// Waits until instance `i` answers; one that exited during start-up (say,
    /// while Postgres restarts) is started again.
    async fn wait_up(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while reqwest::get(format!("{}/healthz", self.url(i)))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "broker {i} did not start within 90 s"
            );
            let exited = self.children.lock().unwrap()[i]
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some());
            if exited {
                eprintln!("chaos: broker {i} exited during start-up; starting it again");
                self.spawn(i);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(&self, i: usize) {
        if let Some(mut c) = self.children.lock().unwrap()[i].take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

// ------------------------------------------------------------------- the jobs

#[derive(Clone)]
struct Job {
    n: usize,
    size: u64,
    checksum: Checksum,
    /// Vanishes once mid-upload; another client then resumes it by fingerprint.
    vanish: bool,
    file: Option<(PathBuf, String)>,
    token: Option<String>,
}

#[derive(Default)]
struct Tally {
    completed: Mutex<Vec<(usize, String, u64, String)>>, // job, key, size, sha
    failed: Mutex<Vec<(usize, String)>>,
    retries: AtomicUsize,
    /// Part PUTs the library retried (storage faults, a broker gone while re-signing).
    part_retries: Arc<AtomicUsize>,
    vanished: AtomicUsize,
    /// Uploads the broker gave up (410) and the client started again.
    restarted: AtomicUsize,
    resumed: AtomicUsize,
    kills: AtomicUsize,
    bytes: AtomicU64,
}

fn pick_size(max: u64) -> u64 {
    match rand_in(0, 10) {
        0 => rand_in(1, 1024),                       // tiny, one part
        1..=4 => rand_in(1024, 5 * MIB),             // one part
        5..=7 => rand_in(5 * MIB, 20 * MIB),         // a few parts
        _ => rand_in(5 * MIB, max.max(5 * MIB + 1)), // up to the profile's largest
    }
}

async fn run_job(
    brokers: &Brokers,
    mut job: Job,
    tally: &Tally,
    queue: &Mutex<VecDeque<Job>>,
    dir: &Path,
) {
    let (path, sha) = match &job.file {
        Some(f) => f.clone(),
        None => {
            let p = dir.join(format!("job-{}.bin", job.n));
            let sha = common::random_file(&p, job.size);
            job.file = Some((p.clone(), sha.clone()));
            (p, sha)
        }
    };
    let mut attempt = 0usize;
    loop {
        attempt += 1;
        if attempt > 40 {
            tally
                .failed
                .lock()
                .unwrap()
                .push((job.n, "gave up after 40 attempts".into()));
            return;
        }
        let client = Client::builder(brokers.url(job.n + attempt), KEY)
            .request_timeout(Duration::from_secs(20))
            .stall_timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // A client that knows its token asks where the upload stands first.
        if let Some(t) = job.token.clone() {
            match client.status(&t).await {
                Ok(u) if u.status == "completed" => {
                    let size = u.object_size.unwrap_or(u.size);
                    tally
                        .completed
                        .lock()
                        .unwrap()
                        .push((job.n, u.key, size, sha));
                    tally.bytes.fetch_add(job.size, Ordering::Relaxed);
                    return;
                }
                Ok(u) if u.status == "active" || u.status == "completing" => {}
                Ok(_) => job.token = None,
                Err(e) if e.is_transient() => {
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Err(e) => {
                    tally
                        .failed
                        .lock()
                        .unwrap()
                        .push((job.n, format!("status: {e}")));
                    return;
                }
            }
        }
        let token_seen: Arc<Mutex<Option<String>>> = Default::default();
        let part_done = Arc::new(tokio::sync::Notify::new());
        let resumed = Arc::new(AtomicBool::new(false));
        let (seen, done, was_resumed) = (token_seen.clone(), part_done.clone(), resumed.clone());
        let part_retries = tally.part_retries.clone();
        let opts = UploadOptions {
            concurrency: 3,
            part_size: Some(5 * MIB),
            checksum: job.checksum,
            fingerprint: Fingerprint::Auto,
            progress: Some(Arc::new(move |e| match e {
                Event::Created { upload } => {
                    *seen.lock().unwrap() = Some(upload.resume_token.clone());
                }
                Event::Resuming { upload, .. } => {
                    was_resumed.store(true, Ordering::SeqCst);
                    *seen.lock().unwrap() = Some(upload.resume_token.clone());
                }
                Event::PartDone { .. } => done.notify_one(),
                Event::Retry { .. } => {
                    part_retries.fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            })),
            ..UploadOptions::default()
        };
        let source = Source::from_path(&path).unwrap();
        let up = async {
            match job.token.clone() {
                Some(t) => client.resume_with(&t, source, opts).await,
                None => client.upload(source, opts).await,
            }
        };
        let result = if job.vanish {
            tokio::select! {
                r = up => Some(r),
                _ = part_done.notified() => None,
            }
        } else {
            Some(up.await)
        };
        if let Some(t) = token_seen.lock().unwrap().clone() {
            job.token = Some(t);
        }
        match result {
            None => {
                // The client vanished mid-upload; another one picks the file up
                // and finds the upload by its fingerprint.
                tally.vanished.fetch_add(1, Ordering::Relaxed);
                job.vanish = false;
                job.token = None;
                queue.lock().unwrap().push_front(job);
                return;
            }
            Some(Ok(u)) => {
                if resumed.load(Ordering::SeqCst) {
                    tally.resumed.fetch_add(1, Ordering::Relaxed);
                }
                let size = u.object_size.unwrap_or(u.size);
                tally
                    .completed
                    .lock()
                    .unwrap()
                    .push((job.n, u.key, size, sha));
                tally.bytes.fetch_add(job.size, Ordering::Relaxed);
                return;
            }
            Some(Err(e)) if e.is_transient() => {
                tally.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(rand_in(100, 500))).await;
            }
            Some(Err(e)) => {
                // A broker that lost its completion answers 409 or 410 to a
                // retry while it settles; ask again by token.
                if matches!(e.code(), Some("UPLOAD_NOT_ACTIVE")) && job.token.is_some() {
                    tally.retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    continue;
                }
                // The broker gave the upload up (its object came out wrong and
                // was removed, or storage lost it): as it says, upload again.
                if matches!(e.code(), Some("UPLOAD_EXPIRED")) {
                    tally.restarted.fetch_add(1, Ordering::Relaxed);
                    job.token = None;
                    continue;
                }
                tally.failed.lock().unwrap().push((job.n, e.to_string()));
                return;
            }
        }
    }
}

// ------------------------------------------------------------------ checking

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([db, "-tAc", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let long = std::env::var("CHAOS_PROFILE").as_deref() == Ok("long");
    let uploads = env_or("CHAOS_UPLOADS", if long { 500 } else { 60 }) as usize;
    let clients = env_or("CHAOS_CLIENTS", if long { 12 } else { 6 }) as usize;
    let max_size = env_or("CHAOS_MAX_MIB", if long { 200 } else { 24 }) * MIB;
    let kill_every = if long { (3_000, 9_000) } else { (1_000, 3_000) };
    let admin = env("CHAOS_DATABASE_ADMIN_URL");
    let dir = PathBuf::from(env("CHAOS_DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let started = Instant::now();

    let db_name = format!("chaos_{}", std::process::id());
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    psql(
        &admin,
        &format!("drop database if exists {db_name} with (force)"),
    );
    psql(&admin, &format!("create database {db_name}"));
    let db = format!("{base}/{db_name}");

    let proxy = ChaosProxy::start(&common::s3_endpoint()).await;
    let prefix = format!("chaos-{}/", std::process::id());
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let brokers = Arc::new(Brokers {
        bin: PathBuf::from(env("BROKER_BIN")),
        db: db.clone(),
        storage: proxy.url.clone(),
        prefix: prefix.clone(),
        dir: dir.clone(),
        children: Mutex::new(vec![None, None]),
        ports,
    });
    // The first instance migrates; the second starts once it answers.
    brokers.spawn(0);
    brokers.wait_up(0).await;
    brokers.spawn(1);
    brokers.wait_up(1).await;

    let checksums = std::env::var("CHAOS_CHECKSUMS").as_deref() != Ok("off");
    let tally = Arc::new(Tally::default());
    let queue: Arc<Mutex<VecDeque<Job>>> = Arc::new(Mutex::new(
        (0..uploads)
            .map(|n| {
                let size = pick_size(max_size);
                Job {
                    n,
                    size,
                    checksum: match rand_in(0, 3) {
                        // Storage that keeps no part checksums (s3s-compat) gets none.
                        _ if !checksums => Checksum::None,
                        0 => Checksum::None,
                        1 => Checksum::Crc32c,
                        _ => Checksum::Sha256,
                    },
                    // Only uploads of 3 parts or more: a client that leaves after
                    // its last part has already asked for the completion, which the
                    // broker finishes without it (by design), so nothing is left
                    // to resume.
                    vanish: size > 10 * MIB && chance(0.3),
                    file: None,
                    token: None,
                }
            })
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let pg_restarted = Arc::new(AtomicBool::new(false));

    // Kill -9 one instance at a time, at random, and bring it back.
    let killer = {
        let (b, t, stop) = (brokers.clone(), tally.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(rand_in(kill_every.0, kill_every.1)))
                    .await;
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let i = rand_in(0, 2) as usize;
                b.kill9(i);
                t.kills.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(rand_in(200, 1500))).await;
                b.spawn(i);
                b.wait_up(i).await;
            }
        })
    };
    // Postgres restarts once, a third of the way in.
    let pg = {
        let (t, done, stop) = (tally.clone(), pg_restarted.clone(), stop.clone());
        let cmd = std::env::var("CHAOS_PG_RESTART")
            .ok()
            .filter(|c| !c.is_empty());
        tokio::spawn(async move {
            let Some(cmd) = cmd else { return };
            while !stop.load(Ordering::SeqCst) {
                if t.completed.lock().unwrap().len() >= uploads / 3 {
                    let ok = Command::new("sh")
                        .args(["-c", &cmd])
                        .status()
                        .map(|s| s.success())
                        .unwrap_or(false);
                    assert!(ok, "the Postgres restart command failed: {cmd}");
                    done.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let mut workers = Vec::new();
    for _ in 0..clients {
        let (b, t, q, d) = (brokers.clone(), tally.clone(), queue.clone(), dir.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = q.lock().unwrap().pop_front();
                let Some(job) = next else { break };
                run_job(&b, job, &t, &q, &d).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    // A vanished job pushed back after its queue ran dry: finish those too.
    loop {
        let next = queue.lock().unwrap().pop_front();
        let Some(job) = next else { break };
        run_job(&brokers, job, &tally, &queue, &dir).await;
    }
    stop.store(true, Ordering::SeqCst);
    let _ = killer.await;
    let _ = pg.await;
    let upload_time = started.elapsed();

    // Quiet now: no faults, both instances up, every lease run out; then a
    // final sweep, orphans included.
    proxy.on.store(false, Ordering::SeqCst);
    for i in 0..2 {
        if brokers.children.lock().unwrap()[i].is_none() {
            brokers.spawn(i);
        }
        brokers.wait_up(i).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    let sweep = Command::new(&brokers.bin)
        .args(["sweep", "--orphans", "--older-than", "0s", "--json"])
        .env("DATABASE_URL", &db)
        .env("S3_BUCKET", common::bucket())
        .env("S3_ENDPOINT", common::s3_endpoint())
        .env("S3_FORCE_PATH_STYLE", "true")
        .env("S3_KEY_PREFIX", &prefix)
        .output()
        .unwrap();
    let sweep_out = String::from_utf8_lossy(&sweep.stdout).trim().to_string();

    // ------------------------------------------------------------ invariants
    let mut checks = Vec::new();
    let completed = tally.completed.lock().unwrap().clone();
    let failed = tally.failed.lock().unwrap().clone();
    checks.push(Check {
        name: "every upload completed",
        ok: failed.is_empty() && completed.len() == uploads,
        detail: format!(
            "{} of {uploads} completed; failed: {failed:?}",
            completed.len()
        ),
    });
    let mut bad_objects = Vec::new();
    for (n, key, size, sha) in &completed {
        let (got_sha, got_len) = common::object_sha256(key).await;
        if &got_sha != sha || got_len != *size {
            bad_objects.push(format!("job {n}: {key} has {got_len} bytes sha {got_sha}"));
        }
    }
    checks.push(Check {
        name: "completed objects have the file's SHA-256 and size",
        ok: bad_objects.is_empty(),
        detail: format!("{} checked; wrong: {bad_objects:?}", completed.len()),
    });
    let s3 = common::s3().await;
    let mut objects = std::collections::BTreeSet::new();
    let mut pages = s3
        .list_objects_v2()
        .bucket(common::bucket())
        .prefix(&prefix)
        .into_paginator()
        .send();
    while let Some(p) = pages.next().await {
        for o in p.unwrap().contents() {
            objects.insert(o.key().unwrap().to_string());
        }
    }
    let rows: std::collections::BTreeSet<String> = psql(
        &db,
        "select object_key from uploads where status = 'completed'",
    )
    .lines()
    .map(str::to_string)
    .collect();
    let orphans: Vec<_> = objects.difference(&rows).collect();
    let missing: Vec<_> = rows.difference(&objects).collect();
    checks.push(Check {
        name: "objects and completed rows match one to one",
        ok: orphans.is_empty() && missing.is_empty(),
        detail: format!("{} objects, {} completed rows; objects without a row: {orphans:?}; rows without an object: {missing:?}", objects.len(), rows.len()),
    });
    let mut provider_uploads = Vec::new();
    let listed = s3
        .list_multipart_uploads()
        .bucket(common::bucket())
        .prefix(&prefix)
        .send()
        .await
        .unwrap();
    for u in listed.uploads() {
        provider_uploads.push(u.upload_id().unwrap().to_string());
    }
    let active: std::collections::BTreeSet<String> = psql(
        &db,
        "select provider_upload_id from uploads where status = 'active'",
    )
    .lines()
    .map(str::to_string)
    .collect();
    let stray: Vec<_> = provider_uploads
        .iter()
        .filter(|u| !active.contains(*u))
        .collect();
    checks.push(Check {
        name: "no provider upload left that is not active",
        ok: stray.is_empty(),
        detail: format!(
            "{} provider uploads, {} active rows; stray: {stray:?}",
            provider_uploads.len(),
            active.len()
        ),
    });
    let stuck = psql(&db, "select count(*) from uploads where status in ('completing', 'expiring', 'aborting') and lease_until < now()");
    checks.push(Check {
        name: "no row held past its lease",
        ok: stuck == "0",
        detail: format!("{stuck} rows in completing/expiring/aborting past their lease"),
    });
    let events = psql(
        &db,
        "select count(*) from uploads u where (u.status = 'completed') <> \
         ((select count(*) from events e where e.upload_id = u.id and e.type = 'upload.completed') = 1) \
         or (select count(*) from events e where e.upload_id = u.id and e.type = 'upload.completed') > 1",
    );
    checks.push(Check {
        name: "one upload.completed event per completed upload",
        ok: events == "0",
        detail: format!("{events} uploads with a wrong number of upload.completed events"),
    });
    // The brokers' request log lines (JSON, the status as a top-level field).
    let mut statuses: BTreeMap<u64, usize> = BTreeMap::new();
    for i in 0..2 {
        let text = std::fs::read_to_string(dir.join(format!("broker-{i}.log"))).unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if v["message"] == "request" || v["message"] == "request failed" {
                if let Some(s) = v["status"].as_u64() {
                    *statuses.entry(s).or_default() += 1;
                }
            }
        }
    }
    let requests: usize = statuses.values().sum();
    let other_5xx: BTreeMap<_, _> = statuses
        .iter()
        .filter(|(s, _)| **s >= 500 && **s != 502 && **s != 503)
        .collect();
    checks.push(Check {
        name: "no 5xx but 502/503",
        ok: requests > 0 && other_5xx.is_empty(),
        detail: format!(
            "{requests} requests logged, by status {statuses:?}; other 5xx: {other_5xx:?}"
        ),
    });

    // --------------------------------------------------------------- summary
    let inj = &proxy.injected;
    println!(
        "## Chaos run ({} profile)",
        if long { "long" } else { "short" }
    );
    println!();
    println!("| what | value |");
    println!("| --- | --- |");
    println!(
        "| uploads completed | {} of {uploads} ({} clients) |",
        completed.len(),
        clients
    );
    println!(
        "| bytes uploaded | {:.1} MiB |",
        tally.bytes.load(Ordering::Relaxed) as f64 / MIB as f64
    );
    println!(
        "| time | {:.0} s uploading, {:.0} s in all |",
        upload_time.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    println!(
        "| broker kill -9 and restarts | {} |",
        tally.kills.load(Ordering::SeqCst)
    );
    println!(
        "| Postgres restarts | {} |",
        u8::from(pg_restarted.load(Ordering::SeqCst))
    );
    println!(
        "| clients vanished mid-upload (resumed by fingerprint by another) | {} |",
        tally.vanished.load(Ordering::Relaxed)
    );
    println!(
        "| uploads finished by resuming (token or fingerprint) | {} |",
        tally.resumed.load(Ordering::Relaxed)
    );
    println!(
        "| client retries | {} part PUTs retried by the library, {} uploads retried from the top (on the other broker), {} started again after a 410 |",
        tally.part_retries.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        tally.restarted.load(Ordering::Relaxed)
    );
    println!(
        "| faults injected | {} delays, {} × 503, {} × 500, {} resets, {} completions answered 200-with-error before storage, {} after storage completed |",
        inj.latency.load(Ordering::Relaxed),
        inj.status_503.load(Ordering::Relaxed),
        inj.status_500.load(Ordering::Relaxed),
        inj.resets.load(Ordering::Relaxed),
        inj.complete_error_inside.load(Ordering::Relaxed),
        inj.complete_lost_success.load(Ordering::Relaxed)
    );
    println!("| final sweep | {sweep_out} |");
    println!();
    println!("| invariant | result | detail |");
    println!("| --- | --- | --- |");
    let mut all_ok = true;
    for c in &checks {
        all_ok &= c.ok;
        println!(
            "| {} | {} | {} |",
            c.name,
            if c.ok { "ok" } else { "VIOLATED" },
            c.detail
        );
    }
    for i in 0..2 {
        brokers.kill9(i);
    }
    if all_ok {
        psql(
            &admin,
            &format!("drop database if exists {db_name} with (force)"),
        );
        let _ = std::fs::remove_dir_all(dir.join("files"));
        for n in 0..uploads {
            let _ = std::fs::remove_file(dir.join(format!("job-{n}.bin")));
        }
    }
    std::process::exit(if all_ok { 0 } else { 1 });
}

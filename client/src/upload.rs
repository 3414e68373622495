use crate::client::{storage_error, Client};
use crate::error::{Error, Result};
use crate::retry::parse_retry_after;
use crate::source::Source;
use crate::types::{PresignedPart, Upload};
use base64::Engine as _;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// Bytes read from the source per positioned read, and per body chunk.
const CHUNK: usize = 1024 * 1024;
/// Part URLs signed per `POST …/parts` for uploads without checksums.
const SIGN_BATCH: usize = 32;
/// A URL this close to its expiry is signed again before use.
const URL_MARGIN: Duration = Duration::from_secs(60);

/// The per-part checksum storage verifies (checksum-bound uploads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Checksum {
    /// CRC32C (hardware-accelerated): the default.
    #[default]
    Crc32c,
    Sha256,
    /// No checksum: storage checks only the length.
    None,
}

impl Checksum {
    fn api_name(self) -> Option<&'static str> {
        match self {
            Checksum::Crc32c => Some("CRC32C"),
            Checksum::Sha256 => Some("SHA256"),
            Checksum::None => None,
        }
    }

    fn from_api(name: Option<&str>) -> Self {
        match name.map(|s| s.to_ascii_uppercase()) {
            Some(s) if s == "SHA256" => Checksum::Sha256,
            Some(s) if s == "CRC32C" => Checksum::Crc32c,
            _ => Checksum::None,
        }
    }
}

impl std::str::FromStr for Checksum {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "crc32c" => Ok(Checksum::Crc32c),
            "sha256" => Ok(Checksum::Sha256),
            "none" => Ok(Checksum::None),
            _ => Err(format!("unknown checksum {s:?}: crc32c, sha256 or none")),
        }
    }
}

/// How an upload is found again after a crash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Fingerprint {
    /// [`Source::fingerprint`]: name, size, mtime, hash of the first and last MiB.
    #[default]
    Auto,
    Custom(String),
    /// No fingerprint: always a new upload (resume only by token).
    Off,
}

/// What an upload reports as it goes.
#[derive(Debug, Clone)]
pub enum Event {
    /// A new upload was created (its token is the handle to resume it).
    Created { upload: Box<Upload> },
    /// An earlier upload of the same source is continued.
    Resuming {
        upload: Box<Upload>,
        stored_parts: u32,
        total_parts: u32,
        stored_bytes: u64,
    },
    /// Bytes sent so far (stored parts included) of `total`.
    Bytes { done: u64, total: u64 },
    /// A part is stored.
    PartDone {
        part_number: u32,
        done_parts: u32,
        total_parts: u32,
    },
    /// A part's PUT failed and is tried again after `delay`.
    Retry {
        part_number: u32,
        attempt: u32,
        delay: Duration,
        error: String,
    },
    /// Every part is stored; completing.
    Completing,
}

pub type ProgressFn = Arc<dyn Fn(Event) + Send + Sync>;

/// Options of [`Client::upload`].
#[derive(Clone)]
pub struct UploadOptions {
    /// Parts sent at once (default 4).
    pub concurrency: usize,
    /// Part size in bytes (5 MiB to 5 GiB); `None`: the broker's default.
    pub part_size: Option<u64>,
    pub checksum: Checksum,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub fingerprint: Fingerprint,
    /// The upload's filename (default: the source's name).
    pub filename: Option<String>,
    pub progress: Option<ProgressFn>,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            concurrency: 4,
            part_size: None,
            checksum: Checksum::default(),
            content_type: None,
            metadata: BTreeMap::new(),
            fingerprint: Fingerprint::default(),
            filename: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for UploadOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadOptions")
            .field("concurrency", &self.concurrency)
            .field("part_size", &self.part_size)
            .field("checksum", &self.checksum)
            .field("content_type", &self.content_type)
            .field("metadata", &self.metadata)
            .field("fingerprint", &self.fingerprint)
            .field("filename", &self.filename)
            .finish()
    }
}

impl Client {
    /// Uploads `source` and completes the upload. With a fingerprint (the
    /// default), an unfinished upload of the same source is resumed instead of
    /// starting over: only the parts storage does not hold are sent.
    pub async fn upload(&self, source: Source, opts: UploadOptions) -> Result<Upload> {
        if source.is_empty() {
            return Err(Error::Invalid(
                "the source is empty: multipart uploads need at least one byte".into(),
            ));
        }
        let fingerprint = match &opts.fingerprint {
            Fingerprint::Auto => Some(source.fingerprint().await?),
            Fingerprint::Custom(s) => Some(s.clone()),
            Fingerprint::Off => None,
        };
        if let Some(fp) = &fingerprint {
            let found = self.find(fp).await?;
            if let Some(u) = found
                .into_iter()
                .find(|u| u.size == source.len() && u.status == "active")
            {
                return self.resume_with(&u.resume_token, source, opts).await;
            }
        }
        let mut body = json!({
            "filename": opts.filename.clone().unwrap_or_else(|| source.name().to_string()),
            "size": source.len(),
        });
        if let Some(ps) = opts.part_size {
            body["partSize"] = json!(ps);
        }
        if let Some(ct) = &opts.content_type {
            body["contentType"] = json!(ct);
        }
        if !opts.metadata.is_empty() {
            body["metadata"] = json!(opts.metadata);
        }
        if let Some(fp) = &fingerprint {
            body["fingerprint"] = json!(fp);
        }
        if let Some(alg) = opts.checksum.api_name() {
            body["checksumAlgorithm"] = json!(alg);
        }
        let created = self.create(&body).await?;
        emit(
            &opts,
            Event::Created {
                upload: Box::new(created.clone()),
            },
        );
        self.run(created, source, &opts).await
    }

    /// Resumes the upload of `token` from `source` (which must have the
    /// upload's size) with default options.
    pub async fn resume(&self, token: &str, source: Source) -> Result<Upload> {
        self.resume_with(token, source, UploadOptions::default())
            .await
    }

    /// Resumes the upload of `token` from `source`: asks storage what it holds
    /// and sends only the rest. The upload's own part size and checksum
    /// algorithm apply, whatever `opts` says.
    pub async fn resume_with(
        &self,
        token: &str,
        source: Source,
        opts: UploadOptions,
    ) -> Result<Upload> {
        let upload = self.reconcile(token).await?;
        if upload.size != source.len() {
            return Err(Error::Invalid(format!(
                "the source has {} bytes, the upload {}: not the same file",
                source.len(),
                upload.size
            )));
        }
        let stored = upload.uploaded_parts.as_ref().map(Vec::len).unwrap_or(0) as u32;
        emit(
            &opts,
            Event::Resuming {
                upload: Box::new(upload.clone()),
                stored_parts: stored,
                total_parts: upload.part_count,
                stored_bytes: stored_bytes(&upload),
            },
        );
        self.run(upload, source, &opts).await
    }

    /// Sends the missing parts of `upload` and completes it. A completion that
    /// finds parts missing (lost meanwhile) sends them again, a few times.
    async fn run(
        &self,
        mut upload: Upload,
        source: Source,
        opts: &UploadOptions,
    ) -> Result<Upload> {
        let token = upload.resume_token.clone();
        for round in 0..3 {
            let stored: BTreeSet<u32> = upload
                .uploaded_parts
                .iter()
                .flatten()
                .map(|p| p.part_number)
                .collect();
            let missing: Vec<u32> = (1..=upload.part_count)
                .filter(|n| !stored.contains(n))
                .collect();
            let job = Arc::new(Job {
                client: self.clone(),
                source: source.clone(),
                checksum: Checksum::from_api(upload.checksum_algorithm.as_deref()),
                urls: Mutex::new(upload.parts.drain(..).map(|p| (p.part_number, p)).collect()),
                remaining: Mutex::new(missing.iter().copied().collect()),
                done_bytes: AtomicU64::new(stored_bytes(&upload)),
                done_parts: AtomicU64::new(stored.len() as u64),
                upload: upload.clone(),
                progress: opts.progress.clone(),
            });
            emit(
                opts,
                Event::Bytes {
                    done: job.done_bytes.load(Ordering::Relaxed),
                    total: upload.size,
                },
            );
            futures_util::stream::iter(missing.into_iter().map(|n| {
                let job = job.clone();
                async move { job.send_part(n).await }
            }))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
            emit(opts, Event::Completing);
            match self.complete_raw(&token).await {
                Ok(done) => return Ok(done),
                Err(e) if e.code() == Some("PARTS_MISSING") && round < 2 => {
                    upload = self.reconcile(&token).await?;
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the loop returns")
    }

    /// `POST /v1/uploads/{token}/complete` (idempotent; retried).
    pub async fn complete(&self, token: &str) -> Result<Upload> {
        self.complete_raw(token).await
    }
}

fn emit(opts: &UploadOptions, e: Event) {
    if let Some(p) = &opts.progress {
        p(e)
    }
}

fn stored_bytes(u: &Upload) -> u64 {
    u.uploaded_parts.iter().flatten().map(|p| p.size).sum()
}

/// One run over the missing parts of an upload.
struct Job {
    client: Client,
    source: Source,
    upload: Upload,
    checksum: Checksum,
    /// Signed URLs not used yet, by part number.
    urls: Mutex<HashMap<u32, PresignedPart>>,
    /// Parts not stored yet (for batch signing).
    remaining: Mutex<BTreeSet<u32>>,
    done_bytes: AtomicU64,
    done_parts: AtomicU64,
    progress: Option<ProgressFn>,
}

/// How a PUT attempt failed.
enum PutFailure {
    /// Signed again, then retried (403: expired or refused signature).
    Resign(Error),
    Retry(Error, Option<Duration>),
    Fatal(Error),
}

impl Job {
    fn emit(&self, e: Event) {
        if let Some(p) = &self.progress {
            p(e)
        }
    }

    async fn send_part(&self, n: u32) -> Result<()> {
        let (offset, size) = self.upload.part_range(n);
        let digest = match self.checksum {
            Checksum::None => None,
            alg => Some(self.digest(alg, offset, size).await?),
        };
        let policy = &self.client.inner.retry;
        let (mut attempt, mut resigns) = (0u32, 0u32);
        let mut fresh = false;
        loop {
            attempt += 1;
            let url = self.url_for(n, digest.as_deref(), fresh).await?;
            fresh = false;
            let sent = AtomicU64::new(0);
            let failure = match self.put(&url, offset, size, &sent).await {
                Ok(()) => {
                    self.remaining.lock().unwrap().remove(&n);
                    let done_parts = self.done_parts.fetch_add(1, Ordering::Relaxed) as u32 + 1;
                    self.emit(Event::PartDone {
                        part_number: n,
                        done_parts,
                        total_parts: self.upload.part_count,
                    });
                    return Ok(());
                }
                Err(f) => f,
            };
            // Take back what this attempt counted.
            let back = sent.load(Ordering::Relaxed);
            let done = self.done_bytes.fetch_sub(back, Ordering::Relaxed) - back;
            self.emit(Event::Bytes {
                done,
                total: self.upload.size,
            });
            let (err, retry_after) = match failure {
                PutFailure::Fatal(e) => return Err(e),
                PutFailure::Resign(e) if resigns < 3 => {
                    resigns += 1;
                    fresh = true;
                    (e, Some(Duration::ZERO))
                }
                PutFailure::Resign(e) => return Err(e),
                PutFailure::Retry(e, ra) => (e, ra),
            };
            if attempt >= policy.max_attempts {
                return Err(Error::RetriesExhausted {
                    attempts: attempt,
                    last: Box::new(err),
                });
            }
            let delay = policy.delay(attempt, retry_after);
            self.emit(Event::Retry {
                part_number: n,
                attempt,
                delay,
                error: err.to_string(),
            });
            tokio::time::sleep(delay).await;
        }
    }

    /// The part's checksum, base64, as storage computes it.
    async fn digest(&self, alg: Checksum, offset: u64, size: u64) -> Result<String> {
        let mut pos = offset;
        let end = offset + size;
        let mut crc = 0u32;
        let mut sha = Sha256::new();
        while pos < end {
            let n = ((end - pos) as usize).min(CHUNK);
            let chunk = self.source.read(pos, n).await?;
            match alg {
                Checksum::Crc32c => crc = crc32c::crc32c_append(crc, &chunk),
                _ => sha.update(&chunk),
            }
            pos += n as u64;
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        Ok(match alg {
            Checksum::Crc32c => b64.encode(crc.to_be_bytes()),
            _ => b64.encode(sha.finalize()),
        })
    }

    /// A usable URL for part `n`: from the cache unless close to expiry or
    /// `fresh` is asked; otherwise signed now (with the next parts, in a batch,
    /// for uploads without checksums).
    async fn url_for(&self, n: u32, digest: Option<&str>, fresh: bool) -> Result<PresignedPart> {
        if !fresh {
            if let Some(p) = self.urls.lock().unwrap().remove(&n) {
                if still_valid(&p) {
                    return Ok(p);
                }
            }
        } else {
            self.urls.lock().unwrap().remove(&n);
        }
        let token = &self.upload.resume_token;
        let parts = if let Some(c) = digest {
            self.client
                .sign(token, &json!({"parts": [{"partNumber": n, "checksum": c}]}))
                .await?
        } else {
            let mut numbers = vec![n];
            {
                let urls = self.urls.lock().unwrap();
                let remaining = self.remaining.lock().unwrap();
                numbers.extend(
                    remaining
                        .range(n + 1..)
                        .filter(|m| urls.get(m).is_none_or(|p| !still_valid(p)))
                        .take(SIGN_BATCH - 1),
                );
            }
            self.client
                .sign(token, &json!({ "partNumbers": numbers }))
                .await?
        };
        let mut mine = None;
        let mut urls = self.urls.lock().unwrap();
        for p in parts {
            if p.part_number == n {
                mine = Some(p);
            } else {
                urls.insert(p.part_number, p);
            }
        }
        mine.ok_or_else(|| Error::Invalid(format!("the broker did not sign part {n}")))
    }

    /// One PUT of part bytes, streamed from the source; cut when nothing moves
    /// for the stall timeout.
    async fn put(
        &self,
        part: &PresignedPart,
        offset: u64,
        size: u64,
        sent: &AtomicU64,
    ) -> Result<(), PutFailure> {
        if part.size != size {
            return Err(PutFailure::Fatal(Error::Invalid(format!(
                "the broker signed part {} for {} bytes, the plan says {size}",
                part.part_number, part.size
            ))));
        }
        let last_move = Arc::new(Mutex::new(Instant::now()));
        let body = {
            let source = self.source.clone();
            let last_move = last_move.clone();
            let end = offset + size;
            futures_util::stream::try_unfold(offset, move |pos| {
                let source = source.clone();
                let last_move = last_move.clone();
                async move {
                    if pos >= end {
                        return Ok::<_, Error>(None);
                    }
                    let n = ((end - pos) as usize).min(CHUNK);
                    let chunk = source.read(pos, n).await?;
                    *last_move.lock().unwrap() = Instant::now();
                    Ok(Some((chunk, pos + n as u64)))
                }
            })
            .inspect_ok(|chunk| {
                let n = chunk.len() as u64;
                sent.fetch_add(n, Ordering::Relaxed);
                let done = self.done_bytes.fetch_add(n, Ordering::Relaxed) + n;
                self.emit(Event::Bytes {
                    done,
                    total: self.upload.size,
                });
            })
        };
        // The stream borrows this job; reqwest wants a 'static body: hand the
        // chunks over through a channel. A failed read of the source is kept
        // aside: it is not the network's fault, so it is not retried.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
        let read_error: Mutex<Option<Error>> = Mutex::new(None);
        let pump = async {
            futures_util::pin_mut!(body);
            while let Some(item) = body.next().await {
                let item = match item {
                    Ok(chunk) => Ok(chunk),
                    Err(e) => {
                        let msg = e.to_string();
                        *read_error.lock().unwrap() = Some(e);
                        Err(std::io::Error::other(msg))
                    }
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        };
        let mut req = self
            .client
            .inner
            .http
            .put(&part.url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(tokio_stream(rx)));
        for (k, v) in &part.headers {
            if !k.eq_ignore_ascii_case("content-length") && !k.eq_ignore_ascii_case("host") {
                req = req.header(k, v);
            }
        }
        let exchange = async {
            let res = req.send().await?;
            *last_move.lock().unwrap() = Instant::now();
            let status = res.status();
            let retry_after = parse_retry_after(res.headers());
            let etag = res.headers().get("etag").is_some();
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, etag, body))
        };
        let stall = self.client.inner.stall_timeout;
        let watchdog = async {
            loop {
                tokio::time::sleep(stall / 4).await;
                if last_move.lock().unwrap().elapsed() > stall {
                    return;
                }
            }
        };
        let outcome = tokio::select! {
            r = async { tokio::join!(pump, exchange).1 } => r,
            _ = watchdog => return Err(PutFailure::Retry(Error::Stalled(stall), None)),
        };
        let (status, retry_after, has_etag, body) = match outcome {
            Ok(x) => x,
            Err(e) => {
                return Err(match read_error.lock().unwrap().take() {
                    Some(read) => PutFailure::Fatal(read),
                    None => PutFailure::Retry(Error::Http(e), None),
                })
            }
        };
        if status.is_success() {
            if !has_etag {
                return Err(PutFailure::Retry(
                    Error::Invalid(format!(
                        "storage stored part {} without an ETag",
                        part.part_number
                    )),
                    None,
                ));
            }
            return Ok(());
        }
        let err = storage_error(status, &body);
        Err(match status.as_u16() {
            403 => PutFailure::Resign(err),
            408 | 429 | 500..=599 => PutFailure::Retry(err, retry_after),
            _ => PutFailure::Fatal(err),
        })
    }
}

fn still_valid(p: &PresignedPart) -> bool {
    humantime::parse_rfc3339(&p.expires_at)
        .ok()
        .and_then(|t| t.duration_since(SystemTime::now()).ok())
        .is_some_and(|left| left > URL_MARGIN)
}

/// An mpsc receiver as a stream.
fn tokio_stream<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_names() {
        assert_eq!("CRC32C".parse::<Checksum>().unwrap(), Checksum::Crc32c);
        assert_eq!("sha-256".parse::<Checksum>().unwrap(), Checksum::Sha256);
        assert_eq!("none".parse::<Checksum>().unwrap(), Checksum::None);
        assert!("md5".parse::<Checksum>().is_err());
        assert_eq!(Checksum::from_api(Some("SHA256")), Checksum::Sha256);
        assert_eq!(Checksum::from_api(None), Checksum::None);
    }

    #[test]
    fn crc32c_digest_is_storage_s_form() {
        // S3's x-amz-checksum-crc32c of "123456789" is base64(0xE3069283).
        let crc = crc32c::crc32c(b"123456789");
        assert_eq!(crc, 0xE306_9283);
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()),
            "4waSgw=="
        );
    }

    #[test]
    fn urls_near_expiry_are_not_used() {
        let at = |d: i64| {
            let t = if d >= 0 {
                SystemTime::now() + Duration::from_secs(d as u64)
            } else {
                SystemTime::now() - Duration::from_secs((-d) as u64)
            };
            PresignedPart {
                part_number: 1,
                url: String::new(),
                method: "PUT".into(),
                size: 1,
                expires_at: humantime::format_rfc3339_seconds(t).to_string(),
                headers: BTreeMap::new(),
            }
        };
        assert!(still_valid(&at(3600)));
        assert!(!still_valid(&at(30)));
        assert!(!still_valid(&at(-5)));
    }
}

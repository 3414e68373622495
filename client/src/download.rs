use crate::client::{storage_error, Client};
use crate::error::{Error, Result};
use crate::retry::parse_retry_after;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// What a download reports as it goes.
#[derive(Debug, Clone)]
pub enum DownloadEvent {
    /// A partial file of the same object is continued from `offset`.
    Resuming {
        offset: u64,
        size: u64,
    },
    /// The partial file was of another version of the object (or storage
    /// ignored the range): starting again from byte 0.
    Restarting {
        reason: String,
    },
    Bytes {
        done: u64,
        total: u64,
    },
    Retry {
        attempt: u32,
        delay: Duration,
        error: String,
    },
}

#[derive(Clone, Default)]
pub struct DownloadOptions {
    pub progress: Option<Arc<dyn Fn(DownloadEvent) + Send + Sync>>,
}

/// The finished download.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadOutcome {
    pub path: PathBuf,
    pub size: u64,
    /// The ETag of the object the file holds.
    pub etag: String,
    /// Bytes that were already there from an earlier, interrupted run.
    pub resumed_from: u64,
    /// Whether a partial file had to be thrown away (the object changed).
    pub restarted: bool,
}

/// Beside the partial file: which object version its bytes come from.
#[derive(Serialize, Deserialize)]
struct Sidecar {
    token: String,
    etag: String,
    size: u64,
}

/// `FILE.upb-partial` holds the bytes, `FILE.upb-partial.json` the object's ETag.
pub(crate) fn partial_paths(path: &Path) -> (PathBuf, PathBuf) {
    let mut p = path.as_os_str().to_owned();
    p.push(".upb-partial");
    let data = PathBuf::from(p);
    let mut j = data.as_os_str().to_owned();
    j.push(".json");
    (data, PathBuf::from(j))
}

enum Attempt {
    Done,
    /// Start again from 0 (object changed, or range ignored).
    Restart(String),
    Retry(Error, Option<Duration>),
    /// The URL expired or was refused: ask the broker for a new one.
    NewUrl(Error),
}

impl Client {
    /// Downloads the completed upload of `token` to `path`. An interrupted
    /// download leaves `path.upb-partial` behind; the next call continues it
    /// with `Range` and `If-Match` on the ETag it started with, and starts
    /// again from scratch when the object changed meanwhile (412).
    pub async fn download(&self, token: &str, path: impl AsRef<Path>) -> Result<DownloadOutcome> {
        self.download_with(token, path, DownloadOptions::default())
            .await
    }

    pub async fn download_with(
        &self,
        token: &str,
        path: impl AsRef<Path>,
        opts: DownloadOptions,
    ) -> Result<DownloadOutcome> {
        let path = path.as_ref();
        let (data_path, meta_path) = partial_paths(path);
        let emit = |e: DownloadEvent| {
            if let Some(p) = &opts.progress {
                p(e)
            }
        };
        let mut info = self.download_info(token).await?;
        // What the partial file holds, if it is of this upload.
        let mut have: Option<Sidecar> = std::fs::read(&meta_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Sidecar>(&b).ok())
            .filter(|s| s.token == token);
        let mut offset = match (&have, std::fs::metadata(&data_path)) {
            (Some(_), Ok(m)) => m.len(),
            _ => 0,
        };
        if offset == 0 {
            have = None;
        }
        let resumed_from = offset;
        let mut restarted = false;
        if let Some(s) = &have {
            emit(DownloadEvent::Resuming {
                offset,
                size: s.size,
            });
        }
        let policy = self.inner.retry.clone();
        let mut attempt = 0u32;
        let mut new_urls = 0u32;
        let mut restarts = 0u32;
        loop {
            let result = self
                .get_once(
                    &info.url,
                    &data_path,
                    &meta_path,
                    token,
                    &mut have,
                    &mut offset,
                    &emit,
                )
                .await;
            match result {
                Ok(Attempt::Done) => break,
                Ok(Attempt::Restart(reason)) => {
                    restarts += 1;
                    if restarts > 3 {
                        return Err(Error::Invalid(format!(
                            "the object keeps changing: {reason}"
                        )));
                    }
                    emit(DownloadEvent::Restarting { reason });
                    restarted = true;
                    have = None;
                    offset = 0;
                    let _ = std::fs::remove_file(&meta_path);
                    let _ = std::fs::remove_file(&data_path);
                }
                Ok(Attempt::NewUrl(e)) => {
                    new_urls += 1;
                    if new_urls > 3 {
                        return Err(e);
                    }
                    info = self.download_info(token).await?;
                }
                Ok(Attempt::Retry(e, ra)) | Err((e, ra)) => {
                    if !e.is_transient() {
                        return Err(e);
                    }
                    attempt += 1;
                    if attempt >= policy.max_attempts {
                        return Err(Error::RetriesExhausted {
                            attempts: attempt,
                            last: Box::new(e),
                        });
                    }
                    let delay = policy.delay(attempt, ra);
                    emit(DownloadEvent::Retry {
                        attempt,
                        delay,
                        error: e.to_string(),
                    });
                    tokio::time::sleep(delay).await;
                    // The presigned GET lives 5 minutes: take a fresh one after a pause.
                    info = self.download_info(token).await?;
                }
            }
        }
        let s = have
            .ok_or_else(|| Error::Invalid("download finished without an object version".into()))?;
        std::fs::rename(&data_path, path).map_err(|e| {
            Error::io(
                format!("rename {} to {}", data_path.display(), path.display()),
                e,
            )
        })?;
        let _ = std::fs::remove_file(&meta_path);
        Ok(DownloadOutcome {
            path: path.to_path_buf(),
            size: s.size,
            etag: s.etag,
            resumed_from: if restarted { 0 } else { resumed_from },
            restarted,
        })
    }

    /// One GET: from `offset` with `If-Match` when a partial file exists,
    /// else the whole object; appends what arrives.
    #[allow(clippy::too_many_arguments)]
    async fn get_once(
        &self,
        url: &str,
        data_path: &Path,
        meta_path: &Path,
        token: &str,
        have: &mut Option<Sidecar>,
        offset: &mut u64,
        emit: &(dyn Fn(DownloadEvent) + Sync),
    ) -> Result<Attempt, (Error, Option<Duration>)> {
        if let Some(s) = have.as_ref() {
            if *offset == s.size {
                return Ok(Attempt::Done);
            }
            if *offset > s.size {
                return Ok(Attempt::Restart(
                    "the partial file is longer than the object".into(),
                ));
            }
        }
        let mut req = self.inner.http.get(url);
        if let Some(s) = have.as_ref() {
            req = req
                .header(reqwest::header::RANGE, format!("bytes={}-", *offset))
                .header(reqwest::header::IF_MATCH, &s.etag);
        }
        let stall = self.inner.stall_timeout;
        let res = match tokio::time::timeout(stall, req.send()).await {
            Err(_) => return Ok(Attempt::Retry(Error::Stalled(stall), None)),
            Ok(Err(e)) => return Ok(Attempt::Retry(Error::Http(e), None)),
            Ok(Ok(r)) => r,
        };
        let status = res.status();
        let retry_after = parse_retry_after(res.headers());
        let header = |name: &str| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("etag").unwrap_or_default();
        match status.as_u16() {
            206 if have.is_some() => {
                let start = header("content-range").and_then(|r| {
                    r.strip_prefix("bytes ")?
                        .split('-')
                        .next()?
                        .parse::<u64>()
                        .ok()
                });
                if start != Some(*offset) {
                    return Ok(Attempt::Restart(format!(
                        "storage answered another range ({:?}) than asked (from {})",
                        header("content-range"),
                        *offset
                    )));
                }
            }
            200 => {
                if have.is_some() {
                    return Ok(Attempt::Restart("storage ignored the range".into()));
                }
                let size = res.content_length().ok_or_else(|| {
                    (
                        Error::Invalid("storage sent no Content-Length".into()),
                        None,
                    )
                })?;
                // Record the version before any byte of it lands in the file.
                let s = Sidecar {
                    token: token.to_string(),
                    etag: etag.clone(),
                    size,
                };
                let write = std::fs::write(meta_path, serde_json::to_vec(&s).unwrap())
                    .and_then(|_| std::fs::File::create(data_path).map(|_| ()));
                write
                    .map_err(|e| (Error::io(format!("write {}", data_path.display()), e), None))?;
                *have = Some(s);
                *offset = 0;
            }
            412 => {
                return Ok(Attempt::Restart(
                    "the object changed since the partial download (ETag differs)".into(),
                ))
            }
            416 => return Ok(Attempt::Restart("storage refused the range".into())),
            403 => {
                let body = res.bytes().await.unwrap_or_default();
                return Ok(Attempt::NewUrl(storage_error(status, &body)));
            }
            _ => {
                let body = res.bytes().await.unwrap_or_default();
                return Ok(Attempt::Retry(storage_error(status, &body), retry_after));
            }
        }
        let total = have.as_ref().map(|s| s.size).unwrap_or_default();
        let mut file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(data_path)
            .await
            .map_err(|e| (Error::io(format!("open {}", data_path.display()), e), None))?;
        let mut stream = res.bytes_stream();
        let mut last = Instant::now();
        loop {
            let next = match tokio::time::timeout(stall, stream.next()).await {
                Err(_) => {
                    file.flush().await.ok();
                    return Ok(Attempt::Retry(Error::Stalled(stall), None));
                }
                Ok(n) => n,
            };
            match next {
                None => break,
                Some(Err(e)) => {
                    file.flush().await.ok();
                    return Ok(Attempt::Retry(Error::Http(e), None));
                }
                Some(Ok(chunk)) => {
                    file.write_all(&chunk).await.map_err(|e| {
                        (Error::io(format!("write {}", data_path.display()), e), None)
                    })?;
                    *offset += chunk.len() as u64;
                    if last.elapsed() > Duration::from_millis(100) || *offset == total {
                        last = Instant::now();
                        emit(DownloadEvent::Bytes {
                            done: *offset,
                            total,
                        });
                    }
                }
            }
        }
        file.flush()
            .await
            .map_err(|e| (Error::io("flush", e), None))?;
        file.sync_all()
            .await
            .map_err(|e| (Error::io("sync", e), None))?;
        if *offset == total {
            Ok(Attempt::Done)
        } else {
            Ok(Attempt::Retry(
                Error::Incomplete(format!("the body ended at {} of {total} bytes", *offset)),
                None,
            ))
        }
    }
}

//! Client library for [upload-broker](../README.md): resumable multipart uploads
//! straight to S3/R2 through presigned part URLs, and resumable downloads.
//!
//! ```no_run
//! # async fn run() -> Result<(), upload_broker_client::Error> {
//! use upload_broker_client::{Client, Source, UploadOptions};
//! let client = Client::new("http://127.0.0.1:8080", "dev-key")?;
//! let done = client.upload(Source::from_path("big.bin")?, UploadOptions::default()).await?;
//! println!("{} {}", done.key, done.etag.unwrap_or_default());
//! # Ok(()) }
//! ```
//!
//! - Parts are read from the source with positioned reads, in 1 MiB chunks, as
//!   they are sent: memory stays at about `concurrency` × 2 MiB whatever the
//!   part size.
//! - Part URLs are signed on demand (in batches), signed again on 403 (expired),
//!   and every request is retried with capped exponential backoff and jitter on
//!   network errors, stalls, timeouts, 5xx and 429 (honouring `Retry-After`).
//! - An upload is found again by its fingerprint (by default the file's name,
//!   size, modification time and a hash of its first and last MiB) and resumed:
//!   only the parts storage does not hold are sent.

mod client;
mod download;
mod error;
mod retry;
mod source;
mod types;
mod upload;

pub use client::{Client, ClientBuilder};
pub use download::{DownloadEvent, DownloadOptions, DownloadOutcome};
pub use error::{Error, Result};
pub use retry::RetryPolicy;
pub use source::{ReadAt, Source};
pub use types::{DownloadInfo, PresignedPart, Progress, Upload, UploadedPart};
pub use upload::{Checksum, Event, Fingerprint, ProgressFn, UploadOptions};

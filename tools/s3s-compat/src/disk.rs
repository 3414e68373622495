//! What s3s-fs 0.14.1 keeps on disk for a multipart upload, read from its
//! `src/fs.rs` and `src/s3.rs`. Every file is in the data directory's root:
//!
//! - `.upload-{id}.json`: the upload exists (it holds the creator's access key);
//!   written by CreateMultipartUpload, deleted by Complete and Abort;
//! - `.bucket-{b64(bucket)}.object-{b64(key)}.upload-{id}.metadata.json`: the
//!   object's attributes, written for every upload at creation (base64 is
//!   URL-safe without padding, so the name never holds another `.`), deleted by
//!   Complete (after it has moved them to the object) and Abort;
//! - `.upload_id-{id}.part-{n}`: part `n`'s bytes, written to a temporary file
//!   and renamed into place; Complete deletes the parts it used, Abort all.
//!
//! Nothing here writes: the wrapper only reads what s3s-fs stored.

use s3s::crypto::{Checksum, Md5};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::AsyncReadExt;

pub struct Disk {
    root: PathBuf,
}

/// One stored part.
pub struct PartFile {
    pub number: i32,
    pub path: PathBuf,
    pub size: u64,
    pub modified: SystemTime,
}

/// One multipart upload in progress.
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated: SystemTime,
}

fn b64(s: &str) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(s)
}

/// s3s-fs makes upload ids with `Uuid::new_v4().to_string()`: anything else
/// names no upload (and must not reach a path).
fn is_upload_id(id: &str) -> bool {
    id.len() == 36 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl Disk {
    /// `root` resolved as `FileSystem::new` resolves it.
    pub fn new(root: &Path) -> io::Result<Self> {
        let root = std::env::current_dir()?.join(root).canonicalize()?;
        Ok(Self { root })
    }

    fn metadata_file(&self, bucket: &str, key: &str, upload_id: &str) -> PathBuf {
        self.root.join(format!(
            ".bucket-{}.object-{}.upload-{upload_id}.metadata.json",
            b64(bucket),
            b64(key)
        ))
    }

    /// Where s3s-fs stores part `n` of the upload.
    pub fn part_path(&self, upload_id: &str, n: i32) -> PathBuf {
        self.root.join(format!(".upload_id-{upload_id}.part-{n}"))
    }

    /// A bucket is a directory under the root.
    pub fn bucket_exists(&self, bucket: &str) -> bool {
        !bucket.is_empty()
            && !bucket.contains(['/', '\\'])
            && !bucket.starts_with('.')
            && self.root.join(bucket).is_dir()
    }

    /// Whether `upload_id` is an upload in progress of `key` in `bucket`.
    pub fn upload_exists(&self, bucket: &str, key: &str, upload_id: &str) -> bool {
        is_upload_id(upload_id)
            && self
                .root
                .join(format!(".upload-{upload_id}.json"))
                .is_file()
            && self.metadata_file(bucket, key, upload_id).is_file()
    }

    /// The upload's stored parts, by part number.
    pub async fn parts(&self, upload_id: &str) -> io::Result<Vec<PartFile>> {
        let prefix = format!(".upload_id-{upload_id}.part-");
        let mut parts = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let Ok(number) = number.parse::<i32>() else {
                continue;
            };
            let meta = match entry.metadata().await {
                Ok(m) => m,
                // Replaced or deleted while we looked: a concurrent UploadPart or Complete.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            parts.push(PartFile {
                number,
                path: entry.path(),
                size: meta.len(),
                modified: meta.modified()?,
            });
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Every upload in progress in `bucket`, in no particular order.
    pub async fn uploads(&self, bucket: &str) -> io::Result<Vec<UploadEntry>> {
        let prefix = format!(".bucket-{}.object-", b64(bucket));
        let mut uploads = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root).await?;
        while let Some(entry) = dir.next_entry().await? {
            let name = entry.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
                continue;
            };
            let Some(rest) = rest.strip_suffix(".metadata.json") else {
                continue;
            };
            let Some((key, upload_id)) = rest.split_once(".upload-") else {
                continue;
            };
            let Ok(key) = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(key) else {
                continue;
            };
            let Ok(key) = String::from_utf8(key) else {
                continue;
            };
            // The upload's own file says it is still in progress, and when it began.
            let info = self.root.join(format!(".upload-{upload_id}.json"));
            let initiated = match tokio::fs::metadata(&info).await {
                Ok(m) => m.modified()?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            uploads.push(UploadEntry {
                key,
                upload_id: upload_id.to_string(),
                initiated,
            });
        }
        Ok(uploads)
    }
}

/// The hex MD5 of a file: s3s-fs's UploadPart answers it as the part's ETag.
pub async fn md5_hex(path: &Path) -> io::Result<String> {
    let mut file = tokio::fs::File::open(path).await?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    Ok(md5.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

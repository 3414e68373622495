use crate::error::{Error, Result};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Random access to the bytes of an upload: parts are read where they are,
/// concurrently, never the whole source at once.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; 0 means the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize>;
}

impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

impl ReadAt for Bytes {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let start = (offset as usize).min(self.len());
        let n = buf.len().min(self.len() - start);
        buf[..n].copy_from_slice(&self[start..start + n]);
        Ok(n)
    }
}

/// What to upload: a file (by path) or any [`ReadAt`] with its length.
#[derive(Clone)]
pub struct Source {
    reader: Arc<dyn ReadAt>,
    len: u64,
    name: String,
    path: Option<PathBuf>,
    modified: Option<SystemTime>,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("len", &self.len)
            .field("path", &self.path)
            .finish()
    }
}

impl Source {
    /// A file; its name (last path component) becomes the upload's filename.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        if !meta.is_file() {
            return Err(Error::Invalid(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        Ok(Self {
            reader: Arc::new(file),
            len: meta.len(),
            name,
            path: Some(path.to_path_buf()),
            modified: meta.modified().ok(),
        })
    }

    /// Any positioned reader of `len` bytes, uploaded under `name`.
    pub fn from_reader(reader: impl ReadAt + 'static, len: u64, name: impl Into<String>) -> Self {
        Self {
            reader: Arc::new(reader),
            len,
            name: name.into(),
            path: None,
            modified: None,
        }
    }

    /// Bytes in memory (small uploads, tests).
    pub fn from_bytes(bytes: impl Into<Bytes>, name: impl Into<String>) -> Self {
        let bytes: Bytes = bytes.into();
        let len = bytes.len() as u64;
        Self::from_reader(bytes, len, name)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads exactly `len` bytes at `offset` (on the blocking pool).
    pub(crate) async fn read(&self, offset: u64, len: usize) -> Result<Bytes> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                let n = reader
                    .read_at(&mut buf[done..], offset + done as u64)
                    .map_err(|e| Error::io(format!("read at {}", offset + done as u64), e))?;
                if n == 0 {
                    return Err(Error::Invalid(format!(
                        "the source ended at {} bytes, before the {} it had when the upload started (was it changed?)",
                        offset + done as u64,
                        offset + len as u64
                    )));
                }
                done += n;
            }
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(|e| Error::Invalid(format!("read task failed: {e}")))?
    }

    /// The default fingerprint: `name:size:mtime-ms:sha256(first MiB ‖ last MiB)`
    /// (hex), as the API recommends; `-` for the time when the source has none.
    /// Quick to compute, and with the size it tells files apart in practice.
    pub async fn fingerprint(&self) -> Result<String> {
        const MIB: u64 = 1024 * 1024;
        let head = self.read(0, self.len.min(MIB) as usize).await?;
        let tail_start = self.len.saturating_sub(MIB);
        let tail = self
            .read(tail_start, (self.len - tail_start) as usize)
            .await?;
        let mut h = Sha256::new();
        h.update(&head);
        h.update(&tail);
        let mtime = self
            .modified
            .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis().to_string())
            .unwrap_or_else(|| "-".into());
        // The broker takes at most 256 characters: keep the name's end short.
        let name: String = self.name.chars().filter(|c| *c != '\0').take(100).collect();
        Ok(format!(
            "{name}:{}:{mtime}:{}",
            self.len,
            hex::encode(h.finalize())
        ))
    }
}

//! The resume-token secret when `BROKER_TOKEN_SECRET` is not set: a file of
//! random bytes, created once (mode 0600) and reused, so tokens survive restarts
//! of a single instance. Several instances must share `BROKER_TOKEN_SECRET`.

use crate::domain::token::TokenKey;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::path::{Path, PathBuf};

pub fn default_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("token-secret"));
    }
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(state.join("upload-broker").join("token-secret"))
}

/// Reads the key file, creating it with 32 random bytes if it does not exist.
pub fn load_or_create(path: &Path) -> Result<TokenKey, String> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let bytes = STANDARD
                .decode(s.trim())
                .map_err(|_| format!("{} is not base64", path.display()))?;
            TokenKey::new(&bytes)
                .ok_or_else(|| format!("{} holds fewer than 32 bytes", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            write_private(path, STANDARD.encode(bytes).as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            // Another process may have won the race: read back what is there.
            load_or_create(path)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => f.write_all(data),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

//! Object keys: the one place where the key layout is decided.
//!
//! `{prefix}{yyyy}/{mm}/{dd}/{upload id}/{cleaned file name}`, at most 1024 bytes.
//! The client never chooses the key; its file name only contributes a cleaned form.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// S3's (and R2's) limit on the length of a key in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest prefix the broker accepts, so a file name always has room.
pub const MAX_PREFIX_BYTES: usize = 512;

/// An object key built by [`ObjectKey::for_upload`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn for_upload(prefix: &str, created_at: DateTime<Utc>, id: Uuid, filename: &str) -> Self {
        let head = format!("{prefix}{}/{id}/", created_at.format("%Y/%m/%d"));
        let room = MAX_KEY_BYTES.saturating_sub(head.len()).max(1);
        Self(head + &clean_file_name(filename, room))
    }

    /// A key read back from the database (it was built here before).
    pub fn from_stored(key: String) -> Self {
        Self(key)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A file name reduced to `[A-Za-z0-9._-]`: no path separators, no `..`, no
/// control characters, no leading dot, at most `max_bytes` bytes (keeping the
/// extension when it has to shorten), never empty.
pub fn clean_file_name(name: &str, max_bytes: usize) -> String {
    // Only the last path component of whatever the client sent.
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let mut out = String::with_capacity(base.len());
    for c in base.chars() {
        let keep = c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        let c = if keep { c } else { '_' };
        // Collapse runs of dots and of underscores.
        if (c == '.' || c == '_') && out.ends_with(c) {
            continue;
        }
        out.push(c);
    }
    let out = out.trim_start_matches(['.', '_']).trim_end_matches('.');
    let mut out = if out.is_empty() || out.chars().all(|c| c == '_') {
        "file".to_string()
    } else {
        out.to_string()
    };
    let max_bytes = max_bytes.max(1);
    if out.len() > max_bytes {
        // Keep a short extension if there is one.
        let ext = out
            .rfind('.')
            .map(|i| out[i..].to_string())
            .filter(|e| e.len() <= 16 && e.len() < max_bytes);
        match ext {
            Some(ext) => {
                out.truncate(max_bytes - ext.len());
                out.push_str(&ext);
            }
            None => out.truncate(max_bytes),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn layout() {
        let id = Uuid::nil();
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 10, 0, 0).unwrap();
        let k = ObjectKey::for_upload("uploads/", t, id, "movie.mp4");
        assert_eq!(
            k.as_str(),
            "uploads/2026/11/21/00000000-0000-0000-0000-000000000000/movie.mp4"
        );
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_file_name("../../etc/passwd", 100), "passwd");
        assert_eq!(clean_file_name("..", 100), "file");
        assert_eq!(clean_file_name("C:\\Users\\me\\a b.txt", 100), "a_b.txt");
        assert_eq!(clean_file_name(".hidden", 100), "hidden");
        assert_eq!(clean_file_name("a\u{0}\n\tb", 100), "a_b");
        assert_eq!(clean_file_name("résumé.pdf", 100), "r_sum_.pdf");
        assert_eq!(clean_file_name("", 100), "file");
        assert_eq!(clean_file_name("a/", 100), "file");
        assert_eq!(clean_file_name("x..y", 100), "x.y");
        assert_eq!(
            clean_file_name(&format!("{}.mp4", "a".repeat(50)), 20),
            format!("{}.mp4", "a".repeat(16))
        );
    }

    proptest! {
        #[test]
        fn keys_are_safe(prefix in "[a-z/]{0,20}", name in any::<String>()) {
            let k = ObjectKey::for_upload(&prefix, Utc::now(), Uuid::new_v4(), &name);
            let s = k.as_str();
            prop_assert!(s.len() <= MAX_KEY_BYTES);
            let file = s.rsplit('/').next().unwrap();
            prop_assert!(!file.is_empty());
            prop_assert!(!file.starts_with('.'));
            prop_assert!(!file.contains(".."));
            prop_assert!(file.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
        }

        #[test]
        fn long_names_fit(name in "[a-z.]{0,3000}", prefix_len in 0usize..=MAX_PREFIX_BYTES) {
            let prefix = "p".repeat(prefix_len);
            let k = ObjectKey::for_upload(&prefix, Utc::now(), Uuid::new_v4(), &name);
            prop_assert!(k.as_str().len() <= MAX_KEY_BYTES);
        }
    }
}

//! Validation of what clients send: raw fields become checked values here, so the
//! layers below never see a value that could be anything.

use std::collections::BTreeMap;

/// Longest file name accepted (bytes).
pub const MAX_FILENAME_BYTES: usize = 1024;
/// Longest fingerprint accepted (characters).
pub const MAX_FINGERPRINT_CHARS: usize = 256;
/// All user metadata together, keys and values (bytes).
pub const MAX_METADATA_BYTES: usize = 2048;
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A request field that failed validation: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field,
        reason: reason.into(),
    }
}

/// A file name as the client gave it (echoed back unchanged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    pub fn parse(s: String) -> Result<Self, FieldError> {
        if s.is_empty() {
            return Err(err("filename", "must not be empty"));
        }
        if s.len() > MAX_FILENAME_BYTES {
            return Err(err(
                "filename",
                format!("must be at most {MAX_FILENAME_BYTES} bytes"),
            ));
        }
        if s.chars().any(|c| c == '\0') {
            return Err(err("filename", "must not contain NUL characters"));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A MIME type such as `video/mp4; codecs=avc1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType(String);

impl ContentType {
    pub fn parse(s: Option<String>) -> Result<Self, FieldError> {
        let Some(s) = s else {
            return Ok(Self(DEFAULT_CONTENT_TYPE.to_string()));
        };
        let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let essence = s.split(';').next().unwrap_or("").trim();
        let valid_essence = essence.split_once('/').is_some_and(|(t, st)| {
            !t.is_empty() && !st.is_empty() && t.chars().all(tchar) && st.chars().all(tchar)
        });
        let printable = s.chars().all(|c| (' '..='~').contains(&c));
        if !valid_essence || !printable || s.len() > 255 {
            return Err(err(
                "contentType",
                "must be a MIME type such as \"video/mp4\" (printable ASCII, at most 255 bytes)",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// User metadata: lower-case keys of `[a-z0-9-]`, at most 2 KiB in all (counted
/// as stored). Becomes the object's `x-amz-meta-*` headers; values that HTTP
/// headers cannot carry are stored RFC 2047-encoded (see [`header_safe`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(m: Option<BTreeMap<String, String>>) -> Result<Self, FieldError> {
        let m: BTreeMap<String, String> = m
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, header_safe(&v)))
            .collect();
        let mut total = 0;
        for (k, v) in &m {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(err(
                    "metadata",
                    format!("key {k:?} must be lower-case ASCII letters, digits and '-'"),
                ));
            }
            total += k.len() + v.len();
        }
        if total > MAX_METADATA_BYTES {
            return Err(err(
                "metadata",
                format!("is {total} bytes; at most {MAX_METADATA_BYTES} bytes in all"),
            ));
        }
        Ok(Self(m))
    }
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }
    /// This metadata with `forced` keys set (their values winning), values made
    /// header-safe as for any metadata.
    pub fn with_forced(mut self, forced: &BTreeMap<String, String>) -> Self {
        for (k, v) in forced {
            self.0.insert(k.clone(), header_safe(v));
        }
        self
    }
}

/// A metadata value as an HTTP header can carry it: printable ASCII as is,
/// anything else as an RFC 2047 encoded word (`=?UTF-8?B?<base64>?=`), the form
/// S3 itself uses for non-ASCII user metadata.
pub fn header_safe(v: &str) -> String {
    use base64::Engine as _;
    if v.chars().all(|c| (' '..='~').contains(&c)) {
        v.to_string()
    } else {
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

/// The client's own identity for a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn parse(s: String) -> Result<Self, FieldError> {
        if s.is_empty() || s.chars().count() > MAX_FINGERPRINT_CHARS {
            return Err(err(
                "fingerprint",
                format!("must be 1 to {MAX_FINGERPRINT_CHARS} characters"),
            ));
        }
        if s.chars().any(|c| c == '\0') {
            return Err(err("fingerprint", "must not contain NUL characters"));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Metadata as Uppy sends it to Companion: any JSON values under any keys.
/// Keys are lower-cased and reduced to `[a-z0-9-]`; numbers and booleans become
/// their text; `null` is dropped; values are then made header-safe as for the
/// native API. The 2 KiB limit still applies.
pub fn companion_metadata(
    m: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Metadata, FieldError> {
    let mut out = BTreeMap::new();
    for (k, v) in m.unwrap_or_default() {
        let key: String = k
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let key = key.trim_matches('-').to_string();
        let text = match v {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        };
        if key.is_empty() {
            continue;
        }
        out.insert(key, text);
    }
    Metadata::parse(Some(out))
}

#[cfg(test)]
mod companion_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn companion_metadata_is_made_header_safe() {
        let m = json!({"name": "résumé.pdf", "Type": "application/pdf", "relativePath": null, "size": 12, "a b": "x\ny"});
        let got = companion_metadata(m.as_object().cloned()).unwrap();
        let got = got.as_map();
        assert_eq!(got["name"], "=?UTF-8?B?csOpc3Vtw6kucGRm?=");
        assert_eq!(got["type"], "application/pdf");
        assert_eq!(got["size"], "12");
        assert_eq!(got["a-b"], "=?UTF-8?B?eAp5?=");
        assert!(!got.contains_key("relativepath"));
        let big = json!({"k": "x".repeat(3000)});
        assert!(companion_metadata(big.as_object().cloned()).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert_eq!(
            ContentType::parse(None).unwrap().as_str(),
            DEFAULT_CONTENT_TYPE
        );
        assert!(ContentType::parse(Some("video/mp4".into())).is_ok());
        assert!(ContentType::parse(Some("text/plain; charset=utf-8".into())).is_ok());
        for bad in ["", "video", "/mp4", "video/", "vid eo/mp4", "a/b\n", "a/é"] {
            assert!(ContentType::parse(Some(bad.into())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_rules() {
        let m = |k: &str, v: &str| Some(BTreeMap::from([(k.to_string(), v.to_string())]));
        assert!(Metadata::parse(m("camera-id", "cam 7")).is_ok());
        assert!(Metadata::parse(m("Camera", "x")).is_err());
        assert!(Metadata::parse(m("a_b", "x")).is_err());
        assert!(Metadata::parse(m("", "x")).is_err());
        let enc = Metadata::parse(m("title", "Café")).unwrap();
        assert_eq!(enc.as_map()["title"], "=?UTF-8?B?Q2Fmw6k=?=");
        let enc = Metadata::parse(m("a", "line\nbreak")).unwrap();
        assert!(enc.as_map()["a"].starts_with("=?UTF-8?B?"));
        assert!(Metadata::parse(m("a", &"x".repeat(2047))).is_ok());
        assert!(Metadata::parse(m("a", &"x".repeat(2048))).is_err());
    }

    #[test]
    fn file_names_and_fingerprints() {
        assert!(FileName::parse("movie.mp4".into()).is_ok());
        assert!(FileName::parse("".into()).is_err());
        assert!(FileName::parse("a\0b".into()).is_err());
        assert!(FileName::parse("x".repeat(1025)).is_err());
        assert!(Fingerprint::parse("x".repeat(256)).is_ok());
        assert!(Fingerprint::parse("x".repeat(257)).is_err());
        assert!(Fingerprint::parse(String::new()).is_err());
    }
}

//! Part checksums: the algorithms that both S3 and R2 accept for multipart
//! uploads as COMPOSITE checksums (R2 accepts CRC64NVME only as FULL_OBJECT),
//! and checked values.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha256,
    Crc32c,
}

impl ChecksumAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "SHA256" | "SHA-256" => Some(Self::Sha256),
            "CRC32C" | "CRC-32C" => Some(Self::Crc32c),
            _ => None,
        }
    }

    /// The name in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA256",
            Self::Crc32c => "CRC32C",
        }
    }

    /// The request header that carries a part's checksum.
    pub fn header(self) -> &'static str {
        match self {
            Self::Sha256 => "x-amz-checksum-sha256",
            Self::Crc32c => "x-amz-checksum-crc32c",
        }
    }

    /// Length of the raw digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Crc32c => 4,
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A part checksum: the base64 of a digest of the right length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartChecksum(String);

impl PartChecksum {
    pub fn parse(alg: ChecksumAlgorithm, s: &str) -> Result<Self, String> {
        let raw = STANDARD.decode(s.trim()).map_err(|_| {
            format!("checksum must be base64 (standard alphabet, padded) of the {alg} digest")
        })?;
        if raw.len() != alg.digest_len() {
            return Err(format!(
                "a {alg} checksum is {} bytes, base64-encoded; this one decodes to {} bytes",
                alg.digest_len(),
                raw.len()
            ));
        }
        Ok(Self(STANDARD.encode(raw)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithms() {
        assert_eq!(
            ChecksumAlgorithm::parse("sha256"),
            Some(ChecksumAlgorithm::Sha256)
        );
        assert_eq!(
            ChecksumAlgorithm::parse("CRC32C"),
            Some(ChecksumAlgorithm::Crc32c)
        );
        assert_eq!(ChecksumAlgorithm::parse("CRC64NVME"), None);
        assert_eq!(ChecksumAlgorithm::parse("md5"), None);
    }

    #[test]
    fn checksums_are_checked() {
        let sha = STANDARD.encode([7u8; 32]);
        assert!(PartChecksum::parse(ChecksumAlgorithm::Sha256, &sha).is_ok());
        assert!(PartChecksum::parse(ChecksumAlgorithm::Crc32c, &sha).is_err());
        assert!(PartChecksum::parse(ChecksumAlgorithm::Crc32c, &STANDARD.encode([1u8; 4])).is_ok());
        assert!(PartChecksum::parse(ChecksumAlgorithm::Sha256, "not base64!").is_err());
        assert!(PartChecksum::parse(ChecksumAlgorithm::Sha256, "").is_err());
    }
}

//! What each storage provider takes beyond the rules S3 and R2 share (those
//! are in `part_plan`). Cloudflare R2's rules are encoded from its
//! documentation and from what users report; they cannot be checked here
//! against R2 itself (see README, "Pointing it at Cloudflare R2").

use super::checksum::ChecksumAlgorithm;
use super::part_plan::PlanLimits;

/// The provider's rules the broker applies before calling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderRules {
    /// Whether whole small objects may be uploaded with a POST policy (R2 has
    /// no POST Object).
    pub post_uploads: bool,
    /// Whether parts may carry SHA-256 checksums (R2 answered 501 to part
    /// uploads with them in a probe in August 2026).
    pub sha256_part_checksums: bool,
    /// R2's smaller largest object and part.
    pub r2_sizes: bool,
}

impl ProviderRules {
    pub const S3: Self = Self {
        post_uploads: true,
        sha256_part_checksums: true,
        r2_sizes: false,
    };

    /// R2; `allow_sha256` for a deployment that found its R2 takes them.
    pub fn r2(allow_sha256: bool) -> Self {
        Self {
            post_uploads: false,
            sha256_part_checksums: allow_sha256,
            r2_sizes: true,
        }
    }

    /// The configured limits within the provider's own.
    pub fn plan_limits(&self, configured: PlanLimits) -> PlanLimits {
        if self.r2_sizes {
            configured.within_r2()
        } else {
            configured
        }
    }

    /// Whether parts may be signed with checksums of `algorithm`; the reason
    /// for the client when not.
    pub fn admit_checksum(&self, algorithm: ChecksumAlgorithm) -> Result<(), String> {
        match algorithm {
            ChecksumAlgorithm::Sha256 if !self.sha256_part_checksums => Err(
                "checksumAlgorithm: this bucket is on Cloudflare R2, which refuses part uploads \
                 carrying SHA-256 checksums; use CRC32C"
                    .into(),
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r2_refuses_sha256_part_checksums_unless_allowed() {
        assert!(ProviderRules::S3
            .admit_checksum(ChecksumAlgorithm::Sha256)
            .is_ok());
        let r2 = ProviderRules::r2(false);
        let why = r2.admit_checksum(ChecksumAlgorithm::Sha256).unwrap_err();
        assert!(why.contains("CRC32C"), "{why}");
        assert!(r2.admit_checksum(ChecksumAlgorithm::Crc32c).is_ok());
        assert!(ProviderRules::r2(true)
            .admit_checksum(ChecksumAlgorithm::Sha256)
            .is_ok());
        assert!(!r2.post_uploads && ProviderRules::S3.post_uploads);
    }

    #[test]
    fn r2_limits_apply_only_to_r2() {
        let l = PlanLimits::default();
        assert_eq!(ProviderRules::S3.plan_limits(l), l);
        assert_eq!(ProviderRules::r2(false).plan_limits(l), l.within_r2());
    }
}

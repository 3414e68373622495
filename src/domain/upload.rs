//! Upload states, and the reconciliation of a plan with the provider's part list.

use super::part_plan::{PartNumber, PartPlan};
use serde::Serialize;
use std::collections::BTreeMap;

/// The life of an upload.
///
/// `active → completing → completed`, `completing → active` when the provider
/// refuses, `active → aborting → aborted`, `active → expiring → expired` (the
/// sweep: past `expiresAt`), and `active → expired` (the provider no longer has
/// it). `completing`, `aborting` and `expiring` are claims: held by one claimant
/// (a fresh claim id, with a lease) until it records the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadStatus {
    Active,
    Completing,
    Completed,
    /// Claimed by a client's abort that is aborting it at the provider.
    Aborting,
    Aborted,
    /// Claimed by a sweep that is aborting it at the provider.
    Expiring,
    Expired,
}

impl UploadStatus {
    /// Every status, in the order of the lifecycle.
    pub const ALL: [UploadStatus; 7] = [
        Self::Active,
        Self::Completing,
        Self::Completed,
        Self::Aborting,
        Self::Aborted,
        Self::Expiring,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completing => "completing",
            Self::Completed => "completed",
            Self::Aborting => "aborting",
            Self::Aborted => "aborted",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
        }
    }

    /// The status clients see: the contract's five. An abort in progress is
    /// already decided (no route can make the upload active again), so it shows
    /// as `aborted`; an expiry in progress as `expired`.
    pub fn api_name(self) -> &'static str {
        match self {
            Self::Aborting => "aborted",
            Self::Expiring => "expired",
            other => other.as_str(),
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "active" => Self::Active,
            "completing" => Self::Completing,
            "completed" => Self::Completed,
            "aborting" => Self::Aborting,
            "aborted" => Self::Aborted,
            "expiring" => Self::Expiring,
            "expired" => Self::Expired,
            _ => return None,
        })
    }
}

/// What the provider says of a finished object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FinishedObject {
    pub etag: String,
    pub checksum: Option<String>,
    pub size: Option<u64>,
}

/// A part as the storage provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPart {
    pub part_number: u32,
    pub etag: String,
    pub size: u64,
    /// The part's checksum (base64), for checksum-bound uploads.
    pub checksum: Option<String>,
}

/// A stored part whose size does not fit its place in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WrongSizePart {
    pub part_number: u32,
    pub expected_size: u64,
    pub actual_size: u64,
}

/// The plan held against what the provider has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// Parts present with the right size, by number.
    pub uploaded: Vec<StoredPart>,
    /// Plan parts not (correctly) present, sorted.
    pub missing: Vec<PartNumber>,
    /// Parts present with a size that does not fit the plan (also in `missing`).
    pub wrong_size: Vec<WrongSizePart>,
}

impl Reconciliation {
    pub fn new(plan: &PartPlan, stored: &[StoredPart]) -> Self {
        let by_number: BTreeMap<u32, &StoredPart> =
            stored.iter().map(|p| (p.part_number, p)).collect();
        let mut uploaded = Vec::new();
        let mut missing = Vec::new();
        let mut wrong_size = Vec::new();
        for n in plan.parts() {
            let expected = plan.part_len(n);
            match by_number.get(&n.get()) {
                Some(p) if p.size == expected => uploaded.push((*p).clone()),
                Some(p) => {
                    wrong_size.push(WrongSizePart {
                        part_number: n.get(),
                        expected_size: expected,
                        actual_size: p.size,
                    });
                    missing.push(n);
                }
                None => missing.push(n),
            }
        }
        Self {
            uploaded,
            missing,
            wrong_size,
        }
    }

    pub fn progress(&self, plan: &PartPlan) -> Progress {
        Progress::new(
            self.uploaded.iter().map(|p| p.size).sum(),
            plan.size(),
            self.uploaded.len() as u32,
            plan.part_count(),
        )
    }
}

/// `progress` in responses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub uploaded_bytes: u64,
    pub total_bytes: u64,
    pub uploaded_parts: u32,
    pub total_parts: u32,
    /// `uploadedBytes / totalBytes × 100`, not rounded.
    pub percent: f64,
}

impl Progress {
    pub fn new(
        uploaded_bytes: u64,
        total_bytes: u64,
        uploaded_parts: u32,
        total_parts: u32,
    ) -> Self {
        let percent = if total_bytes == 0 {
            0.0
        } else {
            uploaded_bytes as f64 / total_bytes as f64 * 100.0
        };
        Self {
            uploaded_bytes,
            total_bytes,
            uploaded_parts,
            total_parts,
            percent,
        }
    }
}

/// An ETag without its surrounding quotes (S3 answers quoted ETags; clients send
/// either form).
pub fn bare_etag(etag: &str) -> &str {
    etag.trim().trim_matches('"')
}

/// An upload as the broker records it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: uuid::Uuid,
    pub tenant: String,
    /// The grant subject it belongs to (`None`: created with an API key).
    pub subject: Option<String>,
    pub status: UploadStatus,
    pub bucket: String,
    pub key: super::object_key::ObjectKey,
    pub provider_upload_id: String,
    pub filename: super::request::FileName,
    pub content_type: super::request::ContentType,
    /// The part plan; `None` for an upload created without a declared size
    /// (Companion-compatible routes) until it completes.
    pub plan: Option<PartPlan>,
    pub metadata: BTreeMap<String, String>,
    /// The keyed hash of the fingerprint given at create (never the fingerprint).
    pub fingerprint_mac: Option<String>,
    /// Which API created it: Companion routes act only on their own uploads.
    pub origin: Origin,
    /// The largest size it may complete at, if its creator was held to one
    /// (a grant's `maxUploadSize`).
    pub size_limit: Option<u64>,
    /// Part checksums bound into part URLs, if the client chose an algorithm.
    pub checksum_algorithm: Option<super::checksum::ChecksumAlgorithm>,
    /// The finished object's ETag (completed uploads).
    pub etag: Option<String>,
    /// The finished object's composite checksum (`base64-N`), if any.
    pub checksum: Option<String>,
    /// The finished object's size as HeadObject reported it.
    pub object_size: Option<u64>,
    /// The parts the object was completed from (completed uploads).
    pub completed_parts: Option<Vec<StoredPart>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
    /// The current claimant of a `completing`, `aborting` or `expiring` upload.
    pub claim: Option<uuid::Uuid>,
}

/// Which API created an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The native API (resume tokens, a declared size).
    Native,
    /// The Companion-compatible routes (provider upload id and key, no size).
    Companion,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Companion => "companion",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "native" => Some(Self::Native),
            "companion" => Some(Self::Companion),
            _ => None,
        }
    }
}

impl Upload {
    /// Past its expiry. A completed upload never expires, and one being
    /// completed is left to its completer (the sweep takes over if it dies).
    pub fn is_expired(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        match self.status {
            UploadStatus::Expiring | UploadStatus::Expired => true,
            UploadStatus::Active | UploadStatus::Aborting | UploadStatus::Aborted => {
                now >= self.expires_at
            }
            UploadStatus::Completing | UploadStatus::Completed => false,
        }
    }
}

/// An upload of a day's life with a fresh id, for tests.
#[cfg(test)]
pub fn sample(status: UploadStatus) -> Upload {
    let now = chrono::Utc::now();
    let id = uuid::Uuid::now_v7();
    Upload {
        id,
        tenant: "t".into(),
        subject: None,
        status,
        bucket: "b".into(),
        key: super::object_key::ObjectKey::for_upload("p/", now, id, "f"),
        provider_upload_id: format!("provider-{id}"),
        filename: super::request::FileName::parse("f".into()).unwrap(),
        content_type: super::request::ContentType::parse(None).unwrap(),
        plan: None,
        metadata: Default::default(),
        fingerprint_mac: None,
        origin: Origin::Native,
        size_limit: None,
        checksum_algorithm: None,
        etag: None,
        checksum: None,
        object_size: None,
        completed_parts: None,
        created_at: now,
        expires_at: now + chrono::Duration::days(1),
        lease_until: None,
        claim: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::part_plan::{PlanLimits, MIB};

    fn part(n: u32, size: u64) -> StoredPart {
        StoredPart {
            part_number: n,
            etag: format!("\"e{n}\""),
            size,
            checksum: None,
        }
    }

    #[test]
    fn reconciles_missing_and_wrong_sizes() {
        let plan = PartPlan::new(15 * MIB + 10, Some(5 * MIB), PlanLimits::default()).unwrap();
        let stored = vec![
            part(1, 5 * MIB),
            part(3, 5 * MIB - 1),
            part(4, 10),
            part(9, 1),
        ];
        let r = Reconciliation::new(&plan, &stored);
        assert_eq!(
            r.uploaded.iter().map(|p| p.part_number).collect::<Vec<_>>(),
            vec![1, 4]
        );
        assert_eq!(
            r.missing.iter().map(|p| p.get()).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(r.wrong_size.len(), 1);
        assert_eq!(r.wrong_size[0].part_number, 3);
        let p = r.progress(&plan);
        assert_eq!(p.uploaded_bytes, 5 * MIB + 10);
        assert_eq!(p.uploaded_parts, 2);
        assert_eq!(p.total_parts, 4);
        assert!((p.percent - (5 * MIB + 10) as f64 / (15 * MIB + 10) as f64 * 100.0).abs() < 1e-12);
    }

    #[test]
    fn statuses_round_trip() {
        for s in UploadStatus::ALL {
            assert_eq!(UploadStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(UploadStatus::parse("nope"), None);
    }

    #[test]
    fn etag_quotes_are_ignored() {
        assert_eq!(bare_etag("\"abc\""), "abc");
        assert_eq!(bare_etag("abc"), "abc");
    }
}

//! Events: what a status change tells the tenant's backend (webhooks and the
//! feed), and the rules of their delivery (the retry schedule). No I/O.

use super::upload::{Upload, UploadStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// The kinds of event, one per status an upload can reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Created,
    Completed,
    Aborted,
    Expired,
}

impl EventType {
    pub const ALL: [EventType; 4] = [
        EventType::Created,
        EventType::Completed,
        EventType::Aborted,
        EventType::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "upload.created",
            EventType::Completed => "upload.completed",
            EventType::Aborted => "upload.aborted",
            EventType::Expired => "upload.expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The event of reaching `status`, if reaching it is an event.
    pub fn of_status(status: UploadStatus) -> Option<Self> {
        match status {
            UploadStatus::Active => Some(EventType::Created),
            UploadStatus::Completed => Some(EventType::Completed),
            UploadStatus::Aborted => Some(EventType::Aborted),
            UploadStatus::Expired => Some(EventType::Expired),
            UploadStatus::Completing | UploadStatus::Aborting | UploadStatus::Expiring => None,
        }
    }
}

/// An event's public id: `evt_` and 32 hex digits.
pub fn event_id(id: Uuid) -> String {
    format!("evt_{}", id.simple())
}

/// The id inside an `evt_…` id.
pub fn parse_event_id(s: &str) -> Option<Uuid> {
    let hex = s.strip_prefix("evt_")?;
    (hex.len() == 32)
        .then(|| Uuid::try_parse(hex).ok())
        .flatten()
}

/// An event's `data`: the upload resource without its resume token (and
/// without the fingerprint, which is stored only as a keyed hash), with
/// `subject` and `metadata`; a completed upload's adds `etag`, `objectSize`
/// and `checksum` (null when no checksum was asked for). Sizes are null for an
/// upload created without one (the Companion routes) until it completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadData {
    pub id: String,
    pub subject: Option<String>,
    pub status: String,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub filename: String,
    pub content_type: String,
    pub size: Option<u64>,
    pub part_size: Option<u64>,
    pub part_count: Option<u32>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: String,
    pub expires_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<CompletedData>,
}

/// What only a completed upload's event holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedData {
    /// `client` when a `complete` call (or the recovery of one) completed it,
    /// `broker` when the broker completed it on its own (auto-completion).
    pub completed_by: String,
    pub etag: Option<String>,
    pub object_size: Option<u64>,
    pub checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}

pub fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

impl UploadData {
    pub fn of(u: &Upload) -> Self {
        Self {
            id: u.id.to_string(),
            subject: u.subject.clone(),
            status: u.status.api_name().to_string(),
            bucket: u.bucket.clone(),
            key: u.key.as_str().to_string(),
            upload_id: u.provider_upload_id.clone(),
            filename: u.filename.as_str().to_string(),
            content_type: u.content_type.as_str().to_string(),
            size: u.plan.map(|p| p.size()),
            part_size: u.plan.map(|p| p.part_size()),
            part_count: u.plan.map(|p| p.part_count()),
            metadata: u.metadata.clone(),
            created_at: rfc3339(&u.created_at),
            expires_at: rfc3339(&u.expires_at),
            checksum_algorithm: u.checksum_algorithm.map(|a| a.as_str().to_string()),
            completed: (u.status == UploadStatus::Completed).then(|| CompletedData {
                completed_by: "client".to_string(),
                etag: u.etag.clone(),
                object_size: u.object_size,
                checksum_type: u.checksum.as_ref().map(|_| "COMPOSITE".to_string()),
                checksum: u.checksum.clone(),
            }),
        }
    }
}

/// An event as it is delivered and listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    /// An [`UploadData`], as it was written.
    pub data: serde_json::Value,
}

/// An event about to be written, in the transaction of the change it tells of.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: EventType,
    pub tenant: String,
    pub upload_id: Uuid,
    pub at: DateTime<Utc>,
    pub data: UploadData,
}

impl NewEvent {
    /// The event of `upload` having reached its current status, if that is one.
    pub fn of(upload: &Upload, at: DateTime<Utc>) -> Option<Self> {
        let kind = EventType::of_status(upload.status)?;
        Some(Self {
            id: Uuid::now_v7(),
            kind,
            tenant: upload.tenant.clone(),
            upload_id: upload.id,
            at,
            data: UploadData::of(upload),
        })
    }
}

/// When a failed delivery is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles with each one.
    pub first: Duration,
    /// The longest wait between two attempts.
    pub max: Duration,
    /// How long after its event a delivery is tried before it is `failed`.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            first: Duration::from_secs(10),
            max: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    RetryIn(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After failed attempt number `attempts` (1 for the first) of an event
    /// that happened `age` ago: exponential backoff with jitter (`jitter` in
    /// [0, 1) picks the wait between half and all of the doubled delay); give
    /// up once the event is older than `give_up_after` (the last retry is
    /// placed at that point, so the delivery is tried for the whole window).
    pub fn after_failure(&self, attempts: u32, age: Duration, jitter: f64) -> AfterFailure {
        if age >= self.give_up_after {
            return AfterFailure::GiveUp;
        }
        let doubled = self.first.saturating_mul(
            1u32.checked_shl(attempts.saturating_sub(1).min(31))
                .unwrap_or(u32::MAX),
        );
        let capped = doubled.min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        let wait = capped.mul_f64(0.5 + 0.5 * jitter);
        let left = self.give_up_after - age;
        AfterFailure::RetryIn(wait.min(left))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_round_trip_and_follow_statuses() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        assert_eq!(EventType::parse("upload.deleted"), None);
        assert_eq!(EventType::of_status(UploadStatus::Completing), None);
        assert_eq!(EventType::of_status(UploadStatus::Aborting), None);
        assert_eq!(
            EventType::of_status(UploadStatus::Completed),
            Some(EventType::Completed)
        );
    }

    #[test]
    fn event_ids_round_trip() {
        let id = Uuid::now_v7();
        assert_eq!(parse_event_id(&event_id(id)), Some(id));
        assert_eq!(parse_event_id("evt_xyz"), None);
        assert_eq!(parse_event_id(&id.to_string()), None);
    }

    #[test]
    fn retries_double_with_jitter_up_to_the_cap_then_give_up() {
        let p = RetryPolicy::default();
        let young = Duration::from_secs(1);
        // The first retry comes within a minute, between half and all of `first`.
        assert_eq!(
            p.after_failure(1, young, 0.0),
            AfterFailure::RetryIn(Duration::from_secs(5))
        );
        assert_eq!(
            p.after_failure(1, young, 0.999_999),
            AfterFailure::RetryIn(Duration::from_secs(10).mul_f64(0.999_999_5))
        );
        assert_eq!(
            p.after_failure(3, young, 0.0),
            AfterFailure::RetryIn(Duration::from_secs(20))
        );
        // Far along, the wait stays at the cap (no overflow).
        for n in [20, 32, 40, u32::MAX] {
            assert_eq!(
                p.after_failure(n, young, 0.0),
                AfterFailure::RetryIn(Duration::from_secs(1800))
            );
        }
        // The last retry lands at the end of the window, then it gives up.
        let nearly = p.give_up_after - Duration::from_secs(60);
        assert_eq!(
            p.after_failure(30, nearly, 0.5),
            AfterFailure::RetryIn(Duration::from_secs(60))
        );
        assert_eq!(
            p.after_failure(31, p.give_up_after, 0.5),
            AfterFailure::GiveUp
        );
    }

    #[test]
    fn a_day_of_retries_is_many_attempts_not_one() {
        // Walk the schedule with the least jitter: the attempts made within the
        // window, and that it does end.
        let p = RetryPolicy::default();
        let mut age = Duration::ZERO;
        let mut attempts = 1;
        while let AfterFailure::RetryIn(d) = p.after_failure(attempts, age, 0.0) {
            age += d;
            attempts += 1;
            assert!(attempts < 1000);
        }
        assert!(age >= p.give_up_after);
        assert!(attempts > 40, "{attempts} attempts in a day");
    }
}

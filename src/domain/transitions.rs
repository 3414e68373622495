//! The status transitions as pure decisions: given an upload as read (and the
//! time), what a complete, an abort, or a provider that no longer has the
//! upload should lead to. The broker carries them out with fenced writes; these
//! rules are tested here without services.

use super::upload::{Upload, UploadStatus};
use chrono::{DateTime, Utc};

/// Why a transition is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The upload is not in a status the call can act on (409); the status the
    /// client is told.
    NotActive(UploadStatus),
    /// The upload has expired (410).
    Expired,
}

/// What `complete` does with an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnComplete {
    /// Completed already: answer it as it is (complete is idempotent).
    Done,
    /// Another completer holds a live claim: wait for its outcome.
    Wait,
    /// Claim it (active, or a completer's claim whose lease ran out) and complete.
    Claim,
    Refuse(Refused),
}

/// What `DELETE` does with an upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAbort {
    /// Aborted already: repeat the provider's abort (harmless) and answer 204.
    Repeat,
    /// Claim it (`aborting`) and abort at the provider.
    Claim,
    Refuse(Refused),
}

/// What to do when storage says it has no such multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnGone {
    /// The record has its outcome already (completed, aborted): answer from it.
    Answer,
    /// A completer holds a live claim: its record is about to land; look again.
    Wait,
    /// Nobody holds it: settle it (the object found → completed; else expired).
    Settle,
    Refuse(Refused),
}

fn held(u: &Upload, now: DateTime<Utc>) -> bool {
    u.lease_until.is_some_and(|l| l > now)
}

impl Upload {
    pub fn on_complete(&self, now: DateTime<Utc>) -> OnComplete {
        match self.status {
            UploadStatus::Completed => OnComplete::Done,
            UploadStatus::Aborted | UploadStatus::Aborting => {
                OnComplete::Refuse(Refused::NotActive(UploadStatus::Aborted))
            }
            UploadStatus::Expired | UploadStatus::Expiring => OnComplete::Refuse(Refused::Expired),
            UploadStatus::Completing if held(self, now) => OnComplete::Wait,
            UploadStatus::Active | UploadStatus::Completing => OnComplete::Claim,
        }
    }

    pub fn on_abort(&self) -> OnAbort {
        match self.status {
            UploadStatus::Completed | UploadStatus::Completing => {
                OnAbort::Refuse(Refused::NotActive(self.status))
            }
            UploadStatus::Expired | UploadStatus::Expiring => OnAbort::Refuse(Refused::Expired),
            UploadStatus::Aborted => OnAbort::Repeat,
            UploadStatus::Active | UploadStatus::Aborting => OnAbort::Claim,
        }
    }

    pub fn on_gone(&self, now: DateTime<Utc>) -> OnGone {
        match self.status {
            UploadStatus::Completed | UploadStatus::Aborted | UploadStatus::Aborting => {
                OnGone::Answer
            }
            UploadStatus::Completing if held(self, now) => OnGone::Wait,
            UploadStatus::Active | UploadStatus::Completing => OnGone::Settle,
            UploadStatus::Expired | UploadStatus::Expiring => OnGone::Refuse(Refused::Expired),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(status: UploadStatus, lease_in_secs: Option<i64>) -> Upload {
        let mut u = crate::domain::upload::sample(status);
        u.lease_until = lease_in_secs.map(|s| Utc::now() + chrono::Duration::seconds(s));
        u
    }

    #[test]
    fn complete_decisions() {
        use UploadStatus::*;
        let now = Utc::now();
        assert_eq!(upload(Completed, None).on_complete(now), OnComplete::Done);
        assert_eq!(upload(Active, None).on_complete(now), OnComplete::Claim);
        assert_eq!(
            upload(Completing, Some(60)).on_complete(now),
            OnComplete::Wait
        );
        assert_eq!(
            upload(Completing, Some(-1)).on_complete(now),
            OnComplete::Claim,
            "a dead completer's claim is taken over"
        );
        for s in [Aborted, Aborting] {
            assert_eq!(
                upload(s, Some(60)).on_complete(now),
                OnComplete::Refuse(Refused::NotActive(Aborted))
            );
        }
        for s in [Expired, Expiring] {
            assert_eq!(
                upload(s, Some(60)).on_complete(now),
                OnComplete::Refuse(Refused::Expired)
            );
        }
    }

    #[test]
    fn abort_decisions() {
        use UploadStatus::*;
        assert_eq!(upload(Active, None).on_abort(), OnAbort::Claim);
        assert_eq!(
            upload(Aborting, Some(60)).on_abort(),
            OnAbort::Claim,
            "a retry takes the abort over"
        );
        assert_eq!(upload(Aborted, None).on_abort(), OnAbort::Repeat);
        assert_eq!(
            upload(Completed, None).on_abort(),
            OnAbort::Refuse(Refused::NotActive(Completed))
        );
        assert_eq!(
            upload(Completing, Some(60)).on_abort(),
            OnAbort::Refuse(Refused::NotActive(Completing))
        );
        assert_eq!(
            upload(Expiring, Some(60)).on_abort(),
            OnAbort::Refuse(Refused::Expired)
        );
    }

    #[test]
    fn gone_decisions() {
        use UploadStatus::*;
        let now = Utc::now();
        for s in [Completed, Aborted, Aborting] {
            assert_eq!(upload(s, None).on_gone(now), OnGone::Answer);
        }
        assert_eq!(upload(Completing, Some(60)).on_gone(now), OnGone::Wait);
        assert_eq!(upload(Completing, Some(-1)).on_gone(now), OnGone::Settle);
        assert_eq!(
            upload(Active, None).on_gone(now),
            OnGone::Settle,
            "never expired without looking for the object"
        );
        assert_eq!(
            upload(Expired, None).on_gone(now),
            OnGone::Refuse(Refused::Expired)
        );
    }
}

//! What a sweep run did (or, in a dry run, would do): counts and the summary line.

use serde::Serialize;

/// What one run did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    pub dry_run: bool,
    /// Expired uploads aborted at the provider.
    pub aborted: u64,
    /// Expired uploads the provider no longer had.
    pub already_gone: u64,
    /// Uploads whose object turned out complete (a completer died after
    /// CompleteMultipartUpload): recorded as completed, not expired.
    pub recovered_completed: u64,
    /// Client aborts whose provider call had failed, finished.
    pub aborts_finished: u64,
    /// Completions whose completer's lease ran out with the provider upload
    /// still there: handed back `active`.
    pub completions_released: u64,
    /// Uploads that could not be handled (left for the next run).
    pub failed: u64,
    /// Finished records deleted by retention.
    pub deleted: u64,
    /// Events past retention that no webhook endpoint waited for, deleted.
    pub events_deleted: u64,
    /// Orphaned provider uploads found (with `--orphans`).
    pub orphans_found: u64,
    pub orphans_aborted: u64,
    pub orphans_failed: u64,
    /// Dry runs: what would be done, one line each (printed by the command,
    /// not part of the JSON summary).
    #[serde(skip)]
    pub planned: Vec<String>,
}

impl SweepReport {
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.orphans_failed == 0
    }

    pub(super) fn add(&mut self, o: &SweepReport) {
        self.aborted += o.aborted;
        self.already_gone += o.already_gone;
        self.recovered_completed += o.recovered_completed;
        self.aborts_finished += o.aborts_finished;
        self.completions_released += o.completions_released;
        self.failed += o.failed;
        self.deleted += o.deleted;
        self.events_deleted += o.events_deleted;
        self.orphans_found += o.orphans_found;
        self.orphans_aborted += o.orphans_aborted;
        self.orphans_failed += o.orphans_failed;
        self.planned.extend(o.planned.iter().cloned());
    }

    /// The one-line summary.
    pub fn summary(&self) -> String {
        let would = if self.dry_run {
            "dry run, nothing changed: "
        } else {
            ""
        };
        format!(
            "sweep: {would}{} expired uploads aborted, {} already gone at the provider, {} recovered as completed, {} lapsed completions handed back, {} interrupted aborts finished, {} failed; {} finished records and {} old events deleted; orphans: {} found, {} aborted, {} failed",
            self.aborted, self.already_gone, self.recovered_completed, self.completions_released, self.aborts_finished, self.failed, self.deleted,
            self.events_deleted, self.orphans_found, self.orphans_aborted, self.orphans_failed
        )
    }
}

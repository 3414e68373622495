//! Tests of the signing cache (`cache.rs`), without services.

use super::*;
use crate::db::notify::Heard;

fn upload(status: UploadStatus) -> Upload {
    crate::domain::upload::sample(status)
}

fn own_beat(c: &UploadCache) -> Heard {
    Heard::Beat {
        from: c.me,
        at_ms: c.clock.elapsed().as_millis() as u64,
    }
}

fn trusted_cache() -> UploadCache {
    let c = UploadCache::new(10);
    c.listening(true);
    c
}

#[test]
fn answers_nothing_until_it_listens() {
    let c = UploadCache::new(10);
    let u = upload(UploadStatus::Active);
    c.fill(c.epoch(), &u);
    assert!(c.get(u.id).is_none());
    c.listening(true);
    c.fill(c.epoch(), &u);
    assert_eq!(c.get(u.id).unwrap().id, u.id);
}

#[test]
fn a_change_heard_between_read_and_fill_wins() {
    let c = trusted_cache();
    let u = upload(UploadStatus::Active);
    let before = c.epoch();
    c.heard(Heard::Changed(u.id)); // the row changed after it was read
    c.fill(before, &u);
    assert!(c.get(u.id).is_none());
    // A change of another upload also refuses the fill: being conservative costs a read.
    let other = upload(UploadStatus::Active);
    let before = c.epoch();
    c.heard(Heard::Changed(Uuid::now_v7()));
    c.fill(before, &other);
    assert!(c.get(other.id).is_none());
    // A heartbeat does not.
    let before = c.epoch();
    c.heard(own_beat(&c));
    c.fill(before, &other);
    assert!(c.get(other.id).is_some());
}

#[test]
fn a_change_heard_drops_the_upload_by_id_and_by_provider_id() {
    let c = trusted_cache();
    let mut u = upload(UploadStatus::Active);
    u.origin = Origin::Companion;
    c.fill(c.epoch(), &u);
    assert!(c.get_by_provider(&u.provider_upload_id).is_some());
    c.heard(Heard::Changed(u.id));
    assert!(c.get(u.id).is_none());
    assert!(c.get_by_provider(&u.provider_upload_id).is_none());
}

#[test]
fn only_active_uploads_are_kept() {
    let c = trusted_cache();
    for status in UploadStatus::ALL
        .into_iter()
        .filter(|s| *s != UploadStatus::Active)
    {
        let u = upload(status);
        c.fill(c.epoch(), &u);
        assert!(c.get(u.id).is_none(), "{status:?} was kept");
    }
}

#[test]
fn a_lost_connection_empties_it_and_nothing_is_filled_until_it_listens_again() {
    let c = trusted_cache();
    let u = upload(UploadStatus::Active);
    let before = c.epoch();
    c.fill(before, &u);
    c.listening(false);
    assert!(c.is_empty());
    c.fill(before, &u);
    assert!(c.get(u.id).is_none());
    c.listening(true);
    c.fill(before, &u); // noted before the reconnection: refused
    assert!(c.is_empty());
}

#[test]
fn silence_longer_than_stale_after_bypasses_it() {
    let mut c = trusted_cache();
    c.clock = Instant::now() - Duration::from_secs(10);
    let u = upload(UploadStatus::Active);
    c.fill(c.epoch(), &u);
    c.state().caught_up = Some(Instant::now() - STALE_AFTER);
    assert!(c.get(u.id).is_none());
    assert!(c.epoch().0.is_none());
    // Another instance's heartbeat, or a change, says nothing of this
    // listener's backlog: only its own heartbeat brings it back.
    c.heard(Heard::Beat {
        from: Uuid::new_v4(),
        at_ms: c.clock.elapsed().as_millis() as u64,
    });
    c.heard(Heard::Changed(Uuid::now_v7()));
    assert!(c.get(u.id).is_none());
    // An own heartbeat sent before the silence began (a backlog) neither.
    c.heard(Heard::Beat {
        from: c.me,
        at_ms: 0,
    });
    assert!(c.get(u.id).is_none());
    c.heard(own_beat(&c));
    assert!(c.get(u.id).is_some());
}

#[test]
fn entries_older_than_the_age_limit_are_read_again() {
    let c = trusted_cache();
    let u = upload(UploadStatus::Active);
    c.fill(c.epoch(), &u);
    assert!(c.get(u.id).is_some());
    c.state().by_id.get_mut(&u.id).unwrap().1 = Instant::now() - MAX_ENTRY_AGE;
    assert!(c.get(u.id).is_none(), "served past its age limit");
    c.fill(c.epoch(), &u);
    assert!(c.get(u.id).is_some(), "read again, served again");
}

#[test]
fn triggers_found_off_stop_it_until_it_listens_again() {
    let c = trusted_cache();
    let u = upload(UploadStatus::Active);
    c.fill(c.epoch(), &u);
    c.triggers_lost();
    assert!(c.is_empty() && c.get(u.id).is_none());
    c.fill(c.epoch(), &u);
    assert!(c.is_empty(), "filled while deaf");
}

#[test]
fn a_truncate_empties_it() {
    let c = trusted_cache();
    let u = upload(UploadStatus::Active);
    let before = c.epoch();
    c.fill(before, &u);
    c.heard(Heard::All);
    assert!(c.is_empty());
    c.fill(before, &u);
    assert!(c.is_empty(), "a fill noted before the truncate was kept");
}

#[test]
fn an_upload_seen_finished_is_dropped() {
    let c = trusted_cache();
    let mut u = upload(UploadStatus::Active);
    c.fill(c.epoch(), &u);
    c.saw(&u);
    assert!(c.get(u.id).is_some());
    u.status = UploadStatus::Completed;
    c.saw(&u);
    assert!(c.get(u.id).is_none());
}

#[test]
fn it_never_holds_more_than_its_capacity() {
    let c = UploadCache::new(3);
    c.listening(true);
    for _ in 0..10 {
        c.fill(c.epoch(), &upload(UploadStatus::Active));
        assert!(c.len() <= 3);
    }
    let off = UploadCache::new(0);
    off.listening(true);
    off.fill(off.epoch(), &upload(UploadStatus::Active));
    assert!(off.is_empty());
}

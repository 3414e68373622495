//! Pure rules about parts: what a client claims of them against what storage
//! holds (conflicts), and the parts a Companion-style completion names (numbered
//! 1..N, each stored and matching, all but the last of one size of at least
//! 5 MiB, the last no larger), from which the plan is learned.

use super::part_plan::{PartPlan, MIN_PART_SIZE};
use super::upload::{bare_etag, StoredPart};
use std::collections::BTreeMap;

/// What a client says it has uploaded of a part (resume, complete).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartClaim {
    pub part_number: u32,
    pub etag: Option<String>,
    pub checksum: Option<String>,
    pub size: Option<u64>,
}

/// A stored part that disagrees with what the client says it uploaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictingPart {
    pub part_number: u32,
    /// `etag`, `checksum` or `size`.
    pub field: &'static str,
    pub expected: String,
    pub stored: String,
}

/// Why a set of parts cannot be completed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    /// Parts named that storage does not hold.
    #[error("{} part(s) are not uploaded yet", .0.len())]
    Missing(Vec<u32>),
    /// Stored parts that disagree with the claims, or break the size rules.
    #[error("{message}")]
    Mismatch { message: String, parts: Vec<u32> },
    /// A request that cannot name a valid completion at all.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Compares what a client says of its parts with what storage holds. Claims of
/// parts storage does not hold are not conflicts (they are missing).
pub fn conflicts(stored: &[StoredPart], claims: &[PartClaim]) -> Vec<ConflictingPart> {
    let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.part_number, p)).collect();
    let mut out = Vec::new();
    for c in claims {
        let Some(s) = by_number.get(&c.part_number) else {
            continue;
        };
        let conflict = |field, expected: &str, stored: &str| ConflictingPart {
            part_number: c.part_number,
            field,
            expected: expected.to_string(),
            stored: stored.to_string(),
        };
        if let Some(e) = &c.etag {
            if bare_etag(e) != bare_etag(&s.etag) {
                out.push(conflict("etag", bare_etag(e), bare_etag(&s.etag)));
                continue;
            }
        }
        if let (Some(e), Some(have)) = (&c.checksum, &s.checksum) {
            if e.trim() != have {
                out.push(conflict("checksum", e.trim(), have));
                continue;
            }
        }
        if let Some(size) = c.size {
            if size != s.size {
                out.push(conflict("size", &size.to_string(), &s.size.to_string()));
            }
        }
    }
    out
}

/// `Mismatch` if a stored part disagrees with what the client gave.
pub fn require_matching(stored: &[StoredPart], claims: &[PartClaim]) -> Result<(), PartsError> {
    let mismatched = conflicts(stored, claims);
    let Some(first) = mismatched.first() else {
        return Ok(());
    };
    let parts: Vec<u32> = mismatched.iter().map(|c| c.part_number).collect();
    Err(PartsError::Mismatch {
        message: format!(
            "part(s) {parts:?} in storage do not match the given {}",
            first.field
        ),
        parts,
    })
}

/// The stored parts a Companion-style completion names, in order, and the plan
/// they make: every named part stored and matching its claim, numbered 1 to N
/// without gaps, all but the last of one size of at least 5 MiB (what S3 and R2
/// accept), the last no larger.
pub fn given_parts(
    stored: &[StoredPart],
    given: &[PartClaim],
) -> Result<(Vec<StoredPart>, PartPlan), PartsError> {
    let by_number: BTreeMap<u32, &StoredPart> = stored.iter().map(|p| (p.part_number, p)).collect();
    let mut given: Vec<PartClaim> = given.to_vec();
    given.sort_by_key(|p| p.part_number);
    if given.is_empty() {
        return Err(PartsError::Invalid("parts: at least one part is needed"));
    }
    let missing: Vec<u32> = given
        .iter()
        .filter(|g| !by_number.contains_key(&g.part_number))
        .map(|g| g.part_number)
        .collect();
    if !missing.is_empty() {
        return Err(PartsError::Missing(missing));
    }
    require_matching(stored, &given)?;
    if given
        .iter()
        .enumerate()
        .any(|(i, g)| g.part_number != i as u32 + 1)
    {
        return Err(PartsError::Invalid(
            "parts: part numbers must run from 1 without gaps",
        ));
    }
    let parts: Vec<StoredPart> = given
        .iter()
        .map(|g| by_number[&g.part_number].clone())
        .collect();
    let plan = PartPlan::learn(&parts)?;
    Ok((parts, plan))
}

impl PartPlan {
    /// The plan a sequence of stored parts (numbered 1..N, in order) makes: all
    /// but the last of one size of at least 5 MiB, the last no larger.
    pub fn learn(parts: &[StoredPart]) -> Result<PartPlan, PartsError> {
        let Some((last, rest)) = parts.split_last() else {
            return Err(PartsError::Invalid(
                "parts: an empty upload cannot be completed",
            ));
        };
        let part_size = parts[0].size;
        if let Some(bad) = rest
            .iter()
            .find(|p| p.size != part_size || p.size < MIN_PART_SIZE)
        {
            return Err(PartsError::Mismatch {
                message: format!(
                    "part {} is {} bytes: all parts but the last must have the same size, at least 5 MiB",
                    bad.part_number, bad.size
                ),
                parts: vec![bad.part_number],
            });
        }
        if last.size > part_size {
            return Err(PartsError::Mismatch {
                message: format!(
                    "the last part ({} bytes) is larger than the others",
                    last.size
                ),
                parts: vec![last.part_number],
            });
        }
        let total: u64 = parts.iter().map(|p| p.size).sum();
        PartPlan::from_stored(total, part_size, parts.len() as u32).ok_or(PartsError::Invalid(
            "parts: an empty upload cannot be completed",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn stored(n: u32, etag: &str, size: u64, checksum: Option<&str>) -> StoredPart {
        StoredPart {
            part_number: n,
            etag: format!("\"{etag}\""),
            size,
            checksum: checksum.map(str::to_string),
        }
    }

    #[test]
    fn conflicts_compare_etag_checksum_and_size() {
        let s = vec![
            stored(1, "a", 10, Some("c1")),
            stored(2, "b", 10, Some("c2")),
            stored(3, "c", 10, None),
        ];
        let claims = vec![
            PartClaim {
                part_number: 1,
                etag: Some("a".into()),
                checksum: Some("c1".into()),
                size: Some(10),
            },
            PartClaim {
                part_number: 2,
                checksum: Some("other".into()),
                ..Default::default()
            },
            PartClaim {
                part_number: 3,
                size: Some(11),
                ..Default::default()
            },
            PartClaim {
                part_number: 4,
                etag: Some("zzz".into()),
                ..Default::default()
            },
        ];
        let c = conflicts(&s, &claims);
        assert_eq!(
            c.iter()
                .map(|c| (c.part_number, c.field))
                .collect::<Vec<_>>(),
            vec![(2, "checksum"), (3, "size")]
        );
        let c = conflicts(
            &s,
            &[PartClaim {
                part_number: 1,
                etag: Some("\"x\"".into()),
                ..Default::default()
            }],
        );
        assert_eq!(c[0].field, "etag");
        assert_eq!((c[0].expected.as_str(), c[0].stored.as_str()), ("x", "a"));
        assert!(require_matching(&s, &claims[..1]).is_ok());
        assert!(
            matches!(require_matching(&s, &claims), Err(PartsError::Mismatch { parts, .. }) if parts == vec![2, 3])
        );
    }

    const M: u64 = MIN_PART_SIZE;

    #[test]
    fn given_parts_are_checked_and_make_a_plan() {
        let s = vec![
            stored(1, "a", M, None),
            stored(2, "b", M, None),
            stored(3, "c", 7, None),
        ];
        let claim = |n: u32, e: &str| PartClaim {
            part_number: n,
            etag: Some(e.into()),
            ..Default::default()
        };
        let (parts, plan) =
            given_parts(&s, &[claim(3, "c"), claim(1, "a"), claim(2, "b")]).unwrap();
        assert_eq!(
            parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(
            (plan.size(), plan.part_size(), plan.part_count()),
            (2 * M + 7, M, 3)
        );
        assert_eq!(
            given_parts(&s, &[claim(1, "a"), claim(4, "d")]),
            Err(PartsError::Missing(vec![4]))
        );
        assert!(matches!(
            given_parts(&s, &[claim(1, "x")]),
            Err(PartsError::Mismatch { .. })
        ));
        assert!(matches!(
            given_parts(&s, &[claim(1, "a"), claim(3, "c")]),
            Err(PartsError::Invalid(_))
        ));
        assert!(matches!(given_parts(&s, &[]), Err(PartsError::Invalid(_))));
        // A small part before the last, or a last part larger than the others.
        let small = vec![stored(1, "a", M - 1, None), stored(2, "b", 1, None)];
        assert!(
            matches!(given_parts(&small, &[claim(1, "a"), claim(2, "b")]), Err(PartsError::Mismatch { parts, .. }) if parts == vec![1])
        );
        let big_last = vec![stored(1, "a", M, None), stored(2, "b", M + 1, None)];
        assert!(
            matches!(given_parts(&big_last, &[claim(1, "a"), claim(2, "b")]), Err(PartsError::Mismatch { parts, .. }) if parts == vec![2])
        );
    }

    proptest! {
        /// Parts cut from any plan teach back that plan (its part size only
        /// when there are two parts or more: one part shows only its length).
        #[test]
        fn learning_the_parts_of_a_plan_gives_the_plan(size in 1u64..(64 * M), part in M..(4 * M)) {
            let plan = PartPlan::new(size, Some(part), Default::default()).unwrap();
            let parts: Vec<StoredPart> = plan
                .parts()
                .map(|n| stored(n.get(), "e", plan.part_len(n), None))
                .collect();
            let learned = PartPlan::learn(&parts).unwrap();
            prop_assert_eq!((learned.size(), learned.part_count()), (plan.size(), plan.part_count()));
            if plan.part_count() > 1 {
                prop_assert_eq!(learned, plan);
            }
        }

        /// Whatever the sizes, a learned plan obeys the rules: all but the
        /// last equal and at least 5 MiB, the last no larger, sizes adding up.
        #[test]
        fn a_learned_plan_obeys_the_rules(sizes in proptest::collection::vec(1u64..(3 * M), 1..8)) {
            let parts: Vec<StoredPart> = sizes
                .iter()
                .enumerate()
                .map(|(i, s)| stored(i as u32 + 1, "e", *s, None))
                .collect();
            if let Ok(plan) = PartPlan::learn(&parts) {
                let (last, rest) = sizes.split_last().unwrap();
                prop_assert!(rest.iter().all(|s| *s == sizes[0] && *s >= M));
                prop_assert!(*last <= sizes[0]);
                prop_assert_eq!(plan.size(), sizes.iter().sum::<u64>());
                prop_assert_eq!(plan.part_count(), sizes.len() as u32);
            }
        }
    }
}

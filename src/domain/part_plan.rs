//! The part plan: how an object of a given size is cut into multipart parts.
//!
//! Pure logic, no I/O. The plan obeys the limits that S3 and Cloudflare R2 share:
//! every part but the last is at least 5 MiB and at most 5 GiB, there are at most
//! 10,000 parts, and all parts but the last have the same size (R2 requires it).

use std::fmt;

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Smallest size of a part that is not the last one (S3 and R2).
pub const MIN_PART_SIZE: u64 = 5 * MIB;
/// Largest size of any part (S3 and R2).
pub const MAX_PART_SIZE: u64 = 5 * GIB;
/// Most parts a multipart upload may have (S3 and R2).
pub const MAX_PARTS: u32 = 10_000;
/// Largest object a multipart upload can produce on S3.
pub const MAX_OBJECT_SIZE: u64 = 5 * TIB;
/// Largest object on Cloudflare R2: 5 GiB less than 5 TiB ("4.995 TiB").
pub const R2_MAX_OBJECT_SIZE: u64 = 5 * TIB - 5 * GIB;
/// Largest part (or single upload) on R2: 5 MiB less than 5 GiB ("4.995 GiB").
pub const R2_MAX_PART_SIZE: u64 = 5 * GIB - 5 * MIB;

/// A part number, 1 to 10,000. Can only be built by checking the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartNumber(u32);

impl PartNumber {
    pub fn new(n: u32) -> Option<Self> {
        (1..=MAX_PARTS).contains(&n).then_some(Self(n))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for PartNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why no plan could be made for a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("size must be at least 1 byte (empty files are not accepted as multipart uploads)")]
    Empty,
    #[error("size {size} is over the maximum of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("partSize {part_size} is out of range: parts must be {MIN_PART_SIZE} to {max} bytes")]
    PartSizeOutOfRange { part_size: u64, max: u64 },
    #[error("partSize {part_size} would need {parts} parts; the limit is {MAX_PARTS} (use at least {min_part_size} bytes)")]
    TooManyParts {
        part_size: u64,
        parts: u64,
        min_part_size: u64,
    },
}

/// Limits the planner works within (from configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Part size used when the client gives none (raised to fit in 10,000 parts).
    pub default_part_size: u64,
    /// Largest object accepted.
    pub max_upload_size: u64,
    /// Largest part the provider takes (`MAX_PART_SIZE` on S3, less on R2).
    pub max_part_size: u64,
}

impl PlanLimits {
    /// These limits within what Cloudflare R2 takes (a smaller largest object
    /// and largest part than S3).
    pub fn within_r2(self) -> Self {
        Self {
            default_part_size: self.default_part_size.min(R2_MAX_PART_SIZE),
            max_upload_size: self.max_upload_size.min(R2_MAX_OBJECT_SIZE),
            max_part_size: self.max_part_size.min(R2_MAX_PART_SIZE),
        }
    }
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            default_part_size: 16 * MIB,
            max_upload_size: MAX_OBJECT_SIZE,
            max_part_size: MAX_PART_SIZE,
        }
    }
}

/// How an object of `size` bytes is cut: `part_count` parts, all of `part_size`
/// bytes but the last, which holds the rest (1 to `part_size` bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    size: u64,
    part_size: u64,
    part_count: u32,
}

impl PartPlan {
    /// Plans an upload of `size` bytes, honouring the client's `requested_part_size`
    /// when it is valid and refusing it when it is not.
    pub fn new(
        size: u64,
        requested_part_size: Option<u64>,
        limits: PlanLimits,
    ) -> Result<Self, PlanError> {
        if size == 0 {
            return Err(PlanError::Empty);
        }
        let max = limits.max_upload_size.min(MAX_OBJECT_SIZE);
        if size > max {
            return Err(PlanError::TooLarge { size, max });
        }
        let part_size = match requested_part_size {
            Some(p) => {
                let max_part = limits.max_part_size.min(MAX_PART_SIZE);
                if !(MIN_PART_SIZE..=max_part).contains(&p) {
                    return Err(PlanError::PartSizeOutOfRange {
                        part_size: p,
                        max: max_part,
                    });
                }
                let parts = size.div_ceil(p);
                if parts > u64::from(MAX_PARTS) {
                    return Err(PlanError::TooManyParts {
                        part_size: p,
                        parts,
                        min_part_size: min_part_size_for(size),
                    });
                }
                p
            }
            None => limits
                .default_part_size
                .clamp(MIN_PART_SIZE, limits.max_part_size.min(MAX_PART_SIZE))
                .max(min_part_size_for(size)),
        };
        let part_count = u32::try_from(size.div_ceil(part_size)).expect("at most 10,000 parts");
        Ok(Self {
            size,
            part_size,
            part_count,
        })
    }

    /// Rebuilds a plan from stored values; `None` if they are inconsistent.
    pub fn from_stored(size: u64, part_size: u64, part_count: u32) -> Option<Self> {
        let ok = size > 0
            && part_size > 0
            && (1..=MAX_PARTS).contains(&part_count)
            && size.div_ceil(part_size) == u64::from(part_count);
        ok.then_some(Self {
            size,
            part_size,
            part_count,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }
    pub fn part_size(&self) -> u64 {
        self.part_size
    }
    pub fn part_count(&self) -> u32 {
        self.part_count
    }

    /// The part number `n` if it belongs to this plan.
    pub fn part(&self, n: u32) -> Option<PartNumber> {
        (1..=self.part_count).contains(&n).then_some(PartNumber(n))
    }

    /// Every part number of the plan, in order.
    pub fn parts(&self) -> impl Iterator<Item = PartNumber> {
        (1..=self.part_count).map(PartNumber)
    }

    /// Exact size in bytes of part `n` (the last part may be smaller).
    pub fn part_len(&self, n: PartNumber) -> u64 {
        debug_assert!(n.0 <= self.part_count);
        if n.0 < self.part_count {
            self.part_size
        } else {
            self.size - self.part_size * u64::from(self.part_count - 1)
        }
    }
}

/// Smallest part size (a whole number of MiB, at least 5 MiB) that fits `size`
/// into 10,000 parts.
pub fn min_part_size_for(size: u64) -> u64 {
    let raw = size.div_ceil(u64::from(MAX_PARTS));
    raw.div_ceil(MIB).saturating_mul(MIB).max(MIN_PART_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits() -> PlanLimits {
        PlanLimits::default()
    }

    #[test]
    fn small_file_is_one_part() {
        let plan = PartPlan::new(1000, None, limits()).unwrap();
        assert_eq!(plan.part_count(), 1);
        assert_eq!(plan.part_len(plan.part(1).unwrap()), 1000);
    }

    #[test]
    fn three_parts_and_a_tail() {
        let plan = PartPlan::new(15 * MIB + 123, Some(5 * MIB), limits()).unwrap();
        assert_eq!(plan.part_count(), 4);
        let lens: Vec<u64> = plan.parts().map(|n| plan.part_len(n)).collect();
        assert_eq!(lens, vec![5 * MIB, 5 * MIB, 5 * MIB, 123]);
    }

    #[test]
    fn r2_limits_are_smaller_than_s3s() {
        let r2 = limits().within_r2();
        assert_eq!(R2_MAX_OBJECT_SIZE, 5_492_189_429_760);
        assert_eq!(R2_MAX_PART_SIZE, 5_363_466_240);
        // The largest R2 object plans; one byte more does not (S3 takes it).
        let plan = PartPlan::new(R2_MAX_OBJECT_SIZE, None, r2).unwrap();
        assert!(plan.part_count() <= MAX_PARTS && plan.part_size() <= R2_MAX_PART_SIZE);
        assert!(matches!(
            PartPlan::new(R2_MAX_OBJECT_SIZE + 1, None, r2),
            Err(PlanError::TooLarge {
                max: R2_MAX_OBJECT_SIZE,
                ..
            })
        ));
        assert!(PartPlan::new(R2_MAX_OBJECT_SIZE + 1, None, limits()).is_ok());
        // A 5 GiB part is S3's largest, over R2's.
        assert_eq!(
            PartPlan::new(20 * GIB, Some(5 * GIB), r2),
            Err(PlanError::PartSizeOutOfRange {
                part_size: 5 * GIB,
                max: R2_MAX_PART_SIZE
            })
        );
        assert!(PartPlan::new(20 * GIB, Some(5 * GIB), limits()).is_ok());
        assert!(PartPlan::new(20 * GIB, Some(R2_MAX_PART_SIZE), r2).is_ok());
        // A default part size over R2's largest is brought down to it.
        let big_default = PlanLimits {
            default_part_size: 5 * GIB,
            ..limits()
        }
        .within_r2();
        let plan = PartPlan::new(12 * GIB, None, big_default).unwrap();
        assert_eq!(plan.part_size(), R2_MAX_PART_SIZE);
    }

    #[test]
    fn empty_is_refused() {
        assert_eq!(PartPlan::new(0, None, limits()), Err(PlanError::Empty));
    }

    #[test]
    fn over_max_is_too_large() {
        let l = PlanLimits {
            max_upload_size: 100 * MIB,
            ..limits()
        };
        assert!(matches!(
            PartPlan::new(100 * MIB + 1, None, l),
            Err(PlanError::TooLarge { .. })
        ));
        assert!(PartPlan::new(100 * MIB, None, l).is_ok());
        assert!(matches!(
            PartPlan::new(MAX_OBJECT_SIZE + 1, None, limits()),
            Err(PlanError::TooLarge { .. })
        ));
    }

    #[test]
    fn five_tib_fits_with_default() {
        let plan = PartPlan::new(MAX_OBJECT_SIZE, None, limits()).unwrap();
        assert!(plan.part_count() <= MAX_PARTS);
        assert!(plan.part_size() <= MAX_PART_SIZE);
    }

    #[test]
    fn bad_part_sizes_are_refused() {
        assert!(matches!(
            PartPlan::new(100 * MIB, Some(5 * MIB - 1), limits()),
            Err(PlanError::PartSizeOutOfRange { .. })
        ));
        assert!(matches!(
            PartPlan::new(100 * MIB, Some(5 * GIB + 1), limits()),
            Err(PlanError::PartSizeOutOfRange { .. })
        ));
        assert!(matches!(
            PartPlan::new(100 * GIB, Some(5 * MIB), limits()),
            Err(PlanError::TooManyParts { .. })
        ));
    }

    #[test]
    fn part_numbers_are_range_checked() {
        assert!(PartNumber::new(0).is_none());
        assert!(PartNumber::new(1).is_some());
        assert!(PartNumber::new(10_000).is_some());
        assert!(PartNumber::new(10_001).is_none());
        let plan = PartPlan::new(12 * MIB, Some(5 * MIB), limits()).unwrap();
        assert!(plan.part(3).is_some());
        assert!(plan.part(4).is_none());
        assert!(plan.part(0).is_none());
    }

    fn check_invariants(plan: &PartPlan) {
        assert!(plan.part_count() >= 1 && plan.part_count() <= MAX_PARTS);
        assert!(plan.part_size() >= MIN_PART_SIZE && plan.part_size() <= MAX_PART_SIZE);
        let mut total = 0u64;
        for n in plan.parts() {
            let len = plan.part_len(n);
            assert!((1..=MAX_PART_SIZE).contains(&len));
            if n.get() < plan.part_count() {
                // All but the last are equal and big enough (R2 and S3).
                assert_eq!(len, plan.part_size());
                assert!(len >= MIN_PART_SIZE);
            } else {
                assert!(len <= plan.part_size());
            }
            total += len;
        }
        assert_eq!(total, plan.size());
        assert_eq!(
            PartPlan::from_stored(plan.size(), plan.part_size(), plan.part_count()),
            Some(*plan)
        );
    }

    proptest! {
        #[test]
        fn default_plans_obey_the_limits(size in 1u64..=MAX_OBJECT_SIZE,
                                          default_mib in 1u64..=8192) {
            let l = PlanLimits { default_part_size: default_mib * MIB, max_upload_size: MAX_OBJECT_SIZE, max_part_size: MAX_PART_SIZE };
            let plan = PartPlan::new(size, None, l).unwrap();
            check_invariants(&plan);
            // The default is honoured unless it has to be raised (or clamped).
            let want = (default_mib * MIB).clamp(MIN_PART_SIZE, MAX_PART_SIZE);
            prop_assert!(plan.part_size() >= want);
            if plan.part_size() > want {
                prop_assert_eq!(plan.part_size(), min_part_size_for(size));
            }
        }

        #[test]
        fn client_part_size_is_honoured_or_refused(size in 1u64..=MAX_OBJECT_SIZE,
                                                    part in 1u64..=6 * GIB) {
            match PartPlan::new(size, Some(part), limits()) {
                Ok(plan) => {
                    prop_assert_eq!(plan.part_size(), part);
                    check_invariants(&plan);
                }
                Err(PlanError::PartSizeOutOfRange { .. }) => {
                    prop_assert!(!(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part));
                }
                Err(PlanError::TooManyParts { min_part_size, .. }) => {
                    prop_assert!(size.div_ceil(part) > u64::from(MAX_PARTS));
                    // The suggested size really works.
                    let plan = PartPlan::new(size, Some(min_part_size), limits()).unwrap();
                    check_invariants(&plan);
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
        }

        #[test]
        fn sizes_over_the_maximum_are_too_large(max in 1u64..=MAX_OBJECT_SIZE, extra in 1u64..=GIB) {
            let l = PlanLimits { max_upload_size: max, ..limits() };
            let is_too_large = matches!(PartPlan::new(max + extra, None, l), Err(PlanError::TooLarge { .. }));
            prop_assert!(is_too_large);
        }
    }
}

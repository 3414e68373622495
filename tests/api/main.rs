//! The end-to-end suite as one test binary: the real application against a
//! real Postgres and a real S3 emulator (LocalStack with signature validation
//! on), bytes PUT to presigned URLs and read back. One module per area; shared
//! helpers in `common`. Run one area with `scripts/test.sh --test api AREA::`.
//! (The metrics test is a binary of its own, `tests/metrics.rs`: the metrics
//! recorder is global to a process.)

mod common;

mod cli;
mod companion;
mod credentials;
mod errors;
mod events;
mod grants;
mod hardening;
mod integrity;
mod isolation;
mod lifecycle;
mod openapi;
mod operability;
mod part_url_ttl;
mod provider_faults;
mod r2;
mod signing_cache;
mod states;
mod sweep;

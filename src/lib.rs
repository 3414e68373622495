//! upload-broker: resumable, direct-to-storage multipart uploads to S3 and R2.
//!
//! Layers: `domain` (pure logic), `storage` (the S3 adapter), `db` (SQL),
//! `auth` (credentials: API keys and grants), `broker` (the upload operations),
//! `http` (the API), `startup` and `config`.

pub mod admin;
pub mod auth;
pub mod broker;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod secret_file;
pub mod startup;
pub mod storage;
pub mod sweep;
pub mod telemetry;

//! Pure domain logic: no I/O, no SDK types.

pub mod access;
pub mod checksum;
pub mod egress;
pub mod event;
pub mod object_key;
pub mod part_plan;
pub mod parts;
pub mod provider;
pub mod request;
pub mod token;
pub mod transitions;
pub mod upload;

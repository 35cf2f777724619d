//! Shadow traffic (SPEC 2.4): copies of a route's requests sent to the
//! service being verified, and their answers compared with the primary's.
//!
//! Built in steps: [`compare`] (what counts as a difference, named by JSON
//! pointer) is here; mirroring, the per-route report and calibration follow,
//! and until they land the config refuses `shadow` rather than ignoring it.

pub mod compare;

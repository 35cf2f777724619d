//! Shadow traffic (SPEC 2.4): copies of a route's requests sent to the
//! service being verified, and their answers compared with the primary's.
//!
//! Built in steps: [`compare`] (what counts as a difference, named by JSON
//! pointer) and [`report`] (per route: outcome counts, differing pointers
//! told apart from noise by calibration, samples) are here; mirroring
//! follows, and until it lands the config refuses `shadow` rather than
//! ignoring it.

pub mod compare;
pub mod report;

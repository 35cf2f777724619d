//! Shadow traffic (SPEC 2.4): copies of a route's requests sent to the
//! service being verified, and their answers compared with the primary's.
//!
//! - [`mirror`] sends the copies (and calibration copies) beside the
//!   client's request, without ever delaying or changing its answer;
//! - [`lane`] is the low-priority thread the copies run on;
//! - [`compare`] says what differs between two answers, by JSON pointer;
//! - [`report`] keeps, per route, the outcome counts, the differing pointers
//!   told apart from noise by calibration, and samples.

pub mod compare;
pub mod lane;
pub mod mirror;
pub mod report;

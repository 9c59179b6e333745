//! Presentation: everything a person reads, from in-memory results. Terminal tables and lines
//! ([`terminal`]), the search report `summary.md` ([`markdown`]), the frontier plot ([`plot`]),
//! both written after every iteration of a search ([`search_files`]),
//! number formats (from [`crate::util::format`]). Nothing here measures or decides; the CSV and JSON files are the
//! serde form of the result types and are written where those types live.

pub mod markdown;
pub mod plot;
pub mod search_files;
pub mod terminal;

pub use crate::util::format::{mib, mib_number, thousands};

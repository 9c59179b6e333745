//! Hostile-but-realistic use of the `lts` binary: two processes on one run, kill and Ctrl-C at
//! awkward moments, typos, absurd sizes, closed pipes. Every child runs under an address-space
//! limit ([`common::ADDRESS_SPACE`]), so a regression that tries to allocate the machine fails the test
//! with an allocation error instead of taking the machine down.
//!
//! One file per theme, each a module here so they share one binary and one helper:
//! - [`runs`]: the results folder (lock, resume, interruption, run ids).
//! - [`sizes`]: sizes from input bounded before anything is allocated.
//! - [`inputs`]: other bad input (files, flags, pipes).

#[path = "hostile/common.rs"]
mod common;
#[path = "hostile/inputs.rs"]
mod inputs;
#[path = "hostile/runs.rs"]
mod runs;
#[path = "hostile/sizes.rs"]
mod sizes;

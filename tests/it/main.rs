//! Integration tests of the `talforge` binary (one test binary, as STYLE.md asks).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a test failure

mod bad_inputs;
mod build;
mod cli;
mod help;
mod lab;
mod qualify;
mod support;

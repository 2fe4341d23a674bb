//! Integration tests of the builder library (one test binary, as STYLE.md asks).

mod conformance;
mod fidelity;
mod support;

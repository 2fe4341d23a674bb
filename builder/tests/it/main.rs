//! Integration tests of the builder library (one test binary, as STYLE.md asks).

mod fidelity;
mod support;

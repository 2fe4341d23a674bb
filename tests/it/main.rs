//! Integration tests of the `talforge` binary (one test binary, as STYLE.md asks).

mod bad_inputs;
mod support;

//! Qualification: what a booted machine reports, compared with its hardware profile.

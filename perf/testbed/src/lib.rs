//! The namespace test bed.

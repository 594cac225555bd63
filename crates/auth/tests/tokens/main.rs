//! Token verification tests, in one binary so that the RSA keys are generated only once.

#[path = "../common/mod.rs"]
mod common;

mod forged;
mod genuine;
mod malformed;

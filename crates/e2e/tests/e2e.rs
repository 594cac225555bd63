//! The end-to-end tests, as one test binary: one link instead of one per file (the build, not the run, is
//! what takes CI's time). nextest still runs every test in its own process.

mod common;

mod apps;
mod cluster;
mod files;
mod ingress;
mod jobs;
mod lifecycle;
mod security;
mod spine;
mod transfers;
mod users;

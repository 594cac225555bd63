//! End-to-end tests against real Slurm, real users and real sudo.

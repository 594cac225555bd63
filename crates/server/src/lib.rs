//! The ucim server process: provider API handlers, user map, instance launcher, Slurm monitor, outbox.

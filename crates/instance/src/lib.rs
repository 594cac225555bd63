//! The per-user ucim instance: runs as the user, verifies every token, submits and cancels jobs.

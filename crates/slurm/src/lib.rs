//! Slurm: batch scripts and command-line templates, sbatch/squeue/sacct/scancel with timeouts, output parsing, the batched watcher and
//! its pacing; scontrol operations on one job (time limit, suspend/resume, `show job`); partition load for
//! a queue status; Slurm's reason codes and end states in words for users.
//!
//! Speaks only Slurm: it knows nothing of HTTP or UCloud. The server maps [`watch::Phase`] to UCloud states.
//! Every command runs as an argv vector with a timeout (no shell); a refusal keeps Slurm's own words
//! ([`SlurmError::slurm_message`]).

mod client;
mod control;
mod error;
#[cfg(test)]
mod fake;
mod job_info;
mod listing;
mod pace;
mod parse;
mod queue;
mod script;
mod state;
mod template;
pub mod watch;
mod words;

/// A Slurm job id as printed by `sbatch --parsable` (never an array task or het component: ucim submits neither).
pub type SlurmJobId = u64;

pub use client::{parse_sbatch, SlurmClient};
pub use control::MAX_TIME_LIMIT_MINUTES;
pub use error::SlurmError;
pub use listing::{parse_listing, ListedJob, LISTING_FORMAT};
pub use job_info::{parse_memory_mb, parse_show_job, parse_time_limit, JobInfo};
pub use pace::{CycleOutcome, Pacer};
pub use parse::{
    parse_elapsed, parse_sacct, parse_squeue, AcctRow, QueueRow, SACCT_FIELDS, SQUEUE_FORMAT,
};
pub use queue::{
    parse_partition_max_time, parse_pending, parse_sinfo, queue_status, PartitionLoad, QueueStatus,
    PENDING_FORMAT, SINFO_FORMAT,
};
pub use script::{render_script, shell_quote, valid_env_name, ScriptError, ScriptSpec};
pub use state::{ExitStatus, SlurmState};
pub use template::{check_template, render_template, TemplateError, TemplateValue};
pub use words::{end_message, format_minutes, pending_reason_text};

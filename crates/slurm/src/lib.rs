//! Slurm: batch scripts, sbatch/squeue/sacct/scancel with timeouts, output parsing, the batched watcher.

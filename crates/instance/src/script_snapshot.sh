#!/bin/bash
#SBATCH --exclusive
#SBATCH --mail-type=END
export UCLOUD_JOB_ID='4821'
export UCLOUD_PARAM_n='12'
export UCLOUD_PARAM_note='it'\''s $(id) `x`
#SBATCH --mem=1T'
export UCLOUD_PARAM_script='/home/alice/work/run.py'
export UCLOUD_PARAM_verbose='true'
export OMP_PROC_BIND='close'
module load 'python/3.11' || { echo "ucim: module 'python/3.11' could not be loaded" >&2; exit 1; }
echo start
python3 '/home/alice/work/run.py' --text 'it'\''s $(id) `x`
#SBATCH --mem=1T' --n 12 --verbose

#!/bin/bash

# Parameters
#SBATCH --account=abc@cpu
#SBATCH --array=0-1%2
#SBATCH --cpus-per-task=40
#SBATCH --hint=nomultithread
#SBATCH --job-name=dft-vasp
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/lustre/work/abc/runs/r1/dft/vasp/slurm/%A_%a_0_log.out
#SBATCH --partition=cpu_p1
#SBATCH --qos=qos_cpu-t3
#SBATCH --time=250

# setup
# gencsp: the task of this array index
case "${SLURM_ARRAY_TASK_ID:-}" in
0) task_log=/lustre/work/abc/runs/r1/dft/vasp/tasks/00000/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log; task_cmd='cd /lustre/work/abc/runs/r1/dft/vasp/tasks/00000 && cstdn run custodian.yaml' ;;
1) task_log=/lustre/work/abc/runs/r1/dft/vasp/tasks/00001/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log; task_cmd='cd /lustre/work/abc/runs/r1/dft/vasp/tasks/00001 && cstdn run custodian.yaml' ;;
*) echo "gencsp: no task ${SLURM_ARRAY_TASK_ID:-} in this array" >&2; exit 2 ;;
esac
exec >>"$task_log" 2>&1
echo "gencsp: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job $SLURM_JOB_ID) on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# gencsp: environment of profile jean-zay-cpu
module purge
module load singularity
export GENCSP_SIF_DIR="$SINGULARITY_ALLOWED_DIR"
module load vasp/6.4.3
. $WORK/venvs/gencsp/bin/activate

# command
echo "gencsp: $task_cmd"
eval "$task_cmd"

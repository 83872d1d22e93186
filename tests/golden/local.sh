#!/bin/sh

# Parameters
#SBATCH --array=0-2%3
#SBATCH --cpus-per-task=1
#SBATCH --job-name=gencsp-cdvae
#SBATCH --mem=16GB
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=/lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789/slurm/%A_%a_0_log.out
#SBATCH --time=64

# setup
# gencsp: the task of this array index
case "${SLURM_ARRAY_TASK_ID:-}" in
0) task_log=/lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789/shards/0000/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log; task_cmd='/lustre/fswork/projects/rech/abc/uxy12zz/gencsp/.venv/bin/gencsp run-shard /lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789 0 --runtime apptainer --timeout 3720' ;;
1) task_log=/lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789/shards/0003/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log; task_cmd='/lustre/fswork/projects/rech/abc/uxy12zz/gencsp/.venv/bin/gencsp run-shard /lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789 3 --runtime apptainer --timeout 3720' ;;
2) task_log=/lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789/shards/0007/slurm-${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}.log; task_cmd='/lustre/fswork/projects/rech/abc/uxy12zz/gencsp/.venv/bin/gencsp run-shard /lustre/fswork/projects/rech/abc/uxy12zz/runs/cdvae-mp_20-test-csp-s0-0123456789 7 --runtime apptainer --timeout 3720' ;;
*) echo "gencsp: no task ${SLURM_ARRAY_TASK_ID:-} in this array" >&2; exit 2 ;;
esac
exec >>"$task_log" 2>&1
echo "gencsp: task ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} (job $SLURM_JOB_ID) on $(hostname) at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
# gencsp: environment of profile local
# gencsp: checks before the task
gencsp_sif="${GENCSP_SIF_DIR:-/home/u/.cache/gencsp/images}"/cdvae.sif
echo "abababababababababababababababababababababababababababababababab  $gencsp_sif" | sha256sum -c - || { echo "gencsp: $gencsp_sif is not the image this run recorded (sha256 abababababababababababababababababababababababababababababababab)"; exit 4; }

# command
echo "gencsp: $task_cmd"
eval "$task_cmd"

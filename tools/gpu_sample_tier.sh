#!/usr/bin/env bash
# The `sample` tier on one GPU, in one call (the device tool: `run` with this command and `carry`).
#
#   bash tools/gpu_sample_tier.sh [PREPARED_DATASET] [WEIGHTS]
#
# Assumes a bare GPU machine: system Python 3.12 with torch (no .venv, no internet, no fastcore, PyAV or dlib). It needs:
#   - a prepared dataset (default: shared/prepared/clips-sample, or $REENACTBOOK_DATA): made here with
#       reenactbook prep $REENACTBOOK_SAMPLES/clips shared/prepared/clips-sample --profile sample \
#           --overrides prep.frame_stride=2 prep.jpeg_quality=72      (13 clips at 256 px: ~20 MB)
#     so neither prep nor PyAV/dlib runs on the GPU machine;
#   - the weights folder (default: shared/weights, or $REENACTBOOK_WEIGHTS): MobileFaceNet-ArcFace, PFLD, SCRFD ONNX files;
#   - pure-Python and binary wheels for what the system Python lacks, in the git-ignored .whl/ (carried), made here with
#       pip download -d .whl --only-binary :all: --python-version 3.12 --platform manylinux2014_x86_64 -c constraints.txt \
#           fastcore papermill nbclient nbformat ipykernel jupyter-client pandas pyarrow safetensors torchmetrics scipy \
#           opencv-python-headless onnxruntime pytorch-fid matplotlib tqdm scikit-image pillow tabulate pyyaml
#     (`carry` holds 64 MiB in all: dataset + wheels must fit; torch and numpy are already on the machine).
#   - .cache/weights (carried: 6.6 MB): the face-api files `reenactbook weights fetch` put there; the perceptual loss
#     uses them because VGG19's ImageNet file is not in shared/weights. FID's Inception file (~91 MB) does not fit the
#     carry: without it the tables say "FID: not computed" (every other metric is reported).
# Everything it writes goes under $OUT: the log, REPORT.md with its tables and figures, the model cards, the import check.
# Checkpoints stay out (hundreds of MB at 256 px) unless KEEP_CHECKPOINTS=1.
set -uo pipefail
OUT=${OUT:-$PWD/gpu-out}
DATA=${1:-${REENACTBOOK_DATA:-shared/prepared/clips-sample}}
export REENACTBOOK_WEIGHTS=${2:-${REENACTBOOK_WEIGHTS:-shared/weights}}
export REENACTBOOK_CACHE=${REENACTBOOK_CACHE:-$PWD/.cache}
export REENACTBOOK_MODELS=$PWD/results/sample/models
export REENACTBOOK_NO_PROGRESS=1 PYTHONUNBUFFERED=1
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
started=$(date +%s)
echo "== $(date -u) sample tier on $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi')"
PY=${PYTHON:-python3}

# 1. what the system Python lacks comes from the carried wheels, installed into a private folder (no internet needed)
SITE=$PWD/.gpu-site
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --find-links .whl --target "$SITE" .whl/*.whl 2>&1 | tail -3 || echo "wheel install reported problems (see above)"
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}

# 2. the import check: which modules would fail (av and dlib are expected to: prep is not run here)
$PY - <<'PY' | tee "$OUT/imports.txt"
import importlib
for name in ["torch", "numpy", "fastcore", "pandas", "pyarrow", "PIL", "cv2", "safetensors", "papermill", "ipykernel",
             "torchmetrics", "scipy", "skimage", "matplotlib", "onnxruntime", "pytorch_fid", "tqdm", "av", "dlib"]:
    try:
        module = importlib.import_module(name)
        print(f"ok      {name} {getattr(module, '__version__', '')}")
    except Exception as e:
        print(f"MISSING {name}: {type(e).__name__}: {e}")
import torch
print("cuda", torch.cuda.is_available(), torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if ! $PY -c "import fastcore, papermill, pandas, safetensors" 2>/dev/null; then
  echo "cannot run the tier: fastcore, papermill, pandas or safetensors missing; carry their wheels in .whl/ (see the header)"; exit 2
fi
[ -f "$DATA/dataset.json" ] || { echo "no prepared dataset at $DATA (dataset.json missing); carry it (see the header)"; exit 2; }
$PY -m ipykernel install --user --name python3 >/dev/null 2>&1 || true   # the kernel papermill starts

# 3. the tier: LSG, five reenactors (full, Figure 6 ablations, Figure 9 without curriculum), every experiment notebook
$PY - "$DATA" <<'PY'
import sys, time
from reenactbook.experiments import reproduce
started = time.time()
report = reproduce("sample", data_root=sys.argv[1], out="results", device="cuda")
print(f"tier done in {time.time() - started:.0f} s: {report}")
PY
status=$?

# 4. results: the report with its tables, figures and executed notebooks, the model cards, the training logs
mkdir -p "$OUT/results"
if [ -d results/sample ]; then
  (cd results && find sample -type f \( -name "*.md" -o -name "*.csv" -o -name "*.png" -o -name "*.json" -o -name "*.ipynb" -o -name "*.log" \) \
     ! -path "*/data/*" -print0 | xargs -0 -r cp --parents -t "$OUT/results")
  [ "${KEEP_CHECKPOINTS:-0}" = 1 ] && cp -r results/sample/models "$OUT/results/sample/" || true
  find "$REENACTBOOK_CACHE/models" -name train_log.csv -print0 2>/dev/null | while IFS= read -r -d '' f; do
    mkdir -p "$OUT/train_logs/$(basename "$(dirname "$f")")"; cp "$f" "$OUT/train_logs/$(basename "$(dirname "$f")")/"; done
fi
echo "== exit $status after $(( $(date +%s) - started )) s"
exit $status

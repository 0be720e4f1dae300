#!/usr/bin/env bash
# The GPU check of issue 4 as one short run (a few minutes on one H100 / H200):
#
#   bash scripts/gpu_check.sh [OUT]            # OUT defaults to runs/gpu_check
#   DEVICE=cpu QUICK=1 bash scripts/gpu_check.sh /tmp/gpu_check   # dry run of the script here
#
# 1. a small certified dataset (on the CPU cores);
# 2. training smoke runs on the device through the Python API: each model's small config in
#    float32, DeepONet and MambONet also with bf16 autocast + torch.compile; a run stopped
#    after one epoch and resumed; `nh train` once through the command line;
# 3. bench/train_step.py --device cuda: training samples/s and inference us/trajectory of the
#    five paper configurations.
# Everything is logged to OUT/gpu_check.log. Needs a python3 with torch (CUDA), numba,
# pyarrow, scipy, click, tqdm, pyyaml, matplotlib and mambapy (pure Python: carry its wheel
# where it is missing). No install step: the repository is put on PYTHONPATH.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/gpu_check}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

echo "== device"
"$PY" - "$DEVICE" <<'EOF'
import sys, torch
dev = sys.argv[1]
if dev.startswith("cuda"):
    assert torch.cuda.is_available(), "CUDA is not available"
    print("#", torch.cuda.get_device_name(), "torch", torch.__version__, "bf16", torch.cuda.is_bf16_supported())
else:
    print("# dry run on", dev, "torch", torch.__version__)
EOF

echo "== data"
"$PY" cli.py data build --n "${N:-2000}" --workers "$(nproc)" --out "$OUT/data" --quiet

echo "== training smoke runs ($DEVICE)"
"$PY" - "$OUT" "$DEVICE" "${QUICK:-0}" <<'EOF'
import json, sys, time
from pathlib import Path
from nh_models import load_config
from nh_models.training.trainer import train
from nh_models.models import MODEL_NAMES

out, device, quick = Path(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
epochs = 1 if quick else 2
rows = []
cases = [(m, {}) for m in MODEL_NAMES] + [(m, {"bf16": True, "compile": True}) for m in ("deeponet", "mambonet")]
for name, flags in cases:
    cfg = load_config(name, f"configs/{name}_small.yaml", {"train": {"epochs": epochs, **flags}})
    tag = name + ("-bf16-compile" if flags else "")
    t0 = time.perf_counter()
    m = train(name, cfg, out / "data", out / "runs" / tag, device=device, progress=False)
    rows.append((tag, m["best_val_loss"], m["samples_per_s"], time.perf_counter() - t0))
    print(f"{tag:<24} best val {m['best_val_loss']:.4g}  {m['samples_per_s']:,.0f} samples/s  {rows[-1][3]:.1f} s", flush=True)

class Stop(Exception):
    pass

def stop_after_one(epoch, val):
    if epoch == 1:
        raise Stop

cfg = load_config("traonet", "configs/traonet_small.yaml", {"train": {"epochs": 2}})
try:
    train("traonet", cfg, out / "data", out / "runs" / "resume", device=device, progress=False, epoch_callback=stop_after_one)
except Stop:
    pass
m = train("traonet", None, None, None, resume=out / "runs" / "resume", device=device, progress=False)
print(f"resumed traonet: epochs_done {m['epochs_done']}, status {m['status']}, best val {m['best_val_loss']:.4g}")
(out / "smoke.json").write_text(json.dumps({"device": device, "runs": rows}, indent=1))
EOF
"$PY" cli.py train deeponet --config configs/deeponet_small.yaml --data "$OUT/data" --epochs 1 \
    --device "$DEVICE" --out "$OUT/runs" --quiet

echo "== speed (bench/train_step.py --device $DEVICE)"
if [ "${QUICK:-0}" = 1 ]; then
    "$PY" bench/train_step.py --device "$DEVICE" --models deeponet --quick
else
    "$PY" bench/train_step.py --device "$DEVICE"
fi
echo "== done: $OUT/gpu_check.log"

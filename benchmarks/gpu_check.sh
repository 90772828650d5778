#!/usr/bin/env bash
# GPU check of the diffusion engine (paper config, 128³): 10-step synthesis time and a few training steps,
# fp32 vs AMP bf16 (batch 1 and the paper's batch 2, with and without gradient checkpointing), with peak GPU
# memory; then, on a machine with several GPUs, training steps/s of 1 GPU × batch N vs N GPUs × batch 1
# (torchrun, NCCL; benchmarks/bench_ddp.py). On a machine without CUDA it prints "no GPU" and exits 0.
# Usage: bash benchmarks/gpu_check.sh [python]      (run from anywhere; default python: .venv or python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" - <<'PYEOF'
import time

import torch

if not torch.cuda.is_available():
    print(f"no GPU (torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing to check")
    raise SystemExit(0)

from cor2vox_bids.diffusion.checkpoint import make_model_config
from cor2vox_bids.diffusion.inference import synthesize
from cor2vox_bids.diffusion.schedule import BridgeSchedule, l1_loss
from cor2vox_bids.diffusion.unet import UNet3D, count_parameters, paper_config

dev = torch.device("cuda:0")
print(f"GPU: {torch.cuda.get_device_name(dev)}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"bf16 supported: {torch.cuda.is_bf16_supported()}")
torch.manual_seed(0)
arch = paper_config()
model = UNet3D(arch).to(dev)
print(f"paper config: {count_parameters(model) / 1e6:.1f} M parameters, grid 128³")
cfg = make_model_config(arch, (128,) * 3, 1.5, name="gpu-check", demo=False)
cond = (torch.rand(1, 5, 128, 128, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1).to(dev)
GB = 1024 ** 3


def sync_time(fn):
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    out = fn()
    torch.cuda.synchronize(dev)
    return time.perf_counter() - t0, out


for prec in ("fp32", "bf16"):
    torch.cuda.reset_peak_memory_stats(dev)
    synthesize(model, cfg, cond, [0], steps=1, precision=prec)  # warm-up
    dt, vols = sync_time(lambda: synthesize(model, cfg, cond, [1], steps=10, precision=prec))
    _, vols2 = sync_time(lambda: synthesize(model, cfg, cond, [1], steps=10, precision=prec))
    same = bool((vols[0] == vols2[0]).all())
    print(f"synthesis {prec}: 10 steps 128³ {dt:.2f} s, peak memory "
          f"{torch.cuda.max_memory_allocated(dev) / GB:.1f} GB, same seed reproducible: {same}")

sched = BridgeSchedule()
x0 = (torch.rand(1, 1, 128, 128, 128, device=dev) * 2 - 1)
for prec, ckpt, batch in (("fp32", False, 1), ("fp32", True, 1), ("bf16", False, 1), ("bf16", True, 1),
                          ("bf16", False, 2), ("bf16", True, 2)):
    net = UNet3D(arch).to(dev).train()
    net.grad_checkpointing = ckpt
    if prec == "bf16":
        net = net.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(dev)
    times = []
    try:
        for i in range(4):
            def step():
                t = torch.randint(0, 1000, (batch,), device=dev)
                xb, cb = x0.expand(batch, -1, -1, -1, -1), cond.expand(batch, -1, -1, -1, -1)
                xt = sched.q_sample(xb, cb[:, :1], t, torch.randn_like(xb))
                inp = torch.cat([xt, cb], 1)
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                    out = net(inp, t)
                loss = l1_loss(out, cb[:, :1] - xb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            dt, _ = sync_time(step)
            if i:
                times.append(dt)
        print(f"training {prec} grad-checkpointing={ckpt}: {min(times):.2f} s/step (batch {batch}), peak memory "
              f"{torch.cuda.max_memory_allocated(dev) / GB:.1f} GB")
    except torch.cuda.OutOfMemoryError:
        print(f"training {prec} grad-checkpointing={ckpt} batch {batch}: out of GPU memory")
    del net, opt
PYEOF

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)")
if [ "$NGPU" -ge 2 ]; then
  echo "data parallel: 1 GPU × batch $NGPU vs $NGPU GPUs × batch 1 (paper config, 128³, bf16, 10 steps)"
  "$PY" "$ROOT/benchmarks/bench_ddp.py" --nproc "$NGPU" --grid 128 --arch paper --device cuda --precision bf16 \
    --steps 10
else
  echo "data parallel: $NGPU GPU(s) here; the 1-vs-N GPU comparison needs at least 2"
fi

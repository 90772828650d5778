#!/usr/bin/env bash
# GPU check of the diffusion engine (paper config, 128³): 10-step synthesis time and a few training steps,
# fp32 vs AMP bf16, with peak GPU memory. On a machine without CUDA it prints "no GPU" and exits 0.
# Usage: bash benchmarks/gpu_check.sh [python]      (run from anywhere; default python: .venv or python3)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-}"
if [ -z "$PY" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then PY="$ROOT/.venv/bin/python"; else PY=python3; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" - <<'PYEOF'
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
for prec in ("fp32", "bf16"):
    for ckpt in (False, True):
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
                    t = torch.randint(0, 1000, (1,), device=dev)
                    xt = sched.q_sample(x0, cond[:, :1], t, torch.randn_like(x0))
                    inp = torch.cat([xt, cond], 1)
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
                        out = net(inp, t)
                    loss = l1_loss(out, cond[:, :1] - x0)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                dt, _ = sync_time(step)
                if i:
                    times.append(dt)
            print(f"training {prec} grad-checkpointing={ckpt}: {min(times):.2f} s/step (batch 1), peak memory "
                  f"{torch.cuda.max_memory_allocated(dev) / GB:.1f} GB")
        except torch.cuda.OutOfMemoryError:
            print(f"training {prec} grad-checkpointing={ckpt}: out of GPU memory")
        del net, opt
PYEOF

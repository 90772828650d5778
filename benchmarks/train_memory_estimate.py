"""Estimate the activation memory of one training step of the paper UNet at 128³ without a GPU.

A forward pass runs on PyTorch's ``meta`` device (shapes only, no data) while a saved-tensors hook adds up the
bytes of every tensor autograd keeps for the backward pass; with gradient checkpointing the inputs of the
checkpointed blocks (kept for the recomputation) are added. Not counted: weights, gradients, Adam moments and EMA
(≈ 20 bytes per parameter, printed separately), kernel workspaces, the recomputation peak inside one block and
allocator fragmentation — so a GPU needs more than this; ``benchmarks/gpu_check.sh`` measures the real peak.
The ``bf16`` rows cast the whole network; autocast keeps normalisations in fp32, so real bf16 autocast lies between
the fp32 and bf16 rows. The attention blocks are counted as PyTorch's meta kernels save them (backend-dependent).

    python benchmarks/train_memory_estimate.py [--grid 128] [--batch 1 2]
"""

from __future__ import annotations

import argparse

import torch

from cor2vox_bids.diffusion.unet import UNet3D, count_parameters, paper_config

GIB = 1024 ** 3


def saved_bytes(batch: int, grid: int, checkpointing: bool, dtype: torch.dtype) -> int:
    """Bytes of the tensors kept for backward in one forward pass of the paper UNet (meta device)."""
    with torch.device("meta"):
        net = UNet3D(paper_config())
    net = net.to(dtype).train()
    net.grad_checkpointing = checkpointing
    total = [0, 0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    def block_input(module, args) -> None:
        total[1] += args[0].numel() * args[0].element_size()

    for block in [*net.input_blocks, net.middle_block, *net.output_blocks]:
        block.register_forward_pre_hook(block_input)
    x = torch.empty(batch, 6, grid, grid, grid, device="meta", dtype=dtype)
    t = torch.zeros(batch, dtype=torch.long, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x, t)
    return total[0] + (total[1] if checkpointing else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    with torch.device("meta"):
        n = count_parameters(UNet3D(paper_config()))
    print(f"paper UNet: {n / 1e6:.1f} M parameters; weights + gradients + Adam + EMA in fp32: "
          f"{n * 20 / GIB:.2f} GiB")
    print(f"activations kept for backward, grid {args.grid}³ (estimate, see the module docstring):")
    for dtype in (torch.float32, torch.bfloat16):
        for batch in args.batch:
            for ckpt in (False, True):
                b = saved_bytes(batch, args.grid, ckpt, dtype)
                print(f"  {str(dtype).removeprefix('torch.'):8s} batch {batch} per GPU, gradient checkpointing "
                      f"{'on ' if ckpt else 'off'}: {b / GIB:6.1f} GiB")


if __name__ == "__main__":
    main()

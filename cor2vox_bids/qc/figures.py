"""QC figures (matplotlib, no pyplot state, no display): thickness agreement, error maps, contour overlays.

Every ``plot_*`` function writes one file (format from the suffix: .png or .svg) and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from numpy.typing import NDArray

from .regions import WHOLE_HEMISPHERE
from .thickness import world_to_voxel

__all__ = [
    "slice_contour_segments",
    "lonlat",
    "plot_surface_contours",
    "plot_thickness_scatter",
    "plot_region_bars",
    "plot_error_map",
    "plot_error_maps",
    "plot_group_summary",
]

_KIND_STYLE = {"synthetic": ("tab:orange", "o"), "real": ("tab:blue", "s"), "real_native": ("tab:green", "^")}
_DEFAULT_CONTOUR_COLOURS = {"white": "yellow", "pial": "red"}


def _save(fig: Figure, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    meta = {"Date": None} if path.suffix.lower() == ".svg" else None  # reproducible SVG
    fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=meta)
    return path


def slice_contour_segments(
    vertices: NDArray, faces: NDArray, affine: NDArray, axis: int, index: float
) -> NDArray[np.float64]:
    """Intersection of a triangle mesh with the voxel plane ``[axis] == index`` of the image with ``affine``.

    Returns segments (k, 2, 2): for each crossing triangle the two end points, in the voxel coordinates of the
    two remaining axes (ascending axis order), i.e. the pixel coordinates of ``np.take(image, index, axis)``.
    A vertex exactly on the plane counts as below it, so every crossing triangle gives exactly one segment.
    """
    if axis not in (0, 1, 2):
        raise ValueError("axis must be 0, 1 or 2")
    vox = world_to_voxel(vertices, affine)
    f = np.asarray(faces, dtype=np.int64)
    d = vox[:, axis] - float(index)
    above = d[f] > 0  # (m, 3)
    n_above = above.sum(axis=1)
    tri = f[(n_above == 1) | (n_above == 2)]
    if tri.size == 0:
        return np.zeros((0, 2, 2))
    i0 = tri
    i1 = np.roll(tri, -1, axis=1)  # edges (0,1), (1,2), (2,0)
    d0, d1 = d[i0], d[i1]
    cuts = (d0 > 0) != (d1 > 0)  # exactly two per triangle
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cuts, d0 / (d0 - d1), 0.0)
    pts = vox[i0] + t[..., None] * (vox[i1] - vox[i0])  # (k, 3 edges, 3)
    seg = pts[cuts].reshape(-1, 2, 3)
    keep = [a for a in range(3) if a != axis]
    return seg[:, :, keep]


def lonlat(vertices: NDArray) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Longitude and latitude (degrees) of vertices seen from their centroid (e.g. ``sphere.reg``)."""
    v = np.asarray(vertices, dtype=np.float64)
    c = v - v.mean(axis=0)
    r = np.linalg.norm(c, axis=1)
    lon = np.degrees(np.arctan2(c[:, 1], c[:, 0]))
    lat = np.degrees(np.arcsin(np.clip(np.divide(c[:, 2], r, out=np.zeros_like(r), where=r > 0), -1, 1)))
    return lon, lat


def plot_surface_contours(
    image: NDArray,
    affine: NDArray,
    surfaces: Mapping[str, tuple[NDArray, NDArray]],
    path: str | Path,
    *,
    indices: Sequence[int] | None = None,
    colours: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Path:
    """Three orthogonal slices of ``image`` with each surface's contour (e.g. ``{"white": (v, f), ...}``).

    ``indices``: voxel index per axis (default: the voxel at the centre of the surfaces' bounding box).
    """
    img = np.asarray(image, dtype=np.float64)
    colours = {**_DEFAULT_CONTOUR_COLOURS, **(colours or {})}
    if indices is None:
        allv = np.concatenate([world_to_voxel(v, affine) for v, _ in surfaces.values()])
        centre = 0.5 * (allv.min(axis=0) + allv.max(axis=0))
        indices = [int(np.clip(round(c), 0, n - 1)) for c, n in zip(centre, img.shape)]
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    finite = img[np.isfinite(img)]
    vmin, vmax = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    fig = Figure(figsize=(9, 3.3))
    axes = fig.subplots(1, 3)
    for axis, ax in enumerate(axes):
        u, v = [a for a in range(3) if a != axis]
        ax.imshow(np.take(img, indices[axis], axis=axis).T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax,
                  aspect=spacing[v] / spacing[u], interpolation="nearest")
        for name, (verts, faces) in surfaces.items():
            seg = slice_contour_segments(verts, faces, affine, axis, indices[axis])
            ax.add_collection(LineCollection(seg, colors=colours.get(name, "cyan"), linewidths=0.8, label=name))
        ax.set_title(f"voxel axis {axis} = {indices[axis]}", fontsize=9)
        ax.set_axis_off()
    axes[0].legend(loc="lower left", fontsize=7, framealpha=0.6)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi=75)


def _values(rows: Sequence[Mapping[str, Any]], key: str) -> NDArray[np.float64]:
    out = []
    for r in rows:
        v = r.get(key)
        out.append(float(v) if isinstance(v, (int, float, np.floating, np.integer)) else np.nan)
    return np.array(out, dtype=np.float64)


def _pearson(x: NDArray, y: NDArray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(x[ok], y[ok])[0, 1])


def plot_thickness_scatter(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """Region mean thickness: surface (x) vs image (y) for each image kind, identity line, r in legend.

    x is the surface mean over the vertices measured in that image (``thickness_surface_<kind>``) when the rows
    have it (the paired comparison of the summary's r), else over all the region's vertices."""
    x_all = _values(rows, "thickness_surface")
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    everything = [x_all]
    for kind, (colour, marker) in _KIND_STYLE.items():
        y = _values(rows, f"thickness_{kind}")
        if not np.isfinite(y).any():
            continue
        x = _values(rows, f"thickness_surface_{kind}") if rows and f"thickness_surface_{kind}" in rows[0] else x_all
        everything += [x, y]
        ax.scatter(x, y, s=16, c=colour, marker=marker, alpha=0.8, label=f"{kind} (r = {_pearson(x, y):.2f})")
    stacked = np.concatenate(everything)
    stacked = stacked[np.isfinite(stacked)]
    lo, hi = (float(stacked.min()) - 0.2, float(stacked.max()) + 0.2) if stacked.size else (0.0, 5.0)
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="identity")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("surface thickness (mm)")
    ax.set_ylabel("image thickness (mm)")
    ax.legend(fontsize=8)
    ax.set_title(title or "Regional cortical thickness")
    return _save(fig, path)


def plot_region_bars(rows: Sequence[Mapping[str, Any]], path: str | Path, *, title: str | None = None) -> Path:
    """Grouped bars per hemisphere × region: surface, synthetic and (if any) real thickness."""
    labels = [r["hemi"] if r["region"] == WHOLE_HEMISPHERE else f"{r['hemi']} {r['region']}" for r in rows]
    series = {"surface": _values(rows, "thickness_surface")}
    for kind in _KIND_STYLE:
        y = _values(rows, f"thickness_{kind}")
        if np.isfinite(y).any():
            series[kind] = y
    pos = np.arange(len(rows))
    width = 0.8 / len(series)
    fig = Figure(figsize=(min(18.0, max(6.0, 0.06 * len(rows) * len(series))), 4.0))
    ax = fig.subplots()
    colours = {"surface": "0.5", **{k: c for k, (c, _) in _KIND_STYLE.items()}}
    for i, (name, y) in enumerate(series.items()):
        ax.bar(pos + (i - (len(series) - 1) / 2) * width, np.nan_to_num(y), width, label=name, color=colours[name])
    ax.set_xticks(pos)
    ax.set_xticklabels(labels, rotation=90, fontsize=6)
    ax.set_ylabel("thickness (mm)")
    ax.legend(fontsize=8)
    ax.set_title(title or "Cortical thickness per region")
    return _save(fig, path, dpi=80)


def plot_error_map(
    sphere_vertices: NDArray,
    error: NDArray,
    path: str | Path,
    *,
    vmax: float | None = None,
    title: str | None = None,
) -> Path:
    """Per-vertex error (image − surface thickness, mm) on a longitude/latitude map of the (sphere) vertices."""
    lon, lat = lonlat(sphere_vertices)
    err = np.asarray(error, dtype=np.float64)
    ok = np.isfinite(err)
    if vmax is None:
        vmax = float(np.percentile(np.abs(err[ok]), 98)) if ok.any() else 1.0
    vmax = max(vmax, 1e-6)
    fig = Figure(figsize=(8, 4.2))
    ax = fig.subplots()
    ax.scatter(lon[~ok], lat[~ok], s=1, c="0.8", linewidths=0)
    sc = ax.scatter(lon[ok], lat[ok], s=2, c=err[ok], cmap="RdBu_r", vmin=-vmax, vmax=vmax, linewidths=0)
    fig.colorbar(sc, ax=ax, label="image − surface thickness (mm)")
    ax.set_xlim(-180, 180)
    ax.set_ylim(-90, 90)
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.set_title(title or f"Thickness error ({int((~ok).sum())} vertices unmeasured, grey)")
    return _save(fig, path)


def _lonlat_image(lon: NDArray, lat: NDArray, values: NDArray, shape: tuple[int, int] = (90, 180)
                  ) -> tuple[NDArray, NDArray]:
    """Mean of the finite ``values`` per longitude/latitude bin (NaN where none) and whether a bin has vertices."""
    ny, nx = shape
    ix = np.clip(((lon + 180.0) / 360.0 * nx).astype(int), 0, nx - 1)
    iy = np.clip(((lat + 90.0) / 180.0 * ny).astype(int), 0, ny - 1)
    flat = iy * nx + ix
    ok = np.isfinite(values)
    total = np.bincount(flat[ok], weights=values[ok], minlength=nx * ny)
    count = np.bincount(flat[ok], minlength=nx * ny)
    any_vertex = np.bincount(flat, minlength=nx * ny) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return mean.reshape(shape), any_vertex.reshape(shape)


def plot_error_maps(
    panels: Sequence[tuple[str, NDArray, NDArray]],
    path: str | Path,
    *,
    vmax: float | None = None,
    columns: int = 2,
    dpi: int = 80,
) -> Path:
    """All per-vertex error maps in one small figure: ``panels`` = [(title, sphere or surface vertices, image −
    surface thickness (NaN = not measured))]; each panel is a longitude/latitude image (2° bins, mean error of the
    measured vertices; grey: vertices, none measured), one colour scale (±``vmax``, default the 98th percentile of
    |error| over all panels). Replaces one full-size :func:`plot_error_map` per hemisphere and image."""
    from matplotlib.colors import ListedColormap

    errors = [np.asarray(e, dtype=np.float64) for _, _, e in panels]
    finite = np.concatenate([np.abs(e[np.isfinite(e)]) for e in errors]) if errors else np.zeros(0)
    if vmax is None:
        vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    vmax = max(vmax, 1e-6)
    rows = max(1, -(-len(panels) // columns))
    fig = Figure(figsize=(4.2 * columns, 2.3 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    im = None
    grey = ListedColormap(["0.82"])
    extent = (-180.0, 180.0, -90.0, 90.0)
    for ax, (title, verts, _), err in zip(axes, panels, errors):
        lon, lat = lonlat(verts)
        mean, present = _lonlat_image(lon, lat, err)
        ax.imshow(np.where(present, 0.0, np.nan), origin="lower", extent=extent, cmap=grey, aspect="auto",
                  interpolation="nearest")
        im = ax.imshow(mean, origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto",
                       interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{title}: {np.isfinite(err).mean():.0%} of vertices measured", fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    if im is not None:
        fig.colorbar(im, ax=list(axes), label="image − surface thickness (mm); grey: not measured", shrink=0.8)
    return _save(fig, path, dpi)


def plot_group_summary(
    summaries: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    metrics: Sequence[str] = (
        "pearson_r_synthetic",
        "mean_abs_diff_mm_synthetic",
        "ssim_brain",
        "psnr_brain",
        "ribbon_dice",
    ),
    label_key: str = "participant",
) -> Path:
    """One strip panel per metric, one dot per participant (missing or non-numeric values skipped)."""
    present = [m for m in metrics if np.isfinite(_values(summaries, m)).any()] or list(metrics[:1])
    fig = Figure(figsize=(2.4 * len(present) + 1, 4))
    axes = np.atleast_1d(fig.subplots(1, len(present)))
    rng = np.random.default_rng(0)  # fixed jitter: identical figures for identical input
    for ax, metric in zip(axes, present):
        y = _values(summaries, metric)
        x = rng.uniform(-0.15, 0.15, size=len(y))
        ax.scatter(x, y, s=18, c="tab:orange", alpha=0.8)
        ok = np.isfinite(y)
        if ok.any():
            ax.hlines(np.median(y[ok]), -0.3, 0.3, colors="k", lw=1)
            worst = int(np.nanargmin(y)) if not metric.startswith("mean_abs") else int(np.nanargmax(y))
            ax.annotate(str(summaries[worst].get(label_key, worst)), (x[worst], y[worst]), fontsize=7)
        ax.set_xlim(-0.5, 0.5)
        ax.set_xticks([])
        ax.set_title(metric, fontsize=8)
    fig.suptitle(f"Group QC ({len(summaries)} participants; line = median, worst labelled)")
    return _save(fig, path)


def plot_conditioning(maps: Mapping[str, NDArray], path: str | Path, *, axis: int = 2) -> Path:
    """The middle slice (along voxel ``axis``) of each conditioning map, in the order the network sees them."""
    order = [k for k in ("sdf_cortex", "sdf_pial", "sdf_white", "edges", "ribbon") if k in maps]
    fig = Figure(figsize=(2.6 * len(order), 3.0))
    axes = np.atleast_1d(fig.subplots(1, len(order)))
    for ax, name in zip(axes, order):
        vol = np.asarray(maps[name], dtype=np.float64)
        sl = np.take(vol, vol.shape[axis] // 2, axis=axis).T
        if name.startswith("sdf"):  # blue inside (negative), red outside; the range is in the title
            lim = float(np.percentile(np.abs(sl), 99)) or 1.0
            ax.imshow(sl, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(f"{name} (±{lim:.0f} mm)", fontsize=8)
        else:
            ax.imshow(sl, origin="lower", cmap="gray", vmin=0, vmax=1)
            ax.set_title(f"{name} (0–1)", fontsize=8)
        ax.set_axis_off()
    return _save(fig, path, dpi=70)


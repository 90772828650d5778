"""Report figures (matplotlib, no pyplot state, no display): pure functions from arrays to one file each.

Every volume figure is drawn in world (scanner RAS) millimetres: the volume is reoriented to the closest RAS+
voxel order (``nibabel.orientations``), panels are labelled with their world coordinate (``x = −24 mm``) and the
coronal and axial panels carry L/R letters. Surfaces (vertices in the same world frame) are cut by each slice
plane and drawn as contours. Figures are written at a fixed size in pixels, so the report can show them 1:1.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from numpy.typing import NDArray

from ..bids import atomic

__all__ = [
    "ORIENTATIONS",
    "reorient_ras",
    "slice_positions",
    "plane_segments_mm",
    "plot_mosaic",
    "plot_anatomy",
    "group_axis_limits",
    "flicker_svg",
    "plot_region_profile",
    "view_projection",
    "plot_surface_views",
    "plot_conditioning_maps",
    "plot_group_measures",
    "plot_harmonization",
]

#: orientation name → world axis cut by the slices (0 = x, 1 = y, 2 = z)
ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}
_AXIS_NAME = "xyz"
_DPI = 100
_SURFACE_COLOURS = {"white": "#ffd21f", "pial": "#ff3b30"}
_KIND_COLOURS = {"surface": "0.25", "synthetic": "#e66100", "real": "#1f6fb4", "real_native": "#5aa9e6"}
_KIND_MARKERS = {"synthetic": "o", "real": "s", "real_native": "D"}
_NAN_GREY = (0.82, 0.82, 0.82)


def _save(fig: Figure, path: str | Path) -> Path:
    """Write at the figure's own size (no tight bbox), so the pixel size is known in advance."""
    path = Path(path)
    meta = {"Date": None} if path.suffix.lower() == ".svg" else {"Software": None}
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=_DPI, metadata=meta, format=path.suffix.lower().lstrip("."))
    return path


# -- frames --------------------------------------------------------------------------------------------------


def reorient_ras(data: NDArray, affine: NDArray) -> tuple[NDArray, NDArray]:
    """``data`` with its voxel axes permuted/flipped to the closest RAS+ order, and the matching affine."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(np.asarray(affine, dtype=np.float64))
    out = apply_orientation(np.asarray(data), ornt)
    new_affine = np.asarray(affine, dtype=np.float64) @ inv_ornt_aff(ornt, np.asarray(data).shape[:3])
    return out, new_affine


def _world_extent(affine: NDArray, shape: Sequence[int], u: int, v: int) -> tuple[float, float, float, float]:
    """imshow extent (mm) of a slice spanning voxel axes ``u`` (horizontal) and ``v`` (vertical) of an RAS+
    volume: voxel centres at the world coordinates, pixel edges half a voxel out."""
    a = np.asarray(affine)
    lo = [a[k, 3] + a[k, k] * -0.5 for k in (u, v)]
    hi = [a[k, 3] + a[k, k] * (shape[k] - 0.5) for k in (u, v)]
    return lo[0], hi[0], lo[1], hi[1]


def slice_positions(lo: float, hi: float, n: int, *, margin: float = 0.12) -> NDArray[np.float64]:
    """``n`` world positions evenly spread over [lo, hi] without its outer ``margin`` fraction. With an even
    ``n`` the positions are symmetric about the centre and none lies on it (no exact-midline sagittal slice)."""
    span = hi - lo
    return np.linspace(lo + margin * span, hi - margin * span, n)


def sagittal_positions(lo: float, hi: float, midline: float, n: int) -> NDArray[np.float64]:
    """``n`` sagittal positions, half in each hemisphere: from 85 % of the way to the lateral edge to 6 mm
    from the ``midline`` (the medial cortex, never the midline itself)."""
    half = max(1, n // 2)
    left = np.linspace(midline - 0.85 * (midline - lo), midline - 6.0, half)
    right = np.linspace(midline + 6.0, midline + 0.85 * (hi - midline), n - half)
    return np.concatenate([left, right])


def hemisphere_midline(left_vertices: NDArray, right_vertices: NDArray) -> float:
    """World x of the midline: halfway between the left hemisphere's most medial (largest x) vertex and the
    right hemisphere's most medial (smallest x) one."""
    return 0.5 * (float(np.max(np.asarray(left_vertices)[:, 0])) + float(np.min(np.asarray(right_vertices)[:, 0])))


def plane_segments_mm(vertices: NDArray, faces: NDArray, axis: int, position: float) -> NDArray[np.float64]:
    """Intersection of a triangle mesh (world mm) with the plane ``world[axis] == position``: segments (k, 2, 2)
    in the two remaining world coordinates (ascending axis order). A vertex exactly on the plane counts as
    below it, so every crossing triangle gives exactly one segment."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    d = v[:, axis] - float(position)
    above = d[f] > 0
    n_above = above.sum(axis=1)
    tri = f[(n_above == 1) | (n_above == 2)]
    if tri.size == 0:
        return np.zeros((0, 2, 2))
    i1 = np.roll(tri, -1, axis=1)
    d0, d1 = d[tri], d[i1]
    cuts = (d0 > 0) != (d1 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(cuts, d0 / (d0 - d1), 0.0)
    pts = v[tri] + t[..., None] * (v[i1] - v[tri])
    seg = pts[cuts].reshape(-1, 2, 3)
    keep = [k for k in range(3) if k != axis]
    return seg[:, :, keep]


def _display_range(data: NDArray, mask: NDArray | None = None) -> tuple[float, float]:
    values = np.asarray(data, dtype=np.float64)
    values = values[mask] if mask is not None and mask.any() else values
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _coordinate_label(axis: int, position: float, midline: float | None = None) -> str:
    """``x = −24 mm``; sagittal positions also say the side of the brain's ``midline`` (world x) they lie on."""
    rounded = round(position) + 0.0  # no "−0"
    text = f"{_AXIS_NAME[axis]} = {rounded:+.0f} mm".replace("-", "\u2212")
    if axis == 0 and midline is not None:
        text += " (L)" if position < midline else " (R)"
    return text


# -- mosaics -------------------------------------------------------------------------------------------------


def _draw_mosaic(
    fig: Figure,
    data: NDArray,
    affine: NDArray,
    *,
    surfaces: Mapping[str, tuple[NDArray, NDArray]] | None,
    orientations: Sequence[str],
    n_slices: int,
    bounds: tuple[NDArray, NDArray] | None,
    display: tuple[float, float] | None,
    linewidth: float,
    midline: float | None = None,
) -> list[tuple[Any, int, int]]:
    """Draw the mosaic; returns (image artist, axis, index) per panel (to swap in another volume's slices)."""
    handles: list[tuple[Any, int, int]] = []
    vol, aff = reorient_ras(data, affine)
    vol = np.asarray(vol, dtype=np.float64)
    if bounds is None:
        lo = aff[:3, 3] + np.diag(aff)[:3] * 0
        hi = aff[:3, 3] + np.diag(aff)[:3] * (np.array(vol.shape[:3]) - 1)
        bounds = (np.minimum(lo, hi), np.maximum(lo, hi))
    vmin, vmax = display or _display_range(vol)
    ratios = [_panel_aspect(bounds, ORIENTATIONS[o]) for o in orientations]
    axes = np.atleast_2d(fig.subplots(len(orientations), n_slices, squeeze=False,
                                      gridspec_kw={"height_ratios": ratios}))
    fig.subplots_adjust(left=0.003, right=0.997, top=0.997, bottom=0.003, wspace=0.02, hspace=0.03)
    for row, name in enumerate(orientations):
        axis = ORIENTATIONS[name]
        u, v = [k for k in range(3) if k != axis]
        if axis == 0 and midline is not None:
            positions = sagittal_positions(bounds[0][0], bounds[1][0], midline, n_slices)
        else:
            positions = slice_positions(bounds[0][axis], bounds[1][axis], n_slices)
        for col, pos in enumerate(positions):
            ax = axes[row, col]
            index = int(np.clip(round((pos - aff[axis, 3]) / (aff[axis, axis] or 1.0)), 0, vol.shape[axis] - 1))
            world = aff[axis, 3] + aff[axis, axis] * index  # the voxel plane actually shown
            im = ax.imshow(np.take(vol, index, axis=axis).T, origin="lower", cmap="gray", vmin=vmin, vmax=vmax,
                           extent=_world_extent(aff, vol.shape, u, v), interpolation="nearest")
            handles.append((im, axis, index))
            for sname, (verts, faces) in (surfaces or {}).items():
                seg = plane_segments_mm(verts, faces, axis, world)
                ax.add_collection(LineCollection(seg, colors=_SURFACE_COLOURS.get(sname, "cyan"),
                                                 linewidths=linewidth))
            ax.set_xlim(bounds[0][u] - _PAD_MM, bounds[1][u] + _PAD_MM)
            ax.set_ylim(bounds[0][v] - _PAD_MM, bounds[1][v] + _PAD_MM)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            ax.set_facecolor("black")
            ax.text(0.03, 0.97, _coordinate_label(axis, world, midline), transform=ax.transAxes, color="white",
                    fontsize=8.5, va="top", ha="left",
                    bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.2, "linewidth": 0})
            if axis != 0:  # coronal, axial: x runs left → right; say which side is which
                ax.text(0.02, 0.03, "L", transform=ax.transAxes, color="white", fontsize=9, fontweight="bold")
                ax.text(0.98, 0.03, "R", transform=ax.transAxes, color="white", fontsize=9, fontweight="bold",
                        ha="right")
            else:
                ax.text(0.02, 0.03, "P", transform=ax.transAxes, color="white", fontsize=9, fontweight="bold")
                ax.text(0.98, 0.03, "A", transform=ax.transAxes, color="white", fontsize=9, fontweight="bold",
                        ha="right")
    fig.patch.set_facecolor("black")
    return handles


_PAD_MM = 8.0  # margin around the cortex in each panel


def _panel_aspect(bounds: tuple[NDArray, NDArray] | None, axis: int) -> float:
    """Height / width of a panel cutting ``axis`` (the cortex's extent in the two other axes, padded)."""
    if bounds is None:
        return 1.0
    u, v = [k for k in range(3) if k != axis]
    ext = np.asarray(bounds[1]) - np.asarray(bounds[0]) + 2 * _PAD_MM
    return float(ext[v] / ext[u])


def _mosaic_figure(orientations: Sequence[str], n_slices: int, width_px: int,
                   bounds: tuple[NDArray, NDArray] | None) -> Figure:
    """A figure whose rows have the panels' own aspect (no black bands between rows)."""
    width_in = width_px / _DPI
    panel_w = width_in * 0.994 / n_slices
    heights = [panel_w * _panel_aspect(bounds, ORIENTATIONS[o]) for o in orientations]
    height_in = sum(heights) * 1.035 + 0.04
    return Figure(figsize=(width_in, round(height_in * _DPI) / _DPI))


def _surface_bounds(surfaces: Mapping[str, tuple[NDArray, NDArray]] | None) -> tuple[NDArray, NDArray] | None:
    if not surfaces:
        return None
    allv = np.concatenate([np.asarray(v, dtype=np.float64) for v, _ in surfaces.values()])
    return allv.min(axis=0), allv.max(axis=0)


def plot_mosaic(
    data: NDArray,
    affine: NDArray,
    path: str | Path,
    *,
    surfaces: Mapping[str, tuple[NDArray, NDArray]] | None = None,
    orientation: str = "axial",
    n_slices: int = 6,
    width_px: int = 1080,
    display: tuple[float, float] | None = None,
    midline: float | None = None,
) -> Path:
    """One row of ``n_slices`` slices of ``data`` in one orientation (``sagittal``/``coronal``/``axial``), with
    each surface's contour (``{"white": (v, f), "pial": (v, f)}``, world mm). Slices are spread over the
    surfaces' extent (else the volume's) and labelled with their world coordinate; L/R (or P/A) marked."""
    bounds = _surface_bounds(surfaces)
    fig = _mosaic_figure([orientation], n_slices, width_px, bounds)
    _draw_mosaic(fig, data, affine, surfaces=surfaces, orientations=[orientation], n_slices=n_slices,
                 bounds=bounds, display=display, linewidth=0.9, midline=midline)
    return _save(fig, path)


def plot_anatomy(
    data: NDArray,
    affine: NDArray,
    path: str | Path,
    *,
    surfaces: Mapping[str, tuple[NDArray, NDArray]] | None = None,
    flicker: Mapping[str, NDArray] | None = None,
    flicker_path: str | Path | None = None,
    orientations: Sequence[str] = ("sagittal", "coronal", "axial"),
    n_slices: int = 6,
    width_px: int = 1080,
    midline: float | None = None,
) -> tuple[Path, Path | None]:
    """A mosaic of ``data`` (rows = orientations) with surface contours, written to ``path``; with ``flicker``
    (``{label: volume}``, volumes on the same voxel grid as ``data``) also an SVG at ``flicker_path`` that
    alternates ``data`` (labelled "synthetic T1w") and each volume on exactly the same slices and contours
    (one figure, the image data swapped). Each volume is scaled to its own 0.5–99.5th percentile. ``midline``
    (world x, :func:`hemisphere_midline`): sagittal slices go half into each hemisphere and are labelled L/R."""
    bounds = _surface_bounds(surfaces)
    fig = _mosaic_figure(orientations, n_slices, width_px, bounds)
    handles = _draw_mosaic(fig, data, affine, surfaces=surfaces, orientations=orientations, n_slices=n_slices,
                           bounds=bounds, display=None, linewidth=0.7, midline=midline)
    path = _save(fig, path)
    if not flicker or flicker_path is None:
        return path, None
    frames = [("synthetic T1w", path.read_bytes())]
    for label, other in flicker.items():
        vol, _ = reorient_ras(other, affine)
        vol = np.asarray(vol, dtype=np.float64)
        if vol.shape[:3] != reorient_ras(np.asarray(data), affine)[0].shape[:3]:
            raise ValueError(f"the {label} volume is not on the grid of the synthetic image")
        lo, hi = _display_range(vol)
        for im, axis, index in handles:
            im.set_data(np.take(vol, index, axis=axis).T)
            im.set_clim(lo, hi)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
        frames.append((label, buf.getvalue()))
    w, h = (int(round(x)) for x in fig.get_size_inches() * _DPI)
    return path, flicker_svg(frames, (w, h), flicker_path)


def flicker_svg(
    frames: Sequence[tuple[str, bytes]],
    size: tuple[int, int],
    path: str | Path,
    *,
    period_s: float = 3.0,
) -> Path:
    """An SVG that alternates between PNG ``frames`` (``[(label, png_bytes), ...]``, equal sizes) with a CSS
    animation — no scripts, so it runs inside an ``<img>`` — each frame's label shown in its corner."""
    if len(frames) < 2:
        raise ValueError("a flicker needs at least two frames")
    w, h = size
    band = 30  # a strip under the image for the label, so it never covers a slice
    n = len(frames)
    share = 100.0 / n
    # frame i is visible during [i*share, (i+1)*share) of the period (hard cuts)
    css = [f"@keyframes show{i}{{0%{{opacity:0}}{i * share:.3f}%{{opacity:1}}"
           f"{(i + 1) * share:.3f}%{{opacity:0}}100%{{opacity:0}}}}" for i in range(n)]
    css[0] = f"@keyframes show0{{0%{{opacity:1}}{share:.3f}%{{opacity:0}}100%{{opacity:0}}}}"
    css += [f".f{i}{{animation:show{i} {period_s:g}s step-end infinite}}" for i in range(n)]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
             f'width="{w}" height="{h + band}" viewBox="0 0 {w} {h + band}">',
             "<style>" + "".join(css) + "</style>",
             f'<rect x="0" y="{h}" width="{w}" height="{band}" fill="black"/>']
    for i, (label, png) in enumerate(frames):
        data = base64.b64encode(png).decode("ascii")
        safe = (label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        parts.append(f'<g class="f{i}"><image width="{w}" height="{h}" href="data:image/png;base64,{data}" '
                     f'xlink:href="data:image/png;base64,{data}"/>'
                     f'<text x="{w / 2:g}" y="{h + 21}" fill="white" font-size="17" font-weight="bold" '
                     f'font-family="sans-serif" text-anchor="middle">{safe} ({i + 1}/{n})</text></g>')
    parts.append("</svg>\n")
    path = Path(path)
    atomic.write_bytes(path, "".join(parts).encode("ascii"))
    return path


# -- regions ---------------------------------------------------------------------------------------------------


def plot_region_profile(
    rows: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    kinds: Sequence[str],
    region_names: Mapping[str, str] | None = None,
    kind_labels: Mapping[str, str] | None = None,
    width_px: int = 1080,
) -> Path:
    """Per-hemisphere dot chart of regional thickness: one row per region, one panel per hemisphere (shared
    region axis and shared mm axis). Surface thickness: black bar; each image kind in ``kinds``: a marker at
    ``thickness_<kind>`` (the mean over its measured vertices); regions with too little coverage have no marker.

    ``rows``: QC TSV rows (``hemi``, ``region``, ``thickness_surface``, ``thickness_<kind>``)."""
    region_names = region_names or {}
    kind_labels = kind_labels or {}
    hemis = [h for h in ("L", "R") if any(r["hemi"] == h for r in rows)] or sorted({r["hemi"] for r in rows})
    regions: list[str] = []
    for r in rows:
        if r["region"] not in regions:
            regions.append(r["region"])
    n = len(regions)
    height_in = max(3.0, 0.24 * n + 1.3)
    fig = Figure(figsize=(width_px / _DPI, height_in))
    axes = np.atleast_1d(fig.subplots(1, len(hemis), sharey=True, sharex=True))
    longest = max((len(region_names.get(g, g)) for g in regions), default=10)
    left = min(0.4, (0.068 * longest + 0.25) / (width_px / _DPI))  # room for the longest label at 9 pt
    fig.subplots_adjust(left=left, right=0.985, top=1 - 0.75 / height_in, bottom=0.6 / height_in, wspace=0.06)
    values = []
    for r in rows:
        for c in ["thickness_surface", *(f"thickness_{k}" for k in kinds)]:
            x = r.get(c)
            if isinstance(x, (int, float)) and np.isfinite(x):
                values.append(float(x))
    lo, hi = (min(values), max(values)) if values else (0.0, 5.0)
    pad = max(0.15, 0.08 * (hi - lo))
    y = np.arange(n)[::-1]
    present = [k for k in kinds if any(isinstance(r.get(f"thickness_{k}"), (int, float))
                                       and np.isfinite(r.get(f"thickness_{k}")) for r in rows)]
    shift = dict(zip(present, np.linspace(-0.2, 0.2, len(present)) if len(present) > 1 else [0.0]))
    for ax, hemi in zip(axes, hemis):
        by_region = {r["region"]: r for r in rows if r["hemi"] == hemi}
        surf = np.array([by_region.get(g, {}).get("thickness_surface", np.nan) for g in regions], dtype=float)
        ax.scatter(surf, y, marker="|", s=160, linewidths=2.2, c=_KIND_COLOURS["surface"],
                   label="surfaces", zorder=3)
        for k in kinds:
            vals = np.array([by_region.get(g, {}).get(f"thickness_{k}", np.nan) for g in regions], dtype=float)
            if not np.isfinite(vals).any():
                continue
            yk = y - shift.get(k, 0.0)  # kinds side by side within a region's row
            ax.scatter(vals, yk, marker=_KIND_MARKERS.get(k, "o"), s=30, c=_KIND_COLOURS.get(k, "tab:green"),
                       alpha=0.9, label=kind_labels.get(k, k), zorder=4)
            ok = np.isfinite(vals) & np.isfinite(surf)
            ax.hlines(yk[ok], np.minimum(vals[ok], surf[ok]), np.maximum(vals[ok], surf[ok]),
                      colors=_KIND_COLOURS.get(k, "tab:green"), lw=0.8, alpha=0.5, zorder=2)
        ax.set_title({"L": "Left hemisphere", "R": "Right hemisphere"}.get(hemi, hemi), fontsize=11)
        ax.grid(axis="x", color="0.88", lw=0.8)
        ax.set_axisbelow(True)
        ax.set_xlabel("cortical thickness (mm)", fontsize=10)
        ax.tick_params(labelsize=9)
        for k in range(0, n, 2):
            ax.axhspan(y[k] - 0.5, y[k] + 0.5, color="0.965", zorder=0)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([region_names.get(g, g) for g in regions], fontsize=9)
    axes[0].set_ylim(-0.7, n - 0.3)
    axes[0].set_xlim(lo - pad, hi + pad)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=9, frameon=False,
               bbox_to_anchor=(0.6, 1.0))
    return _save(fig, path)


# -- surfaces ----------------------------------------------------------------------------------------------------

#: view name → (screen-x world direction, depth direction towards the viewer) for a hemisphere
_VIEWS = {
    ("L", "lateral"): (np.array([0.0, -1.0, 0.0]), np.array([-1.0, 0.0, 0.0])),
    ("L", "medial"): (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
    ("R", "lateral"): (np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])),
    ("R", "medial"): (np.array([0.0, -1.0, 0.0]), np.array([-1.0, 0.0, 0.0])),
}


def view_projection(vertices: NDArray, hemi: str, view: str) -> tuple[NDArray, NDArray]:
    """Orthographic projection of world vertices for a lateral or medial view of hemisphere ``hemi``:
    (screen xy (n, 2) in mm, depth (n,), larger = nearer the viewer). Superior is up; anterior points left in
    the left lateral / right medial views and right in the others."""
    right, towards = _VIEWS[(hemi, view)]
    v = np.asarray(vertices, dtype=np.float64)
    xy = np.stack([v @ right, v[:, 2]], axis=1)
    return xy, v @ towards


def rasterize_triangles(xy: NDArray, depth: NDArray, faces: NDArray, colours: NDArray,
                        extent: tuple[float, float, float, float], shape: tuple[int, int]) -> NDArray:
    """Z-buffered flat-shaded rendering of 2-D triangles: an RGBA image (``shape`` = rows, columns; alpha 0 where
    no triangle covers a pixel centre). ``xy`` (n, 2) and ``depth`` (n,) per vertex (larger depth = nearer),
    ``colours`` (m, 3) per face, ``extent`` = (x0, x1, y0, y1) of the image in the units of ``xy``; row 0 is at
    y1. A pixel takes the colour of the nearest triangle at its centre (depth interpolated across each triangle),
    so the result does not depend on the order of the faces. Vectorised numpy: every triangle's bounding box is
    expanded into candidate pixels, tested with barycentric coordinates, and the nearest candidate per pixel wins."""
    rows, cols = shape
    x0, x1, y0, y1 = extent
    f = np.asarray(faces, dtype=np.int64)
    px = (np.asarray(xy[:, 0], dtype=np.float64) - x0) / (x1 - x0) * cols
    py = (y1 - np.asarray(xy[:, 1], dtype=np.float64)) / (y1 - y0) * rows
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    tx = np.stack([px[a], px[b], px[c]], axis=1)
    ty = np.stack([py[a], py[b], py[c]], axis=1)
    lo_x = np.clip(np.ceil(tx.min(axis=1) - 0.5), 0, cols).astype(np.int64)  # pixel centres at i + 0.5
    hi_x = np.clip(np.floor(tx.max(axis=1) - 0.5) + 1, 0, cols).astype(np.int64)
    lo_y = np.clip(np.ceil(ty.min(axis=1) - 0.5), 0, rows).astype(np.int64)
    hi_y = np.clip(np.floor(ty.max(axis=1) - 0.5) + 1, 0, rows).astype(np.int64)
    w, h = np.maximum(hi_x - lo_x, 0), np.maximum(hi_y - lo_y, 0)
    count = w * h
    image = np.zeros((rows, cols, 4))
    keep = count > 0
    if not keep.any():
        return image
    face = np.repeat(np.flatnonzero(keep), count[keep])
    local = np.arange(face.size) - np.repeat(np.cumsum(count[keep]) - count[keep], count[keep])
    ix = lo_x[face] + local % w[face]
    iy = lo_y[face] + local // w[face]
    tx, ty = tx.astype(np.float32), ty.astype(np.float32)
    cx, cy = ix.astype(np.float32) + 0.5, iy.astype(np.float32) + 0.5
    ax_, ay_ = tx[face, 0], ty[face, 0]
    e1x, e1y = tx[face, 1] - ax_, ty[face, 1] - ay_
    e2x, e2y = tx[face, 2] - ax_, ty[face, 2] - ay_
    det = e1x * e2y - e1y * e2x
    ok = np.abs(det) > 1e-6  # in pixels²: degenerate (zero-area) triangles cover nothing
    det = np.where(ok, det, np.float32(1.0))
    u = ((cx - ax_) * e2y - (cy - ay_) * e2x) / det
    v = ((cy - ay_) * e1x - (cx - ax_) * e1y) / det
    eps = 1e-5
    inside = ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps)
    face, ix, iy, u, v = face[inside], ix[inside], iy[inside], u[inside], v[inside]
    d = np.asarray(depth, dtype=np.float64)
    z = d[a[face]] * (1 - u - v) + d[b[face]] * u + d[c[face]] * v
    pixel = iy * cols + ix
    order = np.lexsort((z, pixel))  # by pixel, nearest last
    pixel, face = pixel[order], face[order]
    last = np.r_[pixel[1:] != pixel[:-1], True]
    flat = image.reshape(-1, 4)
    flat[pixel[last], :3] = np.asarray(colours, dtype=np.float64)[face[last], :3]
    flat[pixel[last], 3] = 1.0
    return image


def _draw_surface(ax, vertices: NDArray, faces: NDArray, values: NDArray, hemi: str, view: str,
                  cmap, norm, pixels_per_mm: float = 2.5) -> None:
    """Front-facing triangles coloured by the mean of their vertices' values (grey where any is NaN), shaded by
    the angle between their normal and the view direction, rendered with a z-buffer (``rasterize_triangles``) at
    ``pixels_per_mm`` and shown as an image (downsampled with antialiasing to the panel's size)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    xy, depth = view_projection(v, hemi, view)
    towards = _VIEWS[(hemi, view)][1]
    normal = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    length = np.linalg.norm(normal, axis=1)
    facing = normal @ towards / np.where(length > 0, length, 1.0)
    front = facing > 0
    f, facing = f[front], facing[front]
    vals = np.asarray(values, dtype=np.float64)[f].mean(axis=1)
    rgba = np.asarray(cmap(norm(np.where(np.isfinite(vals), vals, 0.0))))
    rgba[~np.isfinite(vals), :3] = _NAN_GREY
    rgba[:, :3] *= (0.35 + 0.65 * facing)[:, None]
    extent = (xy[:, 0].min() - 2, xy[:, 0].max() + 2, xy[:, 1].min() - 2, xy[:, 1].max() + 2)
    shape = (max(int(round((extent[3] - extent[2]) * pixels_per_mm)), 1),
             max(int(round((extent[1] - extent[0]) * pixels_per_mm)), 1))
    image = rasterize_triangles(xy, depth, f, rgba, extent, shape)
    ax.imshow(image, extent=extent, origin="upper", interpolation="antialiased", interpolation_stage="rgba")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_aspect("equal")
    ax.set_axis_off()


def plot_surface_views(
    meshes: Mapping[str, tuple[NDArray, NDArray]],
    values: Mapping[str, Mapping[str, NDArray]],
    path: str | Path,
    *,
    colorbar_label: str,
    vmax: float | None = None,
    diverging: bool = True,
    width_px: int = 1080,
) -> Path:
    """Per-vertex values painted on the cortex: one row per entry of ``values`` (``{row label: {hemi: array}}``),
    four views per row (left lateral, left medial, right medial, right lateral), one colour scale shared by
    every panel (symmetric ±``vmax`` when ``diverging``; default the 98th percentile of |values|), unmeasured
    vertices (NaN) grey. ``meshes``: ``{hemi: (vertices, faces)}`` in world mm."""
    finite = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() if diverging
                             else np.asarray(a, dtype=np.float64).ravel()
                             for row in values.values() for a in row.values()] or [np.zeros(1)])
    finite = finite[np.isfinite(finite)]
    if diverging:
        vmax = vmax or (float(np.percentile(finite, 98)) if finite.size else 1.0)
        vmax = max(vmax, 1e-6)
        norm = TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
        cmap_name = "RdBu_r"
    else:
        lo, hi = (np.percentile(finite, [2, 98]) if finite.size else (0.0, 1.0))
        norm = Normalize(vmin=float(lo), vmax=float(hi if hi > lo else lo + 1))
        cmap_name = "viridis"
    from matplotlib import colormaps

    cmap = colormaps[cmap_name]
    panels = [(h, view) for h, view in (("L", "lateral"), ("L", "medial"), ("R", "medial"), ("R", "lateral"))
              if h in meshes]
    n_rows = len(values)
    width_in = width_px / _DPI
    row_in = width_in / max(len(panels), 1) * 0.78
    height_in = row_in * n_rows + 1.2
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.05 / height_in * n_rows - 0.3 / height_in,
                        bottom=1.05 / height_in, wspace=0.02, hspace=0.18)
    axes = np.atleast_2d(fig.subplots(n_rows, len(panels), squeeze=False))
    for row, (label, by_hemi) in enumerate(values.items()):
        if not any(np.isfinite(np.asarray(a, dtype=np.float64)).any() for a in by_hemi.values()):
            label = f"{label} (nothing measured)"
        for col, (hemi, view) in enumerate(panels):
            ax = axes[row, col]
            verts, faces = meshes[hemi]
            data = by_hemi.get(hemi)
            if data is None:
                data = np.full(len(verts), np.nan)
            _draw_surface(ax, verts, faces, data, hemi, view, cmap, norm)
            hemi_name = {"L": "left", "R": "right"}[hemi]
            ax.set_title(f"{label}: {hemi_name} {view}" if col == 0 else f"{hemi_name} {view}", fontsize=9.5)
    from matplotlib.cm import ScalarMappable

    cax = fig.add_axes((0.3, 0.6 / height_in, 0.4, 0.14 / height_in))
    cb = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal",
                      extend="both")
    cb.set_label(colorbar_label + "   (grey: not measured)", fontsize=9.5)
    cb.ax.tick_params(labelsize=8.5)
    return _save(fig, path)


# -- conditioning maps -----------------------------------------------------------------------------------------------


def plot_conditioning_maps(
    maps: Mapping[str, NDArray],
    affine: NDArray,
    path: str | Path,
    *,
    titles: Mapping[str, str],
    units: Mapping[str, str],
    clip_mm: float | None = None,
    width_px: int = 1080,
) -> Path:
    """The axial slice through the centre of each map (in ``titles`` order), labelled with its world z; signed
    distances on a diverging scale ±``clip_mm`` (default 10 mm; pass the model's clip) with a colour bar in
    ``units[name]``; masks and weights on [0, 1]."""
    names = [k for k in titles if k in maps]
    width_in = width_px / _DPI
    height_in = width_in / len(names) * 1.2 + 1.1
    fig = Figure(figsize=(width_in, height_in))
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.4 / height_in, bottom=0.75 / height_in, wspace=0.08)
    from matplotlib.ticker import MaxNLocator

    lim = clip_mm or 10.0
    for ax, name in zip(axes, names):
        vol, aff = reorient_ras(np.asarray(maps[name], dtype=np.float64), affine)
        k = vol.shape[2] // 2
        z = aff[2, 3] + aff[2, 2] * k
        sl = vol[:, :, k].T
        ext = _world_extent(aff, vol.shape, 0, 1)
        signed = name.startswith("sdf")
        if signed:
            im = ax.imshow(sl, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim, extent=ext)
        else:
            im = ax.imshow(sl, origin="lower", cmap="gray", vmin=0, vmax=1, extent=ext)
        cb = fig.colorbar(im, ax=ax, orientation="horizontal", fraction=0.06, pad=0.03,
                          extend="both" if signed else "neither")
        cb.set_label(units.get(name, ""), fontsize=8.5)
        if name == "ribbon":
            cb.set_ticks([0, 1])
        else:
            cb.ax.xaxis.set_major_locator(MaxNLocator(5 if signed else 3))
        cb.ax.tick_params(labelsize=8)
        ax.set_title(titles[name], fontsize=9.5)
        box = {"facecolor": "black", "alpha": 0.6, "pad": 1.5, "lw": 0}
        ax.text(0.03, 0.97, _coordinate_label(2, z), transform=ax.transAxes, fontsize=7.5, va="top",
                color="white", bbox=box)
        ax.text(0.03, 0.03, "L", transform=ax.transAxes, fontsize=8, fontweight="bold", color="white", bbox=box)
        ax.text(0.97, 0.03, "R", transform=ax.transAxes, fontsize=8, fontweight="bold", ha="right", color="white",
                bbox=box)
        ax.set_xticks([])
        ax.set_yticks([])
    return _save(fig, path)


# -- group ---------------------------------------------------------------------------------------------------------


def plot_group_measures(
    panels: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    path: str | Path,
    *,
    columns: int = 3,
    width_px: int = 1080,
) -> Path:
    """Small multiples, one per measure: a dot per participant on a horizontal axis, the expected range
    shaded, flagged participants in red and labelled. ``panels``: ``{"title", "values" (per participant,
    NaN = missing), "limits" (axis range), "expected" ((lo, hi), None = open), "flags" (bool per
    participant)}``. ``labels``: participant labels, in the order of the values."""
    n = len(panels)
    cols = max(1, min(columns, n))
    rows = int(np.ceil(n / cols))
    width_in = width_px / _DPI
    panel_h = 1.55
    height_in = rows * panel_h + 0.2
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(left=0.03, right=0.97, top=1 - 0.38 / height_in, bottom=0.45 / height_in,
                        wspace=0.22, hspace=1.05)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.25, 0.25, size=len(labels))
    for ax, panel in zip(axes, panels):
        vals = np.asarray(panel["values"], dtype=np.float64)
        flags = np.asarray(panel.get("flags", np.zeros(len(vals), bool)), dtype=bool)
        lo, hi = panel["limits"]
        exp = panel.get("expected")
        if exp is not None:
            a = lo if exp[0] is None else max(lo, exp[0])
            b = hi if exp[1] is None else min(hi, exp[1])
            if b > a:
                ax.axvspan(a, b, color="#dff0d8", zorder=0, label="expected range")
        ok = np.isfinite(vals)
        ax.scatter(vals[ok & ~flags], jitter[ok & ~flags], s=22, c="#1f6fb4", zorder=3)
        ax.scatter(vals[ok & flags], jitter[ok & flags], s=30, c="#c62828", marker="D", zorder=4)
        for i in np.flatnonzero(ok & flags)[:6]:
            ax.annotate(labels[i], (vals[i], jitter[i]), xytext=(3, 3), textcoords="offset points", fontsize=8,
                        color="#c62828")
        if ok.any():
            ax.axvline(float(np.median(vals[ok])), color="0.3", lw=1, ls="--", zorder=2)
        ax.set_xlim(lo, hi)
        ax.set_ylim(-0.6, 0.6)
        ax.set_yticks([])
        ax.set_title(panel["title"], fontsize=9.5, loc="left")
        ax.tick_params(axis="x", labelsize=8.5)
        ax.xaxis.set_major_locator(__import__("matplotlib.ticker", fromlist=["MaxNLocator"]).MaxNLocator(5))
        missing = int((~ok).sum())
        if missing:
            ax.text(0.99, 0.04, f"{missing} n/a", transform=ax.transAxes, ha="right", fontsize=7.5, color="0.4")
    for ax in axes[n:]:
        ax.set_visible(False)
    return _save(fig, path)


def plot_harmonization(panels: Sequence[Mapping[str, Any]], path: str | Path, *, width_px: int = 1080,
                       bins: int = 50) -> Path:
    """Harmonization, one column per tissue. Top: histograms (densities) of normalised intensity — the reference
    site (grey), the participants' own T1w (orange) and their harmonized images (blue), each distribution a
    Wasserstein barycentre (mean quantile function) of its images, so each histogram is of equally weighted
    quantile values. Bottom: each participant's W1 to the reference before → after (green: closer, red: not),
    the reference site's own spread shaded. ``panels``: ``{"title", "reference", "before", "after" (quantile
    functions), "distance_before", "distance_after" (per participant), "spread" (float)}``."""
    n = len(panels)
    width_in = width_px / _DPI
    height_in = 6.2
    fig = Figure(figsize=(width_in, height_in))
    fig.subplots_adjust(left=0.07, right=0.985, top=0.90, bottom=0.08, wspace=0.28, hspace=0.42)
    axes = fig.subplots(2, max(n, 1), squeeze=False)
    colours = {"reference": "0.55", "before": "#e66100", "after": "#1f6fb4"}
    names = {"reference": "reference site", "before": "own T1w (before)", "after": "harmonized (after)"}
    for col, panel in enumerate(panels):
        ax = axes[0, col]
        q = {k: np.asarray(panel[k], dtype=np.float64) for k in ("reference", "before", "after")
             if panel.get(k) is not None}
        values = np.concatenate(list(q.values())) if q else np.zeros(1)
        lo, hi = np.percentile(values, [0.5, 99.5])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        pad = 0.05 * (hi - lo)
        edges = np.linspace(lo - pad, hi + pad, bins + 1)
        if "reference" in q:
            ax.hist(np.clip(q["reference"], edges[0], edges[-1]), edges, density=True, color="0.82",
                    label=names["reference"])
        for key in ("before", "after"):
            if key in q:
                ax.hist(np.clip(q[key], edges[0], edges[-1]), edges, density=True, histtype="step", lw=1.8,
                        color=colours[key], label=names[key])
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.set_xlabel("normalised intensity", fontsize=8.5)
        ax.tick_params(labelsize=8)
        if col == 0:
            ax.set_ylabel("density", fontsize=8.5)
        ax = axes[1, col]
        b = np.asarray(panel["distance_before"], dtype=np.float64)
        a = np.asarray(panel["distance_after"], dtype=np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        top = max([float(np.nanmax(np.concatenate([a[ok], b[ok]]))) if ok.any() else 0.0,
                   float(panel.get("spread") or 0.0)]) * 1.15 or 1.0
        spread = panel.get("spread")
        if spread is not None and np.isfinite(spread):
            ax.axhspan(0, spread, color="#eceff3", zorder=0, label="reference spread")
        for x0, x1 in zip(b[ok], a[ok]):
            ax.plot([0, 1], [x0, x1], "-o", ms=4, lw=1.3, color="#2e7d32" if x1 < x0 else "#c62828", zorder=3)
        ax.set_xlim(-0.3, 1.3)
        ax.set_ylim(0, top)
        ax.set_xticks([0, 1], ["own T1w", "harmonized"], fontsize=8.5)
        ax.tick_params(axis="y", labelsize=8)
        if col == 0:
            ax.set_ylabel("W1 to reference", fontsize=8.5)
        closer = int((a[ok] < b[ok]).sum())
        ax.set_title(f"closer after harmonization: {closer} of {int(ok.sum())}", fontsize=9, loc="left")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[1, 0].get_legend_handles_labels()
    from matplotlib.lines import Line2D

    extra = [Line2D([], [], color="#2e7d32", marker="o", ms=4, label="closer to the reference"),
             Line2D([], [], color="#c62828", marker="o", ms=4, label="not closer")]
    fig.legend(handles + h2 + extra, labels + l2 + [e.get_label() for e in extra], loc="upper center", ncol=6,
               fontsize=8.5, frameon=False)
    return _save(fig, path)


def group_axis_limits(values: NDArray, natural: tuple[float | None, float | None], min_span: float,
                      expected: tuple[float | None, float | None] | None = None) -> tuple[float, float]:
    """An axis range for a group panel: the data (and the expected-range edges) padded, at least ``min_span``
    wide (so 0.964 vs 0.966 does not look like a spread), clipped to the measure's ``natural`` range."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    points = list(v)
    for e in (expected or (None, None)):
        if e is not None:
            points.append(float(e))
    if not points:
        lo, hi = natural[0] if natural[0] is not None else 0.0, natural[1] if natural[1] is not None else 1.0
        return float(lo), float(hi)
    lo, hi = min(points), max(points)
    span = max(hi - lo, min_span)
    centre = 0.5 * (lo + hi)
    lo, hi = centre - 0.55 * span, centre + 0.55 * span
    if natural[0] is not None and lo < natural[0]:
        hi, lo = hi + (natural[0] - lo), natural[0]
    if natural[1] is not None and hi > natural[1]:
        lo, hi = max(lo - (hi - natural[1]), natural[0] if natural[0] is not None else -np.inf), natural[1]
    if v.size:  # never hide a value: a measure outside its usual range (a negative SSIM) widens the axis
        lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    edge = 0.03 * (hi - lo)  # a point on a natural bound (coverage 0, r 1) stays visible inside the frame
    return float(lo - edge), float(hi + edge)

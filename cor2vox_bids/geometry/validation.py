"""Checks of a participant's surfaces before any work: fail early with the file and the fix.

:func:`validate_hemisphere` raises :class:`~cor2vox_bids.errors.SurfaceError` naming the file
for non-finite vertices, face indices out of range, white/pial vertex counts that differ,
inconsistently wound faces, surfaces outside the T1w field of view, surfaces in the wrong frame
(shifted by ``c_ras``: FreeSurfer tkr RAS used as scanner RAS or the reverse) and a hemisphere
on the wrong side. Meshes wound inwards as a whole are flipped in place and reported in the
returned warnings. :func:`validate_pair` also checks that left and right are not swapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import SurfaceError
from ._linalg import transform
from .surfaces import Hemisphere, Surface

#: fraction of vertices allowed outside the T1w field of view
FOV_TOLERANCE = 0.01
#: a hemisphere centroid this far (mm) on the wrong side of the midline is an error
MIDLINE_MARGIN = 5.0


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed mesh (mm^3), positive when the faces are wound outwards."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    centre = v.mean(axis=0)  # better conditioned than the origin
    return float(np.einsum("ij,ij->i", a - centre, np.cross(b - centre, c - centre)).sum() / 6.0)


def same_direction_edges(faces: np.ndarray) -> int:
    """Number of directed edges used twice: 0 for a consistently wound manifold mesh."""
    f = np.asarray(faces, dtype=np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    n = int(directed.max(initial=0)) + 1
    key = directed[:, 0] * n + directed[:, 1]
    _, counts = np.unique(key, return_counts=True)
    return int((counts > 1).sum())


def _frame_hint(path: Path | None) -> str:
    if path is not None and path.name.endswith(".gii"):
        return "GIFTI surfaces must be in scanner RAS (as sMRIPrep writes them)"
    return (
        "FreeSurfer surfaces are in tkr RAS and must be mapped to scanner RAS with the subject's "
        "mri/orig.mgz (check that the subjects directory and the T1w belong together)"
    )


def check_surface(surf: Surface, name: str) -> list[str]:
    """Finite vertices, faces in range, consistent winding; flips inward-wound meshes in place."""
    v, f, path = surf.vertices, surf.faces, surf.path
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise SurfaceError(f"{name} surface has no (n, 3) vertex array (shape {v.shape})", path=path)
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise SurfaceError(
            f"{name} surface has {int(bad.sum())} vertices with NaN/inf coordinates "
            f"(first: vertex {int(np.flatnonzero(bad)[0])})",
            path=path,
        )
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0:
        raise SurfaceError(f"{name} surface has no (m, 3) face array (shape {f.shape})", path=path)
    if f.min() < 0 or f.max() >= len(v):
        raise SurfaceError(
            f"{name} surface has face indices out of range [{int(f.min())}, {int(f.max())}] "
            f"for {len(v)} vertices",
            path=path,
        )
    warnings = []
    mixed = same_direction_edges(f)
    if mixed:
        raise SurfaceError(
            f"{name} surface has inconsistently wound faces ({mixed} edges are traversed in the "
            "same direction by two faces); re-run the surface reconstruction or repair the mesh",
            path=path,
        )
    if signed_volume(v, f) < 0:
        surf.faces = np.ascontiguousarray(f[:, ::-1])
        warnings.append(f"{path or name}: faces were wound inwards (negative volume); fixed by flipping them")
    return warnings


def _t1_frame(t1_img) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    aff = np.asarray(t1_img.affine, dtype=np.float64)
    shape = tuple(int(s) for s in t1_img.shape[:3])
    return aff, shape, aff[:3, :3] @ (np.asarray(shape, dtype=np.float64) / 2.0) + aff[:3, 3]


def _fit(vertices: np.ndarray, t1_img, data: np.ndarray | None, threshold: float) -> tuple[float, float]:
    """(fraction inside the field of view, fraction inside the head) of the vertices."""
    aff, shape, _ = _t1_frame(t1_img)
    ijk = transform(vertices, np.linalg.inv(aff))
    idx = np.rint(ijk).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
    fov = float(inside.mean())
    if data is None:
        return fov, fov
    vals = np.zeros(len(vertices))
    sel = idx[inside]
    vals[inside] = data[sel[:, 0], sel[:, 1], sel[:, 2]]
    return fov, float((vals > threshold).mean())


def _head_threshold(t1_img) -> tuple[np.ndarray, float]:
    """The T1w array and an intensity separating the head from the background (5 % of the
    99th percentile of positive voxels, estimated on every 4th voxel along each axis)."""
    data = np.asanyarray(t1_img.dataobj)
    data = data[..., 0] if data.ndim == 4 else data
    sub = data[::4, ::4, ::4]
    pos = sub[sub > 0]
    return data, (0.05 * float(np.percentile(pos, 99)) if pos.size else 0.0)


def check_frame(hemi: Hemisphere, t1_img, check_side: bool = True) -> list[str]:
    """Surfaces inside the T1w field of view and head, not shifted by c_ras, and (with
    ``check_side``) on their side of the T1w centre."""
    aff, shape, c_ras = _t1_frame(t1_img)
    surf = hemi.pial
    data, threshold = _head_threshold(t1_img)
    fov, _ = _fit(surf.vertices, t1_img, None, threshold)
    white = hemi.white.vertices  # the white surface lies in bright voxels, the pial one may not
    _, head = _fit(white, t1_img, data, threshold)
    warnings: list[str] = []
    if np.linalg.norm(c_ras) > 2.0 * float(np.abs(aff[:3, :3]).max()):
        for sign in (1.0, -1.0):
            fov_s, _ = _fit(surf.vertices + sign * c_ras, t1_img, None, threshold)
            _, head_s = _fit(white + sign * c_ras, t1_img, data, threshold)
            if head_s >= 0.95 and head_s - head > 0.1 and fov_s >= fov:
                direction = "added to" if sign > 0 else "subtracted from"
                raise SurfaceError(
                    f"surfaces of hemisphere {hemi.hemi} fit the T1w only when c_ras "
                    f"({c_ras[0]:.1f}, {c_ras[1]:.1f}, {c_ras[2]:.1f}) mm is {direction} them "
                    f"({head:.0%} of vertices in the head as given, {head_s:.0%} shifted): they are "
                    f"in the wrong frame (tkr RAS vs scanner RAS). {_frame_hint(surf.path)}",
                    path=surf.path,
                )
    if 1.0 - fov > FOV_TOLERANCE:
        raise SurfaceError(
            f"{1.0 - fov:.0%} of the pial vertices of hemisphere {hemi.hemi} lie outside the "
            f"T1w field of view; the surfaces do not belong to this T1w or are in the wrong frame. "
            f"{_frame_hint(surf.path)}",
            path=surf.path,
        )
    if head < 0.9:
        warnings.append(
            f"{hemi.white.path}: only {head:.0%} of the white-surface vertices lie in non-dark T1w voxels; "
            "check that the surfaces belong to this T1w"
        )
    cx = float(hemi.white.vertices[:, 0].mean())
    wrong_side = (hemi.hemi == "L" and cx > c_ras[0] + MIDLINE_MARGIN) or (
        hemi.hemi == "R" and cx < c_ras[0] - MIDLINE_MARGIN
    )
    if check_side and wrong_side:
        side = "right" if hemi.hemi == "L" else "left"
        raise SurfaceError(
            f"hemisphere {hemi.hemi} lies on the {side} of the T1w centre (centroid x {cx:.1f} mm, "
            f"centre x {c_ras[0]:.1f} mm): left and right surfaces are swapped",
            path=hemi.white.path,
        )
    return warnings


def validate_hemisphere(hemi: Hemisphere, t1_img=None) -> list[str]:
    """Validate one hemisphere (optionally against its T1w image); return warnings, raise
    :class:`SurfaceError` for unusable surfaces. Inward-wound meshes are fixed in place."""
    if hemi.hemi not in ("L", "R"):
        raise SurfaceError(f"hemisphere must be 'L' or 'R', got {hemi.hemi!r}", path=hemi.white.path)
    warnings = check_surface(hemi.white, "white") + check_surface(hemi.pial, "pial")
    n_w, n_p = hemi.white.n_vertices, hemi.pial.n_vertices
    if n_w != n_p:
        raise SurfaceError(
            f"white surface has {n_w} vertices but the pial surface has {n_p}; they must come from "
            f"the same reconstruction (white: {hemi.white.path})",
            path=hemi.pial.path,
        )
    for what, arr in (("annotation labels", hemi.labels), ("thickness values", hemi.thickness)):
        if arr is not None and len(arr) != n_w:
            raise SurfaceError(
                f"{what} have {len(arr)} entries but the surfaces have {n_w} vertices", path=hemi.white.path
            )
    if t1_img is not None:
        warnings += check_frame(hemi, t1_img)
    return warnings


def validate_pair(lh: Hemisphere, rh: Hemisphere, t1_img=None) -> list[str]:
    """Validate both hemispheres and check that left and right are not swapped."""
    if lh.hemi != "L" or rh.hemi != "R":
        raise SurfaceError(
            f"expected hemispheres L and R, got {lh.hemi!r} and {rh.hemi!r}", path=lh.white.path
        )
    warnings: list[str] = []
    for hemi in (lh, rh):
        warnings += validate_hemisphere(hemi, None)
    xl = float(lh.white.vertices[:, 0].mean())
    xr = float(rh.white.vertices[:, 0].mean())
    if xl >= xr:
        raise SurfaceError(
            f"the left hemisphere (centroid x {xl:.1f} mm) lies right of the right hemisphere "
            f"(centroid x {xr:.1f} mm): left and right surfaces are swapped (also check {rh.white.path})",
            path=lh.white.path,
        )
    if t1_img is not None:
        # read the image once for both hemispheres
        t1_img = nib.Nifti1Image(np.asanyarray(t1_img.dataobj), t1_img.affine)
        # the midline between the hemispheres decides the side; then field of view and frame
        for hemi in (lh, rh):
            warnings += check_frame(hemi, t1_img, check_side=False)
    return warnings


# ---- frame and identity: the T1w must show WM > GM > CSF across the surfaces ------------------------------------

#: mm beyond the white surface (inwards) and beyond the pial surface (outwards) where WM and CSF are sampled
CONTRAST_OFFSET_MM = 1.25
#: vertices whose white→pial distance lies outside this range (medial wall, defects) are not sampled
CONTRAST_THICKNESS_MM = (1.0, 6.0)
#: at most this many vertices per hemisphere are sampled (evenly spaced in the vertex order)
CONTRAST_MAX_VERTICES = 20000
#: a participant whose surfaces show the WM > GM > CSF step at fewer vertices than this fraction fails
CONTRAST_MIN_SCORE = 0.65
#: fewest usable vertices for a verdict; fewer only gives a warning
CONTRAST_MIN_VERTICES = 100


@dataclass(frozen=True)
class TissueContrast:
    """How well the T1w's intensities step down across a hemisphere's surfaces.

    At each sampled vertex the T1w is read (trilinear) at three points on the line from the white vertex to its
    pial vertex: ``offset`` mm inside the white surface (white matter), half-way (mid-cortex grey matter) and
    ``offset`` mm outside the pial surface (CSF). ``wm_over_gm`` and ``gm_over_csf`` are the fractions of vertices
    where the first sample is brighter than the second, and the second than the third; ``score`` is the smaller of
    the two. Surfaces in the T1w's frame and of the T1w's person score high; surfaces shifted by more than the
    cortical thickness or of another person sample unrelated tissue at all three points and score near 0.5.
    """

    n_vertices: int
    wm: float
    gm: float
    csf: float
    wm_over_gm: float
    gm_over_csf: float

    @property
    def score(self) -> float:
        """min(wm_over_gm, gm_over_csf); NaN when nothing was sampled."""
        return min(self.wm_over_gm, self.gm_over_csf)

    def describe(self) -> str:
        """One human-readable line."""
        return (f"WM > GM at {self.wm_over_gm:.0%} and GM > CSF at {self.gm_over_csf:.0%} of {self.n_vertices} "
                f"vertices (median T1w WM {self.wm:.4g}, GM {self.gm:.4g}, CSF {self.csf:.4g})")


def sample_volume(data: np.ndarray, affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear samples of a 3D volume at world points (n, 3); NaN outside the field of view."""
    from scipy.ndimage import map_coordinates

    ijk = transform(points, np.linalg.inv(np.asarray(affine, dtype=np.float64)))
    shape = np.asarray(data.shape[:3])
    inside = np.all((ijk >= 0) & (ijk <= shape - 1), axis=1)
    out = np.full(len(points), np.nan)
    if inside.any():
        out[inside] = map_coordinates(np.asarray(data, dtype=np.float32), ijk[inside].T, order=1, mode="nearest")
    return out


def tissue_samples(hemi: Hemisphere, data: np.ndarray, affine: np.ndarray, shift: np.ndarray | None = None,
                   offset: float = CONTRAST_OFFSET_MM,
                   max_vertices: int = CONTRAST_MAX_VERTICES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(WM, GM, CSF) T1w samples at the usable vertices of ``hemi`` (optionally moved by ``shift`` mm)."""
    w = np.asarray(hemi.white.vertices, dtype=np.float64)
    p = np.asarray(hemi.pial.vertices, dtype=np.float64)
    if w.shape != p.shape or len(w) == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    step = max(1, -(-len(w) // max_vertices))
    w, p = w[::step], p[::step]
    d = p - w
    length = np.linalg.norm(d, axis=1)
    lo, hi = CONTRAST_THICKNESS_MM
    keep = np.isfinite(length) & (length >= lo) & (length <= hi)
    w, p, d = w[keep], p[keep], d[keep] / length[keep, None]
    if shift is not None:
        w, p = w + shift, p + shift
    wm = sample_volume(data, affine, w - offset * d)
    gm = sample_volume(data, affine, 0.5 * (w + p))
    csf = sample_volume(data, affine, p + offset * d)
    ok = np.isfinite(wm) & np.isfinite(gm) & np.isfinite(csf)
    return wm[ok], gm[ok], csf[ok]


def tissue_contrast(hemi: Hemisphere, data: np.ndarray, affine: np.ndarray,
                    shift: np.ndarray | None = None, offset: float = CONTRAST_OFFSET_MM) -> TissueContrast:
    """The :class:`TissueContrast` of one hemisphere against a T1w array and its affine."""
    wm, gm, csf = tissue_samples(hemi, data, affine, shift, offset)
    if len(wm) == 0:
        nan = float("nan")
        return TissueContrast(0, nan, nan, nan, nan, nan)
    return TissueContrast(len(wm), float(np.median(wm)), float(np.median(gm)), float(np.median(csf)),
                          float(np.mean(wm > gm)), float(np.mean(gm > csf)))


#: a better fit this much higher (score) …
CONTRAST_MAX_GAIN = 0.03
#: … at a translation at least this long (mm) means the surfaces are displaced relative to the T1w
CONTRAST_MAX_SHIFT_MM = 2.5
#: vertices per hemisphere used while searching for a better-fitting translation
_SEARCH_VERTICES = 4000
_SEARCH_STEPS_MM = (4.0, 2.0, 1.0)
_SEARCH_RANGE_MM = 12.0


def best_translation(hemi: Hemisphere, data: np.ndarray, affine: np.ndarray,
                     max_vertices: int = _SEARCH_VERTICES) -> tuple[np.ndarray, float, float]:
    """The translation (mm) near zero that maximises the WM > GM > CSF score: a greedy search along the axes
    with steps of 4, 2 and 1 mm, within ±12 mm. Returns (translation, score there, score at zero), both scores
    on the same ``max_vertices`` subsample."""

    def score(shift: np.ndarray) -> float:
        wm, gm, csf = tissue_samples(hemi, data, affine, shift, max_vertices=max_vertices)
        return min(float(np.mean(wm > gm)), float(np.mean(gm > csf))) if len(wm) else float("nan")

    current = np.zeros(3)
    at_zero = best = score(current)
    if not np.isfinite(at_zero):
        return current, at_zero, at_zero
    moves = np.concatenate([np.eye(3), -np.eye(3)])
    for step in _SEARCH_STEPS_MM:
        for _ in range(int(_SEARCH_RANGE_MM / step)):
            trials = [current + step * m for m in moves if np.abs(current + step * m).max() <= _SEARCH_RANGE_MM]
            scores = [score(t) for t in trials]
            k = int(np.nanargmax(scores)) if trials else -1
            if k < 0 or not scores[k] > best:
                break
            current, best = trials[k], scores[k]
    return current, best, at_zero


def check_tissue_contrast(hemi: Hemisphere, data: np.ndarray, affine: np.ndarray,
                          frame_shift: np.ndarray | None = None) -> tuple[TissueContrast, list[str]]:
    """Do the surfaces sit on this T1w's cortex? Raises :class:`SurfaceError` naming the white surface when the
    T1w does not step down WM > GM > CSF across them (score below ``CONTRAST_MIN_SCORE``: another person's
    surfaces, or a frame several mm off), or when they fit clearly better moved by ``CONTRAST_MAX_SHIFT_MM`` mm or
    more (a displaced frame). ``frame_shift`` (a ``c_ras``, or several as rows) is tried both ways to name a
    tkr/scanner RAS mix-up. Returns the measured contrast and warnings (too few vertices in the field of view to
    judge)."""
    path = hemi.white.path
    c0 = tissue_contrast(hemi, data, affine)
    if c0.n_vertices < CONTRAST_MIN_VERTICES:
        return c0, [f"{path or hemi.hemi}: only {c0.n_vertices} vertices could be sampled in the T1w; the "
                    "surface-to-T1w contrast check was skipped"]
    problem = None
    if c0.score < CONTRAST_MIN_SCORE:
        problem = (f"hemisphere {hemi.hemi} does not match the T1w: {c0.describe()}, score {c0.score:.2f} < "
                   f"{CONTRAST_MIN_SCORE:.2f}")
        cause = "; these are another person's surfaces or they are in the wrong frame"
    else:
        shift, best, at_zero = best_translation(hemi, data, affine)
        if best - at_zero >= CONTRAST_MAX_GAIN and np.linalg.norm(shift) >= CONTRAST_MAX_SHIFT_MM:
            problem = (f"hemisphere {hemi.hemi} is displaced relative to the T1w: it fits best when moved by "
                       f"({shift[0]:+.0f}, {shift[1]:+.0f}, {shift[2]:+.0f}) mm (WM > GM > CSF score {at_zero:.2f} "
                       f"as given, {best:.2f} moved)")
            cause = "; check that the surfaces and the T1w come from the same scan and frame"
    if problem is None:
        return c0, []
    candidates = [] if frame_shift is None else np.asarray(frame_shift, dtype=np.float64).reshape(-1, 3)
    hint = None
    for fs in candidates:
        if np.linalg.norm(fs) <= 2.0 or hint is not None:
            continue
        for sign, verb in ((1.0, "added to"), (-1.0, "subtracted from")):
            c = tissue_contrast(hemi, data, affine, sign * fs)
            if c.score >= CONTRAST_MIN_SCORE and c.score - c0.score >= CONTRAST_MAX_GAIN:
                hint = (f"; they fit when c_ras ({fs[0]:.1f}, {fs[1]:.1f}, {fs[2]:.1f}) mm is {verb} them "
                        f"(score {c.score:.2f}): wrong frame (tkr RAS vs scanner RAS). {_frame_hint(path)}")
                break
    raise SurfaceError(problem + (hint or cause), path=path)

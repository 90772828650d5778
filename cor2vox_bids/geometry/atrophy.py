"""Progressive grey-matter atrophy on surfaces: the spec, the per-vertex prescription and the thinned pial.

An atrophy spec (JSON or YAML) prescribes thinning per region at the last of ``steps`` steps::

    {"steps": 3, "falloff_mm": 5, "floor_mm": 0.5,
     "regions": [{"hemi": "L", "label": "precentral", "thinning_mm": 1.0},
                 {"hemi": "R", "label": "labels/rh.spot.label", "thinning_fraction": 0.2}]}

``label`` is a Desikan-Killiany region name (from the participant's annotation) or a FreeSurfer ``.label`` file,
relative to the spec's folder. ``thinning_mm`` is an amount of cortical thickness, ``thinning_fraction`` a
fraction of the local (baseline) thickness. Step k of N applies k/N of it (linear). :func:`load_atrophy_spec`
validates everything before any work: a content error (unknown region, bad key or value) raises
:class:`~cor2vox_bids.errors.UsageError` (exit 64), a missing or unreadable spec or label file
:class:`~cor2vox_bids.errors.MissingInputError` (exit 66), both naming the file.

Surface side: each pial vertex moves inward on the line from its white vertex (the white→pial direction). The
prescription per vertex is the region's amount times a falloff weight: 1 on the region's vertices, ``0.5·(1 +
cos(π·d/falloff_mm))`` at distance d < falloff_mm outside it, 0 beyond. d is a geodesic-ish distance: the shortest
path along the edges of the mid-thickness mesh (Dijkstra; zigzag paths along edges are up to ≈ 1.2 times the true
geodesic — 1.05 typical, measured on an icosphere — so the taper is at most that much narrower, never wider).
Overlapping prescriptions take the larger thinning. The prescription is a change of FreeSurfer's closest-point
thickness (what :func:`~cor2vox_bids.geometry.cortical_thickness` measures); on oblique lines that needs a longer
move, so the displacement is solved per vertex (:func:`solve_displacement`). A vertex never comes closer to its
white vertex than ``floor_mm`` (vertices already thinner do not move). The white surface is unchanged.
Intersections are checked on the moved faces (:mod:`.intersections`): pial self-intersections, pial–white
crossings and faces folded over that the baseline did not have; vertices of such faces have their displacement
halved (at most :data:`MAX_BACKOFF` times, then set to zero) until none is new, and the count is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from ..errors import MissingInputError, ParticipantError, UsageError
from ._closest import TriangleIndex, build_index, mesh_distance
from .atlas import DK_REGIONS
from .intersections import NewIntersections, flipped_faces
from .surfaces import Hemisphere
from .thickness import cortical_thickness

__all__ = [
    "DEFAULT_FALLOFF_MM",
    "DEFAULT_FLOOR_MM",
    "MAX_STEPS",
    "AtrophySpec",
    "Prescription",
    "RegionSpec",
    "ThinnedPial",
    "falloff_weights",
    "load_atrophy_spec",
    "mesh_edge_distance",
    "prescribe",
    "region_mask",
    "solve_displacement",
    "thin_pial",
    "thinned_series",
]

DEFAULT_FALLOFF_MM = 5.0
DEFAULT_FLOOR_MM = 0.5
#: step numbers are written with two digits (desc-atrophy01 … desc-atrophy99)
MAX_STEPS = 99
#: the largest thinning in mm a spec may ask for (FreeSurfer caps thickness at 5 mm)
MAX_THINNING_MM = 5.0
#: halvings of a vertex's displacement before it is set to zero when its faces intersect
MAX_BACKOFF = 6
#: fixed-point iterations that turn a prescribed thickness change into a displacement along the line
CALIBRATION_ITERATIONS = 3

_SPEC_KEYS = {"steps", "regions", "falloff_mm", "floor_mm"}
_REGION_KEYS = {"hemi", "label", "thinning_mm", "thinning_fraction"}
_HEMI_ALIASES = {"L": "L", "LH": "L", "LEFT": "L", "R": "R", "RH": "R", "RIGHT": "R"}


# --------------------------------------------------------------------------------------------------------------
# the spec


@dataclass(frozen=True, eq=False)
class RegionSpec:
    """One prescribed region: hemisphere, DK name or label file, and the thinning at the last step."""

    hemi: str
    label: str
    name: str
    thinning_mm: float | None = None
    thinning_fraction: float | None = None
    label_path: Path | None = None
    label_vertices: NDArray[np.int64] | None = None

    @property
    def amount(self) -> str:
        """Human-readable prescription, e.g. ``1.0 mm`` or ``20 % of the thickness``."""
        if self.thinning_mm is not None:
            return f"{self.thinning_mm:g} mm"
        return f"{100 * float(self.thinning_fraction):g} % of the thickness"

    def to_dict(self) -> dict[str, Any]:
        """The region as written in a normalised spec (for sidecars)."""
        out: dict[str, Any] = {"hemi": self.hemi, "label": self.label, "region": self.name}
        if self.thinning_mm is not None:
            out["thinning_mm"] = self.thinning_mm
        else:
            out["thinning_fraction"] = self.thinning_fraction
        return out


@dataclass(frozen=True, eq=False)
class AtrophySpec:
    """A validated atrophy spec (see the module docstring)."""

    steps: int
    regions: tuple[RegionSpec, ...]
    falloff_mm: float = DEFAULT_FALLOFF_MM
    floor_mm: float = DEFAULT_FLOOR_MM
    path: Path | None = None

    def regions_of(self, hemi: str) -> tuple[RegionSpec, ...]:
        """The regions prescribed on one hemisphere (``'L'`` or ``'R'``)."""
        return tuple(r for r in self.regions if r.hemi == hemi)

    def fraction(self, step: int) -> float:
        """Share of the final thinning applied at ``step`` (1..steps): linear, ``step / steps``."""
        if not 1 <= step <= self.steps:
            raise ValueError(f"step must be in 1..{self.steps}, got {step}")
        return step / self.steps

    def to_dict(self) -> dict[str, Any]:
        """Normalised spec (defaults filled in, regions resolved) for sidecars and hashing."""
        return {
            "steps": self.steps,
            "falloff_mm": self.falloff_mm,
            "floor_mm": self.floor_mm,
            "regions": [r.to_dict() for r in self.regions],
        }


def _read_spec_file(path: Path) -> Any:
    if not path.is_file():
        raise MissingInputError("atrophy spec not found", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MissingInputError(f"cannot read the atrophy spec ({exc})", path=path) from exc
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml  # only needed for YAML specs

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise UsageError(f"atrophy spec is not valid YAML ({exc})", path=path) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"atrophy spec is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "YAML specs must end in .yaml or .yml",
            path=path,
        ) from exc


def _number(value: Any, what: str, path: Path, *, low: float, high: float, low_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise UsageError(f"{what} must be a number, got {value!r}", path=path)
    v = float(value)
    if v < low or (low_open and v == low) or v > high:
        bracket = "(" if low_open else "["
        raise UsageError(f"{what} must be in {bracket}{low:g}, {high:g}], got {v:g}", path=path)
    return v


def _parse_label(text: str) -> NDArray[np.int64]:
    """Vertex numbers of a FreeSurfer ASCII label: a comment line, the count, then ``vertex x y z value`` rows."""
    lines = [ln for ln in text.splitlines()[1:] if ln.strip()]
    if not lines:
        raise ValueError("no vertex count on the second line")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"the second line must be the vertex count, got {lines[0].strip()[:40]!r}") from None
    rows = lines[1:]
    if count <= 0 or len(rows) != count:
        raise ValueError(f"the header announces {count} vertices, the file lists {len(rows)}")
    vertices = np.empty(count, dtype=np.int64)
    for i, row in enumerate(rows):
        fields = row.split()
        if len(fields) != 5:
            raise ValueError(f"row {i + 3} must hold 'vertex x y z value', got {row.strip()[:60]!r}")
        try:
            vertices[i] = int(fields[0])
            [float(x) for x in fields[1:]]
        except ValueError:
            raise ValueError(f"row {i + 3} is not numeric: {row.strip()[:60]!r}") from None
    if vertices.min() < 0:
        raise ValueError("negative vertex numbers (a volume label, not a surface label?)")
    return np.unique(vertices)


def _read_label_file(path: Path) -> NDArray[np.int64]:
    if not path.is_file():
        raise MissingInputError("label file named in the atrophy spec not found", path=path)
    try:
        return _parse_label(path.read_text(encoding="ascii"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise MissingInputError(f"cannot read the FreeSurfer label file ({exc})", path=path) from exc


def _is_label_file(label: str) -> bool:
    return label.endswith(".label") or "/" in label or "\\" in label


def _region(item: Any, i: int, path: Path) -> RegionSpec:
    where = f"regions[{i}]"
    if not isinstance(item, dict):
        raise UsageError(f"{where} must be an object with hemi, label and thinning_mm or thinning_fraction",
                         path=path)
    unknown = sorted(set(item) - _REGION_KEYS)
    if unknown:
        raise UsageError(f"{where} has unknown keys {unknown}; allowed: {sorted(_REGION_KEYS)}", path=path)
    hemi = _HEMI_ALIASES.get(str(item.get("hemi", "")).upper())
    if hemi is None:
        raise UsageError(f"{where}.hemi must be 'L' or 'R', got {item.get('hemi')!r}", path=path)
    label = item.get("label")
    if not isinstance(label, str) or not label.strip():
        raise UsageError(f"{where}.label must be a DK region name or a .label file, got {label!r}", path=path)
    label = label.strip()
    has_mm, has_frac = "thinning_mm" in item, "thinning_fraction" in item
    if has_mm == has_frac:
        raise UsageError(f"{where} needs exactly one of thinning_mm and thinning_fraction", path=path)
    mm = frac = None
    if has_mm:
        mm = _number(item["thinning_mm"], f"{where}.thinning_mm", path, low=0.0, high=MAX_THINNING_MM,
                     low_open=True)
    else:
        frac = _number(item["thinning_fraction"], f"{where}.thinning_fraction", path, low=0.0, high=1.0,
                       low_open=True)
        if frac >= 1.0:
            raise UsageError(f"{where}.thinning_fraction must be below 1, got {frac:g}", path=path)
    if _is_label_file(label):
        label_path = (path.parent / label).resolve()
        stem = label_path.name[: -len(".label")] if label_path.name.endswith(".label") else label_path.name
        prefix = stem[:3].lower()
        if prefix in ("lh.", "rh.") and {"lh.": "L", "rh.": "R"}[prefix] != hemi:
            raise UsageError(f"{where}: label file {label!r} is named for the other hemisphere than hemi "
                             f"{hemi!r}", path=path)
        return RegionSpec(hemi, label, stem, mm, frac, label_path, _read_label_file(label_path))
    if label not in DK_REGIONS:
        import difflib

        close = difflib.get_close_matches(label.lower(), sorted(DK_REGIONS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(
            f"{where}.label {label!r} is neither a Desikan-Killiany region nor a .label file{hint}. "
            f"Valid region names: {', '.join(sorted(DK_REGIONS))}",
            path=path,
        )
    return RegionSpec(hemi, label, label, mm, frac)


def load_atrophy_spec(path: str | Path) -> AtrophySpec:
    """Read and validate an atrophy spec (JSON, or YAML by suffix); label files are read here too.

    Raises :class:`UsageError` (64) for content errors, :class:`MissingInputError` (66) for a missing or
    unreadable spec or label file; both name the file.
    """
    path = Path(path).absolute()
    data = _read_spec_file(path)
    if not isinstance(data, dict):
        raise UsageError("atrophy spec must be an object with steps, regions and falloff_mm", path=path)
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise UsageError(f"atrophy spec has unknown keys {unknown}; allowed: {sorted(_SPEC_KEYS)}", path=path)
    steps = data.get("steps")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise UsageError(f"steps must be an integer in 1..{MAX_STEPS}, got {steps!r}", path=path)
    falloff = _number(data.get("falloff_mm", DEFAULT_FALLOFF_MM), "falloff_mm", path, low=0.0, high=50.0)
    floor = _number(data.get("floor_mm", DEFAULT_FLOOR_MM), "floor_mm", path, low=0.0, high=5.0)
    items = data.get("regions")
    if not isinstance(items, list) or not items:
        raise UsageError("regions must be a non-empty list", path=path)
    regions = tuple(_region(item, i, path) for i, item in enumerate(items))
    seen: set[tuple[str, str]] = set()
    for r in regions:
        key = (r.hemi, str(r.label_path) if r.label_path is not None else r.name)
        if key in seen:
            raise UsageError(f"region {r.label!r} on hemi {r.hemi} is prescribed twice", path=path)
        seen.add(key)
    names = {(r.hemi, r.name) for r in regions}
    if len(names) != len(regions):
        raise UsageError("two regions on one hemisphere have the same name (rename a .label file)", path=path)
    return AtrophySpec(int(steps), regions, falloff, floor, path)


# --------------------------------------------------------------------------------------------------------------
# the per-vertex prescription


def region_mask(region: RegionSpec, hemisphere: Hemisphere) -> NDArray[np.bool_]:
    """Vertices of the hemisphere that belong to the region (DK name via the annotation, or the label file).

    Raises :class:`ParticipantError` when the participant has no annotation, the region has no vertex, or a
    label file names vertices the mesh does not have.
    """
    n = hemisphere.white.n_vertices
    if region.label_vertices is not None:
        if region.label_vertices.max() >= n:
            raise ParticipantError(
                f"label file names vertex {int(region.label_vertices.max())} but hemi-{hemisphere.hemi} has "
                f"{n} vertices (a label of another subject or resolution?)",
                path=region.label_path,
            )
        mask = np.zeros(n, dtype=bool)
        mask[region.label_vertices] = True
        return mask
    if hemisphere.labels is None or hemisphere.names is None:
        raise ParticipantError(
            f"the atrophy spec names DK region {region.name!r} but hemi-{hemisphere.hemi} has no annotation "
            "(label/?h.aparc.annot)",
            path=hemisphere.white.path,
        )
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in hemisphere.names]
    if region.name not in names:
        raise ParticipantError(
            f"the annotation of hemi-{hemisphere.hemi} has no region {region.name!r}", path=hemisphere.white.path
        )
    mask = np.asarray(hemisphere.labels) == names.index(region.name)
    if not mask.any():
        raise ParticipantError(
            f"no vertex of hemi-{hemisphere.hemi} is labelled {region.name!r}", path=hemisphere.white.path
        )
    return mask


def _edge_graph(vertices: NDArray, faces: NDArray) -> coo_matrix:
    f = np.asarray(faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.unique(np.sort(e, axis=1), axis=0)
    length = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1)
    n = len(vertices)
    return coo_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n))


def mesh_edge_distance(
    vertices: NDArray, faces: NDArray, sources: NDArray[np.bool_], limit: float = np.inf
) -> NDArray[np.float64]:
    """Shortest-path distance (mm) along mesh edges from the nearest source vertex (Dijkstra); inf beyond
    ``limit``. A geodesic-ish distance: never shorter than the geodesic, up to ≈ 20 % longer."""
    src = np.flatnonzero(np.asarray(sources, dtype=bool))
    n = len(vertices)
    if src.size == 0:
        return np.full(n, np.inf)
    graph = _edge_graph(np.asarray(vertices, dtype=np.float64), faces).tocsr()
    return np.asarray(dijkstra(graph, directed=False, indices=src, min_only=True, limit=limit), dtype=np.float64)


def falloff_weights(distance: NDArray, falloff_mm: float) -> NDArray[np.float64]:
    """Weight of the prescription at a distance from the region: 1 at 0, ``0.5·(1 + cos(π d/F))`` below F, 0
    beyond (smooth: zero slope at both ends). ``falloff_mm`` = 0 gives a hard edge."""
    d = np.asarray(distance, dtype=np.float64)
    if falloff_mm <= 0:
        return (d <= 0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        w = 0.5 * (1.0 + np.cos(np.pi * np.clip(d / falloff_mm, 0.0, 1.0)))
    return np.where(d < falloff_mm, w, 0.0)


@dataclass
class Prescription:
    """Per-vertex thinning (mm of cortical thickness) at the last step of a spec, for one hemisphere."""

    hemi: str
    amount_mm: NDArray[np.float64]
    regions: dict[str, NDArray[np.bool_]] = field(default_factory=dict)
    region_mm: dict[str, float] = field(default_factory=dict)

    def at_step(self, spec: AtrophySpec, step: int) -> NDArray[np.float64]:
        """Per-vertex thinning at ``step`` (linear)."""
        return self.amount_mm * spec.fraction(step)


def prescribe(
    spec: AtrophySpec, hemisphere: Hemisphere, thickness: NDArray | None = None
) -> Prescription:
    """Per-vertex thinning at the last step for one hemisphere (zeros where nothing is prescribed).

    ``thickness`` (per vertex, mm) is the baseline used by ``thinning_fraction``; computed with
    :func:`~cor2vox_bids.geometry.cortical_thickness` when needed and not given. ``region_mm`` is each
    prescribed region's mean thinning over its vertices.
    """
    n = hemisphere.white.n_vertices
    amount = np.zeros(n)
    regions = spec.regions_of(hemisphere.hemi)
    out = Prescription(hemisphere.hemi, amount)
    if not regions:
        return out
    white, pial = hemisphere.white, hemisphere.pial
    mid = 0.5 * (white.vertices + pial.vertices)
    if thickness is None and any(r.thinning_fraction is not None for r in regions):
        thickness = cortical_thickness(white.vertices, white.faces, pial.vertices, pial.faces)
    for r in regions:
        mask = region_mask(r, hemisphere)
        if spec.falloff_mm > 0:
            dist = mesh_edge_distance(mid, pial.faces, mask, limit=spec.falloff_mm)
        else:
            dist = np.where(mask, 0.0, np.inf)
        weight = falloff_weights(dist, spec.falloff_mm)
        local = (np.full(n, r.thinning_mm) if r.thinning_mm is not None
                 else float(r.thinning_fraction) * np.asarray(thickness, dtype=np.float64))
        np.maximum(amount, weight * local, out=amount)
        out.regions[r.name] = mask
    for name, mask in out.regions.items():
        out.region_mm[name] = float(amount[mask].mean())
    return out


# --------------------------------------------------------------------------------------------------------------
# moving the pial surface


@dataclass
class ThinnedPial:
    """A thinned pial surface and what the checks found."""

    vertices: NDArray[np.float64]
    displacement_mm: NDArray[np.float64]
    n_moved: int
    n_floored: int
    n_backed_off: int
    new_self_intersections: int
    new_white_crossings: int
    new_flipped_faces: int
    baseline_self_intersections: int
    baseline_white_crossings: int
    thickness: NDArray[np.float32] | None = None  # FreeSurfer thickness of the thinned surface, when computed

    def report(self) -> dict[str, int]:
        """Counts for sidecars and logs (intersections counted among faces with a moved vertex)."""
        return {
            "moved_vertices": self.n_moved,
            "floored_vertices": self.n_floored,
            "backed_off_vertices": self.n_backed_off,
            "new_self_intersections": self.new_self_intersections,
            "new_white_crossings": self.new_white_crossings,
            "new_flipped_faces": self.new_flipped_faces,
            "baseline_self_intersections": self.baseline_self_intersections,
            "baseline_white_crossings": self.baseline_white_crossings,
        }


def _line_geometry(white: NDArray, pial: NDArray, floor_mm: float) -> tuple[NDArray, NDArray]:
    """Unit white→pial directions (zero where the two vertices coincide) and the room above the floor (mm)."""
    delta = pial - white
    length = np.linalg.norm(delta, axis=1)
    direction = np.divide(delta, length[:, None], out=np.zeros_like(delta), where=length[:, None] > 1e-9)
    return direction, np.maximum(length - floor_mm, 0.0)


def _thickness_at(white_index: TriangleIndex, white: NDArray, pial: NDArray, pial_faces: NDArray,
                  vertices: NDArray[np.int64], cap: float) -> NDArray[np.float64]:
    """FreeSurfer thickness (as :func:`cortical_thickness`) at a subset of vertices only; the white mesh's index
    is the caller's (the white surface never moves), the pial mesh's is built here."""
    limit = 2.0 * cap
    w_to_p = mesh_distance(build_index(pial, pial_faces), white[vertices], limit)
    p_to_w = mesh_distance(white_index, pial[vertices], limit)
    return np.minimum(0.5 * (w_to_p + p_to_w), cap)


def solve_displacement(
    white_vertices: NDArray,
    white_faces: NDArray,
    pial_vertices: NDArray,
    pial_faces: NDArray,
    thinning_mm: NDArray,
    floor_mm: float = DEFAULT_FLOOR_MM,
    baseline_thickness: NDArray | None = None,
    iterations: int = CALIBRATION_ITERATIONS,
    start: NDArray | None = None,
    cap: float = 5.0,
    white_index: TriangleIndex | None = None,
) -> NDArray[np.float64]:
    """Displacement (mm, along each white→pial line) that lowers the FreeSurfer thickness by ``thinning_mm``.

    Moving a pial vertex by s along an oblique line lowers the closest-point thickness by less than s, so s is
    found by a fixed-point iteration per vertex, ``s ← s + (prescribed − measured)``, starting from
    ``start`` (default: the prescription) and kept within [0, min(2 × prescription, room above the floor)].
    Vertices whose baseline thickness reaches the ``cap`` keep s = prescription (their change is invisible).
    ``baseline_thickness`` (float64, per vertex; only the prescribed vertices are read) and ``white_index`` (the
    white mesh's :func:`~._closest.build_index`) may be passed in when several steps share them; the result is
    the same.
    """
    w = np.asarray(white_vertices, dtype=np.float64)
    p = np.asarray(pial_vertices, dtype=np.float64)
    t = np.asarray(thinning_mm, dtype=np.float64)
    direction, room = _line_geometry(w, p, floor_mm)
    limit = np.minimum(room, 2.0 * t)
    s = np.minimum(t if start is None else np.asarray(start, dtype=np.float64), limit)
    active = np.flatnonzero(t > 0)
    if active.size == 0 or iterations <= 0:
        return np.minimum(t, room)
    windex = white_index if white_index is not None else build_index(w, white_faces)
    if baseline_thickness is None:
        t0 = _thickness_at(windex, w, p, pial_faces, active, cap)
    else:
        t0 = np.asarray(baseline_thickness, dtype=np.float64)[active]
        if not np.isfinite(t0).all():
            raise ValueError("baseline_thickness is not finite on every prescribed vertex")
    active, t0 = active[t0 < cap - 1e-3], t0[t0 < cap - 1e-3]
    for _ in range(iterations):
        moved = p - s[:, None] * direction
        measured = t0 - _thickness_at(windex, w, moved, pial_faces, active, cap)
        s[active] = np.clip(s[active] + t[active] - measured, 0.0, limit[active])
    return s


def thin_pial(
    white_vertices: NDArray,
    white_faces: NDArray,
    pial_vertices: NDArray,
    pial_faces: NDArray,
    displacement_mm: NDArray,
    floor_mm: float = DEFAULT_FLOOR_MM,
    check: bool = True,
    checker: NewIntersections | None = None,
) -> ThinnedPial:
    """Move each pial vertex towards its white vertex by ``displacement_mm`` (per vertex, ≥ 0), never closer
    than ``floor_mm``; with ``check``, displacements of vertices whose faces make new intersections are backed off
    (see the module docstring) and the remaining new intersections counted (0 unless back-off ran out).
    ``checker``: a :class:`NewIntersections` of this pial (and white) mesh prepared for these moves (reused
    across steps); made here when not given."""
    w = np.asarray(white_vertices, dtype=np.float64)
    p = np.asarray(pial_vertices, dtype=np.float64)
    f = np.asarray(pial_faces, dtype=np.int64)
    t = np.asarray(displacement_mm, dtype=np.float64)
    if w.shape != p.shape or t.shape != (len(p),):
        raise ValueError(f"white {w.shape}, pial {p.shape} and displacement {t.shape} do not match")
    if np.any(~np.isfinite(t)) or np.any(t < 0):
        raise ValueError("displacement must be finite and non-negative")
    direction, room = _line_geometry(w, p, floor_mm)
    disp = np.minimum(t, room)
    n_floored = int(np.count_nonzero((t > 0) & (t >= room - 1e-9)))  # stopped by the floor
    moved = disp > 0
    if not check or not moved.any():
        return ThinnedPial(p - disp[:, None] * direction, disp, int(moved.sum()), n_floored, 0, 0, 0, 0, 0, 0)
    if checker is None:
        checker = NewIntersections(p, f, moved, w, white_faces)
    base_self, base_cross = checker.baseline_counts
    faces_moved = moved[f].any(axis=1)
    backed = np.zeros(len(p), dtype=bool)
    halvings = np.zeros(len(p), dtype=np.int64)
    changed = None  # after a back-off, only faces around the vertices it moved can change state
    while True:
        new_v = p - disp[:, None] * direction
        new_s, new_c = checker.check(new_v, changed)
        flipped = flipped_faces(p, new_v, f) & faces_moved
        bad_faces = np.unique(np.concatenate([new_s.ravel(), new_c[:, 0], np.flatnonzero(flipped)]))
        bad_vertices = np.unique(f[bad_faces].ravel()) if bad_faces.size else np.zeros(0, dtype=np.int64)
        bad_vertices = bad_vertices[disp[bad_vertices] > 0]
        if bad_vertices.size == 0:
            return ThinnedPial(
                new_v, disp, int((disp > 0).sum()), n_floored, int(backed.sum()),
                len(new_s), len(new_c), int(flipped.sum()), base_self, base_cross,
            )
        backed[bad_vertices] = True
        halvings[bad_vertices] += 1
        disp[bad_vertices] = np.where(halvings[bad_vertices] > MAX_BACKOFF, 0.0, 0.5 * disp[bad_vertices])
        changed = np.zeros(len(p), dtype=bool)
        changed[bad_vertices] = True


def thinned_series(
    spec: AtrophySpec,
    hemisphere: Hemisphere,
    prescription: Prescription | None = None,
    check: bool = True,
    iterations: int = CALIBRATION_ITERATIONS,
    thickness: bool = False,
) -> list[ThinnedPial]:
    """The thinned pial surface of every step 1..N, each moved from the baseline pial by the displacement that
    gives k/N of the final thinning (:func:`solve_displacement`, started from the previous step's solution).

    What does not change between steps is computed once: the baseline's intersections, the white mesh's index
    and the baseline thickness of the prescribed vertices. With ``thickness`` each result also carries the
    FreeSurfer thickness of the thinned surface (:func:`cortical_thickness`, every vertex)."""
    pres = prescription if prescription is not None else prescribe(spec, hemisphere)
    w, p = hemisphere.white, hemisphere.pial
    wv = np.asarray(w.vertices, dtype=np.float64)
    out: list[ThinnedPial] = []
    previous = None
    checker = None
    movable = pres.amount_mm > 0
    if check and movable.any():  # the baseline's intersections are found once for every step
        checker = NewIntersections(p.vertices, p.faces, movable, w.vertices, w.faces)
    windex = build_index(wv, w.faces)
    base = np.full(len(wv), np.nan)
    if movable.any() and iterations > 0:
        base[movable] = _thickness_at(windex, wv, np.asarray(p.vertices, dtype=np.float64), p.faces,
                                      np.flatnonzero(movable), 5.0)
    for k in range(1, spec.steps + 1):
        target = pres.at_step(spec, k)
        start = None if previous is None else previous * (k / (k - 1))
        disp = solve_displacement(w.vertices, w.faces, p.vertices, p.faces, target, spec.floor_mm,
                                  baseline_thickness=base, iterations=iterations, start=start, white_index=windex)
        thinned = thin_pial(w.vertices, w.faces, p.vertices, p.faces, disp, spec.floor_mm, check, checker)
        if thickness:
            thinned.thickness = cortical_thickness(wv, w.faces, thinned.vertices, p.faces, white_index=windex)
        out.append(thinned)
        previous = disp
    return out

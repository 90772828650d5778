"""Per-hemisphere PCA shape model on standardised [mid-thickness x, y, z, thickness] (numpy only).

Each training participant contributes, per hemisphere, one row of ``4 V`` features: for every template
vertex its mid-thickness position (after rigid pose removal) and its cortical thickness, in the order
``[x0, y0, z0, t0, x1, ...]``. Every feature column is standardised (mean removed, divided by its standard
deviation over the training set, floored at ``STD_FLOOR`` of the median standard deviation of its kind so
that a column that hardly varies cannot blow up). The PCA is the SVD of the standardised matrix; latent codes
are **whitened** (unit variance per component), so ``z ~ N(0, I)`` samples the model and the norm of a code
says how typical it is.

Storage: ``MODEL_DIR/shape_model.json`` (metadata: template, training list, components, explained variance,
pose removal) and one ``hemi-{L,R}_shape.npz`` per hemisphere (arrays only, read with
``allow_pickle=False``). Nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..errors import MissingInputError, ModelError

FORMAT = "cor2vox-shape-model"
FORMAT_VERSION = 1
STD_FLOOR = 1e-3
HEMIS = ("L", "R")


@dataclass
class HemiPCA:
    """The PCA of one hemisphere: ``x = mean + std * ((z * sqrt(variance)) @ components)``."""

    mean: np.ndarray  # (D,)
    std: np.ndarray  # (D,)
    components: np.ndarray  # (K, D), orthonormal rows
    variance: np.ndarray  # (K,) explained variance (standardised units)
    total_variance: float  # sum of the variance of all standardised columns
    train_codes: np.ndarray  # (n, K) whitened codes of the training participants

    @property
    def n_components(self) -> int:
        """Number of components kept."""
        return int(self.components.shape[0])

    def encode(self, features: np.ndarray) -> np.ndarray:
        """Whitened latent codes (n, K) of feature rows (n, D)."""
        x = (np.atleast_2d(features) - self.mean) / self.std
        return (x @ self.components.T) / np.sqrt(self.variance)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Feature rows (n, D) from whitened codes (n, K)."""
        z = np.atleast_2d(codes) * np.sqrt(self.variance)
        return self.mean + self.std * (z @ self.components)

    def truncated(self, k: int) -> HemiPCA:
        """The same model keeping the first ``k`` components."""
        return HemiPCA(
            self.mean, self.std, self.components[:k], self.variance[:k], self.total_variance, self.train_codes[:, :k]
        )


def fit_pca(features: np.ndarray, n_components: int | None = None) -> HemiPCA:
    """Fit the PCA to training rows (n, D) (D a multiple of 4: x, y, z, thickness per vertex).

    ``n_components`` defaults to (and is capped at) ``n - 1``, the rank of the centred data.
    """
    x = np.asarray(features, dtype=np.float64)
    n, d = x.shape
    if n < 2:
        raise ValueError("a PCA needs at least 2 training rows")
    if d % 4:
        raise ValueError(f"feature rows must hold 4 values per vertex, got {d} columns")
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    kinds = std.reshape(-1, 4)
    floor_xyz = STD_FLOOR * max(float(np.median(kinds[:, :3])), 1e-12)
    floor_t = STD_FLOOR * max(float(np.median(kinds[:, 3])), 1e-12)
    floors = np.tile([floor_xyz, floor_xyz, floor_xyz, floor_t], d // 4)
    std = np.maximum(std, floors)
    z = (x - mean) / std
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    k_max = n - 1
    k = k_max if n_components is None else max(1, min(int(n_components), k_max))
    variance = s[:k] ** 2 / (n - 1)
    pca = HemiPCA(mean, std, vt[:k].copy(), variance, float((z**2).sum() / (n - 1)), np.zeros((n, k)))
    pca.train_codes = pca.encode(x)
    return pca


@dataclass
class ShapeModel:
    """Both hemispheres' PCAs plus the template they live on and how they were built."""

    hemis: dict[str, HemiPCA]
    template: dict[str, Any]  # name, path, n_vertices, orig affine/shape, faces per hemi
    faces: dict[str, np.ndarray]  # template faces per hemisphere (int32 (m, 3))
    sphere: dict[str, np.ndarray]  # template sphere.reg vertices per hemisphere (float32 (V, 3))
    annot: dict[str, tuple[np.ndarray, np.ndarray, list[str]]]  # labels, ctab, names per hemisphere
    training: list[str]  # participant keys, row order of train_codes
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        """Template vertices per hemisphere."""
        return int(self.hemis["L"].mean.shape[0] // 4)

    def metadata(self) -> dict[str, Any]:
        """The JSON side of the model."""
        hemis = {}
        for h, p in self.hemis.items():
            hemis[h] = {
                "file": f"hemi-{h}_shape.npz",
                "n_components": p.n_components,
                "explained_variance": [float(v) for v in p.variance],
                "explained_variance_ratio": [float(v / p.total_variance) for v in p.variance],
                "total_variance": p.total_variance,
            }
        return {
            "Format": FORMAT,
            "FormatVersion": FORMAT_VERSION,
            "GeneratedBy": {"Name": "cor2vox-shape", "Version": __version__},
            "Template": self.template,
            "Training": self.training,
            "Hemispheres": hemis,
            "Features": "per template vertex [x, y, z, thickness]: mid-thickness position (mm, template tkr RAS "
            "after rigid pose removal) and cortical thickness (mm); each column standardised",
            "PoseRemoval": "each participant's mid-thickness surfaces (both hemispheres together) rigidly aligned "
            "(rotation + translation, no scaling; Kabsch) to the template's mid-thickness "
            "surfaces before fitting",
            "LatentCodes": "whitened: unit variance per component; sample z ~ N(0, I) * scale",
            **self.info,
        }


def save_model(model: ShapeModel, model_dir: Path) -> list[Path]:
    """Write ``shape_model.json`` and ``hemi-{L,R}_shape.npz`` into ``model_dir``; returns the files."""
    model_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for h, p in model.hemis.items():
        labels, ctab, names = model.annot[h]
        path = model_dir / f"hemi-{h}_shape.npz"
        np.savez_compressed(
            path,
            mean=p.mean,
            std=p.std,
            components=p.components,
            variance=p.variance,
            total_variance=np.float64(p.total_variance),
            train_codes=p.train_codes,
            faces=model.faces[h].astype(np.int32),
            sphere=model.sphere[h].astype(np.float32),
            annot_labels=labels.astype(np.int32),
            annot_ctab=ctab.astype(np.int32),
            annot_names=np.array(names, dtype=np.str_),
        )
        written.append(path)
    meta = model_dir / "shape_model.json"
    meta.write_text(json.dumps(model.metadata(), indent=2) + "\n")
    return [meta, *written]


def load_model(model_dir: Path) -> ShapeModel:
    """Read a model written by :func:`save_model`; a missing or damaged file is named in the error."""
    meta_path = model_dir / "shape_model.json"
    if not model_dir.is_dir():
        raise MissingInputError("the shape model folder does not exist", model_dir)
    if not meta_path.is_file():
        raise MissingInputError("not a shape model folder: shape_model.json is missing", meta_path)
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the shape model description ({exc})", meta_path) from None
    if not isinstance(meta, dict) or meta.get("Format") != FORMAT:
        raise ModelError(f"not a {FORMAT} description", meta_path)
    if meta.get("FormatVersion") != FORMAT_VERSION:
        raise ModelError(
            f"shape model format {meta.get('FormatVersion')} is not supported (this version reads {FORMAT_VERSION})",
            meta_path,
        )
    hemis, faces, sphere, annot = {}, {}, {}, {}
    for h in HEMIS:
        path = model_dir / f"hemi-{h}_shape.npz"
        if not path.is_file():
            raise MissingInputError("shape model file is missing", path)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            p = HemiPCA(
                arrays["mean"],
                arrays["std"],
                arrays["components"],
                arrays["variance"],
                float(arrays["total_variance"]),
                arrays["train_codes"],
            )
            faces[h] = arrays["faces"].astype(np.int64)
            sphere[h] = arrays["sphere"].astype(np.float64)
            annot[h] = (arrays["annot_labels"], arrays["annot_ctab"], [str(n) for n in arrays["annot_names"]])
        except (OSError, ValueError, KeyError) as exc:
            raise ModelError(f"damaged shape model file ({exc})", path) from None
        d = p.mean.shape[0]
        if (
            p.std.shape != (d,)
            or p.components.ndim != 2
            or p.components.shape[1] != d
            or p.variance.shape != (p.components.shape[0],)
            or p.train_codes.shape[1:] != (p.n_components,)
            or d % 4
            or faces[h].max(initial=-1) >= d // 4
            or sphere[h].shape != (d // 4, 3)
        ):
            raise ModelError("inconsistent array shapes in the shape model file", path)
        if not (np.all(np.isfinite(p.mean)) and np.all(np.isfinite(p.components)) and np.all(p.variance > 0)):
            raise ModelError("non-finite values or non-positive variances in the shape model file", path)
        hemis[h] = p
    training = list(meta.get("Training", []))
    if any(len(training) != hemis[h].train_codes.shape[0] for h in HEMIS):
        raise ModelError("the training list does not match the stored training codes", meta_path)
    info = {
        k: v
        for k, v in meta.items()
        if k
        not in {
            "Format",
            "FormatVersion",
            "GeneratedBy",
            "Template",
            "Training",
            "Hemispheres",
            "Features",
            "PoseRemoval",
            "LatentCodes",
        }
    }
    return ShapeModel(hemis, dict(meta.get("Template", {})), faces, sphere, annot, training, info)


def cortex_mask(labels: np.ndarray, names: list[str]) -> np.ndarray:
    """Vertices inside a DK region (not 'unknown', 'corpuscallosum' or unlabelled): where mean thickness is
    taken. ``labels`` are row indices into ``names`` (nibabel's ``read_annot`` default)."""
    labels = np.asarray(labels)
    excluded = [i for i, n in enumerate(names) if n in ("unknown", "corpuscallosum", "medialwall")]
    return (labels >= 0) & ~np.isin(labels, excluded)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation between codes ``a`` and ``b`` (angle between their directions; the norm
    follows the same great-circle weights, so equal norms are kept all along)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return lerp(a, b, t)
    cos = float(np.clip(a @ b / (na * nb), -1.0, 1.0))
    omega = np.arccos(cos)
    if omega < 1e-8:
        return lerp(a, b, t)
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Linear interpolation between codes."""
    return (1 - t) * np.asarray(a, dtype=np.float64) + t * np.asarray(b, dtype=np.float64)


def sample_codes(model: ShapeModel, n: int, seed: int, scale: float = 1.0) -> list[dict[str, np.ndarray]]:
    """``n`` random codes per hemisphere, ``z ~ N(0, I) * scale``; the same seed gives the same codes."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        out.append({h: rng.standard_normal(model.hemis[h].n_components) * scale for h in HEMIS})
    return out


def mean_thickness_law(model: ShapeModel, scale: float = 1.0) -> dict[str, float]:
    """How the mean cortical thickness of a sampled participant is distributed, and how often it leaves the
    training range.

    The mean thickness over the DK-region vertices of both hemispheres (what ``participants.tsv`` reports) is a
    linear function of the whitened codes, so for ``z ~ N(0, I) * scale`` (hemispheres independent) it is
    normal: ``N(mean, (scale * sd)^2)`` before clipping and surface reconstruction (which moved it by under
    0.001 mm on the demo model). ``p_outside_training_range`` is the probability that one sample falls outside
    ``[training_min, training_max]``, the range of the training participants' mean thickness
    (``TrainingMeanThickness``; decoded from the training codes when a model lacks it). A faithful model puts
    about ``2 / (n + 1)`` of its samples outside the range of ``n`` training participants; ``--scale`` below 1
    (truncating the spread of the codes) lowers that at the cost of diversity.
    """
    import math

    cortex = {h: cortex_mask(model.annot[h][0], model.annot[h][2]) for h in HEMIS}
    total = sum(int(cortex[h].sum()) for h in HEMIS)
    if total == 0:
        raise ValueError("the template has no DK-region vertices")
    mean = 0.0
    weights = {}
    for h in HEMIS:
        p = model.hemis[h]
        thick_std = p.std[3::4][cortex[h]]
        mean += float(p.mean[3::4][cortex[h]].sum()) / total
        comp = p.components[:, 3::4][:, cortex[h]] * np.sqrt(p.variance)[:, None]
        weights[h] = (comp * thick_std[None]).sum(axis=1) / total
    sd = float(np.sqrt(sum(float((w**2).sum()) for w in weights.values())))
    listed = model.info.get("TrainingMeanThickness") or {}
    train = (
        np.array([float(v) for v in listed.values()])
        if listed
        else mean + sum(model.hemis[h].train_codes @ weights[h] for h in HEMIS)
    )
    lo, hi = float(np.min(train)), float(np.max(train))
    spread = abs(float(scale)) * sd
    if spread > 0:
        below = 0.5 * math.erfc((mean - lo) / (spread * math.sqrt(2)))
        above = 0.5 * math.erfc((hi - mean) / (spread * math.sqrt(2)))
        p_out = below + above
    else:
        p_out = float(not lo <= mean <= hi)
    return {
        "mean": mean,
        "sd": spread,
        "training_min": lo,
        "training_max": hi,
        "n_training": int(len(train)),
        "p_outside_training_range": float(p_out),
    }


def interpolate_codes(model: ShapeModel, src: str, dst: str, steps: int, mode: str) -> list[tuple[float, dict]]:
    """``steps`` codes from training participant ``src`` to ``dst`` (both ends included when steps >= 2)."""
    i, j = model.training.index(src), model.training.index(dst)
    fn = slerp if mode == "slerp" else lerp
    ts = [0.5] if steps == 1 else list(np.linspace(0.0, 1.0, steps))
    return [
        (float(t), {h: fn(model.hemis[h].train_codes[i], model.hemis[h].train_codes[j], t) for h in HEMIS}) for t in ts
    ]

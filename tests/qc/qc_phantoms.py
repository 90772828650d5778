"""Phantoms with known answers for the QC tests: icospheres and nested-sphere 'brains'."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

# tissue intensities of the phantom (T1w-like ordering WM > GM > CSF)
WM, GM, CSF = 110.0, 70.0, 20.0
#: centre (world mm) of every phantom: off the voxel grid's symmetry on purpose (``CENTRE``: read-only array)
CENTRE_XYZ: tuple[float, float, float] = (3.3, -2.7, 5.1)
CENTRE = np.array(CENTRE_XYZ)
CENTRE.flags.writeable = False


def icosphere(subdivisions: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Unit icosphere with outward (counter-clockwise) faces; 5 subdivisions → 10,242 vertices (fsaverage5)."""
    t = (1.0 + 5.0**0.5) / 2.0
    v = np.array(
        [[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t],
         [0, -1, -t], [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]],
        dtype=np.float64,
    )
    f = np.array(
        [[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4], [11, 10, 2],
         [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8], [3, 8, 9], [4, 9, 5],
         [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]],
        dtype=np.int64,
    )
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    for _ in range(subdivisions):
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        edges.sort(axis=1)
        uniq, inverse = np.unique(edges, axis=0, return_inverse=True)
        mids = v[uniq[:, 0]] + v[uniq[:, 1]]
        mids /= np.linalg.norm(mids, axis=1, keepdims=True)
        m = inverse.reshape(3, -1) + len(v)  # midpoints of edges (01, 12, 20) per face
        a, b, c = f[:, 0], f[:, 1], f[:, 2]
        m01, m12, m20 = m
        f = np.concatenate(
            [np.stack(x, axis=1) for x in ((a, m01, m20), (b, m12, m01), (c, m20, m12), (m01, m12, m20))]
        )
        v = np.concatenate([v, mids])
    return v, f


def grid_affine(spacing: float, origin: tuple[float, float, float]) -> NDArray[np.float64]:
    """RAS-aligned voxel→world affine with isotropic ``spacing`` and voxel (0,0,0) at ``origin``."""
    aff = np.diag([spacing, spacing, spacing, 1.0])
    aff[:3, 3] = origin
    return aff


def voxel_world(shape: tuple[int, int, int], affine: NDArray[np.float64]) -> NDArray[np.float64]:
    """World coordinates (shape + (3,)) of every voxel centre."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _inside_fraction(radius_field: NDArray, r: NDArray | float, spacing: float) -> NDArray:
    """Partial-volume fraction of a voxel inside radius ``r`` (linear ramp over one voxel)."""
    return np.clip((r - radius_field) / spacing + 0.5, 0.0, 1.0)


def sphere_phantom(
    *,
    shape: tuple[int, int, int] = (64, 64, 64),
    spacing: float = 1.0,
    centre: tuple[float, float, float] = CENTRE_XYZ,
    r_white: float = 20.0,
    r_pial: float = 22.5,
    r_head: float | None = None,
    cap_thinning_mm: float = 0.0,
    cap_half_angle_deg: float = 35.0,
    blur_sigma_vox: float = 1.0,
    noise_sd: float = WM / 20.0,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Nested-sphere T1w phantom: WM ball, GM shell, CSF outside (0 beyond ``r_head`` if given).

    Partial volume by a one-voxel linear ramp, Gaussian blur σ = ``blur_sigma_vox`` voxels, additive Gaussian
    noise sd ``noise_sd`` (default SNR = WM/sd = 20). In a cap of half-angle ``cap_half_angle_deg`` around +z the
    pial radius is reduced by ``cap_thinning_mm`` (the image only; surfaces are built separately).
    Returns (image, affine, radius-from-centre field).
    """
    half = (np.asarray(shape) - 1) / 2.0 * spacing
    affine = grid_affine(spacing, tuple(np.asarray(centre) - half))
    xyz = voxel_world(shape, affine) - np.asarray(centre)
    r = np.linalg.norm(xyz, axis=-1)
    rp = np.full(shape, r_pial)
    if cap_thinning_mm:
        cos_angle = xyz[..., 2] / np.maximum(r, 1e-9)
        rp = np.where(cos_angle >= np.cos(np.deg2rad(cap_half_angle_deg)), r_pial - cap_thinning_mm, r_pial)
    f_wm = _inside_fraction(r, r_white, spacing)
    f_brain = _inside_fraction(r, rp, spacing)
    img = CSF + (GM - CSF) * f_brain + (WM - GM) * f_wm
    if r_head is not None:
        img *= _inside_fraction(r, r_head, spacing)
    img = ndimage.gaussian_filter(img, blur_sigma_vox, mode="nearest")
    if noise_sd:
        img = img + np.random.default_rng(seed).normal(0.0, noise_sd, size=shape)
    return img, affine, r


def sphere_surfaces(
    subdivisions: int = 5,
    centre: tuple[float, float, float] = CENTRE_XYZ,
    r_white: float = 20.0,
    r_pial: float = 22.5,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """White and pial icospheres (shared faces) around ``centre``."""
    v, f = icosphere(subdivisions)
    c = np.asarray(centre)
    return c + r_white * v, c + r_pial * v, f


# -- realistic phantoms: bumpy cortex, voxel-integrated partial volume, PSF, bias field, noise -----------------


def _white_radius(u: NDArray) -> NDArray:
    """Radius (mm) of the bumpy white surface in unit directions ``u`` (..., 3): folds of ±2.5 mm."""
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    return 20.0 + 1.6 * np.sin(3.0 * x + 1.0) * np.cos(2.0 * y) + 1.0 * np.sin(4.0 * z + 0.5 * x)


def _ribbon_thickness(u: NDArray) -> NDArray:
    """Radial thickness (mm) of the grey-matter ribbon: 1.6–3.6 mm, varying smoothly over the sphere."""
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    return 2.6 + 0.6 * np.sin(2.5 * z + 0.3) + 0.4 * np.cos(2.0 * x - y)


def bumpy_surfaces(subdivisions: int = 5, centre: tuple[float, float, float] = CENTRE_XYZ
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """White and pial surfaces of the bumpy phantom (shared faces; pial = white + radial thickness)."""
    u, f = icosphere(subdivisions)
    rw = _white_radius(u)
    c = np.asarray(centre)
    return c + rw[:, None] * u, c + (rw + _ribbon_thickness(u))[:, None] * u, f


def sector_labels(vertices: NDArray, centre: tuple[float, float, float] = CENTRE_XYZ
                  ) -> tuple[NDArray[np.int64], list[str]]:
    """Twelve 'regions': 4 longitude × 3 latitude sectors of the directions from ``centre``."""
    d = np.asarray(vertices) - np.asarray(centre)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    lon = np.digitize(np.arctan2(d[:, 1], d[:, 0]), [-np.pi / 2, 0.0, np.pi / 2])
    lat = np.digitize(d[:, 2], [-0.45, 0.45])
    return (lon * 3 + lat).astype(np.int64), [f"sector{i:02d}" for i in range(12)]


def sulcal_gap(u: NDArray) -> NDArray:
    """Width (mm) of the CSF between the pial surface and the opposite bank of a sulcus in :func:`bumpy_phantom`
    with ``opposite_bank``: 0.3–2.0 mm (banks almost touching to a wider sulcus) over a third of the sphere, +inf
    (open CSF, a gyral crown) elsewhere; varying smoothly."""
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    g = 2.3 + 2.0 * np.sin(2.0 * x + 1.5 * z + 0.7) * np.cos(1.7 * y - 0.4)
    return np.where(g <= 2.0, g, np.inf)


def bumpy_phantom(
    *,
    spacing: float = 1.0,
    fov_mm: float = 64.0,
    centre: tuple[float, float, float] = CENTRE_XYZ,
    psf_sigma_mm: float = 1.0,
    noise_sd: float = WM / 20.0,
    bias: float = 0.1,
    supersample: int = 3,
    thinning_mm: NDArray | None = None,
    opposite_bank: bool = False,
    seed: int = 0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """T1w-like image of the bumpy phantom: WM inside the white surface, GM up to the pial, CSF outside.

    Partial volume: each voxel is the mean of ``supersample``³ point samples inside it (the fraction of each tissue
    in the voxel). Then a Gaussian PSF (σ in mm), a smooth multiplicative bias field (1 ± ``bias``) and Gaussian
    noise (sd ``noise_sd``; default SNR WM/sd = 20). With ``opposite_bank`` the CSF outside the pial surface is a
    gap of :func:`sulcal_gap` width followed by a 2.5 mm shell of GM (the other bank of a sulcus) and then CSF,
    as along lines that cross a sulcus in a folded cortex. Returns (image, affine).
    """
    n = int(round(fov_mm / spacing))
    shape = (n, n, n)
    half = (n - 1) / 2.0 * spacing
    affine = grid_affine(spacing, tuple(np.asarray(centre) - half))
    offs = (np.arange(supersample) + 0.5) / supersample - 0.5
    acc = np.zeros(shape)
    base = voxel_world(shape, affine) - np.asarray(centre)
    for dx in offs:
        for dy in offs:
            for dz in offs:
                p = base + spacing * np.array([dx, dy, dz])
                r = np.linalg.norm(p, axis=-1)
                u = p / np.maximum(r, 1e-9)[..., None]
                rw = _white_radius(u)
                rp = rw + _ribbon_thickness(u)
                outside = CSF
                if opposite_bank:
                    bank = rp + sulcal_gap(u)
                    outside = np.where((r >= bank) & (r < bank + 2.5), GM, CSF)
                acc += np.where(r < rw, WM, np.where(r < rp, GM, outside))
    img = acc / supersample**3
    if psf_sigma_mm:
        img = ndimage.gaussian_filter(img, psf_sigma_mm / spacing, mode="nearest")
    if bias:
        x, y, z = (base[..., i] / 32.0 for i in range(3))
        img = img * (1.0 + bias * np.sin(1.3 * x + 0.4) * np.cos(0.9 * y - 0.2 * z))
    if noise_sd:
        img = img + np.random.default_rng(seed).normal(0.0, noise_sd, size=shape)
    return img, affine


def ramp_phantom(*, spacing: float = 1.0, fov_mm: float = 64.0, centre: tuple[float, float, float] = CENTRE_XYZ,
                 r_in: float = 17.0, r_out: float = 26.0, noise_sd: float = 1.0, seed: int = 0
                 ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """An image with no cortical slab: intensity falls linearly from WM to CSF between radii ``r_in`` and
    ``r_out`` (like fsaverage's averaged T1.mgz along white→pial lines)."""
    n = int(round(fov_mm / spacing))
    half = (n - 1) / 2.0 * spacing
    affine = grid_affine(spacing, tuple(np.asarray(centre) - half))
    r = np.linalg.norm(voxel_world((n, n, n), affine) - np.asarray(centre), axis=-1)
    img = WM + (CSF - WM) * np.clip((r - r_in) / (r_out - r_in), 0.0, 1.0)
    return img + np.random.default_rng(seed).normal(0.0, noise_sd, size=img.shape), affine

"""Helpers of the matrix of bad inputs: datasets built from the demo data with symlinks (no big copies).

``matrix_run`` builds one dataset under a non-ASCII folder name with a healthy participant (``sub-01``) and one
participant per broken input (each a symlinked copy of a demo participant with one file damaged), runs the
participant level once as a subprocess (the real console) with ``--steps 1``, and returns the exit code, the
console text and the folders. The per-case tests read that one run.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def link_tree(src: Path, dst: Path) -> Path:
    """A copy of ``src`` whose files are symlinks to the originals."""
    shutil.copytree(src, dst, copy_function=os.symlink)
    return dst


def own_copy(path: Path) -> Path:
    """Replace a symlink by a private copy of its target (before damaging it)."""
    target = path.resolve()
    path.unlink()
    shutil.copyfile(target, path)
    return path


def add_participant(bids: Path, demo: dict, label: str, t1_from: str = "01", fs_from: str = "01") -> dict:
    """``sub-<label>`` with the T1w of demo ``sub-<t1_from>`` and the FreeSurfer folder of ``sub-<fs_from>``."""
    anat = bids / f"sub-{label}" / "anat"
    anat.mkdir(parents=True)
    t1 = anat / f"sub-{label}_T1w.nii.gz"
    os.symlink(demo["bids"] / f"sub-{t1_from}" / "anat" / f"sub-{t1_from}_T1w.nii.gz", t1)
    fs = link_tree(demo["freesurfer"] / f"sub-{fs_from}", bids / "derivatives" / "freesurfer" / f"sub-{label}")
    return {"t1w": t1, "fs": fs}


def new_dataset(root: Path, demo: dict) -> Path:
    bids = root / "bids"
    (bids / "derivatives" / "freesurfer").mkdir(parents=True)
    for name in ("dataset_description.json", "README", "LICENSE"):
        if (demo["bids"] / name).exists():
            shutil.copyfile(demo["bids"] / name, bids / name)
    shutil.copyfile(demo["freesurfer"] / "dataset_description.json",
                    bids / "derivatives" / "freesurfer" / "dataset_description.json")
    return bids


# ---- damage -----------------------------------------------------------------------------------------------------


def _t1_image(demo: dict):
    return nib.load(str(demo["bids"] / "sub-01" / "anat" / "sub-01_T1w.nii.gz"))


def _replace_t1(p: dict, img) -> None:
    p["t1w"].unlink()
    nib.save(img, str(p["t1w"]))


def _surface(p: dict, name: str):
    path = own_copy(p["fs"] / "surf" / name)
    v, f = nib.freesurfer.read_geometry(str(path))
    return path, v, f


def damage(kind: str, p: dict, demo: dict) -> tuple[Path, str]:
    """Damage participant ``p`` one way; returns (the file that must be named, a phrase of the message)."""
    t1, surf = p["t1w"], p["fs"] / "surf"
    if kind.startswith("t1"):
        raw = t1.resolve().read_bytes()
        t1.unlink()
    if kind == "t1trunc":
        t1.write_bytes(raw[: len(raw) // 3])
        return t1, "gzip"
    if kind == "t1crc":
        b = bytearray(raw)
        b[-6] ^= 0xFF
        t1.write_bytes(bytes(b))
        return t1, "CRC check failed"
    if kind == "t1notgz":
        t1.write_bytes(gzip.decompress(raw))
        return t1, "gzip"
    if kind == "t1empty":
        t1.write_bytes(b"")
        return t1, "not a NIfTI"
    img = nib.Nifti1Image.from_bytes(gzip.decompress(raw)) if kind.startswith("t1") else None
    data = None if img is None else np.asanyarray(img.dataobj).astype(np.float32)
    if kind == "t1fourd":
        nib.save(nib.Nifti1Image(np.stack([data, data], -1), img.affine), str(t1))
        return t1, "4 dimensions"
    if kind == "t1nan":
        data[100:110, 100:110, 100:110] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(t1))
        return t1, "NaN/inf voxels"
    if kind == "t1inf":
        data[5, 5, 5] = np.inf
        nib.save(nib.Nifti1Image(data, img.affine), str(t1))
        return t1, "NaN/inf voxels"
    if kind == "t1constant":
        nib.save(nib.Nifti1Image(np.zeros_like(data), img.affine), str(t1))
        return t1, "constant"
    if kind == "t1singular":
        out = nib.Nifti1Image(data, img.affine)
        buf = bytearray(out.to_bytes())
        buf[312:328] = struct.pack("<4f", 0, 0, 0, 0)  # srow_z = 0
        buf[252:256] = struct.pack("<hh", 0, 1)  # qform_code 0, sform_code 1
        t1.write_bytes(gzip.compress(bytes(buf), compresslevel=1))
        return t1, "singular"
    if kind == "t1complex":
        nib.save(nib.Nifti1Image(data.astype(np.complex64), img.affine), str(t1))
        return t1, "non-real"
    if kind == "t1loop":
        other = t1.with_name("loop.nii.gz")
        os.symlink(other, t1)
        os.symlink(t1, other)
        return t1, "symbolic links"
    if kind == "swap":  # made by add_participant(fs_from="02")
        return surf / "lh.white", "another person's surfaces"
    if kind == "shift5":
        for name in ("lh.white", "lh.pial", "rh.white", "rh.pial"):
            path, v, f = _surface(p, name)
            nib.freesurfer.write_geometry(str(path), v + np.array([5.0, 0.0, 0.0]), f)
        return surf / "lh.white", "displaced"
    if kind == "tkr":  # orig.mgz without its c_ras: the surfaces stay in tkr RAS (26+ mm off)
        orig = own_copy(p["fs"] / "mri" / "orig.mgz")
        img = nib.load(str(orig))
        hdr = img.header.copy()
        hdr["Pxyz_c"] = np.zeros(3)
        nib.save(nib.MGHImage(np.asanyarray(img.dataobj), None, hdr), str(orig))
        return surf / "lh.white", "c_ras"
    if kind == "whitetrunc":
        path = own_copy(surf / "lh.white")
        path.write_bytes(path.read_bytes()[:5000])
        return path, "lh.white"
    if kind == "whiteempty":
        (surf / "lh.white").unlink()
        (surf / "lh.white").write_bytes(b"")
        return surf / "lh.white", "lh.white"
    if kind == "whitegarbage":
        (surf / "lh.white").unlink()
        (surf / "lh.white").write_bytes(np.random.default_rng(0).bytes(20000))
        return surf / "lh.white", "lh.white"
    if kind == "pialmissing":
        (surf / "lh.pial").unlink()
        return surf / "lh.pial", "missing pial surface"
    if kind == "whitenan":
        path, v, f = _surface(p, "lh.white")
        v[10] = np.nan
        nib.freesurfer.write_geometry(str(path), v, f)
        return path, "NaN"
    if kind == "countmismatch":
        path, v, f = _surface(p, "lh.pial")
        keep = (f < len(v) - 1).all(axis=1)
        nib.freesurfer.write_geometry(str(path), v[:-1], f[keep])
        return path, "vertices"
    if kind == "facerange":
        path, v, f = _surface(p, "lh.white")
        f[0, 0] = len(v) + 10
        nib.freesurfer.write_geometry(str(path), v, f)
        return path, "out of range"
    if kind == "winding":
        path, v, f = _surface(p, "lh.white")
        f[: len(f) // 2] = f[: len(f) // 2, ::-1]
        nib.freesurfer.write_geometry(str(path), v, f)
        return path, "inconsistently wound"
    if kind == "lrswap":
        for a, b in (("lh.white", "rh.white"), ("lh.pial", "rh.pial")):
            pa, pb = surf / a, surf / b
            ta, tb = pa.resolve(), pb.resolve()
            pa.unlink()
            pb.unlink()
            os.symlink(tb, pa)
            os.symlink(ta, pb)
        for a, b in (("lh.thickness", "rh.thickness"),):
            (surf / a).unlink()
            (surf / b).unlink()
        labels = p["fs"] / "label"
        for name in ("lh.aparc.annot", "rh.aparc.annot"):
            (labels / name).unlink()
        return surf / "lh.white", "swapped"
    if kind == "annotempty":
        path = p["fs"] / "label" / "lh.aparc.annot"
        path.unlink()
        path.write_bytes(b"")
        return path, "annotation"
    if kind == "annotgarbage":
        path = p["fs"] / "label" / "lh.aparc.annot"
        path.unlink()
        path.write_bytes(b"\x00\x00\x00\x05" + np.random.default_rng(1).bytes(64))
        return path, "annotation"
    if kind == "annotlen":
        path = own_copy(p["fs"] / "label" / "lh.aparc.annot")
        labels, ctab, names = nib.freesurfer.read_annot(str(path))
        nib.freesurfer.write_annot(str(path), labels[:-7], ctab, names, fill_ctab=False)
        return path, "entries"
    if kind == "annotunknown":  # readable, right length, but no vertex in a Desikan-Killiany region
        path = own_copy(p["fs"] / "label" / "lh.aparc.annot")
        labels, ctab, names = nib.freesurfer.read_annot(str(path))
        nib.freesurfer.write_annot(str(path), np.zeros_like(labels), ctab[:1], names[:1], fill_ctab=False)
        return path, "no vertex with a Desikan-Killiany region"
    if kind == "thickshort":
        path = own_copy(surf / "lh.thickness")
        path.write_bytes(path.read_bytes()[:400])
        return path, "morphometry"
    if kind == "origcorrupt":
        orig = p["fs"] / "mri" / "orig.mgz"
        raw = orig.resolve().read_bytes()
        orig.unlink()
        orig.write_bytes(raw[:1000])
        return orig, "cannot read volume"
    if kind == "nosubject":
        shutil.rmtree(p["fs"])
        return p["fs"], "missing FreeSurfer subject folder"
    raise ValueError(kind)


#: participant-level cases of the one batch run: label -> (damage kind, FreeSurfer folder from)
CASES = {
    "t1trunc": "t1trunc", "t1crc": "t1crc", "t1notgz": "t1notgz", "t1empty": "t1empty", "t1fourd": "t1fourd",
    "t1nan": "t1nan", "t1inf": "t1inf", "t1constant": "t1constant", "t1singular": "t1singular",
    "t1complex": "t1complex", "t1loop": "t1loop", "swap": "swap", "shift5": "shift5", "tkr": "tkr",
    "whitetrunc": "whitetrunc", "whiteempty": "whiteempty", "whitegarbage": "whitegarbage",
    "pialmissing": "pialmissing", "whitenan": "whitenan", "countmismatch": "countmismatch",
    "facerange": "facerange", "winding": "winding", "lrswap": "lrswap", "annotempty": "annotempty",
    "annotgarbage": "annotgarbage", "annotlen": "annotlen", "annotunknown": "annotunknown", "thickshort": "thickshort",
    "origcorrupt": "origcorrupt", "nosubject": "nosubject",
}


def run_cli(args: list[str], cwd: Path | None = None, timeout: int = 3000) -> tuple[int, str]:
    """``cor2vox-bids ARGS`` in a subprocess; (exit code, stdout + stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NIPYPE_NO_ET": "1"}
    proc = subprocess.run([sys.executable, "-c", "import sys; from cor2vox_bids.cli.run import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


def write_json(path: Path, payload) -> Path:
    path.write_text(json.dumps(payload))
    return path

"""Node caching follows file content: a surface edited in place reruns what depends on it."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel.freesurfer import io as fsio

from cor2vox_bids.cli.run import main
from cor2vox_bids.errors import ExitCode

SYNTH = "sub-01/anat/sub-01_desc-synth_T1w.nii.gz"


def _run(bids, out, work, model):
    return main(
        [
            str(bids),
            str(out),
            "participant",
            "--skip-bids-validation",
            "--model",
            str(model),
            "-w",
            str(work),
            "--participant-label",
            "01",
            "--steps",
            "1",
            "--nprocs",
            "1",
            "--random-seed",
            "2",
        ]
    )


def _image(path):
    return np.asarray(nib.load(str(path)).dataobj)


def test_surface_changed_in_place_reruns_with_same_work_dir(demo_copy, tiny_model, tmp_path):
    work = tmp_path / "work"
    assert _run(demo_copy["bids"], tmp_path / "out1", work, tiny_model) == ExitCode.OK
    first = _image(tmp_path / "out1" / SYNTH)

    # Same path, same size, new content: expand the left white surface by 3 % about its centre (still valid).
    white = demo_copy["freesurfer"] / "sub-01" / "surf" / "lh.white"
    vertices, faces, meta = fsio.read_geometry(str(white), read_metadata=True)
    centre = vertices.mean(axis=0)
    fsio.write_geometry(str(white), (centre + 1.03 * (vertices - centre)).astype(np.float32), faces, volume_info=meta)

    assert _run(demo_copy["bids"], tmp_path / "out2", work, tiny_model) == ExitCode.OK
    rerun = _image(tmp_path / "out2" / SYNTH)
    assert not np.array_equal(rerun, first), "the rerun reused the conditioning of the old surface"

    assert _run(demo_copy["bids"], tmp_path / "out3", tmp_path / "fresh", tiny_model) == ExitCode.OK
    np.testing.assert_array_equal(rerun, _image(tmp_path / "out3" / SYNTH))

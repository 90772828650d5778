"""Every file name the app writes is made here: derivatives and figures from BIDS entities (pybids path patterns),
logs, crash files and the work-dir files that nodes hand to each other. No other module spells an output name.

Samples: one sample → ``sub-<label>[_ses-<label>]_desc-synth_T1w.nii.gz``; several →
``sub-<label>_desc-synthseed<seed>_T1w.nii.gz`` (the seed is part of ``desc``, so every sample is a valid
derivative that pybids indexes; BIDS ``rec`` is reserved for image reconstruction). A figure of one hemisphere
carries the real ``hemi`` entity (``sub-01_hemi-L_desc-<what>_qc.png``), never a hemisphere folded into ``desc``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PATTERNS = [
    "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}][_hemi-{hemi}]"
    "[_space-{space}][_desc-{desc}]_{suffix<T1w|mask|dseg|probseg|sdf|edges|thickness|qc|pial>}"
    "{extension<.nii.gz|.json|.tsv|.surf.gii>}",
    "sub-{subject}/figures/sub-{subject}[_ses-{session}][_hemi-{hemi}][_desc-{desc}]_{suffix}{extension<.png|.svg>}",
    "sub-{subject}[_ses-{session}]{extension<.html>}",
    "group_desc-{desc<qc|harmonization>}_{suffix}{extension<.tsv|.json|.html>}",
    "group/figures/group_desc-{desc}_{suffix}{extension<.png|.svg>}",
]

DATASET_LINKS_NAME = "cor2vox-bids"
IMAGE_EXTENSION = ".nii.gz"
SIDECAR_EXTENSION = ".json"
REPORT_EXTENSION = ".html"
#: what BIDS validators skip in the derivative dataset (logs, figures, reports, citation)
BIDSIGNORE = ("log/", "*/log/", "*/figures/", "group/", "*" + REPORT_EXTENSION, "CITATION.cff", "work/",
              "qc_summary_dictionary.json")
MAP_ENTITIES = {
    "sdf_pial": ("pial", "sdf"),
    "sdf_white": ("white", "sdf"),
    "sdf_cortex": ("cortex", "sdf"),
    "ribbon": ("ribbon", "mask"),
    "edges": ("meshedges", "edges"),
}

# -- derivatives (pybids patterns) --------------------------------------------------------------------------


def build_path(**entities: Any) -> str:
    """Relative derivative path for the given entities (raises ValueError if no pattern fits)."""
    from bids.layout.writing import build_path as _build

    clean = {k: v for k, v in entities.items() if v is not None}
    path = _build(clean, PATTERNS, strict=True)
    if path is None:
        raise ValueError(f"no derivative name for entities {clean}")
    return path


def sample_desc(seed: int, num_samples: int) -> str:
    """``synth`` for a single sample, ``synthseed<seed>`` when several are written."""
    return "synth" if num_samples == 1 else f"synthseed{seed}"


def synth_path(subject: str, session: str | None, seed: int, num_samples: int, extension: str = IMAGE_EXTENSION) -> str:
    """A synthetic T1w (or with ``extension=".json"`` its sidecar)."""
    return build_path(
        subject=subject, session=session, desc=sample_desc(seed, num_samples), suffix="T1w", extension=extension
    )


def synth_glob(subject: str) -> str:
    """Glob (relative to the output folder) matching every synthetic T1w of ``subject``."""
    return build_path(subject=subject, desc=sample_desc(0, 1) + "*", suffix="T1w", extension=IMAGE_EXTENSION)


def conditioning_path(subject: str, session: str | None, name: str, extension: str = IMAGE_EXTENSION) -> str:
    """Conditioning maps: ``desc-{pial,white,cortex}_sdf``, ``desc-ribbon_mask``, ``desc-meshedges_edges``."""
    desc, suffix = MAP_ENTITIES[name]
    return build_path(subject=subject, session=session, desc=desc, suffix=suffix, extension=extension)


def sidecar_of(image_path: str | Path) -> Path:
    """The JSON sidecar beside a derivative image."""
    path = Path(image_path)
    return path.with_name(path.name[: -len(IMAGE_EXTENSION)] + SIDECAR_EXTENSION)


def qc_table_path(subject: str, session: str | None, extension: str = ".tsv") -> str:
    return build_path(subject=subject, session=session, desc="thickness", suffix="qc", extension=extension)


def qc_summary_path(subject: str, session: str | None) -> str:
    return build_path(subject=subject, session=session, desc="summary", suffix="qc", extension=".json")


def figure_path(
    subject: str, session: str | None, desc: str, suffix: str = "qc", hemi: str | None = None, extension: str = ".png"
) -> str:
    return build_path(subject=subject, session=session, hemi=hemi, desc=desc, suffix=suffix, extension=extension)


def figure_dir(subject: str) -> str:
    """``sub-<label>/figures``: the participant's figures (the report links them relative to itself)."""
    return str(Path(figure_path(subject, None, "x")).parent)


def report_path(subject: str, session: str | None) -> str:
    return build_path(subject=subject, session=session, extension=REPORT_EXTENSION)


def group_path(suffix: str, extension: str) -> str:
    """``group_desc-qc_<suffix><extension>`` (e.g. ``group_desc-qc_thickness.tsv``)."""
    return build_path(desc="qc", suffix=suffix, extension=extension)


def harmonization_table_path(extension: str = ".tsv") -> str:
    """``group_desc-harmonization_qc.tsv`` (per participant and tissue: distances to the reference site before and
    after harmonization) or its data dictionary (``.json``)."""
    return build_path(desc="harmonization", suffix="qc", extension=extension)


def group_report_path() -> str:
    return group_path("report", REPORT_EXTENSION)


def summary_dictionary_path() -> str:
    """Data dictionary of the keys of every ``desc-summary_qc.json`` (one file for the dataset)."""
    return "qc_summary_dictionary.json"


def group_figure_path(desc: str, suffix: str = "qc", extension: str = ".png") -> str:
    return build_path(desc=desc, suffix=suffix, extension=extension)


def bids_uri(dataset: str, path: Path, root: Path) -> str:
    """``bids:<dataset>:<relative path>`` (BIDS URI) of a file inside a dataset root. A symlinked file (DataLad,
    git-annex) is named where it is linked in the dataset, not where its content lies; a file outside the root
    gets a ``file://`` URI."""
    import os

    try:
        rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    except ValueError:
        try:
            rel = Path(path).resolve().relative_to(Path(root).resolve())
        except ValueError:
            return Path(os.path.abspath(path)).as_uri()
    return f"bids:{dataset}:{rel.as_posix()}"


# -- atrophy series and seed variability --------------------------------------------------------------------


def atrophy_desc(step: int) -> str:
    """``atrophy01`` … ``atrophy99``: the ``desc`` of atrophy step ``step``."""
    return f"atrophy{int(step):02d}"


def atrophy_image_path(subject: str, session: str | None, step: int, extension: str = IMAGE_EXTENSION) -> str:
    """The synthetic T1w of atrophy step ``step`` (``sub-01_desc-atrophy02_T1w.nii.gz``) or its sidecar."""
    return build_path(subject=subject, session=session, desc=atrophy_desc(step), suffix="T1w", extension=extension)


def atrophy_pial_path(subject: str, session: str | None, hemi: str, step: int) -> str:
    """The thinned pial surface of one step (``sub-01_hemi-L_desc-atrophy02_pial.surf.gii``)."""
    return build_path(subject=subject, session=session, hemi=hemi, desc=atrophy_desc(step), suffix="pial",
                      extension=".surf.gii")


def atrophy_qc_path(subject: str, session: str | None, extension: str = ".tsv") -> str:
    """Prescribed vs measured thinning (``sub-01_desc-atrophy_qc.tsv``) or its data dictionary (``.json``)."""
    return build_path(subject=subject, session=session, desc="atrophy", suffix="qc", extension=extension)


def atrophy_summary_path(subject: str, session: str | None) -> str:
    """The series' targets and surface checks (``sub-01_desc-atrophysummary_qc.json``)."""
    return build_path(subject=subject, session=session, desc="atrophysummary", suffix="qc", extension=".json")


def seedstd_path(subject: str, session: str | None, extension: str = IMAGE_EXTENSION) -> str:
    """Voxel-wise std across seeds (``sub-01_desc-seedstd_T1w.nii.gz``) or its sidecar."""
    return build_path(subject=subject, session=session, desc="seedstd", suffix="T1w", extension=extension)


def atrophy_work_hemispheres(step: int) -> str:
    """Work file: the hemispheres of one atrophy step (``hemispheres_step02.npz``)."""
    return f"hemispheres_step{int(step):02d}.npz"


def atrophy_work_pial(hemi: str, step: int) -> str:
    """Work file: the thinned pial GIFTI of one hemisphere and step (``hemi-L_pial_step02.surf.gii``)."""
    return f"hemi-{hemi}_pial_step{int(step):02d}.surf.gii"


# -- logs and crash files -----------------------------------------------------------------------------------


def log_dir(subject: str, run_id: str) -> str:
    """``sub-<label>/log/<run-id>``: crash files of one participant."""
    return f"sub-{subject}/log/{run_id}"


def run_log_dir(run_id: str) -> str:
    """``log/<run-id>``: the run's config snapshot, unexpected-error crash file, array script."""
    return f"log/{run_id}"


def config_snapshot_path(run_id: str) -> str:
    return f"{run_log_dir(run_id)}/config.json"


def run_crash_path(run_id: str) -> str:
    """Traceback of an unexpected error (never shown on the console)."""
    return f"{run_log_dir(run_id)}/crash-cor2vox.txt"


def validation_crash_path(subject: str, run_id: str, key: str, stage: str = "validation") -> str:
    """Crash file of a participant left out before the graph ran (``stage``: ``validation`` of its inputs, or
    ``graph`` when building its sub-workflow failed)."""
    return f"{log_dir(subject, run_id)}/crash-{key}-{stage}.txt"


def is_pre_run_crash(name: str) -> bool:
    """Whether a crash file's name is one of :func:`validation_crash_path` (not a Nipype node's crash file)."""
    return name.endswith(("-validation.txt", "-graph.txt"))


def is_crash_of(name: str, key: str) -> bool:
    """Whether a crash file in a subject's log folder may belong to participant ``key``: a Nipype node's crash
    file (named by Nipype), or a pre-run crash file of that key (not of another session of the subject)."""
    return not is_pre_run_crash(name) or name.startswith(f"crash-{key}-")


NIPYPE_CRASH_GLOB = "crash-*.txt"  # Nipype names its own crash files; we only find them


def array_script_log_path(run_id: str) -> str:
    return f"{run_log_dir(run_id)}/slurm-array.sbatch"


# -- work directory -----------------------------------------------------------------------------------------

WORKFLOW_NAME = "cor2vox_wf"


def default_work_dir(output_dir: Path) -> Path:
    """``OUTPUT_DIR/work`` (listed in ``.bidsignore``): a rerun with the same output folder resumes by default."""
    return Path(output_dir) / "work"


def progress_dir(work_dir: Path) -> Path:
    """Where long-running nodes append progress lines that the main process prints (any plugin, any worker)."""
    return Path(work_dir) / "progress"


def progress_file(directory: Path, key: str, seed: int) -> Path:
    """Progress lines of one participant's synthesis for one seed, in :func:`progress_dir`."""
    return Path(directory) / f"{key}_seed-{seed}.log"


def run_info_path(work_dir: Path) -> Path:
    """The run description (model, seeds, steps) the derivatives node reads."""
    return Path(work_dir) / "inputs" / "run.json"


def array_state_dir(work_dir: Path, run_id: str) -> Path:
    return Path(work_dir) / "slurm" / run_id


def array_files(state_dir: Path) -> dict[str, Path]:
    """Array mode's files: the script, the job record, and the templates of task logs / exit codes."""
    return {
        "script": state_dir / "array.sbatch",
        "job": state_dir / "job.json",
        "task_log": state_dir / "array-%A_%a.out",
    }


def array_task_log(state_dir: Path, job: str, index: int | str) -> Path:
    return state_dir / f"array-{job}_{index}.out"


def array_task_rc(state_dir: Path, label: str) -> Path:
    return state_dir / f"sub-{label}.rc"


ARRAY_TASK_RC_SHELL = '"$STATE/sub-$LABEL.rc"'  # array_task_rc as the task script writes it


def work_image_name(stem: str) -> str:
    """A NIfTI made by a node inside its own folder (``synth_seed3`` → ``synth_seed3.nii.gz``)."""
    return stem + IMAGE_EXTENSION


# -- Brainlife wrapper --------------------------------------------------------------------------------------


def raw_t1w_path(subject: str) -> str:
    """The T1w of the one-participant raw dataset the Brainlife wrapper builds."""
    return f"sub-{subject}/anat/sub-{subject}_T1w{IMAGE_EXTENSION}"


BRAINLIFE_T1 = "t1/t1" + IMAGE_EXTENSION
BRAINLIFE_HTML = "html/index.html"
BRAINLIFE_PRODUCT = "product.json"

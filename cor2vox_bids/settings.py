"""The one definition of every cor2vox-bids option.

The argparse parser (and so ``--help``), the run's config snapshot and ``boutiques.json`` are all generated
from :class:`Settings`. To add an option, add a field here: nothing else needs editing.

Per-field CLI metadata lives in ``json_schema_extra``:

``flags``      the option strings (``["-w", "--work-dir"]``); absent for positionals
``positional`` True for BIDS_DIR, OUTPUT_DIR, analysis_level
``group``      the help section
``metavar``    shown in ``--help``
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEVICE_PATTERN = r"^(auto|cpu|cuda(:[0-9]+)?)$"
_LABEL = re.compile(r"^[A-Za-z0-9]+$")


def _meta(group: str, flags: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"group": group, **extra}
    if flags is not None:
        out["flags"] = flags
    return out


def _strip_prefix(values: list[str] | None, prefix: str) -> list[str] | None:
    """Accept ``01`` and ``sub-01`` (or ``ses-``) forms; return bare labels, order kept, duplicates dropped."""
    if values is None:
        return None
    out: list[str] = []
    for raw in values:
        for value in str(raw).replace(",", " ").split():
            label = value[len(prefix):] if value.startswith(prefix) else value
            if not _LABEL.match(label):
                raise ValueError(f"{value!r} is not a valid BIDS label (letters and digits only)")
            if label not in out:
                out.append(label)
    return out


class Settings(BaseModel):
    """Every option of ``cor2vox-bids``; the CLI is generated from these fields."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- positionals ---------------------------------------------------------------------------------------
    bids_dir: Path = Field(
        description="The root folder of a BIDS-valid dataset (sub-XXXXX folders at the top level).",
        json_schema_extra=_meta("positional", positional=True, metavar="BIDS_DIR"),
    )
    output_dir: Path = Field(
        description="The folder where derivatives are written; inside BIDS_DIR only under BIDS_DIR/derivatives/ "
        "(e.g. BIDS_DIR/derivatives/cor2vox).",
        json_schema_extra=_meta("positional", positional=True, metavar="OUTPUT_DIR"),
    )
    analysis_level: Literal["participant", "group"] = Field(
        description="Processing stage: 'participant' synthesizes images per participant; 'group' collects "
        "the QC of all participants.",
        json_schema_extra=_meta("positional", positional=True),
    )

    # -- BIDS selection --------------------------------------------------------------------------------------
    participant_label: list[str] | None = Field(
        default=None,
        description="Space-separated participant labels to process ('01' or 'sub-01'); default: all.",
        json_schema_extra=_meta("Options for filtering BIDS queries", ["--participant-label"],
                                metavar="LABEL"),
    )
    session_label: list[str] | None = Field(
        default=None,
        description="Space-separated session labels to process ('A' or 'ses-A'); default: all.",
        json_schema_extra=_meta("Options for filtering BIDS queries", ["--session-label"], metavar="LABEL"),
    )
    bids_filter_file: Path | None = Field(
        default=None,
        description="A JSON file of pybids filters for the T1w query, e.g. {\"t1w\": {\"acquisition\": "
        "\"mprage\"}}.",
        json_schema_extra=_meta("Options for filtering BIDS queries", ["--bids-filter-file"], metavar="FILE"),
    )
    skip_bids_validation: bool = Field(
        default=False,
        description="Assume the input dataset is BIDS compliant and skip the validation.",
        json_schema_extra=_meta("Options for filtering BIDS queries", ["--skip-bids-validation"]),
    )

    # -- surfaces ------------------------------------------------------------------------------------------
    fs_subjects_dir: Path | None = Field(
        default=None,
        description="FreeSurfer SUBJECTS_DIR holding sub-<label> folders (surf/, mri/, label/). Default: "
        "BIDS_DIR/derivatives/freesurfer when it exists.",
        json_schema_extra=_meta("Surfaces", ["--fs-subjects-dir"], metavar="PATH"),
    )
    derivatives: list[str] | None = Field(
        default=None,
        description="Precomputed derivatives as NAME=PATH, e.g. smriprep=/data/derivatives/smriprep "
        "(sMRIPrep GIFTI surfaces, already in scanner RAS).",
        json_schema_extra=_meta("Surfaces", ["--derivatives"], metavar="NAME=PATH"),
    )

    # -- synthesis -----------------------------------------------------------------------------------------
    model: Path | None = Field(
        default=None,
        description="A model folder (model.safetensors + config.json) or its .safetensors file. Default: the "
        "small DEMO model shipped with the package (not the paper model).",
        json_schema_extra=_meta("Synthesis", ["--model"], metavar="PATH"),
    )
    num_samples: int = Field(
        default=1, ge=1, le=1000,
        description="Number of synthetic images per participant (one per seed: random-seed, random-seed+1, ...).",
        json_schema_extra=_meta("Synthesis", ["--num-samples"]),
    )
    random_seed: int = Field(
        default=0, ge=0, le=2**31 - 1,
        description="Seed of the first sample; sample i uses random-seed + i.",
        json_schema_extra=_meta("Synthesis", ["--random-seed"]),
    )
    steps: int | None = Field(
        default=None, ge=1, le=1000,
        description="Number of Brownian-bridge sampling steps (default: the model's own, `sampling.steps` in its "
        "config.json, else 10; the shipped demo model: 5, see docs/training.md).",
        json_schema_extra=_meta("Synthesis", ["--steps"]),
    )
    eta: float = Field(
        default=1.0, ge=0.0, le=1.0,
        description="Stochasticity of the sampler: 0 deterministic, 1 full bridge posterior.",
        json_schema_extra=_meta("Synthesis", ["--eta"]),
    )
    device: str = Field(
        default="auto", pattern=DEVICE_PATTERN,
        description="Where to run the network: auto (CUDA when present), cpu, cuda or cuda:N.",
        json_schema_extra=_meta("Synthesis", ["--device"], metavar="{auto,cpu,cuda,cuda:N}"),
    )
    save_conditioning: bool = Field(
        default=False,
        description="Also write the conditioning maps (pial/white/cortex SDF, ribbon, edge map) as derivatives.",
        json_schema_extra=_meta("Synthesis", ["--save-conditioning"]),
    )
    atrophy: Path | None = Field(
        default=None,
        description="An atrophy spec (JSON or YAML; see examples/atrophy_spec.json): {\"steps\": N, \"regions\": "
        "[{\"hemi\": \"L\", \"label\": DK region or .label file, \"thinning_mm\": 1.0 or \"thinning_fraction\": "
        "0.2}], \"falloff_mm\": 5}. Also synthesise a progressive grey-matter atrophy series: for each step the pial "
        "surface is thinned (linear over steps) and the image resynthesised with the baseline's seed; writes "
        "desc-atrophy<kk> images, thinned pial surfaces and a prescribed-vs-measured table. Checked before any work.",
        json_schema_extra=_meta("Synthesis", ["--atrophy"], metavar="SPEC"),
    )

    # -- group level -----------------------------------------------------------------------------------------
    reference_dataset: Path | None = Field(
        default=None,
        description="Group level: a BIDS dataset of the reference site (the site the --model was trained on; T1w "
        "images and FreeSurfer surfaces in its derivatives/freesurfer, or sMRIPrep GIFTI surfaces in its "
        "derivatives/smriprep). Also measure harmonization: per participant and tissue (WM, GM, CSF), the 1-D "
        "Wasserstein distance of the normalised intensity distribution to the reference site's, for the "
        "participant's own T1w (before) and the synthetic one (after), and the thickness agreement of the two; "
        "writes group_desc-harmonization_qc.tsv and a report section (see docs/harmonization.md).",
        json_schema_extra=_meta("Group level", ["--reference-dataset"], metavar="BIDS_DIR"),
    )

    # -- performance / execution ---------------------------------------------------------------------------
    nprocs: int | None = Field(
        default=None, ge=1,
        description="Maximum number of processes in parallel (default: all CPUs).",
        json_schema_extra=_meta("Options to handle performance", ["--nprocs", "--nthreads"]),
    )
    omp_nthreads: int | None = Field(
        default=None, ge=1,
        description="Threads per process (default: all CPUs). Keep it fixed to reproduce images bit for bit.",
        json_schema_extra=_meta("Options to handle performance", ["--omp-nthreads"]),
    )
    mem: float | None = Field(
        default=None, gt=0,
        description="Upper bound of memory use in GB.",
        json_schema_extra=_meta("Options to handle performance", ["--mem", "--mem-gb"], metavar="GB"),
    )
    use_plugin: Path | None = Field(
        default=None,
        description="A Nipype plugin YAML file (plugin: SLURM, plugin_args: {...}) to run the graph with.",
        json_schema_extra=_meta("Options to handle performance", ["--use-plugin"], metavar="FILE"),
    )
    slurm_array: bool = Field(
        default=False,
        description="Instead of running the graph here, submit one SLURM array job with a task per participant "
        "(each runs cor2vox-bids alone with the same options and -w WORK_DIR/sub-<label>); for clusters whose "
        "jobs may not submit jobs. Needs -w/--work-dir on a shared filesystem; sbatch options come from "
        "--use-plugin's plugin_args.sbatch_args. With --dry-run the script is printed, not submitted.",
        json_schema_extra=_meta("Options to handle performance", ["--slurm-array"]),
    )
    slurm_wait: bool = Field(
        default=False,
        description="With --slurm-array: wait for the array tasks and exit with the participants' status "
        "(0, 16, 17) instead of right after submitting.",
        json_schema_extra=_meta("Options to handle performance", ["--slurm-wait"]),
    )
    work_dir: Path | None = Field(
        default=None,
        description="Working directory for intermediate results; a rerun with the same folder resumes "
        "(default: OUTPUT_DIR/work, listed in OUTPUT_DIR/.bidsignore, so a plain rerun resumes).",
        json_schema_extra=_meta("Other options", ["-w", "--work-dir"], metavar="WORK_DIR"),
    )
    clean_workdir: bool = Field(
        default=False,
        description="Delete the working directory's cor2vox content before starting (no resume).",
        json_schema_extra=_meta("Other options", ["--clean-workdir"]),
    )
    dry_run: bool = Field(
        default=False,
        description="Validate inputs and print what would run for each participant, then stop.",
        json_schema_extra=_meta("Other options", ["--dry-run"]),
    )
    verbose: int = Field(
        default=0, ge=0, le=3,
        description="Increase log verbosity (-v, -vv, -vvv).",
        json_schema_extra=_meta("Other options", ["-v", "--verbose"], action="count"),
    )

    @field_validator("participant_label", mode="before")
    @classmethod
    def _participants(cls, v: Any) -> Any:
        return _strip_prefix(v, "sub-")

    @field_validator("bids_dir", "output_dir", "bids_filter_file", "fs_subjects_dir", "model", "use_plugin",
                     "work_dir", "atrophy", "reference_dataset")
    @classmethod
    def _absolute(cls, v: Path | None) -> Path | None:
        """Relative paths are taken from the current folder (nodes run elsewhere, so store them absolute)."""
        return None if v is None else Path(os.path.abspath(Path(v).expanduser()))

    @field_validator("session_label", mode="before")
    @classmethod
    def _sessions(cls, v: Any) -> Any:
        return _strip_prefix(v, "ses-")

    @field_validator("derivatives")
    @classmethod
    def _derivatives(cls, v: list[str] | None) -> list[str] | None:
        for item in v or []:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise ValueError(f"{item!r} must be NAME=PATH")
        return v

    @model_validator(mode="after")
    def _threads(self) -> Settings:
        if self.omp_nthreads is not None and self.nprocs is not None and self.omp_nthreads > self.nprocs:
            raise ValueError(f"--omp-nthreads ({self.omp_nthreads}) cannot exceed --nprocs ({self.nprocs})")
        return self

    @model_validator(mode="after")
    def _slurm(self) -> Settings:
        if self.slurm_wait and not self.slurm_array:
            raise ValueError("--slurm-wait only applies with --slurm-array")
        if self.slurm_array and self.analysis_level != "participant":
            raise ValueError("--slurm-array applies to the participant level (the group level runs locally)")
        return self

    @model_validator(mode="after")
    def _reference(self) -> Settings:
        if self.reference_dataset is not None and self.analysis_level != "group":
            raise ValueError("--reference-dataset applies to the group level (run the participant level with "
                             "--model trained on the reference site, then the group level with it)")
        return self

    def derivatives_map(self) -> dict[str, Path]:
        """``--derivatives`` as {name: path}."""
        return {item.split("=", 1)[0]: Path(item.split("=", 1)[1]) for item in self.derivatives or []}

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready dict of every setting (paths as strings)."""
        return self.model_dump(mode="json")


class TrainSettings(BaseModel):
    """Every option of ``cor2vox-train``; its CLI is generated from these fields like ``cor2vox-bids``'s."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bids_dir: Path = Field(description="BIDS dataset with T1w images (the training targets).",
                           json_schema_extra=_meta("positional", positional=True, metavar="BIDS_DIR"))
    output_model: Path = Field(description="Folder to write the trained model into (model.safetensors + config.json).",
                               json_schema_extra=_meta("positional", positional=True, metavar="MODEL_DIR"))
    participant_label: list[str] | None = Field(
        default=None, description="Participants to use (default: all with T1w and surfaces).",
        json_schema_extra=_meta("Data", ["--participant-label"], metavar="LABEL"))
    validation_label: list[str] | None = Field(
        default=None, description="Participants held out for validation (default: the last two).",
        json_schema_extra=_meta("Data", ["--validation-label"], metavar="LABEL"))
    fs_subjects_dir: Path | None = Field(
        default=None, description="FreeSurfer SUBJECTS_DIR (default: BIDS_DIR/derivatives/freesurfer).",
        json_schema_extra=_meta("Data", ["--fs-subjects-dir"], metavar="PATH"))
    derivatives: list[str] | None = Field(
        default=None, description="sMRIPrep GIFTI surfaces as smriprep=PATH.",
        json_schema_extra=_meta("Data", ["--derivatives"], metavar="NAME=PATH"))
    architecture: Literal["demo", "paper"] = Field(
        default="demo",
        description="UNet size: 'demo' (small, CPU) or 'paper' (≈63 M parameters, 128³, GPU). 'paper' also applies "
                    "the paper's training recipe to every training option not given: --lr 1e-4 --batch-size 2 "
                    "--accumulation 2 --plateau-patience 3000 --plateau-cooldown 3000 --plateau-on raw "
                    "--ema-decay 0.995 --ema-every 8 --ema-start-minibatches 30000.",
        json_schema_extra=_meta("Model", ["--architecture"]))
    base_channels: int | None = Field(default=None, ge=4, le=256,
                                      description="Override the architecture's base channel count.",
                                      json_schema_extra=_meta("Model", ["--base-channels"]))
    grid_shape: list[int] | None = Field(
        default=None, description="Model grid shape D H W (default: 64³ demo, 128³ paper).",
        json_schema_extra=_meta("Model", ["--grid-shape"], metavar="N"))
    spacing_mm: float = Field(default=2.0, gt=0.2, le=8.0, description="Isotropic model grid spacing in mm.",
                              json_schema_extra=_meta("Model", ["--spacing"]))
    name: str = Field(default="cor2vox-custom", description="Model name written into its config.",
                      json_schema_extra=_meta("Model", ["--name"]))
    demo: bool = Field(default=False, description="Label the model as a DEMO model (config, card, reports).",
                       json_schema_extra=_meta("Model", ["--demo"]))
    init_from: Path | None = Field(
        default=None,
        description="Fine-tune: start from the weights of this model folder (model.safetensors + config.json; "
                    "its sha256 is checked when config.json records one). The architecture, grid, conditions and "
                    "schedule come from that model; --architecture/--base-channels/--grid-shape/--spacing, if "
                    "given, must agree with it. Fresh optimizer, step 0, EMA from the loaded weights. Ignored "
                    "(with a log line) when the work dir holds a training state to resume.",
        json_schema_extra=_meta("Model", ["--init-from"], metavar="MODEL_DIR"))
    steps: int = Field(default=2000, ge=1, description="Optimizer steps.",
                       json_schema_extra=_meta("Training", ["--steps"]))
    batch_size: int = Field(default=1, ge=1,
                            description="Batch size per process (under torchrun the global batch is this times the "
                                        "number of processes).",
                            json_schema_extra=_meta("Training", ["--batch-size"]))
    accumulation: int = Field(default=1, ge=1, description="Gradient accumulation steps.",
                              json_schema_extra=_meta("Training", ["--accumulation"]))
    lr: float = Field(
        default=2e-4, gt=0, description="Adam learning rate.", json_schema_extra=_meta("Training", ["--lr"])
    )
    plateau_patience: int = Field(default=3000, ge=1, description="ReduceLROnPlateau patience (steps).",
                                  json_schema_extra=_meta("Training", ["--plateau-patience"]))
    plateau_cooldown: int = Field(default=0, ge=0,
                                  description="ReduceLROnPlateau cooldown (optimizer steps) after each reduction.",
                                  json_schema_extra=_meta("Training", ["--plateau-cooldown"]))
    plateau_on: Literal["smoothed", "raw"] = Field(
        default="smoothed", description="What ReduceLROnPlateau watches: the smoothed training loss (factor 0.98) or "
                                        "the raw loss of each step (the paper's).",
        json_schema_extra=_meta("Training", ["--plateau-on"]))
    ema_decay: float | None = Field(
        default=None, ge=0, lt=1,
        description="EMA decay per update. Default: 1 - ema_every / min(1600, steps / 10), so the EMA averages over "
                    "about a tenth of the run (the paper's 0.995 at --ema-every 8 for runs of 16000 steps or more).",
        json_schema_extra=_meta("Training", ["--ema-decay"]))
    ema_every: int = Field(default=8, ge=1, description="EMA update interval (steps).",
                           json_schema_extra=_meta("Training", ["--ema-every"]))
    ema_start: int = Field(default=0, ge=0, description="First optimizer step with EMA updates.",
                           json_schema_extra=_meta("Training", ["--ema-start"]))
    ema_start_minibatches: int | None = Field(
        default=None, ge=0,
        description="First EMA update counted in mini-batches, as the paper's start_ema_step (30000 mini-batches "
                    "with --accumulation 2 = optimizer step 15000); instead of --ema-start.",
        json_schema_extra=_meta("Training", ["--ema-start-minibatches"], metavar="N"))
    val_every: int = Field(default=250, ge=1, description="Validation (samples, SSIM) interval in steps.",
                           json_schema_extra=_meta("Training", ["--val-every"]))
    random_seed: int = Field(default=0, ge=0, description="Seed (training is deterministic for a seed on CPU).",
                             json_schema_extra=_meta("Training", ["--random-seed"]))
    device: str = Field(default="auto", pattern=DEVICE_PATTERN, description="auto, cpu, cuda or cuda:N.",
                        json_schema_extra=_meta("Training", ["--device"], metavar="{auto,cpu,cuda,cuda:N}"))
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        default="auto", description="auto: bf16 autocast on CUDA GPUs that support it (fp16 with a gradient scaler "
                                    "on older ones) and on CPUs with AMX/AVX512-BF16, else fp32. fp16 is CUDA only.",
        json_schema_extra=_meta("Training", ["--precision"]))
    grad_checkpointing: bool = Field(
        default=False, description="Recompute activations in the backward pass (less GPU memory, about a third "
                                   "more compute per step); for the paper configuration on smaller GPUs.",
        json_schema_extra=_meta("Training", ["--grad-checkpointing"]))
    dist_timeout: float = Field(
        default=1800.0, gt=0,
        description="Under torchrun: seconds a process waits for the others in a collective operation before the "
                    "job fails (a rank that died or hangs ends the job instead of stalling it).",
        json_schema_extra=_meta("Other options", ["--dist-timeout"], metavar="SECONDS"))
    work_dir: Path | None = Field(default=None, description="Where conditioning maps are cached and training state "
                                  "is kept (resume by rerunning with the same folder). Default: MODEL_DIR/../work.",
                                  json_schema_extra=_meta("Other options", ["-w", "--work-dir"], metavar="WORK_DIR"))
    no_resume: bool = Field(default=False, description="Start from scratch even if training state exists.",
                            json_schema_extra=_meta("Other options", ["--no-resume"]))
    nthreads: int | None = Field(default=None, ge=1, description="CPU threads for torch.",
                                 json_schema_extra=_meta("Other options", ["--nthreads"]))
    verbose: int = Field(default=0, ge=0, le=3, description="Increase verbosity.",
                         json_schema_extra=_meta("Other options", ["-v", "--verbose"], action="count"))

    @field_validator("participant_label", "validation_label", mode="before")
    @classmethod
    def _labels(cls, v: Any) -> Any:
        return _strip_prefix(v, "sub-")

    @field_validator("init_from")
    @classmethod
    def _init_absolute(cls, v: Path | None) -> Path | None:
        return None if v is None else Path(os.path.abspath(Path(v).expanduser()))

    @model_validator(mode="after")
    def _ema_start_once(self) -> TrainSettings:
        if self.ema_start_minibatches is not None and "ema_start" in self.model_fields_set:
            raise ValueError("give --ema-start (optimizer steps) or --ema-start-minibatches, not both")
        return self

    @field_validator("grid_shape")
    @classmethod
    def _shape(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(s < 8 or s % 8 for s in v)):
            raise ValueError("--grid-shape needs three sizes, each a multiple of 8")
        return v

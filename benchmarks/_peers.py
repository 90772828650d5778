"""Peer packages (libigl, pysdf, mesh2sdf) from a separate folder, never from the project's environment.

``benchmarks/run_all.sh`` installs the peers into their own virtual environment and exports its site-packages
folder as ``COR2VOX_BENCH_PEERS``; :func:`add_peers` appends it to ``sys.path`` (after everything else, so numpy,
scipy and the project's own packages still come from the project's environment). Without the variable the peers
must be importable as they are.
"""

from __future__ import annotations

import os
import sys


def add_peers() -> None:
    """Append the folders of ``$COR2VOX_BENCH_PEERS`` (os.pathsep-separated) to ``sys.path``."""
    for folder in os.environ.get("COR2VOX_BENCH_PEERS", "").split(os.pathsep):
        if folder and folder not in sys.path:
            sys.path.append(folder)

"""BIDS side of the app: the participants' input files (``inputs``), every output name (``naming``) and the
derivative dataset's own files (``dataset``). Imports pybids, the standard library, ``errors`` and ``settings``."""

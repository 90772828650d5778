"""Nipype interfaces, one module per domain, each beside the plain function it wraps:
``surfaces`` (read + validate + store), ``synthesis`` (conditioning maps, real T1w on the grid, sampling),
``qc`` (measures, tables, figures) and ``derivatives`` (publishing into the BIDS derivatives folder).
Every file a node reads is a ``File`` input, so Nipype's content hash covers it."""

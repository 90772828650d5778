"""Nipype graph builders only (``init_*_wf``): what runs, in which order, with which inputs; nothing runs here."""

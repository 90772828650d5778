"""The report's atrophy section names regions as people write them, describes its figures (alt text, the + mark)
and lists the thinned pial surfaces among the outputs."""

from __future__ import annotations

from cor2vox_bids.bids import naming
from cor2vox_bids.interfaces.atrophy import series_report_section

TSV = ("step\themi\tregion\tin_spec\tprescribed_mm\tsurface_mm\timage_mm\timage_raw_mm\tn_vertices\timage_coverage\n"
       "1\tR\tsuperiorfrontal\ttrue\t0.5000\t0.5000\t0.4490\t0.4700\t700\t1.0000\n"
       "1\tL\tbankssts\tfalse\t0.0000\t0.0000\t-0.0066\t-0.0055\t126\t1.0000\n")


def test_atrophy_section_text(tmp_path):
    out = tmp_path
    tsv = out / naming.atrophy_qc_path("01", None)
    tsv.parent.mkdir(parents=True)
    tsv.write_text(TSV)
    for desc, suffix in (("atrophyseries", "T1w"), ("atrophyplot", "qc")):
        fig = out / naming.figure_path("01", None, desc, suffix)
        fig.parent.mkdir(parents=True, exist_ok=True)
        fig.write_bytes(b"\x89PNG")
    pial = out / naming.atrophy_pial_path("01", None, "R", 1)
    pial.write_bytes(b"gifti")
    html, outputs = series_report_section(out, "01", None, out / naming.report_path("01", None))
    assert "<td>superior frontal</td>" in html and ">superiorfrontal<" not in html
    assert "alt='Coronal slices of the baseline and each atrophy step" in html and "marked +" in html
    assert ("Atrophy step 1 thinned pial surface, right", pial) in outputs
    assert not any("left" in what for what, _ in outputs)  # only files that exist are listed

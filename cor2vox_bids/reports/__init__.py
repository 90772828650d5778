"""Self-contained HTML reports (participant and group level) over the QC folder and the published figures."""

"""Nipype workflows of cor2vox-bids: the participant graph, execution, derivatives, reports, group level."""

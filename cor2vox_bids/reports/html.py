"""Who a participant's derivatives are about (the pages themselves: ``reports.participant``, ``reports.group``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..bids.inputs import participant_key


@dataclass(frozen=True)
class ReportSubject:
    """Who a participant's derivatives and report are about and which inputs they name."""

    subject: str
    session: str | None
    source: str  # "freesurfer" or "gifti"
    t1w: str | None = None
    source_files: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return participant_key(self.subject, self.session)

"""TensorBoard event files, written synchronously: flushed when asked, one line when they fail.

tensorboardX's SummaryWriter writes from a background thread: events queued at a `kill -9` are
lost even after a flush (the flush does not wait for the queue), and a full disk makes that
thread print a traceback per failed write while training goes on. This writer uses
tensorboardX's own record format (`EventsWriter`) from the calling thread: `flush` puts every
event so far on disk, and the first failed write turns TensorBoard off with a single warning
(metrics.jsonl keeps every record).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto.event_pb2 import Event, SessionLog
from tensorboardX.proto.summary_pb2 import Summary
from tensorboardX.summary import scalar


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


class EventWriter:
    """Scalars and summaries into `directory`'s event file, in the calling thread."""

    def __init__(
        self,
        directory: Path,
        purge_step: int | None = None,
        warn: Callable[[str], None] = _warn,
    ) -> None:
        """With `purge_step`, TensorBoard drops the events of that step and later from earlier
        files of the directory (what a resumed run needs, see `logs.metrics`)."""
        self.directory = Path(directory)
        self.warn = warn
        self.failure: str | None = None
        self.events: EventsWriter | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self.events = EventsWriter(str(self.directory / "events"))
        except OSError as error:
            self._fail(error)
            return
        if purge_step is not None:
            self._write(Event(step=purge_step, file_version="brain.Event:2"))
            self._write(Event(step=purge_step, session_log=SessionLog(status=SessionLog.START)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.add_summary(scalar(tag, value), step)

    def add_summary(self, summary: Summary, step: int) -> None:
        self._write(Event(summary=summary, step=int(step), wall_time=time.time()))

    def flush(self) -> None:
        """Everything written so far, on disk (fsync)."""
        if self.events is not None:
            try:
                self.events.flush()
            except OSError as error:
                self._fail(error)

    def close(self) -> None:
        if self.events is not None:
            try:
                self.events.close()
            except OSError as error:
                self._fail(error)
            self.events = None

    def _write(self, event: Event) -> None:
        if self.events is None:
            return
        try:
            self.events.write_event(event)
        except OSError as error:
            self._fail(error)

    def _fail(self, error: OSError) -> None:
        if self.failure is None:
            self.failure = error.strerror or str(error)
            self.warn(
                f"storm-wm: warning: cannot write TensorBoard events to {self.directory} "
                f"({self.failure}); TensorBoard logging is off for the rest of this run, "
                "metrics.jsonl keeps every record"
            )
        events, self.events = self.events, None
        if events is not None:
            try:
                events.close()
            except OSError:
                pass  # the same failure, already reported

"""Progress of a long run, on stderr: on a terminal a rich bar (done/total, rate, ETA,
failures); elsewhere (a pipe, a log file, CI) a plain line every few seconds, and a last one
at the end."""
import sys
import time

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                           TimeRemainingColumn)
from rich.text import Text


class _Rate(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f} {self.unit}/s" if speed else f"- {self.unit}/s",
                    style="progress.data.speed")


class Meter:
    """`with Meter("predict", 2000) as m: m.advance(failed=...)`; or `m.update(done, failed,
    total, status)` from counts kept elsewhere (a batch's), whose rate counts from the first
    update. `total` None: not known yet."""

    def __init__(self, what: str, total: int | None, unit: str = "images",
                 every_s: float = 5.0, console: Console | None = None):
        self.what, self.total, self.unit, self.every_s = what, total, unit, every_s
        self.console = console or Console(stderr=True)
        self.bar = self.console.is_terminal
        self.done = self.failed = 0
        self.status = None
        self.progress = None
        self.base = None  # `done` when the rate started counting

    def __enter__(self):
        self.start = time.monotonic()
        self.next_line = self.start + self.every_s
        if self.bar:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                _Rate(self.unit), TextColumn("ETA"), TimeRemainingColumn(),
                TextColumn("[red]{task.fields[failed]} failed"), console=self.console,
                # stdout stays where it goes (a file, a pipe): never into the bar's stream.
                redirect_stdout=False, redirect_stderr=False)
            self.progress.start()
            self.task = self.progress.add_task(self.what, total=self.total, failed=0)
        return self

    def write(self, text: str):
        """Text for a terminal's stdout, printed above the bar (which would cut it)."""
        if self.progress is not None:
            self.progress.console.out(text, end="", highlight=False)
        else:
            sys.stdout.write(text)

    def flush(self):
        sys.stdout.flush()

    def advance(self, failed: bool = False):
        if self.base is None:
            self.base = 0
        self.update(self.done + 1, self.failed + int(failed))

    def update(self, done: int, failed: int, total: int | None = None,
               status: str | None = None):
        first = self.base is None
        if first:
            self.base, self.start = done, time.monotonic()
        self.done, self.failed = done, failed
        self.total = total if total is not None else self.total
        self.status = status or self.status
        if self.progress is not None:
            label = f"{self.what} {self.status}" if self.status else self.what
            if first:  # what was done before is no part of the rate
                self.progress.reset(self.task, total=self.total, completed=done)
            self.progress.update(self.task, completed=done, total=self.total, failed=failed,
                                 description=label)
        elif time.monotonic() >= self.next_line:
            self.line()
            self.next_line = time.monotonic() + self.every_s

    def line(self):
        """The plain progress line."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        rate = (self.done - (self.base or 0)) / elapsed
        total = "?" if self.total is None else self.total
        parts = [f"{self.what}" + (f" {self.status}" if self.status else "") +
                 f": {self.done}/{total} done", f"{self.failed} failed"]
        if rate > 0:
            parts.append(f"{rate:.1f} {self.unit}/s")
        if self.total is not None and rate > 0 and self.done < self.total:
            parts.append(f"ETA {(self.total - self.done) / rate:.0f} s")
        self.console.print(", ".join(parts), highlight=False, soft_wrap=True)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
        else:
            self.line()

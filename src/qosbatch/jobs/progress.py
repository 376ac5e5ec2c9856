"""The job's progress bar: samples done, samples/s, ETA, and on track or behind."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from qosbatch.jobs.units import format_duration


class RichReporter:
    """A rich progress bar on stderr; notes (drift, re-plans) print above it."""

    def __init__(self, console: Console, label: str) -> None:
        self.console = console
        self.label = label
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[status]}"),
            console=console,
            transient=False,
        )
        self.task: TaskID | None = None

    def start(self, total: int, done: int) -> None:
        self.bar.start()
        self.task = self.bar.add_task(
            self.label, total=total, completed=done, rate="", eta="-", status=""
        )
        if done:
            self.note(f"resuming: {done} of {total} samples already done")

    def update(self, done: int, rate: float, eta_s: float | None, status: str) -> None:
        if self.task is None:
            return
        style = "green" if status.startswith("on track") else "red" if status else ""
        self.bar.update(
            self.task,
            completed=done,
            rate=f"{rate:,.1f} samples/s",
            eta=format_duration(eta_s) if eta_s is not None else "-",
            status=f"[{style}]{status}[/]" if style else status,
        )

    def note(self, text: str) -> None:
        self.bar.console.print(text)

    def stop(self) -> None:
        self.bar.stop()

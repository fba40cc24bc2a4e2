"""Feedback on long work: the steps of a task, and where each artifact it needed came from.

A *task* (``with progress.task("Deriving loss", total=3) as t: ... t.step("check")``) is what a
magic or a benchmark does; while one runs, :func:`report` (called by :mod:`.cache`) records every
artifact it requests: its generated source read from the cache or generated, its compiled code
read from the cache or compiled, and the seconds it took. A *display* shows the task as it goes:
:class:`TextDisplay` (the default) writes plain lines once the task has run for a second (short
work stays quiet); the magics give a notebook display that draws a progress bar updated in place.
Outside a task nothing is shown.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field

#: origin of an event -> how it reads
ORIGINS = {"cache": "from the cache", "generated": "generated", "compiled": "compiled"}


@dataclass(frozen=True)
class Event:
    """``name`` (of the generated function) ``what`` ("reverse", "primal", "compiled code"...)
    came from ``origin`` (a key of :data:`ORIGINS`) in ``seconds``."""
    name: str
    what: str
    origin: str
    seconds: float

    def __str__(self) -> str:
        took = f" in {self.seconds:.2f} s" if self.seconds >= 0.01 else ""
        return f"{self.name} ({self.what}): {ORIGINS.get(self.origin, self.origin)}{took}"


@dataclass
class Task:
    """A piece of long work: ``total`` steps (None when unknown), ``done`` so far, the label of
    the current step, and the artifact events recorded while it ran."""
    title: str
    total: int | None = None
    done: int = 0
    label: str = ""
    events: list = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    display: object = None
    failed: bool = False                 # ended by an exception

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def step(self, label: str = "") -> None:
        """Start the next step, called ``label`` (the previous one is done)."""
        if self.label:
            self.done += 1
        self.label = label
        self._show()

    def record(self, event: Event) -> None:
        self.events.append(event)
        self._show()

    def counts(self) -> dict:
        """Origin -> number of events with it."""
        counted: dict = {}
        for event in self.events:
            counted[event.origin] = counted.get(event.origin, 0) + 1
        return counted

    def summary(self) -> str:
        counted = self.counts()
        parts = [f"{counted[o]} {ORIGINS[o]}" for o in ORIGINS if counted.get(o)]
        ended = "stopped after" if self.failed else "done in"
        return (f"{self.title}: {ended} {self.seconds:.2f} s"
                + (f"; artifacts: {', '.join(parts)}" if parts else ""))

    def _show(self) -> None:
        if self.display is not None:
            self.display.update(self)


class TextDisplay:
    """Plain lines on a stream (stderr by default): each step and each artifact as it comes,
    once the task has run ``delay_s`` seconds (what came before is then written at once)."""

    def __init__(self, stream=None, delay_s: float = 1.0):
        self.stream = stream
        self.delay_s = delay_s
        self._shown_events = 0
        self._shown_label = None
        self._started = False

    def _write(self, line: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def start(self, task: Task) -> None:
        self.update(task)

    def update(self, task: Task) -> None:
        if not self._started:
            if task.seconds < self.delay_s:
                return
            self._started = True
            self._write(f"nbautodiff: {task.title}")
        if task.label and task.label != self._shown_label:
            count = f"[{task.done + 1}/{task.total}] " if task.total else ""
            self._write(f"  {count}{task.label}")
            self._shown_label = task.label
        for event in task.events[self._shown_events:]:
            self._write(f"    {event}")
        self._shown_events = len(task.events)

    def finish(self, task: Task) -> None:
        self.update(task)
        if self._started:
            self._write(f"  {task.summary()}")


_local = threading.local()


def _tasks() -> list:
    if not hasattr(_local, "tasks"):
        _local.tasks = []
    return _local.tasks


@contextlib.contextmanager
def task(title: str, total: int | None = None, display=None):
    """Run a task shown by ``display`` (a :class:`TextDisplay` if None): yields the
    :class:`Task`, on which the caller calls :meth:`Task.step`. A task inside another one
    reports into the outer task."""
    tasks = _tasks()
    if tasks:
        yield tasks[-1]
        return
    display = display if display is not None else TextDisplay()
    current = Task(title, total, display=display)
    tasks.append(current)
    display.start(current)
    try:
        yield current
    except BaseException:
        current.failed = True
        raise
    finally:
        tasks.pop()
        if current.label:
            current.done += 1
        display.finish(current)


def report(name: str, what: str, origin: str, seconds: float) -> None:
    """Record an artifact event in the running task, if any."""
    tasks = _tasks()
    if tasks:
        tasks[-1].record(Event(name, what, origin, seconds))

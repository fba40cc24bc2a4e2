"""How the magics show a :mod:`nbautodiff.progress` task: in a notebook, a progress bar updated in
place, with each artifact and whether it came from the cache; elsewhere, plain lines."""
from __future__ import annotations

import html
import time

from nbautodiff import progress

#: The bar appears once a task has run this long, and is redrawn at most this often.
DELAY_S = 0.3
REDRAW_S = 0.1


def display_for(shell):
    """The display of tasks run by ``shell``'s magics: :class:`NotebookDisplay` in a Jupyter
    kernel, :class:`nbautodiff.progress.TextDisplay` elsewhere (a terminal, a script)."""
    if type(shell).__name__ == "ZMQInteractiveShell":
        return NotebookDisplay()
    return progress.TextDisplay()


class NotebookDisplay:
    """One HTML output per task, updated in place (``display_id``): once the task has run
    ``DELAY_S``, a bar of the steps done, the current step and the latest artifact; at the end
    (if the task built or loaded artifacts and did not fail) a one-line summary saying how many
    came from the cache, with the artifacts in a collapsed list."""

    def __init__(self):
        self._handle = None
        self._drawn = 0.0

    def start(self, task: progress.Task) -> None:
        pass

    def update(self, task: progress.Task) -> None:
        now = time.perf_counter()
        if task.seconds >= DELAY_S and now - self._drawn >= REDRAW_S:
            self._draw(task)

    def finish(self, task: progress.Task) -> None:
        if task.failed:
            if self._handle is not None:
                self._draw(task, finished=True)
        elif task.events or self._handle is not None:
            self._draw(task, finished=True)

    def _draw(self, task: progress.Task, finished: bool = False) -> None:
        from IPython.display import HTML, display
        content = HTML(self.html(task, finished))
        if self._handle is None:
            self._handle = display(content, display_id=True)
        else:
            self._handle.update(content)
        self._drawn = time.perf_counter()

    @staticmethod
    def html(task: progress.Task, finished: bool = False) -> str:
        """The HTML of ``task``: bar and current step while it runs, a summary once finished."""
        events = "".join(f"<li>{html.escape(str(event))}</li>" for event in task.events)
        listing = (f"<details><summary>{len(task.events)} artifacts</summary>"
                   f"<ul>{events}</ul></details>") if task.events else ""
        if finished:
            return (f'<div class="nbautodiff-progress">{html.escape(task.summary())}'
                    f"{listing}</div>")
        total = task.total or 1
        latest = f"<br><small>{html.escape(str(task.events[-1]))}</small>" if task.events else ""
        return (f'<div class="nbautodiff-progress"><progress value="{task.done}" '
                f'max="{total}" style="width: 20em"></progress> '
                f"{html.escape(task.title)}: {html.escape(task.label)}{latest}</div>")

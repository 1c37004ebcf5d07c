"""The request form: what to run, on what, for how long and when.

Its choices come from the brokers' ``/capabilities``: the largest cores and memory any broker
offers, the kinds of executable some broker runs, and a GPU row only where some broker has
GPUs. ``collect()`` turns the fields into the arguments of :func:`eb_sdk.aio.request`.
"""

from __future__ import annotations

import ast
import html
import os
import shlex
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

import ipywidgets as w

from .._errors import InvalidRequest
from ..builders import Compute, Container, JupyterServer, Notebook
from ..model import Capabilities, SimpleComputeResource
from ..model.times import Interval

__all__ = ["RequestForm", "current_notebook", "parse_parameters"]

NOTEBOOK_KIND = "jupyter-notebook"
CONTAINER_KIND = "docker-container"
SERVER_KIND = "jupyter-server"
DURATIONS = ["10 min", "30 min", "1 h", "2 h", "4 h", "8 h", "1 d"]
PHRASES = [
    "now",
    "within 10 min",
    "within 1 h",
    "in 2 hours",
    "this afternoon",
    "tomorrow 09:00",
    "Mon-Fri 09:00-12:00",
]
WINDOWS = [
    ("exactly then", 0),
    ("within 15 min", 15),
    ("within 1 h", 60),
    ("within 4 h", 240),
    ("within 1 day", 1440),
]
DEFAULT_MAX_CORES, DEFAULT_MAX_MEMORY = 64, 512


def current_notebook() -> str | None:
    """The path of the notebook this kernel belongs to (Jupyter Server sets it), if known."""
    path = os.environ.get("JPY_SESSION_NAME", "")
    return path if path.endswith(".ipynb") else None


def parse_parameters(text: str) -> dict[str, Any]:
    """``n=10, name=abc, xs=[1, 2]`` → ``{"n": 10, "name": "abc", "xs": [1, 2]}``.

    Values are Python literals where they read as one, else text."""
    out: dict[str, Any] = {}
    depth, part, parts = 0, "", []
    for ch in text:  # split on the commas outside brackets
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += ch
    parts.append(part)
    for item in (p.strip() for p in parts):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise InvalidRequest(f"parameters: expected name=value, not {item!r}")
        try:
            out[name.strip()] = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            out[name.strip()] = value.strip()
    return out


def _wide(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "style": {"description_width": "7em"},
        "layout": w.Layout(width="28em"),
    }


class RequestForm(w.VBox):
    """The fields of a request and the "Find offers" button."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self.notebook_path = current_notebook()
        self.what = w.ToggleButtons(
            options=self._what_options({NOTEBOOK_KIND, SERVER_KIND, CONTAINER_KIND}),
            description="run",
            style={"description_width": "7em", "button_width": "9em"},
        )
        self.what.add_class("eb-what")
        self.path = w.Text(placeholder="analysis.ipynb", **_wide("notebook"))
        self.path.add_class("eb-path")
        self.parameters = w.Text(placeholder="n=10, name='abc'", **_wide("parameters"))
        self.parameters.add_class("eb-parameters")
        self.image = w.Text(placeholder="python:3.12-slim", **_wide("image"))
        self.command = w.Text(placeholder="python -c 'print(1)'", **_wide("command"))
        self.server_dir = w.Text(placeholder="(the session's own folder)", **_wide("folder"))
        self.server_dir.add_class("eb-server-dir")
        self.cores = w.BoundedIntText(1, min=1, max=DEFAULT_MAX_CORES, **_wide("cores"))
        self.memory = w.BoundedIntText(1, min=1, max=DEFAULT_MAX_MEMORY, **_wide("memory GiB"))
        self.gpus = w.BoundedIntText(0, min=0, max=0, **_wide("GPUs"))
        self.gpu_model = w.Dropdown(options=[("any", "")], value="", **_wide("GPU model"))
        self.duration = w.Combobox(value="30 min", options=DURATIONS, **_wide("duration"))
        self.duration.add_class("eb-duration")
        self.when_mode = w.ToggleButtons(
            options=[("phrase", "phrase"), ("date & time", "picker")],
            description="when",
            style={"description_width": "7em", "button_width": "9em"},
        )
        self.when = w.Combobox(value="now", options=PHRASES, **_wide(""))
        self.when.add_class("eb-when")
        soon = datetime.now(zone) + timedelta(hours=1)
        self.date = w.DatePicker(value=soon.date(), **_wide("date"))
        self.time = w.TimePicker(value=time(soon.hour, 0), **_wide("time"))
        self.window = w.Dropdown(options=WINDOWS, value=60, **_wide("start"))
        self.find = w.Button(description="Find offers", button_style="primary", icon="search")
        self.find.add_class("eb-find")
        self.gpu_row = w.VBox([self.gpus, self.gpu_model])
        self.notebook_box = w.VBox([self.path, self.parameters])
        self.container_box = w.VBox([self.image, self.command])
        self.server_box = w.VBox([self.server_dir])
        self.picker_box = w.VBox([self.date, self.time, self.window])
        self.what.observe(self._layout, names="value")
        self.when_mode.observe(self._layout, names="value")
        super().__init__(
            [
                self.what,
                self.notebook_box,
                self.server_box,
                self.container_box,
                self.cores,
                self.memory,
                self.gpu_row,
                self.duration,
                self.when_mode,
                self.when,
                self.picker_box,
                self.find,
            ]
        )
        self.add_class("eb-form")
        self.gpu_row.layout.display = "none"
        self._layout()

    # -- choices -------------------------------------------------------------------------------

    def _what_options(self, kinds: set[str]) -> list[tuple[str, str]]:
        options = []
        if NOTEBOOK_KIND in kinds and self.notebook_path:
            options.append(("this notebook", "current"))
        if NOTEBOOK_KIND in kinds:
            options.append(("a notebook", "notebook"))
        if SERVER_KIND in kinds:
            options.append(("a Jupyter server", "server"))
        if CONTAINER_KIND in kinds:
            options.append(("a container", "container"))
        return options or [("a notebook", "notebook")]

    def apply_capabilities(self, caps: Sequence[Capabilities]) -> None:
        """Limits and choices from what the brokers said they can do (none: keep defaults)."""
        if not caps:
            return
        kinds = {  # IVOA kinds are URLs (…/jupyter-notebook-1.0.yaml), ours URNs (…:jupyter-server)
            k.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".yaml")
            for c in caps
            for k in c.executables
        }
        kinds = {k.removesuffix("-1.0") for k in kinds}
        chosen = self.what.value
        self.what.options = self._what_options(kinds)
        values = [v for _, v in self.what.options]
        self.what.value = chosen if chosen in values else values[0]
        self.cores.max = max(1, max(c.max_compute.get("cores", 0) for c in caps))
        self.memory.max = max(1, max(c.max_compute.get("memory", 0) for c in caps))
        gpus: dict[str, int] = {}
        for c in caps:
            for pool, count in c.accelerators.items():
                kind, _, model = pool.partition(":")
                if kind.lower() == "gpu" and count > 0:
                    gpus[model] = max(gpus.get(model, 0), count)
        if gpus:
            self.gpus.max = max(gpus.values())
            self.gpu_model.options = [("any", ""), *((m, m) for m in sorted(gpus) if m)]
            self.gpu_row.layout.display = None
        else:
            self.gpus.value = 0
            self.gpu_row.layout.display = "none"
        self._layout()

    def _layout(self, _change: Any = None) -> None:
        what = self.what.value
        self.notebook_box.layout.display = None if what in ("notebook", "current") else "none"
        self.path.layout.display = None if what == "notebook" else "none"
        self.container_box.layout.display = None if what == "container" else "none"
        self.server_box.layout.display = None if what == "server" else "none"
        picker = self.when_mode.value == "picker"
        self.when.layout.display = "none" if picker else None
        self.picker_box.layout.display = None if picker else "none"

    # -- the request ---------------------------------------------------------------------------

    def executable(self) -> Any:
        what = self.what.value
        if what == "container":
            image = self.image.value.strip()
            if not image:
                raise InvalidRequest("container: give an image, e.g. python:3.12-slim")
            command = self.command.value.strip()
            return Container(image, command=shlex.split(command) if command else None)
        if what == "server":
            folder = self.server_dir.value.strip()
            return JupyterServer(str(Path(folder).expanduser()) if folder else None)
        path = self.notebook_path if what == "current" else self.path.value.strip()
        if not path:
            raise InvalidRequest("notebook: give the path of a notebook, e.g. analysis.ipynb")
        if not path.endswith(".ipynb"):
            raise InvalidRequest(f"notebook: {path!r} is not a notebook (.ipynb)")
        params = parse_parameters(self.parameters.value)
        return Notebook(str(Path(path).expanduser()), parameters=params or None)

    def start(self) -> str | Interval:
        if self.when_mode.value == "picker":
            day: date | None = self.date.value
            at: time | None = self.time.value
            if day is None or at is None:
                raise InvalidRequest("when: pick a date and a time")
            begin = datetime.combine(day, at).replace(tzinfo=self.zone)
            return Interval(begin, begin + timedelta(minutes=int(self.window.value)))
        phrase = self.when.value.strip()
        if not phrase:
            raise InvalidRequest("when: say when, e.g. 'now' or 'within 10 min'")
        return phrase

    def compute(self) -> SimpleComputeResource:
        gpus = int(self.gpus.value) if self.gpu_row.layout.display != "none" else 0
        return Compute(
            cores=int(self.cores.value),
            memory=f"{int(self.memory.value)}GiB",
            gpus=gpus or None,
            gpu_model=(self.gpu_model.value or None) if gpus else None,
        )

    def collect(self) -> dict[str, Any]:
        """Keyword arguments for ``aio.request`` (raises :class:`InvalidRequest`)."""
        duration = self.duration.value.strip()
        if not duration:
            raise InvalidRequest("duration: say how long, e.g. '30 min' or '2 h'")
        return {
            "executable": self.executable(),
            "compute": self.compute(),
            "duration": duration,
            "start": self.start(),
        }

    def describe(self) -> str:
        """A short text of what is being asked, for the status line."""
        what = {
            "current": "this notebook",
            "server": "a Jupyter server",
            "container": self.image.value.strip(),
        }.get(self.what.value, self.path.value.strip())
        return html.escape(f"{what}, {self.cores.value} cores, {self.memory.value} GiB")

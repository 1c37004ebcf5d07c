"""An ipywidgets panel: describe a request, compare offers from every broker, accept one.

``eb.panel()`` in a notebook. This package imports ipywidgets only when a panel is made, so
``import eb_sdk`` stays light. See docs/panel.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._panel import Panel

__all__ = ["Panel", "panel"]


def panel(brokers: Any = None, **kwargs: Any) -> Panel:
    """A panel to ask every broker for offers, accept one and follow its sessions.

    ``brokers`` as in :func:`eb_sdk.request` (default: the configured ones); ``tz`` (the zone
    times are shown and read in) and ``timeout`` (the fan-out deadline, seconds) are passed on.
    Use it in a notebook: its work runs as tasks on the kernel's event loop.
    """
    from ._panel import Panel

    return Panel(brokers, **kwargs)


def __getattr__(name: str) -> Any:
    if name == "Panel":
        from ._panel import Panel

        return Panel
    raise AttributeError(name)

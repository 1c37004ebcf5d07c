"""What the spawn page tells users: errors as they are, and news that is not an error."""

from __future__ import annotations

from .form import esc


class UserError(Exception):
    """An error shown to the user as it is (on the spawn page)."""

    jupyterhub_message: str | None

    def __init__(self, message: str, html: str | None = None) -> None:
        super().__init__(message)
        self.jupyterhub_message = message
        if html is not None:
            self.jupyterhub_html_message = html


class Notice(UserError):
    """Not an error (offers refreshed, a slot booked): the form shows it as news the next time
    it is shown (see :data:`NEWS`), and the hub's "Error:" box stays empty."""

    def __init__(self, message: str, html: str | None = None) -> None:
        super().__init__(message)
        self.jupyterhub_message = None
        self.html = html or esc(message)


class Booked(Notice):
    """A later offer was booked; the form says so instead of spawning."""

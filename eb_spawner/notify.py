"""Notifications by email (SMTP) and by webhook (Slack-compatible JSON ``{"text": ...}``)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx

from .config import EBSettings


class Notifier:
    """Sends one text to a user by every configured channel; failures are only logged."""

    def __init__(self, settings: EBSettings, log: Any = None) -> None:
        self.settings = settings
        self.log = log or logging.getLogger("eb_spawner.notify")

    def address(self, user: str) -> str | None:
        if user in self.settings.emails:
            return str(self.settings.emails[user])
        if "@" in user:
            return user
        if self.settings.email_domain:
            return f"{user}@{self.settings.email_domain}"
        return None

    async def send(self, user: str, subject: str, text: str) -> None:
        await asyncio.gather(self._email(user, subject, text), self._webhook(user, text))

    async def soon(self, user: str, broker: str, minutes: int, when: str) -> None:
        text = (
            f"Your session will be available in {minutes} minutes (booked for {when} on {broker})."
        )
        await self.send(user, "Your Jupyter session starts soon", text)

    async def failed(self, user: str, broker: str, when: str, reason: str) -> None:
        text = (
            f"Your session booked for {when} on {broker} could not be started: {reason}. "
            "It is tried again until the booked time is over."
        )
        await self.send(user, "Your booked Jupyter session could not start", text)

    async def ready(self, user: str, broker: str, url: str) -> None:
        if not (self.settings.smtp or self.settings.webhook_url):
            return
        await self.send(
            user, "Your Jupyter session is ready", f"Your session on {broker} is ready."
        )

    async def _email(self, user: str, subject: str, text: str) -> None:
        smtp = dict(self.settings.smtp)
        to = self.address(user)
        if not smtp or not to:
            return
        msg = EmailMessage()
        msg["From"] = str(smtp.get("from") or "jupyterhub@localhost")
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(text)

        def deliver() -> None:
            with smtplib.SMTP(
                str(smtp.get("host", "localhost")), int(smtp.get("port", 25)), timeout=10
            ) as client:
                if smtp.get("starttls"):
                    client.starttls()
                if smtp.get("username"):
                    client.login(str(smtp["username"]), str(smtp.get("password", "")))
                client.send_message(msg)

        try:
            await asyncio.to_thread(deliver)
        except (OSError, smtplib.SMTPException) as exc:
            self.log.warning("email to %s failed: %s", to, exc)

    async def _webhook(self, user: str, text: str) -> None:
        url = self.settings.webhook_url
        if not url:
            return
        payload = {"text": f"@{user}: {text}", "username": "JupyterHub", "user": user}
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(url, json=payload)
                response.raise_for_status()
        except httpx.HTTPError as exc:
            self.log.warning("webhook for %s failed: %s", user, exc)

"""Sync alerts: logged, appended to DuckDB `sync_alerts`, and POSTed to a Slack-compatible webhook."""

# Framework-free. Every message passes through `redact` so a secret that leaked into an exception text never reaches a
# log line, the table, or the webhook.

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import requests

from oneroster_pipeline.client.redaction import REDACTOR

from . import store
from .backends import write_bookkeeping

if TYPE_CHECKING:
    from .backends import Warehouse

SECRET_ENV_VARS = ("ONEROSTER_CLIENT_SECRET", "ONEROSTER_ACCESS_TOKEN", "ONEROSTER_ALERT_WEBHOOK_URL")


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of SECRET_ENV_VARS in `env` (e.g. `os.environ`): what `redact` hides."""
    return [env.get(name) or "" for name in SECRET_ENV_VARS]


def redact(text: str, secrets: Iterable[str | None] | None = None) -> str:
    """The process's one redactor (`client.redaction`), with the values of `secrets` (the caller's: e.g.
    `secret_values(os.environ)`) registered first: masked in every form, and from now on everywhere."""
    REDACTOR.register(*(secrets or ()))
    return REDACTOR.redact(text)


@dataclass(frozen=True)
class Alert:
    kind: str  # 'run_failure' | 'run_canceled' | 'check_failure' | 'sync_held'
    job_name: str | None
    run_id: str | None
    subject: str
    message: str

    def text(self) -> str:
        where = f" (job {self.job_name}, run {self.run_id})" if self.job_name else ""
        return f"OneRoster sync alert - {self.subject}{where}: {self.message}"


def send_alert(
    alert: Alert,
    database: str | Path | Warehouse,
    webhook_url: str | None = None,
    logger: logging.Logger | None = None,
    secrets: Iterable[str | None] | None = None,
) -> None:
    """Deliver an alert on every channel; one channel failing does not stop the others. Every value of `secrets`
    is masked first (the caller passes them: e.g. `secret_values(os.environ)`). `database` is the DuckDB file's
    path or a `backends.Warehouse` (a lake's district: anything with `connect()`)."""
    secrets = list(secrets or ())
    log = logger or logging.getLogger(__name__)
    alert = Alert(
        alert.kind, alert.job_name, alert.run_id, redact(alert.subject, secrets), redact(alert.message, secrets)
    )
    log.error(alert.text())
    try:
        write_bookkeeping(database.connect if hasattr(database, "connect") else lambda: store.connect(database),
                          lambda con: store.insert_rows(con, "sync_alerts", [{
                              "alerted_at": datetime.now(timezone.utc), "job_name": alert.job_name,
                              "run_id": alert.run_id, "kind": alert.kind, "subject": alert.subject,
                              "message": alert.message}]))
    except Exception as error:  # the alert must still go out when the database is unavailable
        log.error("could not record the alert in sync_alerts: %s", redact(str(error), secrets))
    if webhook_url:
        try:
            response = requests.post(webhook_url, json={"text": alert.text()}, timeout=10)
            response.raise_for_status()
        except requests.RequestException as error:
            # never echo the webhook URL: it is a secret (Slack webhook URLs carry their token)
            log.error("could not POST the alert to ONEROSTER_ALERT_WEBHOOK_URL: %s",
                      type(error).__name__)

"""Upload the dashboards to a Grafana server with grafana-client.

Idempotent by construction: every dashboard has a fixed ``uid`` and is posted with
``overwrite: true`` and no ``id``, into a folder with a fixed uid that is created on
first use, so pushing twice leaves Grafana as pushing once did. The token comes from
``KOXPULSE_GRAFANA_TOKEN`` only and never appears in a message.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from koxpulse.errors import ConfigError, KoxpulseError

FOLDER_UID = "koxpulse"
FOLDER_TITLE = "koxpulse"
TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Pushed:
    uid: str
    title: str
    version: int | None
    url: str


def push(
    url: str, token: str, *, folder_uid: str = FOLDER_UID, timeout_s: float = TIMEOUT_S
) -> list[Pushed]:
    """Create the folder if needed, then post every dashboard; returns what Grafana said."""
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaServerError

    from dashboards.build import generate

    target = _check_url(url)
    if not token:
        raise ConfigError(
            "no Grafana token: set KOXPULSE_GRAFANA_TOKEN to a service-account token "
            "with the Editor role"
        )
    api = GrafanaApi.from_url(target, credential=token, timeout=timeout_s)
    where = _redacted(target)
    pushed = []
    try:
        _ensure_folder(api, folder_uid)
        for text in generate().files.values():
            doc = json.loads(text)
            doc.pop("id", None)  # the uid identifies it; an id would pin one Grafana's row
            reply = api.dashboard.update_dashboard(
                {
                    "dashboard": doc,
                    "folderUid": folder_uid,
                    "overwrite": True,
                    "message": "koxpulse dashboards push",
                }
            )
            pushed.append(
                Pushed(
                    uid=str(reply.get("uid", doc["uid"])),
                    title=doc["title"],
                    version=reply.get("version"),
                    url=str(reply.get("url", "")),
                )
            )
    except GrafanaClientError as exc:
        if exc.status_code in (401, 403):
            raise ConfigError(
                f"Grafana at {where} refused the token ({exc.status_code} "
                f"{'Unauthorized' if exc.status_code == 401 else 'Forbidden'}): check "
                "KOXPULSE_GRAFANA_TOKEN and that its service account may edit dashboards"
            ) from exc
        raise KoxpulseError(
            f"Grafana at {where} rejected the upload ({exc.status_code}): {_reason(exc)}"
        ) from exc
    except (GrafanaServerError, GrafanaException) as exc:
        raise KoxpulseError(
            f"Grafana at {where} failed ({exc.status_code}): {_reason(exc)}"
        ) from exc
    except OSError as exc:  # connection refused, DNS, TLS: niquests errors are OSErrors
        raise KoxpulseError(f"cannot reach Grafana at {where}: {_os_reason(exc)}") from exc
    return pushed


def _ensure_folder(api: object, uid: str) -> None:
    from grafana_client.client import GrafanaClientError

    folder = api.folder  # type: ignore[attr-defined]
    try:
        folder.get_folder(uid)
    except GrafanaClientError as exc:
        if exc.status_code != 404:
            raise
        folder.create_folder(FOLDER_TITLE, uid=uid)


def _check_url(url: str) -> str:
    if not url:
        raise ConfigError("no Grafana URL: pass --grafana URL or set KOXPULSE_GRAFANA_URL")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--grafana {_redacted(url)}: must be http(s)://host[:port][/path]")
    if parts.username or parts.password:
        raise ConfigError(
            "--grafana: put no credentials in the URL; the token comes from KOXPULSE_GRAFANA_TOKEN"
        )
    return url.rstrip("/")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password or parts.username:
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://***@{host}{port}{parts.path}"
    return url


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", "") or str(exc)
    return _first_line(message)


def _os_reason(exc: OSError) -> str:
    """The socket's own words ("[Errno 111] Connection refused"), not the pool's wrapping."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    return found.group(0) if found else _first_line(exc)


def _first_line(value: object) -> str:
    text = str(value).strip().splitlines()
    return text[0] if text else value.__class__.__name__

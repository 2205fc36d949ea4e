"""`storemon health`: whether the service running beside it answers `/healthz`.

For a container's health check (the image's HEALTHCHECK, docker-compose): one image
runs every service, and each listens on its own port (the API on STOREMON_API_PORT,
the reporter on STOREMON_REPORTER_METRICS_PORT, the worker on
STOREMON_WORKER_METRICS_PORT), so the probe asks each of those ports on the loopback
interface and is satisfied by the first that answers 200. Standard library only: it
runs every few seconds and must start fast.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass

from storemon.config import Settings

LOOPBACK = "127.0.0.1"
PATH = "/healthz"


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    #: What answered, or why nothing did, one line.
    detail: str


def local_service_ports(settings: Settings) -> dict[str, int]:
    """Service name -> the port its `/healthz` is served on (0: not served)."""
    ports = {
        "api": settings.api_port,
        "reporter": settings.reporter_metrics_port,
        "worker": settings.worker_metrics_port,
    }
    return {name: port for name, port in ports.items() if port}


def probe(settings: Settings, timeout_s: float = 2.0) -> ProbeResult:
    """Healthy when one of the services' ports answers `/healthz` with 200."""
    failures = []
    for name, port in local_service_ports(settings).items():
        url = f"http://{LOOPBACK}:{port}{PATH}"
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                if response.status == 200:
                    return ProbeResult(True, f"{name} answers {url}")
                failures.append(f"{name} {url}: HTTP {response.status}")
        except urllib.error.HTTPError as exc:
            failures.append(f"{name} {url}: HTTP {exc.code}")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            failures.append(f"{name} {url}: {reason}")
    return ProbeResult(False, "; ".join(failures) or "no service port is configured")

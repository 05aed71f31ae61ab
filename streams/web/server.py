"""``crmstream dashboard``: the dashboard app served by uvicorn on its own port."""

from __future__ import annotations

import uvicorn

from crmstream.streams.settings import Settings
from crmstream.streams.web.app import create_dashboard


def run_dashboard(settings: Settings, host: str, port: int) -> int:
    """Serve the dashboard until SIGINT or SIGTERM; return the exit code."""
    app = create_dashboard(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # The access log would print customer ids of API paths: ours logs none.
        access_log=False,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    print(f"dashboard: http://{host}:{port}/", flush=True)
    server.run()
    return 0 if server.started else 1

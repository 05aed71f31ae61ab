"""Thin Faust agents: read topics, call models/, write through streams/ stores, send outputs.

Each module defines ``register(app, runtime)``; :func:`register_all` is what the app
factory calls.
"""

from __future__ import annotations

import faust

from crmstream.agents import customer_events
from crmstream.streams.runtime import Runtime

MODULES = (customer_events,)


def register_all(app: faust.App, runtime: Runtime) -> None:
    """Define every agent on ``app``."""
    for module in MODULES:
        module.register(app, runtime)

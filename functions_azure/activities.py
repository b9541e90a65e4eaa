"""The default activities of the Function App (``RUSTYFLOWER_ACTIVITIES`` unset).

Deploy your activities module with the app (the same module your on-premises workers
run) and name it in ``RUSTYFLOWER_ACTIVITIES`` (``package.module`` for its ``registry``,
or ``package.module:attribute``). Without it, the app runs the activities registered in
RustyFlower's default registry by modules imported here.
"""

from __future__ import annotations

from rustyflower.core.activities import registry

__all__ = ["registry"]

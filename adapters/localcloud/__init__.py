"""Local clouds: the clouds RustyFlower fails over to, run on one machine for rehearsal.

``rustyflower cloud azure`` (``adapters/cli/cloud_azure.py``) starts Azurite
(:mod:`.azurite`) and :class:`.azure.LocalFunctionApp`: an HTTP server on 127.0.0.1 that
calls the real Function App's HTTP functions, with the real Durable Functions SDK
orchestrator replayed by :class:`.durable_host.DurableHost` (the part of the Functions host
and its Durable extension that cannot run here). The Function App itself is a deployable,
never imported by name: :mod:`.function_app` loads it from a folder (docs/failover.md,
"Rehearse on your laptop").

The tests drive the same host on a virtual clock (tests/azure, tests/continuity).
"""

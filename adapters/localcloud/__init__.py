"""Local clouds: the clouds RustyFlower fails over to, run on one machine (loopback) to
rehearse failover and failback on a laptop.

* ``aws`` (``rustyflower cloud aws``): moto in server mode with its Step Functions
  executor on, the tables and bucket of infra/terraform/aws, a machine per flow, and the
  machines' Lambda invokes answered in-process by the real handlers of ``lambda_aws``;
  ``moto_fixes``: the patches moto needs to run compiled machines as Step Functions does
  (the one place they live; the tests' moto harnesses use them too); ``lambdas``: the
  Lambda functions, hosted as the Lambda runtime hosts them; ``record``: the settings a
  running local AWS writes beside ``rustyflower dev``'s ``server.url``.
* ``azure`` (``rustyflower cloud azure``, ``adapters/cli/cloud_azure.py``): Azurite
  (:mod:`.azurite`) and :class:`.azure.LocalFunctionApp`, an HTTP server on 127.0.0.1 that
  calls the real Function App's HTTP functions, with the real Durable Functions SDK
  orchestrator replayed by :class:`.durable_host.DurableHost` (the part of the Functions
  host and its Durable extension that cannot run here). The Function App is a deployable,
  never imported by name: :mod:`.function_app` loads it from a folder.

moto is an optional extra (``rustyflower[local]``): only ``aws``, ``moto_fixes`` and
``lambdas`` import it, and nothing imports them but ``rustyflower cloud aws`` and tests.
The tests drive the same Durable host on a virtual clock (tests/azure, tests/continuity).
"""

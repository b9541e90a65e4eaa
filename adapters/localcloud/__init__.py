"""Local clouds: a cloud on loopback to rehearse failover and failback on a laptop.

* ``aws``: moto in server mode with its Step Functions executor on, the tables and bucket
  of infra/terraform/aws, a machine per flow, and the machines' Lambda invokes answered
  in-process by the real handlers of ``lambda_aws`` (``rustyflower cloud aws``);
* ``moto_fixes``: the patches moto needs to run compiled machines as Step Functions does
  (the one place they live; the tests' moto harnesses use them too);
* ``lambdas``: the Lambda functions, hosted as the Lambda runtime hosts them;
* ``record``: the settings a running local cloud writes beside ``rustyflower dev``'s
  ``server.url``, which the continuity commands read as defaults.

moto is an optional extra (``rustyflower[local]``): only ``aws``, ``moto_fixes`` and
``lambdas`` import it, and nothing imports them but ``rustyflower cloud aws`` and tests.
"""

"""The lifeboat's contract between the site and the clouds (pure: no I/O, no clock).

* ``lease``: the site lease each cloud keeps (who holds the site's instances, since
  when), the rule that makes it stale, and the port its stores implement;
* ``replica``: how a replicated snapshot is named and described in cloud storage, and
  the port the replica stores implement;
* ``takeover``: which replicated instances a watchdog continues (children with their
  parents) and the report it writes.

The site (``adapters/continuity``) and the watchdogs (``lambda_aws/watchdog.py``,
``functions_azure/watchdog.py``) both read and write these documents; docs/failover.md
("Replication, lease and watchdog") is the runbook.
"""

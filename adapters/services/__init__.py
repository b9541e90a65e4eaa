"""The built-in service tasks' backends on-premises, and the HTTP client every runtime shares.

Service tasks mean the same on every runtime (``core.services``); here is how the site
carries them out (:mod:`.onprem`: Redis streams, a folder or Redis for objects) and the
``http.call`` client the site, the Azure activity function and the AWS activity Lambda
use alike (:mod:`.http`, which needs nothing but the standard library, so the cloud
packages carry it without Redis). Not a runtime: the Redis runner, the in-process runner
and the CLI are given these backends by whoever composes them. Import the modules
themselves (this package imports nothing, so that the HTTP client comes without redis).
"""

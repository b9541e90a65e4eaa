"""RustyFlower's AWS Lambda functions: thin wiring of Lambda events to core and adapters.aws.

Handlers (``lambda_aws.settings.HANDLERS``): ``activity.handler`` (one activity call),
``tokens.handler`` (stores an event wait's task token; ``adapters.aws.tokens.signal``
answers it),
``continuation.handler`` (a signed snapshot -> an execution), ``failback.handler`` (an
execution -> a signed snapshot). ``python -m lambda_aws.package`` builds the function zip
and the dependency layer; ``python -m lambda_aws.asl`` compiles flows for
infra/terraform/aws. See docs/aws-deploy.md.
"""

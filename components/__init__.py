"""Luna's building blocks as Pulumi ComponentResources.

``app``, ``database``, ``cache``, ``proxy``, ``monitoring`` and ``logs`` say what
runs; ``platforms`` says how (Docker or Kubernetes); ``configs`` builds the
configuration files they ship; ``spec`` is the contract between them.
"""

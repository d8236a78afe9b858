"""The entry point the Pulumi CLI runs for ``--policy-pack policy``.

The CLI's ``pulumi-analyzer-policy-python`` runs ``python -m pulumi.policy``, which
``runpy.run_path``s this directory, so the repository root is put on ``sys.path``
to import the pack as the package the tests import. ``PolicyPack(...)`` starts
the analyzer's gRPC server and blocks: it must stay the only thing here.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.luna_policies import PACK_NAME, POLICIES

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)

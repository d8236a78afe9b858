"""The render the rehearsal applies: the shipped program's, with real secrets.

``infra.render.render`` runs the program in-process, as ``python -m
infra.render`` does. Only configuration values are substituted, each listed in
:data:`Render.substitutions`:

- ``platform=docker`` and ``dockerHost``: the private daemon's socket;
- the object store (``backupEndpoint``, path-style URIs) is the local one;
- required secrets get real values: the object store's keys, a fresh cipher
  pass, an OpenAI key nobody uses, the edge's TLS pair issued for the stack's
  own host by a throwaway CA, and the chat/pager webhooks pointing at the
  rehearsal's receiver.

Keys, certificates of the internal CA and passwords are generated at render
time (tests/rehearsal/pki.py), as the providers would generate them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from infra.render import Rendered, load_stack_config, render
from tests.engine.model import Resource, snapshot
from tests.real.s3 import ACCESS_KEY, REGION, SECRET_KEY
from tests.rehearsal.pki import RehearsalMocks, edge_issuer, issue_pair
from tests.rehearsal.world import S3_HOST, World

__all__ = ["STACKS", "Render", "render_for"]

STACKS = ("staging", "prod")


@dataclass
class Render:
    stack: str
    rendered: Rendered
    resources: dict[str, Resource]
    host: str
    """The stack's public host name (appUrl's)."""
    edge_ca: str
    """PEM of the CA that issued the edge's certificate: clients verify against it."""
    bucket: str
    cipher_pass: str
    edge: tuple[str, str, str]
    """The edge's (CA, certificate, key) PEMs."""
    image_ids: dict[str, str] = field(default_factory=dict)
    openai_key: str = ""
    substitutions: list[str] = field(default_factory=list)
    pager_key: str = ""
    """Prod's PagerDuty routing key, kept from render to render as a stack secret is."""
    random_ids: dict[str, tuple[str, str]] = field(default_factory=dict)
    """RandomId name -> (keepers, value): the engine's state of them, shared by every
    render that descends from the first (tests/rehearsal/pki.py)."""
    edge_issuer: tuple[str, str] = ("", "")
    """The edge CA's (certificate, key) PEMs: a renewed pair comes from it."""

    def images(self) -> list[str]:
        return sorted(
            str(r.inputs["name"])
            for r in self.resources.values()
            if r.type == "docker:index/remoteImage:RemoteImage"
        )

    def output(self, key: str) -> object:
        from infra.mocks import unwrap

        return unwrap(self.rendered.outputs.get(key))


def render_for(
    stack: str,
    world: World,
    docker_host: str,
    *,
    overrides: tuple[tuple[str, str], ...] = (),
    prior: Render | None = None,
    image_ids: Mapping[str, str] | None = None,
    extra_secrets: tuple[tuple[str, str], ...] = (),
) -> Render:
    """Render ``stack`` for the rehearsal.

    ``prior``: an earlier render whose secrets, keys and certificates are kept, as
    the engine keeps a resource's outputs from one ``up`` to the next.
    ``image_ids``: image reference -> its ID on the daemon (default: the prior's).
    """
    image_ids = image_ids if image_ids is not None else (prior.image_ids if prior else {})
    config, _ = load_stack_config(stack, overrides=(("platform", "docker"),), placeholders=False)
    host = urlsplit(config["luna:appUrl"]).hostname or ""
    issuer = prior.edge_issuer if prior else edge_issuer()
    edge = prior.edge if prior else issue_pair(host, issuer=issuer)
    cipher_pass = prior.cipher_pass if prior else secrets.token_urlsafe(32)
    random_ids = prior.random_ids if prior else {}
    settings = [
        ("platform", "docker"),
        ("dockerHost", docker_host),
        ("backupEndpoint", S3_HOST),
        ("backupUriStyle", "path"),
        ("backupRegion", REGION),
        *overrides,
    ]
    hooks = world.hook_url
    secret_values = [
        ("backupAccessKeyId", ACCESS_KEY),
        ("backupSecretAccessKey", SECRET_KEY),
        ("backupEncryptionKey", cipher_pass),
        ("openaiApiKey", prior.openai_key if prior else "sk-rehearsal-" + secrets.token_hex(16)),
        ("tlsCert", edge[1]),
        ("tlsKey", edge[2]),
        ("chatWebhookUrl", f"{hooks}/chat"),
        ("alertWebhookUrl", f"{hooks}/pager"),
    ]
    secret_values += extra_secrets
    if stack == "prod":
        secret_values.append(("heartbeatUrl", f"{hooks}/heartbeat"))
        # Prod requires a pager; PagerDuty is not reachable from here (its deliveries
        # fail and are counted by Alertmanager), so prod's alerts are seen at the
        # webhook receiver. A routing key in PagerDuty's format: 32 hex characters.
        pager = prior.pager_key if prior else secrets.token_hex(16)
        secret_values.append(("pagerdutyRoutingKey", pager))
    rendered = render(
        stack, mocks=RehearsalMocks(prior=prior.rendered if prior else None, image_ids=image_ids,
                                    random_ids=random_ids),
        overrides=settings, secrets=secret_values,
        placeholders=False,
    )  # fmt: skip
    resources = snapshot(rendered)
    subs = [f"{k}={v}" for k, v in settings] + [f"{k}=<rehearsal value>" for k, _ in secret_values]
    bucket = config.get("luna:backupBucket", "")
    openai = dict(secret_values)["openaiApiKey"]
    return Render(stack, rendered, resources, host, edge[0], bucket, cipher_pass, edge,
                  dict(image_ids), openai, subs,
                  dict(secret_values).get("pagerdutyRoutingKey", ""), random_ids,
                  issuer)  # fmt: skip

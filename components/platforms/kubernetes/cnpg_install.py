"""CloudNativePG and its Barman Cloud plugin: installed by the stack, or checked as prerequisites.

Pinned chart versions (cloudnative-pg/charts):

- ``charts/cloudnative-pg/Chart.yaml`` at tag ``cloudnative-pg-v0.29.0``:
  ``version: "0.29.0"``, ``appVersion: "1.30.0"`` (the operator);
- ``charts/plugin-barman-cloud/Chart.yaml`` at tag ``plugin-barman-cloud-v0.7.0``:
  ``version: "0.7.0"``, ``appVersion: "v0.13.0"`` (the plugin; it needs
  CloudNativePG >= 1.26 and runs in the operator's namespace).

The plugin's chart creates cert-manager ``Certificate`` objects for the mTLS
between the operator and the plugin, so cert-manager is a prerequisite in both
modes: the program reads its CRD first, and a cluster without it fails the
preview naming ``certificates.cert-manager.io``. Helm hooks are skipped by
pulumi-kubernetes (#555); neither chart relies on one for what we use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import pulumi
from pulumi_kubernetes.apiextensions import CustomResource

if TYPE_CHECKING:
    from components.platforms.kubernetes import KubernetesPlatform

__all__ = [
    "CERT_MANAGER_CRD",
    "CHARTS",
    "CNPG_CRD",
    "OPERATOR_NAMESPACE",
    "PLUGIN_CRD",
    "install",
    "prerequisites",
]

CHARTS_REPO: Final = "https://cloudnative-pg.github.io/charts"
OPERATOR_NAMESPACE: Final = "cnpg-system"
CHARTS: Final = {"cloudnative-pg": "0.29.0", "plugin-barman-cloud": "0.7.0"}
"""Chart → pinned version (appVersions 1.30.0 and v0.13.0, cited above)."""
CNPG_CRD: Final = "clusters.postgresql.cnpg.io"
PLUGIN_CRD: Final = "objectstores.barmancloud.cnpg.io"
CERT_MANAGER_CRD: Final = "certificates.cert-manager.io"


def _crd(
    platform: KubernetesPlatform, name: str, crd: str, parent: pulumi.Resource
) -> pulumi.Resource:
    # Reading the CRD fails the preview, naming it, when what defines it is missing.
    # CustomResource.get reads any object: the typed CustomResourceDefinition class
    # would import pulumi_kubernetes.apiextensions.v1 (its schema types) for one read.
    read: pulumi.Resource = CustomResource.get(
        name, "apiextensions.k8s.io/v1", "CustomResourceDefinition", crd,
        opts=pulumi.ResourceOptions(parent=parent, provider=platform.provider),
    )  # fmt: skip
    return read


def prerequisites(
    platform: KubernetesPlatform, name: str, *, parent: pulumi.Resource
) -> list[pulumi.Resource]:
    """``cnpgOperator=prerequisite``: the operator, the plugin and cert-manager are the
    cluster admins'; their CRDs are read before anything uses them."""
    return [
        _crd(platform, f"{name}-crd", CNPG_CRD, parent),
        _crd(platform, f"{name}-plugin-crd", PLUGIN_CRD, parent),
        _crd(platform, f"{name}-cert-manager-crd", CERT_MANAGER_CRD, parent),
    ]


def install(platform: KubernetesPlatform) -> list[pulumi.Resource]:
    """``cnpgOperator=install``: Helm releases of both pinned charts, after cert-manager's CRD.

    Both serve every stack on the cluster: never removed with one (retained).
    """
    from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

    cert_manager = _crd(platform, platform.child("cert-manager-crd"), CERT_MANAGER_CRD, platform)

    def release(role: str, chart: str, after: list[pulumi.Resource]) -> pulumi.Resource:
        made: pulumi.Resource = Release(
            platform.child(role),
            chart=chart,
            version=CHARTS[chart],
            namespace=OPERATOR_NAMESPACE,
            create_namespace=True,
            repository_opts=RepositoryOptsArgs(repo=CHARTS_REPO),
            opts=pulumi.ResourceOptions(
                parent=platform,
                provider=platform.provider,
                retain_on_delete=True,
                depends_on=after,
            ),
        )
        return made

    operator = release("cnpg-operator", "cloudnative-pg", [])
    # The plugin registers with the operator and asks cert-manager for its certificates.
    plugin = release("cnpg-barman-cloud", "plugin-barman-cloud", [operator, cert_manager])
    return [operator, plugin]

"""DemoAppImage: Luna's demo app (demo-app/), built on the dev Docker host.

dev runs it by default, so that a fresh machine needs no access to the real
image. It honours the same app contract (docs/app-contract.md); staging and
prod always run a real, pinned image.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pulumi

from components.platforms.docker import DockerPlatform

__all__ = ["DEMO_APP_DIR", "DemoAppImage", "DemoAppImageArgs", "demo_image_ref"]

DEMO_APP_DIR = Path(__file__).resolve().parent.parent / "demo-app"
REPOSITORY = "luna-demo-app"


def demo_image_ref(folder: Path = DEMO_APP_DIR) -> str:
    """``luna-demo-app:<hash of the build context>``: a changed file is a new tag, so
    the app is replaced on the next `pulumi up`, and an unchanged one is no diff."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder)
        if relative.parts[0] == "node_modules":
            continue
        digest.update(str(relative).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class DemoAppImageArgs:
    platform: DockerPlatform
    folder: Path = DEMO_APP_DIR


class DemoAppImage(pulumi.ComponentResource):
    """Builds the demo app's image on the platform's Docker host; ``ref`` names it.

    Usage::

        demo = DemoAppImage("luna-demo-app", DemoAppImageArgs(platform=docker_platform))
        LunaApp("luna-app", LunaAppArgs(platform=docker_platform, image=demo.ref, ...))
    """

    ref: str
    """The image reference to run: pinned by a content hash, never `latest`."""

    def __init__(
        self, name: str, args: DemoAppImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("luna:components:DemoAppImage", name, None, opts)
        self.ref = demo_image_ref(args.folder)
        # Relative to the working directory, so that state does not record where one
        # engineer's checkout lives (an absolute path would differ on every machine).
        context = os.path.relpath(args.folder)
        args.platform.build_image(f"{name}-build", self.ref, context, parent=self)
        self.register_outputs({"ref": self.ref})

#!/usr/bin/env python3
"""Record the deployed app image in git: rewrite ``luna:appImage`` in Pulumi.<stack>.yaml.

A push deploys the ``luna:appImage`` committed in the stack file. An image that
was deployed by dispatch and never committed would be replaced by the next
push with whatever the file still names: a docs-only merge could roll
production back. So once a deploy has passed its checks, the pipeline's bot
commits the image it deployed, by digest, back to the branch that deployed it.

    record_image.py --stack prod --image ghcr.io/luna-app/luna-web@sha256:...   # edits the file
    record_image.py --stack prod --current                                      # prints the image

Only that one line changes; comments and every other key stay as they are.
Exit 0 when the file names the image (changed or already so), 2 on bad usage:
an image without a digest, or a stack file without a ``luna:appImage`` line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

from lib.cli import tool_parser

__all__ = ["current_image", "main", "with_image"]

REPO = Path(__file__).resolve().parents[1]
_LINE = re.compile(r"^(?P<indent>\s+)luna:appImage:[ \t]*(?P<value>\S+)[ \t]*$", re.MULTILINE)
_DIGEST_REF = re.compile(r"^[a-z0-9][a-z0-9./_:-]*@sha256:[a-f0-9]{64}$")


def current_image(text: str) -> str | None:
    match = _LINE.search(text)
    return match.group("value") if match else None


def with_image(text: str, image: str) -> str:
    """``text`` with its ``luna:appImage`` value set to ``image`` (digest-pinned)."""
    if not _DIGEST_REF.match(image):
        raise ValueError(f"not an image pinned by digest (name@sha256:<64 hex>): {image!r}")
    matches = list(_LINE.finditer(text))
    if len(matches) != 1:
        raise ValueError(f"expected one luna:appImage line, found {len(matches)}")
    m = matches[0]
    return text[: m.start()] + f"{m.group('indent')}luna:appImage: {image}" + text[m.end() :]


def main(argv: Sequence[str] | None = None, root: Path = REPO) -> int:
    parser = tool_parser("record_image", __doc__)
    parser.add_argument("--stack", required=True, choices=("staging", "prod"))
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--image")
    what.add_argument("--current", action="store_true")
    args = parser.parse_args(argv)
    path = root / f"Pulumi.{args.stack}.yaml"
    text = path.read_text(encoding="utf-8")
    if args.current:
        image = current_image(text)
        if image is None:
            print(f"record_image: error: {path.name} has no luna:appImage", file=sys.stderr)
            return 2
        print(image)
        return 0
    try:
        new = with_image(text, args.image)
    except ValueError as err:
        print(f"record_image: error: {path.name}: {err}", file=sys.stderr)
        return 2
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"{path.name}: luna:appImage = {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

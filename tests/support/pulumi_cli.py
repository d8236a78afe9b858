"""A stand-in for the Pulumi CLI that checks a command as the real one would parse it.

The real CLI cannot run here (../shared/FACTS.md). The docs' ``pulumi`` commands
are run against this stand-in instead, which knows:

- the command tree and each command's flags, from the CLI reference
  (pulumi.com/docs/iac/cli/commands/: ``pulumi up``, ``preview``, ``destroy``,
  ``refresh``, ``config`` and ``config set|get|rm``, ``stack init|select|output|rm|
  export|import|history|change-secrets-provider``, ``state unprotect|protect|delete``,
  ``login``, ``cancel``) and the flags every command inherits (``--cwd``/``-C``,
  ``--color``, ``--non-interactive``, ``-v``);
- this project: its stacks, its ``luna:*`` keys (Pulumi.yaml and the settings'
  secret keys), which keys are secret (``config set`` of a secret without
  ``--secret`` would store it in plain text, which the program refuses), and, for a
  plain value, whether the settings accept it (the same check ``pulumi up`` runs).

It proves a documented command names things that exist and would parse; it does
not prove what the real CLI would then do (that is the engine model's and the
rehearsal's job).
"""

from __future__ import annotations

import contextvars
import json
import os
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["check", "main"]

GLOBAL: Final = {"--cwd": 1, "-C": 1, "--color": 1, "--non-interactive": 0, "-v": 1,
                 "--logtostderr": 0, "--emoji": 0, "--disable-integrity-checking": 0}  # fmt: skip
_UPDATE: Final = {"--stack": 1, "-s": 1, "--yes": 0, "-y": 0, "--diff": 0, "--refresh": 0,
                  "-r": 0, "--skip-preview": 0, "--target": 1, "-t": 1, "--replace": 1,
                  "--policy-pack": 1, "--policy-pack-config": 1, "--config-file": 1,
                  "--parallel": 1, "-p": 1, "--message": 1, "-m": 1, "--json": 0,
                  "--target-dependents": 0, "--suppress-outputs": 0,
                  "--continue-on-error": 0}  # fmt: skip
# (command words) -> {flag: number of values}; positional arguments allowed.
COMMANDS: Final[dict[tuple[str, ...], tuple[dict[str, int], int]]] = {
    ("up",): (_UPDATE, 0),
    ("preview",): ({**_UPDATE, "--expect-no-changes": 0, "--save-plan": 1}, 0),
    ("destroy",): ({**_UPDATE, "--exclude-protected": 0, "--remove": 0}, 0),
    ("refresh",): ({**_UPDATE, "--clear-pending-creates": 0, "--run-program": 0}, 0),
    ("config",): (
        {
            "--stack": 1,
            "-s": 1,
            "--json": 0,
            "-j": 0,
            "--show-secrets": 0,
            "--config-file": 1,
            "--open": 0,
        },
        0,
    ),
    ("config", "set"): (
        {
            "--stack": 1,
            "-s": 1,
            "--secret": 0,
            "--plaintext": 0,
            "--path": 0,
            "--config-file": 1,
            "--type": 1,
        },
        2,
    ),
    ("config", "get"): (
        {"--stack": 1, "-s": 1, "--json": 0, "-j": 0, "--path": 0, "--config-file": 1},
        1,
    ),
    ("config", "rm"): ({"--stack": 1, "-s": 1, "--path": 0, "--config-file": 1}, 1),
    ("stack", "init"): (
        {"--stack": 1, "-s": 1, "--secrets-provider": 1, "--copy-config-from": 1, "--no-select": 0},
        1,
    ),
    ("stack", "select"): (
        {"--stack": 1, "-s": 1, "--create": 0, "-c": 0, "--secrets-provider": 1},
        1,
    ),
    ("stack", "output"): (
        {"--stack": 1, "-s": 1, "--json": 0, "-j": 0, "--show-secrets": 0, "--shell": 0},
        1,
    ),
    ("stack", "rm"): (
        {"--stack": 1, "-s": 1, "--yes": 0, "-y": 0, "--force": 0, "-f": 0, "--preserve-config": 0},
        1,
    ),
    ("stack", "export"): (
        {"--stack": 1, "-s": 1, "--file": 1, "--show-secrets": 0, "--version": 1},
        0,
    ),
    ("stack", "import"): ({"--stack": 1, "-s": 1, "--file": 1, "--force": 0, "-f": 0}, 0),
    ("stack", "history"): (
        {
            "--stack": 1,
            "-s": 1,
            "--json": 0,
            "-j": 0,
            "--show-secrets": 0,
            "--page-size": 1,
            "--page": 1,
        },
        0,
    ),
    ("stack", "change-secrets-provider"): ({"--stack": 1, "-s": 1}, 1),
    ("state", "unprotect"): ({"--stack": 1, "-s": 1, "--yes": 0, "-y": 0, "--all": 0}, 1),
    ("state", "protect"): ({"--stack": 1, "-s": 1, "--yes": 0, "-y": 0}, 1),
    ("state", "delete"): ({"--stack": 1, "-s": 1, "--yes": 0, "-y": 0, "--force": 0}, 1),
    ("login",): ({"--local": 0, "-l": 0, "--cloud-url": 1, "-c": 1}, 1),
    ("cancel",): ({"--stack": 1, "-s": 1, "--yes": 0, "-y": 0}, 0),
}
STACKS: Final = ("dev", "staging", "prod")


def _parse(argv: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str], list[str]]:
    words: list[str] = []
    args = list(argv)
    while args and not args[0].startswith("-") and tuple([*words, args[0]]) in _prefixes():
        words.append(args.pop(0))
    command = tuple(words)
    if command not in COMMANDS:
        raise ValueError(f"unknown command: pulumi {' '.join(argv[:2])}")
    flags, positional_max = COMMANDS[command]
    known = {**GLOBAL, **flags}
    seen: dict[str, str] = {}
    positional: list[str] = []
    while args:
        arg = args.pop(0)
        if arg.startswith("-"):
            name, eq, inline = arg.partition("=")
            if name not in known:
                raise ValueError(f"unknown flag: {name} for pulumi {' '.join(command)}")
            if known[name] and not eq:
                if not args:
                    raise ValueError(f"flag needs an argument: {name}")
                inline = args.pop(0)
            seen[name] = inline
        else:
            positional.append(arg)
    if len(positional) > positional_max:
        raise ValueError(f"pulumi {' '.join(command)}: too many arguments {positional}")
    return command, seen, positional


def _prefixes() -> set[tuple[str, ...]]:
    return {c[:i] for c in COMMANDS for i in range(1, len(c) + 1)}


def _settings_accept(stack: str, key: str, value: str) -> str | None:
    """The settings' verdict on one plain value, with the stack's other values as committed."""
    from infra.config_error import ConfigError
    from infra.render import load_stack_config
    from infra.settings import load_settings

    config, secret_keys = load_stack_config(stack, overrides=[(key, value)])

    def run() -> str | None:
        import pulumi

        pulumi.runtime.set_all_config(config, secret_keys)
        try:
            load_settings(stack)
        except ConfigError as err:
            # Only this key's own verdict: other keys may need the stack's secrets.
            return str(err) if err.key == key else None
        return None

    return contextvars.copy_context().run(run)


def _keys() -> tuple[set[str], set[str]]:
    """The secret keys and every known key: from ``LUNA_KEYS`` (JSON, set by the test once)
    or from the settings and Pulumi.yaml."""
    if text := os.environ.get("LUNA_KEYS"):
        doc = json.loads(text)
        return set(doc["secret"]), set(doc["known"])
    from infra.docs_config import project_config
    from infra.settings import SECRET_KEYS

    return set(SECRET_KEYS), set(project_config()) | set(SECRET_KEYS)


def check(argv: Sequence[str], *, stdin_has_data: bool = False) -> str | None:
    """None when the command would parse and names what exists; else the error."""

    try:
        command, flags, positional = _parse(argv)
    except ValueError as err:
        return str(err)
    stack = flags.get("--stack") or flags.get("-s")
    if command[:1] == ("stack",) and command[1] in ("init", "select", "rm") and positional:
        stack = positional[0]
    if stack is not None and stack not in STACKS:
        return f"no stack named {stack!r} (this project has {', '.join(STACKS)})"
    if command[:1] != ("config",) or len(command) == 1:
        return None
    if not positional:
        return f"pulumi {' '.join(command)}: a key is required"
    full = positional[0]
    namespace, _, key = full.partition(":")
    if namespace != "luna" or not key:
        return f"{full}: this project's keys are luna:<key>"
    secret_keys, known = _keys()
    if key not in known:
        return f"{full}: no such key in Pulumi.yaml or the settings"
    if command != ("config", "set"):
        return None
    secret = "--secret" in flags
    if key in secret_keys and not secret:
        return f"{full} is a secret: set it with --secret"
    if key not in secret_keys and secret:
        return f"{full} is not a secret: the program refuses it encrypted"
    value = positional[1] if len(positional) > 1 else None
    if value is None and not stdin_has_data:
        return None  # the CLI prompts for it
    if not secret and value is not None and stack is not None:
        return _settings_accept(stack, key, value)
    return None


def main() -> int:
    error = check(sys.argv[1:], stdin_has_data=not sys.stdin.isatty() and bool(sys.stdin.read(1)))
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 255
    return 0


if __name__ == "__main__":
    sys.exit(main())

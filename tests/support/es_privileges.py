"""A model of Elasticsearch's role privileges: may a role do an action on an index?

No Elasticsearch runs here, so this is the tests' belief about it, built from
its source (elastic/elasticsearch, commit 01ca585aaf6e77f9b63ee98bfafa1d71dbf39855):

- ``x-pack/plugin/core/src/main/java/org/elasticsearch/xpack/core/security/authz/
  privilege/IndexPrivilege.java``: each named index privilege is a set of action
  patterns (the ``*_AUTOMATON`` constants, copied below with the action names
  they import spelled out; the rollup and transform internals are left out).
- ``.../privilege/ClusterPrivilegeResolver.java``: ``monitor`` is
  ``cluster:monitor/*`` (plus the xpack monitor actions, which read only).
- ``.../support/Automatons.java``: a pattern's ``*`` matches any run of
  characters and ``?`` one; index names in a role use the same wildcards.
- In a bulk request each item is authorised with its own action
  (``indices:data/write/index:op_type/create`` or ``:op_type/index``, ``update``,
  ``delete``); ES's documentation: "create_doc: Privilege to index documents
  ... does not grant the privilege to update or overwrite existing documents".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["ACTIONS", "INDEX_PRIVILEGES", "cluster_allows", "index_allows"]

_AUTO_PUT_MAPPING = "indices:admin/mapping/auto_put"
_AUTO_CREATE = "indices:admin/auto_create"

INDEX_PRIVILEGES: Final[Mapping[str, tuple[str, ...]]] = {
    "none": (),
    "all": ("indices:*", "internal:transport/proxy/indices:*"),
    "read": ("indices:data/read/*",),
    "create": ("indices:data/write/index*", "indices:data/write/bulk*"),
    "create_doc": (
        "indices:data/write/index",
        "indices:data/write/index[*",
        "indices:data/write/index:op_type/create",
        "indices:data/write/bulk*",
    ),
    "index": (
        "indices:data/write/index*",
        "indices:data/write/bulk*",
        "indices:data/write/update*",
    ),
    "delete": ("indices:data/write/delete*", "indices:data/write/bulk*"),
    "write": ("indices:data/write/*", _AUTO_PUT_MAPPING),
    "monitor": ("indices:monitor/*",),
    "manage": ("indices:monitor/*", "indices:admin/*", "indices:data/read/field_caps*"),
    "create_index": ("indices:admin/create", _AUTO_CREATE, "indices:admin/data_stream/create"),
    "delete_index": ("indices:admin/delete", "indices:admin/data_stream/delete"),
    "view_index_metadata": (
        "indices:admin/aliases/get",
        "indices:admin/get",
        "indices:admin/mappings/fields/get*",
        "indices:admin/mappings/get",
        "indices:admin/shards/search_shards",
        "indices:admin/validate/query*",
        "indices:admin/settings/get",
        "indices:admin/ilm/explain",
        "indices:admin/data_stream/get",
        "indices:admin/resolve/index",
        "indices:data/read/field_caps*",
    ),
    "manage_ilm": ("indices:admin/ilm/*",),
    "maintenance": (
        "indices:admin/refresh*",
        "indices:admin/flush*",
        "indices:admin/synced_flush",
        "indices:admin/forcemerge*",
    ),
    "auto_configure": (_AUTO_PUT_MAPPING, _AUTO_CREATE),
}

_CLUSTER_PRIVILEGES: Final[Mapping[str, tuple[str, ...]]] = {
    "none": (),
    "monitor": ("cluster:monitor/*",),
    "all": ("cluster:*",),
}

# What a reviewer asks about an index, as the action ES authorises.
ACTIONS: Final[Mapping[str, str]] = {
    "add a document": "indices:data/write/index:op_type/create",
    "overwrite a document": "indices:data/write/index:op_type/index",
    "update a document": "indices:data/write/update",
    "delete a document": "indices:data/write/delete",
    "delete by query": "indices:data/write/delete/byquery",
    "update by query": "indices:data/write/update/byquery",
    "search": "indices:data/read/search",
    "get a document": "indices:data/read/get",
    "delete the index": "indices:admin/delete",
    "close the index": "indices:admin/close",
    "change its settings": "indices:admin/settings/update",
    "remove its ILM policy": "indices:admin/ilm/remove_policy",
    "create the index": "indices:admin/create",
}


def _match(pattern: str, value: str) -> bool:
    """Automatons.pattern: ``*`` any run, ``?`` one character, everything else literal."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S) is not None


def _privilege_allows(
    names: Iterable[str], action: str, table: Mapping[str, tuple[str, ...]]
) -> bool:
    for name in names:
        if name not in table:
            raise ValueError(f"unknown privilege {name!r} (the model knows {sorted(table)})")
        if any(_match(p, action) for p in table[name]):
            return True
    return False


def index_allows(role: Mapping[str, Any], index: str, action: str) -> bool:
    """Whether ``role`` (a security-API role body) permits ``action`` on ``index``."""
    return any(
        any(_match(n, index) for n in group["names"])
        and _privilege_allows(group["privileges"], action, INDEX_PRIVILEGES)
        for group in role.get("indices", [])
    )


def cluster_allows(role: Mapping[str, Any], action: str) -> bool:
    return _privilege_allows(role.get("cluster", []), action, _CLUSTER_PRIVILEGES)

"""A model of how Logstash reads a pipeline file (LSCL), built from its source.

Nothing here runs Logstash; this is what the tests believe Logstash does, so
every rule names the upstream code it copies (elastic/logstash at commit
5e5356567fd548a0390c14def8ebd70acf85d04a, Aug 2026):

- the grammar: ``logstash-core/lib/logstash/compiler/lscl/lscl_grammar.treetop``
  (a PEG: ordered choice, no backtracking into a rule that succeeded). Each
  ``_rule`` method below is the treetop rule of the same name.
- string values: ``logstash-core/lib/logstash/compiler/lscl.rb``, ``class
  String < Value``: the text between the quotes, ``text_value[1...-1]``, and
  only when ``PROCESS_ESCAPE_SEQUENCES`` is set, ``StringEscape.process_escapes``
  on it. ``logstash-core/lib/logstash/compiler.rb`` sets that flag from the
  setting ``config.support_escapes`` (``logstash-core/lib/logstash/
  environment.rb``: ``BooleanSetting.new("config.support_escapes", false)``).
- the escapes: ``logstash-core/lib/logstash/config/string_escape.rb``:
  ``\\"`` ``\\'`` ``\\\\`` become the character, ``\\n`` ``\\r`` ``\\t``
  ``\\0`` the control character, any other ``\\x`` stays as the two characters.
- regexp literals in conditions: ``class RegExp``, ``text_value[1..-2]``, no
  escape processing.
- attribute names: ``class Attribute``, a quoted name is ``text_value[1...-1]``.

A parse error raises :class:`LsclError` with the offset, as Logstash refuses
to start on one.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = [
    "Branch",
    "LsclError",
    "Plugin",
    "Regexp",
    "parse",
    "plugins",
    "process_escapes",
    "support_escapes",
]


class LsclError(Exception):
    pass


@dataclass
class Plugin:
    name: str
    attributes: list[tuple[str, Any]]

    def get_all(self, key: str) -> list[Any]:
        return [v for k, v in self.attributes if k == key]


@dataclass
class Regexp:
    source: str


@dataclass
class Branch:
    """if / else if / else: (condition text or None for else, body)."""

    clauses: list[tuple[str | None, list[Plugin | Branch]]] = field(default_factory=list)


def support_escapes(logstash_yml: str) -> bool:
    """``config.support_escapes`` as Logstash reads logstash.yml (flat or nested keys)."""
    data = yaml.safe_load(logstash_yml) or {}

    def flat(d: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    value = dict(flat(data)).get("config.support_escapes", False)
    return value is True or str(value).lower() == "true"


def process_escapes(text: str) -> str:
    """``StringEscape.process_escapes``: ``input.gsub(/\\\\./) { process(value) }``."""
    table = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "r": "\r", "t": "\t", "0": "\x00"}
    return re.sub(r"\\(.)", lambda m: table.get(m.group(1), m.group(0)), text, flags=re.S)


def parse(text: str, *, escapes: bool) -> list[tuple[str, list[Plugin | Branch]]]:
    """The pipeline's sections in order: [(input|filter|output, [plugins and branches])]."""
    return _Parser(text, escapes).config()


def plugins(sections: list[tuple[str, list[Plugin | Branch]]], section: str) -> list[Plugin]:
    """Every plugin of a section, inside branches too, in file order."""
    out: list[Plugin] = []

    def walk(items: list[Plugin | Branch]) -> None:
        for item in items:
            if isinstance(item, Plugin):
                out.append(item)
            else:
                for _, body in item.clauses:
                    walk(body)

    for name, items in sections:
        if name == section:
            walk(items)
    return out


class _FailError(Exception):
    """A rule did not match here (the PEG tries the next alternative)."""


class _Parser:
    def __init__(self, text: str, escapes: bool) -> None:
        self.s = text
        self.escapes = escapes
        self.furthest = 0

    # --- terminals
    def lit(self, i: int, word: str) -> int:
        if self.s.startswith(word, i):
            return i + len(word)
        self.furthest = max(self.furthest, i)
        raise _FailError

    def rx(self, i: int, pattern: str) -> int:
        m = re.compile(pattern).match(self.s, i)
        if not m:
            self.furthest = max(self.furthest, i)
            raise _FailError
        return m.end()

    # --- rule config: (cs plugin_section)* cs
    def config(self) -> list[tuple[str, list[Plugin | Branch]]]:
        sections = []
        i = 0
        while True:
            try:
                j = self.cs(i)
                j, section = self.plugin_section(j)
            except _FailError:
                break
            sections.append(section)
            i = j
        i = self.cs(i)
        if i != len(self.s):
            raise LsclError(f"expected a plugin section at offset {max(i, self.furthest)}")
        return sections

    # rule comment: (whitespace? "#" [^\r\n]* "\r"? "\n")+
    def comment(self, i: int) -> int:
        return self.rx(i, r"(?:[ \t\r\n]*#[^\r\n]*\r?\n)+")

    # rule cs: (comment / whitespace)*
    def cs(self, i: int) -> int:
        while True:
            for rule in (self.comment, self.whitespace):
                try:
                    j = rule(i)
                except _FailError:
                    continue
                if j > i:
                    i = j
                    break
            else:
                return i

    # rule whitespace: [ \t\r\n]+
    def whitespace(self, i: int) -> int:
        return self.rx(i, r"[ \t\r\n]+")

    # rule plugin_section: plugin_type cs "{" cs (branch_or_plugin cs)* "}"
    def plugin_section(self, i: int) -> tuple[int, tuple[str, list[Plugin | Branch]]]:
        start = i
        i = self.rx(i, r"input|filter|output")
        kind = self.s[start:i]
        i = self.lit(self.cs(i), "{")
        i, items = self.body(self.cs(i))
        return self.lit(i, "}"), (kind, items)

    def body(self, i: int) -> tuple[int, list[Plugin | Branch]]:
        items: list[Plugin | Branch] = []
        while True:
            try:
                j, item = self.branch_or_plugin(i)
            except _FailError:
                return i, items
            items.append(item)
            i = self.cs(j)

    # rule branch_or_plugin: branch / plugin
    def branch_or_plugin(self, i: int) -> tuple[int, Plugin | Branch]:
        try:
            return self.branch(i)
        except _FailError:
            return self.plugin(i)

    # rule plugin: name cs "{" cs attributes:(attribute (whitespace cs attribute)*)? cs "}"
    def plugin(self, i: int) -> tuple[int, Plugin]:
        i, name = self.name(i)
        i = self.lit(self.cs(i), "{")
        i = self.cs(i)
        attributes: list[tuple[str, Any]] = []
        try:
            j, attr = self.attribute(i)
            attributes.append(attr)
            i = j
            while True:
                try:
                    j = self.cs(self.whitespace(i))
                    j, attr = self.attribute(j)
                except _FailError:
                    break
                attributes.append(attr)
                i = j
        except _FailError:
            pass
        i = self.lit(self.cs(i), "}")
        return i, Plugin(name, attributes)

    # rule name: [A-Za-z0-9_-]+ / string   (Attribute#expr strips a quoted name's quotes)
    def name(self, i: int) -> tuple[int, str]:
        try:
            j = self.rx(i, r"[A-Za-z0-9_-]+")
            return j, self.s[i:j]
        except _FailError:
            j, _ = self.string(i)
            return j, self.s[i + 1 : j - 1]

    # rule attribute: name cs "=>" cs value
    def attribute(self, i: int) -> tuple[int, tuple[str, Any]]:
        i, name = self.name(i)
        i = self.lit(self.cs(i), "=>")
        i, value = self.value(self.cs(i))
        return i, (name, value)

    # rule value: plugin / bareword / string / number / array / hash
    def value(self, i: int) -> tuple[int, Any]:
        for rule in (self.plugin, self.bareword, self.string, self.number, self.array, self.hash):
            try:
                return rule(i)
            except _FailError:
                continue
        raise _FailError

    # rule bareword: [A-Za-z_] [A-Za-z0-9_]+
    def bareword(self, i: int) -> tuple[int, str]:
        j = self.rx(i, r"[A-Za-z_][A-Za-z0-9_]+")
        return j, self.s[i:j]

    # rule double_quoted_string: '"' ( '\"' / !'"' . )* '"'
    # rule single_quoted_string: "'" ( "\\'" / !"'" . )* "'"
    # Only backslash-quote is a unit: "\\" is two separate characters, so
    # a backslash before the closing quote swallows it.
    def string(self, i: int) -> tuple[int, str]:
        if i >= len(self.s) or self.s[i] not in "\"'":
            self.furthest = max(self.furthest, i)
            raise _FailError
        quote = self.s[i]
        j = i + 1
        while True:
            if self.s.startswith("\\" + quote, j):
                j += 2
            elif j < len(self.s) and self.s[j] != quote:
                j += 1
            else:
                break
        j = self.lit(j, quote)
        inner = self.s[i + 1 : j - 1]
        return j, process_escapes(inner) if self.escapes else inner

    # rule number: "-"? [0-9]+ ("." [0-9]*)?
    def number(self, i: int) -> tuple[int, float | int]:
        j = self.rx(i, r"-?[0-9]+(?:\.[0-9]*)?")
        text = self.s[i:j]
        return j, float(text) if "." in text else int(text)

    # rule array: "[" cs ( value (cs "," cs value)* )? cs "]"
    def array(self, i: int) -> tuple[int, list[Any]]:
        i = self.cs(self.lit(i, "["))
        items: list[Any] = []
        try:
            i, v = self.value(i)
            items.append(v)
            while True:
                try:
                    j = self.cs(self.lit(self.cs(i), ","))
                    j, v = self.value(j)
                except _FailError:
                    break
                items.append(v)
                i = j
        except _FailError:
            pass
        return self.lit(self.cs(i), "]"), items

    # rule hash: "{" cs hashentries? cs "}"
    # rule hashentry: (number / bareword / string) cs "=>" cs value
    def hash(self, i: int) -> tuple[int, dict[Any, Any]]:
        i = self.cs(self.lit(i, "{"))
        entries: dict[Any, Any] = {}
        first = True
        while True:
            try:
                j = i if first else self.whitespace(i)
                for rule in (self.number, self.bareword, self.string):
                    try:
                        j, key = rule(j)
                        break
                    except _FailError:
                        continue
                else:
                    raise _FailError
                j = self.cs(self.lit(self.cs(j), "=>"))
                j, v = self.value(j)
            except _FailError:
                break
            if key in entries:
                raise LsclError(f"duplicate hash key {key!r} at offset {i}")
            entries[key] = v
            i, first = j, False
        return self.lit(self.cs(i), "}"), entries

    # rule branch: if (cs else_if)* (cs else)?
    def branch(self, i: int) -> tuple[int, Branch]:
        branch = Branch()
        i = self.clause(i, branch, "if")
        while True:
            try:
                i = self.clause(self.cs(i), branch, "else_if")
            except _FailError:
                break
        with contextlib.suppress(_FailError):
            i = self.clause(self.cs(i), branch, "else")
        return i, branch

    def clause(self, i: int, branch: Branch, kind: str) -> int:
        condition: str | None = None
        if kind == "else_if":
            i = self.lit(self.cs(self.lit(i, "else")), "if")
        else:
            i = self.lit(i, "if" if kind == "if" else "else")
        if kind != "else":
            start = self.cs(i)
            i = self.condition(start)
            condition = self.s[start:i]
        i = self.cs(self.lit(self.cs(i), "{"))
        i, body = self.body(i)
        branch.clauses.append((condition, body))
        return self.lit(i, "}")

    # rule condition: expression (cs boolean_operator cs expression)*
    def condition(self, i: int) -> int:
        i = self.expression(i)
        while True:
            try:
                j = self.rx(self.cs(i), r"and|or|xor|nand")
                i = self.expression(self.cs(j))
            except _FailError:
                return i

    # rule expression: ("(" cs condition cs ")") / negative_expression / in_expression
    #   / not_in_expression / compare_expression / regexp_expression / rvalue
    def expression(self, i: int) -> int:
        def paren(k: int) -> int:
            k = self.condition(self.cs(self.lit(k, "(")))
            return self.lit(self.cs(k), ")")

        def negative(k: int) -> int:
            k = self.cs(self.lit(k, "!"))
            try:
                return paren(k)
            except _FailError:
                return self.selector(k)

        def binary(op: str) -> Any:
            def rule(k: int) -> int:
                k = self.cs(self.rvalue(k))
                k = self.cs(self.rx(k, op))
                if op == r"=~|!~":
                    try:
                        return self.string(k)[0]
                    except _FailError:
                        return self.regexp(k)[0]
                return self.rvalue(k)

            return rule

        for rule in (
            paren,
            negative,
            binary(r"in"),
            binary(r"not [ \t\r\n]*in"),
            binary(r"==|!=|<=|>=|<|>"),
            binary(r"=~|!~"),
            self.rvalue,
        ):
            try:
                return rule(i)
            except _FailError:
                continue
        raise _FailError

    # rule rvalue: string / number / selector / array / method_call / regexp
    def rvalue(self, i: int) -> int:
        def method_call(k: int) -> int:
            k = self.cs(self.lit(self.cs(self.bareword(k)[0]), "("))
            try:
                k = self.rvalue(k)
                while True:
                    try:
                        k = self.rvalue(self.cs(self.lit(self.cs(k), ",")))
                    except _FailError:
                        break
            except _FailError:
                pass
            return self.lit(self.cs(k), ")")

        for rule in (
            lambda k: self.string(k)[0],
            lambda k: self.number(k)[0],
            self.selector,
            lambda k: self.array(k)[0],
            method_call,
            lambda k: self.regexp(k)[0],
        ):
            try:
                return rule(i)
            except _FailError:
                continue
        raise _FailError

    # rule regexp: '/' ( '\/' / !'/' . )* '/'
    def regexp(self, i: int) -> tuple[int, Regexp]:
        j = self.lit(i, "/")
        while True:
            if self.s.startswith("\\/", j):
                j += 2
            elif j < len(self.s) and self.s[j] != "/":
                j += 1
            else:
                break
        j = self.lit(j, "/")
        return j, Regexp(self.s[i + 1 : j - 1])

    # rule selector: selector_element+ ; selector_element: "[" [^\]\[,]+ "]"
    def selector(self, i: int) -> int:
        return self.rx(i, r"(?:\[[^\]\[,]+\])+")


def condition_regexps(condition: str) -> list[str]:
    """The regexp literals of a condition, as ``RegExp#expr`` hands them to the engine."""
    out: list[str] = []
    p = _Parser(condition, escapes=False)
    i = 0
    while i < len(condition):
        if condition[i] in "\"'":
            i = p.string(i)[0]
        elif condition[i] == "/":
            i, r = p.regexp(i)
            out.append(r.source)
        else:
            i += 1
    return out

"""Evaluate the Terraform in deploy/terraform without a terraform binary.

python-hcl2 parses each ``.tf`` file; this module evaluates the subset of the Terraform language the
repository uses, the way ``terraform plan`` would: module calls with their inputs (types with
``optional()`` defaults, validations), locals, resources and data sources with ``for_each``/``count``
and ``dynamic`` blocks, outputs, preconditions. Attributes only known after apply (ARNs, ids) are
:class:`Ref` values naming the resource instance they come from, so a test can still follow them.

Errors a real ``plan`` would report are raised as :class:`TfError`: an undeclared variable, local,
output or module argument, a missing required input, a type mismatch, a failed validation or
precondition, a bad ``for_each``.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

META_ARGS = {"count", "for_each", "depends_on", "provider", "providers", "lifecycle", "provisioner"}


class TfError(Exception):
    """What terraform validate/plan would reject."""


# -- parsing HCL files -----------------------------------------------------------------------------------


def _strip_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            _unquote(k): _strip_markers(v)
            for k, v in value.items()
            if k
            not in ("__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__")
        }
    if isinstance(value, list):
        return [_strip_markers(v) for v in value]
    return value


def _unquote(key: str) -> str:
    if len(key) >= 2 and key[0] == key[-1] == '"':
        return key[1:-1]
    return key


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one HCL file into plain dicts: labels and string literals without their quotes.

    python-hcl2 >= 7 keeps quotes unless asked not to (``strip_string_quotes``); older versions take no
    options and already strip them. Parses are cached by content (the evaluator never mutates them).
    """
    return _parse(path.read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=512)
def _parse(text: str) -> dict[str, Any]:
    try:
        options = hcl2.SerializationOptions(  # type: ignore[attr-defined]
            strip_string_quotes=True, explicit_blocks=False, with_comments=False
        )
        data = hcl2.loads(text, serialization_options=options)  # type: ignore[call-arg]
    except (AttributeError, TypeError):
        data = hcl2.loads(text)
    return _strip_markers(data)


# -- values ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A value known only after apply: ``address`` is the resource instance, ``attr`` the attribute path."""

    address: str
    attr: str

    def child(self, name: str) -> Ref:
        return Ref(self.address, f"{self.attr}.{name}")

    def __str__(self) -> str:
        return f"${{ref:{self.address}.{self.attr}}}"


REF_MARKER = re.compile(r"\$\{ref:([^}]*)\}")


class TfSet(list):  # type: ignore[type-arg]
    """A set value (``toset``, ``set(...)`` type): ordered like Terraform iterates sets of strings."""


def is_unknown(value: Any) -> bool:
    return isinstance(value, Ref) or (isinstance(value, str) and "${ref:" in value)


# -- expression syntax -------------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>\.\.\.|=>|==|!=|<=|>=|&&|\|\||[{}\[\]().,:?=<>+\-*/%!])
    """,
    re.VERBOSE,
)


@dataclass
class Tok:
    kind: str  # number, ident, op, string, eof
    text: str


def _scan_string(src: str, i: int) -> tuple[str, int]:
    """``src[i]`` is an opening quote; return the raw content and the index after the closing quote."""
    j = i + 1
    depth = 0
    while j < len(src):
        c = src[j]
        if c == "\\":
            j += 2
            continue
        if depth == 0 and c == '"':
            return src[i + 1 : j], j + 1
        if src.startswith("${", j) or src.startswith("%{", j):
            depth += 1
            j += 2
            continue
        if depth and c == "{":
            depth += 1
        elif depth and c == "}":
            depth -= 1
        elif depth and c == '"':
            _, j = _scan_string(src, j)
            continue
        j += 1
    raise TfError(f"unterminated string in {src!r}")


def tokenize(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i = 0
    while i < len(src):
        if src[i] == '"':
            raw, i = _scan_string(src, i)
            toks.append(Tok("string", raw))
            continue
        if src.startswith("<<", i):
            raise TfError("heredocs are not supported by this evaluator")
        m = _TOKEN_RE.match(src, i)
        if not m:
            raise TfError(f"cannot tokenize {src[i : i + 20]!r} in {src!r}")
        i = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            toks.append(Tok(kind, m.group()))
    toks.append(Tok("eof", ""))
    return toks


# AST: tuples (tag, ...)
Node = tuple[Any, ...]


class Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = tokenize(src)
        self.i = 0

    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def at(self, text: str, kind: str | None = None) -> bool:
        tok = self.peek()
        return tok.text == text and tok.kind in ((kind,) if kind else ("op", "ident"))

    def expect(self, text: str) -> None:
        tok = self.next()
        if tok.text != text:
            raise TfError(f"expected {text!r}, got {tok.text!r} in {self.src!r}")

    def parse(self) -> Node:
        node = self.expr()
        if self.peek().kind != "eof":
            raise TfError(f"unexpected {self.peek().text!r} in {self.src!r}")
        return node

    def expr(self) -> Node:
        cond = self.binary(0)
        if self.at("?", "op"):
            self.next()
            a = self.expr()
            self.expect(":")
            b = self.expr()
            return ("cond", cond, a, b)
        return cond

    LEVELS: tuple[tuple[str, ...], ...] = (
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", ">", "<=", ">="),
        ("+", "-"),
        ("*", "/", "%"),
    )

    def binary(self, level: int) -> Node:
        if level == len(self.LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek().kind == "op" and self.peek().text in self.LEVELS[level]:
            op = self.next().text
            right = self.binary(level + 1)
            left = ("bin", op, left, right)
        return left

    def unary(self) -> Node:
        if self.peek().kind == "op" and self.peek().text in ("!", "-"):
            op = self.next().text
            return ("unary", op, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        steps: list[Node] = []
        while True:
            if self.at(".", "op"):
                self.next()
                tok = self.next()
                if tok.text == "*":
                    return ("splat", self._wrap(node, steps), self.postfix(("it",)))
                steps.append(("attr", tok.text))
            elif self.at("[", "op"):
                if self.peek(1).text == "*" and self.peek(2).text == "]":
                    self.i += 3
                    return ("splat", self._wrap(node, steps), self.postfix(("it",)))
                self.next()
                steps.append(("index", self.expr()))
                self.expect("]")
            else:
                return self._wrap(node, steps)

    @staticmethod
    def _wrap(node: Node, steps: list[Node]) -> Node:
        return ("trav", node, tuple(steps)) if steps else node

    def primary(self) -> Node:
        tok = self.next()
        if tok.kind == "number":
            value = float(tok.text)
            return ("lit", int(value) if value.is_integer() and "e" not in tok.text.lower() else value)
        if tok.kind == "string":
            return parse_template(tok.text, escaped=True)
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return ("lit", tok.text == "true")
            if tok.text == "null":
                return ("lit", None)
            if self.at("(", "op"):
                self.next()
                args: list[Node] = []
                expand = False
                while not self.at(")", "op"):
                    args.append(self.expr())
                    if self.at("...", "op"):
                        self.next()
                        expand = True
                    if self.at(",", "op"):
                        self.next()
                self.expect(")")
                return ("call", tok.text, tuple(args), expand)
            return ("name", tok.text)
        if tok.text == "(":
            node = self.expr()
            self.expect(")")
            return node
        if tok.text == "[":
            if self.at("for", "ident"):
                return self.for_expr("]")
            items: list[Node] = []
            while not self.at("]", "op"):
                items.append(self.expr())
                if self.at(",", "op"):
                    self.next()
            self.next()
            return ("tuple", tuple(items))
        if tok.text == "{":
            if self.at("for", "ident"):
                return self.for_expr("}")
            pairs: list[tuple[Node, Node]] = []
            while not self.at("}", "op"):
                if self.peek().kind == "ident" and self.peek(1).text in ("=", ":"):
                    key: Node = ("lit", self.next().text)
                else:
                    key = self.expr()
                if self.peek().text not in ("=", ":"):
                    raise TfError(f"expected = in object in {self.src!r}")
                self.next()
                pairs.append((key, self.expr()))
                if self.at(",", "op"):
                    self.next()
            self.next()
            return ("object", tuple(pairs))
        raise TfError(f"unexpected {tok.text!r} in {self.src!r}")

    def for_expr(self, close: str) -> Node:
        self.expect("for")
        first = self.next().text
        second = None
        if self.at(",", "op"):
            self.next()
            second = self.next().text
        self.expect("in")
        coll = self.expr()
        self.expect(":")
        key_expr = None
        value_expr = self.expr()
        group = False
        if close == "}":
            self.expect("=>")
            key_expr, value_expr = value_expr, self.expr()
            if self.at("...", "op"):
                self.next()
                group = True
        cond = None
        if self.at("if", "ident"):
            self.next()
            cond = self.expr()
        self.expect(close)
        key_var, value_var = (first, second) if second else (None, first)
        return ("for", close, key_var, value_var, coll, key_expr, value_expr, cond, group)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), text)


def parse_template(raw: str, *, escaped: bool) -> Node:
    """A string template: literal text and ``${expr}`` interpolations (``$${`` is a literal ``${``)."""
    parts: list[Any] = []
    literal: list[str] = []
    i = 0
    while i < len(raw):
        if raw.startswith("$${", i) or raw.startswith("%%{", i):
            literal.append(raw[i + 1 : i + 3])
            i += 3
            continue
        if raw.startswith("%{", i):
            raise TfError("template directives are not supported by this evaluator")
        if raw.startswith("${", i):
            j = i + 2
            depth = 1
            while depth:
                if j >= len(raw):
                    raise TfError(f"unterminated interpolation in {raw!r}")
                c = raw[j]
                if c == '"':
                    _, j = _scan_string(raw, j)
                    continue
                depth += {"{": 1, "}": -1}.get(c, 0)
                j += 1
            if literal:
                text = "".join(literal)
                parts.append(_unescape(text) if escaped else text)
                literal = []
            parts.append(Parser(raw[i + 2 : j - 1].strip().removeprefix("~").removesuffix("~")).parse())
            i = j
            continue
        literal.append(raw[i])
        i += 1
    if literal:
        text = "".join(literal)
        parts.append(_unescape(text) if escaped else text)
    if len(parts) == 1 and not isinstance(parts[0], str):
        return parts[0]  # "${expr}" is the expression's value, not its string form
    return ("template", tuple(parts))


# -- types -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attr:
    type: Any
    optional: bool = False
    default: Any = None


def type_of(node: Node) -> Any:
    """A type expression as nested tuples: 'string', ('list', T), ('object', {name: Attr})."""
    tag = node[0]
    if tag == "name":
        if node[1] not in ("string", "number", "bool", "any"):
            raise TfError(f"unknown type {node[1]!r}")
        return node[1]
    if tag == "call":
        name, args = node[1], node[2]
        if name in ("list", "set", "map"):
            return (name, type_of(args[0]))
        if name == "object":
            attrs = {}
            for key, value in args[0][1]:
                attr_name = key[1]
                if value[0] == "call" and value[1] == "optional":
                    default = evaluate(value[2][1], Scope({})) if len(value[2]) > 1 else None
                    attrs[attr_name] = Attr(type_of(value[2][0]), True, default)
                else:
                    attrs[attr_name] = Attr(type_of(value))
            return ("object", attrs)
        if name == "tuple":
            return ("tuple", [type_of(x) for x in args[0][1]])
    raise TfError(f"unsupported type expression {node!r}")


def parse_type(raw: Any) -> Any:
    if raw is None:
        return "any"
    text = raw[2:-1] if raw.startswith("${") and raw.endswith("}") else raw
    return type_of(Parser(text).parse())


def _number_text(value: float) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def convert(value: Any, typ: Any, where: str) -> Any:
    if value is None or is_unknown(value) or typ == "any":
        return value
    if typ == "string":
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return _number_text(value)
        if isinstance(value, str):
            return value
    elif typ == "number":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                return int(number) if number.is_integer() else number
    elif typ == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
    elif isinstance(typ, tuple):
        kind, inner = typ
        if kind in ("list", "set") and isinstance(value, list):
            items = [convert(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
            if kind == "set":
                return TfSet(sorted(set(items), key=str))
            return items
        if kind == "map" and isinstance(value, dict):
            return {k: convert(v, inner, f"{where}.{k}") for k, v in value.items()}
        if kind == "object" and isinstance(value, dict):
            extra = set(value) - set(inner)
            if extra:
                raise TfError(f"{where}: unsupported attribute(s) {sorted(extra)}")
            out = {}
            for name, attr in inner.items():
                if name in value and value[name] is not None:
                    out[name] = convert(value[name], attr.type, f"{where}.{name}")
                elif attr.optional:
                    out[name] = convert(attr.default, attr.type, f"{where}.{name}")
                elif name in value:
                    out[name] = None
                else:
                    raise TfError(f"{where}: attribute {name!r} is required")
            return out
        if kind == "tuple" and isinstance(value, list):
            return [convert(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, inner, strict=True))]
    raise TfError(f"{where}: {value!r} is not a {typ!r}")


# -- functions ---------------------------------------------------------------------------------------------


def _flatten(value: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in value:
        out.extend(_flatten(item) if isinstance(item, list) else [item])
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _regex(pattern: str, text: str) -> Any:
    m = re.search(pattern, text)
    if not m:
        raise TfError(f"regex {pattern!r} does not match {text!r}")
    if m.groupdict():
        return m.groupdict()
    if m.groups():
        return list(m.groups())
    return m.group(0)


def _element(items: list[Any], index: int) -> Any:
    if not items:
        raise TfError("element() of an empty list")
    return items[index % len(items)]


def _chunklist(items: list[Any], size: int) -> list[list[Any]]:
    if size < 1:
        return [list(items)]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "alltrue": lambda xs: all(x is True for x in xs),
    "anytrue": lambda xs: any(x is True for x in xs),
    "chunklist": _chunklist,
    "coalesce": lambda *xs: next(x for x in xs if x not in (None, "")),
    "compact": lambda xs: [x for x in xs if x not in (None, "")],
    "concat": lambda *xs: [item for x in xs for item in x],
    "contains": lambda xs, x: x in xs,
    "distinct": lambda xs: list(dict.fromkeys(xs)),
    "element": _element,
    "endswith": lambda s, x: s.endswith(x),
    "flatten": _flatten,
    "floor": lambda v: int(v // 1),
    "format": lambda f, *a: f.replace("%d", "%s") % tuple(a),
    "join": lambda sep, xs: sep.join(xs),
    "jsonencode": lambda v: json.dumps(_jsonable(v), separators=(",", ":")),
    "keys": lambda m: sorted(m),
    "length": len,
    "lookup": lambda m, k, *d: m[k] if k in m else (d[0] if d else _missing(k)),
    "lower": str.lower,
    "max": max,
    "merge": lambda *ms: {k: v for m in ms if m for k, v in m.items()},
    "min": min,
    "one": lambda xs: (xs[0] if xs else None) if len(xs) <= 1 else _missing("one() of many"),
    "range": lambda *a: [int(x) for x in range(*(int(v) for v in a))],
    "regex": _regex,
    "replace": lambda s, a, b: s.replace(a, b),
    "sort": lambda xs: sorted(xs),
    "split": lambda sep, s: s.split(sep),
    "startswith": lambda s, x: s.startswith(x),
    "tobool": lambda v: convert(v, "bool", "tobool"),
    "tolist": list,
    "tomap": dict,
    "tonumber": lambda v: convert(v, "number", "tonumber"),
    "toset": lambda xs: TfSet(sorted(dict.fromkeys(xs), key=str)),
    "tostring": lambda v: convert(v, "string", "tostring"),
    "trimprefix": lambda s, p: s.removeprefix(p),
    "trimsuffix": lambda s, p: s.removesuffix(p),
    "upper": str.upper,
    "values": lambda m: [m[k] for k in sorted(m)],
    "zipmap": lambda ks, vs: dict(zip(ks, vs, strict=True)),
}


def _missing(what: str) -> Any:
    raise TfError(f"no value for {what!r}")


# -- evaluation --------------------------------------------------------------------------------------------


class Scope:
    def __init__(self, names: dict[str, Any], parent: Scope | None = None) -> None:
        self.names = names
        self.parent = parent

    def lookup(self, name: str) -> Any:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        raise TfError(f"unknown name {name!r}")

    def child(self, **names: Any) -> Scope:
        return Scope(names, self)


class Proxy:
    """A lazily evaluated object: ``get(name)`` raises TfError for names that do not exist."""

    def __init__(self, getter: Callable[[str], Any], what: str) -> None:
        self.getter = getter
        self.what = what

    def get(self, name: str) -> Any:
        return self.getter(name)

    def __repr__(self) -> str:
        return f"<{self.what}>"


def get_attr(value: Any, name: str) -> Any:
    if isinstance(value, Ref):
        return value.child(name)
    if isinstance(value, Proxy):
        return value.get(name)
    if isinstance(value, dict):
        if name not in value:
            raise TfError(f"unsupported attribute {name!r} (have {sorted(value)})")
        return value[name]
    raise TfError(f"cannot read .{name} of {value!r}")


def get_index(value: Any, key: Any) -> Any:
    if isinstance(value, Ref):
        return value.child(f"[{key!r}]")
    if isinstance(value, list):
        if not isinstance(key, int) or not 0 <= key < len(value):
            raise TfError(f"index {key!r} out of range for a list of {len(value)}")
        return value[key]
    if isinstance(value, dict):
        if key not in value:
            raise TfError(f"no key {key!r} (have {sorted(value)})")
        return value[key]
    if isinstance(value, Proxy):
        return value.get(key)
    raise TfError(f"cannot index {value!r}")


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number_text(value)
    raise TfError(f"cannot interpolate {value!r} into a string")


def evaluate(node: Node, scope: Scope) -> Any:
    tag = node[0]
    if tag == "lit":
        return node[1]
    if tag == "template":
        return "".join(p if isinstance(p, str) else to_text(evaluate(p, scope)) for p in node[1])
    if tag == "name":
        return scope.lookup(node[1])
    if tag == "it":
        return scope.lookup("__splat__")
    if tag == "trav":
        value = evaluate(node[1], scope)
        for step in node[2]:
            if step[0] == "attr":
                value = get_attr(value, step[1])
            else:
                key = evaluate(step[1], scope)
                value = get_index(value, key)
        return value
    if tag == "splat":
        base = evaluate(node[1], scope)
        items = [] if base is None else base if isinstance(base, list) else [base]
        return [evaluate(node[2], scope.child(__splat__=item)) for item in items]
    if tag == "call":
        name, arg_nodes, expand = node[1], node[2], node[3]
        if name == "can":
            try:
                evaluate(arg_nodes[0], scope)
            except TfError:
                return False
            return True
        if name == "try":
            for arg in arg_nodes:
                try:
                    return evaluate(arg, scope)
                except TfError:
                    continue
            raise TfError("try(): no argument could be evaluated")
        if name not in FUNCTIONS:
            raise TfError(f"function {name}() is not supported")
        args = [evaluate(a, scope) for a in arg_nodes]
        if expand:
            args = args[:-1] + list(args[-1])
        if any(isinstance(a, Ref) for a in args) and name != "jsonencode":
            return Ref("unknown", f"{name}()")
        try:
            return FUNCTIONS[name](*args)
        except TfError:
            raise
        except Exception as exc:
            raise TfError(f"{name}({args!r}): {exc}") from None
    if tag == "tuple":
        return [evaluate(x, scope) for x in node[1]]
    if tag == "object":
        out = {}
        for key_node, value_node in node[1]:
            key = evaluate(key_node, scope)
            out[to_text(key)] = evaluate(value_node, scope)
        return out
    if tag == "cond":
        cond = evaluate(node[1], scope)
        if not isinstance(cond, bool):
            raise TfError(f"condition is {cond!r}, not a bool")
        return evaluate(node[2] if cond else node[3], scope)
    if tag == "unary":
        value = evaluate(node[2], scope)
        if isinstance(value, Ref):
            return value
        return (not value) if node[1] == "!" else -value
    if tag == "bin":
        return _binary(node[1], evaluate(node[2], scope), node[3], scope)
    if tag == "for":
        return _for(node, scope)
    raise TfError(f"cannot evaluate {node!r}")


def _binary(op: str, left: Any, right_node: Node, scope: Scope) -> Any:
    if op == "&&" and left is False:
        return False
    if op == "||" and left is True:
        return True
    right = evaluate(right_node, scope)
    if isinstance(left, Ref) or isinstance(right, Ref):
        return Ref("unknown", f"({op})")
    if op in ("&&", "||"):
        if not isinstance(right, bool) or not isinstance(left, bool):
            raise TfError(f"{op} needs bools, got {left!r}, {right!r}")
        return right
    if op == "==":
        return (left == right and type(left) is type(right)) or _num_eq(left, right)
    if op == "!=":
        return not ((left == right and type(left) is type(right)) or _num_eq(left, right))
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in (left, right)):
        raise TfError(f"arithmetic on non-numbers {left!r} {op} {right!r}")
    if op == "/":
        result = left / right
        return int(result) if float(result).is_integer() else result
    ops: dict[str, Callable[[Any, Any], Any]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
        "%": lambda a, b: math.fmod(a, b),
        "<": lambda a, b: a < b,
        ">": lambda a, b: a > b,
        "<=": lambda a, b: a <= b,
        ">=": lambda a, b: a >= b,
    }
    return ops[op](left, right)


def _num_eq(a: Any, b: Any) -> bool:
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    return numbers and a == b


def _for(node: Node, scope: Scope) -> Any:
    _, close, key_var, value_var, coll_node, key_node, value_node, cond_node, group = node
    coll = evaluate(coll_node, scope)
    if isinstance(coll, dict):
        pairs = [(k, coll[k]) for k in sorted(coll)]
    elif isinstance(coll, list):
        pairs = list(enumerate(coll)) if not isinstance(coll, TfSet) else [(v, v) for v in coll]
    else:
        raise TfError(f"cannot iterate over {coll!r}")
    out_list: list[Any] = []
    out_map: dict[str, Any] = {}
    for k, v in pairs:
        names = {value_var: v}
        if key_var:
            names[key_var] = k
        inner = scope.child(**names)
        if cond_node is not None and evaluate(cond_node, inner) is not True:
            continue
        value = evaluate(value_node, inner)
        if close == "]":
            out_list.append(value)
            continue
        key = to_text(evaluate(key_node, inner))
        if group:
            out_map.setdefault(key, []).append(value)
        elif key in out_map:
            raise TfError(f"duplicate key {key!r} in for expression")
        else:
            out_map[key] = value
    return out_list if close == "]" else out_map


def evaluate_raw(raw: Any, scope: Scope) -> Any:
    """Evaluate an attribute value as python-hcl2 gives it (templates, nested dicts and lists)."""
    if isinstance(raw, str):
        if raw.startswith("<<"):
            raise TfError("heredocs are not supported by this evaluator")
        return evaluate(parse_template(raw, escaped=False), scope)
    if isinstance(raw, list):
        return [evaluate_raw(x, scope) for x in raw]
    if isinstance(raw, dict):
        return {k: evaluate_raw(v, scope) for k, v in raw.items()}
    return raw


def references(raw: Any) -> Iterator[Node]:
    """Every traversal node in an attribute value (for static checks)."""
    if isinstance(raw, str):
        if raw.startswith("<<"):
            return
        yield from _walk(parse_template(raw, escaped=False))
    elif isinstance(raw, list):
        for x in raw:
            yield from references(x)
    elif isinstance(raw, dict):
        for x in raw.values():
            yield from references(x)


def _walk(node: Any) -> Iterator[Node]:
    if isinstance(node, tuple) and node and isinstance(node[0], str):
        if node[0] in ("trav", "name"):
            yield node
        for child in node[1:]:
            yield from _walk(child)
    elif isinstance(node, tuple | list):
        for child in node:
            yield from _walk(child)


# -- modules -----------------------------------------------------------------------------------------------


@dataclass
class ModuleSource:
    """The blocks of every .tf file of one directory."""

    path: Path
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> ModuleSource:
        files = sorted(path.glob("*.tf"))
        if not files:
            raise TfError(f"no .tf files in {path}")
        src = cls(path)
        for f in files:
            doc = load_hcl(f)
            for block in doc.get("variable", []):
                src._add(src.variables, block, f)
            for block in doc.get("locals", []):
                src._add(src.locals, block, f)
            for block in doc.get("module", []):
                src._add(src.modules, block, f)
            for block in doc.get("output", []):
                src._add(src.outputs, block, f)
            for kind, target in (("resource", src.resources), ("data", src.data)):
                for block in doc.get(kind, []):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            src._add(target, {(rtype, name): body}, f)
        return src

    @staticmethod
    def _add(target: dict[Any, Any], block: dict[Any, Any], f: Path) -> None:
        for name, body in block.items():
            if name in target:
                raise TfError(f"{f}: duplicate declaration of {name!r}")
            target[name] = body

    def module_source_path(self, name: str) -> Path:
        source = self.modules[name].get("source")
        if not isinstance(source, str) or not source.startswith(("./", "../")):
            raise TfError(f"{self.path}: module {name!r} has a non-local source {source!r}")
        target = (self.path / source).resolve()
        if not target.is_dir() or not list(target.glob("*.tf")):
            raise TfError(f"{self.path}: module {name!r} source {source!r} does not exist")
        return target


@dataclass
class Instance:
    """One resource or data source instance: its evaluated arguments, and Refs for the rest."""

    address: str
    rtype: str
    name: str
    key: Any
    module: ModuleInstance
    raw: dict[str, Any]
    scope: Scope
    _args: dict[str, Any] | None = None
    _busy: bool = False

    @property
    def args(self) -> dict[str, Any]:
        if self._args is None:
            if self._busy:
                raise TfError(f"{self.address} refers to itself")
            self._busy = True
            try:
                self._args = evaluate_body(self.raw, self.scope, top=True)
                self._check_conditions()
            finally:
                self._busy = False
        return self._args

    def _check_conditions(self) -> None:
        for lifecycle in self.raw.get("lifecycle", []):
            for cond in lifecycle.get("precondition", []):
                if evaluate_raw(cond["condition"], self.scope) is not True:
                    raise TfError(f"{self.address}: precondition failed: {cond.get('error_message')}")

    def attr(self, name: str) -> Any:
        if name in self.args:
            return self.args[name]
        return Ref(self.address, name)

    def proxy(self) -> Proxy:
        return Proxy(self.attr, self.address)


def evaluate_body(raw: dict[str, Any], scope: Scope, *, top: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if top and key in META_ARGS:
            continue
        if key == "dynamic":
            for block in value:
                for label, spec in block.items():
                    out.setdefault(label, []).extend(_expand_dynamic(label, spec, scope))
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out.setdefault(key, []).extend(evaluate_body(v, scope) for v in value)
        else:
            out[key] = evaluate_raw(value, scope)
    return out


def _expand_dynamic(label: str, spec: dict[str, Any], scope: Scope) -> list[dict[str, Any]]:
    items = evaluate_raw(spec["for_each"], scope)
    iterator = spec.get("iterator", label)
    if isinstance(items, dict):
        pairs = [(k, items[k]) for k in sorted(items)]
    elif isinstance(items, TfSet):
        pairs = [(v, v) for v in items]
    elif isinstance(items, list):
        pairs = list(enumerate(items))
    else:
        raise TfError(f"dynamic {label!r}: for_each is {items!r}")
    content = spec["content"][0] if isinstance(spec["content"], list) else spec["content"]
    return [evaluate_body(content, scope.child(**{iterator: {"key": k, "value": v}})) for k, v in pairs]


def _instances(raw: dict[str, Any], scope: Scope, what: str) -> list[tuple[Any, Scope]]:
    """(key, scope) per instance: key None (single), an int (count) or a string (for_each)."""
    if "for_each" in raw and "count" in raw:
        raise TfError(f"{what}: count and for_each together")
    if "for_each" in raw:
        items = evaluate_raw(raw["for_each"], scope)
        if isinstance(items, dict):
            return [(k, scope.child(each={"key": k, "value": items[k]})) for k in sorted(items)]
        if isinstance(items, TfSet):
            for v in items:
                if not isinstance(v, str):
                    raise TfError(f"{what}: for_each set holds a non-string {v!r}")
            return [(v, scope.child(each={"key": v, "value": v})) for v in items]
        raise TfError(f"{what}: for_each must be a map or a set of strings, got {items!r}")
    if "count" in raw:
        count = evaluate_raw(raw["count"], scope)
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise TfError(f"{what}: count is {count!r}")
        return [(i, scope.child(count={"index": i})) for i in range(count)]
    return [(None, scope)]


def _key_text(key: Any) -> str:
    return "" if key is None else f"[{json.dumps(key)}]"


class ModuleInstance:
    def __init__(self, src: ModuleSource, inputs: dict[str, Any], address: str, root: Path) -> None:
        self.src = src
        self.address = address
        self.root = root
        unknown = set(inputs) - set(src.variables)
        if unknown:
            raise TfError(f"{address or 'root'}: unsupported argument(s) {sorted(unknown)} ({src.path})")
        self.vars: dict[str, Any] = {}
        for name, spec in src.variables.items():
            typ = parse_type(spec.get("type"))
            where = f"{address}var.{name}"
            if name in inputs and not (inputs[name] is None and spec.get("nullable") is False):
                self.vars[name] = convert(inputs[name], typ, where)
            elif "default" in spec:
                self.vars[name] = convert(spec["default"], typ, where)
            else:
                raise TfError(f"{where}: required variable not set")
        for name, spec in src.variables.items():
            for rule in spec.get("validation", []):
                if evaluate_raw(rule["condition"], Scope({"var": self.vars})) is not True:
                    raise TfError(f"{address}var.{name}: {rule.get('error_message')}")
        self._locals: dict[str, Any] = {}
        self._locals_busy: set[str] = set()
        self._resources: dict[tuple[str, str], Any] = {}
        self._data: dict[tuple[str, str], Any] = {}
        self._modules: dict[str, Any] = {}
        self.children: list[ModuleInstance] = []
        self.all_instances: list[Instance] = []
        self.scope = Scope(
            {
                "var": self.vars,
                "local": Proxy(self.local, f"{address}local"),
                "module": Proxy(self.module_value, f"{address}module"),
                "data": Proxy(lambda t: Proxy(lambda n: self.block_value("data", t, n), t), "data"),
                "path": {"module": str(src.path), "root": str(root), "cwd": str(root)},
                "terraform": {"workspace": "default"},
            }
        )
        for rtype in {t for t, _ in src.resources}:
            self.scope.names[rtype] = Proxy(
                lambda n, t=rtype: self.block_value("resource", t, n), f"{address}{rtype}"
            )

    # locals, resources, data, modules ----------------------------------------------------------
    def local(self, name: str) -> Any:
        if name not in self.src.locals:
            raise TfError(f"{self.address}local.{name} is not declared ({self.src.path})")
        if name not in self._locals:
            if name in self._locals_busy:
                raise TfError(f"{self.address}local.{name} depends on itself")
            self._locals_busy.add(name)
            try:
                self._locals[name] = evaluate_raw(self.src.locals[name], self.scope)
            finally:
                self._locals_busy.discard(name)
        return self._locals[name]

    def block_value(self, kind: str, rtype: str, name: str) -> Any:
        blocks = self.src.resources if kind == "resource" else self.src.data
        cache = self._resources if kind == "resource" else self._data
        if (rtype, name) not in blocks:
            raise TfError(f"{self.address}{kind} {rtype}.{name} is not declared ({self.src.path})")
        if (rtype, name) not in cache:
            raw = blocks[(rtype, name)]
            prefix = "data." if kind == "data" else ""
            base = f"{self.address}{prefix}{rtype}.{name}"
            made = [
                Instance(f"{base}{_key_text(key)}", rtype, name, key, self, raw, scope)
                for key, scope in _instances(raw, self.scope, base)
            ]
            self.all_instances.extend(made)
            if "for_each" in raw:
                cache[(rtype, name)] = {i.key: i.proxy() for i in made}
            elif "count" in raw:
                cache[(rtype, name)] = [i.proxy() for i in made]
            else:
                cache[(rtype, name)] = made[0].proxy()
        return cache[(rtype, name)]

    def module_value(self, name: str) -> Any:
        if name not in self.src.modules:
            raise TfError(f"{self.address}module.{name} is not declared ({self.src.path})")
        if name not in self._modules:
            raw = self.src.modules[name]
            child_src = load_module(self.src.module_source_path(name))
            base = f"{self.address}module.{name}"
            made = []
            for key, scope in _instances(raw, self.scope, base):
                inputs = {
                    k: evaluate_raw(v, scope)
                    for k, v in raw.items()
                    if k not in META_ARGS | {"source", "version"}
                }
                child = ModuleInstance(child_src, inputs, f"{base}{_key_text(key)}.", self.root)
                self.children.append(child)
                made.append((key, child.outputs_proxy()))
            if "for_each" in raw:
                self._modules[name] = dict(made)
            elif "count" in raw:
                self._modules[name] = [p for _, p in made]
            else:
                self._modules[name] = made[0][1]
        return self._modules[name]

    def output(self, name: str) -> Any:
        if name not in self.src.outputs:
            raise TfError(f"{self.address or 'root '}output {name!r} is not declared ({self.src.path})")
        return evaluate_raw(self.src.outputs[name]["value"], self.scope)

    def outputs_proxy(self) -> Proxy:
        return Proxy(self.output, f"{self.address}outputs")

    # whole plan -------------------------------------------------------------------------------------
    def plan(self) -> Plan:
        for name in self.src.locals:
            self.local(name)
        for rtype, name in self.src.resources:
            self.block_value("resource", rtype, name)
        for rtype, name in self.src.data:
            self.block_value("data", rtype, name)
        for name in self.src.modules:
            self.module_value(name)
        outputs = {name: self.output(name) for name in self.src.outputs}
        for inst in list(self.all_instances):
            _ = inst.args
        for child in list(self.children):
            child.plan()
        return Plan(self, outputs)

    def walk(self) -> Iterator[ModuleInstance]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class Plan:
    root: ModuleInstance
    outputs: dict[str, Any]

    def instances(self, rtype: str | None = None, name: str | None = None) -> list[Instance]:
        return [
            inst
            for module in self.root.walk()
            for inst in module.all_instances
            if (rtype is None or inst.rtype == rtype) and (name is None or inst.name == name)
        ]

    def by_address(self) -> dict[str, Instance]:
        return {inst.address: inst for inst in self.instances()}

    def resolve(self, value: Any) -> Instance:
        """The instance a Ref (or a string holding one ref marker) points at."""
        if isinstance(value, str):
            m = REF_MARKER.fullmatch(value)
            if not m:
                raise TfError(f"{value!r} is not a reference")
            address = m.group(1).rsplit(".", 1)[0]
        elif isinstance(value, Ref):
            address = value.address
        else:
            raise TfError(f"{value!r} is not a reference")
        try:
            return self.by_address()[address]
        except KeyError:
            raise TfError(f"no resource instance {address}") from None


_MODULE_CACHE: dict[Path, ModuleSource] = {}


def load_module(path: Path) -> ModuleSource:
    path = path.resolve()
    if path not in _MODULE_CACHE:
        _MODULE_CACHE[path] = ModuleSource.load(path)
    return _MODULE_CACHE[path]


def load_tfvars(path: Path) -> dict[str, Any]:
    return {k: evaluate_raw(v, Scope({})) for k, v in load_hcl(path).items()}


def plan_root(path: Path, tfvars: Path | None = None, *, cache: bool = True) -> Plan:
    """Evaluate a root module (an environment) with its tfvars, like ``terraform plan``."""
    src = load_module(path) if cache else ModuleSource.load(path)
    inputs = load_tfvars(tfvars) if tfvars else {}
    return ModuleInstance(src, inputs, "", path.resolve()).plan()

"""A small evaluator for the part of Argo's expression languages the argomlops template uses.

Argo evaluates `retryStrategy.expression` with expr (expr-lang/expr) and `when`
conditions with govaluate, both Go libraries. Tests (and the end-to-end Argo stand-in) need to know what
the template's real strings do without a controller, so this module parses and evaluates them: it never
calls Python's `eval`.

Supported: string literals ('...' or "..."), integers, true/false/nil, dotted names and `a['key']`
lookups, `!`/`not`, `&&`/`and`, `||`/`or`, `==`, `!=`, `<`, `<=`, `>`, `>=`, `matches` (and govaluate's
`=~`), `contains`, `startsWith`, `endsWith`, `in`, `+`, `? :`, and the functions `asInt`, `string`,
`lower`, `upper`. Anything else raises `ExprError`, so an expression that strays outside this subset
fails its test instead of being guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class ExprError(ValueError):
    """An expression outside the supported subset, or one that fails to evaluate."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>\d+)
      | (?P<op>&&|\|\||==|!=|<=|>=|=~|[!<>+?:()\[\],.-])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'"}
_KEYWORDS = {"and": "&&", "or": "||", "not": "!"}
_COMPARISONS = {"==", "!=", "<", "<=", ">", ">=", "=~", "matches", "contains", "startsWith", "endsWith", "in"}


@dataclass(frozen=True)
class _Token:
    kind: str  # string, number, op, name, end
    text: str


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokenize(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(source):
        if source[pos:].strip() == "":
            break
        match = _TOKEN.match(source, pos)
        if not match:
            raise ExprError(f"cannot read expression at {source[pos : pos + 20]!r}")
        kind = match.lastgroup or "op"
        text = match.group(kind)
        if kind == "name" and text in _KEYWORDS:
            kind, text = "op", _KEYWORDS[text]
        tokens.append(_Token(kind, text))
        pos = match.end()
    tokens.append(_Token("end", ""))
    return tokens


def _as_int(value: Any) -> int:
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise ExprError(f"asInt: not an integer: {value!r}") from exc


_FUNCTIONS: dict[str, Callable[[Any], Any]] = {
    "asInt": _as_int,
    "string": lambda v: "" if v is None else str(v),
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
}


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in ("=~", "matches"):
        return re.search(str(right), str(left)) is not None
    if op == "contains":
        return str(right) in str(left)
    if op == "startsWith":
        return str(left).startswith(str(right))
    if op == "endsWith":
        return str(left).endswith(str(right))
    if op == "in":
        if isinstance(right, (list, tuple, Mapping)):
            return left in right
        raise ExprError(f"`in` needs a list or map on its right, got {right!r}")
    if type(left) is not type(right) or not isinstance(left, (int, str)):
        raise ExprError(f"cannot order {left!r} and {right!r}")
    ordered = {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}
    return ordered[op]


class _Parser:
    """Recursive descent over the token list, evaluating as it goes (the expressions are tiny)."""

    def __init__(self, source: str, env: Mapping[str, Any]) -> None:
        self.tokens = _tokenize(source)
        self.pos = 0
        self.env = env

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self, text: str | None = None) -> _Token:
        token = self.tokens[self.pos]
        if text is not None and token.text != text:
            raise ExprError(f"expected {text!r}, got {token.text or 'end of expression'!r}")
        self.pos += 1
        return token

    def parse(self) -> Any:
        value = self.ternary()
        if self.peek().kind != "end":
            raise ExprError(f"unexpected {self.peek().text!r}")
        return value

    def ternary(self) -> Any:
        condition = self.disjunction()
        if self.peek().text != "?":
            return condition
        self.take("?")
        yes = self.ternary()
        self.take(":")
        no = self.ternary()
        return yes if _truth(condition) else no

    def disjunction(self) -> Any:
        value = self.conjunction()
        while self.peek().text == "||":
            self.take()
            right = self.conjunction()
            value = _truth(value) or _truth(right)
        return value

    def conjunction(self) -> Any:
        value = self.comparison()
        while self.peek().text == "&&":
            self.take()
            right = self.comparison()
            value = _truth(value) and _truth(right)
        return value

    def comparison(self) -> Any:
        value = self.additive()
        while self.peek().text in _COMPARISONS:
            op = self.take().text
            value = _compare(op, value, self.additive())
        return value

    def additive(self) -> Any:
        value = self.unary()
        while self.peek().text == "+":
            self.take()
            right = self.unary()
            if type(value) is not type(right) or not isinstance(value, (int, str)):
                raise ExprError(f"cannot add {value!r} and {right!r}")
            value = value + right
        return value

    def unary(self) -> Any:
        if self.peek().text == "!":
            self.take()
            return not _truth(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while self.peek().text in (".", "["):
            if self.take().text == ".":
                key: Any = self.take().text
            else:
                key = self.ternary()
                self.take("]")
            if not isinstance(value, Mapping) or key not in value:
                raise ExprError(f"no field {key!r}")
            value = value[key]
        return value

    def primary(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "number":
            return int(token.text)
        if token.text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if token.kind != "name":
            raise ExprError(f"unexpected {token.text or 'end of expression'!r}")
        if token.text in ("true", "false"):
            return token.text == "true"
        if token.text == "nil":
            return None
        if self.peek().text == "(":
            if token.text not in _FUNCTIONS:
                raise ExprError(f"unknown function {token.text}()")
            self.take("(")
            argument = self.ternary()
            self.take(")")
            return _FUNCTIONS[token.text](argument)
        if token.text not in self.env:
            raise ExprError(f"unknown name {token.text!r}")
        return self.env[token.text]


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ExprError(f"expected a boolean, got {value!r}")
    return value


def evaluate(expression: str, env: Mapping[str, Any]) -> Any:
    """The value of `expression` with the names of `env` (nested mappings for dotted names)."""
    return _Parser(expression, env).parse()


def nest(flat: Mapping[str, str]) -> dict[str, Any]:
    """Turn Argo's flat variable names (`workflow.parameters.gpus`) into nested mappings for `evaluate`."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        # Parameter names may hold dots only after `parameters.`; keep the rest of the key whole there.
        if "parameters" in parts:
            cut = parts.index("parameters") + 1
            parts = [*parts[:cut], ".".join(parts[cut:])]
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


_TAG = re.compile(r"\{\{(=?)\s*(.*?)\s*\}\}", re.DOTALL)


def render(text: str, variables: Mapping[str, str]) -> str:
    """Substitute Argo `{{name}}` and `{{=expression}}` tags in `text` as the controller would.

    Raises:
        ExprError: a tag names an unknown variable or its expression is outside the supported subset.
    """
    env = nest(variables)

    def substitute(match: re.Match[str]) -> str:
        if match.group(1):
            value = evaluate(match.group(2), env)
            if isinstance(value, bool):
                return "true" if value else "false"
            return "" if value is None else str(value)
        name = match.group(2)
        if name not in variables:
            raise ExprError(f"unknown variable {{{{{name}}}}}")
        return variables[name]

    return _TAG.sub(substitute, text)


def should_retry(expression: str, exit_code: int | None, status: str, message: str) -> bool:
    """Whether Argo would retry a node that ended this way, by evaluating `expression` as Argo does.

    Args:
        expression: a `retryStrategy.expression`, e.g. `PREEMPTION_EXPRESSION`.
        exit_code: the main container's exit code, None when there is none (the pod vanished).
        status: the node phase, `Failed` or `Error`.
        message: the node's message, e.g. "Pod was terminated in response to imminent node shutdown.".

    Raises:
        ExprError: the expression is outside the supported subset, or is not a boolean.
    """
    # Argo passes every lastRetry field as a string; "-1" stands for "no exit code".
    variables = {
        "lastRetry.exitCode": "-1" if exit_code is None else str(exit_code),
        "lastRetry.status": status,
        "lastRetry.message": message,
        "lastRetry.duration": "0",
    }
    result = evaluate(expression, nest(variables))
    if not isinstance(result, bool):
        raise ExprError(f"retry expression gave {result!r}, not a boolean")
    return result

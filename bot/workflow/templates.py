"""Prompt templates and `when`/`until` expressions: Jinja2 with strict undefined variables, sandboxed.

A name or attribute the context does not have raises instead of rendering as nothing, so a typo fails
loudly, and every error says where it happened (`where`: the workflow file, node and field). Workflow
files come from repositories, so templates run in Jinja's immutable sandbox: they read the values they
are given and cannot reach Python internals, and through them the bot's secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


class TemplateError(ValueError):
    """A template or expression that does not parse or does not render; the message says where."""


def render(template: str, context: Mapping[str, Any], where: str = "template") -> str:
    """Render `template` with `context`; an undefined variable raises `TemplateError` naming `where`."""
    try:
        return _template(template).render(context)
    except jinja2.TemplateError as error:
        raise _error(error, where) from error


def evaluate(expression: str, context: Mapping[str, Any], where: str = "expression") -> bool:
    """The truth of a `when`/`until` expression, e.g. `validate.passed and attempt < 3`."""
    try:
        return bool(_expression(expression)(**context))
    except jinja2.TemplateError as error:
        raise _error(error, where) from error


def check_template(template: str, where: str = "template") -> None:
    """Raise `TemplateError` if `template` does not parse."""
    try:
        _template(template)
    except jinja2.TemplateError as error:
        raise _error(error, where) from error


def check_expression(expression: str, where: str = "expression") -> None:
    """Raise `TemplateError` if `expression` does not parse."""
    try:
        _expression(expression)
    except jinja2.TemplateError as error:
        raise _error(error, where) from error


def variables(source: str, *, expression: bool = False) -> set[str]:
    """The top-level names `source` reads from its context (`issue` in `{{ issue.title }}`)."""
    return meta.find_undeclared_variables(_parse(source, expression))


def attributes(source: str, name: str, *, expression: bool = False) -> set[str]:
    """The attributes `source` reads from the variable `name`: `{"plan"}` for `{{ inputs.plan }}` or
    `{{ inputs["plan"] }}`. Computed keys (`inputs[x]`) cannot be known and are not listed."""
    found = set()
    for node in _parse(source, expression).find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node.node, nodes.Name) and node.node.name == name):
            continue
        if isinstance(node, nodes.Getattr):
            found.add(node.attr)
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            found.add(node.arg.value)
    return found


@lru_cache(maxsize=256)
def _template(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


@lru_cache(maxsize=256)
def _expression(source: str) -> Callable[..., Any]:
    return _ENV.compile_expression(source, undefined_to_none=False)


def _parse(source: str, expression: bool) -> nodes.Template:
    if expression:
        _expression(source)  # only a whole, single expression may be wrapped below
        source = "{{ " + source + " }}"
    return _ENV.parse(source)


def _error(error: jinja2.TemplateError, where: str) -> TemplateError:
    if isinstance(error, jinja2.UndefinedError):
        return TemplateError(f"{where}: undefined variable: {error.message}")
    if isinstance(error, jinja2.TemplateSyntaxError):
        return TemplateError(f"{where}: syntax error on line {error.lineno}: {error.message}")
    return TemplateError(f"{where}: {error.message or error}")

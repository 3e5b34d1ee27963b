"""Prompt templates and `when`/`until` expressions: Jinja2 with strict undefined variables, sandboxed.

A name or attribute the context does not have raises instead of rendering as nothing, so a typo fails
loudly, and every error says where it happened (`where`: the workflow file, node and field). Workflow
files come from repositories, so templates run in Jinja's immutable sandbox: they read the values they
are given and cannot reach Python internals, and through them the bot's secrets.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _shell_word(value: Any) -> str:
    """Every `{{ … }}` of a shell command becomes one quoted word: values come from issues and models."""
    return shlex.quote("" if value is None else str(value))


#: Shell commands: the same sandbox, but each expression's output is shell-quoted (`finalize` sees every
#: `{{ … }}` value, never the template's literal text), so a title like `x"; rm -rf ~; "` stays data.
_SHELL_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False, finalize=_shell_word
)


class TemplateError(ValueError):
    """A template or expression that does not parse or does not render; the message says where."""


def render(template: str, context: Mapping[str, Any], where: str = "template") -> str:
    """Render `template` with `context`; an undefined variable raises `TemplateError` naming `where`."""
    try:
        return _template(template).render(context)
    except jinja2.TemplateError as error:
        raise _error(error, where) from error


def render_shell(template: str, context: Mapping[str, Any], where: str = "command") -> str:
    """Render a shell node's `command`: like `render`, with every interpolated value shell-quoted.

    A quoted word is only safe where the shell reads words, so `{{ … }}` inside quotes, a comment or a
    here-document (where the value's own quotes would end the author's) is refused, naming `where`.
    """
    try:
        if spot := _unsafe_spot(_skeleton(template)):
            raise TemplateError(
                f"{where}: a `{{{{ … }}}}` value is {spot}; values are shell-quoted for you, so write it "
                'as a word of its own (`echo {{ issue.title }}`, not `echo "{{ issue.title }}"`)'
            )
        return _shell_template(template).render(context)
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
def _shell_template(source: str) -> jinja2.Template:
    return _SHELL_ENV.from_string(source)


@lru_cache(maxsize=256)
def _expression(source: str) -> Callable[..., Any]:
    return _ENV.compile_expression(source, undefined_to_none=False)


_VALUE = "\0"  # stands for one `{{ … }}` in a command's skeleton


@lru_cache(maxsize=256)
def _skeleton(source: str) -> str:
    """The command's literal text with each `{{ … }}` replaced by `_VALUE` (tags and comments dropped)."""
    parts = []
    for _, kind, value in _SHELL_ENV.lex(source):
        if kind == "variable_begin":
            parts.append(_VALUE)
        elif kind == "data":
            parts.append(value)
    return "".join(parts)


def _unsafe_spot(skeleton: str) -> str | None:
    """Where a value sits that quoting cannot protect: in quotes, a comment or a here-document."""
    quote, previous, index, heredoc = "", " ", 0, False
    while index < len(skeleton):
        char = skeleton[index]
        if char == _VALUE and (quote or heredoc):
            return _SPOTS.get(quote, "inside a here-document")
        if quote == "#":  # a comment, until the end of its line
            quote = "" if char == "\n" else quote
        elif quote == "'":
            quote = "" if char == "'" else quote
        elif char == "\\":
            index += 1  # an escaped character, in double quotes, backquotes or outside
        elif quote:
            quote = "" if char == quote else quote
        elif char in "'\"`" or (char == "#" and previous in " \t\n;&|()"):
            quote = char
        elif skeleton.startswith("<<", index) and not skeleton.startswith("<<<", index):
            heredoc = True
        previous, index = char, index + 1
    return None


_SPOTS = {
    "'": "inside single quotes",
    '"': "inside double quotes",
    "`": "inside backquotes",
    "#": "inside a comment",
}


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

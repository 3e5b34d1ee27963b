"""The trigger grammar: label names and `/archon` comments → a typed request, or a `TriggerError`.

Pure and exhaustively unit-tested. Model names are checked for *syntax* here; whether an alias exists
is decided later against the repository's registry (see `runconfig`), because a repository can add
aliases of its own.

Label semantics (documented for users in `commands.LABEL_HELP`): GitHub sends one `issues.labeled`
delivery per label, and each payload lists every label on the issue at that moment. The label that
was just applied wins; the other `archon:` labels on the issue fill the roles it leaves open. So
`archon:plan-opus` + `archon:impl-kimi` applied together make two deliveries that describe the same
run, and the run's derived job id (see `runconfig`) collapses them into one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.commands import COMMANDS, LABEL_HELP, CommandName
from bot.providers.registry import ALIAS_PATTERN

LABEL_PREFIX = "archon:"
BENCH_LABEL = "archon:bench"
COMMAND_PATTERN = re.compile(r"^/archon(?:\s+|$)", re.IGNORECASE)
WORKFLOW_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TOKEN_SPLIT = re.compile(r"[\s,]+")
MAX_REPEAT = 10


class Role(StrEnum):
    """The workflow roles a model can be assigned to."""

    EXPLORE = "explore"
    PLAN = "plan"
    IMPL = "impl"
    EVAL = "eval"


class TriggerError(ValueError):
    """Bad syntax. `str(error)` is a user-facing sentence; `usage` is the syntax that was expected."""

    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunRequest(_Request):
    kind: Literal["run"] = "run"
    models: dict[Role, str] = Field(default_factory=dict, description="Alias per role, as typed.")
    workflow: str | None = None
    gate: Literal["plan", "none"] | None = Field(
        None, description="`plan`: stop for approval after the plan."
    )


class BenchRequest(_Request):
    kind: Literal["bench"] = "bench"
    plan: tuple[str, ...] = ()
    impl: tuple[str, ...] = ()
    explore: str | None = None
    eval: tuple[str, ...] = ()
    issues: tuple[int, ...] = ()
    repeat: int = 1
    open_prs: bool = False


class EvaluateRequest(_Request):
    kind: Literal["evaluate"] = "evaluate"
    eval: tuple[str, ...] = ()


class ReviseRequest(_Request):
    """On an issue: re-plan a waiting run. On the bot's pull request: new commits for the feedback."""

    kind: Literal["revise"] = "revise"
    feedback: str
    models: dict[Role, str] = Field(default_factory=dict, description="`impl=M`: who writes the revision.")


class ReplanRequest(_Request):
    """On the bot's pull request: a new plan with the feedback, implemented on the same branch."""

    kind: Literal["replan"] = "replan"
    feedback: str
    models: dict[Role, str] = Field(default_factory=dict)


class PlainRequest(_Request):
    kind: Literal["status", "cancel", "retry", "approve", "help", "models"]


Request = Annotated[
    RunRequest | BenchRequest | EvaluateRequest | ReviseRequest | ReplanRequest | PlainRequest,
    Field(discriminator="kind"),
]


# --- tokens ---------------------------------------------------------------------------------------


def _split_token(token: str) -> tuple[str, str]:
    """`plan=opus` or `plan-opus` → ("plan", "opus"). Anything else is an error."""
    match = re.match(r"^([a-z]+)[=-](.*)$", token, re.IGNORECASE)
    if not match:
        raise TriggerError(f"`{token}` is not an option: write `key=value` (for example `plan=opus`).")
    return match.group(1).lower(), match.group(2).strip().lower()


def _alias(value: str, key: str) -> str:
    if not ALIAS_PATTERN.match(value):
        raise TriggerError(f"`{key}={value}` is not a model alias (letters, digits, `.`, `_`, `-`).")
    return value


def _aliases(value: str, key: str) -> tuple[str, ...]:
    items = [v for v in value.split(",") if v]
    if not items:
        raise TriggerError(f"`{key}=` needs at least one model alias.")
    return tuple(_alias(v, key) for v in items)


def _workflow(value: str) -> str:
    if not WORKFLOW_PATTERN.match(value):
        raise TriggerError(f"`workflow={value}` is not a workflow name (letters, digits, `-`, `_`).")
    return value


def _issues(value: str) -> tuple[int, ...]:
    numbers = []
    for item in value.split(","):
        digits = item.strip().lstrip("#")
        if not digits.isdigit() or int(digits) < 1:
            raise TriggerError(f"`issues={value}`: `{item}` is not an issue number like `#12`.")
        numbers.append(int(digits))
    return tuple(dict.fromkeys(numbers))


def _repeat(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_REPEAT:
        raise TriggerError(f"`repeat={value}` must be a whole number from 1 to {MAX_REPEAT}.")
    return int(value)


def _yes_no(value: str, key: str) -> bool:
    if value in {"yes", "true", "on", "1"}:
        return True
    if value in {"no", "false", "off", "0"}:
        return False
    raise TriggerError(f"`{key}={value}` must be `yes` or `no`.")


def _pairs(tokens: Iterable[str], allowed: Sequence[str]) -> dict[str, str]:
    """Split tokens into a key → value dict, refusing unknown and repeated keys."""
    pairs: dict[str, str] = {}
    for token in tokens:
        key, value = _split_token(token)
        if key not in allowed:
            choices = ", ".join(f"`{k}`" for k in allowed) or "none"
            raise TriggerError(f"`{key}` is not an option here; valid options: {choices}.")
        if key in pairs:
            raise TriggerError(f"`{key}` is given twice; give each option once.")
        if not value:
            raise TriggerError(f"`{key}` needs a value, for example `{key}=opus`.")
        pairs[key] = value
    return pairs


# --- requests -------------------------------------------------------------------------------------

_RUN_KEYS = COMMANDS[CommandName.RUN].options
_BENCH_KEYS = COMMANDS[CommandName.BENCH].options


def _run_request(tokens: Iterable[str]) -> RunRequest:
    pairs = _pairs(tokens, _RUN_KEYS)
    for key, value in pairs.items():
        if key != "workflow" and "," in value:
            raise TriggerError(
                f"`{key}={value}`: a run uses one model per role; use `/archon bench` to compare several."
            )
    workflow = pairs.pop("workflow", None)
    gate = _gate(pairs.pop("gate")) if "gate" in pairs else None
    models = {Role(key): _alias(value, key) for key, value in pairs.items()}
    return RunRequest(models=models, workflow=_workflow(workflow) if workflow else None, gate=gate)


def _gate(value: str) -> Literal["plan", "none"]:
    if value not in ("plan", "none"):
        raise TriggerError(f"`gate={value}` must be `plan` (stop for approval after the plan) or `none`.")
    return value  # type: ignore[return-value]


def _bench_request(tokens: Iterable[str]) -> BenchRequest:
    pairs = _pairs(tokens, _BENCH_KEYS)
    return BenchRequest(
        plan=_aliases(pairs["plan"], "plan") if "plan" in pairs else (),
        impl=_aliases(pairs["impl"], "impl") if "impl" in pairs else (),
        explore=_alias(pairs["explore"], "explore") if "explore" in pairs else None,
        eval=_aliases(pairs["eval"], "eval") if "eval" in pairs else (),
        issues=_issues(pairs["issues"]) if "issues" in pairs else (),
        repeat=_repeat(pairs["repeat"]) if "repeat" in pairs else 1,
        open_prs=_yes_no(pairs["prs"], "prs") if "prs" in pairs else False,
    )


def _evaluate_request(tokens: Iterable[str]) -> EvaluateRequest:
    pairs = _pairs(tokens, COMMANDS[CommandName.EVALUATE].options)
    return EvaluateRequest(eval=_aliases(pairs["eval"], "eval") if "eval" in pairs else ())


# --- comments -------------------------------------------------------------------------------------


def is_command(body: str | None) -> bool:
    """Whether a comment addresses the bot: its first non-blank line starts with `/archon`."""
    return bool(body) and bool(COMMAND_PATTERN.match(body.lstrip()))


def parse_comment(body: str) -> Request | None:
    """Parse a comment. None if it does not address the bot; `TriggerError` if it does, wrongly."""
    if not is_command(body):
        return None
    first, _, rest = body.lstrip().partition("\n")
    words = first.split()[1:]
    if not words:
        return PlainRequest(kind="help")
    try:
        name = CommandName(words[0].lower())
    except ValueError:
        names = ", ".join(f"`{n}`" for n in CommandName)
        raise TriggerError(f"`{words[0]}` is not an Archon command; commands: {names}.") from None
    try:
        return _command(name, words[1:], first, rest)
    except TriggerError as error:
        raise TriggerError(str(error), COMMANDS[name].usage) from None


def _command(name: CommandName, args: list[str], first: str, rest: str) -> Request:
    if name is CommandName.RUN:
        return _run_request(args)
    if name is CommandName.BENCH:
        return _bench_request(args)
    if name is CommandName.EVALUATE:
        return _evaluate_request(args)
    if COMMANDS[name].text:
        return _text_request(name, args, first, rest)
    if args:
        raise TriggerError(f"`/archon {name}` takes no options (got `{' '.join(args)}`).")
    return PlainRequest(kind=name.value)


def _text_request(name: CommandName, args: list[str], first: str, rest: str) -> ReviseRequest | ReplanRequest:
    """`/archon revise [impl=M] <feedback>`: leading `key=value` options from the table, then the text
    (the rest of the first line and every line after it)."""
    allowed, options = COMMANDS[name].options, []
    while args and re.match(rf"^({'|'.join(allowed)})=", args[0], re.IGNORECASE):
        options.append(args.pop(0))
    pairs = _pairs(options, allowed)
    words = first.split(None, 2 + len(options))  # `/archon`, the name, the options, then the text as typed
    inline = words[-1] if len(words) > 2 + len(options) else ""
    feedback = "\n".join(part for part in (inline.strip(), rest.strip()) if part)
    if not feedback:
        raise TriggerError(f"`/archon {name}` needs your feedback after the command.")
    models = {Role(key): _alias(value, key) for key, value in pairs.items()}
    if name is CommandName.REPLAN:
        return ReplanRequest(feedback=feedback, models=models)
    return ReviseRequest(feedback=feedback, models=models)


# --- labels ---------------------------------------------------------------------------------------


def is_archon_label(name: str | None) -> bool:
    return bool(name) and name.lower().startswith(LABEL_PREFIX)


def _label_tokens(name: str) -> list[str]:
    tokens = [t for t in TOKEN_SPLIT.split(name[len(LABEL_PREFIX) :].strip()) if t]
    if not tokens:
        raise TriggerError(f"Label `{name}` has nothing after `{LABEL_PREFIX}`.", LABEL_HELP)
    return tokens


@functools.lru_cache(maxsize=512)
def parse_label(name: str) -> RunRequest | BenchRequest | None:
    """One label on its own. None if it is not ours.

    Cached: a repository uses a handful of labels, each delivery of a labelled issue parses all of them,
    and the requests are frozen. A refused label raises every time (exceptions are not cached)."""
    if not is_archon_label(name):
        return None
    if name.strip().lower() == BENCH_LABEL:
        return BenchRequest()
    try:
        return _run_request(_label_tokens(name))
    except TriggerError as error:
        raise TriggerError(f"Label `{name}`: {error}", LABEL_HELP) from None


def request_from_labels(applied: str, on_issue: Iterable[str]) -> RunRequest | BenchRequest | None:
    """The request a newly applied label makes, combined with the issue's other `archon:` labels."""
    request = parse_label(applied)
    if not isinstance(request, RunRequest):
        return request
    models, workflow, gate = dict(request.models), request.workflow, request.gate
    filled_by: dict[str, str] = {}
    for other in on_issue:
        if other == applied or not is_archon_label(other) or other.lower() == BENCH_LABEL:
            continue
        extra = parse_label(other)
        assert isinstance(extra, RunRequest)
        workflow = _fill("workflow", workflow, extra.workflow, request.workflow, other, filled_by)
        gate = _fill("gate", gate, extra.gate, request.gate, other, filled_by)  # type: ignore[assignment]
        for role, alias in extra.models.items():
            kept = _fill(role.value, models.get(role), alias, request.models.get(role), other, filled_by)
            models[role] = kept  # type: ignore[assignment]
    return RunRequest(models=models, workflow=workflow, gate=gate)


def _fill(
    key: str, current: str | None, offered: str | None, own: str | None, label: str, filled_by: dict
) -> str | None:
    """Fill one open role from another label; two other labels disagreeing is an error."""
    if offered is None or own is not None:
        return current
    if current is not None and current != offered:
        raise TriggerError(
            f"Labels `{filled_by[key]}` and `{label}` disagree on `{key}` "
            f"(`{current}` vs `{offered}`); remove one of them.",
            LABEL_HELP,
        )
    filled_by.setdefault(key, label)
    return offered

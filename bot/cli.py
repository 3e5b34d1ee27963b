"""`archon-bot`: the command surface for operators and people at a terminal.

| command  | what it does |
| -------- | ------------ |
| serve    | the whole bot in one command: web + workers (+ an embedded Redis when REDIS_URL is unset) |
| worker   | RQ workers: one for triage only, N for runs (Procfile `worker:`) |
| labels   | create the bot's labels in a repository (never deletes or renames) |
| run      | the workflow on a local checkout or git URL, results in a folder (your own keys) |
| evaluate | the seven-dimension review of a local change (base...head) |
| bench    | the plan × implement matrix on a local checkout, report in a folder |
| demo     | the whole flow on local fakes and scripted models: no keys, no network |
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import get_args

import redis
import yaml
from github import GithubException
from pydantic import ValidationError

from bot.logs import setup_logging
from bot.providers.registry import RegistryError
from bot.repo_config import RepoConfigError
from bot.runconfig import UnknownModelError
from bot.sandbox import SandboxUnavailableError
from bot.secrets import Redactor, install, install_log_redaction, redact
from bot.settings import ConfigurationError, LogLevel, Settings, load_settings
from bot.triggers import TriggerError
from bot.workflow.schema import WorkflowError
from bot.workspace import WorkspaceError

log = logging.getLogger("archon-bot")

#: Mistakes a user can make: settings and `.env` values, paths and files, model aliases, a repository's
#: `archon.yml` or workflows, git, Redis or GitHub refusing. Each is one line on stderr and exit 2; any
#: other exception is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValidationError,
    ConfigurationError,
    RepoConfigError,
    RegistryError,
    UnknownModelError,
    WorkflowError,
    TriggerError,
    WorkspaceError,
    SandboxUnavailableError,
    OSError,
    subprocess.CalledProcessError,
    yaml.YAMLError,
    redis.RedisError,
    GithubException,
)
USAGE_ERROR = 2
LOG_LEVELS = get_args(get_args(LogLevel)[0])
ERROR_LINE = "archon-bot: error: {message}"
DEBUG_HINT = " (run with --debug for the traceback)"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in every option's help (except unset ones), and examples (epilogs) kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False) or action.help is None:
            return action.help
        return super()._get_help_string(action)


def _common() -> argparse.ArgumentParser:
    """Options every subcommand accepts too (`archon-bot run … --debug`); SUPPRESS keeps a subcommand
    from overwriting what was given before it."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return common


def _add(sub: argparse._SubParsersAction, name: str, help_: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=f"example:\n  {example}",
        formatter_class=_HelpFormatter,
        parents=[_common()],
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archon-bot",
        description="Archon Bot: plan strong, implement cheap.",
        epilog="examples:\n  archon-bot demo\n  archon-bot run --help",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="log level (default: LOG_LEVEL from the settings, INFO)",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = _add(sub, "serve", "web + workers (+ embedded Redis when REDIS_URL is unset)", "archon-bot serve")
    serve.add_argument("--host", default="127.0.0.1", help="address the web server binds")
    serve.add_argument("--port", type=int, help="port the web server binds (default: PORT, 3000)")
    serve.add_argument("--run-workers", type=int, default=1, help="run workers beside the triage worker")

    worker = _add(sub, "worker", "RQ workers: triage and runs", "archon-bot worker --run-workers 2")
    worker.add_argument("--queues", help="run ONE worker on these comma-separated queues (no supervisor)")
    worker.add_argument("--run-workers", type=int, default=1, help="run workers beside the triage worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    labels = _add(sub, "labels", "create the bot's labels in OWNER/REPO", "archon-bot labels octo/sample")
    labels.add_argument("repo", metavar="OWNER/REPO", help="the repository (the App must be installed on it)")

    run = _add(
        sub,
        "run",
        "run a workflow on a local checkout or git URL, without a webhook",
        "archon-bot run --repo . --issue-file issue.md --plan opus --impl kimi",
    )
    run.add_argument("--repo", required=True, metavar="PATH_OR_URL", help="local checkout or git URL")
    run.add_argument(
        "--issue", type=int, help="issue number (fetched from GitHub with the App's credentials)"
    )
    run.add_argument("--issue-file", type=Path, help="markdown file: title on the first line, then the body")
    for role in ("plan", "impl", "explore", "eval"):
        run.add_argument(f"--{role}", metavar="MODEL", help=f"model alias for {role} (default from settings)")
    run.add_argument("--workflow", help="workflow name (default fix-issue)")
    run.add_argument("--out", type=Path, default=Path("archon-runs"), help="folder for the results")

    evaluate = _add(
        sub,
        "evaluate",
        "score a local change (base...head) on the seven-dimension rubric",
        "archon-bot evaluate --base origin/main --head my-fix --eval opus",
    )
    evaluate.add_argument("--repo", type=Path, default=Path("."), metavar="PATH", help="local checkout")
    evaluate.add_argument(
        "--base", required=True, metavar="BRANCH", help="the branch the change is on top of"
    )
    evaluate.add_argument("--head", required=True, metavar="BRANCH", help="the branch with the change")
    evaluate.add_argument("--eval", default="", metavar="M[,M]", help="judge model(s); several make a panel")
    evaluate.add_argument("--plan-file", type=Path, help="the plan the change followed (scores fidelity)")
    evaluate.add_argument("--out", type=Path, default=Path("archon-evaluation"), help="folder for the review")

    bench = _add(
        sub,
        "bench",
        "the plan × implement matrix on a local checkout or git URL",
        "archon-bot bench --repo . --issue-files a.md,b.md --plan opus,kimi --impl kimi",
    )
    bench.add_argument("--repo", required=True, metavar="PATH_OR_URL", help="local checkout or git URL")
    bench.add_argument(
        "--issue-files",
        required=True,
        metavar="FILE[,FILE]",
        help="markdown issues (title on the first line), numbered 1, 2, … in the report",
    )
    bench.add_argument("--plan", default="opus,kimi", metavar="M[,M]", help="planning models")
    bench.add_argument("--impl", default="opus,kimi", metavar="M[,M]", help="implementing models")
    bench.add_argument("--repeat", type=int, default=1, help="runs per cell")
    bench.add_argument("--eval", default="", metavar="M[,M]", help="the fixed judge(s)")
    bench.add_argument("--explore", help="the exploration model (one exploration per issue)")
    bench.add_argument("--max-usd", type=float, help="refuse when the estimate is above this")
    bench.add_argument("--out", type=Path, default=Path("archon-bench"), help="folder for the report")

    _add(
        sub,
        "demo",
        "the whole flow on local fakes and scripted models (no keys, no network)",
        "archon-bot demo",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _start(args)
        return _COMMANDS[args.command](args, settings)
    except USER_ERRORS as error:
        return _fail(error, args.debug)
    except KeyboardInterrupt:
        return 130


def _start(args: argparse.Namespace) -> Settings:
    """Settings, redaction from them, then logging: RQ's workers and their work horses are this process
    or its forks, so they inherit all three."""
    settings = _redact_secrets()
    level = args.log_level or ("DEBUG" if args.debug else settings.log_level)
    setup_logging(level, settings.log_format)
    return settings


def _redact_secrets() -> Settings:
    """Before any command runs, so not even its first log line can carry a secret from `.env`."""
    install_log_redaction()
    try:
        settings = load_settings()
    except ValidationError:
        install(Redactor.from_environ())  # a message about bad settings may still quote the environment
        raise
    install(Redactor.from_settings(settings))
    return settings


def _fail(error: BaseException, debug: bool) -> int:
    """One redacted line on stderr (the traceback first with --debug), exit status 2."""
    if debug:
        print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
    hint = "" if debug else DEBUG_HINT
    print(ERROR_LINE.format(message=error_message(error) + hint), file=sys.stderr)
    return USAGE_ERROR


def error_message(error: BaseException) -> str:
    """A user's mistake as one line, redacted; pydantic errors name the variable, never its value."""
    if isinstance(error, ValidationError):
        text = _validation_message(error)
    elif isinstance(error, OSError) and error.filename is not None:
        text = f"{error.strerror or type(error).__name__}: {error.filename}"
    elif isinstance(error, redis.RedisError):
        text = f"Redis: {error}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(redact(text).split())


def _validation_message(error: ValidationError) -> str:
    settings = error.title == Settings.__name__
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in item["loc"])
        where = where.upper() if settings else where
        parts.append(f"{where}: {item['msg']}" if where else item["msg"])
    subject = "settings (environment or .env)" if settings else error.title
    return f"invalid {subject}: " + "; ".join(parts)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from bot.worker import run_worker, supervise_workers

    if args.queues:
        return run_worker(settings, args.queues.split(","), burst=args.burst)
    return supervise_workers(settings, args.run_workers, burst=args.burst)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.serve import serve

    return serve(settings, args.host, args.port or settings.port, args.run_workers)


def _labels(args: argparse.Namespace, settings: Settings) -> int:
    from bot.github.auth import github_for_repo
    from bot.github.forge import RepoForge
    from bot.labels import label_specs

    github, _ = github_for_repo(settings, args.repo)
    created = RepoForge(github, args.repo).ensure_labels(label_specs(settings.archon_label_presets))
    print(f"{args.repo}: created {len(created)} label(s)" + "".join(f"\n  {name}" for name in created))
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.local import LocalRequest, run_local
    from bot.triggers import Role

    if args.issue is None and args.issue_file is None:
        raise ConfigurationError("give --issue N or --issue-file FILE")
    models = {
        Role(role): getattr(args, role) for role in ("plan", "impl", "explore", "eval") if getattr(args, role)
    }
    request = LocalRequest(
        repo=args.repo,
        issue=args.issue,
        issue_file=args.issue_file,
        models=models,
        workflow=args.workflow,
        out=args.out,
    )
    return run_local(request, settings)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.local import evaluate_local

    judges = [alias.strip() for alias in args.eval.split(",") if alias.strip()]
    return evaluate_local(args.repo, args.base, args.head, judges, args.plan_file, args.out, settings)


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from bot.bench.local import LocalBench, bench_local

    def aliases(text: str) -> list[str]:
        return [alias.strip() for alias in text.split(",") if alias.strip()]

    request = LocalBench(
        repo=args.repo,
        issue_files=[Path(p) for p in aliases(args.issue_files)],
        plan=aliases(args.plan),
        impl=aliases(args.impl),
        repeat=args.repeat,
        judge=aliases(args.eval),
        explore=args.explore,
        out=args.out,
        max_usd=args.max_usd,
    )
    return bench_local(request, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from bot.demo import run_demo

    return run_demo()


_COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "worker": _worker,
    "labels": _labels,
    "run": _run,
    "evaluate": _evaluate,
    "bench": _bench,
    "demo": _demo,
}

if __name__ == "__main__":
    sys.exit(main())

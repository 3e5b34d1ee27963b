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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from bot.secrets import Redactor, install, install_log_redaction
from bot.settings import ConfigurationError, load_settings

log = logging.getLogger("archon-bot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="archon-bot", description="Archon Bot: plan strong, implement cheap."
    )
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"))
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="web + workers (+ embedded Redis when REDIS_URL is unset)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    serve.add_argument("--run-workers", type=int, default=1)

    worker = sub.add_parser("worker", help="RQ workers: triage and runs")
    worker.add_argument("--queues", help="run ONE worker on these comma-separated queues (no supervisor)")
    worker.add_argument("--run-workers", type=int, default=1, help="run workers beside the triage worker")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")

    labels = sub.add_parser("labels", help="create the bot's labels in OWNER/REPO")
    labels.add_argument("repo", metavar="OWNER/REPO")

    run = sub.add_parser("run", help="run a workflow on a local checkout or git URL, without a webhook")
    run.add_argument("--repo", required=True, metavar="PATH_OR_URL")
    run.add_argument(
        "--issue", type=int, help="issue number (fetched from GitHub with the App's credentials)"
    )
    run.add_argument("--issue-file", type=Path, help="markdown file: title on the first line, then the body")
    for role in ("plan", "impl", "explore", "eval"):
        run.add_argument(f"--{role}", metavar="MODEL", help=f"model alias for {role} (default from settings)")
    run.add_argument("--workflow", help="workflow name (default fix-issue)")
    run.add_argument("--out", type=Path, default=Path("archon-runs"), help="folder for the results")

    evaluate = sub.add_parser(
        "evaluate", help="score a local change (base...head) on the seven-dimension rubric"
    )
    evaluate.add_argument("--repo", type=Path, default=Path("."), metavar="PATH")
    evaluate.add_argument("--base", required=True, metavar="BRANCH")
    evaluate.add_argument("--head", required=True, metavar="BRANCH")
    evaluate.add_argument("--eval", default="", metavar="M[,M]", help="judge model(s); several make a panel")
    evaluate.add_argument("--plan-file", type=Path, help="the plan the change followed (scores fidelity)")
    evaluate.add_argument("--out", type=Path, default=Path("archon-evaluation"))

    bench = sub.add_parser("bench", help="the plan × implement matrix on a local checkout or git URL")
    bench.add_argument("--repo", required=True, metavar="PATH_OR_URL")
    bench.add_argument(
        "--issue-files",
        required=True,
        metavar="FILE[,FILE]",
        help="markdown issues (title on the first line), numbered 1, 2, … in the report",
    )
    bench.add_argument("--plan", default="opus,kimi", metavar="M[,M]")
    bench.add_argument("--impl", default="opus,kimi", metavar="M[,M]")
    bench.add_argument("--repeat", type=int, default=1)
    bench.add_argument("--eval", default="", metavar="M[,M]", help="the fixed judge(s)")
    bench.add_argument("--explore", help="the exploration model (one exploration per issue)")
    bench.add_argument("--max-usd", type=float, help="refuse when the estimate is above this")
    bench.add_argument("--out", type=Path, default=Path("archon-bench"))

    sub.add_parser("demo", help="the whole flow on local fakes and scripted models (no keys, no network)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    _redact_secrets()
    try:
        return _COMMANDS[args.command](args)
    except ConfigurationError as error:
        print(f"archon-bot: configuration error: {error}", file=sys.stderr)
        return 2


def _redact_secrets() -> None:
    """Before any command runs, so not even its first log line can carry a secret from `.env`; RQ's
    workers and their work horses are this process or its forks, so they inherit both."""
    install_log_redaction()
    try:
        install(Redactor.from_settings(load_settings()))
    except ValidationError:
        install(Redactor.from_environ())  # the command itself reports the invalid settings


def _worker(args: argparse.Namespace) -> int:
    from bot.worker import run_worker, supervise_workers

    settings = load_settings()
    if args.queues:
        return run_worker(settings, args.queues.split(","), burst=args.burst)
    return supervise_workers(settings, args.run_workers, burst=args.burst)


def _serve(args: argparse.Namespace) -> int:
    from bot.serve import serve

    return serve(load_settings(), args.host, args.port, args.run_workers)


def _labels(args: argparse.Namespace) -> int:
    from bot.github.auth import github_for_repo
    from bot.github.forge import RepoForge
    from bot.labels import label_specs

    settings = load_settings()
    github, _ = github_for_repo(settings, args.repo)
    created = RepoForge(github, args.repo).ensure_labels(label_specs(settings.archon_label_presets))
    print(f"{args.repo}: created {len(created)} label(s)" + "".join(f"\n  {name}" for name in created))
    return 0


def _run(args: argparse.Namespace) -> int:
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
    return run_local(request, load_settings())


def _evaluate(args: argparse.Namespace) -> int:
    from bot.local import evaluate_local

    judges = [alias.strip() for alias in args.eval.split(",") if alias.strip()]
    return evaluate_local(args.repo, args.base, args.head, judges, args.plan_file, args.out, load_settings())


def _bench(args: argparse.Namespace) -> int:
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
    return bench_local(request, load_settings())


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


_COMMANDS = {
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

"""`archon-bot`: the command surface for operators and people at a terminal.

| command  | what it does |
| -------- | ------------ |
| serve    | the whole bot in one command: web + workers (+ an embedded Redis when REDIS_URL is unset) |
| worker   | RQ workers: one for triage only, N for runs (Procfile `worker:`) |
| labels   | create the bot's labels in a repository (never deletes or renames) |
| demo     | the front door end to end on local fakes: no keys, no network |
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

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

    sub.add_parser("demo", help="the front door end to end on local fakes (no keys, no network)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return _COMMANDS[args.command](args)
    except ConfigurationError as error:
        print(f"archon-bot: configuration error: {error}", file=sys.stderr)
        return 2


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


def _demo(args: argparse.Namespace) -> int:
    from bot.demo import run_demo

    return run_demo()


_COMMANDS = {"serve": _serve, "worker": _worker, "labels": _labels, "demo": _demo}

if __name__ == "__main__":
    sys.exit(main())

"""`archon-bot demo`: the bot end to end on this machine, with no keys and no network.

It starts what `LocalStack` starts (a private Redis, the fake GitHub, gunicorn serving the web app and an
`archon-bot worker` process), sends signed deliveries the way GitHub does, and prints what a person on
GitHub would see: reactions, the status comment and the replies. Models are not called by this version.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table

from bot.fakes.stack import LocalStack

REPO = "octo-org/hello-archon"
INSTALLATION = 1
ISSUE = 1
_comment_ids = itertools.count(9_000_001)


def _user(login: str, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**7, "type": kind}


def _base(stack: LocalStack, sender: str) -> dict[str, Any]:
    return {
        "repository": {
            "full_name": REPO,
            "name": REPO.split("/")[1],
            "owner": _user("octo-org", "Organization"),
        },
        "installation": {"id": INSTALLATION},
        "sender": _user(sender),
    }


def _issue(labels: list[str]) -> dict[str, Any]:
    return {"number": ISSUE, "title": "Add a --version flag", "labels": [{"name": n} for n in labels]}


def labeled(stack: LocalStack, label: str, sender: str) -> dict[str, Any]:
    return {**_base(stack, sender), "action": "labeled", "label": {"name": label}, "issue": _issue([label])}


def commented(stack: LocalStack, body: str, sender: str) -> dict[str, Any]:
    comment_id = stack.github.add_comment(REPO, ISSUE, body, author=sender, comment_id=next(_comment_ids))
    comment = {"id": comment_id, "body": body, "user": _user(sender), "performed_via_github_app": None}
    return {**_base(stack, sender), "action": "created", "issue": _issue([]), "comment": comment}


def installed(stack: LocalStack) -> dict[str, Any]:
    return {
        "action": "created",
        "installation": {
            "id": INSTALLATION,
            "app_id": stack.app_id,
            "account": _user("octo-org", "Organization"),
        },
        "repositories": [{"full_name": REPO, "name": REPO.split("/")[1]}],
        "sender": _user("alice"),
    }


class Demo:
    def __init__(self, stack: LocalStack, console: Console) -> None:
        self.stack, self.console = stack, console
        self.table = Table("#", "delivery", "HTTP answer", title="Deliveries sent to the webhook")
        self.count = 0

    def send(self, what: str, event: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        answer = self.stack.deliver(event, payload, **kwargs)
        self.count += 1
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        summary = body.get("jobs") or body.get("ignored") or body.get("error") or ""
        self.table.add_row(str(self.count), what, f"{answer.status_code} {summary}")
        return body

    def wait_for_comments(self, count: int, text: str | None = None, timeout: float = 30) -> None:
        gh = self.stack.github

        def ready() -> bool:
            comments = gh.comments(REPO, ISSUE)
            bot = [c for c in comments if c["user"]["login"] == gh.bot_login]
            return len(bot) >= count and (text is None or any(text in c["body"] for c in bot))

        gh.wait_for(ready, timeout=timeout)

    def show_thread(self) -> None:
        gh = self.stack.github
        self.console.rule(f"[bold]{REPO}#{ISSUE} as people see it on GitHub")
        self.console.print(f"Reactions on the issue: {gh.reactions(REPO, ISSUE) or 'none'}")
        for comment in gh.comments(REPO, ISSUE):
            login = comment["user"]["login"]
            reactions = gh.reactions(REPO, ISSUE, comment["id"])
            title = f"{login}" + (f"  (reactions: {' '.join(reactions)})" if reactions else "")
            style = "cyan" if login == gh.bot_login else "white"
            self.console.print(Panel(Markdown(_visible(comment["body"])), title=title, border_style=style))


def _visible(body: str) -> str:
    """Hidden HTML markers are invisible on GitHub; hide them here too."""
    return "\n".join(line for line in body.splitlines() if not line.startswith("<!-- archon-bot:"))


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    started = time.monotonic()
    console.rule("[bold]Archon Bot demo: local Redis, fake GitHub, real web and worker processes")
    with LocalStack() as stack:
        gh = stack.github
        gh.add_repo(REPO, installation=INSTALLATION, collaborators={"alice": "maintain", "bob": "read"})
        gh.add_issue(REPO, ISSUE, title="Add a --version flag", author="bob")
        console.print(f"web: {stack.webhook_url}   fake GitHub: {gh.api_url}   Redis: {stack.redis.url}")
        demo = Demo(stack, console)
        _script(demo, stack)
        console.print(demo.table)
        labels = ", ".join(sorted(gh.labels(REPO)))
        console.print(f"Labels created on installation: {labels}")
        demo.show_thread()
    console.print(f"Demo finished in {time.monotonic() - started:.1f}s.")
    return 0


def _script(demo: Demo, stack: LocalStack) -> None:
    gh = stack.github
    demo.send("installation.created", "installation", installed(stack))
    gh.wait_for(lambda: len(gh.labels(REPO)) >= 5)
    demo.send(
        "alice labels the issue `archon:plan-opus impl-kimi`",
        "issues",
        labeled(stack, "archon:plan-opus impl-kimi", "alice"),
        delivery="demo-label",
    )
    demo.wait_for_comments(1, "Done")
    demo.send(
        "GitHub redelivers the same delivery",
        "issues",
        labeled(stack, "archon:plan-opus impl-kimi", "alice"),
        delivery="demo-label",
    )
    demo.send(
        "a forged delivery (wrong signature)",
        "issues",
        labeled(stack, "archon:plan-opus impl-kimi", "mallory"),
        secret="forged",
    )
    demo.send(
        "alice: `/archon run plan=opus impl=gpt9`",
        "issue_comment",
        commented(stack, "/archon run plan=opus impl=gpt9", "alice"),
    )
    demo.wait_for_comments(2)
    demo.send("bob (read access): `/archon run`", "issue_comment", commented(stack, "/archon run", "bob"))
    demo.wait_for_comments(3)
    demo.send("bob: `/archon status`", "issue_comment", commented(stack, "/archon status", "bob"))
    demo.wait_for_comments(4)

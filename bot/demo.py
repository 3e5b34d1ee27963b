"""`archon-bot demo`: the whole product on this machine, with no keys and no network.

It builds the sample repository (a real bug and a failing test) as a local bare remote, starts what
`LocalStack` starts (a private Redis, the fake GitHub, gunicorn serving the web app, an `archon-bot
worker` process), sends a signed `issues.labeled` delivery the way GitHub does, and shows what people
would see on GitHub: the status comment as it changes, the plan comment, the draft pull request and its
diff, and the tests passing on the pushed branch. The model replies are scripted — said plainly, and
every ledger entry is labelled `scripted:` — but everything around them is the real bot.
"""

from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markdown import Markdown
from rich.panel import Panel
from rich.syntax import Syntax

from bot import sample_repo
from bot.fakes.stack import LocalStack
from bot.sandbox import Sandbox
from bot.workspace import DIFF_OPTIONS, git_text, network_config, run_git

REPO = sample_repo.REPO
INSTALLATION = 1
ISSUE = 1
LABEL = "archon:plan-opus impl-kimi"
SCRIPTED_NOTE = (
    "The model replies in this demo are [bold]scripted[/] (bot/providers/scripts/demo-*.jsonl), priced like "
    "the models they stand in for. Everything else is the real bot: webhook, queue, worker, workflow "
    "engine, git worktree, tools, validation, GitHub API calls."
)


def _user(login: str, kind: str = "User") -> dict[str, Any]:
    return {"login": login, "id": sum(map(ord, login)) * 7919, "type": kind}


def _repository() -> dict[str, Any]:
    return {"full_name": REPO, "name": REPO.split("/")[1], "owner": _user("octo-org", "Organization")}


def labeled(label: str, sender: str) -> dict[str, Any]:
    issue = {"number": ISSUE, "title": sample_repo.ISSUE_TITLE, "labels": [{"name": label}]}
    return {
        "action": "labeled",
        "label": {"name": label},
        "issue": issue,
        "repository": _repository(),
        "installation": {"id": INSTALLATION},
        "sender": _user(sender),
    }


def installed(app_id: int) -> dict[str, Any]:
    return {
        "action": "created",
        "installation": {"id": INSTALLATION, "app_id": app_id, "account": _user("octo-org", "Organization")},
        "repositories": [{"full_name": REPO, "name": REPO.split("/")[1]}],
        "sender": _user("alice"),
    }


def _visible(body: str) -> str:
    """Hidden HTML markers are invisible on GitHub; hide them here too."""
    return "\n".join(line for line in body.splitlines() if not line.startswith("<!-- archon-bot:"))


class Demo:
    def __init__(self, stack: LocalStack, console: Console) -> None:
        self.stack, self.console, self.github = stack, console, stack.github

    def bot_comments(self, kind: str) -> list[dict[str, Any]]:
        return [c for c in self.github.comments(REPO, ISSUE) if f"archon-bot:{kind}:" in c["body"]]

    def send(self, what: str, event: str, payload: dict[str, Any], **kwargs: Any) -> None:
        answer = self.stack.deliver(event, payload, **kwargs)
        body = answer.json() if answer.headers.get("content-type", "").startswith("application/json") else {}
        detail = body.get("jobs") or body.get("ignored") or body.get("error") or ""
        self.console.print(f"→ {what}: [bold]HTTP {answer.status_code}[/] {detail}")

    def follow_status(self, timeout: float = 120) -> str:
        """Print each node as it changes state, until the run is done or failed."""
        seen: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.bot_comments("status")
            body = status[0]["body"] if status else ""
            for icon, node, rest in re.findall(
                r"^\| (\S+) \| ([\w-]+)(?: ×\d+)? \| (.*)$", body, re.MULTILINE
            ):
                if seen.get(node) != icon:
                    seen[node] = icon
                    self.console.print(f"  {icon} {node:<12} {rest.replace('|', ' ').strip()}")
            if "**Done**" in body or "**Failed**" in body or "Waiting for approval" in body:
                return body
            time.sleep(0.2)
        raise TimeoutError("the run did not finish in time; see the worker log above")

    def show_comment(self, title: str, comment: dict[str, Any], style: str = "cyan") -> None:
        self.console.print(Panel(Markdown(_visible(comment["body"])), title=title, border_style=style))

    def show_pull_request(self) -> dict[str, Any]:
        [pull] = self.github.pulls(REPO)
        self.console.rule(f"[bold]Draft pull request #{pull['number']}: {pull['title']}")
        self.console.print(Markdown(_visible(pull["body"]).split("<details>")[0]))
        remote = self.stack.remotes / f"{REPO}.git"
        diff = git_text(
            ["--git-dir", str(remote), "diff", *DIFF_OPTIONS, "main", pull["head"]["ref"]], cwd=remote
        )
        self.console.print(Syntax(diff, "diff", theme="ansi_dark"))
        return pull

    def run_tests_on_branch(self, branch: str) -> bool:
        """Clone the pushed branch and run the sample's tests: they failed on `main`."""
        with tempfile.TemporaryDirectory() as tmp:
            clone = Path(tmp) / "clone"
            remote = self.stack.remotes / f"{REPO}.git"
            args = [*network_config(str(remote)), "clone", "-q", "-b", branch, str(remote), str(clone)]
            run_git(args, cwd=Path(tmp))
            # The branch's code is repository code: it runs through the one sandboxed runner too.
            tests = Sandbox().run(sample_repo.VALIDATE, root=clone, timeout_s=300)
        self.console.print(f"$ {sample_repo.VALIDATE}   (on {branch})")
        self.console.print(tests.output.decode(errors="replace").strip())
        return tests.exit_code == 0


def run_demo(console: Console | None = None) -> int:
    console = console or Console()
    started = time.monotonic()
    console.rule("[bold]Archon Bot demo")
    console.print(SCRIPTED_NOTE)
    with LocalStack() as stack:
        stack.add_sample_repo(
            REPO, installation=INSTALLATION, collaborators={"alice": "maintain", "bob": "read"}
        )
        console.print(
            f"web {stack.webhook_url} · fake GitHub {stack.github.api_url} · Redis {stack.redis.url}"
        )
        demo = Demo(stack, console)
        passed = _script(demo, stack)
    console.print(f"Demo finished in {time.monotonic() - started:.1f}s.")
    return 0 if passed else 1


def _script(demo: Demo, stack: LocalStack) -> bool:
    console, github = demo.console, demo.github
    console.rule("[bold]1. The app is installed: its labels appear")
    demo.send("installation.created", "installation", installed(stack.app_id))
    github.wait_for(lambda: len(github.labels(REPO)) >= 5)
    console.print(", ".join(sorted(github.labels(REPO))))
    console.rule(f"[bold]2. alice labels issue #{ISSUE} `{LABEL}`")
    console.print(f"[italic]{sample_repo.ISSUE_TITLE}[/]: {sample_repo.ISSUE_BODY}")
    demo.send("signed issues.labeled delivery", "issues", labeled(LABEL, "alice"), delivery="demo-label")
    demo.send("GitHub redelivers it", "issues", labeled(LABEL, "alice"), delivery="demo-label")
    demo.send("a forged delivery", "issues", labeled(LABEL, "mallory"), secret="not-the-secret")
    demo.send("bob (read access) labels it too", "issues", labeled(LABEL, "bob"))
    console.rule("[bold]3. The run, node by node (the status comment, edited in place)")
    final = demo.follow_status()
    [plan] = demo.bot_comments("plan")
    demo.show_comment("The plan comment", plan)
    demo.show_comment("The status comment", {"body": final}, style="green")
    refusal = [c for c in github.comments(REPO, ISSUE) if "@bob sorry" in c["body"]]
    if refusal:
        demo.show_comment("The reply to bob", refusal[0], style="yellow")
    if "**Done**" not in final:
        console.print("[red]The run did not finish; the status comment above says why.[/]")
        return False
    pull = demo.show_pull_request()
    for review in github.reviews(REPO, pull["number"]):
        demo.show_comment(
            "The evaluation, posted as a pull-request review (scripted judge)", review, style="magenta"
        )
        for comment in review["comments"]:
            console.print(f"  inline on {comment['path']}:{comment['line']}: {comment['body']}")
    console.rule("[bold]4. The test that failed on main, on the pushed branch")
    passed = demo.run_tests_on_branch(pull["head"]["ref"])
    console.print("[green]Tests pass.[/]" if passed else "[red]Tests fail.[/]")
    return passed

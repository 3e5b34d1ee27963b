"""The agent's tools against a real git worktree: happy paths, every model mistake, confinement, the shell."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from bot.agent.tools import (
    ALL,
    MAX_RUN_TIMEOUT_S,
    MAX_SEARCH_FILE_BYTES,
    MAX_SEARCH_MATCHES,
    READ_ONLY,
    EditFileArgs,
    ReadFileArgs,
    Toolbox,
    ToolResult,
)
from bot.secrets import REDACTED


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "README.md").write_text("# Demo\nhello world\n")
    (root / "src").mkdir()
    (root / "src" / "app.py").write_text("def main():\n    return 'hello'\n")
    (root / "docs").mkdir()
    (root / "docs" / "guide.txt").write_text("hello from the guide\n")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside.txt"
    secret.write_text("outside secret\n")
    return secret


@pytest.fixture
def box(repo: Path) -> Toolbox:
    return Toolbox(repo, ALL)


def call(box: Toolbox, name: str, **arguments: Any) -> ToolResult:
    """Send arguments the way a model does: as a JSON string."""
    return box.call(name, json.dumps(arguments))


def ok(box: Toolbox, name: str, **arguments: Any) -> str:
    result = call(box, name, **arguments)
    assert not result.is_error, result.content
    return result.content


def err(box: Toolbox, name: str, **arguments: Any) -> str:
    result = call(box, name, **arguments)
    assert result.is_error, result.content
    return result.content


# --- Schemas


def test_specs_are_derived_from_the_pydantic_models(box: Toolbox) -> None:
    specs = {spec.name: spec for spec in box.specs()}
    assert list(specs) == list(ALL)
    read = specs["read_file"]
    assert read.parameters["required"] == ["path"]
    assert set(read.parameters["properties"]) == set(ReadFileArgs.model_fields)
    assert read.parameters["additionalProperties"] is False
    assert read.parameters["properties"]["offset"]["description"]
    assert "line numbers" in read.description and "\n" not in read.description
    assert specs["edit_file"].parameters["required"] == ["path", "old_string", "new_string"]
    assert specs["run"].parameters["properties"]["timeout_s"]["anyOf"][0]["maximum"] == MAX_RUN_TIMEOUT_S


def test_provider_formats(box: Toolbox) -> None:
    spec = box.specs()[0]
    assert spec.to_anthropic() == {
        "name": "list_dir",
        "description": spec.description,
        "input_schema": spec.parameters,
    }
    assert spec.to_openai() == {
        "type": "function",
        "function": {"name": "list_dir", "description": spec.description, "parameters": spec.parameters},
    }


def test_read_only_toolbox_offers_only_read_tools(repo: Path) -> None:
    box = Toolbox(repo, READ_ONLY)
    assert [spec.name for spec in box.specs()] == ["list_dir", "read_file", "search"]
    message = err(box, "write_file", path="x.txt", content="x")
    assert "not available in this step" in message and "list_dir, read_file, search" in message
    assert not (repo / "x.txt").exists()


def test_unknown_allowed_tool_is_a_configuration_error(repo: Path) -> None:
    with pytest.raises(ValueError, match="delete_repo"):
        Toolbox(repo, [*READ_ONLY, "delete_repo"])


# --- Model mistakes never raise


def test_malformed_json_arguments(box: Toolbox) -> None:
    result = box.call("read_file", '{"path": "README.md"')
    assert result.is_error
    assert "not valid JSON" in result.content and "path (required)" in result.content


def test_arguments_must_be_an_object(box: Toolbox) -> None:
    result = box.call("read_file", '["README.md"]')
    assert result.is_error and "must be a JSON object" in result.content


def test_unknown_tool(box: Toolbox) -> None:
    result = box.call("delete_everything", "{}")
    assert result.is_error
    assert "unknown tool 'delete_everything'" in result.content and "edit_file" in result.content


def test_validation_error_lists_problems_and_valid_fields(box: Toolbox) -> None:
    message = err(box, "read_file", file="README.md", offset=0)
    assert "- path: Field required" in message
    assert "- file: Extra inputs are not permitted" in message
    assert "- offset: Input should be greater than or equal to 1" in message
    assert "Valid fields: path (required), offset, limit." in message


def test_run_timeout_above_maximum_is_rejected(box: Toolbox) -> None:
    message = err(box, "run", command="true", timeout_s=MAX_RUN_TIMEOUT_S + 1)
    assert "timeout_s" in message and str(MAX_RUN_TIMEOUT_S) in message


def test_empty_arguments_and_dicts_are_accepted(box: Toolbox) -> None:
    assert "README.md" in box.call("list_dir", "").content
    assert box.call("read_file", {"path": "README.md"}).content == "     1\t# Demo\n     2\thello world"


def test_os_errors_become_tool_errors(box: Toolbox) -> None:
    message = err(box, "write_file", path="README.md/inner.txt", content="x")
    assert "write_file failed" in message and "README.md" in message


# --- Confinement

FILE_CALLS = [
    ("read_file", {}),
    ("list_dir", {}),
    ("search", {"pattern": "secret"}),
    ("write_file", {"content": "pwned"}),
    ("edit_file", {"old_string": "secret", "new_string": "pwned"}),
]


@pytest.mark.parametrize(("name", "extra"), FILE_CALLS)
def test_dotdot_escape_is_refused(box: Toolbox, outside: Path, name: str, extra: dict) -> None:
    message = err(box, name, path="src/../../outside.txt", **extra)
    assert "outside the repository" in message
    assert outside.read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "extra"), FILE_CALLS)
def test_absolute_path_outside_is_refused(box: Toolbox, outside: Path, name: str, extra: dict) -> None:
    assert "outside the repository" in err(box, name, path=str(outside), **extra)
    assert outside.read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "extra"), FILE_CALLS)
def test_symlink_escape_is_refused(box: Toolbox, repo: Path, outside: Path, name: str, extra: dict) -> None:
    (repo / "link.txt").symlink_to(outside)
    (repo / "linkdir").symlink_to(outside.parent, target_is_directory=True)
    assert "outside the repository" in err(box, name, path="link.txt", **extra)
    assert "outside the repository" in err(box, name, path="linkdir/outside.txt", **extra)
    assert outside.read_text() == "outside secret\n"


@pytest.mark.parametrize(("name", "extra"), FILE_CALLS)
def test_git_directory_is_refused(box: Toolbox, repo: Path, name: str, extra: dict) -> None:
    config = (repo / ".git" / "config").read_text()
    for path in (".git/config", ".git", "src/../.git/config"):
        assert "inside .git" in err(box, name, path=path, **extra)
    (repo / "sneaky").symlink_to(repo / ".git")
    assert "inside .git" in err(box, name, path="sneaky/config", **extra)
    assert (repo / ".git" / "config").read_text() == config


def test_git_file_of_a_worktree_is_refused(tmp_path: Path, repo: Path) -> None:
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"],
        check=True,
    )
    worktree = tmp_path / "wt"
    subprocess.run(["git", "-C", str(repo), "worktree", "add", "-q", str(worktree)], check=True)
    assert (worktree / ".git").is_file()
    box = Toolbox(worktree, ALL)
    assert "inside .git" in err(box, "read_file", path=".git")
    assert "inside .git" in err(box, "write_file", path=".git", content="gitdir: /tmp/evil")
    assert ".git" not in ok(box, "list_dir").split("\n")
    assert ok(box, "search", pattern="gitdir") == "no matches for 'gitdir' in ."


def test_absolute_path_inside_is_allowed(box: Toolbox, repo: Path) -> None:
    assert "hello world" in ok(box, "read_file", path=str(repo / "README.md"))


def test_symlink_inside_the_repository_is_followed(box: Toolbox, repo: Path) -> None:
    (repo / "alias.md").symlink_to(repo / "README.md")
    assert "hello world" in ok(box, "read_file", path="alias.md")


# --- list_dir


def test_list_dir_sorted_with_directory_slashes_and_no_git(box: Toolbox) -> None:
    assert ok(box, "list_dir").split("\n") == ["README.md", "docs/", "src/"]
    assert ok(box, "list_dir", path="src") == "app.py"


def test_list_dir_errors(box: Toolbox, repo: Path) -> None:
    assert "directory not found: nope" in err(box, "list_dir", path="nope")
    assert "is a file, not a directory; use read_file" in err(box, "list_dir", path="README.md")
    (repo / "empty").mkdir()
    assert ok(box, "list_dir", path="empty") == "empty is an empty directory"


def test_list_dir_is_capped(box: Toolbox, repo: Path) -> None:
    many = repo / "many"
    many.mkdir()
    for i in range(1005):
        (many / f"f{i:04}").touch()
    lines = ok(box, "list_dir", path="many").split("\n")
    assert lines[0] == "f0000" and lines[999] == "f0999"
    assert lines[-1] == "[... 5 more entries not shown]"


# --- read_file


def test_read_file_pages_with_a_continuation_note(box: Toolbox, repo: Path) -> None:
    (repo / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 1001)))
    first = ok(box, "read_file", path="long.txt").split("\n")
    assert first[0] == "     1\tline 1" and first[399] == "   400\tline 400"
    assert first[-1] == "[... 600 more lines; call read_file with offset=401 to continue]"
    page = ok(box, "read_file", path="long.txt", offset=990, limit=5).split("\n")
    assert page[0] == "   990\tline 990" and page[4] == "   994\tline 994"
    assert page[-1] == "[... 6 more lines; call read_file with offset=995 to continue]"
    tail = ok(box, "read_file", path="long.txt", offset=995)
    assert tail.endswith("  1000\tline 1000")


def test_read_file_respects_the_character_budget(repo: Path) -> None:
    box = Toolbox(repo, ALL, max_output_chars=2000)
    (repo / "wide.txt").write_text("".join(f"{i:03} " + "x" * 96 + "\n" for i in range(1, 101)))
    content = ok(box, "read_file", path="wide.txt")
    assert len(content) <= 2000
    last_number = int(content.split("\n")[-2].split("\t")[0])
    assert content.endswith(f"call read_file with offset={last_number + 1} to continue]")
    assert f"[... {100 - last_number} more lines;" in content


def test_read_file_errors(box: Toolbox, repo: Path) -> None:
    assert "file not found: missing.py" in err(box, "read_file", path="missing.py")
    assert "src is a directory" in err(box, "read_file", path="src")
    (repo / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0")
    assert "binary file" in err(box, "read_file", path="logo.png")
    assert "past the end of README.md, which has 2 lines" in err(box, "read_file", path="README.md", offset=3)
    (repo / "empty.txt").write_text("")
    assert ok(box, "read_file", path="empty.txt") == "empty.txt is empty"


def test_long_lines_are_clipped(box: Toolbox, repo: Path) -> None:
    (repo / "min.js").write_text("a" * 5000 + "\n")
    content = ok(box, "read_file", path="min.js")
    assert content.endswith(" [... line truncated]") and len(content) < 2100


# --- search


def test_search_reports_path_line_and_text(box: Toolbox) -> None:
    assert ok(box, "search", pattern=r"hel+o").split("\n") == [
        "README.md:2: hello world",
        "docs/guide.txt:1: hello from the guide",
        "src/app.py:2:     return 'hello'",
    ]


def test_search_filters_by_path_and_glob(box: Toolbox) -> None:
    assert ok(box, "search", pattern="hello", path="docs") == "docs/guide.txt:1: hello from the guide"
    assert ok(box, "search", pattern="hello", glob="*.py") == "src/app.py:2:     return 'hello'"
    assert ok(box, "search", pattern="hello", glob="src/*") == "src/app.py:2:     return 'hello'"
    assert ok(box, "search", pattern="hello", path="README.md") == "README.md:2: hello world"
    assert ok(box, "search", pattern="nothing") == "no matches for 'nothing' in ."


def test_search_skips_git_binary_large_and_escaping_files(box: Toolbox, repo: Path, outside: Path) -> None:
    (repo / ".git" / "needle").write_text("needle\n")
    (repo / "blob.bin").write_bytes(b"needle\0\0")
    (repo / "huge.txt").write_text("needle\n" + "x" * MAX_SEARCH_FILE_BYTES)
    outside.write_text("needle\n")
    (repo / "escape.txt").symlink_to(outside)
    (repo / "real.txt").write_text("a needle\n")
    assert ok(box, "search", pattern="needle") == "real.txt:1: a needle"


def test_search_errors(box: Toolbox) -> None:
    assert "invalid regular expression '('" in err(box, "search", pattern="(")
    assert "path not found: nowhere" in err(box, "search", pattern="x", path="nowhere")


def test_search_is_capped(box: Toolbox, repo: Path) -> None:
    (repo / "many.txt").write_text("match\n" * (MAX_SEARCH_MATCHES + 50))
    lines = ok(box, "search", pattern="match").split("\n")
    assert len(lines) == MAX_SEARCH_MATCHES + 1
    assert lines[-1] == f"[... stopped after {MAX_SEARCH_MATCHES} matches; narrow the pattern, path or glob]"


# --- write_file and edit_file


def test_write_file_creates_parents_and_counts_bytes(box: Toolbox, repo: Path) -> None:
    assert ok(box, "write_file", path="new/deep/file.txt", content="héllo\n") == (
        "wrote 7 bytes to new/deep/file.txt"
    )
    assert (repo / "new" / "deep" / "file.txt").read_text() == "héllo\n"
    assert "is a directory" in err(box, "write_file", path="src", content="x")


def test_edit_file_replaces_a_unique_occurrence(box: Toolbox, repo: Path) -> None:
    assert ok(box, "edit_file", path="src/app.py", old_string="'hello'", new_string="'bye'") == (
        "replaced 1 occurrence in src/app.py (line 2, applied exactly)"
    )
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 'bye'\n"


def test_edit_file_errors(box: Toolbox, repo: Path) -> None:
    message = err(box, "edit_file", path="src/app.py", old_string="return 'hi'", new_string="x")
    assert "old_string not found in src/app.py" in message
    assert "closest text in src/app.py is at lines 2-2" in message and "     2\t    return 'hello'" in message
    message = err(box, "edit_file", path="src/app.py", old_string="zzzzzzzzzzzz", new_string="x")
    assert "Nothing in src/app.py resembles it" in message and "read_file" in message
    (repo / "dup.txt").write_text("x = 1\nx = 1\nx = 1\n")
    message = err(box, "edit_file", path="dup.txt", old_string="x = 1", new_string="x = 2")
    assert "occurs 3 times" in message and "replace_all" in message
    assert (repo / "dup.txt").read_text() == "x = 1\nx = 1\nx = 1\n"
    assert "identical" in err(box, "edit_file", path="dup.txt", old_string="x", new_string="x")
    assert "file not found" in err(box, "edit_file", path="nope.txt", old_string="a", new_string="b")
    assert "old_string" in err(box, "edit_file", path="dup.txt", old_string="", new_string="b")


def test_edit_file_replace_all(box: Toolbox, repo: Path) -> None:
    (repo / "dup.txt").write_text("x = 1\nx = 1\nx = 1\n")
    args = {"path": "dup.txt", "old_string": "x = 1", "new_string": "x = 2", "replace_all": True}
    assert ok(box, "edit_file", **args) == "replaced 3 occurrences in dup.txt (line 1, applied exactly)"
    assert (repo / "dup.txt").read_text() == "x = 2\nx = 2\nx = 2\n"
    assert set(EditFileArgs.model_fields) == set(args)


def test_edit_file_keeps_crlf_line_endings(box: Toolbox, repo: Path) -> None:
    (repo / "win.txt").write_bytes(b"one\r\ntwo\r\n")
    ok(box, "edit_file", path="win.txt", old_string="two", new_string="three")
    assert (repo / "win.txt").read_bytes() == b"one\r\nthree\r\n"


# --- run


def test_run_reports_combined_output_and_exit_code(box: Toolbox) -> None:
    assert ok(box, "run", command="echo out; echo err >&2; exit 3") == "out\nerr\nexit code: 3"
    assert ok(box, "run", command="true") == "(no output)\nexit code: 0"


def test_run_works_in_the_worktree(box: Toolbox, repo: Path) -> None:
    assert ok(box, "run", command="pwd; git rev-parse --show-toplevel") == f"{repo}\n{repo}\nexit code: 0"


def test_run_timeout_kills_the_process_group(box: Toolbox, repo: Path) -> None:
    token = _token()
    message = err(box, "run", command=f"echo started; sleep {token} & sleep {token}", timeout_s=1)
    assert "timed out after 1s" in message and "started" in message
    assert _running(token) == []  # the background sleep too, although it left nothing to wait for


def test_run_kills_stragglers_after_a_normal_exit(box: Toolbox, repo: Path) -> None:
    token = _token()
    content = ok(box, "run", command=f"sleep {token} >/dev/null 2>&1 & setsid sleep {token} & true")
    assert content == "(no output)\nexit code: 0"
    assert _running(token) == []


def test_run_environment_is_scrubbed(box: Toolbox, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "MOONSHOT_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, f"value-of-{name.lower()}")
    env = ok(box, "run", command="env")
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN", "MOONSHOT_API_KEY", "OPENAI_API_KEY", "value-of-"):
        assert name not in env
    names = {line.split("=", 1)[0] for line in env.split("\n") if "=" in line}
    assert "PATH" in names
    home = next(line.split("=", 1)[1] for line in env.split("\n") if line.startswith("HOME="))
    assert home != os.environ.get("HOME") and not Path(home).exists()  # private, and removed afterwards


def test_secret_looking_names_cannot_be_allowlisted(repo: Path) -> None:
    with pytest.raises(ValueError, match="GITHUB_TOKEN"):
        Toolbox(repo, ALL, env_allowlist=["PATH", "GITHUB_TOKEN"])


def test_run_output_keeps_head_and_tail(repo: Path) -> None:
    box = Toolbox(repo, ALL, max_output_chars=1000)
    content = ok(box, "run", command="echo FIRST; seq 1 5000; echo LAST")
    assert len(content) <= 1000
    assert content.startswith("FIRST\n") and content.endswith("LAST\nexit code: 0")
    assert "characters omitted" in content


# --- Secrets never appear in results


def test_secret_values_are_redacted_from_every_result(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_supersecret123")
    box = Toolbox(repo, ALL, secrets=["minted-installation-token"])
    (repo / "leak.txt").write_text("token ghs_supersecret123 and minted-installation-token\n")
    content = ok(box, "read_file", path="leak.txt")
    assert "ghs_supersecret123" not in content and "minted-installation-token" not in content
    assert content.count(REDACTED) == 2
    assert "ghs_supersecret123" not in ok(box, "search", pattern="ghs_")
    assert "minted" not in ok(box, "run", command="cat leak.txt")


def _token() -> str:
    """A `sleep` argument no other process has, so the test can find its processes in the host's /proc
    (inside the sandbox's PID namespace a command's own PIDs mean nothing outside)."""
    return f"{300 + os.getpid() % 100}.{time.time_ns() % 10**9:09d}"


def _running(token: str) -> list[int]:
    """Live (not zombie) processes on this machine whose command line holds `token`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if token in cmdline and _alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for its new parent to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_a_command_dies_with_the_process_that_started_it(tmp_path) -> None:
    """A job killed mid-command (cancel, a dead worker) must not leave the command running."""
    import sys

    token = _token()
    (tmp_path / "wt").mkdir()
    starter = (
        "from bot.agent.tools import Toolbox\n"
        f"Toolbox({str(tmp_path / 'wt')!r}, ['run']).execute('echo up > up; setsid sleep {token} & "
        f"exec sleep {token}', 60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter])
    _wait_for(lambda: (tmp_path / "wt" / "up").exists() and _running(token) != [])
    parent.kill()
    parent.wait()
    _wait_for(lambda: _running(token) == [])


def _wait_for(condition, limit_s: float = 60) -> None:
    """Poll generously: a loaded machine is slow, and only a condition never met fails the test."""
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


# --- forgiving edits and multi_edit (the matching rules themselves: tests/test_edits.py)


def test_edit_file_says_which_rule_matched(box: Toolbox, repo: Path) -> None:
    numbered = box.call("read_file", json.dumps({"path": "src/app.py"})).content
    result = call(
        box, "edit_file", path="src/app.py", old_string=numbered, new_string=numbered.replace("hello", "bye")
    )
    assert not result.is_error, result.content
    assert result.content == (
        "replaced 1 occurrence in src/app.py (line 1, applied by rule: line-number prefixes stripped)"
    )
    assert result.edits == ("line_numbers",)
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 'bye'\n"
    result = call(
        box, "edit_file", path="src/app.py", old_string="\treturn 'bye'", new_string="\treturn 'ok'"
    )
    assert result.edits == ("indentation",) and "indentation ignored" in result.content
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 'ok'\n"
    assert call(box, "edit_file", path="src/app.py", old_string="'ok'", new_string="'k'").edits == ("exact",)


def test_forgiving_edits_can_be_turned_off(repo: Path) -> None:
    strict = Toolbox(repo, ALL, forgiving_edits=False)
    result = call(strict, "edit_file", path="src/app.py", old_string="\treturn 'hello'", new_string="x")
    assert result.is_error and result.edits == ("refused",)
    assert "forgiven" not in result.content and "closest text" in result.content
    assert (repo / "src" / "app.py").read_text() == "def main():\n    return 'hello'\n"


def test_an_ambiguous_loose_match_is_refused(box: Toolbox, repo: Path) -> None:
    (repo / "two.py").write_text("def a():\n    x = 1\n\ndef b():\n        x = 1\n")
    result = call(box, "edit_file", path="two.py", old_string="\tx = 1\n", new_string="\tx = 2\n")
    assert result.is_error and result.edits == ("refused",)
    assert "matches 2 places by rule indentation (lines 2, 5)" in result.content
    assert (repo / "two.py").read_text() == "def a():\n    x = 1\n\ndef b():\n        x = 1\n"


def test_multi_edit_applies_every_edit_in_order(box: Toolbox, repo: Path) -> None:
    edits = [
        {"old_string": "def main():", "new_string": "def main(name):"},
        {"old_string": "return 'hello'", "new_string": "return 'hello ' + name"},
        {"old_string": "\treturn 'hello ' + name\n", "new_string": "\tprint(name)\n\treturn name\n"},
    ]
    result = call(box, "multi_edit", path="src/app.py", edits=edits)
    assert not result.is_error, result.content
    assert result.edits == ("exact", "exact", "indentation")
    assert result.content.splitlines() == [
        "applied 3 edits to src/app.py",
        "edit 1: replaced 1 occurrence (line 1, applied exactly)",
        "edit 2: replaced 1 occurrence (line 2, applied exactly)",
        "edit 3: replaced 1 occurrence (line 2, applied by rule: indentation ignored, "
        "new_string re-indented)",
    ]
    assert (repo / "src" / "app.py").read_text() == "def main(name):\n    print(name)\n    return name\n"


def test_multi_edit_is_all_or_nothing(box: Toolbox, repo: Path) -> None:
    before = (repo / "src" / "app.py").read_bytes()
    edits = [
        {"old_string": "def main():", "new_string": "def start():"},
        {"old_string": "def main():", "new_string": "def again():"},  # gone after edit 1
    ]
    result = call(box, "multi_edit", path="src/app.py", edits=edits)
    assert result.is_error and result.edits == ("refused",)
    assert result.content.startswith("edit 2 of 2 refused, so none was applied: old_string not found")
    assert (repo / "src" / "app.py").read_bytes() == before
    assert "edits" in err(box, "multi_edit", path="src/app.py", edits=[])


def test_multi_edit_schema_has_no_refs_and_specs_are_computed_once(repo: Path) -> None:
    box = Toolbox(repo, ALL)
    spec = {s.name: s for s in box.specs()}["multi_edit"]
    assert "$ref" not in json.dumps(spec.parameters) and "$defs" not in spec.parameters
    item = spec.parameters["properties"]["edits"]["items"]
    assert item["required"] == ["old_string", "new_string"] and item["additionalProperties"] is False
    assert "all are applied or none" in spec.description
    again = Toolbox(repo, ALL)
    assert [id(s) for s in again.specs()] == [id(s) for s in box.specs()]

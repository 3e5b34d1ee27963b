"""The agent loop end to end on each provider family: real SDKs → fake servers (real HTTP, real wire
formats) → real tools in a real git worktree. Plus the reliability path across families:
Kimi hangs → stall timeout → retries → fallback to Claude, all recorded in the ledger."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bot.agent.loop import Agent, AgentLimits
from bot.agent.tools import ALL, Toolbox
from bot.fakes.anthropic import FakeAnthropic
from bot.fakes.openai_compat import FakeOpenAI, HttpError, Reply, ToolCall, Usage
from bot.providers.anthropic import AnthropicProvider
from bot.providers.openai_compat import OpenAICompatProvider
from bot.providers.registry import DEFAULT_MODELS
from bot.providers.types import CallLimits, ModelSlot, Reasoning

FAST = CallLimits(timeout_s=30, stall_timeout_s=1.0, max_retries=2)  # hangs below last 3 s
OPUS, KIMI, SONNET = DEFAULT_MODELS["opus"], DEFAULT_MODELS["kimi"], DEFAULT_MODELS["sonnet"]
KEY = "sk-test-do-not-leak"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "greet.py").write_text('def greet(name):\n    return "Helo, " + name\n')
    return root


def fix_script(usage: Usage) -> list[Reply]:
    return [
        Reply(
            text="Reading the file.", tool_calls=[ToolCall("read_file", {"path": "greet.py"})], usage=usage
        ),
        Reply(
            tool_calls=[
                ToolCall("edit_file", {"path": "greet.py", "old_string": "Helo", "new_string": "Hello"})
            ],
            usage=usage,
        ),
        Reply(
            tool_calls=[ToolCall("run", {"command": "python3 -c 'import greet; print(greet.greet(\"A\"))'"})],
            usage=usage,
        ),
        Reply(text="Fixed the greeting typo.", usage=usage),
    ]


def test_claude_fixes_a_file_with_cached_prefix(repo: Path, tmp_path: Path) -> None:
    usage = Usage(input_tokens=50, output_tokens=20, cache_creation_tokens=1000, cache_read_tokens=4000)
    with FakeAnthropic() as fake:
        # with extended thinking on, Claude opens every turn with a signed thinking block
        fake.script(*(replace(reply, thinking="Let me think.") for reply in fix_script(usage)))
        provider = AnthropicProvider(OPUS, api_key=KEY, base_url=fake.base_url, limits=FAST)
        agent = Agent(
            [ModelSlot(provider, OPUS)],
            Toolbox(repo, ALL),
            reasoning=Reasoning(enabled=True, budget_tokens=2048),
            transcript_path=tmp_path / "t.jsonl",
        )
        result = agent.run("You fix bugs.", "The greeting is misspelled.")
        assert fake.violations == []
        requests = list(fake.requests)
    assert result.completed and result.final_text == "Fixed the greeting typo."
    assert "Hello, " in (repo / "greet.py").read_text()
    tool_output = requests[3].body["messages"][-1]["content"][0]
    assert tool_output["type"] == "tool_result" and "Hello, A" in str(tool_output["content"])
    # prompt caching: the system prompt, the tool definitions and the growing conversation are marked
    last = requests[-1].body
    assert last["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert last["thinking"] == {"type": "adaptive"}  # Opus 5.5 takes adaptive thinking only
    # 4 calls × (50×$4 + 1000×$5 + 4000×$0.20 + 20×$20) per million
    assert result.ledger.cost_usd == pytest.approx(4 * (200 + 5000 + 800 + 400) / 1e6)
    assert result.ledger.usage.cache_read_tokens == 16_000
    assert KEY not in (tmp_path / "t.jsonl").read_text()


def test_kimi_fixes_a_file_and_gets_its_reasoning_back(repo: Path) -> None:
    usage = Usage(input_tokens=1200, output_tokens=40, cache_read_tokens=1000, reasoning_tokens=25)
    script = fix_script(usage)
    script[0] = Reply(
        text="", thinking="The typo is in greet.py.", tool_calls=script[0].tool_calls, usage=usage
    )
    with FakeOpenAI(moonshot=True) as fake:
        fake.script(*script)
        provider = OpenAICompatProvider(KIMI, api_key=KEY, base_url=fake.base_url, limits=FAST)
        agent = Agent([ModelSlot(provider, KIMI)], Toolbox(repo, ALL), reasoning=Reasoning(enabled=True))
        result = agent.run("You fix bugs.", "The greeting is misspelled.")
        assert fake.violations == []
        second = fake.requests[1].body
    assert result.completed and "Hello, " in (repo / "greet.py").read_text()
    [earlier] = [m for m in second["messages"] if m["role"] == "assistant"]
    assert earlier["reasoning_content"] == "The typo is in greet.py."
    assert "temperature" not in second and "top_p" not in second
    # prompt_tokens include the cached ones: (1200−1000)×$0.95 + 1000×$0.16 + 40×$4 per million, 4 calls
    assert result.ledger.cost_usd == pytest.approx(4 * (200 * 0.95 + 1000 * 0.16 + 40 * 4) / 1e6)
    assert result.ledger.usage.reasoning_tokens == 100


def test_hung_kimi_stalls_then_falls_back_to_claude(repo: Path) -> None:
    with FakeOpenAI(moonshot=True) as kimi_fake, FakeAnthropic() as claude_fake:
        kimi_fake.script(
            Reply(tool_calls=[ToolCall("list_dir", {})]),
            *[Reply(text="never sent", hang=3, hang_after_events=1) for _ in range(6)],
        )
        claude_fake.script(Reply(text="Finished by the fallback."))
        chain = [
            ModelSlot(
                OpenAICompatProvider(KIMI, api_key=KEY, base_url=kimi_fake.base_url, limits=FAST), KIMI
            ),
            ModelSlot(
                AnthropicProvider(SONNET, api_key=KEY, base_url=claude_fake.base_url, limits=FAST), SONNET
            ),
        ]
        result = Agent(chain, Toolbox(repo, ALL), limits=AgentLimits(switch_after=2)).run("sys", "task")
        assert claude_fake.violations == []
    assert result.completed and result.final_text == "Finished by the fallback."
    calls = result.ledger.calls
    assert [(c.provider, c.error) for c in calls] == [
        ("moonshot", None),
        ("moonshot", "stall"),
        ("moonshot", "stall"),
        ("anthropic", None),
    ]
    kimi = result.ledger.providers["moonshot"]
    assert kimi.stalls == 6 and kimi.fallbacks == 1 and kimi.failed_calls == 2
    assert calls[-1].fallback_from == "moonshot"


def test_rate_limit_with_retry_after_is_honoured_and_counted(repo: Path) -> None:
    with FakeOpenAI() as fake:
        fake.script(HttpError(429, retry_after=0.2), Reply(text="ok"))
        provider = OpenAICompatProvider(
            DEFAULT_MODELS["gpt"], api_key=KEY, base_url=fake.base_url, limits=FAST
        )
        result = Agent([ModelSlot(provider, DEFAULT_MODELS["gpt"])], Toolbox(repo, ALL)).run("s", "t")
    assert result.completed and result.ledger.calls[0].retries == 1
    assert result.ledger.providers["openai"].retries == 1


def test_malformed_tool_arguments_reach_the_model_as_a_tool_error(repo: Path) -> None:
    with FakeAnthropic() as fake:
        fake.script(
            Reply(tool_calls=[ToolCall("read_file", raw_arguments='{"path": "greet.py"')]),
            Reply(text="I will fix my JSON next time."),
        )
        provider = AnthropicProvider(OPUS, api_key=KEY, base_url=fake.base_url, limits=FAST)
        result = Agent([ModelSlot(provider, OPUS)], Toolbox(repo, ALL)).run("s", "t")
        returned = fake.requests[1].body["messages"][-1]["content"][0]
    assert result.completed and result.ledger.providers["anthropic"].tool_errors == 1
    assert returned["is_error"] is True

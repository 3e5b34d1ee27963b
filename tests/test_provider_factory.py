"""Building providers from the registry and the deployment's settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.providers.factory import build_chain, build_provider
from bot.providers.registry import DEFAULT_MODELS, ModelRegistry, ModelSpec, Provider
from bot.providers.scripted import ScriptedProvider
from bot.settings import ConfigurationError, Settings


def settings(**values) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("alias", "variable"),
    [("opus", "ANTHROPIC_API_KEY"), ("kimi", "MOONSHOT_API_KEY"), ("gpt", "OPENAI_API_KEY")],
)
def test_a_missing_key_names_its_variable(alias: str, variable: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        build_provider(DEFAULT_MODELS[alias], settings())


def test_openrouter_needs_its_own_key() -> None:
    spec = ModelSpec(provider=Provider.OPENROUTER, model="moonshotai/kimi-k2.6")
    with pytest.raises(ConfigurationError, match="OPENROUTER_API_KEY"):
        build_provider(spec, settings(openai_api_key="sk-openai"))


def test_scripted_models_are_found_by_name(tmp_path: Path) -> None:
    (tmp_path / "plan.jsonl").write_text('{"text": "the plan"}\n')
    spec = ModelSpec(provider=Provider.SCRIPTED, model="plan")
    provider = build_provider(spec, settings(archon_scripts_dir=tmp_path))
    assert isinstance(provider, ScriptedProvider) and provider.model == "scripted:plan"
    with pytest.raises(ConfigurationError, match="no script `missing`"):
        build_provider(ModelSpec(provider=Provider.SCRIPTED, model="missing"), settings())


def test_fallback_chains_come_from_settings(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.jsonl").write_text('{"text": "x"}\n')
    registry = ModelRegistry({n: ModelSpec(provider=Provider.SCRIPTED, model=n) for n in ("a", "b", "c")})
    config = settings(archon_scripts_dir=tmp_path, archon_fallbacks="a=b>c,b=c")
    assert config.fallbacks() == {"a": ["b", "c"], "b": ["c"]}
    assert [slot.provider.model for slot in build_chain("a", registry, config)] == [
        "scripted:a",
        "scripted:b",
        "scripted:c",
    ]
    assert len(build_chain("c", registry, config)) == 1
    with pytest.raises(ConfigurationError, match="`zzz`"):
        build_chain("a", registry, settings(archon_scripts_dir=tmp_path, archon_fallbacks="a=zzz"))

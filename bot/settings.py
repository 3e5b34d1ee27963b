"""Deployment configuration, read from the environment (and an optional `.env` file).

One `Settings` object is built at an entry point (the CLI, the app factory, a job) and passed down;
nothing reads the environment at import time. `.env.example` documents every variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.sandbox import DEFAULT_PACKAGE_HOSTS

#: Repository permissions GitHub's collaborator-permission API reports, weakest first.
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")

DEFAULT_LABEL_PRESETS = (
    "plan-opus impl-kimi",
    "plan-opus impl-opus",
    "plan-kimi impl-kimi",
    "plan-kimi impl-opus",
)


class ConfigurationError(RuntimeError):
    """The environment does not describe a usable deployment; the message says which variable."""


def _split_csv(value: object) -> object:
    """Accept `a,b,c` (and `a;b` for values that may contain commas) from the environment."""
    if isinstance(value, str):
        separator = ";" if ";" in value else ","
        return [part.strip() for part in value.split(separator) if part.strip()]
    return value


def _absolute(path: Path) -> Path:
    """Resolved once at start: git runs with other working directories (`cwd=` a mirror or worktree),
    where a relative data directory would name another place."""
    return path.expanduser().resolve()


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


DataDir = Annotated[Path, AfterValidator(_absolute)]
LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], BeforeValidator(_upper)]


class Settings(BaseSettings):
    """Everything an operator configures. Field names map to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", case_sensitive=False, env_ignore_empty=True
    )

    github_app_id: int | None = Field(None, description="The GitHub App's numeric id.")
    github_private_key: SecretStr | None = Field(None, description="The App's PEM private key.")
    github_private_key_path: Path | None = Field(None, description="File holding the PEM key.")
    github_webhook_secret: SecretStr | None = Field(None, description="Webhook HMAC secret.")
    github_api_url: str = Field("https://api.github.com", description="REST API base URL.")
    github_git_url: str = Field("https://github.com", description="Base of clone/push URLs.")
    github_write_interval: float = Field(
        1.0,
        ge=0,
        description="Seconds PyGithub waits between write calls (GitHub's secondary rate limit guidance).",
    )
    github_request_interval: float = Field(
        0.25, ge=0, description="Seconds PyGithub waits between any two calls (PyGithub's default)."
    )
    archon_git_partial_clone: bool = Field(
        False,
        description="New mirrors are blobless partial clones (--filter=blob:none) where the remote allows it "
        "(a full mirror where it refuses): a large history's first run fetches half as much. Off by default: "
        "a sandboxed command reading old history (`git log -p`) cannot fetch the blobs it lacks.",
    )
    archon_status_interval: float = Field(
        10.0,
        ge=0,
        description="Seconds between two edits of a run's status comment while it runs (changes in between "
        "are coalesced into the next edit; the final state is always written). 0 writes every change.",
    )
    redis_url: str | None = Field(None, description="Redis URL; unset means embedded Redis.")
    archon_data_dir: DataDir = Field(
        Path(".archon"),
        validate_default=True,
        description="Mirrors, worktrees, runs; relative paths are taken from the working directory at start.",
    )
    webhook_path: str = Field("/webhook", description="Path GitHub posts deliveries to.")
    # --- Processes: read by gunicorn (bot/gunicorn_conf.py), the CLI and the workers (bot/logs.py). ---
    port: int = Field(3000, ge=1, le=65535, description="Port the web server listens on.")
    web_concurrency: int = Field(2, ge=1, description="gunicorn worker processes of the web server.")
    log_level: LogLevel = Field("INFO", description="Log level of every process.")
    log_format: Literal["text", "json"] = Field(
        "text", description="`text` lines, or `json` lines carrying delivery_id/job_id/run_id."
    )

    anthropic_api_key: SecretStr | None = Field(None, description="Anthropic API key (opus, sonnet, haiku).")
    anthropic_base_url: str | None = Field(None, description="Anthropic API base URL; unset: the SDK's.")
    openai_api_key: SecretStr | None = Field(None, description="OpenAI (or OpenRouter) API key.")
    openai_base_url: str | None = Field(None, description="OpenAI-compatible base URL; unset: the SDK's.")
    moonshot_api_key: SecretStr | None = Field(None, description="Moonshot API key (Kimi).")
    moonshot_base_url: str = Field("https://api.moonshot.ai/v1", description="Moonshot API base URL.")
    openrouter_api_key: SecretStr | None = Field(None, description="OpenRouter API key.")
    openrouter_base_url: str = Field("https://openrouter.ai/api/v1", description="OpenRouter API base URL.")

    archon_allowed_permissions: Annotated[tuple[str, ...], NoDecode] = Field(
        ("write", "maintain", "admin"),
        description="Repository roles allowed to start work (collaborator permission API).",
    )
    archon_label_presets: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_LABEL_PRESETS,
        description="Label presets created on install, as `archon:<preset>`; `;`-separated.",
    )
    archon_default_models: Annotated[tuple[str, ...], NoDecode] = Field(
        ("explore=haiku", "plan=opus", "impl=kimi", "eval=opus"),
        description="Model alias per role when neither the trigger nor the repository names one.",
    )
    archon_models_file: Path | None = Field(
        None, description="YAML file adding or overriding model aliases for this deployment."
    )
    archon_fallbacks: Annotated[tuple[str, ...], NoDecode] = Field(
        ("kimi=sonnet",),
        description="Fallback chains, `alias=next>next`, comma-separated, used after repeated failures.",
    )
    archon_scripts_dir: Path | None = Field(
        None, description="Where `scripted` models' scripts live (besides the bundled ones)."
    )
    archon_keep_failed_hours: float = Field(
        24, ge=0, description="Hours a failed run's worktree is kept for debugging before cleanup."
    )
    archon_bench_max_usd: float = Field(
        20.0, gt=0, description="A benchmark whose estimated cost is above this does not start (USD)."
    )
    archon_run_timeout: int = Field(3600, description="Seconds a run job may take before RQ stops it.")
    # Limits the operator owns (docs/security.md "Limits"): repositories and workflows only lower them.
    archon_max_node_usd: float = Field(10.0, gt=0, description="Dollars one agent node may spend at most.")
    archon_max_run_usd: float = Field(30.0, gt=0, description="Dollars one run may spend over all its nodes.")
    archon_forgiving_edits: bool = Field(
        True,
        description="Edit tools forgive line-number prefixes, whitespace and indentation when old_string is "
        "not found exactly, applying only a unique match (docs/providers.md); false: exact matches only.",
    )
    archon_max_turns: int = Field(60, gt=0, description="Model calls one agent node may make at most.")
    archon_max_wall_s: float = Field(3600, gt=0, description="Seconds one agent node may take at most.")
    archon_daily_usd_per_installation: float = Field(
        50.0, gt=0, description="Dollars one installation may spend per UTC day (checked before each call)."
    )
    archon_max_concurrent_runs: int = Field(
        5, gt=0, description="Runs (a benchmark counts as one) queued or running at once per installation."
    )
    archon_max_judges: int = Field(5, gt=0, description="Judges one `/archon evaluate` panel may have.")
    archon_max_bench_cells: int = Field(
        24, gt=0, description="Cells (issues × pairings × repeats) one benchmark may have."
    )
    archon_allow_unpriced_models: bool = Field(
        False, description="Allow aliases without `prices` (their cost counts as $0 against every cap)."
    )

    archon_sandbox: Literal["auto", "required", "off"] = Field(
        "auto", description="bubblewrap for every repository command: auto, required or off."
    )
    archon_sandbox_network: Literal["none", "packages", "open"] = Field(
        "none", description="What sandboxed commands reach: nothing, the package indexes, or everything."
    )
    archon_sandbox_package_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_PACKAGE_HOSTS, description="Hosts (`host` or `host:port`) `packages` lets commands reach."
    )
    archon_sandbox_cpu_seconds: int = Field(900, ge=1, description="CPU seconds per sandboxed process.")
    archon_sandbox_memory_mb: int = Field(4096, ge=64, description="Memory (data segment) per process, MiB.")
    archon_sandbox_max_processes: int = Field(512, ge=8, description="Processes one command may run at once.")

    @field_validator(
        "archon_allowed_permissions",
        "archon_label_presets",
        "archon_default_models",
        "archon_fallbacks",
        "archon_sandbox_package_hosts",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("archon_allowed_permissions")
    @classmethod
    def _known_permissions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in PERMISSION_LEVELS]
        if unknown:
            raise ValueError(f"unknown permission {unknown}; choose from {PERMISSION_LEVELS}")
        return value

    @field_validator("github_api_url", "github_git_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("webhook_path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        return value if value.startswith("/") else "/" + value

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.github_private_key and self.github_private_key_path:
            raise ValueError("set GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH, not both")
        return self

    def private_key_pem(self) -> str:
        """The App's private key as PEM text; `\\n` escapes (common in .env files) are expanded."""
        if self.github_private_key:
            return self.github_private_key.get_secret_value().replace("\\n", "\n")
        if self.github_private_key_path:
            return self.github_private_key_path.read_text()
        raise ConfigurationError("GITHUB_PRIVATE_KEY or GITHUB_PRIVATE_KEY_PATH must be set")

    def require_app_credentials(self) -> tuple[int, str]:
        """App id and key, or a clear error naming what is missing (workers need both)."""
        if self.github_app_id is None:
            raise ConfigurationError("GITHUB_APP_ID must be set")
        return self.github_app_id, self.private_key_pem()

    def require_webhook_secret(self) -> bytes:
        """The web server refuses to run unverified: other bots skip the check when unset; we do not."""
        if not self.github_webhook_secret or not self.github_webhook_secret.get_secret_value():
            raise ConfigurationError(
                "GITHUB_WEBHOOK_SECRET must be set: Archon Bot never accepts unsigned deliveries"
            )
        return self.github_webhook_secret.get_secret_value().encode()

    def default_models(self) -> dict[str, str]:
        """`ARCHON_DEFAULT_MODELS` as a role → alias mapping."""
        pairs = (item.split("=", 1) for item in self.archon_default_models)
        return {role.strip(): alias.strip() for role, alias in pairs}

    def fallbacks(self) -> dict[str, list[str]]:
        """`ARCHON_FALLBACKS` as alias → the aliases to try next, in order."""
        chains = (item.split("=", 1) for item in self.archon_fallbacks if "=" in item)
        return {alias.strip(): [a.strip() for a in rest.split(">") if a.strip()] for alias, rest in chains}


def load_settings(**overrides: object) -> Settings:
    """Build settings at an entry point: the environment, plus `.env` in the working directory.

    `ARCHON_ENV_FILE` names another file; an empty value disables the file.
    """
    env_file = os.environ.get("ARCHON_ENV_FILE", ".env")
    use_file = env_file and Path(env_file).is_file()
    return Settings(_env_file=env_file if use_file else None, **overrides)  # type: ignore[call-arg]

"""GitHub App authentication through PyGithub: App JWT → installation token, honouring GITHUB_API_URL.

No hand-rolled JWT or token refresh: PyGithub's `AppAuth` signs, `AppInstallationAuth` refreshes.
"""

from __future__ import annotations

from collections.abc import Callable

from github import Auth, Github, GithubIntegration, GithubRetry

from bot.github.forge import WRITES
from bot.secrets import register_secret
from bot.settings import Settings

#: Seconds per HTTP request to GitHub; PyGithub's retry handles 5xx and rate limits on top.
TIMEOUT = 15
#: Methods the transport may simply send again. Not POST: a POST whose answer was lost may have been
#: performed, so `bot.github.forge` retries it after looking for what it would create (the markers).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
#: The longest the transport waits on one rate limit (`retry-after`, a reset); longer ones are left to
#: the forge, whose retries have a total budget.
TRANSPORT_RATE_WAIT_S = 10


def _retry() -> GithubRetry:
    """Three quick retries (0, 0.5 and 1 s apart) of idempotent calls on 5xx and secondary rate limits.

    `raise_on_status=False`: when they run out, PyGithub sees the last answer and raises a
    `GithubException` with its status and headers (which the forge's retries read), not a bare
    `RetryError`.
    """
    return GithubRetry(
        total=3,
        backoff_factor=0.25,
        allowed_methods=IDEMPOTENT_METHODS,
        raise_on_status=False,
        secondary_rate_wait=TRANSPORT_RATE_WAIT_S,
        max_rate_limit_wait=TRANSPORT_RATE_WAIT_S,
        retry_after_max=TRANSPORT_RATE_WAIT_S,
    )


def app_auth(settings: Settings) -> Auth.AppAuth:
    app_id, key = settings.require_app_credentials()
    return Auth.AppAuth(app_id, key)


def installation_github(settings: Settings, installation_id: int) -> Github:
    """A client acting as the installation. Lazy: objects are built without a GET until read."""
    return installation_client(settings, installation_id)[0]


def installation_client(settings: Settings, installation_id: int) -> tuple[Github, Callable[[], str]]:
    """The client, and a function giving its current installation token (for `git push`).

    PyGithub refreshes the token before it expires; the token is never stored by the bot.
    """
    auth = app_auth(settings).get_installation_auth(installation_id)
    github = _client(settings, auth)

    def token() -> str:
        # Minting is a POST the transport does not repeat; repeating it is harmless (a second token).
        # Every minted token joins the process's redactor before anyone can print it.
        return register_secret(WRITES.retrying("installation token")(lambda: auth.token))

    return github, token


def _client(settings: Settings, auth: Auth.AppInstallationAuth) -> Github:
    return Github(
        auth=auth,
        base_url=settings.github_api_url,
        lazy=True,
        timeout=TIMEOUT,
        retry=_retry(),
        seconds_between_requests=settings.github_request_interval,
        seconds_between_writes=settings.github_write_interval,
    )


def app_integration(settings: Settings) -> GithubIntegration:
    """A client acting as the App itself (installations, manifest-independent App endpoints)."""
    return GithubIntegration(
        auth=app_auth(settings), base_url=settings.github_api_url, timeout=TIMEOUT, retry=_retry()
    )


def github_for_repo(settings: Settings, full_name: str) -> tuple[Github, int]:
    """Installation client for a repository found by name (CLI use: no webhook payload to read)."""
    owner, _, repo = full_name.partition("/")
    installation = app_integration(settings).get_repo_installation(owner, repo)
    return installation_github(settings, installation.id), installation.id

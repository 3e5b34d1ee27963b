"""GitHub App authentication through PyGithub: App JWT → installation token, honouring GITHUB_API_URL.

No hand-rolled JWT or token refresh: PyGithub's `AppAuth` signs, `AppInstallationAuth` refreshes.
"""

from __future__ import annotations

from collections.abc import Callable

from github import Auth, Github, GithubIntegration, GithubRetry

from bot.secrets import register_secret
from bot.settings import Settings

#: Seconds per HTTP request to GitHub; PyGithub's retry handles 5xx and rate limits on top.
TIMEOUT = 15


def _retry() -> GithubRetry:
    # Three attempts with short backoff: triage must stay fast; a longer outage fails the job visibly.
    return GithubRetry(total=3, backoff_factor=0.5, secondary_rate_wait=10)


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
        # Every minted token joins the process's redactor before anyone can print it.
        return register_secret(auth.token)

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

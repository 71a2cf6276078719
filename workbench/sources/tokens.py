"""Access tokens for remote sources: from the environment, or asked for interactively.

A token is held in the settings object of the running process only (a
`SecretStr`, masked when printed); it is never stored in the catalog, a run
record, a log or a notebook output.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable

from pydantic import SecretStr

from workbench.redaction import register_secret
from workbench.settings import WorkbenchSettings

# The settings field and its environment variable, per service.
TOKENS = {
    "vk": ("vk_token", "WORKBENCH_VK_TOKEN", "VK access token"),
    "yadisk": ("yadisk_token", "WORKBENCH_YADISK_TOKEN", "Yandex.Disk OAuth token"),
}


def token_needed(spec: str) -> str | None:
    """The service whose token ``spec`` needs (``vk``, ``yadisk``), or None."""
    scheme, _, rest = spec.partition(":")
    if scheme == "vk":
        return "vk"
    if scheme == "yadisk":
        from workbench.sources.yadisk import is_public

        return None if is_public(rest.strip()) else "yadisk"
    return None


def ask_missing_tokens(
    specs: Iterable[str],
    settings: WorkbenchSettings,
    ask: Callable[[str], str] = getpass.getpass,
) -> list[str]:
    """Ask (input hidden) for each token ``specs`` need that the settings lack.

    Returns the services asked for. Where nobody can answer (papermill, a
    pipe) ``ask`` fails and nothing is set: the source then says which
    environment variable to set.
    """
    asked: list[str] = []
    for service in dict.fromkeys(s for s in map(token_needed, specs) if s):
        field, env, label = TOKENS[service]
        if getattr(settings, field) is not None:
            continue
        try:
            value = ask(f"{label} (or set {env}; input hidden): ").strip()
        # No terminal; under papermill ipykernel raises StdinNotImplementedError,
        # a NotImplementedError.
        except (EOFError, OSError, NotImplementedError):
            return asked
        if value:
            register_secret(value)
            setattr(settings, field, SecretStr(value))
            asked.append(service)
    return asked


__all__ = ["TOKENS", "ask_missing_tokens", "token_needed"]

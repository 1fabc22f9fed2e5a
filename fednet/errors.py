"""Domain errors raised by fednet at run time.

Configuration mistakes raise :class:`ConfigError` (a ``ValueError``) where the
config is built, listing every problem. The other exceptions here describe
failures of a running federation: an update that breaks the wire allowlist, a
hub blob that fails verification, a privacy budget that is spent.
"""

from __future__ import annotations

__all__ = [
    "FednetError",
    "ConfigError",
    "UpdateRejectedError",
    "HubError",
    "IntegrityError",
    "SignatureError",
    "UntrustedKeyError",
    "NotFoundError",
    "BudgetExhaustedError",
    "PeerError",
    "ModelNotInstalledError",
]


class FednetError(Exception):
    """Base class of every fednet error."""


class ConfigError(FednetError, ValueError):
    """A configuration file, run config or CLI argument is invalid.

    Parameters
    ----------
    problems : str or list[str]
        One line per problem, each naming the key, what was expected and the
        value that came; a config validator reports every problem at once.
    source : str, optional
        The file the configuration came from, named in the first line when
        there are several problems.
    """

    def __init__(self, problems: str | list[str], *, source: str = "") -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        lines = self.problems
        if len(lines) > 1:
            where = f" in {source}" if source else ""
            lines = [f"{len(lines)} problems{where}:", *lines]
        elif source and lines:
            lines = [f"{source}: {lines[0]}"]
        super().__init__("\n".join(lines))


class UpdateRejectedError(FednetError):
    """An update on the wire broke the allowlist or failed validation.

    Parameters
    ----------
    problems : list[str]
        Every problem found, so one rejection reports them all.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("update rejected: " + "; ".join(self.problems))


class HubError(FednetError):
    """The adapter hub failed or cannot be reached."""


class IntegrityError(HubError):
    """A hub blob does not match its recorded sha256."""


class SignatureError(HubError):
    """A manifest is unsigned or its signature does not verify."""


class UntrustedKeyError(SignatureError):
    """A manifest verifies, but under a key not trusted for its owner."""


class NotFoundError(HubError, KeyError):
    """An adapter, version or peer is not in the hub."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "not found"


class BudgetExhaustedError(FednetError):
    """A release would take a client past its privacy budget.

    Parameters
    ----------
    message : str
        What was refused and why.
    client_id : str, optional
        The client whose budget is spent.
    spent : float, optional
        ε already spent before the refused release.
    requested : float, optional
        ε the client would have spent with the release.
    budget : float, optional
        The client's total ε budget.
    """

    def __init__(
        self,
        message: str = "privacy budget exhausted",
        *,
        client_id: str | None = None,
        spent: float | None = None,
        requested: float | None = None,
        budget: float | None = None,
    ) -> None:
        super().__init__(message)
        self.client_id = client_id
        self.spent = spent
        self.requested = requested
        self.budget = budget


class PeerError(FednetError):
    """A peer failed to answer, answered late, or answered malformed data."""


class ModelNotInstalledError(ConfigError):
    """A preset names a base model whose optional packages are not installed."""

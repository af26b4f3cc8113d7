"""What a user may ask for when starting a server, checked before anything starts.

``user_options`` arrive from the spawn form or, as JSON, from the REST API; both
go through :func:`validate_user_options`. Only the resulting :class:`Choice`
(a known profile and a wall time inside its maximum) ever reaches a backend,
so nothing a user types can add scheduler directives or change the command.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from .profiles import Profile

ALLOWED_KEYS = ("profile", "hours")


class OptionsError(ValueError):
    """A refused request; ``field`` names the option at fault (or '' for quotas)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclasses.dataclass(frozen=True)
class Choice:
    """A validated request: one profile and the wall time asked for."""

    profile: Profile
    hours: float

    @property
    def seconds(self) -> int:
        return int(round(self.hours * 3600))

    def to_user_options(self) -> dict:
        return {"profile": self.profile.id, "hours": self.hours}


def _hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise OptionsError("hours", f"hours must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise OptionsError("hours", f"hours must be more than 0, not {value}")
    return float(value)


def server_profiles(profiles: Mapping[str, Profile]) -> dict[str, Profile]:
    """The sizes a JupyterLab server may have: one node each (several-node sizes are for jobs)."""
    return {key: profile for key, profile in profiles.items() if not profile.multi_node}


def validate_user_options(options: Any, profiles: Mapping[str, Profile]) -> Choice:
    """Turn raw ``user_options`` into a Choice, or raise OptionsError."""
    if not isinstance(options, Mapping):
        raise OptionsError("", "options must be a JSON object with 'profile' and 'hours'")
    unknown = sorted(set(options) - set(ALLOWED_KEYS))
    if unknown:
        raise OptionsError(
            unknown[0],
            f"unknown option {unknown[0]!r}: only {', '.join(ALLOWED_KEYS)} may be set",
        )
    profile_id = options.get("profile")
    if profile_id is None:
        raise OptionsError("profile", "profile is required: one of " + ", ".join(profiles))
    if not isinstance(profile_id, str) or profile_id not in profiles:
        raise OptionsError(
            "profile",
            f"unknown profile {str(profile_id)[:40]!r}: choose one of {', '.join(profiles)}",
        )
    profile = profiles[profile_id]
    hours = profile.default_hours if options.get("hours") is None else _hours(options["hours"])
    if hours > profile.max_hours:
        raise OptionsError(
            "hours",
            f"hours {hours:g} is over the {profile.max_hours:g} h maximum of {profile.id}",
        )
    return Choice(profile, hours)


def options_from_form_data(form: Mapping[str, list[str]]) -> dict:
    """Coerce the spawn form's strings into the shape the API takes.

    Only the form's own fields are read; anything else in the POST (``_xsrf``,
    or keys a crafted request adds) never reaches ``user_options``.
    """
    def first(key: str) -> str:
        values = form.get(key) or [""]
        return values[0].strip() if isinstance(values[0], str) else ""

    options: dict[str, Any] = {"profile": first("profile") or None}
    hours = first("hours")
    try:
        options["hours"] = float(hours) if hours else None
    except ValueError:
        raise OptionsError("hours", f"hours must be a number, not {hours[:20]!r}") from None
    return options


def check_quota(
    choice: Choice,
    others: Iterable[Choice],
    max_servers_per_user: int,
    max_gpus_per_user: int,
) -> None:
    """Refuse a choice that would take a user over their quotas.

    ``others`` are the user's other servers that are running or starting.
    A limit of 0 means no limit.
    """
    others = list(others)
    if max_servers_per_user and len(others) + 1 > max_servers_per_user:
        raise OptionsError(
            "",
            f"quota: you already have {len(others)} server(s) running; "
            f"the limit is {max_servers_per_user}. Stop one first.",
        )
    gpus_in_use = sum(o.profile.gpus for o in others)
    if max_gpus_per_user and gpus_in_use + choice.profile.gpus > max_gpus_per_user:
        raise OptionsError(
            "profile",
            f"quota: {choice.profile.id} needs {choice.profile.gpus} GPU(s) and you already "
            f"use {gpus_in_use}; the limit is {max_gpus_per_user} GPU(s) per user",
        )

"""The worker's marketing rules: ``CRM_RULES_FILE`` loaded at start and hot-reloaded.

A worker loads the rule file when it starts (an invalid file stops it with the file's
problems, like any configuration error) and then polls it every
``CRM_RULES_RELOAD_INTERVAL`` seconds. When its content changes, the new file is
validated as a whole: a valid one replaces the rules from the next batch on; an invalid
one is logged at ERROR with every problem, and the previous rules keep running. Each
worker writes what it runs to the Redis hash ``crm:rules:<worker id>`` (version, number of
rules, and the problem of the file on disk, if any), which ``crmstream rules status``
reads.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import redis

from crmstream.models.rules import RuleFileError, RuleProblem, RuleSet, load_rules

log = logging.getLogger(__name__)

#: Prefix of the Redis hashes in which workers say which rules they run.
RULES_STATUS_PREFIX = "crm:rules:"


class RulesWatcher:
    """Loads a rule file and reloads it when its content changes (see the module)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.rules: RuleSet | None = None
        self.digest = ""
        self.problem = ""
        self.loaded_at = 0.0
        self.checked_at = 0.0

    def load(self) -> RuleSet:
        """Load the file for the first time; raise :class:`RuleFileError` if it is invalid."""
        data = self._read()
        self.digest = hashlib.sha256(data).hexdigest()
        self.rules = self._parse(data)
        self.loaded_at = time.time()
        log.info(
            "marketing rules %s loaded: %d rules, version %s",
            self.path,
            len(self.rules.rules),
            self.rules.version,
        )
        return self.rules

    def poll(self) -> RuleSet | None:
        """The new rules if the file changed and is valid; ``None`` otherwise (an invalid
        or unreadable file is logged once per change and the previous rules stay)."""
        self.checked_at = time.time()
        try:
            data = self._read()
        except RuleFileError as exc:
            self.digest = ""  # read and check it again once it is back
            self._refuse(str(exc), "unreadable")
            return None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.digest:
            return None
        self.digest = digest
        try:
            rules = self._parse(data)
        except RuleFileError as exc:
            self._refuse(str(exc), "invalid")
            return None
        self.rules, self.problem, self.loaded_at = rules, "", time.time()
        log.warning(
            "marketing rules %s reloaded: %d rules, version %s",
            self.path,
            len(rules.rules),
            rules.version,
        )
        return rules

    def status(self) -> dict[str, str]:
        """What this worker runs, as Redis hash fields."""
        rules = self.rules
        return {
            "file": self.path,
            "version": rules.version if rules else "",
            "rules": str(len(rules.rules)) if rules else "0",
            "loaded_at": f"{self.loaded_at:.3f}",
            "checked_at": f"{self.checked_at:.3f}",
            "problem": self.problem,
            "errors": str(sum(rules.errors.values())) if rules else "0",
        }

    def _read(self) -> bytes:
        try:
            return Path(self.path).read_bytes()
        except OSError as exc:
            problem = RuleProblem(code="unreadable", message=f"CRM_RULES_FILE: {exc}")
            raise RuleFileError(self.path, [problem]) from None

    def _parse(self, data: bytes) -> RuleSet:
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            problem = RuleProblem(code="encoding", message=f"not UTF-8: {exc}")
            raise RuleFileError(self.path, [problem]) from None
        return load_rules(text, self.path)

    def _refuse(self, problem: str, what: str) -> None:
        if problem == self.problem:
            return
        self.problem = problem
        version = self.rules.version if self.rules else "none"
        log.error(
            "marketing rules %s are %s; still running the previous rules (version %s):\n%s",
            self.path,
            what,
            version,
            problem,
        )


def read_rules_status(redis_url: str, worker_ids: Iterable[str]) -> dict[str, dict[str, str]]:
    """What each of ``worker_ids`` said about its rules (workers without rules are absent)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        ids = list(worker_ids)
        pipe = client.pipeline(transaction=False)
        for worker_id in ids:
            pipe.hgetall(RULES_STATUS_PREFIX + worker_id)
        return {w: status for w, status in zip(ids, pipe.execute(), strict=True) if status}
    finally:
        client.close()

"""Access groups per document, from a YAML groups file of glob rules.

    # groups.yaml: glob (matched against the path relative to the ingested folder) -> groups
    "finance/**": [finance, management]
    "hr/*.pdf": [hr]
    "**/public/**": [everyone]

Every rule that matches adds its groups; a document that matches none gets
`settings.default_groups`. `**` matches across folders, `*` within one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml


class GroupsFileError(ValueError):
    pass


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


class GroupRules:
    def __init__(self, rules: list[tuple[str, list[str]]], default: list[str]) -> None:
        self.rules = rules
        self.default = list(default)

    @classmethod
    def load(cls, path: Path | None, default: list[str]) -> GroupRules:
        if path is None:
            return cls([], default)
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise GroupsFileError(f"cannot read the groups file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise GroupsFileError(f"the groups file {path} is not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise GroupsFileError(f"the groups file {path} must map globs to lists of groups")
        rules = []
        for pattern, groups in data.items():
            if isinstance(groups, str):
                groups = [groups]
            if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
                raise GroupsFileError(f"groups for '{pattern}' in {path} must be a list of names")
            rules.append((str(pattern), sorted({g.strip() for g in groups})))
        return cls(rules, default)

    def groups_for(self, relative_path: str) -> list[str]:
        matched: set[str] = set()
        for pattern, groups in self.rules:
            if _glob_regex(pattern.lstrip("/")).match(relative_path):
                matched.update(groups)
        return sorted(matched) if matched else sorted(set(self.default))

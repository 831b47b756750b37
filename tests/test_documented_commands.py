"""Every harma-index command written in the docs and scripts parses with the real CLI parser."""

from __future__ import annotations

import re
import shlex

import pytest

from index.cli import build_parser
from tests.conftest import REPO_ROOT

DOCUMENTS = ["README.md", "docker/README.md", "docs/scale-out.md", "scripts/demo.sh"]
_COMMAND = re.compile(r"(?:harma-index|python -m index)\s+(.*)")


def _shell_lines(name: str, text: str) -> list[str]:
    """Return the shell lines of a script, or of a Markdown file's bash code blocks, continuations joined."""
    if name.endswith(".md"):
        blocks = re.findall(r"```(?:bash|sh|shell)?\n(.*?)```", text, flags=re.DOTALL)
        text = "\n".join(blocks)
    return text.replace("\\\n", " ").splitlines()


def _documented_commands() -> list[tuple[str, str]]:
    commands = []
    for name in DOCUMENTS:
        for line in _shell_lines(name, (REPO_ROOT / name).read_text()):
            for match in _COMMAND.finditer(line):
                arguments = re.split(r"\s*(?:\|\||&&|;|`|\"\]|\))", match.group(1))[0]
                commands.append((name, arguments))
    return commands


COMMANDS = _documented_commands()


def test_documents_contain_index_commands():
    assert {name for name, _ in COMMANDS} >= {"README.md", "scripts/demo.sh", "docker/README.md"}


@pytest.mark.parametrize("document, arguments", COMMANDS)
def test_documented_index_command_parses(document, arguments):
    # Shell variables become 1, which parses both as a number and as a path.
    expanded = re.sub(r"\$\{?\w+\}?", "1", arguments)
    words = [word for word in shlex.split(expanded) if word != "..."]
    try:
        build_parser().parse_args(words)
    except SystemExit as error:
        pytest.fail(f"{document}: 'harma-index {arguments}' does not parse (exit {error.code})")

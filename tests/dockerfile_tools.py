"""The Dockerfile read offline (tests/test_dockerfile.py, tests/test_deploy.py): its instructions and stages."""

from __future__ import annotations

import re

from conftest import ROOT


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")),
    )
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*([A-Za-z]+)\s+(.*)$", text, re.M)]


def instructions(name: str) -> list[str]:
    return [args for instr, args in dockerfile() if instr == name]


def stages() -> dict[str, list[tuple[str, str]]]:
    """The Dockerfile's stages by name, each from its FROM to the next."""
    out, name = {}, None
    for instr, args in dockerfile():
        if instr == "FROM":
            name = args.split()[-1]
            out[name] = []
        if name is not None:
            out[name].append((instr, args))
    return out


def runtime_stage() -> list[tuple[str, str]]:
    """Instructions of the runtime stage: the predictor's image (the default target builds it as it is)."""
    return stages()["runtime"]

"""Prompt templates live in files under ``rag_service/prompts/`` (one per purpose and language).

Format: ``#`` comment lines, one ``# variables: a, b`` declaration, then sections that each start
with ``=== <name>`` (a chat role such as ``system``/``user``, or a plain part name). Placeholders
are ``{{name}}``. A template whose placeholders differ from its declaration fails when it is
loaded, so a typo surfaces at start-up instead of inside a request.
"""

from __future__ import annotations

import functools
import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

from rag_service.errors import ConfigError

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
# Control tokens of the chat templates in use (ChatML: <|im_start|>, <|im_end|>, <|endoftext|>; Llama 3:
# <|eot_id|>; Llama 2: <s>, [INST], <<SYS>>; Gemma: <start_of_turn>). llama.cpp tokenises the rendered prompt
# with special tokens enabled, so such text inside a passage or a question would become a real turn boundary.
_CONTROL_TOKEN = re.compile(
    r"<\|[^|<>\s]{1,64}\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>|<(?:bos|eos|pad)>")
_DECLARATION = re.compile(r"^#\s*variables:(.*)$")


@dataclass(frozen=True)
class Template:
    name: str
    variables: frozenset[str]
    sections: tuple[tuple[str, str], ...]

    def render(self, **values: str) -> list[tuple[str, str]]:
        """Every section, in order, with its placeholders filled. Values are untrusted (passages, questions,
        history): they go in verbatim except for chat control tokens, which are defused."""
        missing = self.variables - values.keys()
        if missing:
            raise ConfigError(f"template '{self.name}' needs {', '.join(sorted(missing))}")
        safe = {name: defuse_control_tokens(value) for name, value in values.items()}
        return [(section, _PLACEHOLDER.sub(lambda m: safe[m.group(1)], body)) for section, body in self.sections]

    def text(self, **values: str) -> str:
        """The first section's text, for single-section templates (a passage, a refusal message)."""
        return self.render(**values)[0][1]

    def messages(self, **values: str) -> list[dict[str, str]]:
        """Chat messages, one per section; repeated user/assistant sections make few-shot examples."""
        return [{"role": role, "content": content} for role, content in self.render(**values)]


def defuse_control_tokens(text: str) -> str:
    """``<|im_end|>`` becomes ``‹|im_end|›``: the same to a reader and to the model's reading, but no longer the
    special token, so a document or a question cannot close a turn or open a system one. Idempotent."""
    return _CONTROL_TOKEN.sub(lambda m: "‹" + m.group(0)[1:-1] + "›", text)


def parse(name: str, text: str) -> Template:
    declared: set[str] | None = None
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if not sections and line.startswith("#"):
            m = _DECLARATION.match(line)
            if m:
                declared = {v.strip() for v in m.group(1).split(",") if v.strip()}
            continue
        if line.startswith("=== "):
            sections.append((line[4:].strip(), []))
        elif sections:
            sections[-1][1].append(line)
        elif line.strip():
            raise ConfigError(f"template '{name}': text before the first '=== section' line")
    if declared is None:
        raise ConfigError(f"template '{name}': missing the '# variables: ...' declaration")
    if not sections:
        raise ConfigError(f"template '{name}': no '=== section' found")
    bodies = tuple((section, "\n".join(lines).strip()) for section, lines in sections)
    used = {m.group(1) for _, body in bodies for m in _PLACEHOLDER.finditer(body)}
    if used != declared:
        problems = []
        if used - declared:
            problems.append(f"undeclared {', '.join(sorted(used - declared))}")
        if declared - used:
            problems.append(f"declared but unused {', '.join(sorted(declared - used))}")
        raise ConfigError(f"template '{name}': {'; '.join(problems)}")
    return Template(name, frozenset(declared), bodies)


@functools.lru_cache(maxsize=64)
def load(name: str, override_dir: Path | None = None) -> Template:
    """Load ``<name>.txt`` from ``override_dir`` when it has one, else from the bundled ``prompts``."""
    if override_dir is not None and (override_dir / f"{name}.txt").is_file():
        text = (override_dir / f"{name}.txt").read_text(encoding="utf-8")
    else:
        resource = importlib.resources.files("rag_service.prompts") / f"{name}.txt"
        if not resource.is_file():
            raise ConfigError(f"no prompt template named '{name}'")
        text = resource.read_text(encoding="utf-8")
    return parse(name, text)

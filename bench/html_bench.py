"""HTML loading cost on hostile markup: the HTML loader's parser (lxml) against Python's html.parser, which the
loader used before issue 29, on the same inputs in one run.

Each shape is built at sizes that double; ``x2`` is how much longer the larger size took (about 2 when linear,
about 4 when quadratic). The whole loader runs (parse, render, clean), as an upload would. Results and the command:
docs/benchmarks.md "HTML on hostile markup".
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from rag_service.errors import InvalidInputError
from rag_service.ingestion import loaders

SHAPES: dict[str, Callable[[int], str]] = {  # each about n * 10 bytes
    "<br> then <div></div>": lambda n: "<br>" * (n // 2) + "<div></div>" * (n // 2),
    "unclosed comments": lambda n: "<!-- x>" * n,
    "unclosed start tags": lambda n: "<a" * (n * 5),
    "unclosed CDATA": lambda n: "<![CDATA[ x>" * (n // 2),
    "unclosed <p> and <li>": lambda n: "<ul>" + "<p>x<li>y" * n,
}


def load_seconds(html: str, parser: str) -> float:
    real = loaders.BeautifulSoup

    def with_parser(markup: str, _features: str) -> object:
        return real(markup, parser)

    with mock.patch.object(loaders, "BeautifulSoup", with_parser):
        started = time.perf_counter()
        with contextlib.suppress(InvalidInputError):  # markup with no text in it: refused after parsing
            loaders.load(Path("bench.html"), "bench.html", html.encode())
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kb", type=int, default=25, help="the smaller size in KB (the larger is twice that)")
    args = parser.parse_args()
    n = args.kb * 1024 // 10
    print(f"{'shape':24} {'KB':>5} {'html.parser s':>14} {'x2':>5} {'lxml s':>8} {'x2':>5} {'ratio':>7}")
    for name, make in SHAPES.items():
        small, large = make(n), make(2 * n)
        old = [load_seconds(small, "html.parser"), load_seconds(large, "html.parser")]
        new = [load_seconds(small, "lxml"), load_seconds(large, "lxml")]
        print(f"{name:24} {len(large) // 1024:>5} {old[1]:>14.2f} {old[1] / max(old[0], 1e-3):>5.1f} "
              f"{new[1]:>8.2f} {new[1] / max(new[0], 1e-3):>5.1f} {old[1] / max(new[1], 1e-3):>6.0f}x")


if __name__ == "__main__":
    main()

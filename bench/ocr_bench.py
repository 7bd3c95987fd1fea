"""OCR accuracy and speed: RapidOCR (``rag_service.ingestion.ocr``) against Tesseract 5 on the same rendered pages.

Pages are real text laid out on A4 with Pillow (``bench/ocr_pages.py``): Chinese from CMRC 2018's dev contexts,
English from SciFact's abstracts (title and text), read from /work/shared/eval-data (never copied here). Each page is
read in four variants: clean at 150 and 300 dpi, and at 300 dpi turned 2-3 degrees (``skew``) and as a noisy
photocopy (``noisy``). Seeded: the same options give the same pages.

Character error rate (CER) = Levenshtein distance / reference length, both sides normalised alike: NFKC (so that a
full-width "，" or "（" read as its half-width form, or the reverse, is not an error: the two are the same character
to a reader and to search, which applies the same folding) and all whitespace dropped (Chinese has no spaces, and
Tesseract puts one between every two Chinese characters; where lines break is layout, not text). So CER does not
see a space lost between two English words: ``en ws-CER`` is the English CER with each whitespace run kept as one
space, which does (English only: a Chinese line break is no space, but the reading joins lines with one).

    .venv/bin/python bench/ocr_bench.py                      # 20 zh + 20 en pages, both engines (about an hour)
    .venv/bin/python bench/ocr_bench.py --pages 3 --engines rapidocr --variants 300 --diffs
    .venv/bin/python bench/ocr_bench.py --max-side 2000      # another downscaling limit (ocr.MAX_SIDE)

Results and the commands: docs/benchmarks.md "OCR engines".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from difflib import SequenceMatcher
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from bench.ocr_pages import drawable, fit_page, fonts_installed, noisy, render_page, skewed  # noqa: E402
from rag_service.ingestion import ocr  # noqa: E402

DATA = Path("/work/shared/eval-data")
CMRC = DATA / "cmrc2018" / "squad-style-data" / "cmrc2018_dev.json"
SCIFACT = DATA / "scifact" / "corpus.jsonl"
VARIANTS = ("150", "300", "300-skew", "300-noisy")
TESSERACT_LANGS = {"zh": "chi_sim+eng", "en": "eng"}


@dataclass(frozen=True)
class Page:
    lang: str
    number: int
    text: str


def normalise(text: str) -> str:
    """NFKC, then no whitespace at all (see the module docstring)."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def normalise_spaced(text: str) -> str:
    """NFKC, each whitespace run one space: the English words' spaces count."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def levenshtein(a: str, b: str) -> int:
    """Edit distance, bit-parallel (Myers 1999, Hyyrö's form) on Python integers as bit vectors: one pass over ``b``
    with a handful of big-integer operations per character, milliseconds for a page."""
    if not a:
        return len(b)
    peq: dict[str, int] = {}
    for i, ch in enumerate(a):
        peq[ch] = peq.get(ch, 0) | (1 << i)
    mask = (1 << len(a)) - 1
    last = 1 << (len(a) - 1)
    pv, mv, score = mask, 0, len(a)
    for ch in b:
        eq = peq.get(ch, 0)
        xv = eq | mv
        xh = (((eq & pv) + pv) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & mask
        mh = pv & xh
        if ph & last:
            score += 1
        elif mh & last:
            score -= 1
        ph = ((ph << 1) | 1) & mask
        mh = (mh << 1) & mask
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv
    return score


def cer(reference: str, hypothesis: str, spaced: bool = False) -> float:
    norm = normalise_spaced if spaced else normalise
    ref, hyp = norm(reference), norm(hypothesis)
    return levenshtein(ref, hyp) / max(len(ref), 1)


def confusions(reference: str, hypothesis: str) -> list[tuple[str, str]]:
    """(reference piece, read as) for every differing stretch, from difflib's alignment (for reading, not scoring)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    out = []
    for op, i1, i2, j1, j2 in SequenceMatcher(None, ref, hyp, autojunk=False).get_opcodes():
        if op != "equal":
            out.append((ref[i1:i2], hyp[j1:j2]))
    return out


# -- pages ----------------------------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    """Whitespace runs as one space, without invisible format characters (SciFact has left-to-right marks, which
    print as nothing and so could only count as errors)."""
    return " ".join("".join(ch for ch in text if unicodedata.category(ch) != "Cf").split())


def zh_pages(count: int, seed: int) -> list[Page]:
    """Each page: an article's title, then CMRC contexts (its own, then the next articles') as paragraphs until full."""
    articles = json.loads(CMRC.read_text(encoding="utf-8"))["data"]
    items = [(_clean(a["title"]), [_clean(p["context"]) for p in a["paragraphs"]]) for a in articles]
    items = [(t, ps) for t, ps in items if t and drawable(t + "".join(ps), "zh")]
    random.Random(seed).shuffle(items)
    pages = []
    for number in range(count):
        group = items[number * 8:(number + 1) * 8]
        paragraphs = [p for _, ps in group for p in ps]
        pages.append(Page("zh", number, fit_page(group[0][0], paragraphs, lang="zh")))
    return pages


def en_pages(count: int, seed: int) -> list[Page]:
    """Each page: a SciFact abstract's title, then its text and the next abstracts' texts until full."""
    docs = []
    with SCIFACT.open(encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            title, text = _clean(doc["title"]), _clean(doc["text"])
            if len(text) > 400 and drawable(title + text, "en"):
                docs.append((title, text))
    random.Random(seed).shuffle(docs)
    pages = []
    for number in range(count):
        group = docs[number * 4:(number + 1) * 4]
        pages.append(Page("en", number, fit_page(group[0][0], [t for _, t in group], lang="en")))
    return pages


def variant_image(page: Page, variant: str) -> Image.Image:
    dpi = int(variant.split("-")[0])
    image = render_page(page.text, dpi=dpi, lang=page.lang)
    seed = page.number * 7919 + (1 if page.lang == "zh" else 2)
    if variant.endswith("-skew"):
        return skewed(image, seed=seed)
    if variant.endswith("-noisy"):
        return noisy(image, seed=seed)
    return image


# -- engines --------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reading:
    text: str
    confidence: float
    lines: int


def read_rapidocr(image: Image.Image, lang: str) -> Reading:
    result = ocr.recognize(image)
    return Reading(result.text, result.confidence, result.lines)


def read_tesseract(image: Image.Image, lang: str) -> Reading:
    """``tesseract page.png out -l <lang> --psm 3 txt tsv``: automatic page segmentation, the text and the words'
    confidences (0-100, weighted by word length like RapidOCR's)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.png"
        image.save(path)
        subprocess.run(["tesseract", str(path), str(Path(tmp) / "out"), "-l", TESSERACT_LANGS[lang], "--psm", "3",
                        "txt", "tsv"], check=True, capture_output=True)
        text = (Path(tmp) / "out.txt").read_text(encoding="utf-8")
        weight = total = 0.0
        lines = set()
        for row in (Path(tmp) / "out.tsv").read_text(encoding="utf-8").splitlines()[1:]:
            cols = row.split("\t")
            if len(cols) == 12 and cols[0] == "5" and cols[11].strip() and float(cols[10]) >= 0:
                weight += len(cols[11].strip())
                total += float(cols[10]) / 100 * len(cols[11].strip())
                lines.add((cols[2], cols[3], cols[4]))
    return Reading(text, total / weight if weight else 0.0, len(lines))


ENGINES: dict[str, Callable[[Image.Image, str], Reading]] = {"rapidocr": read_rapidocr, "tesseract": read_tesseract}


@dataclass
class Result:
    engine: str
    lang: str
    variant: str
    page: int
    chars: int
    cer: float
    ws_cer: float
    confidence: float
    lines: int
    paragraphs_right: bool  # as many paragraphs read (blocks between blank lines) as printed, title included
    wall_s: float
    cpu_s: float


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(pages: list[Page], engines: list[str], variants: list[str], diffs: bool) -> Iterator[Result]:
    for page in pages:
        for variant in variants:
            image = variant_image(page, variant)
            for engine in engines:
                started, cpu = time.perf_counter(), _cpu()
                reading = ENGINES[engine](image, page.lang)
                wall, cpu = time.perf_counter() - started, _cpu() - cpu
                result = Result(engine, page.lang, variant, page.number, len(normalise(page.text)),
                                cer(page.text, reading.text), cer(page.text, reading.text, spaced=True),
                                reading.confidence, reading.lines,
                                len(re.split(r"\n\s*\n", reading.text.strip())) == len(page.text.splitlines()),
                                wall, cpu)
                print(f"  {engine:9} {page.lang} {variant:9} page {page.number:2}: CER {result.cer:.4f} "
                      f"conf {result.confidence:.3f} {wall:5.1f} s", file=sys.stderr, flush=True)
                if diffs:
                    wrong = confusions(page.text, reading.text)
                    print("    " + "  ".join(f"{r!r}->{h!r}" for r, h in wrong[:40]), file=sys.stderr)
                yield result


def table(results: list[Result]) -> list[dict[str, object]]:
    rows = []
    keys = sorted({(r.engine, r.lang, r.variant) for r in results},
                  key=lambda k: (k[0], k[1], VARIANTS.index(k[2])))
    for engine, lang, variant in keys:
        cell = [r for r in results if (r.engine, r.lang, r.variant) == (engine, lang, variant)]
        worst = max(cell, key=lambda r: r.cer)
        rows.append({"engine": engine, "lang": lang, "variant": variant, "pages": len(cell),
                     "cer_mean": statistics.fmean(r.cer for r in cell),
                     "cer_median": statistics.median(r.cer for r in cell),
                     "cer_worst": worst.cer, "worst_page": worst.page,
                     "ws_cer_mean": statistics.fmean(r.ws_cer for r in cell) if lang == "en" else None,
                     "pages_per_s": len(cell) / sum(r.wall_s for r in cell),
                     "cpu_s_per_page": statistics.fmean(r.cpu_s for r in cell),
                     "confidence_mean": statistics.fmean(r.confidence for r in cell),
                     "confidence_min": min(r.confidence for r in cell),
                     "paragraphs_right": sum(r.paragraphs_right for r in cell)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=20, help="pages per language (default 20)")
    parser.add_argument("--langs", default="zh,en")
    parser.add_argument("--dpi", default="150,300", help="clean pages at these dpi; skew and noisy at 300")
    parser.add_argument("--variants", default=None, help=f"a subset of {','.join(VARIANTS)} (overrides --dpi)")
    parser.add_argument("--engines", default="rapidocr,tesseract")
    parser.add_argument("--max-side", type=int, default=None, help=f"ocr.MAX_SIDE (default {ocr.MAX_SIDE})")
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--diffs", action="store_true", help="print each page's differing stretches")
    parser.add_argument("--out", type=Path, default=None, help="write the table and every page's result as JSON")
    args = parser.parse_args()

    if args.max_side:
        ocr.MAX_SIDE = args.max_side
    if args.variants:
        variants = args.variants.split(",")
    else:
        dpis = args.dpi.split(",")
        variants = [v for v in VARIANTS if v.split("-")[0] in dpis and ("-" not in v or "300" in dpis)]
    langs = [lang for lang in args.langs.split(",") if fonts_installed(lang)]
    pages = [p for lang in langs for p in (zh_pages if lang == "zh" else en_pages)(args.pages, args.seed)]
    engines = args.engines.split(",")
    if "rapidocr" in engines:
        ocr.recognize(Image.new("RGB", (64, 64), "white"))  # load the models outside the timings
    results = list(run(pages, engines, variants, args.diffs))
    rows = table(results)

    print(f"OS threads: onnxruntime {ocr.INTRA_OP_THREADS}, tesseract OMP_THREAD_LIMIT="
          f"{os.environ.get('OMP_THREAD_LIMIT', 'unset')}; MAX_SIDE {ocr.MAX_SIDE}; {len(pages)} pages")
    header = ("engine", "lang", "variant", "pages", "CER mean", "median", "worst (page)", "ws-CER", "pages/s",
              "CPU s/page", "confidence (min)", "paragraphs right")
    print(" | ".join(header))
    for row in rows:
        print(f"{row['engine']} | {row['lang']} | {row['variant']} | {row['pages']} | {row['cer_mean']:.4f} | "
              f"{row['cer_median']:.4f} | {row['cer_worst']:.4f} ({row['worst_page']}) | "
              f"{'-' if row['ws_cer_mean'] is None else format(row['ws_cer_mean'], '.4f')} | "
              f"{row['pages_per_s']:.3f} | {row['cpu_s_per_page']:.1f} | {row['confidence_mean']:.3f} "
              f"({row['confidence_min']:.3f}) | {row['paragraphs_right']}/{row['pages']}")
    if args.out:
        args.out.write_text(json.dumps({"table": rows, "pages": [asdict(r) for r in results]}, ensure_ascii=False,
                                       indent=1), encoding="utf-8")
    main_engine = "rapidocr" if "rapidocr" in engines else engines[0]
    summary = {f"ocr_cer_{row['lang']}_300": row["cer_mean"] for row in rows
               if row["engine"] == main_engine and row["variant"] == "300"}
    clean300 = [r for r in results if r.engine == main_engine and r.variant == "300"]
    if clean300:
        summary["pages_per_s"] = len(clean300) / sum(r.wall_s for r in clean300)
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(" ".join(f"{k}={v:.4f}" if k.startswith("ocr_cer") else f"{k}={v:.3f}" if k == "pages_per_s"
                   else f"{k}={v:.0f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()

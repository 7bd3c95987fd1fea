"""Text from page images (scans, photos, image-only PDF pages) with RapidOCR: PP-OCRv4 detection and recognition
models run by onnxruntime, shipped inside the ``rapidocr-onnxruntime`` wheel, so nothing is downloaded at run time.

``recognize`` returns the text in reading order: the engine gives one box per text segment; segments are grouped
into lines by their vertical overlap after undoing the page's skew, lines run top to bottom and paragraphs are cut
where the space between two lines is clearly more than usual. Accuracy and speed against Tesseract 5:
docs/benchmarks.md "OCR engines" (``bench/ocr_bench.py``).
"""

from __future__ import annotations

import math
import statistics
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps

from rag_service.ingestion.formats.common import reason

if TYPE_CHECKING:
    from rapidocr_onnxruntime import RapidOCR

ENGINE = "rapidocr"

# Pages are downscaled so that their long side is at most this many pixels (A4 at ~215 dpi, 11 pt text ~33 px
# high). Measured on 300 dpi pages (bench/ocr_bench.py, docs/benchmarks.md "OCR engines"): at 2,000 px (RapidOCR's
# own limit) and below, the recogniser starts dropping the spaces between English words (2.4 % of characters with
# spaces counted on noisy pages at 2,000 px, 8 % at 1,600; 0.2 % at 2,500); the full 3,508 px reads no better and
# costs 1.4x the CPU. RapidOCR's limit is lifted so that the page is resized once, here, with a Lanczos filter.
MAX_SIDE = 2500

# onnxruntime threads: the machine's two cores for one page at a time (pages of a PDF are recognised one by one),
# and no spinning: a spinning pool takes the cores from a chat answered beside an upload (issue 16 saw llama.cpp
# drop from 12 to 0.3 tokens/s under spinning OpenMP threads).
INTRA_OP_THREADS = 2
INTER_OP_THREADS = 1

# Two lines belong to one paragraph unless the space between them, in line heights, exceeds the page's usual space
# between lines by this much. A blank line or a word processor's "space after" (~0.7 em at 11 pt) clears it; the
# jitter of detected boxes does not (bench/ocr_bench.py counts the pages whose paragraphs all came out right).
# Relative to the usual space, not absolute, so that double-spaced pages do not become one paragraph per line.
PARAGRAPH_EXTRA_SPACE = 0.4

# A page read with a lower mean confidence than this is read again turned by 180 degrees (a sheet fed upside down),
# and the reading with more confident characters kept. Upright pages read at 0.97-1.0 in bench/ocr_bench.py (noisy
# photocopies the lowest); an upside-down page reads a few scattered characters at 0.5-0.7.
TRY_UPSIDE_DOWN_BELOW = 0.8

# Two segments are on one line when their vertical extents overlap by at least this fraction of the shorter one.
SAME_LINE_OVERLAP = 0.5


@dataclass(frozen=True, slots=True)
class OcrText:
    text: str  # recognised lines in reading order; lines of one paragraph joined by "\n", paragraphs by "\n\n"
    confidence: float  # the engine's mean confidence over recognised characters (weighted by line length), 0..1
    lines: int  # number of text lines recognised


EMPTY = OcrText(text="", confidence=0.0, lines=0)

_engine: RapidOCR | None = None
_engine_lock = threading.Lock()


def _session_options() -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # No arena: it keeps the largest page's buffers for the life of the process (the parser child lives on), and
    # its growth in powers of two is what would meet RLIMIT_AS first.
    options.enable_cpu_mem_arena = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _load_engine() -> RapidOCR:
    """RapidOCR with its three models in sessions of our own options (its constructor exposes only the thread
    counts, not spinning), from the files inside its wheel."""
    import onnxruntime as ort
    from rapidocr_onnxruntime import RapidOCR
    from rapidocr_onnxruntime.main import DEFAULT_CFG_PATH
    from rapidocr_onnxruntime.utils import read_yaml, update_model_path

    # det_limit_type "max": detection sees the page scaled down to a long side of 2,000 px (1,500 / 960 for smaller
    # images; never up), while lines are cut for recognition from the page at MAX_SIDE. Finding lines needs less
    # resolution than reading them: CER within 0.1 point of detecting at 2,500 px on 8 pages of bench/ocr_bench.py,
    # with a peak RSS of 800 MB instead of 1,050 for a 300 dpi page. (The default "min" type detects at full size.)
    engine = RapidOCR(max_side_len=MAX_SIDE + 1, det_limit_type="max", intra_op_num_threads=INTRA_OP_THREADS,
                      inter_op_num_threads=INTER_OP_THREADS)
    paths = update_model_path(read_yaml(str(DEFAULT_CFG_PATH)))
    options = _session_options()
    for holder, section in ((engine.text_det.infer, "Det"), (engine.text_cls.infer, "Cls"),
                            (engine.text_rec.session, "Rec")):
        holder.session = ort.InferenceSession(paths[section]["model_path"], sess_options=options,
                                              providers=["CPUExecutionProvider"])
    return engine


class OcrUnavailableError(RuntimeError):
    """The engine cannot load here (a missing system library such as libGL for OpenCV, a broken install): the
    loaders turn it into a one-line refusal of the file that needed OCR."""


def _get_engine() -> RapidOCR:
    global _engine
    with _engine_lock:
        if _engine is None:
            try:
                _engine = _load_engine()
            except (ImportError, OSError) as exc:
                raise OcrUnavailableError(reason(exc)) from exc
        return _engine


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode as 8-bit RGB on white: transparency flattened (a transparent background is often black
    under its alpha), 16-bit and float scaled rather than clipped to white."""
    mode = image.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        if mode.startswith("I;16"):
            low, high = 0.0, 65535.0
        elif low >= 0 and high <= 255:
            low, high = 0.0, 255.0
        scaled = (pixels - low) * (255.0 / max(high - low, 1e-9))
        return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")
    return image


def prepare(image: Image.Image) -> Image.Image:
    """The page as the engine sees it: upright by its EXIF orientation (phone photos are stored sideways with a
    tag), RGB, the long side at most ``MAX_SIDE``."""
    upright = ImageOps.exif_transpose(image)
    rgb = _to_rgb(upright)
    if max(rgb.size) > MAX_SIDE:
        scale = MAX_SIDE / max(rgb.size)
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    return rgb


@dataclass(slots=True)
class _Segment:
    text: str
    score: float
    x: float  # left edge, centre height and top/bottom in page coordinates turned by minus the skew
    top: float
    bottom: float


def _skew(boxes: list[np.ndarray]) -> float:
    """The page's skew in radians: the median slope of the long boxes' top edges (a short box's rectangle can turn
    either way)."""
    angles = []
    for box in boxes:
        dx, dy = box[1] - box[0]
        height = float(np.linalg.norm(box[3] - box[0]))
        if dx > 3 * max(height, 1.0):
            angles.append(math.atan2(float(dy), float(dx)))
    return statistics.median(angles) if angles else 0.0


def _segments(result: list[list[Any]]) -> list[_Segment]:
    boxes = [np.asarray(item[0], dtype=np.float64) for item in result]
    angle = _skew(boxes)
    cos, sin = math.cos(-angle), math.sin(-angle)
    out = []
    for box, item in zip(boxes, result, strict=True):
        text = str(item[1]).strip()
        if not text:
            continue
        xs = box[:, 0] * cos - box[:, 1] * sin
        ys = box[:, 0] * sin + box[:, 1] * cos
        out.append(_Segment(text=text, score=float(item[2]), x=float(xs.min()), top=float(ys.min()),
                            bottom=float(ys.max())))
    return out


def _lines(segments: list[_Segment]) -> list[list[_Segment]]:
    """Segments grouped into lines by vertical overlap, lines top to bottom, segments left to right."""
    lines: list[list[_Segment]] = []
    for segment in sorted(segments, key=lambda s: (s.top + s.bottom) / 2):
        if lines:
            line = lines[-1]
            top = statistics.median(s.top for s in line)
            bottom = statistics.median(s.bottom for s in line)
            overlap = min(bottom, segment.bottom) - max(top, segment.top)
            if overlap >= SAME_LINE_OVERLAP * min(bottom - top, segment.bottom - segment.top):
                line.append(segment)
                continue
        lines.append([segment])
    return [sorted(line, key=lambda s: s.x) for line in lines]


def _wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _join_line(line: list[_Segment]) -> str:
    """Segments joined with a space between Latin letters, digits and half-width punctuation, with nothing where
    either side is a CJK or full-width character (Chinese is written without spaces)."""
    text = line[0].text
    for segment in line[1:]:
        text += segment.text if _wide(text[-1]) or _wide(segment.text[0]) else " " + segment.text
    return text


def _paragraphs(lines: list[list[_Segment]]) -> list[list[str]]:
    extents = [(min(s.top for s in line), max(s.bottom for s in line)) for line in lines]
    # Each space between two lines in units of their mean height, so that a title's larger line spacing is usual
    # for its own size and does not split a two-line title.
    spaces = [(extents[i + 1][0] - extents[i][1]) * 2 / max(extents[i + 1][1] - extents[i + 1][0]
                                                             + extents[i][1] - extents[i][0], 1e-9)
              for i in range(len(extents) - 1)]
    usual = statistics.median(spaces) if spaces else 0.0
    paragraphs: list[list[str]] = [[_join_line(lines[0])]]
    for line, space in zip(lines[1:], spaces, strict=True):
        if space > usual + PARAGRAPH_EXTRA_SPACE:
            paragraphs.append([])
        paragraphs[-1].append(_join_line(line))
    return paragraphs


def _read(page: Image.Image) -> OcrText:
    pixels = np.ascontiguousarray(np.asarray(page)[:, :, ::-1])  # the models were trained on BGR (OpenCV) images
    # use_cls=False: RapidOCR's angle classifier turns each line by 180 degrees when it takes it for upside down, and
    # on English lines it was wrong often enough to cost 20 % CER (whole lines read as "s s" or nothing, on two
    # English pages of bench/ocr_bench.py);
    # whole pages upside down are handled in ``recognize`` instead.
    result, _ = _get_engine()(pixels, use_cls=False)
    segments = _segments(result) if result else []
    if not segments:
        return EMPTY
    lines = _lines(segments)
    paragraphs = _paragraphs(lines)
    chars = sum(len(s.text) for s in segments)
    confidence = sum(s.score * len(s.text) for s in segments) / chars
    return OcrText(text="\n\n".join("\n".join(p) for p in paragraphs), confidence=min(max(confidence, 0.0), 1.0),
                   lines=len(lines))


def _weight(result: OcrText) -> float:
    return result.confidence * sum(not ch.isspace() for ch in result.text)


def recognize(image: Image.Image) -> OcrText:
    """The text on one page image, in reading order (one column; a multi-column page reads across its columns)."""
    page = prepare(image)
    result = _read(page)
    if result.lines and result.confidence < TRY_UPSIDE_DOWN_BELOW:
        turned = _read(page.rotate(180))
        if _weight(turned) > _weight(result):
            return turned
    return result

"""Images (a scan, a phone photo of a page, a screenshot): read by OCR, one page per frame (a multi-page TIFF)."""

from __future__ import annotations

import io
import itertools
import re
import warnings

from rag_service.errors import InvalidInputError
from rag_service.ingestion.formats.common import LoadContext, Loaded, join_pages, reason

# A 48-megapixel phone photo is 8000 x 6000; anything far larger is a decompression bomb (a few KB of PNG can declare
# gigapixels). Pillow's own guard warns at 89 MP and refuses at twice that; this refuses earlier and in one line.
MAX_IMAGE_PIXELS = 100_000_000


_KINDS = ((b"\x89PNG\r\n\x1a\n", "PNG image"), (b"\xff\xd8\xff", "JPEG image"), (b"II*\x00", "TIFF image"),
          (b"MM\x00*", "TIFF image"), (b"GIF87a", "GIF image"), (b"GIF89a", "GIF image"))


def _kind(raw: bytes) -> str | None:
    """What the bytes say they are, for detection and messages."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WebP image"
    # 'BM', the file size and two reserved zero words: a text file may begin with 'BM', not with those.
    if raw[:2] == b"BM" and len(raw) >= 26 and raw[6:10] == b"\0\0\0\0" \
            and int.from_bytes(raw[2:6], "little") in (len(raw), 0):
        return "BMP image"
    return next((kind for magic, kind in _KINDS if raw.startswith(magic)), None)


def is_image(raw: bytes) -> bool:
    return _kind(raw) is not None


def load_image(raw: bytes, ctx: LoadContext) -> Loaded:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    from rag_service.ingestion.ocr import ENGINE, OcrUnavailableError, recognize

    source, kind = ctx.source, _kind(raw) or "image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below decides
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidInputError(f"{source}: a {width:,} x {height:,} image is over the "
                                        f"{MAX_IMAGE_PIXELS // 1_000_000}-megapixel limit")
            # An animated GIF's frames repeat one picture: its first frame is the document. A TIFF's are its pages.
            frames = 1 if image.format == "GIF" else getattr(image, "n_frames", 1)
            if frames > ctx.limits.ocr_pages:
                raise InvalidInputError(f"{source}: {frames:,} frames is over the {ctx.limits.ocr_pages:,}-page OCR "
                                        "limit (max_ocr_pages)")
            pages, confidences = [], {}
            for number, frame in enumerate(itertools.islice(ImageSequence.Iterator(image), frames), 1):
                if frame.width * frame.height > MAX_IMAGE_PIXELS:
                    raise InvalidInputError(f"{source}: frame {number} is over the "
                                            f"{MAX_IMAGE_PIXELS // 1_000_000}-megapixel limit")
                frame.load()
                read = recognize(frame.copy())
                pages.append(read.text)
                confidences[number] = round(read.confidence, 3)
                ctx.progress(number, frames)
    except InvalidInputError:
        raise
    except OcrUnavailableError as exc:
        raise InvalidInputError(f"{source}: needs OCR, which cannot run on this server ({exc})") from None
    except Image.DecompressionBombError as exc:  # Pillow's own guard, at twice its warning size, came first
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        size = f" (it declares {int(declared.group(1)):,} pixels)" if declared else ""
        raise InvalidInputError(f"{source}: the image is over the {MAX_IMAGE_PIXELS // 1_000_000}-megapixel "
                                f"limit{size}") from None
    except UnidentifiedImageError:  # its message names a BytesIO object, nothing a user can act on
        raise InvalidInputError(f"{source}: not a readable {kind} (damaged or truncated data)") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as exc:  # truncated or broken data
        raise InvalidInputError(f"{source}: not a readable {kind} ({reason(exc)})") from None
    loaded = join_pages(pages)
    if not loaded.text:
        raise InvalidInputError(f"{source}: OCR found no text in the image")
    kept = {n for _, n in loaded.metadata["page_starts"]}
    loaded.metadata.update(ocr_pages={n: c for n, c in confidences.items() if n in kept}, ocr_engine=ENGINE,
                           image={"format": image.format, "width": width, "height": height})
    return loaded

#!/usr/bin/env python3
"""Checks behind scripts/render_check.sh (standard library only).

    render_check.py --html REPORT.html --png SHOT.png --dom DOM.html \
        --size 1400x2400 --min-plots 4

Checks, all of them, reporting every failure:
  * the report (and the DOM Chromium dumped) loads no external resource:
    no src="http…", href="http…", url(http…) nor @import, in any quoting or case;
  * SHOT.png is a valid PNG (signature, chunk CRCs, IHDR, zlib, filters 0-4) of the
    expected size and is not blank: at least --min-non-bg of its pixels differ from
    the most common colour and it has at least --min-colours distinct colours;
  * the DOM has at least --min-plots <figure class="plot"> elements containing an
    <svg>, and no element whose class list includes "error".
Prints one summary line on stdout when all pass; exits 1 with the reasons otherwise.
"""

import argparse
import re
import struct
import sys
import zlib
from collections import Counter
from html.parser import HTMLParser

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Loading an external resource: src=, href= (xlink:href= too) or srcset= naming an
# http(s) or protocol-relative (//host) URL, CSS url(http…), and any CSS @import.
# Any quoting and case. Note an ordinary <a href="https://…"> link fails this too.
EXTERNAL_PATTERNS = [
    (re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I), 'src/href="http…"'),
    (re.compile(r"""\bsrcset\s*=\s*["'][^"']*(?:https?:)?//""", re.I), 'srcset="http…"'),
    (re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I), "url(http…)"),
    (re.compile(r"@import\b", re.I), "@import"),
]


class CheckError(Exception):
    pass


# --------------------------------------------------------------------------- PNG


def _paeth(a, b, c):
    p = a + b - c
    pa = abs(p - a)
    pb = abs(p - b)
    pc = abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    if pb <= pc:
        return b
    return c


def decode_png(path):
    """Returns (width, height, channels, rows) with rows a list of bytes (unfiltered)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CheckError(f"screenshot {path} cannot be read: {e}")
    if not data.startswith(PNG_SIGNATURE):
        raise CheckError(f"screenshot {path} is not a PNG (bad signature, {len(data)} bytes)")
    pos = len(PNG_SIGNATURE)
    ihdr = None
    idat = []
    seen_iend = False
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        crc_bytes = data[pos + 8 + length:pos + 12 + length]
        if len(chunk) != length or len(crc_bytes) != 4:
            raise CheckError(f"screenshot {path}: truncated {ctype!r} chunk")
        if zlib.crc32(ctype + chunk) & 0xFFFFFFFF != struct.unpack(">I", crc_bytes)[0]:
            raise CheckError(f"screenshot {path}: bad CRC in {ctype!r} chunk")
        if ctype == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", chunk)
        elif ctype == b"IDAT":
            idat.append(chunk)
        elif ctype == b"IEND":
            seen_iend = True
            break
        pos += 12 + length
    if ihdr is None or not idat or not seen_iend:
        raise CheckError(f"screenshot {path}: missing IHDR, IDAT or IEND chunk")
    width, height, depth, colour, _compression, _filter, interlace = ihdr
    channels = {2: 3, 6: 4}.get(colour)
    if depth != 8 or channels is None:
        raise CheckError(
            f"screenshot {path}: unsupported PNG format (bit depth {depth}, colour type "
            f"{colour}); expected 8-bit RGB (2) or RGBA (6)")
    if interlace != 0:
        raise CheckError(f"screenshot {path}: interlaced PNG not supported")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as e:
        raise CheckError(f"screenshot {path}: image data does not decompress: {e}")
    stride = width * channels
    if len(raw) != height * (stride + 1):
        raise CheckError(
            f"screenshot {path}: image data is {len(raw)} bytes, expected "
            f"{height * (stride + 1)} for {width}x{height}")

    bpp = channels
    prev = bytes(stride)
    rows = []
    for y in range(height):
        start = y * (stride + 1)
        ftype = raw[start]
        line = raw[start + 1:start + 1 + stride]
        if ftype == 0:
            cur = line
        elif ftype == 1:  # Sub
            out = bytearray(line)
            for i in range(bpp, stride):
                out[i] = (out[i] + out[i - bpp]) & 0xFF
            cur = bytes(out)
        elif ftype == 2:  # Up
            cur = bytes([(a + b) & 0xFF for a, b in zip(line, prev)])
        elif ftype == 3:  # Average
            out = bytearray(line)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                out[i] = (out[i] + ((left + prev[i]) >> 1)) & 0xFF
            cur = bytes(out)
        elif ftype == 4:  # Paeth
            out = bytearray(line)
            for i in range(stride):
                if i >= bpp:
                    out[i] = (out[i] + _paeth(out[i - bpp], prev[i], prev[i - bpp])) & 0xFF
                else:
                    out[i] = (out[i] + prev[i]) & 0xFF
            cur = bytes(out)
        else:
            raise CheckError(f"screenshot {path}: row {y} has unknown filter type {ftype}")
        rows.append(cur)
        prev = cur
    return width, height, channels, rows


def colour_stats(channels, rows):
    counts = Counter()
    for row in rows:
        if channels == 3:
            counts.update(zip(row[0::3], row[1::3], row[2::3]))
        else:
            counts.update(zip(row[0::4], row[1::4], row[2::4], row[3::4]))
    total = sum(counts.values())
    background, bg_count = counts.most_common(1)[0]
    return len(counts), background, 1.0 - bg_count / total


# --------------------------------------------------------------------------- DOM


class PlotCounter(HTMLParser):
    """Counts <figure class="plot"> elements (class list contains "plot"), those with
    an <svg> inside, and elements whose class list contains "error"."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.figure_stack = []  # one entry per open <figure>: [is_plot, has_svg]
        self.plots = 0
        self.plots_with_svg = 0
        self.errors = []

    def _classes(self, attrs):
        for name, value in attrs:
            if name == "class" and value:
                return value.split()
        return []

    def handle_starttag(self, tag, attrs):
        classes = self._classes(attrs)
        if "error" in classes:
            self.errors.append(f"<{tag} class=\"{' '.join(classes)}\">")
        if tag == "figure":
            self.figure_stack.append(["plot" in classes, False])
        elif tag == "svg":
            for entry in self.figure_stack:
                if entry[0]:
                    entry[1] = True

    def handle_startendtag(self, tag, attrs):
        # <svg .../> (empty) still counts as an svg; a self-closed figure is empty.
        classes = self._classes(attrs)
        if "error" in classes:
            self.errors.append(f"<{tag} class=\"{' '.join(classes)}\"/>")
        if tag == "svg":
            for entry in self.figure_stack:
                if entry[0]:
                    entry[1] = True
        elif tag == "figure" and "plot" in classes:
            self.plots += 1

    def handle_endtag(self, tag):
        if tag == "figure" and self.figure_stack:
            self._close(self.figure_stack.pop())

    def _close(self, entry):
        is_plot, has_svg = entry
        if is_plot:
            self.plots += 1
            if has_svg:
                self.plots_with_svg += 1

    def close(self):
        super().close()
        while self.figure_stack:  # unclosed figures at the end of the document
            self._close(self.figure_stack.pop())


# --------------------------------------------------------------------------- main


def external_resources(text):
    found = []
    for pattern, label in EXTERNAL_PATTERNS:
        for m in pattern.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            snippet = text[m.start():m.start() + 80].split("\n")[0]
            found.append(f"line {line}: {label}: {snippet}")
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--html", required=True, help="the report as written")
    ap.add_argument("--png", required=True, help="Chromium's screenshot")
    ap.add_argument("--dom", required=True, help="Chromium's --dump-dom output")
    ap.add_argument("--size", default="1400x2400", help="expected screenshot WxH")
    ap.add_argument("--min-plots", type=int, default=4)
    ap.add_argument("--min-non-bg", type=float, default=0.02,
                    help="least share of pixels differing from the most common colour")
    ap.add_argument("--min-colours", type=int, default=20)
    ap.add_argument("--render-seconds", default="", help="shown in the summary only")
    args = ap.parse_args()

    failures = []
    summary = {}

    # 1. self-contained
    for label, path in (("report", args.html), ("rendered DOM", args.dom)):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError as e:
            failures.append(f"{label} {path} cannot be read: {e}")
            continue
        found = external_resources(text)
        if found:
            failures.append(
                f"{label} loads external resources (not self-contained), {len(found)} found:\n    "
                + "\n    ".join(found[:10]))
    # 2. screenshot
    try:
        exp_w, exp_h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        ap.error(f"--size must be WIDTHxHEIGHT, got {args.size!r}")
    try:
        width, height, channels, rows = decode_png(args.png)
        summary["size"] = f"{width}x{height}"
        if (width, height) != (exp_w, exp_h):
            failures.append(f"screenshot is {width}x{height}, expected {exp_w}x{exp_h}")
        distinct, background, non_bg = colour_stats(channels, rows)
        summary["colours"] = distinct
        summary["non_bg"] = non_bg
        summary["background"] = "#" + "".join(f"{v:02x}" for v in background)
        if non_bg < args.min_non_bg or distinct < args.min_colours:
            failures.append(
                f"screenshot looks blank: {non_bg:.2%} of pixels differ from the background "
                f"{summary['background']} (need >= {args.min_non_bg:.0%}), {distinct} distinct "
                f"colours (need >= {args.min_colours})")
    except CheckError as e:
        failures.append(str(e))
    # 3. plots and errors in the DOM Chromium produced
    try:
        with open(args.dom, encoding="utf-8", errors="replace") as f:
            dom = f.read()
        parser = PlotCounter()
        parser.feed(dom)
        parser.close()
        summary["plots"] = parser.plots_with_svg
        if not dom.strip():
            failures.append("Chromium dumped an empty DOM")
        if parser.plots_with_svg < args.min_plots:
            failures.append(
                f"{parser.plots_with_svg} <figure class=\"plot\"> with an <svg> in the rendered "
                f"DOM ({parser.plots} plot figures in all), need >= {args.min_plots}")
        if parser.errors:
            failures.append(
                f"{len(parser.errors)} element(s) with class \"error\" in the rendered DOM: "
                + ", ".join(parser.errors[:5]))
    except OSError as e:
        failures.append(f"rendered DOM {args.dom} cannot be read: {e}")

    if failures:
        for f_ in failures:
            print(f"render_check: FAIL: {f_}", file=sys.stderr)
        return 1
    render = f", render {args.render_seconds}s" if args.render_seconds else ""
    print(f"render_check: OK {args.html}: {summary['size']} PNG, {summary['colours']} distinct "
          f"colours, {summary['non_bg']:.1%} non-background pixels (background "
          f"{summary['background']}), {summary['plots']} plots (min {args.min_plots}){render}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
